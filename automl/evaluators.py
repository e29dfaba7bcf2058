"""Evaluators: how a candidate is scored (proxies, benchmark tables, training)."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import optuna
import torch

from automl.plugin import Configurable

if TYPE_CHECKING:
    from automl.candidate import Candidate
    from automl.space import SearchSpace


@dataclass
class EvalResult:
    """What an evaluation produced.

    ``scores``: named numbers (objectives are chosen among them); NaN where a method failed numerically,
    with the reason in ``reasons``. ``info``: anything else worth recording (a learning curve, the
    amount of training a proxy used), stored as trial user attributes ``info.<key>``.
    """

    scores: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def coerce(cls, value: EvalResult | Mapping[str, float]) -> EvalResult:
        if isinstance(value, EvalResult):
            return value
        return cls(scores={k: float(v) for k, v in value.items()})

    def to_json(self) -> dict[str, Any]:
        return {
            "scores": {k: (None if math.isnan(v) else v) for k, v in self.scores.items()},
            "info": self.info,
            "reasons": self.reasons,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalResult:
        scores = {k: (math.nan if v is None else float(v)) for k, v in data["scores"].items()}
        return cls(scores=scores, info=dict(data.get("info", {})), reasons=dict(data.get("reasons", {})))


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EvalContext:
    """What an evaluator may use besides the candidate: the trial (for intermediate values), seed, device.

    ``report(value, step)`` forwards an intermediate value to the trial and raises
    ``optuna.TrialPruned`` when the study's pruner says stop (single-objective studies only: Optuna's
    pruners do not take several objectives, so there the value is only recorded). Other runners (Ray Tune) pass their own
    context with the same two methods.
    """

    def __init__(
        self, trial: optuna.trial.BaseTrial | None = None, *, seed: int = 0, device: torch.device | str | None = None
    ) -> None:
        self.trial = trial
        self.seed = seed
        self.device = torch.device(device) if device is not None else default_device()
        self.curve: list[float] = []

    def report(self, value: float, step: int) -> None:
        self.curve.append(float(value))
        if self.trial is None or not isinstance(self.trial, optuna.Trial):
            return
        if len(self.trial.study.directions) > 1:
            return  # Optuna's pruners rank one objective: multi-objective trials keep only the curve
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} with value {value:.6g}")

    def set_attr(self, key: str, value: Any) -> None:
        """Record ``info.<key>`` on the trial while it runs (shown live by the dashboard)."""
        if isinstance(self.trial, optuna.Trial):
            self.trial.set_user_attr(f"info.{key}", value)


class Evaluator(Configurable):
    """Scores candidates. Subclasses implement ``metrics`` and ``evaluate``.

    ``cacheable``: results may be reused for an identical candidate with identical settings, data and
    seed (set False for evaluators whose result depends on something else). ``needs_training``: the
    evaluator trains models (used to label costs, and by two-stage strategies).
    """

    cacheable: ClassVar[bool] = True
    needs_training: ClassVar[bool] = False

    @abstractmethod
    def metrics(self) -> list[str]:
        """Names of the scores ``evaluate`` returns (objectives may use these and the cost figures)."""

    def validate(self, space: SearchSpace) -> None:
        """Check rules that involve the rest of the space; raise ``SpaceError`` with a key path."""

    @abstractmethod
    def evaluate(self, candidate: Candidate, context: EvalContext) -> EvalResult | Mapping[str, float]:
        """Score one candidate. Raise to fail the trial (the reason is stored); the search goes on."""
