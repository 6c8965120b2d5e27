"""Wire format of the control socket: one JSON object per line, no I/O here.

Request:   {"v": 1, "id": 7, "method": "services.list", "params": {}}
Result:    {"v": 1, "id": 7, "result": ...}
Stream:    {"v": 1, "id": 7, "item": ...}  (any number)  then  {"v": 1, "id": 7, "end": true}
Error:     {"v": 1, "id": 7, "error": {"code": "not_found", "message": "..."}}

A request whose "v" is not ours is refused with ``unsupported_version`` so an
older apid and a newer PID 1 fail loudly instead of misreading each other.
"""

from __future__ import annotations

import json
from typing import Any

VERSION = 1

# Error codes: stable strings that apid maps to its own errors.
BAD_REQUEST = "bad_request"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_METHOD = "unknown_method"
NOT_FOUND = "not_found"
FAILED_PRECONDITION = "failed_precondition"
PERMISSION_DENIED = "permission_denied"
TOO_LARGE = "too_large"
OVERLOADED = "overloaded"
INTERNAL = "internal"
UNAVAILABLE = "unavailable"

CODES = frozenset({BAD_REQUEST, UNSUPPORTED_VERSION, UNKNOWN_METHOD, NOT_FOUND,
                   FAILED_PRECONDITION, PERMISSION_DENIED, TOO_LARGE, OVERLOADED,
                   INTERNAL, UNAVAILABLE})


class ControlError(Exception):
    """An error with a stable code; handlers raise it, clients receive it."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Request:
    __slots__ = ("id", "method", "params")

    def __init__(self, id: int | str, method: str, params: dict[str, Any]):
        self.id = id
        self.method = method
        self.params = params


def encode(message: dict[str, Any]) -> bytes:
    # default=str: an enum or a Path in a handler's result is shown, not fatal.
    return json.dumps({"v": VERSION, **message}, separators=(",", ":"), default=str).encode() + b"\n"


def request(id: int | str, method: str, params: dict[str, Any] | None = None) -> bytes:
    return encode({"id": id, "method": method, "params": params or {}})


def result(id: int | str | None, value: Any) -> bytes:
    return encode({"id": id, "result": value})


def item(id: int | str | None, value: Any) -> bytes:
    return encode({"id": id, "item": value})


def end(id: int | str | None) -> bytes:
    return encode({"id": id, "end": True})


def error(id: int | str | None, code: str, message: str) -> bytes:
    return encode({"id": id, "error": {"code": code, "message": message}})


def parse_request(line: bytes) -> Request:
    """Decode one request line; ControlError names what is wrong with it."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise ControlError(BAD_REQUEST, f"request is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ControlError(BAD_REQUEST, "request must be a JSON object")
    if obj.get("v") != VERSION:
        raise ControlError(UNSUPPORTED_VERSION,
                           f"protocol version {obj.get('v')!r} not supported, this is v{VERSION}")
    rid = obj.get("id")
    if not isinstance(rid, (int, str)) or isinstance(rid, bool):
        raise ControlError(BAD_REQUEST, "request id must be an integer or a string")
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise ControlError(BAD_REQUEST, "request method must be a non-empty string")
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise ControlError(BAD_REQUEST, "request params must be a JSON object")
    return Request(rid, method, params)


def parse_response(line: bytes) -> dict[str, Any]:
    """Decode one response line (client side); malformed input is an error."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise ControlError(BAD_REQUEST, f"response is not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise ControlError(UNSUPPORTED_VERSION, f"response is not control protocol v{VERSION}")
    return obj
