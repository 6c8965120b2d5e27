"""A small schema language for YAML nodes: each spec checks one node and returns its value.

Specs never raise on bad input: they report a ``Problem`` naming the path and the
node's line:column through the ``Walk`` and return ``INVALID``. The Talos field table
in ``schema.py`` is written in this language; the engine is in ``validate.py``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor

ACTED = "acted"  # this node does something with the field
UNSUPPORTED = "unsupported"  # valid Talos, accepted, reported once as not supported here

ERROR = "error"
WARNING = "warning"
NOTICE = "unsupported"

MAX_NODES = 200_000  # aliases can expand a small file into a huge tree: stop walking past this
MAX_DEPTH = 64


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()
Path = tuple[str | int, ...]


def show_path(path: Path) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += ("." if out else "") + seg
    return out or "<document>"


def pattern_of(path: Path) -> str:
    """The path with list indexes as [*]: one unsupported notice per field, not per item."""
    return re.sub(r"\[\d+\]", "[*]", show_path(path))


@dataclass(frozen=True, order=True)
class Problem:
    line: int  # 1-based
    column: int  # 1-based
    path: str
    message: str
    severity: str = ERROR

    def format(self, source: str = "config") -> str:
        tag = "" if self.severity == ERROR else f"{self.severity}: "
        return f"{source}:{self.line}:{self.column}: {self.path}: {tag}{self.message}"


@dataclass
class Walk:
    """What a validation run collects: problems, and where each path is in the file."""

    problems: list[Problem] = field(default_factory=list)
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    noticed: set[str] = field(default_factory=set)
    nodes: int = 0
    too_big: bool = False

    def mark(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def error(
        self,
        path: Path,
        where: yaml.Node | tuple[int, int] | None,
        message: str,
        severity: str = ERROR,
    ) -> None:
        if isinstance(where, yaml.Node):
            line, col = self.mark(where)
        elif where is not None:
            line, col = where
        else:
            line, col = self.marks.get(path, (1, 1))
        self.problems.append(Problem(line, col, show_path(path), message, severity))

    def notice_unsupported(self, path: Path, node: yaml.Node, why: str = "") -> None:
        key = pattern_of(path)
        if key in self.noticed:
            return
        self.noticed.add(key)
        msg = "accepted and ignored: talos-init does not act on it" + (f" ({why})" if why else "")
        self.problems.append(Problem(*self.mark(node), key, msg, NOTICE))

    def count(self) -> bool:
        """False once the tree is too big to walk (alias bombs)."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.too_big = True
            return False
        return True


_constructor = SafeConstructor()


def _scalar_value(node: yaml.ScalarNode) -> Any:
    """Construct a plain JSON-able scalar; timestamps and binary stay text."""
    tag = node.tag
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return _constructor.construct_yaml_bool(node)
    if tag == "tag:yaml.org,2002:int":
        return _constructor.construct_yaml_int(node)
    if tag == "tag:yaml.org,2002:float":
        value = _constructor.construct_yaml_float(node)
        return value if math.isfinite(value) else str(node.value)  # JSON has no NaN or infinity
    return str(node.value)


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = node.tag.rsplit(":", 1)[-1]
    text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    return f"{kind} {text!r}"


