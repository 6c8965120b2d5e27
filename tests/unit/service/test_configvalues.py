"""Machine-config placeholders are filled at start, and a gap names the missing value."""

import json

import pytest

from talos_init.service.configvalues import ConfigValueError, resolve
from tests.unit.service.conftest import define

CONFIG = {"machine": {"kubelet": {"nodeIP": "10.0.2.15", "extraArgs": {"v": 2, "rotate": True}},
                      "network": {"hostname": "node1"}}}


def test_placeholders_defaults_and_args_from(tmp_path):
    """argv and env values are filled; args_from appends sorted --key=value flags."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    d = define("kubelet", argv=["/bin/kubelet", "--node-ip=${config:machine.kubelet.nodeIP}",
                                "--x=${config:machine.kubelet.missing:-none}", "cost=$$5"],
               environment={"HOST": "${config:machine.network.hostname}"},
               args_from={"config": "machine.kubelet.extraArgs"})
    argv, env = resolve(d, path)
    assert argv == ["/bin/kubelet", "--node-ip=10.0.2.15", "--x=none", "cost=$5",
                    "--rotate=true", "--v=2"]
    assert env == {"HOST": "node1"}


def test_missing_value_or_wrong_shape_is_an_error(tmp_path):
    """A required value that is absent, or not a scalar, names its path."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG))
    with pytest.raises(ConfigValueError, match="config value machine.kubelet.podCIDR is not set"):
        resolve(define("k", argv=["/bin/k", "${config:machine.kubelet.podCIDR}"]), path)
    with pytest.raises(ConfigValueError, match="machine.kubelet is a dict, not a single value"):
        resolve(define("k", argv=["/bin/k", "${config:machine.kubelet}"]), path)
    with pytest.raises(ConfigValueError, match="config value machine.x is not set"):
        resolve(define("k", argv=["/bin/k", "${config:machine.x}"]), tmp_path / "absent.json")


def test_no_placeholders_never_reads_the_config(tmp_path):
    """A service without placeholders starts even when the config is unreadable."""
    (tmp_path / "config.json").write_text("{not json")
    argv, _ = resolve(define("plain", argv=["/bin/p", "-v"]), tmp_path / "config.json")
    assert argv == ["/bin/p", "-v"]
