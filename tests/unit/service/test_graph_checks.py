"""The graph is refused before anything starts: unknown edges and cycles, with their path."""

from talos_init.service.graph import check, start_order, stop_order
from tests.unit.service.conftest import define


def test_cycle_reports_full_path_and_closing_edge():
    """A three-service cycle is reported once, naming every hop and the closing edge."""
    defs = [define("a", depends_on=["b"]), define("b", depends_on=["c"]),
            define("c", depends_on=["a"]), define("d")]
    errors = check(defs)
    assert [str(e) for e in errors] == [
        "<memory>: depends_on[0]: dependency cycle: a -> b -> c -> a (edge c -> a closes it)"]


def test_unknown_dependency_and_service_ready_condition_are_edges():
    """depends_on and conditions.service_ready both must name known services."""
    defs = [define("a", depends_on=["ghost"]),
            define("b", conditions=[{"service_ready": "spirit"}])]
    msgs = [f"{e.path}: {e.message}" for e in check(defs)]
    assert msgs == ["depends_on[0]: unknown dependency: a -> ghost (no service 'ghost')",
                    "conditions[0].service_ready: unknown dependency: b -> spirit (no service 'spirit')"]


def test_orders_are_stable_and_reverse():
    """Start order puts dependencies first (ties by id); stop order is its reverse."""
    defs = [define("kubelet", depends_on=["containerd", "networkd"]), define("containerd"),
            define("networkd", depends_on=["udevd"]), define("udevd"), define("apid")]
    order = start_order(defs)
    assert order == ["apid", "containerd", "udevd", "networkd", "kubelet"]
    assert stop_order(defs) == list(reversed(order))
    assert check(defs) == []


def test_larger_cpu_weight_starts_first_among_ready_services():
    """Among services whose dependencies allow it, the larger CPU weight (cpu_weight, or from
    a lower nice) comes first in the start order (the graph is evaluated in it, so it is
    spawned first); dependencies still lead."""
    defs = [define("udevd"), define("var", confinement={"nice": -10}),
            define("apid", confinement={"nice": 10}), define("containerd", depends_on=["var"]),
            define("networkd", depends_on=["udevd"], confinement={"nice": -5}),
            define("crio", confinement={"cpu_weight": 400}),
            define("kmod", confinement={"cpu_weight": 1000})]
    assert start_order(defs) == ["kmod", "var", "crio", "udevd", "networkd", "containerd", "apid"]


def test_docs_carry_the_current_transition_table():
    """docs/for-devs/services.md shows exactly the table the code runs."""
    from pathlib import Path

    from talos_init.service.state import markdown_table
    doc = Path(__file__).parents[3] / "docs" / "for-devs" / "services.md"
    assert markdown_table() in doc.read_text()
