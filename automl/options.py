"""Declared options of a plugin, and their validation.

Every plugin kind declares ``options = {"name": Option(...)}``; a search-space file may set only
those keys, and each value is checked here so an error can name the key and the allowed values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from automl.errors import SpaceError

REQUIRED: Any = object()

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
        min, max: inclusive bounds for numbers (for lists: for each item).
        item_type: for lists, the type of each item.
        min_items: for lists, the shortest length accepted.
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
            if self.min is not None and value < self.min:
                raise SpaceError(f"{value} is below the minimum {self.min}", key=key)
            if self.max is not None and value > self.max:
                raise SpaceError(f"{value} is above the maximum {self.max}", key=key)
        return value

    def describe(self) -> str:
        parts = [_TYPE_NAMES.get(self.type, self.type.__name__)]
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        parts.append("required" if self.required else f"default {self.default!r}")
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
            return float(value)
    elif typ is dict:
        if isinstance(value, Mapping):
            return dict(value)
    elif isinstance(value, typ):
        return value
    raise SpaceError(f"expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {_show(value)}", key=key)


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
