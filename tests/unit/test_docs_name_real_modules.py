"""The modules the docs name exist: a file ``x.py`` or a dotted ``talos_init.x`` in backticks
in README.md or docs/**/*.md is in the repository (a mention followed by ", removed" is
history, and exempt)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FILE = re.compile(r"`([\w./-]+\.py)`(?!, removed)")
DOTTED = re.compile(r"`(talos_init(?:\.\w+)+)")


def sources(repo: Path = REPO) -> set[str]:
    return {p.relative_to(repo).as_posix() for p in repo.rglob("*.py")
            if not {".venv", "build", ".git"} & set(p.relative_to(repo).parts)}


def missing_names(text: str, files: set[str]) -> list[str]:
    """The names in ``text`` that are not there: a file name matches any path ending in it; a
    dotted name is the longest module it starts with, then attributes looked up in it."""
    out = [ref for ref in FILE.findall(text)
           if not any(f == ref or f.endswith("/" + ref) for f in files)]
    out += [ref for ref in DOTTED.findall(text) if not _resolves(ref)]
    return out


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent is not a package
            found = False
        if found:
            obj = importlib.import_module(name)
            for attr in parts[k:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def test_every_module_the_docs_name_exists():
    """README and docs name only files and modules that are there."""
    files = sources()
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    stale = [f"{doc.relative_to(REPO)}: {name}" for doc in docs
             for name in missing_names(doc.read_text(encoding="utf-8"), files)]
    assert not stale, "docs name modules that are not there:\n" + "\n".join(stale)


def test_stale_names_are_found():
    """A renamed module or function is reported; a real one or history is not."""
    files = {"talos_init/control/pid1.py"}
    text = ("| control | `control_pid1.py` | `control/pid1.py` | `pid1.py`\n"
            "`talos_init.service.loader.load_directory` `talos_init.service.definition.parse`\n"
            "`talos_init.service.definition.load_directory` `talos_init.nothere`\n"
            "a trick (`lean.py`, removed)")
    assert missing_names(text, files) == ["control_pid1.py",
                                          "talos_init.service.definition.load_directory",
                                          "talos_init.nothere"]
