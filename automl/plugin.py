"""The base every configurable method derives from: a name, declared options, validated settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from automl.errors import SpaceError
from automl.options import Option, validate_options


class Configurable:
    """A method a search-space file names and configures.

    Subclasses set ``name`` (what a file writes), ``description`` (one line for ``automl plugins``)
    and ``options`` (what a file may set). The core validates a file's table against ``options``
    and calls ``configure``; ``__init__`` receives the complete settings as keyword arguments and
    may raise ``SpaceError`` (with ``key`` set to the option at fault) for rules that span options.
    ``example``: settings of a small, fast instance; the contract suites (``automl.testing``)
    configure the plugin with it.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    example: ClassVar[Mapping[str, Any] | None] = None

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    @classmethod
    def configure(
        cls, raw: Mapping[str, Any] | None = None, *, key: str = "", reserved: tuple[str, ...] = ("name",)
    ) -> Configurable:
        """Validate ``raw`` (a file's table) and return a configured instance."""
        settings = validate_options(cls.options, raw or {}, key=key, reserved=reserved)
        try:
            return cls(**settings)
        except SpaceError as err:
            raise err.located(prefix=key) from None

    def settings_key(self) -> dict[str, Any]:
        """What identifies this configuration in the score cache (the settings by default)."""
        return {"name": self.name, **self.settings}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "settings", {}).items())
        return f"{type(self).__name__}({args})"
