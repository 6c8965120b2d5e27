"""The service graph, checked before anything starts: pure, no I/O.

As s6-rc does at compile time: every dependency must name a known service,
and there must be no cycle; a cycle is reported with its full path
(``a -> b -> c -> a``) and the edge that closes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from talos_init.record import record
from talos_init.service.definition import Definition


@record(frozen=True)
class GraphError:
    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


def _edges(d: Definition) -> list[tuple[str, str]]:
    """(field path, target id) of every ordering edge: depends_on and service_ready."""
    out = [(f"depends_on[{i}]", dep) for i, dep in enumerate(d.depends_on)]
    out += [(f"conditions[{i}].service_ready", str(c.arg))
            for i, c in enumerate(d.conditions) if c.kind == "service_ready"]
    return out


def check(definitions: Iterable[Definition], also_known: Iterable[str] = ()) -> list[GraphError]:
    """Every unknown dependency and every cycle, each naming its edge."""
    defs = {d.id: d for d in definitions}
    known = set(defs) | set(also_known)
    errors = []
    for d in defs.values():
        for path, dep in _edges(d):
            if dep not in known:
                errors.append(GraphError(
                    d.source, path, f"unknown dependency: {d.id} -> {dep} (no service {dep!r})"))
    # Iterative DFS with colours; each cycle is reported once, at its closing edge.
    colour = dict.fromkeys(defs, 0)  # 0 new, 1 on the stack, 2 done
    for root in sorted(defs):
        if colour[root]:
            continue
        stack: list[tuple[str, list[tuple[str, str]]]] = [(root, _edges(defs[root]))]
        colour[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = 2
                stack.pop()
                continue
            path, dep = todo.pop(0)
            if dep not in defs:
                continue
            if colour[dep] == 1:
                cycle = [n for n, _ in stack]
                cycle = cycle[cycle.index(dep):] + [dep]
                errors.append(GraphError(defs[node].source, path,
                                         f"dependency cycle: {' -> '.join(cycle)} "
                                         f"(edge {node} -> {dep} closes it)"))
            elif colour[dep] == 0:
                colour[dep] = 1
                stack.append((dep, _edges(defs[dep])))
    return errors


def dependencies(d: Definition) -> list[str]:
    return [dep for _, dep in _edges(d)]


def start_order(definitions: Iterable[Definition]) -> list[str]:
    """Dependencies before dependents; ties by priority (the larger CPU weight first, from
    ``confinement.cpu_weight`` or ``nice``: what asked for the CPU first also starts first),
    then by id, so the order is stable."""
    defs = {d.id: d for d in definitions}
    done: list[str] = []
    placed: set[str] = set()

    def rank(node: str) -> tuple[float, str]:
        d = defs.get(node)
        return -(d.confinement.cpu_share() if d is not None else 100.0), node

    def visit(node: str, trail: tuple[str, ...]) -> None:
        if node in placed or node not in defs:
            return
        if node in trail:
            raise ValueError(f"dependency cycle through {node}; run check() first")
        for dep in sorted(dependencies(defs[node]), key=rank):
            visit(dep, trail + (node,))
        placed.add(node)
        done.append(node)

    for node in sorted(defs, key=rank):
        visit(node, ())
    return done


def stop_order(definitions: Iterable[Definition]) -> list[str]:
    """Dependents before their dependencies."""
    return list(reversed(start_order(definitions)))


def dependents(definitions: Iterable[Definition]) -> dict[str, set[str]]:
    """Reverse edges: who depends on each service."""
    defs = list(definitions)
    out: dict[str, set[str]] = {d.id: set() for d in defs}
    for d in defs:
        for dep in dependencies(d):
            if dep in out:
                out[dep].add(d.id)
    return out
