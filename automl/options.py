"""Declared options of a plugin, and their validation.

Every plugin kind declares ``options = {"name": Option(...)}``; a search-space file may set only
those keys, and each value is checked here so an error can name the key and the allowed values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.errors import SpaceError

REQUIRED: Any = object()
# Seeds go to NumPy, which takes 0 … 2**32 - 1.
SEED_MAX = 2**32 - 1
# A text file an option names (a benchmark table) is read whole: larger is not a table a user means.
TEXT_FILE_LIMIT = 256 * 2**20
PATH_KINDS = ("file", "text", "folder")

_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


@dataclass(frozen=True)
class Option:
    """One option a plugin accepts.

    Args:
        type: ``int``, ``float``, ``str``, ``bool``, ``list`` or ``dict``.
        default: value used when the file omits the key; ``REQUIRED`` makes the key mandatory.
        help: one line shown by ``automl plugins --verbose`` and in error messages.
        choices: the only values accepted (for lists: the only item values).
        min, max: inclusive bounds for numbers (for lists: for each item); ``min_exclusive`` makes the
            lower bound exclusive (a learning rate above 0). Numbers must be finite.
        item_type: for lists, the type of each item.
        min_items: for lists, the shortest length accepted.
        path: for strings naming a path, what it must be, checked when the file is validated: ``"file"``
            (an existing, readable file), ``"text"`` (the same, holding UTF-8 text without NUL bytes, at
            most 256 MiB) or ``"folder"`` (a folder to write in: an existing writable folder, or one
            that can be created).
    """

    type: type
    default: Any = REQUIRED
    help: str = ""
    choices: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None
    item_type: type | None = None
    min_items: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    min_exclusive: bool = False
    path: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None and self.path not in PATH_KINDS:
            raise ValueError(f"Option(path=...) must be one of {', '.join(PATH_KINDS)}, not {self.path!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, key: str) -> Any:
        """Return ``value`` converted to this option's type, or raise ``SpaceError`` at ``key``."""
        if self.type is list:
            if not isinstance(value, (list, tuple)):
                raise SpaceError(f"expected a list, got {_show(value)}", key=key)
            if len(value) < self.min_items:
                raise SpaceError(f"needs at least {self.min_items} item(s), got {len(value)}", key=key)
            return [self._check_scalar(v, self.item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return self._check_scalar(value, self.type, key)

    def _check_scalar(self, value: Any, typ: type | None, key: str) -> Any:
        if typ is not None:
            value = _coerce(value, typ, key)
        if self.choices is not None and value not in self.choices:
            raise SpaceError(f"{_show(value)} is not accepted", key=key, allowed=self.choices)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and self.min_exclusive and value <= self.min:
                raise SpaceError(f"{value} must be above {_number(self.min)}", key=key)
            if self.min is not None and value < self.min:
                raise SpaceError(f"{value} is below the minimum {_number(self.min)}", key=key)
            if self.max is not None and value > self.max:
                raise SpaceError(f"{value} is above the maximum {_number(self.max)}", key=key)
        if self.path is not None and isinstance(value, str):
            check_path(value, self.path, key)
        return value

    def describe(self) -> str:
        parts = [_TYPE_NAMES.get(self.type, self.type.__name__)]
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        parts.append("required" if self.required else f"default {self.default!r}")
        if self.min is not None or self.max is not None:
            low = "" if self.min is None else f"{_number(self.min)} {'<' if self.min_exclusive else '≤'} "
            high = "" if self.max is None else f" ≤ {_number(self.max)}"
            parts.append(f"{low}value{high}")
        return "; ".join(parts)


def _coerce(value: Any, typ: type, key: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise SpaceError("NaN is not a valid number", key=key)
            if isinstance(value, float) and math.isinf(value):
                raise SpaceError(f"{value} is not a finite number", key=key)
            return float(value)
    elif typ is dict:
        if isinstance(value, Mapping):
            return dict(value)
    elif isinstance(value, typ):
        return value
    raise SpaceError(f"expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {_show(value)}", key=key)


def _number(value: float) -> str:
    return f"{value:,}".replace(",", "_") if isinstance(value, int) and abs(value) >= 10_000 else f"{value}"


def check_path(value: str, kind: str, key: str) -> None:
    """Raise ``SpaceError`` at ``key`` unless ``value`` is a path of ``kind`` (see ``Option.path``)."""
    path = Path(value)
    if kind == "folder":
        if path.exists():
            if not path.is_dir():
                raise SpaceError(f"{value!r} is not a folder", key=key)
            if not os.access(path, os.W_OK | os.X_OK):
                raise SpaceError(f"cannot write in the folder {value!r}", key=key)
            return
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise SpaceError(f"cannot create the folder {value!r} ({parent} is not writable)", key=key)
        return
    if not path.exists():
        raise SpaceError(f"no such file {value!r} (paths are relative to the current directory)", key=key)
    if path.is_dir():
        raise SpaceError(f"{value!r} is a folder, not a file", key=key)
    if not path.is_file():
        raise SpaceError(f"{value!r} is not a regular file", key=key)
    try:
        with path.open("rb") as f:
            data = f.read(TEXT_FILE_LIMIT + 1 if kind == "text" else 1)
    except OSError as err:
        raise SpaceError(f"cannot read {value!r}: {err.strerror}", key=key) from None
    if kind != "text":
        return
    if len(data) > TEXT_FILE_LIMIT:
        raise SpaceError(f"{value!r} is larger than {TEXT_FILE_LIMIT // 2**20} MiB", key=key)
    if b"\0" in data:
        raise SpaceError(f"{value!r} is a binary file, not text", key=key)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpaceError(
            f"{value!r} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start})", key=key
        ) from None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value!r} ({type(value).__name__})" if not isinstance(value, (int, float)) else repr(value)


def validate_options(
    declared: Mapping[str, Option], raw: Mapping[str, Any], *, key: str = "", reserved: Sequence[str] = ()
) -> dict[str, Any]:
    """Check ``raw`` against ``declared`` and return the complete settings (defaults filled in).

    Keys listed in ``reserved`` (``name`` and the like) are skipped: the caller has used them.
    """
    prefix = f"{key}." if key else ""
    unknown = [k for k in raw if k not in declared and k not in reserved]
    if unknown:
        raise SpaceError(f"unknown key {unknown[0]!r}", key=f"{prefix}{unknown[0]}", allowed=sorted(declared))
    settings: dict[str, Any] = {}
    for name, option in declared.items():
        if name in raw:
            settings[name] = option.check(raw[name], f"{prefix}{name}")
        elif option.required:
            raise SpaceError(
                f"missing required key {name!r} ({option.help or option.describe()})", key=f"{prefix}{name}"
            )
        else:
            settings[name] = option.default
    return settings
