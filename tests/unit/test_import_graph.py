"""talos_init's import graph: no cycles, and PID 1 apart from the programs it supervises.

The graph is read from the source with ast, so an import inside a function (the way a cycle
hides) is an edge like one at the top. Imports under ``if TYPE_CHECKING:`` never run: they
count for the boundary, not for cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "talos_init"

# Cycles left on purpose, each as the set of modules in it.
KNOWN_CYCLES = {
    # broken in the regroup, after #19/#20 merge (both edit disk/)
    frozenset({"talos_init.disk.install", "talos_init.disk.var"}),
}

# PID 1: the boot checklist, its phases and its runtime, the server side of its control
# socket, and the service supervisor. A name covers its submodules.
PID1 = ("talos_init.init", "talos_init.mounts", "talos_init.cmdline", "talos_init.signals",
        "talos_init.shutdown", "talos_init.hardening", "talos_init.powerbutton",
        "talos_init.preload", "talos_init.loop", "talos_init.reaper", "talos_init.events",
        "talos_init.kmodules", "talos_init.loopdev", "talos_init.proctree",
        "talos_init.control.server", "talos_init.control.pid1", "talos_init.control.events",
        "talos_init.service")

# The programs PID 1 supervises (each runs in its own process) and the client.
PROGRAMS = ("talos_init.networkd", "talos_init.userdata", "talos_init.disk", "talos_init.apid",
            "talos_init.kubelet", "talos_init.containerd", "talos_init.osctl",
            "talos_init.trustd", "talos_init.devices", "talos_init.machinesetup")

# Imports across the line that exist today, each with why. Keys are (importer, imported).
VAR_PHASE = "PID 1's var phase finds and mounts the /var disk before any service starts"
SHARED_PARSER = "the kernel cmdline parser is shared, not PID 1's own: moves to lib/ in the regroup"
KNOWN_CROSSINGS = {
    ("talos_init.init", "talos_init.disk.early"): VAR_PHASE,
    ("talos_init.init", "talos_init.disk.var"): VAR_PHASE,
    ("talos_init.preload", "talos_init.disk"): VAR_PHASE + " (the ext4 module name)",
    ("talos_init.preload", "talos_init.disk.drivers"): VAR_PHASE + " (its drivers, preloaded)",
    ("talos_init.disk.early", "talos_init.preload"): VAR_PHASE + " (waits on the preload)",
    ("talos_init.disk.drivers", "talos_init.kmodules"): VAR_PHASE + " (loads the drivers)",
    ("talos_init.disk.var", "talos_init.kmodules"): VAR_PHASE + " (loads ext4)",
    ("talos_init.disk.var", "talos_init.mounts"): VAR_PHASE + " (is /var mounted already)",
    ("talos_init.networkd.daemon", "talos_init.cmdline"): SHARED_PARSER,
    ("talos_init.networkd.model", "talos_init.cmdline"): SHARED_PARSER,
    ("talos_init.userdata.__main__", "talos_init.cmdline"): SHARED_PARSER,
    ("talos_init.networkd.dhcp", "talos_init.cmdline"): SHARED_PARSER + " (DHCP host names)",
    ("talos_init.disk.state", "talos_init.mounts"):
        "is STATE mounted already, with PID 1's parser: moves to lib/ in the regroup",
    ("talos_init.disk.cnibin", "talos_init.mounts"):
        "is /opt/cni/bin mounted already, with PID 1's parser: moves to lib/ in the regroup",
    ("talos_init.apid.facts", "talos_init.mounts"):
        "reads the mount table with PID 1's parser: moves to lib/ in the regroup",
    ("talos_init.machinesetup", "talos_init.hardening"):
        "applies the machine config's sysctls with PID 1's code: splits in the regroup",
    ("talos_init.hardening", "talos_init.userdata.targets"):
        "machine.files rules shared with the validator, for machinesetup's half of hardening: "
        "splits in the regroup",
}


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of import nodes under an ``if TYPE_CHECKING:``."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return hidden


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module, line, runs) for each talos_init import in one module, wherever it is.

    ``from P import n`` is an edge to P.n when that is a module, else to P."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hidden = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found += [(t, node.lineno, id(node) not in hidden) for t in targets
                  if t.split(".")[0] == "talos_init" and t != name]
    return found


def graph(package: Path = PACKAGE) -> dict[str, dict[str, tuple[int, bool]]]:
    """importer -> {imported: (first line, whether it runs)}."""
    known = module_names(package)
    out: dict[str, dict[str, tuple[int, bool]]] = {}
    for name, path in known.items():
        edges: dict[str, tuple[int, bool]] = {}
        for target, line, runs in imports(name, path, known):
            old = edges.get(target)
            edges[target] = (line, runs) if old is None else (old[0], old[1] or runs)
        out[name] = edges
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle, as a path that ends where it starts, per strongly connected component
    of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_path_in(component, edges) for component in components]


def _path_in(component: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth first)."""
    start = min(component)
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(edges.get(node, set()) & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came:
                    came[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def _in(name: str, group: tuple[str, ...]) -> bool:
    return any(name == g or name.startswith(g + ".") for g in group)


def crossings(g: dict[str, dict[str, tuple[int, bool]]]) -> dict[tuple[str, str], int]:
    """(importer, imported) -> line, for each import between PID 1 and a program."""
    found = {}
    for importer, edges in g.items():
        for imported, (line, _runs) in edges.items():
            if (_in(importer, PID1) and _in(imported, PROGRAMS)) or \
                    (_in(importer, PROGRAMS) and _in(imported, PID1)):
                found[(importer, imported)] = line
    return found


def runtime_edges(g: dict[str, dict[str, tuple[int, bool]]]) -> dict[str, set[str]]:
    return {m: {t for t, (_line, runs) in e.items() if runs} for m, e in g.items()}


def test_no_import_cycle_but_the_known_one():
    """No module reaches itself through imports, at top level or inside functions, but the
    listed exception; each cycle found is named as a path."""
    found = cycles(runtime_edges(graph()))
    new = [" -> ".join(c) for c in found if frozenset(c) not in KNOWN_CYCLES]
    assert not new, "import cycles: " + "; ".join(new)
    gone = KNOWN_CYCLES - {frozenset(c) for c in found}
    assert not gone, f"no longer cycles, drop them from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def test_pid1_and_the_programs_import_each_other_only_where_listed():
    """PID 1 never imports a supervised program's package and no program imports PID 1's
    modules, but for the listed crossings (each with its reason)."""
    g = graph()
    found = crossings(g)
    paths = module_names()
    new = [f"{a} imports {b} ({paths[a].relative_to(PACKAGE.parent)}:{line})"
           for (a, b), line in sorted(found.items()) if (a, b) not in KNOWN_CROSSINGS]
    assert not new, "imports across PID 1's boundary: " + "; ".join(new)
    gone = set(KNOWN_CROSSINGS) - set(found)
    assert not gone, f"no longer imported, drop them from KNOWN_CROSSINGS: {sorted(gone)}"


def test_every_listed_module_exists():
    """The groups name real modules, so a rename cannot empty a rule silently (trustd comes
    with #24 and is allowed to be missing until then)."""
    names = module_names()
    missing = [g for g in PID1 + PROGRAMS
               if g != "talos_init.trustd" and not any(_in(n, (g,)) for n in names)]
    assert not missing, f"not in talos_init: {missing}"


# -- the checker itself, on a package made for it --------------------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "talos_init"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_cycle_hidden_in_a_function_is_found_and_named(tmp_path):
    """An import inside a function closes a cycle like a top-level one; the message is the
    path round it."""
    root = _package(tmp_path, {
        "a.py": "from talos_init import b\n",
        "b.py": "def f():\n    from talos_init.c import x\n",
        "c.py": "from . import a\nx = 1\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from talos_init import a\n",
    })
    assert cycles(runtime_edges(graph(root))) == [
        ["talos_init.a", "talos_init.b", "talos_init.c", "talos_init.a"]]


def test_type_checking_imports_make_no_cycle_but_count_as_edges(tmp_path):
    """An import that never runs cannot loop, but it is still an edge (for the boundary)."""
    root = _package(tmp_path, {
        "a.py": "from talos_init import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import talos_init.a\n",
    })
    g = graph(root)
    assert cycles(runtime_edges(g)) == []
    assert g["talos_init.b"] == {"talos_init.a": (3, False)}


@pytest.mark.parametrize(("importer", "imported", "crosses"), [
    ("talos_init.init", "talos_init.networkd.daemon", True),
    ("talos_init.service.supervisor", "talos_init.apid", True),
    ("talos_init.kubelet.prep", "talos_init.loop", True),
    ("talos_init.osctl.client", "talos_init.control.server", True),
    ("talos_init.osctl.client", "talos_init.control.client", False),
    ("talos_init.apid.calls", "talos_init.containerd.grpc", False),
    ("talos_init.service.core", "talos_init.record", False),
])
def test_crossing_rule(importer, imported, crosses):
    """Which single imports cross the line between PID 1 and the programs."""
    assert bool(crossings({importer: {imported: (1, True)}})) is crosses
