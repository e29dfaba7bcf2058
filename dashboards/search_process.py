"""A search running in the background as an ``automl run`` subprocess (stoppable, resumable)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from automl.errors import AutomlError


@dataclass(frozen=True)
class SearchRequest:
    """What the new-search form asks for."""

    space_file: str
    storage: str
    trials: int
    seed: int | None = None


def validate_request(request: SearchRequest) -> str:
    """Check the form and the search-space file; returns the study name or raises ``AutomlError``."""
    from automl.space import SearchSpace

    if not request.space_file:
        raise AutomlError("choose a search-space file")
    if not Path(request.space_file).is_file():
        raise AutomlError(f"{request.space_file}: no such file")
    if request.trials < 1:
        raise AutomlError(f"trials must be at least 1, got {request.trials}")
    space = SearchSpace.from_file(request.space_file)
    return space.study.name


def search_files(folder: str | Path = "search_spaces") -> list[str]:
    """The search-space files under ``folder`` (sorted paths)."""
    root = Path(folder)
    return sorted(str(p) for p in root.glob("**/*.toml")) if root.is_dir() else []


class SearchProcess:
    """One ``automl run FILE --storage URL --trials N --quiet`` child process.

    Stopping terminates it (the trial in flight is lost, finished ones stay stored); starting the same
    request again resumes the study, since ``automl run`` continues an existing study.
    """

    def __init__(self, request: SearchRequest) -> None:
        self.request = request
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the process's lifetime

    def command(self) -> list[str]:
        request = self.request
        command = [
            sys.executable,
            "-m",
            "automl.cli",
            "run",
            request.space_file,
            "--storage",
            request.storage,
            "--trials",
            str(request.trials),
            "--quiet",
        ]
        if request.seed is not None:
            command += ["--seed", str(request.seed)]
        return command

    def start(self) -> None:
        if self.running:
            return
        self._log.seek(0)
        self._log.truncate()
        self.process = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the child and wait for it (kill it if it does not exit in ``timeout`` seconds)."""
        if not self.running:
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait(self, timeout: float | None = None) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the child printed."""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return text[-limit:]

    def close(self) -> None:
        self.stop()
        self._log.close()
