"""osctl as a real CLI process: gen config makes a PKI a real apid accepts, outputs parse."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import yaml

from talos_init import pki
from talos_init.userdata import validate

from .conftest import ROOT, start_apid


def osctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "talos_init.osctl", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_gen_config_is_accepted_by_a_real_apid(node, tmp_path):
    """The PKI, worker.yaml and osctl config from `gen config` let the admin talk to an apid booted from it."""
    out = tmp_path / "gen"
    r = osctl("gen", "config", "demo", "https://127.0.0.1:6443", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("controlplane.yaml", "worker.yaml", "osctlconfig", "pki/ca.key", "pki/admin.key"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    # The newest layout (several documents); the node's effective config folds them.
    assert (out / "worker.yaml").read_text().count("\n---\n") >= 3
    worker = validate.parse((out / "worker.yaml").read_bytes()).config.effective
    controlplane = validate.parse((out / "controlplane.yaml").read_bytes()).config.effective
    assert worker["version"] == "v1alpha1" and worker["machine"]["type"] == "worker"
    assert controlplane["machine"]["type"] == "controlplane"
    assert controlplane["cluster"]["controlPlane"]["endpoint"] == "https://127.0.0.1:6443"
    assert worker["machine"]["ca"] == controlplane["machine"]["ca"]
    assert controlplane["cluster"]["ca"]["key"] and worker["cluster"]["ca"]["key"] == ""
    admin = pki.load_cert(pki.decode_field(
        yaml.safe_load((out / "osctlconfig").read_text())["contexts"]["demo"]["crt"], "crt"), "crt")
    assert [a.value for a in admin.subject if a.oid.dotted_string == "2.5.4.10"] == ["os:admin"]

    # The effective config is the JSON form of the YAML: start a second apid from it.
    (tmp_path / "cfg").mkdir()
    config = tmp_path / "cfg" / "config.json"
    config.write_text(json.dumps(worker))
    proc, host, port = start_apid(tmp_path / "cfg", config, tmp_path / "no-pid1.sock")
    try:
        r = osctl("--osctlconfig", str(out / "osctlconfig"), "-e", f"{host}:{port}", "version")
        assert r.returncode == 0 and "talos-init" in r.stdout, r.stderr
        # Without PID 1 behind it, apid says so instead of hanging.
        r = osctl("--osctlconfig", str(out / "osctlconfig"), "-e", f"{host}:{port}", "services")
        assert r.returncode == 1 and "control socket" in r.stderr and "unreachable" in r.stderr, r.stderr
        # A node from another cluster is not trusted by this cluster's osctl config.
        r = osctl("--osctlconfig", str(out / "osctlconfig"), "-e", node.target, "version")
        assert r.returncode == 1 and "untrusted server" in r.stderr, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_gen_config_refuses_to_overwrite(tmp_path):
    """A second `gen config` into the same directory refuses unless --force."""
    assert osctl("gen", "config", "a", "10.0.0.1", "--output-dir", str(tmp_path)).returncode == 0
    r = osctl("gen", "config", "a", "10.0.0.1", "--output-dir", str(tmp_path))
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    assert osctl("gen", "config", "a", "10.0.0.1", "--output-dir", str(tmp_path), "--force").returncode == 0


def test_outputs_are_tables_json_and_yaml(node):
    """services prints a table by default and parseable JSON and YAML on request."""
    config = node.osctlconfig("reader", ["os:reader"])
    table = node.osctl(config, "services")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "REASON"]
    assert rows[1].split()[:2] == ["kubelet", "backoff"]
    as_json = json.loads(node.osctl(config, "-o", "json", "services").stdout)
    as_yaml = yaml.safe_load(node.osctl(config, "-o", "yaml", "services").stdout)
    assert as_json == as_yaml == list(node.supervisor.services.values())


def test_several_nodes_are_labelled(node):
    """With two -n targets each answer is labelled by node, and one failure makes the exit non-zero."""
    config = node.osctlconfig("reader", ["os:reader"])
    r = node.osctl(config, "-n", f"{node.target},127.0.0.1:1", "-o", "json", "version")
    assert r.returncode == 1 and "127.0.0.1:1 unreachable" in r.stderr
    assert json.loads(r.stdout)["node"] == node.target


def test_context_errors_are_explained(tmp_path):
    """A missing config file and an unknown context are both named."""
    r = osctl("--osctlconfig", str(tmp_path / "nope"), "version")
    assert r.returncode == 1 and "no osctl config at" in r.stderr
    (tmp_path / "c").write_text("context: a\ncontexts: {a: {endpoints: [127.0.0.1]}}\n")
    r = osctl("--osctlconfig", str(tmp_path / "c"), "--context", "b", "version")
    assert r.returncode == 1 and "no context 'b' (known: a)" in r.stderr


def test_gen_config_output_passes_validate(tmp_path):
    """`osctl validate` (the node's own validator) accepts both generated machine configs."""
    assert osctl("gen", "config", "demo", "https://10.0.2.15:6443", "--output-dir",
                 str(tmp_path)).returncode == 0
    for name, kind in (("controlplane.yaml", "controlplane"), ("worker.yaml", "worker")):
        r = osctl("validate", str(tmp_path / name))
        assert r.returncode == 0 and f"valid {kind} config" in r.stdout, r.stdout + r.stderr
    (tmp_path / "broken.yaml").write_text("version: v1alpha1\nmachine: {type: toaster}\n")
    r = osctl("validate", str(tmp_path / "broken.yaml"))
    assert r.returncode != 0 and "invalid" in r.stdout


def test_gen_config_older_talos_layout_is_one_document(tmp_path):
    """--talos-version 1.11 writes the single v1alpha1 document Talos wrote then; same node."""
    new, old = tmp_path / "new", tmp_path / "old"
    assert osctl("gen", "config", "demo", "10.0.2.15", "--output-dir", str(new)).returncode == 0
    r = osctl("gen", "config", "demo", "10.0.2.15", "--output-dir", str(old),
              "--talos-version", "v1.11")
    assert r.returncode == 0, r.stderr
    for name in ("worker.yaml", "controlplane.yaml"):
        docs = list(yaml.safe_load_all((old / name).read_text()))
        assert len(docs) == 1 and docs[0]["cluster"]["controlPlane"]["endpoint"]
        assert len(list(yaml.safe_load_all((new / name).read_text()))) > 3
        assert osctl("validate", str(old / name)).returncode == 0
    r = osctl("gen", "config", "demo", "10.0.2.15", "--output-dir", str(old), "--force",
              "--talos-version", "0.14")
    assert r.returncode != 0 and "Talos 1.3 to 1.15" in r.stderr


def test_gen_cert_makes_a_working_reader(tmp_path):
    """`gen cert --role os:reader` signs a certificate a real apid accepts as reader, and refuses reboot."""
    out = tmp_path / "gen"
    assert osctl("gen", "config", "demo", "10.0.2.15", "--output-dir", str(out)).returncode == 0
    r = osctl("gen", "cert", "alice", "--role", "os:reader", "--pki", str(out / "pki"),
              "--output-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    worker = validate.parse((out / "worker.yaml").read_bytes()).config.effective
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(worker))
    proc, host, port = start_apid(tmp_path / "cfg", tmp_path / "cfg" / "config.json",
                                  tmp_path / "no-pid1.sock")
    try:
        ctx = yaml.safe_load((out / "osctlconfig").read_text())
        ctx["contexts"]["demo"]["crt"] = pki.encode_field((tmp_path / "alice.crt").read_bytes())
        ctx["contexts"]["demo"]["key"] = pki.encode_field((tmp_path / "alice.key").read_bytes())
        (tmp_path / "alice.yaml").write_text(yaml.safe_dump(ctx))
        base = ["--osctlconfig", str(tmp_path / "alice.yaml"), "-e", f"{host}:{port}"]
        assert osctl(*base, "version").returncode == 0
        r = osctl(*base, "reboot")
        assert r.returncode == 1 and "your certificate (alice) has os:reader" in r.stderr, r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
