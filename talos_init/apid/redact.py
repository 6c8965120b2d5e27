"""Secrets out of the machine config before it leaves the node, decided by the schema.

Each field of ``userdata/schema.py`` says whether it holds a secret
(``secret=True``); every value under such a field is replaced, its shape
(mapping keys, list length) kept so the reader still sees what is set. Where
the schema cannot know (an ``ANY`` value, the free keys of a map such as
``machine.env``) a key whose name says secret is redacted too. A URL's
userinfo (``http://user:password@proxy``) is redacted in every string.
"""

from __future__ import annotations

import re
from typing import Any

from talos_init.userdata import schema
from talos_init.userdata.spec import ListOf, MapOf, Spec, Struct

REDACTED = "[redacted]"

_SECRET_NAME = re.compile(r"(key|token|secret|password|passphrase|credentials?|auth)$", re.IGNORECASE)
# End like a secret's name but are not secret.
_PUBLIC_NAME = frozenset({"publickey", "keyusage", "aduserportkey"})
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]*)@")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and name.lower() not in _PUBLIC_NAME


def _empty(value: Any) -> bool:
    return value in (None, "", [], {})


def _hide(value: Any) -> Any:
    """Every leaf replaced; keys and list lengths kept. Empty values stay (nothing to hide)."""
    if isinstance(value, dict):
        return {k: _hide(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return value if _empty(value) else REDACTED


def _strip_userinfo(text: str) -> str:
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def _by_name(value: Any) -> Any:
    """No schema here: redact by key name, and URL userinfo."""
    if isinstance(value, dict):
        return {k: _hide(v) if is_secret_name(str(k)) else _by_name(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_by_name(v) for v in value]
    if isinstance(value, str):
        return _strip_userinfo(value)
    return value


def redact(value: Any, spec: Spec = schema.V1ALPHA1) -> Any:
    """A copy of ``value`` (shaped as ``spec``) with every secret replaced by REDACTED."""
    if isinstance(spec, schema.LazyTalos):  # a type of the generated Talos table
        spec = schema.talos_spec(spec.type_name)
    if isinstance(spec, Struct) and isinstance(value, dict):
        out = {}
        for key, v in value.items():
            field = spec.fields.get(key)
            if field is None:  # not in the table (a newer document folded in): judge by name
                out[key] = _hide(v) if is_secret_name(str(key)) else _by_name(v)
            elif field.secret:
                out[key] = _hide(v)
            else:
                out[key] = redact(v, field.spec)
        return out
    if isinstance(spec, ListOf) and isinstance(value, list):
        return [redact(v, spec.item) for v in value]
    if isinstance(spec, MapOf) and isinstance(value, dict):
        # Free keys: the schema knows the values' type, not what each key means.
        return {k: _hide(v) if is_secret_name(str(k)) else redact(v, spec.value)
                for k, v in value.items()}
    if isinstance(value, str):
        return _strip_userinfo(value)
    return _by_name(value)


def redact_document(doc: Any) -> Any:
    """One document of a multi-document config: its kind's table, else names and URLs."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    kinds = {**schema.OTHER_KINDS, **schema.KIND_DOCS}
    spec = kinds.get(kind) if isinstance(kind, str) else schema.V1ALPHA1
    return redact(doc, spec) if spec is not None else _by_name(doc)
