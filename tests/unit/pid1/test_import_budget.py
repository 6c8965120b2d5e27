"""What PID 1 imports at start: no asyncio, ssl, yaml, stdlib logging or dataclasses, and one
logging stack.

Each module PID 1 imports costs Rss and, under TCG, start-up time
(docs/for-devs/performance.md). These are the ones it has no use for.
"""

import json
import subprocess
import sys
from pathlib import Path

from talos_init.service.loader import compile_directory

REPO = Path(__file__).resolve().parents[3]
# dataclasses imports inspect (ast, dis, tokenize) and compiles source per class: PID 1's
# records are talos_init.record's.
UNWANTED = ("asyncio", "ssl", "yaml", "logging", "structlog", "traceback", "argparse",
            "dataclasses", "inspect")

CODE = """
import json, sys
from pathlib import Path
import talos_init.init, talos_init.service.supervisor, talos_init.service.control
import talos_init.disk.early, talos_init.hardening  # imported by their boot phases
from talos_init.service.loader import load_directory
load_directory(Path(sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""


def pid1_modules(services: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-I", "-c", CODE, str(services)], capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout))


def test_pid1_start_imports_none_of_the_unwanted_modules(tmp_path):
    """init, the supervisor and the compiled definitions load without the unwanted modules."""
    for name, data in compile_directory(REPO / "services").items():
        (tmp_path / name).write_bytes(data)
    loaded = pid1_modules(tmp_path)
    assert "talos_init.service.definition" in loaded
    assert [m for m in UNWANTED if m in loaded] == []


def test_yaml_definitions_still_load_and_are_what_pulls_yaml_in():
    """The YAML sources load too (overlays, tests): the check above would see yaml if it came."""
    assert "yaml" in pid1_modules(REPO / "services")


def test_one_logging_stack():
    """No module of the node imports structlog: talos_init.log is the one logging stack."""
    offenders = []
    for f in sorted((REPO / "talos_init").rglob("*.py")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.strip().startswith(("import structlog", "from structlog")):
                offenders.append(f"{f.relative_to(REPO)}:{n}")
    assert offenders == []


# What PID 1 imports before it forks the kernel module loader is on the path to containerd
# twice over (the loader waits for it, PID 1 waits for the loader): none of these.
PRELOAD_UNWANTED = ("re", "pathlib", "typing", "json", "enum", "fnmatch", "urllib.parse",
                    "collections")


def test_the_module_loader_forks_before_the_heavy_imports():
    """talos_init.preload and what its child runs import none of re, pathlib, typing, json..."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import talos_init.preload as p; "
            "p.boot_stages(); print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True)  # -I -S: as the image's launcher runs it
    loaded = set(out.stdout.split())
    assert "talos_init.disk.drivers" in loaded and "talos_init.kmodules" in loaded
    assert [m for m in PRELOAD_UNWANTED if m in loaded] == []
