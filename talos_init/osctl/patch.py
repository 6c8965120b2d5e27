"""Machine config patches, as talosctl takes them (pure: text in, text out).

A patch is YAML or JSON (``--patch @file`` or inline), in one of two forms:

- **RFC 6902 JSON patch**: a list of operations (add, remove, replace, move, copy, test)
  on the v1alpha1 document, paths as JSON pointers (``/machine/network/hostname``;
  ``-`` appends to a list; ``~1`` is ``/`` and ``~0`` is ``~``).
- **Strategic merge patch**: one or more partial documents. A v1alpha1 part (``machine:``
  / ``cluster:``) merges into the v1alpha1 document, a document with ``apiVersion`` and
  ``kind`` into the document of that kind (and ``name``), or is appended when there is
  none. Mappings merge key by key, scalars are replaced, lists are appended to, except
  the lists Talos merges by a key (network interfaces by ``interface`` or
  ``deviceSelector``, VLANs by ``vlanId``, routes by ``network``); ``$patch: delete`` in a
  mapping removes it (a whole document when it is the document's only other key).

Errors are ``PatchError`` naming the patch, the operation and the path.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml


class PatchError(Exception):
    pass


# Lists whose items are merged by key instead of appended (Talos' merge keys).
MERGE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("machine", "network", "interfaces"): ("interface", "deviceSelector"),
    ("machine", "network", "interfaces", "*", "vlans"): ("vlanId",),
    ("machine", "network", "interfaces", "*", "routes"): ("network",),
    ("machine", "network", "interfaces", "*", "vlans", "*", "routes"): ("network",),
}


def load_documents(text: str, what: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise PatchError(f"{what}: not valid YAML or JSON: {e}") from None


def apply(config: str, patches: list[tuple[str, str]]) -> str:
    """``config`` (the whole, possibly multi-document, text) with each ``(name, text)``
    patch applied in order; the result as YAML documents."""
    docs = load_documents(config, "the machine config")
    if not docs:
        raise PatchError("the machine config is empty")
    for name, text in patches:
        parts = load_documents(text, name)
        if len(parts) == 1 and isinstance(parts[0], list):
            idx = _v1alpha1_index(docs, name)
            docs[idx] = json_patch(docs[idx], parts[0], name)
        elif parts and all(isinstance(p, dict) for p in parts):
            for part in parts:
                docs = strategic_merge(docs, part, name)
        else:
            raise PatchError(f"{name}: a patch is a list of JSON patch operations or one or more "
                             "YAML documents (mappings)")
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def _v1alpha1_index(docs: list[Any], name: str) -> int:
    for i, d in enumerate(docs):
        if isinstance(d, dict) and "kind" not in d:
            return i
    raise PatchError(f"{name}: a JSON patch applies to the v1alpha1 document, and the config "
                     "has none")


# -- RFC 6902 -----------------------------------------------------------------------------

def _pointer(path: Any, where: str) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"{where}: path {path!r} is not a JSON pointer (it starts with /)")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _walk(doc: Any, tokens: list[str], where: str, path: str) -> Any:
    node = doc
    for t in tokens:
        if isinstance(node, dict):
            if t not in node:
                raise PatchError(f"{where}: {path}: no {t!r} here")
            node = node[t]
        elif isinstance(node, list):
            node = node[_index(node, t, where, path, allow_end=False)]
        else:
            raise PatchError(f"{where}: {path}: {t!r} is inside a scalar")
    return node


def _index(lst: list[Any], token: str, where: str, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(lst)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        raise PatchError(f"{where}: {path}: {token!r} is not a list index")
    i = int(token)
    if i > len(lst) or (i == len(lst) and not allow_end):
        raise PatchError(f"{where}: {path}: index {i} is out of range (the list has {len(lst)})")
    return i


def _add(doc: Any, tokens: list[str], value: Any, where: str, path: str) -> Any:
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], where, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, where, path, allow_end=True), value)
    else:
        raise PatchError(f"{where}: {path}: the parent is a scalar")
    return doc


def _remove(doc: Any, tokens: list[str], where: str, path: str) -> Any:
    if not tokens:
        raise PatchError(f"{where}: cannot remove the whole document")
    parent = _walk(doc, tokens[:-1], where, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{where}: {path}: nothing to remove")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, where, path, allow_end=False))
    raise PatchError(f"{where}: {path}: the parent is a scalar")


def json_patch(doc: Any, ops: list[Any], name: str) -> Any:
    doc = copy.deepcopy(doc)
    for n, op in enumerate(ops):
        where = f"{name}: operation {n}"
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"{where}: each operation needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        tokens = _pointer(path, where)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"{where}: {kind} needs a 'value'")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), where, path)
        elif kind == "remove":
            _remove(doc, tokens, where, path)
        elif kind == "replace":
            _walk(doc, tokens, where, path)  # must exist
            if tokens:
                _remove(doc, tokens, where, path)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), where, path)
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from"), where)
            value = _walk(doc, src, where, str(op.get("from")))
            if kind == "move":
                if tokens[:len(src)] == src and len(tokens) > len(src):
                    raise PatchError(f"{where}: cannot move {op['from']} into itself")
                _remove(doc, src, where, str(op["from"]))
            doc = _add(doc, tokens, copy.deepcopy(value), where, path)
        elif kind == "test":
            if _walk(doc, tokens, where, path) != op["value"]:
                raise PatchError(f"{where}: test failed: {path} is not {op['value']!r}")
        else:
            raise PatchError(f"{where}: unknown op {kind!r} (add, remove, replace, move, copy, "
                             "test)")
    return doc


# -- strategic merge ----------------------------------------------------------------------

def _same_doc(doc: Any, part: dict[str, Any]) -> bool:
    if not isinstance(doc, dict):
        return False
    if "kind" not in part:
        return "kind" not in doc
    return doc.get("kind") == part.get("kind") and doc.get("name") == part.get("name")


def strategic_merge(docs: list[Any], part: dict[str, Any], name: str) -> list[Any]:
    docs = copy.deepcopy(docs)
    for i, doc in enumerate(docs):
        if _same_doc(doc, part):
            if part.get("$patch") == "delete":
                return docs[:i] + docs[i + 1:]
            docs[i] = merge(doc, part, ())
            return docs
    if part.get("$patch") == "delete":
        raise PatchError(f"{name}: $patch: delete of a document the config does not have "
                         f"({part.get('kind', 'v1alpha1')})")
    if "kind" not in part:
        raise PatchError(f"{name}: the config has no v1alpha1 document to merge into")
    docs.append(_strip(part))
    return docs


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _keys_for(path: tuple[str, ...]) -> tuple[str, ...] | None:
    for pattern, keys in MERGE_KEYS.items():
        if len(pattern) == len(path) and all(p in ("*", q) for p, q in zip(pattern, path, strict=True)):
            return keys
    return None


def merge(base: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if key == "$patch":
                continue
            if isinstance(value, dict) and value.get("$patch") == "delete":
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, path + (str(key),))
            else:
                out[key] = _strip(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        keys = _keys_for(path)
        out_list = list(base)
        for item in patch:
            match = None
            if keys and isinstance(item, dict):
                key = next((k for k in keys if k in item), None)
                if key is not None:
                    match = next((j for j, b in enumerate(out_list)
                                  if isinstance(b, dict) and b.get(key) == item[key]), None)
            if match is None:
                if not (isinstance(item, dict) and item.get("$patch") == "delete"):
                    out_list.append(_strip(item))
            elif item.get("$patch") == "delete":
                out_list.pop(match)
            else:
                out_list[match] = merge(out_list[match], item, path + ("*",))
        return out_list
    return _strip(patch)
