"""Bounds on one evaluation: a time limit, and optionally a separate process with a memory limit.

Every evaluator accepts three keys in its ``[evaluator]`` table, checked by the core:

- ``timeout`` (seconds): the trial fails with ``timed out after N s``. In the searching process the
  limit is a timer signal, so it needs the main thread; with ``isolate`` it is exact anywhere and
  counts from when the process starts evaluating (its start-up is not counted).
- ``isolate = true``: the evaluation runs in a fresh process, rebuilt from the space's table and the
  trial's parameters (as a Ray Tune worker does). A crash, ``sys.exit`` or a leak there ends that trial
  only; intermediate values still reach the study's pruner. Starting the process costs seconds.
- ``memory_limit_mb`` (with ``isolate``): the process is stopped when its resident memory passes this.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl.errors import SpaceError, TrialFailed
from automl.options import Option, validate_options

if TYPE_CHECKING:
    from automl.candidate import Candidate
    from automl.evaluators import EvalContext, EvalResult, Evaluator

LIMIT_OPTIONS: dict[str, Option] = {
    "timeout": Option(
        float, default=None, min=0.001, max=7 * 24 * 3600.0, help="seconds one evaluation may take (default: none)"
    ),
    "isolate": Option(bool, default=False, help="evaluate each candidate in a separate process"),
    "memory_limit_mb": Option(
        int, default=None, min=64, max=16 * 1024 * 1024, help="resident memory of an isolated evaluation, in MB"
    ),
}
POLL_S = 0.05


@dataclass(frozen=True)
class Limits:
    timeout: float | None = None
    isolate: bool = False
    memory_limit_mb: int | None = None

    @classmethod
    def split(cls, raw: Mapping[str, Any], key: str = "evaluator") -> tuple[Limits, dict[str, Any]]:
        """The limits in an ``[evaluator]`` table, and the table without them (for the evaluator)."""
        mine = {k: raw[k] for k in LIMIT_OPTIONS if k in raw}
        settings = validate_options(LIMIT_OPTIONS, mine, key=key)
        limits = cls(**settings)
        if limits.memory_limit_mb is not None and not limits.isolate:
            raise SpaceError(
                "a memory limit needs isolate = true (the evaluation's own process is measured)",
                key=f"{key}.memory_limit_mb",
            )
        return limits, {k: v for k, v in raw.items() if k not in LIMIT_OPTIONS}

    @property
    def active(self) -> bool:
        return self.timeout is not None or self.isolate


class TimedOut(TrialFailed):
    """The evaluation ran past its ``timeout``."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``TimedOut`` in the block after ``seconds`` (main thread only; elsewhere no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise TimedOut(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def evaluate_within(
    limits: Limits,
    candidate: Candidate,
    evaluator: Evaluator,
    context: EvalContext,
    run: Callable[[], EvalResult],
) -> EvalResult:
    """``run()`` under ``limits``: in this process with a timer, or in a separate process."""
    if not limits.isolate:
        with time_limit(limits.timeout):
            return run()
    if context.space is None:
        raise TrialFailed("an isolated evaluation needs the search space (evaluate through a study)")
    return _isolated(limits, candidate, evaluator, context)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _isolated(limits: Limits, candidate: Candidate, evaluator: Evaluator, context: EvalContext) -> EvalResult:
    from automl.evaluators import EvalResult

    spawn = multiprocessing.get_context("spawn")
    parent, child = spawn.Pipe()
    evaluator_raw = {k: v for k, v in (context.space.raw.get("evaluator") or {}).items() if k not in LIMIT_OPTIONS}
    if evaluator_raw.get("name") != evaluator.name:
        raise TrialFailed(f"only the space's evaluator can run isolated, not {evaluator.name!r}")
    job = {
        "space": context.space.raw,
        "params": dict(candidate.params),
        "seed": context.seed,
        "device": str(context.device),
        "evaluator": evaluator_raw,
    }
    process = spawn.Process(target=_child, args=(json.dumps(job, default=str), child), daemon=True)
    process.start()
    child.close()
    start: float | None = None  # the clock starts when the process begins evaluating (not at its start-up)
    try:
        while True:
            if parent.poll(POLL_S):
                try:
                    kind, payload = parent.recv()
                except EOFError:
                    break
                if kind == "started":
                    start = time.monotonic()
                elif kind == "report":
                    context.report(payload["value"], payload["step"])  # may raise TrialPruned: the child is stopped
                elif kind == "attr":
                    context.set_attr(payload["key"], payload["value"])
                elif kind == "result":
                    return EvalResult.from_json(payload)
                elif kind == "error":
                    raise TrialFailed(payload)
                elif kind == "pruned":
                    import optuna

                    raise optuna.TrialPruned(payload)
            elif not process.is_alive():
                break
            if limits.timeout is not None and start is not None and time.monotonic() - start > limits.timeout:
                raise TimedOut(f"timed out after {limits.timeout:g} s")
            if limits.memory_limit_mb is not None and _rss_mb(process.pid) > limits.memory_limit_mb:
                raise TrialFailed(f"the evaluation passed its memory limit of {limits.memory_limit_mb} MB")
        process.join(5)
        code = process.exitcode
        raise TrialFailed(f"the isolated evaluation ended without a result (exit code {code})")
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()


class _PipeContext:
    """The evaluator's context in the isolated process: reports go back through the pipe."""

    def __init__(self, base: EvalContext, conn: Any) -> None:
        self._base = base
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def report(self, value: float, step: int) -> None:
        self._base.curve.append(float(value))
        self._conn.send(("report", {"value": float(value), "step": int(step)}))

    def set_attr(self, key: str, value: Any) -> None:
        self._conn.send(("attr", {"key": key, "value": value}))


def _child(job_json: str, conn: Any) -> None:
    """The isolated process: rebuild the space and candidate, evaluate, send the result (or the reason)."""
    import optuna

    from automl.evaluation import run_evaluator
    from automl.evaluators import EvalContext
    from automl.registry import get_registry
    from automl.runner import failure_reason
    from automl.space import SearchSpace

    job = json.loads(job_json)
    try:
        space = SearchSpace.from_dict(job["space"])
        raw = job["evaluator"]
        evaluator = get_registry().get("evaluators", raw["name"]).configure(raw, key="evaluator")
        candidate = space.candidate(job["params"])
        candidate.seed = job["seed"]
        context = _PipeContext(EvalContext(None, seed=job["seed"], device=job["device"], space=space), conn)
        conn.send(("started", None))
        result = run_evaluator(candidate, evaluator, context)  # type: ignore[arg-type]
        conn.send(("result", result.to_json()))
    except optuna.TrialPruned as pruned:
        conn.send(("pruned", str(pruned)))
    except BaseException as err:  # noqa: BLE001 - the reason goes back to the searching process
        conn.send(("error", failure_reason(err)))
        if isinstance(err, SystemExit):
            os._exit(err.code if isinstance(err.code, int) else 1)
    finally:
        conn.close()
