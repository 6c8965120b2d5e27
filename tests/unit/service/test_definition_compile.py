"""The image ships service definitions compiled to JSON; the YAML in services/ stays the source."""

import json
from pathlib import Path

import pytest

from talos_init.service.definition import InvalidDefinitions
from talos_init.service.loader import compile_directory, load_directory

REPO = Path(__file__).resolve().parents[3]


def test_every_shipped_definition_compiles_to_the_same_definition(tmp_path):
    """Each services/*.yaml becomes <id>.json that loads to an equal definition."""
    compiled = compile_directory(REPO / "services")
    sources = sorted(p.stem for p in (REPO / "services").glob("*.yaml"))
    assert sorted(Path(n).stem for n in compiled) == sources
    for name, data in compiled.items():
        (tmp_path / name).write_bytes(data)
    from_yaml = {d.id: d for d in load_directory(REPO / "services")}
    for d in load_directory(tmp_path):
        assert d.source == str(tmp_path / f"{d.id}.json")
        assert d == type(d)(**{**vars(from_yaml[d.id]), "source": d.source})


def test_compile_reports_the_same_errors_as_loading(tmp_path):
    """A bad field fails the build with the file and the field named, like PID 1 would."""
    (tmp_path / "a.yaml").write_text("id: a\nargv: [/bin/a]\nrestart: sometimes\n")
    (tmp_path / "b.yaml").write_text("id: b\nargv: [/bin/b]\ndepends_on: [c]\n")
    with pytest.raises(InvalidDefinitions) as loaded:
        load_directory(tmp_path)
    with pytest.raises(InvalidDefinitions) as compiled:
        compile_directory(tmp_path)
    assert [str(e) for e in compiled.value.errors] == [str(e) for e in loaded.value.errors]
    assert str(compiled.value.errors[0]).startswith(f"{tmp_path}/a.yaml: restart:")


def test_a_yaml_only_value_is_refused_with_file_and_field(tmp_path):
    """A YAML value without a JSON form (a date) fails the build naming file and field."""
    (tmp_path / "a.yaml").write_text("id: a\nargv: [/bin/a]\nenvironment: {WHEN: 2024-01-01}\n")
    with pytest.raises(InvalidDefinitions) as exc:
        compile_directory(tmp_path)
    assert f"{tmp_path / 'a.yaml'}: environment.WHEN: must be a string" in str(exc.value)


def test_compiled_json_is_stable(tmp_path):
    """Two compiles give the same bytes (the image build is reproducible)."""
    (tmp_path / "a.yaml").write_text("id: a\nargv: [/bin/a]\nenvironment: {B: '1', A: '2'}\n")
    first, second = compile_directory(tmp_path), compile_directory(tmp_path)
    assert first == second
    assert json.loads(first["a.json"])["environment"] == {"A": "2", "B": "1"}