def mapping_items(
    node: yaml.MappingNode, path: Path, walk: Walk
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """Key/value pairs with merge keys resolved; duplicate and non-text keys reported."""
    try:
        _constructor.flatten_mapping(node)
    except yaml.YAMLError as e:
        walk.error(path, node, f"bad merge key: {getattr(e, 'problem', e)}")
        return []
    seen: dict[str, yaml.Node] = {}
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        if not isinstance(knode, yaml.ScalarNode) or is_null(knode):
            walk.error(path, knode, f"keys must be text, got {describe(knode)}")
            continue
        key = str(knode.value)
        if key in seen:
            line, _ = walk.mark(seen[key])
            walk.error(path + (key,), knode, f"duplicate key (first defined on line {line})")
            continue
        seen[key] = knode
        out.append((key, knode, vnode))
    return out


class Spec:
    """Checks one node. ``check`` returns the normalized value or INVALID."""

    expect = "a value"

    def check(self, node: yaml.Node, path: Path, walk: Walk, acted: bool) -> Any:
        raise NotImplementedError


class Scalar(Spec):
    """A scalar whose text is checked by ``convert`` (raises ValueError with the reason)."""

    tags: tuple[
        str, ...
    ] = ()  # accepted resolved tags; empty = any scalar (Go decodes into string)

    def check(self, node: yaml.Node, path: Path, walk: Walk, acted: bool) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            walk.error(path, node, f"expected {self.expect}, got {describe(node)}")
            return INVALID
        if self.tags and node.tag not in self.tags:
            walk.error(path, node, f"expected {self.expect}, got {describe(node)}")
            return INVALID
        try:
            return self.convert(node)
        except (ValueError, OverflowError, TypeError, yaml.YAMLError) as e:
            walk.error(path, node, f"{e}")
            return INVALID

    def convert(self, node: yaml.ScalarNode) -> Any:
        return str(node.value)


class Str(Scalar):
    expect = "text"

    def __init__(
        self,
        pattern: str | None = None,
        what: str = "",
        lower: bool = False,
        nonempty: bool = False,
        check: Callable[[str], str] | None = None,
    ) -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what
        self.lower = lower
        self.nonempty = nonempty
        self.extra = check

    def convert(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if self.nonempty and not text.strip():
            raise ValueError("must not be empty")
        if self.pattern and not self.pattern.fullmatch(text):
            raise ValueError(f"{text!r} is not {self.what or 'valid'}")
        if self.extra:
            text = self.extra(text)
        return text.lower() if self.lower else text


class Bool(Scalar):
    expect = "true or false"
    tags = ("tag:yaml.org,2002:bool",)

    def convert(self, node: yaml.ScalarNode) -> Any:
        return _constructor.construct_yaml_bool(node)


class Int(Scalar):
    expect = "an integer"
    tags = ("tag:yaml.org,2002:int",)

    def __init__(self, lo: int = 0, hi: int = 2**32 - 1) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, node: yaml.ScalarNode) -> Any:
        value = _constructor.construct_yaml_int(node)
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{value} is out of range {self.lo}..{self.hi}")
        return value


class Number(Scalar):
    expect = "a number"
    tags = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

    def convert(self, node: yaml.ScalarNode) -> Any:
        return _scalar_value(node)


class Enum(Scalar):
    def __init__(self, *values: str, aliases: dict[str, str] | None = None) -> None:
        self.values = values
        self.aliases = aliases or {}
        self.expect = "one of " + ", ".join(values)

    def convert(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if text in self.aliases:
            return self.aliases[text]
        if text not in self.values:
            raise ValueError(f"{text!r} is not one of {', '.join(self.values)}")
        return text


HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?",
    re.IGNORECASE,
)


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _cidr(text: str) -> str:
    if "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR (address/prefix, e.g. 10.0.0.0/8)")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR (address/prefix, e.g. 10.0.0.0/8)") from None


def _address(text: str) -> str:
    """An interface address: CIDR, or a bare IP meaning a host prefix (as Talos)."""
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or address/prefix") from None


def _hostname(text: str) -> str:
    if not HOSTNAME_RE.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a valid hostname (letters, digits, '-' and '.', labels of 1-63)"
        )
    return text.rstrip(".").lower()


