"""The one evaluation path: score-cache lookup → evaluate → cost figures → score-cache write.

The study runner, strategies, the Ray Tune searcher (lookup and write on the driver, evaluation on a
worker) and ``automl score`` all evaluate through ``Evaluations``, so a cache entry written by one is
read the same way by every other. An entry written without cost figures (``automl score`` does not
need them) gets them filled in, and written back, the first time a caller needs them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from automl.cache import ScoreCache, cache_key
from automl.evaluators import EvalContext, EvalResult, Evaluator
from automl.limits import Limits, evaluate_within

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

    from automl.candidate import Candidate
    from automl.tasks import Task

logger = logging.getLogger("automl")

# Every evaluation runs with a fixed number of torch (and BLAS) threads: the numbers of a floating-point
# reduction depend on how it is split over threads, so the same candidate and seed give the same scores
# locally and on a Ray worker only with the same count. One is the default (a Ray trial holds one CPU;
# it was also the fastest setting for this project's small networks); `automl run --threads N` or
# $AUTOML_THREADS set another, which is then part of every score-cache key.
DEFAULT_THREADS = 1
THREADS_ENV = "AUTOML_THREADS"


def default_threads() -> int:
    """``$AUTOML_THREADS`` when set to a positive integer, else ``DEFAULT_THREADS`` (1)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return DEFAULT_THREADS
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        from automl.errors import UsageError

        raise UsageError(f"${THREADS_ENV}: must be a positive integer, got {value!r}")
    return threads


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (and BLAS threads); restore them after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _blas().limit(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS/OpenMP libraries loaded in this process, found once (finding them costs milliseconds)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def candidate_costs(candidate: Candidate) -> dict[str, float]:
    """Every cost figure of the candidate's model as built (after its masks and bit-widths)."""
    from automl.costs import compute_costs

    return compute_costs(candidate.build_model(), candidate.task.example_input())


class Evaluations:
    """Evaluates candidates of one task with one seed, through the score cache when there is one.

    ``cache=None`` evaluates every candidate. The task's data fingerprint (part of every cache key) is
    computed on first use. ``threads``: the torch thread count evaluations run with (default
    ``default_threads()``), part of every cache key.
    """

    def __init__(self, task: Task, *, seed: int, cache: ScoreCache | None = None, threads: int | None = None) -> None:
        self.task = task
        self.seed = seed
        self.cache = cache
        self.threads = threads or default_threads()
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self.task.fingerprint()
        return self._fingerprint

    def key(self, candidate: Candidate, evaluator: Evaluator) -> str | None:
        """The cache key of ``candidate`` under ``evaluator``, or ``None`` when nothing is cached."""
        if self.cache is None or not evaluator.cacheable:
            return None
        return cache_key(candidate.id, evaluator.settings_key(), self.fingerprint(), self.seed, self.threads)

    def lookup(self, candidate: Candidate, evaluator: Evaluator, *, costs: bool = True) -> EvalResult | None:
        """The cached result (with cost figures when ``costs``), or ``None``."""
        key = self.key(candidate, evaluator)
        if key is None:
            return None
        hit = self.cache.get(key)
        if hit is not None and costs and not hit.costs:
            hit.costs = candidate_costs(candidate)
            self._put(key, candidate, evaluator, hit)
        return hit

    def store(self, candidate: Candidate, evaluator: Evaluator, result: EvalResult) -> None:
        """Cache ``result`` (a failed write is a warning: the result itself is good); transient results are not."""
        key = self.key(candidate, evaluator)
        if key is not None and not result.transient:
            self._put(key, candidate, evaluator, result)

    def _put(self, key: str, candidate: Candidate, evaluator: Evaluator, result: EvalResult) -> None:
        try:
            self.cache.put(
                key,
                candidate_id=candidate.id,
                evaluator=evaluator.name,
                data=self.fingerprint(),
                seed=self.seed,
                result=result,
            )
        except Exception as err:  # noqa: BLE001 - a full disk or a locked cache must not fail an evaluated trial
            logger.warning(
                "score cache %s: could not store a result (%s: %s)", self.cache.path, type(err).__name__, err
            )

    def evaluate(
        self,
        candidate: Candidate,
        evaluator: Evaluator,
        context: EvalContext,
        *,
        costs: bool = True,
        limits: Limits | None = None,
    ) -> tuple[EvalResult, bool]:
        """The result for ``candidate`` and whether it came from the cache (``limits`` bound a new evaluation)."""
        hit = self.lookup(candidate, evaluator, costs=costs)
        if hit is not None:
            return hit, True
        if limits is not None and limits.active:
            result = evaluate_within(
                limits,
                candidate,
                evaluator,
                context,
                lambda: run_evaluator(candidate, evaluator, context, costs=costs, threads=self.threads),
            )
        else:
            result = run_evaluator(candidate, evaluator, context, costs=costs, threads=self.threads)
        self.store(candidate, evaluator, result)
        return result, False


def run_evaluator(
    candidate: Candidate, evaluator: Evaluator, context: EvalContext, *, costs: bool = True, threads: int | None = None
) -> EvalResult:
    """Run ``evaluator`` on ``candidate`` (no cache) and complete its result: cost figures, learning curve.

    The evaluation runs with ``threads`` torch threads (default ``default_threads()``).
    """
    with fixed_threads(threads or default_threads()):
        result = EvalResult.coerce(evaluator.evaluate(candidate, context))
        if costs and not result.costs:
            result.costs = candidate_costs(candidate)
    if context.curve and "curve" not in result.info:
        result.info["curve"] = list(context.curve)
    return result
