"""``osctl gen config CLUSTER ENDPOINT``: a PKI, controlplane.yaml, worker.yaml and an osctl config.

The machine configs have the layout ``talosctl gen config`` writes for the Talos
version asked (``--talos-version``, default the newest known): from 1.14 on, a
v1alpha1 document with machine identity and tokens, and the cluster settings in
their own documents (KubeClusterConfig, KubeNetworkConfig, KubeAPIServerCAConfig,
...); before 1.14 one v1alpha1 document with base64 PEM in ``crt``/``key``. One
difference from Talos: worker.yaml keeps ``machine.ca.key``, because this node
signs its own API serving certificate at start (Talos workers get theirs from
trustd, which we do not have).
"""

from __future__ import annotations

import base64
import os
import secrets
import string
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from talos_init import pki
from talos_init.apid.protocol import ADMIN
from talos_init.osctl.client import OsctlError

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits
NEWEST = (1, 15)
MULTI_DOC_FROM = (1, 14)  # the first Talos whose gen config writes the Kube* documents


def parse_version(text: str) -> tuple[int, int]:
    """"1.11", "v1.11" or "v1.11.2" -> (1, 11); a version Talos never had is an error."""
    parts = text.strip().lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise OsctlError(f"--talos-version {text!r}: expected a version such as 1.11") from None
    if major != 1 or not 3 <= minor <= NEWEST[1]:
        raise OsctlError(f"--talos-version {text!r}: configs of Talos 1.3 to "
                         f"1.{NEWEST[1]} can be written")
    return major, minor


def bootstrap_token() -> str:
    """A kubeadm-style token, the format Talos uses for machine and cluster tokens."""
    pick = lambda n: "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pair(cert: Any, key: Any) -> dict[str, str]:
    return {"crt": pki.encode_field(pki.cert_pem(cert)), "key": pki.encode_field(pki.key_pem(key))}


def endpoint_host(endpoint: str) -> str:
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if not parts.hostname:
        raise OsctlError(f"endpoint {endpoint!r}: no host in it (expected https://HOST:6443)")
    return parts.hostname


def _write_private(path: Path, data: bytes) -> None:
    # Every file here holds a secret or sits next to one: owner-only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def client_cert(name: str, roles: list[str], pki_dir: Path, outdir: Path, *, days: int = 365,
                force: bool = False) -> list[Path]:
    """NAME.crt and NAME.key, signed by pki_dir/ca.{crt,key}, with the roles as Organization."""
    try:
        ca_cert = pki.load_cert((pki_dir / "ca.crt").read_bytes(), str(pki_dir / "ca.crt"))
        ca_key = pki.load_key((pki_dir / "ca.key").read_bytes(), str(pki_dir / "ca.key"))
    except OSError as e:
        raise OsctlError(f"cannot read the machine CA: {e}") from None
    except pki.PkiError as e:
        raise OsctlError(str(e)) from None
    files = [outdir / f"{name}.crt", outdir / f"{name}.key"]
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise OsctlError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    cert, key = pki.new_client_cert(ca_cert, ca_key, name, roles, days=days)
    outdir.mkdir(parents=True, exist_ok=True)
    _write_private(files[0], pki.cert_pem(cert))
    _write_private(files[1], pki.key_pem(key))
    return files


