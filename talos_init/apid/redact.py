"""Secrets out of the machine config before it leaves the node.

A field is secret when its name says so (key, token, secret, password...),
wherever it sits: a new secret field in a future config version is redacted
without anyone updating a list. Certificates (crt) stay: they are public.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

_SECRET = re.compile(r"(key|token|secret|password|passphrase|credentials?)$", re.IGNORECASE)
_PUBLIC = frozenset({"publickey", "keyusage"})  # end in "key" but are not secret


def is_secret(name: str) -> bool:
    return bool(_SECRET.search(name)) and name.lower() not in _PUBLIC


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret field's value replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret(str(k)) and v not in (None, "", [], {}) else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
