"""Write talos_init/userdata/talos_types.py: the Talos config types as a plain table.

Facts come from a local clone of siderolabs/talos (``fetch github:siderolabs/talos``):
the published JSON schemas (field names and JSON types, every release tag from 1.4 and
HEAD, merged so fields of older releases stay known) and the Go sources (each kind's
name as registered with the config registry). Only names and plain types are kept;
patterns and enums are left out on purpose: Talos does not refuse by the JSON schema,
its Go decoder and Validate() do (hand-written rules in ``schema.py``/``rules.py``).

    python3 tools/talos_types_table.py /work/.mirror/siderolabs+talos/repo
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "talos_init/userdata/talos_types.py"
SCHEMA_PATHS = (
    "pkg/machinery/config/schemas/config.schema.json",
    "pkg/machinery/config/types/v1alpha1/schemas/v1alpha1_config.schema.json",
    "pkg/machinery/config/schemas/v1alpha1_config.schema.json",
)
# Stability test configs of Talos name this kind differently from its schema's enum.
EXTRA_KIND_NAMES = {"UnattendedInstallConfig": "runtime.UnattendedInstallConfigV1Alpha1"}


def git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", f"{repo}/.git" if Path(f"{repo}/.git").exists() else repo, *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def revisions(repo: str) -> list[str]:
    tags = [t for t in git(repo, "tag").split() if re.fullmatch(r"v1\.(\d+)\.\d+", t)]
    tags = [t for t in tags if int(t.split(".")[1]) >= 4]
    return sorted(tags, key=lambda t: tuple(int(x) for x in t[1:].split("."))) + ["HEAD"]


def type_code(prop: dict, defs: dict, owner: str, name: str, out: dict) -> object:
    """JSON-schema property -> our code: s i b n a args [X] {X} or a def name."""
    if "$ref" in prop:
        ref = prop["$ref"].rsplit("/", 1)[-1]
        return ref
    if "oneOf" in prop:
        kinds = {json.dumps(o, sort_keys=True) for o in prop["oneOf"]}
        if kinds == {'{"type": "string"}', '{"items": {"type": "string"}, "type": "array"}'}:
            return "args"
        return "a"
    t = prop.get("type")
    if "enum" in prop and not t:
        return "s" if all(isinstance(v, str) for v in prop["enum"]) else "a"
    if isinstance(t, list):
        return "a"
    if t == "string":
        return "s"
    if t == "integer":
        return "i"
    if t == "number":
        return "n"
    if t == "boolean":
        return "b"
    if t == "array":
        return [type_code(prop.get("items", {}), defs, owner, name, out)]
    if t == "object":
        if "properties" in prop:
            sub = f"{owner}.{name}"
            out[sub] = struct_fields(prop, defs, sub, out)
            return sub
        values = prop.get("additionalProperties") or next(
            iter(prop.get("patternProperties", {}).values()), None
        )
        if isinstance(values, dict):
            return {"*": type_code(values, defs, owner, name, out)}
        return "a"
    return "a"


def struct_fields(d: dict, defs: dict, owner: str, out: dict) -> dict:
    return {
        f: type_code(p, defs, owner, f, out) for f, p in sorted(d.get("properties", {}).items())
    }


def merge(old: object, new: object) -> object:
    """Newer releases win on a type; fields only older releases had are kept."""
    if isinstance(old, dict) and isinstance(new, dict) and "*" not in new:
        out = dict(old)
        for k, v in new.items():
            out[k] = merge(old.get(k), v) if k in old else v
        return out
    return new


def kind_names(repo: str, rev: str) -> dict[str, str]:
    """Registered kind name -> Go type name, from the Go sources of one revision."""
    files = git(repo, "ls-tree", "-r", "--name-only", rev, "pkg/machinery/config/types/").split()
    consts: dict[str, str] = {}
    registered: dict[str, str] = {}
    for path in files:
        if not path.endswith(".go") or path.endswith("_test.go"):
            continue
        src = git(repo, "show", f"{rev}:{path}")
        consts.update(re.findall(r'^\s*(?:const\s+)?(\w+)\s*=\s*"([A-Z]\w+)"', src, re.M))
        for const, typ in re.findall(r"registry\.Register\((\w+),.*?return &(\w+)\{", src, re.S):
            registered[const] = typ
    return {consts[c]: t for c, t in registered.items() if c in consts}


def main(repo: str) -> None:
    types: dict[str, object] = {}
    kinds: dict[str, str] = {}
    for rev in revisions(repo):
        for path in SCHEMA_PATHS:
            try:
                schema = json.loads(git(repo, "show", f"{rev}:{path}"))
            except subprocess.CalledProcessError:
                continue
            defs = schema.get("$defs") or schema.get("definitions") or {}
            for name, d in defs.items():
                name = name if "." in name else f"v1alpha1.{name}"
                found: dict[str, object] = {}
                found[name] = struct_fields(d, defs, name, found)
                for k, v in found.items():
                    types[k] = merge(types.get(k), v) if k in types else v
        if rev == "HEAD" or int(rev.split(".")[1]) >= 5:
            by_type = {t: k for k, t in kind_names(repo, rev).items()}
            for name in list(types):
                typ = name.split(".", 1)[1]
                if typ in by_type:
                    kinds[by_type[typ]] = name
    # Schema refs in 1.4-1.6 lack the package prefix.
    for name, fields in types.items():
        if isinstance(fields, dict):
            types[name] = fix_refs(fields, types)
    kinds.update({k: v for k, v in EXTRA_KIND_NAMES.items() if v in types})
    lines = [
        '"""Talos machine config types, generated by tools/talos_types_table.py: do not edit.',
        "",
        "TYPES maps a Talos type to its fields; a field's type is s (text), i (integer),",
        "n (number), b (bool), a (any YAML), args (text or list of text), [X] (list of X),",
        "{'*': X} (mapping to X) or another TYPES name. KINDS maps each document kind of",
        "Talos 1.5 to 1.15 to its type; v1alpha1.Config is the v1alpha1 document (fields",
        'of 1.4 to 1.15 merged). Facts only: what is acted on is decided in schema.py."""',
        "",
        "TYPES: dict[str, dict[str, object]] = {",
    ]
    for name in sorted(types):
        lines.append(f"    {name!r}: {{")
        for f, code in sorted(types[name].items()):
            lines.append(f"        {f!r}: {code!r},")
        lines.append("    },")
    lines.append("}")
    lines.append("")
    lines.append("KINDS = {")
    for k in sorted(kinds):
        lines.append(f"    {k!r}: {kinds[k]!r},")
    lines.append("}")
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{OUT}: {len(types)} types, {len(kinds)} kinds")


def fix_refs(code: object, types: dict) -> object:
    if isinstance(code, dict):
        return {k: fix_refs(v, types) for k, v in code.items()}
    if isinstance(code, list):
        return [fix_refs(code[0], types)]
    if isinstance(code, str) and code not in ("s", "i", "n", "b", "a", "args") and "." not in code:
        return f"v1alpha1.{code}"
    return code


if __name__ == "__main__":
    main(sys.argv[1])
