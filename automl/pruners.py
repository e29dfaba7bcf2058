"""Multi-objective early stopping: MO-ASHA's rung decision, as an Optuna pruner and as plain functions.

MO-ASHA (Schmucker et al. 2021, "Multi-objective multi-fidelity hyperparameter optimization with
application to fairness") is asynchronous successive halving whose ranking at a rung is a
non-dominated sort instead of a sort of one value. A trial is judged when it reaches a rung (the first
reported step at or past the rung's resource) among every trial that reached that rung before it: the
vectors (intermediate value at the rung, cost figures) are sorted into fronts, each front ordered by
the ε-net tie-break (the member best in the first objective first, then each time the member farthest
from those already taken), and the trial continues only if its position is among the first
``max(1, n // reduction_factor)`` of the ``n`` trials at the rung (itself included).

Cost figures (``params``, ``flops``, ``size_bits``) are known before training: the runner records them
as the trial's ``cost.<name>`` user attributes when it starts, and every intermediate value in the
``intermediate`` user attribute (Optuna keeps intermediate values for single-objective studies only),
so the decision reads nothing but the study. The local runner asks ``MOASHAPruner.decide`` after each
intermediate value; the Ray Tune path asks the same method from its scheduler.

Distances of the ε-net are measured on objectives scaled to [0, 1] over the trials at the rung (bits
would otherwise drown accuracy); Syne Tune's reference implementation measures raw values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from automl.costs import COST_METRICS
from automl.errors import SpaceError
from automl.options import Option, validate_options
from automl.record import COST_PREFIX, INTERMEDIATE_ATTR

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

# Trials whose values at a rung count: a failed trial's curve may hold a diverged value.
_COMPETING = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
STEP_MAX = 1_000_000_000

# What ``pruner_options`` of ``pruner = "mo_asha"`` (and the ``mo_asha`` Ray Tune scheduler) accept.
MO_ASHA_OPTIONS: dict[str, Option] = {
    "min_resource": Option(int, default=1, min=1, max=STEP_MAX, help="step of the first rung"),
    "reduction_factor": Option(int, default=3, min=2, max=100, help="η: the top 1/η of a rung continue"),
    "max_resource": Option(
        int, default=None, min=1, max=STEP_MAX, help="the last step (no rung at or after it; default: none)"
    ),
    "rungs": Option(
        list, default=[], item_type=int, min=1, max=STEP_MAX, help="explicit rung steps (instead of the geometry)"
    ),
}


# -- non-dominated sorting -------------------------------------------------------------------------------
def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (every objective minimized)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of ``points`` by front: the first front is non-dominated, the next is once it is removed, ...

    Every objective is minimized; within a front indices keep their order.
    """
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


def epsilon_net_order(points: Sequence[Sequence[float]], members: Sequence[int]) -> list[int]:
    """``members`` (indices of ``points``) in ε-net order: the best in the first objective, then farthest first.

    Each next member maximizes its Euclidean distance to the nearest member already taken; ties go to the
    earlier index. Distances are those of ``points`` as given (scale them first).
    """
    left = list(members)
    if not left:
        return []
    first = min(left, key=lambda i: (points[i][0], i))
    order = [first]
    left.remove(first)
    while left:
        best = max(left, key=lambda i: (min(math.dist(points[i], points[j]) for j in order), -i))
        order.append(best)
        left.remove(best)
    return order


def scaled(points: Sequence[Sequence[float]]) -> list[list[float]]:
    """Each objective mapped to [0, 1] over ``points`` (an objective equal everywhere maps to 0)."""
    if not points:
        return []
    columns = list(zip(*points))
    low = [min(c) for c in columns]
    span = [max(c) - lo for c, lo in zip(columns, low)]
    return [[(v - lo) / s if s > 0 else 0.0 for v, lo, s in zip(p, low, span)] for p in points]