def _doc(kind: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1alpha1", "kind": kind, **fields}


def split_documents(v1: dict[str, Any]) -> list[dict[str, Any]]:
    """A single-document config in the newer layout: what Talos 1.14+ moved out of v1alpha1."""
    v1 = {**v1, "machine": dict(v1["machine"]), "cluster": dict(v1["cluster"])}
    m, c = v1["machine"], v1["cluster"]
    m.pop("kubelet", None)
    m.pop("network", None)
    docs: list[dict[str, Any]] = []
    ident = {k: c.pop(k) for k in ("id", "secret") if k in c}
    if ident:
        docs.append(_doc("DiscoveryIdentityConfig", clusterID=ident.get("id", ""),
                         clusterSecret=ident.get("secret", "")))
    docs.append(_doc("KubeClusterConfig", clusterName=c.pop("clusterName"),
                     endpoint=c.pop("controlPlane")["endpoint"]))
    docs.append(_doc("KubeNetworkConfig", **c.pop("network")))
    ca = c.pop("ca")
    crt = base64.b64decode(ca["crt"]).decode()
    if ca.get("key"):
        docs.append(_doc("KubeAPIServerCAConfig", issuingCA={
            "cert": crt, "key": base64.b64decode(ca["key"]).decode()}))
    else:
        docs.append(_doc("KubeAPIServerCAConfig", acceptedCAs=[crt]))
    if "aggregatorCA" in c:
        agg = c.pop("aggregatorCA")
        docs.append(_doc("KubeAggregatorCAConfig", issuingCA={
            "cert": base64.b64decode(agg["crt"]).decode(),
            "key": base64.b64decode(agg["key"]).decode()}))
    if "serviceAccount" in c:
        sa = c.pop("serviceAccount")
        docs.append(_doc("KubeServiceAccountConfig", issuer={
            "privateKey": base64.b64decode(sa["key"]).decode()}))
    return [v1, *docs]


def generate(cluster: str, endpoint: str, outdir: Path, *, force: bool = False,
             context_endpoints: list[str] | None = None,
             talos_version: tuple[int, int] = NEWEST) -> list[Path]:
    if not cluster or any(c.isspace() for c in cluster):
        raise OsctlError(f"cluster name {cluster!r} must be non-empty without spaces")
    host = endpoint_host(endpoint)
    url = endpoint if "://" in endpoint else f"https://{endpoint}:6443"
    files = {name: outdir / name for name in
             ("controlplane.yaml", "worker.yaml", "osctlconfig", "pki/ca.crt", "pki/ca.key",
              "pki/admin.crt", "pki/admin.key")}
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not force:
        raise OsctlError(f"refusing to overwrite {', '.join(existing)} (use --force)")

    machine_ca, machine_ca_key = pki.new_ca(cluster)
    k8s_ca, k8s_ca_key = pki.new_ca("kubernetes")
    aggregator_ca, aggregator_ca_key = pki.new_ca("front-proxy")
    etcd_ca, etcd_ca_key = pki.new_ca("etcd")
    admin, admin_key = pki.new_client_cert(machine_ca, machine_ca_key, "admin", [ADMIN])
    sa_key = pki.new_key()
    machine_token, cluster_token = bootstrap_token(), bootstrap_token()
    cluster_id, cluster_secret = _b64(secrets.token_bytes(32)), _b64(secrets.token_bytes(32))

    def machine(kind: str) -> dict[str, Any]:
        return {"type": kind, "token": machine_token, "ca": _pair(machine_ca, machine_ca_key),
                "certSANs": [host], "kubelet": {}, "network": {}}

    common_cluster = {
        "id": cluster_id, "secret": cluster_secret,
        "controlPlane": {"endpoint": url}, "clusterName": cluster,
        "network": {"dnsDomain": "cluster.local", "podSubnets": ["10.244.0.0/16"],
                    "serviceSubnets": ["10.96.0.0/12"]},
        "token": cluster_token,
    }
    controlplane = {
        "version": "v1alpha1", "debug": False, "machine": machine("controlplane"),
        "cluster": {**common_cluster,
                    "secretboxEncryptionSecret": _b64(secrets.token_bytes(32)),
                    "ca": _pair(k8s_ca, k8s_ca_key),
                    "aggregatorCA": _pair(aggregator_ca, aggregator_ca_key),
                    "serviceAccount": {"key": pki.encode_field(pki.key_pem(sa_key))},
                    "etcd": {"ca": _pair(etcd_ca, etcd_ca_key)}},
    }
    worker = {
        "version": "v1alpha1", "debug": False, "machine": machine("worker"),
        "cluster": {**common_cluster,
                    "ca": {"crt": pki.encode_field(pki.cert_pem(k8s_ca)), "key": ""}},
    }
    osctlconfig = {
        "context": cluster,
        "contexts": {cluster: {
            "endpoints": context_endpoints or [host], "nodes": [],
            "ca": pki.encode_field(pki.cert_pem(machine_ca)),
            "crt": pki.encode_field(pki.cert_pem(admin)),
            "key": pki.encode_field(pki.key_pem(admin_key)),
        }},
    }

    def dump(v1: dict[str, Any]) -> bytes:
        if talos_version < MULTI_DOC_FROM:
            return yaml.safe_dump(v1, sort_keys=False).encode()
        docs = split_documents(v1)
        return yaml.safe_dump_all(docs, sort_keys=False).encode()

    (outdir / "pki").mkdir(parents=True, exist_ok=True)
    texts: dict[str, bytes] = {
        "controlplane.yaml": dump(controlplane),
        "worker.yaml": dump(worker),
        "osctlconfig": yaml.safe_dump(osctlconfig, sort_keys=False).encode(),
        "pki/ca.crt": pki.cert_pem(machine_ca), "pki/ca.key": pki.key_pem(machine_ca_key),
        "pki/admin.crt": pki.cert_pem(admin), "pki/admin.key": pki.key_pem(admin_key),
    }
    for name, data in texts.items():
        _write_private(files[name], data)
    return list(files.values())
