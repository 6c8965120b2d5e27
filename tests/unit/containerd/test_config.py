"""containerd's static config and the registry hosts parse as TOML and say what Kubernetes needs."""

from __future__ import annotations

import base64
import tomllib

import pytest

from pathlib import Path

from talos_init.containerd.config import (
    ContainerdConfigError,
    Layout,
    render,
    render_hosts,
    write_hosts,
)

REPO = Path(__file__).resolve().parents[3]


def test_config_is_cri_ready_with_cgroupfs(tmp_path):
    """version 2, state/root, CRI with runc on cgroupfs, CNI in /opt/cni/bin and /etc/cni/net.d, hosts config_path."""
    doc = tomllib.loads(render(Layout()))
    assert doc["version"] == 2 and doc["root"] == "/var/lib/containerd" and doc["state"] == "/run/containerd"
    assert doc["oom_score"] == -999
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["containerd"]["runtimes"]["runc"]["options"]["NoPivotRoot"] is True  # initramfs /
    assert cri["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert cri["sandbox_image"].startswith("registry.k8s.io/pause:")
    assert "enable_cdi" not in cri  # not a containerd 1.6 setting: it would be silently ignored
    assert doc["grpc"]["address"] == "/run/containerd/containerd.sock"
    assert "io.containerd.grpc.v1.cri" not in doc.get("disabled_plugins", [])


def test_strings_cannot_break_out_of_toml(tmp_path):
    """A path with quotes and newlines stays one TOML string."""
    evil = 'x"\nversion = 3\n"'
    doc = tomllib.loads(render(Layout(sandbox_image=evil)))
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


def test_skip_fallback_promotes_the_last_mirror_to_server(tmp_path):
    """skipFallback: no upstream anywhere; the last mirror is the server with its own settings
    (Talos' DisableFallback), the others stay hosts in order."""
    doc = tomllib.loads(render_hosts(
        "ghcr.io", {"endpoints": ["https://a", "http://b:5000"], "skipFallback": True},
        {"b:5000": {"tls": {"insecureSkipVerify": True}}}, tmp_path)[0])
    assert doc["server"] == "http://b:5000" and doc["skip_verify"] is True
    assert doc["capabilities"] == ["pull", "resolve"]
    assert list(doc["host"]) == ["https://a"]
    only = tomllib.loads(render_hosts("ghcr.io", {"endpoints": ["https://m"], "skipFallback": True},
                                      {}, tmp_path)[0])
    # containerd 1.6 cannot parse a hosts.toml with no [host] table: the one mirror is both.
    assert only["server"] == "https://m" and list(only["host"]) == ["https://m"]


def test_bad_mirror_endpoint_is_named(tmp_path):
    """An endpoint that is not an http(s) URL is an error naming the registry and index."""
    with pytest.raises(ContainerdConfigError, match=r"mirrors.docker.io.endpoints\[1\]: 'ftp://x'"):
        render_hosts("docker.io", {"endpoints": ["https://ok", "ftp://x"]}, {}, tmp_path)


def test_write_hosts_catch_all_mirror_and_stale_removal(tmp_path):
    """'*' goes to _default; a registry dropped from the config loses its hosts.toml."""
    hosts = tmp_path / "certs.d"
    (hosts / "quay.io").mkdir(parents=True)
    (hosts / "quay.io/hosts.toml").write_text('server = "https://quay.io"\n')
    notes = write_hosts({"machine": {"registries": {"mirrors": {"*": {"endpoints": ["http://127.0.0.1:5000"]}},
                                                    "config": {"r": {"auth": {"username": "u"}}}}}},
                        hosts)
    assert (hosts / "_default/hosts.toml").exists()
    assert not (hosts / "quay.io/hosts.toml").exists()
    assert any("quay.io" in n for n in notes) and any("auth is not supported" in n for n in notes)
    assert write_hosts(None, tmp_path / "absent") == [] and not (tmp_path / "absent").exists()


def test_shipped_config_is_the_rendered_one():
    """configs/containerd/config.toml (what the image ships) is render(Layout()), byte for byte."""
    shipped = (REPO / "configs/containerd/config.toml").read_text()
    assert shipped == render(Layout()), (
        "configs/containerd/config.toml is stale: python -m talos_init.containerd.config "
        "> configs/containerd/config.toml")


def test_cri_customization_is_imported_by_a_glob():
    """The import is a glob: containerd starts when no customization exists (a plain missing
    path is fatal to it), and picks up Talos' 20-customization.part when one does."""
    imports = tomllib.loads(render(Layout()))["imports"]
    assert imports == ["/etc/cri/conf.d/*.part"]
    assert Path("/etc/cri/conf.d/20-customization.part").match(imports[0])


def test_image_ships_config_and_default_cni_where_containerd_reads_them():
    """The recipe puts the static config at --config's path and the CNI conf in conf_dir."""
    recipe = tomllib.loads((REPO / "initramfs/recipe.toml").read_text())["files"]
    assert recipe["configs/containerd/config.toml"] == str(Layout.config)
    conf_dir = tomllib.loads(render(Layout()))["plugins"]["io.containerd.grpc.v1.cri"]["cni"]["conf_dir"]
    assert Path(recipe["configs/cni/99-talos-init-default.conflist"]).parent == Path(conf_dir)


def test_cni_plugins_overlay_lower_is_where_the_image_puts_them():
    """disk/cnibin.py's lower dir is the recipe's CNI dest_dir inside the payload squashfs."""
    from talos_init.disk.cnibin import PLUGINS, TARGET

    recipe = tomllib.loads((REPO / "initramfs/recipe.toml").read_text())
    assert "cni" in recipe["squashfs"]["components"]
    assert PLUGINS == Path(recipe["squashfs"]["mountpoint"] + recipe["cni"]["dest_dir"])
    assert str(TARGET) == tomllib.loads(render(Layout()))["plugins"]["io.containerd.grpc.v1.cri"]["cni"]["bin_dir"]
