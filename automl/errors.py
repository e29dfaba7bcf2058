"""Errors a user can cause, each carrying enough to print one clear line."""

from __future__ import annotations

from collections.abc import Iterable


class AutomlError(Exception):
    """Base class for every error automl reports to a user without a traceback."""

    exit_code = 1


class SpaceError(AutomlError):
    """A search space (file or Python object) is invalid.

    ``source`` is the file (or ``"<space>"`` for a space built in Python), ``key`` the key path
    inside it (``dimensions[1].choices``), ``allowed`` the values that would have been accepted.
    """

    exit_code = 2

    def __init__(
        self, message: str, *, key: str = "", source: str | None = None, allowed: Iterable[object] | None = None
    ) -> None:
        self.message = message
        self.key = key
        self.source = source
        self.allowed = [str(a) for a in allowed] if allowed is not None else None
        super().__init__(str(self))

    def located(self, source: str | None = None, prefix: str = "") -> SpaceError:
        """Return a copy with the source file and a key-path prefix filled in."""
        key = f"{prefix}.{self.key}" if prefix and self.key else (prefix or self.key)
        return SpaceError(self.message, key=key, source=self.source or source, allowed=self.allowed)

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.source, self.key) if p)
        text = f"{where}: {self.message}" if where else self.message
        if self.allowed is not None:
            text += f" (allowed: {', '.join(self.allowed) if self.allowed else 'none'})"
        # One line, whatever a file's keys or a parser's message hold.
        return text.replace("\r", "\\r").replace("\n", "\\n")


class PluginError(AutomlError):
    """A plugin broke a registration rule (duplicate name, missing attribute, bad hook)."""


class StorageError(AutomlError):
    """A study storage cannot be opened or read."""


class UnknownStudyError(AutomlError):
    """The named study does not exist in the storage."""


class UsageError(AutomlError):
    """A command-line option or argument is impossible (an unknown device, a bad count)."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """The process was told to stop (SIGTERM, SIGHUP): handled like Ctrl-C."""

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(signal_name)


class TrialFailed(Exception):
    """Raised inside a trial to fail it with a stored reason; the search goes on."""
