"""The developer doc lists every field the table says is acted on."""

from __future__ import annotations

from pathlib import Path

from talos_init.userdata.schema import field_paths

DOC = Path(__file__).resolve().parents[3] / "docs/for-devs/machine-config.md"


def test_every_acted_on_top_field_is_documented():
    """Each acted-on machine.*/cluster.* field (two or three levels) is named in 'Who acts on what'."""
    section = (
        DOC.read_text().split("## Who acts on what", 1)[1].split("Accepted and reported once", 1)[0]
    )
    missing = []
    for path, support in field_paths():
        parts = path.split(".")
        if (
            support != "acted"
            or len(parts) not in (2, 3)
            or parts[0] not in ("machine", "cluster")
            or "[*]" in path
            or parts[1] == "ca"
            and len(parts) == 3
        ):
            continue  # item fields and crt/key are covered by their parent's row
        if parts[-1] not in section:
            missing.append(path)
    assert missing == []


def test_every_kind_is_in_the_ops_table():
    """docs/for-ops/machine-config.md names every document kind, acted on or not."""
    from talos_init.userdata import talos_types

    text = (DOC.parents[1] / "for-ops/machine-config.md").read_text()
    missing = [k for k in talos_types.KINDS if f"`{k}`" not in text]
    assert missing == []
