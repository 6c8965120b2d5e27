"""Service definition files read from disk: one file, a directory checked with the graph,
and the directory compiled to JSON for the image.

``load_file``/``load_directory`` read and decode, then validate with
``definition.parse``; ``compile_directory`` turns the YAML sources into JSON at
image build time, so PID 1 never imports yaml for its own definitions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from talos_init.record import replace
from talos_init.service.definition import Definition, DefinitionError, InvalidDefinitions, parse
from talos_init.service.graph import check


def load_file(path: Path, condition_kinds: set[str] | None = None
              ) -> tuple[Definition | None, list[DefinitionError]]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [DefinitionError(source, "", f"cannot read: {exc}")]
    if len(text) > 64 * 1024:
        return None, [DefinitionError(source, "", "larger than 64 KiB")]
    try:
        data = _decode(path, text)
    except ValueError as exc:
        return None, [DefinitionError(source, "", f"not valid {path.suffix[1:].upper()}: {exc}")]
    return parse(data, source, condition_kinds)


def _decode(path: Path, text: str) -> Any:
    if path.suffix == ".json":
        import json
        return json.loads(text)
    import yaml  # only at load time; CSafeLoader when libyaml is there

    loader: type[yaml.CSafeLoader] | type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None


def load_directory(directory: Path, condition_kinds: set[str] | None = None) -> list[Definition]:
    """Every ``*.yaml``/``*.json`` in ``directory``, checked together with the graph.

    Raises ``InvalidDefinitions`` with every file and graph error at once.
    """
    definitions: list[Definition] = []
    errors: list[Any] = []
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    except OSError as exc:
        error = DefinitionError(str(directory), "", f"cannot list: {exc}")
        raise InvalidDefinitions([error]) from None
    seen: dict[str, str] = {}
    broken: set[str] = set()  # ids of files with errors: not also "unknown dependency"
    for path in files:
        definition, errs = load_file(path, condition_kinds)
        errors.extend(errs)
        if definition is None:
            broken.add(path.stem)
            continue
        if definition.id in seen:
            errors.append(DefinitionError(
                str(path), "id", f"{definition.id!r} is already defined in {seen[definition.id]}"))
            continue
        seen[definition.id] = str(path)
        definitions.append(definition)
    errors.extend(check(definitions, also_known=broken))
    if errors:
        raise InvalidDefinitions(errors)
    return definitions


def compile_directory(directory: Path, condition_kinds: set[str] | None = None
                      ) -> dict[str, bytes]:
    """``{"<id>.json": bytes}`` for every definition in ``directory``, validated first.

    Raises ``InvalidDefinitions`` with the same errors (file and field) as
    ``load_directory``, and also when a compiled file would not load to the
    same definition as its source.
    """
    import json

    out: dict[str, bytes] = {}
    errors: list[Any] = []
    for definition in load_directory(directory, condition_kinds):
        source = Path(definition.source)
        data = _decode(source, source.read_text(encoding="utf-8"))
        try:
            text = json.dumps(data, indent=1, sort_keys=True)
        except (TypeError, ValueError) as exc:
            errors.append(DefinitionError(str(source), "", f"cannot be written as JSON: {exc}"))
            continue
        name = f"{source.stem}.json"
        again, errs = parse(json.loads(text), str(source.with_name(name)), condition_kinds)
        if errs or again is None or replace(again, source=definition.source) != definition:
            errors.append(DefinitionError(str(source), "", "its JSON form loads differently "
                                          f"({'; '.join(map(str, errs)) or 'values differ'})"))
            continue
        out[name] = text.encode() + b"\n"
    if errors:
        raise InvalidDefinitions(errors)
    return out
