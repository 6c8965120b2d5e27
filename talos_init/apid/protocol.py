"""apid's wire format and its table of calls with the roles allowed to make them.

One request per TLS connection, JSON lines both ways (the control socket's
shape without ids, since a connection carries a single call):

    client:  {"v": 1, "method": "logs", "params": {"id": "containerd", "follow": true}}
             [an upload call (image.import) then sends its bytes in frames: a 4-byte
              big-endian length and that many bytes, at most MAX_FRAME; length 0 ends it]
    server:  {"v": 1, "result": ...}                      a unary call
             {"v": 1, "item": ...} ... {"v": 1, "end": true}   a stream
             {"v": 1, "error": {"code": "permission_denied", "message": "..."}}

No I/O here: osctl imports this module too.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

VERSION = 1
DEFAULT_PORT = 50000

ADMIN, OPERATOR, READER = "os:admin", "os:operator", "os:reader"
ROLES = (ADMIN, OPERATOR, READER)

_R = frozenset({READER, OPERATOR, ADMIN})
_O = frozenset({OPERATOR, ADMIN})
_A = frozenset({ADMIN})


@dataclass(frozen=True)
class Method:
    roles: frozenset[str]
    stream: bool  # replies with items then end, instead of one result
    summary: str
    upload: bool = False  # the request is followed by framed bytes (see the module doc)


METHODS: dict[str, Method] = {
    "version": Method(_R, False, "versions of talos-init, Python and the kernel"),
    "services": Method(_R, False, "services with state, health, uptime and restarts"),
    "service.start": Method(_O, False, "start a service"),
    "service.stop": Method(_O, False, "stop a service"),
    "service.restart": Method(_O, False, "restart a service"),
    "logs": Method(_R, True, "a service's captured output (tail, follow)"),
    "events": Method(_R, True, "service state changes and boot phases (follow)"),
    "timeline": Method(_R, False, "boot phases and service states with times since boot"),
    "dmesg": Method(_R, True, "the kernel log (follow)"),
    "ps": Method(_R, False, "processes with cpu and memory"),
    "containers": Method(_R, False, "containerd containers (namespace)"),
    "stats": Method(_R, False, "cpu and memory per service"),
    "memory": Method(_R, False, "/proc/meminfo"),
    "mounts": Method(_R, False, "mounted filesystems with usage"),
    "interfaces": Method(_R, False, "network interfaces and addresses"),
    "routes": Method(_R, False, "IPv4 and IPv6 routes"),
    "reboot": Method(_O, False, "reboot the node"),
    "shutdown": Method(_O, False, "power the node off"),
    "ls": Method(_A, False, "list a directory"),
    "read": Method(_A, True, "read a file (bounded size)"),
    "config": Method(_A, False, "the effective machine config, secrets redacted"),
    "image.import": Method(_A, False, "import an OCI or docker image archive into k8s.io",
                           upload=True),
    "image.list": Method(_R, False, "images in containerd's k8s.io namespace"),
    "upgrade": Method(_A, False, "write an uploaded unified kernel image to the other boot slot",
                      upload=True),
    "rollback": Method(_A, False, "boot the other slot next"),
    "reset": Method(_A, False, "wipe the stored config and /var (and boot slots), then reboot"),
    "config.raw": Method(_A, False, "the machine config as applied, secrets included (what osctl "
                                    "edit and patch start from)"),
    "config.history": Method(_R, False, "the stored config's version and the last ones "
                                        "(time, mode, source)"),
    "disks": Method(_R, False, "block devices with size, model, serial and transport"),
    "apply-config": Method(_A, False, "validate a machine config and apply it "
                                      "(mode auto, no-reboot, staged, try; dry_run)"),
}

MAX_FRAME = 1 << 20  # bytes in one upload frame

# Error codes (stable strings; osctl turns them into words).
BAD_REQUEST = "bad_request"
PERMISSION_DENIED = "permission_denied"
NOT_FOUND = "not_found"
UNKNOWN_METHOD = "unknown_method"
UNSUPPORTED_VERSION = "unsupported_version"
TOO_LARGE = "too_large"
OVERLOADED = "overloaded"
TIMEOUT = "timeout"
UNAVAILABLE = "unavailable"
UNIMPLEMENTED = "unimplemented"
FAILED_PRECONDITION = "failed_precondition"
INVALID_CONFIG = "invalid_config"
ABORTED = "aborted"  # another apply-config holds the node's one apply slot  # apply-config: the validator's problems, one per line
INTERNAL = "internal"


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def roles_allowed(method: str) -> frozenset[str]:
    return METHODS[method].roles


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, **message}, separators=(",", ":"), default=str).encode() + b"\n"


def request(method: str, params: dict[str, Any] | None = None, node: str | None = None) -> bytes:
    """A request line; ``node``: the endpoint forwards the call there (see apid/proxy.py)."""
    return encode({"method": method, "params": params or {}, **({"node": node} if node else {})})


def error(code: str, message: str) -> bytes:
    return encode({"error": {"code": code, "message": message}})


def frame(data: bytes) -> bytes:
    """One upload frame; ``frame(b"")`` ends the upload."""
    return struct.pack(">I", len(data)) + data


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(BAD_REQUEST, f"request is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ApiError(BAD_REQUEST, "request must be a JSON object")
    if obj.get("v") != VERSION:
        raise ApiError(UNSUPPORTED_VERSION,
                       f"API version {obj.get('v')!r} not supported, this node speaks v{VERSION}")
    method, params = obj.get("method"), obj.get("params", {})
    if not isinstance(method, str):
        raise ApiError(BAD_REQUEST, "request method must be a string")
    if method not in METHODS:
        raise ApiError(UNKNOWN_METHOD, f"no call {method!r}")
    if not isinstance(params, dict):
        raise ApiError(BAD_REQUEST, "request params must be a JSON object")
    return method, params


def parse_reply(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(BAD_REQUEST, f"reply is not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise ApiError(UNSUPPORTED_VERSION, f"reply is not API v{VERSION}")
    err = obj.get("error")
    if isinstance(err, dict):
        raise ApiError(str(err.get("code", INTERNAL)), str(err.get("message", "")))
    return obj
