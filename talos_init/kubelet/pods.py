"""machine.pods: static pod manifests, checked and laid out as the kubelet's staticPodPath files.

Talos hands the pods to the kubelet unchecked; a pod the kubelet cannot run
would then only show up as a kubelet log line. Here the few things every
static pod needs (apiVersion v1, kind Pod, a name, containers with a name and
an image) are checked, so the validator and the kubelet prep both name the
pod index and field that is wrong. One file per pod, ``talos-<name>.yaml``:
files with that prefix belong to us and are removed when their pod leaves
the config; anything else in the directory is left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talos_init.atomicfile import write_atomic

PREFIX = "talos-"
# Kubernetes' DNS-1123 subdomain (object names) and label (container names).
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Problem = tuple[tuple[str | int, ...], str]  # (path below machine.pods[i], message)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def pod_problems(pod: Any) -> list[Problem]:
    """What keeps the kubelet from running this manifest, as (path, message) pairs."""
    if not isinstance(pod, Mapping):
        return [((), f"a pod manifest must be a mapping, got {type(pod).__name__}")]
    out: list[Problem] = []
    if pod.get("apiVersion") != "v1":
        out.append((("apiVersion",), f"must be 'v1', got {pod.get('apiVersion')!r}"))
    if pod.get("kind") != "Pod":
        out.append((("kind",), f"must be 'Pod', got {pod.get('kind')!r}"))
    meta = pod.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        out.append((("metadata", "name"), "a static pod needs a name"))
    elif len(name) > 253 or not SUBDOMAIN.fullmatch(name):
        out.append((("metadata", "name"), f"{name!r} is not a valid pod name "
                    "(lower-case letters, digits, '-' and '.')"))
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    if not isinstance(containers, list) or not containers:
        out.append((("spec", "containers"), "a pod needs at least one container"))
        return out
    seen: set[str] = set()
    for j, c in enumerate(containers):
        where: tuple[str | int, ...] = ("spec", "containers", j)
        if not isinstance(c, Mapping):
            out.append((where, "a container must be a mapping"))
            continue
        cname = c.get("name")
        if not isinstance(cname, str) or not LABEL.fullmatch(cname) or len(cname) > 63:
            out.append((where + ("name",), f"{cname!r} is not a container name "
                        "(1-63 lower-case letters, digits and '-')"))
        elif cname in seen:
            out.append((where + ("name",), f"container name {cname!r} is used twice"))
        else:
            seen.add(cname)
        if not isinstance(c.get("image"), str) or not c["image"]:
            out.append((where + ("image",), "a container needs an image"))
        for key in ("command", "args"):
            if key in c and not _strings(c[key]):
                out.append((where + (key,), "must be a list of strings"))
    return out


def all_problems(pods: Any) -> list[Problem]:
    """Problems of every pod, paths starting at the pod's index; duplicate names included."""
    if not isinstance(pods, list):
        return [((), "machine.pods must be a list of pod manifests")]
    out: list[Problem] = []
    names: dict[str, int] = {}
    for i, pod in enumerate(pods):
        found = pod_problems(pod)
        out += [((i, *path), msg) for path, msg in found]
        if found:
            continue
        name = pod["metadata"]["name"]
        if name in names:
            out.append(((i, "metadata", "name"),
                        f"pod name {name!r} is used twice (also pods[{names[name]}])"))
        names[name] = i
    return out


def runnable(pods: Any) -> tuple[dict[str, bytes], list[str]]:
    """The files of the pods the kubelet can run, and a note per pod left out: Talos writes
    machine.pods without checking them, so a bad pod must not hold back the good ones."""
    if not isinstance(pods, list):
        return {}, [f"{show(())}: must be a list of pod manifests"]
    problems = all_problems(pods)
    bad = {path[0] for path, _ in problems if path}
    notes = [f"{show(path)}: {msg}; the pod is not written" for path, msg in problems]
    good = [pod for i, pod in enumerate(pods) if i not in bad]
    return manifests(good), notes


def show(path: tuple[str | int, ...]) -> str:
    text = "machine.pods"
    for seg in path:
        text += f"[{seg}]" if isinstance(seg, int) else f".{seg}"
    return text


def manifests(pods: Any) -> dict[str, bytes]:
    """File name -> content; ValueError naming the first bad pod and field."""
    problems = all_problems(pods or [])
    if problems:
        path, msg = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{show(path)}: {msg}{more}")
    # JSON is YAML: the kubelet reads it, and no YAML writer is needed to keep key order.
    return {f"{PREFIX}{pod['metadata']['name']}.yaml":
            (json.dumps(pod, indent=1, sort_keys=False) + "\n").encode() for pod in pods or []}


def write(directory: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write the pods' files atomically and remove our stale ones; returns what was removed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write_atomic(directory / name, content, 0o600)
    removed = []
    for old in sorted(directory.glob(f"{PREFIX}*.yaml")):
        if old.name not in files:
            old.unlink()
            removed.append(old.name)
    return removed
