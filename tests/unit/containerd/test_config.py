"""containerd's generated config and registry hosts parse as TOML and say what Kubernetes needs."""

from __future__ import annotations

import base64
import tomllib

import pytest

from talos_init.containerd.config import (
    ContainerdConfigError,
    Layout,
    install_default_cni,
    render,
    render_hosts,
    write_all,
)


def test_config_is_cri_ready_with_cgroupfs(tmp_path):
    """version 2, state/root, CRI with runc on cgroupfs, Debian's CNI bin dir, hosts config_path."""
    doc = tomllib.loads(render(Layout(), []))
    assert doc["version"] == 2 and doc["root"] == "/var/lib/containerd" and doc["state"] == "/run/containerd"
    assert doc["oom_score"] == -999
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["containerd"]["runtimes"]["runc"]["options"]["NoPivotRoot"] is True  # initramfs /
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/etc/cni/net.d"}
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert cri["sandbox_image"].startswith("registry.k8s.io/pause:")
    assert doc["grpc"]["address"] == "/run/containerd/containerd.sock"
    assert "io.containerd.grpc.v1.cri" not in doc.get("disabled_plugins", [])


def test_strings_cannot_break_out_of_toml(tmp_path):
    """A path with quotes and newlines stays one TOML string."""
    evil = 'x"\nversion = 3\n"'
    doc = tomllib.loads(render(Layout(sandbox_image=evil), []))
    assert doc["version"] == 2 and doc["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == evil


def test_mirror_hosts_toml(tmp_path):
    """Mirrors become hosts.toml entries in order; upstream fallback unless skipFallback; TLS options apply."""
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").decode()
    text, files = render_hosts(
        "docker.io", {"endpoints": ["https://mirror.local:5000", "http://10.0.0.1:5000"],
                      "overridePath": True},
        {"mirror.local:5000": {"tls": {"ca": ca}}, "10.0.0.1:5000": {"tls": {"insecureSkipVerify": True}}},
        tmp_path / "_ca")
    doc = tomllib.loads(text)
    assert doc["server"] == "https://registry-1.docker.io"
    assert list(doc["host"]) == ["https://mirror.local:5000", "http://10.0.0.1:5000"]
    first = doc["host"]["https://mirror.local:5000"]
    assert first["capabilities"] == ["pull", "resolve"] and first["override_path"] is True
    assert files[tmp_path / "_ca/mirror.local_5000-ca.crt"].startswith(b"-----BEGIN CERTIFICATE")
    assert doc["host"]["http://10.0.0.1:5000"]["skip_verify"] is True
    no_fallback = tomllib.loads(render_hosts("ghcr.io", {"endpoints": ["https://m"], "skipFallback": True},
                                             {}, tmp_path)[0])
    assert "server" not in no_fallback


def test_bad_mirror_endpoint_is_named(tmp_path):
    """An endpoint that is not an http(s) URL is an error naming the registry and index."""
    with pytest.raises(ContainerdConfigError, match=r"mirrors.docker.io.endpoints\[1\]: 'ftp://x'"):
        render_hosts("docker.io", {"endpoints": ["https://ok", "ftp://x"]}, {}, tmp_path)


def test_write_all_catch_all_mirror_and_stale_removal(tmp_path):
    """'*' goes to _default; a registry dropped from the config loses its hosts.toml."""
    layout = Layout(config=tmp_path / "config.toml", hosts_dir=tmp_path / "certs.d",
                    customization=tmp_path / "custom.part")
    (tmp_path / "certs.d/quay.io").mkdir(parents=True)
    (tmp_path / "certs.d/quay.io/hosts.toml").write_text('server = "https://quay.io"\n')
    (tmp_path / "custom.part").write_text("[metrics]\n")
    notes = write_all({"machine": {"registries": {"mirrors": {"*": {"endpoints": ["http://127.0.0.1:5000"]}}}}},
                      layout)
    assert (tmp_path / "certs.d/_default/hosts.toml").exists()
    assert not (tmp_path / "certs.d/quay.io/hosts.toml").exists()
    assert tomllib.loads(layout.config.read_text())["imports"] == [str(tmp_path / "custom.part")]
    assert any("quay.io" in n for n in notes)


def test_default_cni_only_when_none(tmp_path):
    """The default bridge conf is installed into an empty conf dir, never next to an existing network."""
    default = tmp_path / "10-default.conflist"
    default.write_text("{}")
    conf = tmp_path / "net.d"
    assert install_default_cni(conf, default) is True and (conf / default.name).exists()
    other = tmp_path / "net2.d"
    other.mkdir()
    (other / "05-cilium.conflist").write_text("{}")
    assert install_default_cni(other, default) is False and not (other / default.name).exists()
