"""Candidate pools and their proxy scores.

Candidates are drawn define-by-run through the space's own dimensions, with a stand-in trial whose
values come from a chooser: seeded random draws (a sampled pool, random search, mutations) or a
depth-first enumeration (the whole space, when every parameter is discrete).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from automl import SpaceError

if TYPE_CHECKING:
    from automl import Candidate, SearchContext, SearchSpace
    from automl.evaluators import Evaluator

log = logging.getLogger("automl.strategies")

# A parameter's kind and what defines its values: ("categorical", choices), ("int", (low, high, step, log)),
# ("float", (low, high, log)).
Spec = tuple[str, Any]
Chooser = Callable[[str, Spec], Any]
TRANSFORMS = ("none", "log", "signed_log")


class ChoosingTrial:
    """A stand-in Optuna trial: every ``suggest_*`` asks ``choose(name, spec)`` and records the value and spec."""

    number = -1

    def __init__(self, choose: Chooser) -> None:
        self.choose = choose
        self.params: dict[str, Any] = {}
        self.specs: dict[str, Spec] = {}

    def _suggest(self, name: str, spec: Spec) -> Any:
        value = self.choose(name, spec)
        self.params[name] = value
        self.specs[name] = spec
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._suggest(name, ("categorical", list(choices)))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._suggest(name, ("int", (low, high, step, log)))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        if step is not None:
            return self._suggest(name, ("categorical", list(np.arange(low, high + step / 2, step))))
        return self._suggest(name, ("float", (low, high, log)))


def random_value(rng: np.random.Generator, spec: Spec) -> Any:
    kind, values = spec
    if kind == "categorical":
        return values[int(rng.integers(len(values)))]
    if kind == "int":
        low, high, step, log = values
        if log:
            return round(math.exp(rng.uniform(math.log(low), math.log(high))))
        return int(low + step * int(rng.integers((high - low) // step + 1)))
    low, high, log = values
    return float(math.exp(rng.uniform(math.log(low), math.log(high)))) if log else float(rng.uniform(low, high))


def sample_candidate(
    space: SearchSpace, rng: np.random.Generator, fixed: Mapping[str, Any] | None = None
) -> tuple[Candidate, dict[str, Spec]]:
    """A candidate with the ``fixed`` values where its dimensions ask for them, random draws elsewhere."""
    fixed = fixed or {}
    trial = ChoosingTrial(lambda name, spec: fixed[name] if name in fixed else random_value(rng, spec))
    candidate = space.sample(trial)  # type: ignore[arg-type]  # the dimensions only call suggest_*
    return candidate, trial.specs


def random_candidates(space: SearchSpace, seed: int) -> Iterator[tuple[Candidate, dict[str, Spec]]]:
    """An endless seeded stream of random candidates (repeats included)."""
    rng = np.random.default_rng(seed)
    while True:
        yield sample_candidate(space, rng)


def sampled_pool(space: SearchSpace, size: int, seed: int) -> list[Candidate]:
    """``size`` distinct random candidates (fewer if the space runs out), in the order drawn."""
    seen: set[str] = set()
    pool: list[Candidate] = []
    for draws, (candidate, _) in enumerate(random_candidates(space, seed), start=1):
        if candidate.id not in seen:
            seen.add(candidate.id)
            pool.append(candidate)
        if len(pool) >= size or draws >= 50 * size:
            break
    return pool


class _Branch(Exception):
    def __init__(self, name: str, values: list[Any]) -> None:
        self.name = name
        self.values = values


class NotEnumerable(Exception):
    """The space has a continuous parameter."""


def _values(name: str, spec: Spec) -> list[Any]:
    kind, values = spec
    if kind == "categorical":
        return list(values)
    if kind == "int":
        low, high, step, _ = values
        return list(range(low, high + 1, step))
    raise NotEnumerable(name)


def enumerate_space(space: SearchSpace, limit: int) -> list[Candidate] | None:
    """Every distinct candidate of the space in a fixed order, or ``None`` when there are more than ``limit``.

    Raises ``NotEnumerable`` when a parameter is continuous.
    """
    stack: list[dict[str, Any]] = [{}]
    seen: set[str] = set()
    found: list[Candidate] = []
    while stack:
        fixed = stack.pop()

        def choose(name: str, spec: Spec, fixed: dict[str, Any] = fixed) -> Any:
            if name in fixed:
                return fixed[name]
            raise _Branch(name, _values(name, spec))

        try:
            candidate = space.sample(ChoosingTrial(choose))  # type: ignore[arg-type]
        except _Branch as branch:
            stack.extend({**fixed, branch.name: value} for value in reversed(branch.values))
            continue
        if candidate.id not in seen:
            seen.add(candidate.id)
            found.append(candidate)
            if len(found) > limit:
                return None
    return found


# Pools already built in this process, by what determines them (the space's task and dimensions tables):
# building 1,000 cells costs seconds, and a benchmark builds the same pool for every seed and method.
_POOLS: dict[str, tuple[list[Candidate], str]] = {}
_POOLS_KEPT = 4


def build_pool(space: SearchSpace, *, size: int, whole_space: bool, seed: int) -> tuple[list[Candidate], str]:
    """The whole space when asked, or when it has at most ``size`` candidates; else a seeded sample."""
    key = None
    if space.raw:
        key = json.dumps(
            [space.raw.get("task"), space.raw.get("dimensions"), size, whole_space, seed], sort_keys=True, default=str
        )
        if key in _POOLS:
            candidates, description = _POOLS[key]
            return list(candidates), description
    candidates, description = _build_pool(space, size=size, whole_space=whole_space, seed=seed)
    if key is not None:
        while len(_POOLS) >= _POOLS_KEPT:
            _POOLS.pop(next(iter(_POOLS)))
        _POOLS[key] = (list(candidates), description)
    return candidates, description


def _build_pool(space: SearchSpace, *, size: int, whole_space: bool, seed: int) -> tuple[list[Candidate], str]:
    try:
        if whole_space:
            everything = enumerate_space(space, limit=10**6)
            if everything is None:
                raise SpaceError(
                    "the space has more than 1,000,000 candidates; use a sampled pool "
                    "(whole_space = false, pool_size = N)",
                    key="strategy.whole_space",
                )
            return everything, "whole space"
        everything = enumerate_space(space, limit=size)
        if everything is not None:
            return everything, "whole space"
    except NotEnumerable as err:
        if whole_space:
            raise SpaceError(
                f"parameter {err.args[0]!r} is continuous, so the whole space cannot be listed; "
                f"use a sampled pool (whole_space = false)",
                key="strategy.whole_space",
            ) from None
    return sampled_pool(space, size, seed), f"sample of {size} (seed {seed})"


def proxy_matrix(
    context: SearchContext, pool: Sequence[Candidate], names: Sequence[str], evaluator: Evaluator
) -> np.ndarray:
    """Raw proxy values (pool × proxies) through the score cache; NaN where a proxy or the evaluation failed."""
    matrix = np.full((len(pool), len(names)), np.nan)
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=len(pool), desc="proxies of the pool", unit="cand", file=sys.stderr, leave=False)
    try:
        for row, candidate in enumerate(pool):
            candidate.seed = context.seed  # the seed run_trial gives candidates: one cache entry per candidate
            try:
                result, _ = context.evaluate(candidate, evaluator)
            except Exception as err:  # noqa: BLE001 - a candidate that cannot be scored keeps NaN proxies
                log.warning("proxies of %s failed: %s: %s", candidate.describe(), type(err).__name__, err)
            else:
                for col, name in enumerate(names):
                    value = result.scores.get(name, math.nan)
                    matrix[row, col] = value if value is not None else math.nan
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
    return matrix


def normalize(matrix: np.ndarray, transform: str = "none") -> np.ndarray:
    """Min–max normalize each column to [0, 1] over its finite values; non-finite values become NaN.

    ``transform`` is applied first: ``log`` (non-positive values become NaN, as log-measures do),
    ``signed_log`` (sign(x)·log(1 + |x|), keeps every value and tames proxies spanning 1e40).
    A constant column becomes all zeros: it cannot change a ranking.
    """
    values = np.array(matrix, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if transform == "log":
            values = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
        elif transform == "signed_log":
            values = np.sign(values) * np.log1p(np.abs(values))
    values[~np.isfinite(values)] = np.nan
    out = np.full_like(values, np.nan)
    for col in range(values.shape[1]):
        column = values[:, col]
        finite = ~np.isnan(column)
        if not finite.any():
            continue
        low, high = column[finite].min(), column[finite].max()
        out[finite, col] = (column[finite] - low) / (high - low) if high > low else 0.0
    return out


def combined_scores(normalized: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """M_w(A) = Σ_i w_i · M̃_i(A), a NaN term skipped (it adds nothing)."""
    return np.where(np.isnan(normalized), 0.0, normalized) @ np.asarray(weights, dtype=float)


def ranking(scores: np.ndarray) -> np.ndarray:
    """Pool indices, best score first; ties keep the pool's order."""
    return np.argsort(-scores, kind="stable")
