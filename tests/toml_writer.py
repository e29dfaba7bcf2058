"""A small TOML writer for tests that generate search-space files (the standard library only reads TOML)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(data: Mapping[str, Any]) -> str:
    """``data`` in the search-space file's shape: scalars first, then ``[tables]`` and ``[[arrays of tables]]``."""
    lines = [f"{key(k)} = {value(v)}" for k, v in data.items() if not _is_table(v) and not _is_table_array(v)]
    for k, v in data.items():
        if _is_table(v):
            lines += ["", f"[{key(k)}]"] + [f"{key(n)} = {value(x)}" for n, x in v.items()]
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{key(k)}]]"] + [f"{key(n)} = {value(x)}" for n, x in item.items()]
    return "\n".join(lines) + "\n"


def key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name)


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)
