"""Evaluators: how a candidate is scored (proxies, benchmark tables, training)."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl.plugin import Configurable

if TYPE_CHECKING:
    import optuna
    import torch

    from automl.candidate import Candidate
    from automl.space import SearchSpace


def _nan_to_none(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def _none_to_nan(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: (math.nan if v is None else float(v)) for k, v in values.items()}


@dataclass
class EvalResult:
    """What an evaluation produced.

    ``scores``: named numbers (objectives are chosen among them); NaN where a method failed numerically,
    with the reason in ``reasons``. ``costs``: the candidate's cost figures (``params``, ``flops``,
    ``size_bits``; filled in by the core when the evaluator leaves them empty). ``info``: anything else
    worth recording (a learning curve, the amount of training a proxy used), stored with the trial.
    ``transient``: part of the result stands for an exception caught on the way (a failure that may not
    happen again): the result is recorded but never cached.
    """

    scores: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    transient: bool = False

    @classmethod
    def coerce(cls, value: EvalResult | Mapping[str, float]) -> EvalResult:
        if isinstance(value, EvalResult):
            return value
        return cls(scores={k: float(v) for k, v in value.items()})

    def value(self, metric: str) -> float | None:
        """A score or cost figure by name (``None`` when neither holds it)."""
        if metric in self.scores:
            return self.scores[metric]
        return self.costs.get(metric)

    def to_json(self) -> dict[str, Any]:
        return {
            "scores": _nan_to_none(self.scores),
            "costs": _nan_to_none(self.costs),
            "info": self.info,
            "reasons": self.reasons,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        info = dict(data.get("info") or {})
        # Entries written before costs had their own field kept them in info.
        costs = data.get("costs", info.pop("costs", None)) or {}
        return cls(
            scores=_none_to_nan(data.get("scores") or {}),
            info=info,
            reasons=dict(data.get("reasons") or {}),
            costs=_none_to_nan(costs),
        )


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EvalContext:
    """What an evaluator may use besides the candidate: the trial (for intermediate values), seed, device.

    ``report(value, step)`` forwards an intermediate value to the trial and raises
    ``optuna.TrialPruned`` when the study's pruner says stop. Optuna's pruners take one objective (in a
    multi-objective study the value is only recorded); ``mo_asha`` (``automl.pruners``) takes several:
    the value also goes to the trial's ``intermediate`` attribute and the pruner decides from the record.
    Other runners (Ray Tune) pass their own context with the same two methods. ``space`` is the search space the candidate
    came from, when there is one (an evaluator that ranks a candidate within a pool samples it).
    """

    def __init__(
        self,
        trial: optuna.trial.BaseTrial | None = None,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        space: SearchSpace | None = None,
    ) -> None:
        import torch

        self.trial = trial
        self.seed = seed
        self.device = torch.device(device) if device is not None else default_device()
        self.space = space
        self.curve: list[float] = []
        self._steps: list[tuple[int, float]] = []

    def report(self, value: float, step: int) -> None:
        import optuna

        self.curve.append(float(value))
        if self.trial is None or not isinstance(self.trial, optuna.Trial):
            return
        single = len(self.trial.study.directions) == 1
        if _reads_records(self.trial.study.pruner):
            # MO-ASHA reads every trial's values at a rung from the record, for any number of objectives.
            from automl.record import record_intermediate

            self._steps.append((int(step), float(value)))
            record_intermediate(self.trial, self._steps)
            if single:
                self.trial.report(float(value), step)
            reason = self.trial.study.pruner.decide(self.trial.study, self.trial.number)
            if reason is not None:
                raise optuna.TrialPruned(reason)
            return
        if not single:
            return  # Optuna's pruners rank one objective: multi-objective trials keep only the curve
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} with value {value:.6g}")

    def set_attr(self, key: str, value: Any) -> None:
        """Record ``info.<key>`` on the trial while it runs (shown live by the dashboard)."""
        import optuna

        if isinstance(self.trial, optuna.Trial):
            self.trial.set_user_attr(f"info.{key}", value)


def _reads_records(pruner: Any) -> bool:
    from automl.pruners import MOASHAPruner

    return isinstance(pruner, MOASHAPruner)


class Evaluator(Configurable):
    """Scores candidates. Subclasses implement ``metrics`` and ``evaluate``.

    ``cacheable``: results may be reused for an identical candidate with identical settings, data and
    seed (set False for evaluators whose result depends on something else).
    """

    cacheable: bool = True

    @abstractmethod
    def metrics(self) -> list[str]:
        """Names of the scores ``evaluate`` returns (objectives may use these and the cost figures)."""

    def validate(self, space: SearchSpace) -> None:
        """Check rules that involve the rest of the space; raise ``SpaceError`` with a key path.

        Called once when a space is built. Keep no state from it: the space reaches ``evaluate``
        through ``context.space``.
        """

    @abstractmethod
    def evaluate(self, candidate: Candidate, context: EvalContext) -> EvalResult | Mapping[str, float]:
        """Score one candidate. Raise to fail the trial (the reason is stored); the search goes on."""
