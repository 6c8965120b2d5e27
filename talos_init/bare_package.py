"""Register a package without running its ``__init__`` until a name of its own is asked for.

pyroute2's ``__init__`` imports the whole library (NDB and sqlite, IPDB, wireless,
Plan 9, nftables...) only to re-export names; networkd needs the route socket and the
DHCP client. Registered bare, ``import pyroute2.iproute.linux`` loads that module and
what it imports, nothing else. The package stays whole for any other caller: the
first attribute that is not a submodule (``from pyroute2 import IPRoute``) runs the
real ``__init__`` into the same module object, then answers.
"""

from __future__ import annotations

import importlib.util
import sys


def install(name: str) -> None:
    """Put package ``name`` in sys.modules bare; a no-op when it is already imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.loader is None:
        raise ImportError(f"{name} is not an importable package", name=name)
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader  # checked above; a local so the closure keeps it narrowed

    def complete(attr: str) -> object:
        # A dunder (hasattr probes) or a submodule (``from pkg import sub``, which the import
        # system loads when this says no) must not run the whole package.
        if attr.startswith("__") or importlib.util.find_spec(f"{name}.{attr}") is not None:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        del module.__getattr__
        loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[name] = module
