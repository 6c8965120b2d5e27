"""The control wire format: requests parsed strictly, every message versioned."""

import json

import pytest

from talos_init.control import protocol
from talos_init.control.protocol import ControlError


def test_request_round_trips():
    """An encoded request parses back to the same id, method and params."""
    req = protocol.parse_request(protocol.request(3, "logs", {"id": "kubelet"}))
    assert (req.id, req.method, req.params) == (3, "logs", {"id": "kubelet"})


@pytest.mark.parametrize("line, code, words", [
    (b"[]", "bad_request", "JSON object"),
    (b'{"v":1,"id":true,"method":"x"}', "bad_request", "id"),
    (b'{"v":1,"id":1,"method":""}', "bad_request", "method"),
    (b'{"v":1,"id":1,"method":"x","params":[1]}', "bad_request", "params"),
    (b'{"id":1,"method":"x"}', "unsupported_version", "None"),
    (b"\xff", "bad_request", "not JSON"),
])
def test_bad_requests_name_the_problem(line, code, words):
    """Each malformed request raises a ControlError with a code and words naming the field."""
    with pytest.raises(ControlError) as info:
        protocol.parse_request(line)
    assert info.value.code == code and words in info.value.message


def test_every_message_carries_the_version():
    """Results, items, ends and errors are all one line with v=1."""
    for data in (protocol.result(1, "x"), protocol.item(1, 2), protocol.end(1),
                 protocol.error(None, "internal", "m")):
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        assert json.loads(data)["v"] == 1