def host_or_ip(text: str) -> str:
    try:
        return _ip(text)
    except ValueError:
        pass
    try:
        return _hostname(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an IP address nor a hostname") from None


def _subnet_filter(text: str) -> str:
    """``10.0.0.0/8``, a bare IP, or ``!10.0.0.0/8`` (exclusion), as kubelet nodeIP / etcd subnets."""
    neg = text.startswith("!")
    body = text[1:] if neg else text
    try:
        net = str(ipaddress.ip_network(body, strict=False))
    except ValueError:
        raise ValueError(f"{text!r} is not a subnet (CIDR, optionally prefixed by '!')") from None
    return ("!" if neg else "") + net


class Text(Scalar):
    """A scalar checked by a plain function ``str -> str``."""

    def __init__(self, fn: Callable[[str], str], expect: str) -> None:
        self.fn = fn
        self.expect = expect

    def convert(self, node: yaml.ScalarNode) -> Any:
        return self.fn(str(node.value))


IP = Text(_ip, "an IP address")
CIDR = Text(_cidr, "a CIDR")
ADDRESS = Text(_address, "an IP address or CIDR")
HOSTNAME = Text(_hostname, "a hostname")
HOST_OR_IP = Text(host_or_ip, "a hostname or IP address")
SUBNET_FILTER = Text(_subnet_filter, "a subnet")


class URL(Scalar):
    expect = "a URL"

    def __init__(self, *schemes: str) -> None:
        self.schemes = schemes

    def convert(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value).strip()
        try:
            parts = urlsplit(text)
            port = parts.port  # raises ValueError on a bad port
        except ValueError as e:
            raise ValueError(f"{text!r} is not a valid URL: {e}") from None
        if self.schemes and parts.scheme not in self.schemes:
            raise ValueError(f"{text!r}: the scheme must be {' or '.join(self.schemes)}")
        if not parts.hostname:
            raise ValueError(f"{text!r} has no host")
        if port == 0:
            raise ValueError(f"{text!r}: port 0 is not valid")
        return text


class Duration(Scalar):
    """A Go ``time.Duration`` string such as 1h30m, 90s, 500ms."""

    expect = "a duration such as 90s or 1h30m"
    RE = re.compile(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+|0")

    def convert(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if not self.RE.fullmatch(text):
            raise ValueError(f"{text!r} is not a duration such as 90s or 1h30m")
        return text


class FileMode(Scalar):
    """Permissions: Talos writes ``0o644``; YAML 1.1 ``0644`` and decimal also work."""

    expect = "a file mode such as 0o644"

    def convert(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value).replace("_", "")
        if node.tag == "tag:yaml.org,2002:int":
            value = _constructor.construct_yaml_int(node)
        elif re.fullmatch(r"0o[0-7]+", text):
            value = int(text, 8)  # int() reads the 0o prefix itself
        else:
            raise ValueError(f"{text!r} is not a file mode such as 0o644")
        if not 0 <= value <= 0o7777:
            raise ValueError(f"{oct(value)} is not a file mode (0o0..0o7777)")
        return value


PEM_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)\r?\n-----END ([A-Z0-9 ]+)-----", re.DOTALL
)


def _der_length_ok(der: bytes) -> bool:
    """The outer ASN.1 SEQUENCE header agrees with the data length."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    n = first & 0x7F
    if n == 0 or n > 4 or len(der) < 2 + n:
        return False
    return 2 + n + int.from_bytes(der[2 : 2 + n], "big") == len(der)


def check_pem(text: str, labels: tuple[str, ...], what: str) -> bytes:
    """Base64 of PEM, as Talos stores ``crt``/``key``; returns the PEM bytes."""
    try:
        pem = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64 (Talos stores PEM data base64-encoded)") from None
    blocks = PEM_RE.findall(pem)
    if not blocks:
        raise ValueError(f"{what} decodes to no PEM block (expected -----BEGIN {labels[0]}-----)")
    for begin, body, end in blocks:
        label = begin.decode()
        if begin != end:
            raise ValueError(f"{what}: PEM block BEGIN {label} ends with END {end.decode()}")
        if label not in labels:
            raise ValueError(f"{what}: PEM block is {label!r}, expected {' or '.join(labels)}")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what}: the PEM body is not valid base64") from None
        if not _der_length_ok(der):
            raise ValueError(f"{what}: the PEM body is not DER data (corrupt or truncated)")
    return pem


CERT_LABELS = ("CERTIFICATE",)
KEY_LABELS = ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ED25519 PRIVATE KEY")


class PEM(Scalar):
    def __init__(self, labels: tuple[str, ...], what: str, allow_empty: bool = False) -> None:
        self.labels = labels
        self.what = what
        self.allow_empty = allow_empty  # Talos writes key: "" on workers
        self.expect = f"base64-encoded PEM {what}"

    def convert(self, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        if not text.strip():
            if self.allow_empty:
                return ""
            raise ValueError(f"{self.what} is empty")
        check_pem(text, self.labels, self.what)
        return "".join(text.split())


class Any_(Spec):
    """Free-form data (static pods, extraConfig...): any YAML, kept as JSON-able values."""

    def check(self, node: yaml.Node, path: Path, walk: Walk, acted: bool) -> Any:
        return self.plain(node, path, walk, 0)

    def plain(self, node: yaml.Node, path: Path, walk: Walk, depth: int) -> Any:
        if not walk.count():
            return INVALID
        if depth > MAX_DEPTH:
            walk.error(path, node, f"nested deeper than {MAX_DEPTH} levels")
            return INVALID
        if isinstance(node, yaml.MappingNode):
            return {
                k: self.plain(v, path + (k,), walk, depth + 1)
                for k, _, v in mapping_items(node, path, walk)
            }
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(v, path + (i,), walk, depth + 1) for i, v in enumerate(node.value)]
        try:
            assert isinstance(node, yaml.ScalarNode)  # the composer makes only these three kinds
            return _scalar_value(node)
        except (ValueError, OverflowError, yaml.YAMLError) as e:
            walk.error(path, node, str(e))
            return INVALID


ANY = Any_()


class ListOf(Spec):
    def __init__(self, item: Spec, unique: bool = False) -> None:
        self.item = item
        self.unique = unique
        self.expect = "a list"

    def check(self, node: yaml.Node, path: Path, walk: Walk, acted: bool) -> Any:
        if not isinstance(node, yaml.SequenceNode):
            walk.error(path, node, f"expected a list, got {describe(node)}")
            return INVALID
        out = []
        for i, child in enumerate(node.value):
            if not walk.count():
                return INVALID
            walk.marks[path + (i,)] = walk.mark(child)
            value = self.item.check(child, path + (i,), walk, acted)
            if self.unique and value is not INVALID and value in out:
                walk.error(path + (i,), child, f"duplicate entry {value!r}")
            out.append(value)
        return out


class MapOf(Spec):
    """A mapping with free keys (checked by ``key``) and values of one spec."""

    def __init__(
        self, value: Spec, key: Callable[[str], str] | None = None, key_what: str = ""
    ) -> None:
        self.value = value
        self.key = key
        self.key_what = key_what

    def check(self, node: yaml.Node, path: Path, walk: Walk, acted: bool) -> Any:
        if not isinstance(node, yaml.MappingNode):
            walk.error(path, node, f"expected a mapping, got {describe(node)}")
            return INVALID
        out = {}
        for key, knode, vnode in mapping_items(node, path, walk):
            if not walk.count():
                return INVALID
            walk.marks[path + (key,)] = walk.mark(vnode)
            if self.key:
                try:
                    self.key(key)
                except ValueError as e:
                    walk.error(path + (key,), knode, f"bad key: {e}")
                    continue
            out[key] = self.value.check(vnode, path + (key,), walk, acted)
        return out


@dataclass(frozen=True)
class Field:
    spec: Spec
    support: str = ACTED
    required: bool = False
    default: Any = None  # put into the effective config when absent (None: leave out)
    why: str = ""  # shown with the unsupported notice
    secret: bool = False  # holds a secret: redacted wherever the config is shown


def F(spec: Spec, **kw: Any) -> Field:
    return Field(spec, **kw)


def U(spec: Spec = ANY, why: str = "", secret: bool = False) -> Field:
    return Field(spec, support=UNSUPPORTED, why=why, secret=secret)


class Struct(Spec):
    """A mapping with named fields; unknown keys are errors naming the closest known field."""

    def __init__(self, name: str, fields: dict[str, Field]) -> None:
        self.name = name
        self.fields = fields
        self.expect = f"a mapping ({name})"

    def check(self, node: yaml.Node, path: Path, walk: Walk, acted: bool) -> Any:
        if not isinstance(node, yaml.MappingNode):
            walk.error(path, node, f"expected {self.expect}, got {describe(node)}")
            return INVALID
        out: dict[str, Any] = {}
        for key, knode, vnode in mapping_items(node, path, walk):
            if not walk.count():
                return INVALID
            fpath = path + (key,)
            walk.marks[fpath] = walk.mark(knode)
            spec = self.fields.get(key)
            if spec is None:
                close = difflib.get_close_matches(key, list(self.fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                walk.error(fpath, knode, f"unknown field {key!r} in {self.name}{hint}")
                continue
            if is_null(vnode):
                continue  # Go decodes null as the zero value: same as absent
            if acted and spec.support == UNSUPPORTED:
                walk.notice_unsupported(fpath, knode, spec.why)
            out[key] = spec.spec.check(vnode, fpath, walk, acted and spec.support == ACTED)
        for name, spec in self.fields.items():
            if name in out:
                continue
            if spec.required:
                walk.error(
                    path + (name,), node, f"required field {name!r} is missing in {self.name}"
                )
            elif spec.default is not None:
                out[name] = spec.default() if callable(spec.default) else spec.default
        return out
