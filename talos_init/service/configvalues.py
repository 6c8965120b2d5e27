"""Machine-config values in service arguments, filled in when the service starts.

``${config:machine.kubelet.nodeIP}`` in argv or an environment value is
replaced by that value of the effective config (``/run/talos/config.json``,
written by the userdata service); ``${config:path:-default}`` gives a
default; ``$$`` is a literal ``$``. ``args_from: {config: path}`` appends a
mapping as ``--key=value`` arguments, sorted by key. Only scalars are
substituted: a list or mapping where a string is needed is an error, and
one argv element stays one argument (no word splitting, no shell).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from talos_init.service.definition import PLACEHOLDER_RE, Definition

_MISSING = object()


class ConfigValueError(Exception):
    pass


def lookup(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _scalar(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ConfigValueError(f"config value {path} is a {type(value).__name__}, not a single value")


def expand(text: str, config: Any) -> str:
    def one(m: Any) -> str:
        if m.group(0) == "$$":
            return "$"
        path, default = m.group(1), m.group(2)
        value = lookup(config, path) if config is not None else _MISSING
        if value is _MISSING or value is None:
            if default is not None:
                return str(default)
            raise ConfigValueError(f"config value {path} is not set")
        return _scalar(value, path)
    return PLACEHOLDER_RE.sub(one, text)


def needs_config(d: Definition) -> bool:
    return d.args_from is not None or any(
        "${config:" in x for x in (*d.argv, *d.environment.values()))


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigValueError(f"cannot read {path}: {exc}") from None


def resolve(d: Definition, config_path: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment with every placeholder filled; ConfigValueError names the first gap."""
    # Without a config file yet, defaults may still fill everything; a required value
    # then says what is missing.
    config = load(config_path) if needs_config(d) else None
    argv = [expand(a, config) for a in d.argv]
    env = {k: expand(v, config) for k, v in d.environment.items()}
    if d.args_from:
        extra = lookup(config, d.args_from) if config is not None else _MISSING
        if extra is not _MISSING and extra is not None:
            if not isinstance(extra, dict):
                raise ConfigValueError(f"config value {d.args_from} must be a mapping of flags")
            for key in sorted(extra):
                if not isinstance(key, str) or not key or key.startswith("-") or "=" in key:
                    raise ConfigValueError(f"config value {d.args_from}: bad flag name {key!r}")
                argv.append(f"--{key}={_scalar(extra[key], f'{d.args_from}.{key}')}")
    return argv, env
