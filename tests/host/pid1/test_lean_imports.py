"""PID 1's deferred modules load for real when used, and blocked ones fail to import."""

import subprocess
import sys

CODE = """
import sys
from talos_init import lean
lean.apply()
import talos_init.init
assert "asyncio.events" not in sys.modules, "asyncio was loaded by importing init"
import asyncio
assert asyncio.get_event_loop_policy() is not None
assert "asyncio.events" in sys.modules
try:
    import ssl
except ImportError:
    print("ok")
"""


def test_deferred_asyncio_loads_on_use_and_ssl_is_blocked():
    """Importing init leaves asyncio unloaded; using it loads it; ssl cannot be imported."""
    out = subprocess.run([sys.executable, "-I", "-c", CODE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"