def mo_asha_ranking(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of ``points`` best first: fronts in order, each in ε-net order on the scaled objectives."""
    unit = scaled(points)
    return [i for front in nondominated_fronts(points) for i in epsilon_net_order(unit, front)]


def promoted(n: int, reduction_factor: int) -> int:
    """How many of ``n`` trials at a rung continue: the top 1/η, at least one (ASHA's first trial goes on)."""
    return max(1, n // reduction_factor)


def rung_steps(
    *, min_resource: int = 1, reduction_factor: int = 3, max_resource: int | None = None, rungs: Sequence[int] = ()
) -> list[int]:
    """The steps at which trials are judged: ``rungs`` if given, else min_resource · η^k below max_resource."""
    if rungs:
        found = sorted({int(r) for r in rungs})
    else:
        found, step = [], min_resource
        limit = max_resource if max_resource is not None else 10**9
        while step < limit:
            found.append(step)
            step *= reduction_factor
    return [r for r in found if max_resource is None or r < max_resource]


def rung_of(steps_before: Sequence[int], step: int, rungs: Sequence[int]) -> int | None:
    """The rung a trial reaches with ``step`` (the highest one it passes now), or ``None``."""
    last = max(steps_before, default=-math.inf)
    passed = [r for r in rungs if last < r <= step]
    return passed[-1] if passed else None


def value_at(curve: Sequence[tuple[int, float]], rung: int) -> float | None:
    """The value a trial had when it reached ``rung`` (its first step at or past it)."""
    for step, value in sorted(curve):
        if step >= rung:
            return value
    return None


# -- what the study records ------------------------------------------------------------------------------
def intermediate_of(trial: FrozenTrial) -> list[tuple[int, float]]:
    """The (step, value) pairs a trial reported, from the ``intermediate`` attribute or Optuna's own."""
    pairs = trial.user_attrs.get(INTERMEDIATE_ATTR)
    if isinstance(pairs, list):
        return [(int(s), float(v)) for s, v in pairs if v is not None]
    return sorted(trial.intermediate_values.items())


def costs_of(trial: FrozenTrial) -> dict[str, float]:
    """The cost figures recorded on a trial as flat ``cost.<name>`` attributes (when it started)."""
    out = {}
    for key, value in trial.user_attrs.items():
        if key.startswith(COST_PREFIX) and isinstance(value, (int, float)):
            out[key[len(COST_PREFIX) :]] = float(value)
    return out


class MOASHAPruner(optuna.pruners.BasePruner):
    """MO-ASHA's rung decision over the objectives of a study (see the module's docstring).

    ``objectives`` are ``(metric, direction)`` pairs in the study's order: exactly one is not a cost
    figure, and the intermediate values stand for it; the others are cost figures read from the trials'
    ``cost.<name>`` attributes. Trials that lack a value at the rung or a cost figure do not compete.
    """

    def __init__(
        self,
        objectives: Sequence[tuple[str, str]],
        *,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int | None = None,
        rungs: Sequence[int] = (),
    ) -> None:
        self.objectives = [(m, d) for m, d in objectives]
        scores = [m for m, _ in self.objectives if m not in COST_METRICS]
        if len(scores) != 1:
            raise ValueError(
                f"mo_asha stops on one intermediate score beside cost figures ({', '.join(COST_METRICS)}); "
                f"the objectives {[m for m, _ in self.objectives]} have {len(scores)} scores"
            )
        if reduction_factor < 2:
            raise ValueError("reduction_factor must be at least 2")
        self.reduction_factor = reduction_factor
        self.rungs = rung_steps(
            min_resource=min_resource, reduction_factor=reduction_factor, max_resource=max_resource, rungs=rungs
        )
        self.cost_metrics = [m for m, _ in self.objectives if m in COST_METRICS]

    def point(self, value: float, costs: Mapping[str, float]) -> list[float] | None:
        """The trial's objective vector, every objective minimized (``None`` when something is missing)."""
        out = []
        for metric, direction in self.objectives:
            x = value if metric not in COST_METRICS else costs.get(metric)
            if x is None or math.isnan(x):
                return None
            out.append(-x if direction == "maximize" else x)
        return out

    def judge(self, rung: int, own: list[float], others: Sequence[list[float]]) -> tuple[bool, int, int]:
        """Whether ``own`` continues at ``rung`` against ``others``: (continues, its position, how many)."""
        points = [*others, own]
        position = mo_asha_ranking(points).index(len(points) - 1)
        return position < promoted(len(points), self.reduction_factor), position, len(points)

    def decide(self, study: optuna.Study, number: int) -> str | None:
        """Why trial ``number`` stops now (its last intermediate value just reached a rung), else ``None``."""
        trials = study.get_trials(deepcopy=False)
        current = next((t for t in trials if t.number == number), None)
        if current is None:
            return None
        curve = intermediate_of(current)
        if not curve:
            return None
        step, value = curve[-1]
        rung = rung_of([s for s, _ in curve[:-1]], step, self.rungs)
        if rung is None:
            return None
        own = self.point(value, costs_of(current))
        if own is None:
            return None
        others = []
        for trial in trials:
            if trial.number == number or trial.state not in _COMPETING:
                continue
            at_rung = value_at(intermediate_of(trial), rung)
            point = None if at_rung is None else self.point(at_rung, costs_of(trial))
            if point is not None:
                others.append(point)
        keep, position, n = self.judge(rung, own, others)
        if keep:
            return None
        return (
            f"stopped by mo_asha at rung {rung} (step {step}): ranked {position + 1} of {n} by non-dominated "
            f"sorting, {promoted(n, self.reduction_factor)} continue"
        )

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.decide(study, trial.number) is not None


def needs_costs(pruner: optuna.pruners.BasePruner) -> bool:
    """Whether a trial's cost figures must be recorded when it starts (``cost.<name>``) for ``pruner``."""
    return isinstance(pruner, MOASHAPruner) and bool(pruner.cost_metrics)


def mo_asha_from_options(
    objectives: Sequence[tuple[str, str]], raw: Mapping[str, object], *, key: str, what: str, objectives_key: str
) -> MOASHAPruner:
    """The pruner for a file's options ``raw`` (at ``key``); ``SpaceError`` naming the key when they do not fit.

    ``what`` names the setting in messages (``pruner 'mo_asha'``); ``objectives_key`` is where an error
    about the objectives points (the setting that chose MO-ASHA).
    """
    options = validate_options(MO_ASHA_OPTIONS, raw, key=key)
    if options["rungs"] and "min_resource" in raw:
        raise SpaceError("give either rungs or min_resource, not both", key=f"{key}.rungs")
    scores = [m for m, _ in objectives if m not in COST_METRICS]
    if len(scores) != 1:
        raise SpaceError(
            f"{what} stops on the intermediate values of one score, judged together with cost figures "
            f"({', '.join(COST_METRICS)}) known before training; the objectives have {len(scores)} scores"
            + (f" ({', '.join(scores)})" if scores else ""),
            key=objectives_key,
        )
    return MOASHAPruner(objectives, **options)
