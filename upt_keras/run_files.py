"""Files of run and search directories, shared by training, tuning and evaluation: JSON written atomically, and the
comparison that refuses to resume a run or a search with settings other than those it was started with.

This module imports no deep-learning framework.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping

from upt_keras.config import Config, config_to_dict

__all__ = ["write_json", "comparable_config", "settings_changes"]


def write_json(path, payload) -> str:
    """Write `payload` as indented JSON, atomically (a temporary file renamed over `path`), creating the folder.

    Returns the path.
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def comparable_config(cfg: Config, ignore: Iterable[str] = ()) -> dict:
    """`cfg` as plain JSON data (tuples become lists), without the dotted keys in `ignore`.

    A key names a whole section (`"output"`) or one setting (`"output.plots"`); keys that are not there are skipped.
    """
    d = json.loads(json.dumps(config_to_dict(cfg)))
    for key in ignore:
        *sections, last = key.split(".")
        node = d
        for name in sections:
            node = node.get(name, {})
        node.pop(last, None)
    return d


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out


def settings_changes(old: Mapping, new: Mapping, limit: int = 3) -> str | None:
    """None when the nested mappings `old` and `new` are equal; otherwise the first `limit` (by dotted key) settings
    that differ, as `"key: old -> new, ..."`."""
    if old == new:
        return None
    flat_old, flat_new = _flatten(old), _flatten(new)
    diff = [k for k in sorted(set(flat_old) | set(flat_new)) if flat_old.get(k) != flat_new.get(k)]
    return ", ".join(f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in diff[:limit])
