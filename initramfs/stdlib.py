"""Which standard-library modules the image needs, found by tracing imports.

``modulefinder`` (run under the image's own interpreter, with only the stdlib
and the staged packages on its path) follows every import statement of our
code and of the dependencies, including imports inside functions. The recipe
adds modules imported by name at run time and drops the ones a dependency
only imports on platforms or paths we never take; both lists carry a reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

STDLIB = Path("/usr/lib/python3.11")

_TRACER = r"""
import json, modulefinder, sys
req = json.load(sys.stdin)
mf = modulefinder.ModuleFinder(path=req["path"], excludes=req["excludes"])
for name in req["modules"]:
    mf.import_hook(name)
out = {name: getattr(m, "__file__", None) for name, m in mf.modules.items()}
json.dump({"modules": out, "bad": sorted(mf.badmodules)}, sys.stdout)
"""


@dataclass(frozen=True)
class Traced:
    modules: dict[str, str]  # stdlib module name -> host file (.py or extension .so)
    builtin: list[str]  # compiled into the interpreter: nothing to ship


def trace(interpreter: str, site_dir: Path, modules: list[str], excludes: list[str]) -> Traced:
    """Trace from every module named (all of ours and the dependencies', plus the recipe's extra)."""
    path = [str(site_dir), str(STDLIB), str(STDLIB / "lib-dynload")]
    request = {"path": path, "modules": ["encodings", "site", *modules], "excludes": excludes}
    proc = subprocess.run([interpreter, "-I", "-S", "-c", _TRACER], input=json.dumps(request),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"import tracing failed:\n{proc.stderr}")
    found = json.loads(proc.stdout)["modules"]
    stdlib, builtin = {}, []
    for name, file in sorted(found.items()):
        if file is None:
            if name in sys.builtin_module_names:
                builtin.append(name)
            continue
        if Path(file).is_relative_to(STDLIB) and not Path(file).is_relative_to(site_dir):
            stdlib[name] = file
    return Traced(stdlib, builtin)
