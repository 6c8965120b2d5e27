"""Keep PID 1's memory small: modules its dependencies import but it never uses.

structlog imports asyncio (5 MiB with its dependencies) for its async log
methods, and asyncio imports ssl (4 MiB) if it can. PID 1 has no asyncio
loop and speaks no TLS. ``apply()`` runs only in PID 1's entry point
(``python -m talos_init``), before anything else is imported; library users,
daemons and tests are unaffected.
"""

from __future__ import annotations

import importlib
import sys
import types

BLOCKED = ("ssl",)  # importing it raises ImportError; asyncio copes (ssl = None)
DEFERRED = ("asyncio",)  # loaded for real on first attribute use


class _Deferred(types.ModuleType):
    """A placeholder that imports the real module the first time it is used."""

    def __getattr__(self, attr: str) -> object:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def apply() -> None:
    for name in BLOCKED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    for name in DEFERRED:
        if name not in sys.modules:
            sys.modules[name] = _Deferred(name)
