"""A worker config that carries machine.ca.key is accepted with a warning; without it, silence."""

from __future__ import annotations

from talos_init.userdata import validate
from tests.unit.userdata.pki import fill
from tests.unit.userdata.test_validate_errors import BASE


def _key_warnings(text: str) -> list:
    result = validate.parse(fill(text))
    assert result.config is not None, "\n".join(p.format() for p in result.problems)
    return [p for p in result.warnings if p.path == "machine.ca.key"]


def test_worker_with_ca_key_is_warned_at_the_key():
    """The warning names machine.ca.key and the line it is on; the config still applies."""
    text = BASE.replace('        key: ""', "        key: @MACHINE_KEY@")
    found = _key_warnings(text)
    assert len(found) == 1 and "os:admin" in found[0].message, found
    assert found[0].line == fill(text).splitlines().index(
        next(line for line in fill(text).splitlines() if line.startswith("        key: "))) + 1


def test_worker_without_ca_key_and_controlplane_with_it_are_not_warned():
    """The Talos layouts (worker: no key; controlplane: key) raise no such warning."""
    assert _key_warnings(BASE) == []
    controlplane = BASE.replace("type: worker", "type: controlplane").replace(
        '        key: ""', "        key: @MACHINE_KEY@")
    result = validate.parse(fill(controlplane))
    assert not [p for p in result.warnings if p.path == "machine.ca.key"]
