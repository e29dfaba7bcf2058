"""What every oracle-budget strategy shares: the oracle, the budget of distinct queries, the study's ledger.

A strategy of this family spends an expensive *oracle* (a benchmark table now, real training later) on
at most ``budget`` distinct candidates. Every oracle query is a recorded trial of the study; the
ledger reads those trials back, so a candidate already queried (in this run or an earlier, interrupted
one) is looked up instead of queried again, and a re-run resumes where the last one stopped.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from automl import Option, SpaceError, Strategy, get_registry
from automl.evaluators import Evaluator
from automl.record import TrialRecord
from automl.runner import FINISHED

if TYPE_CHECKING:
    from automl import Candidate, SearchContext, SearchSpace

DIRECTIONS = ("maximize", "minimize")

ORACLE_OPTIONS: dict[str, Option] = {
    "budget": Option(
        int,
        default=20,
        min=1,
        max=1_000_000,
        help="oracle queries: the most distinct candidates the oracle evaluates (T)",
    ),
    "oracle": Option(
        dict,
        help="the evaluator giving the true metric, an [evaluator]-style table, e.g. "
        '{name = "table", benchmark = "nb201", metrics = ["cifar10"]}',
    ),
    "metric": Option(str, default=None, help="the oracle metric to optimize (default: the space's objective)"),
    "direction": Option(
        str, default=None, choices=DIRECTIONS, help="the metric's direction (default: the space's objective's)"
    ),
    "seed": Option(
        int,
        default=None,
        min=0,
        max=2**32 - 1,
        help="seed of the strategy's own random choices (default: the run's seed)",
    ),
}

# A tiny run for the contract suites (automl.testing): three look-ups in the bundled NB201 table.
EXAMPLE: dict[str, Any] = {"budget": 3, "oracle": {"name": "table", "benchmark": "nb201", "metrics": ["cifar10"]}}


class BudgetSpent(Exception):
    """Raised by ``Queries.query`` when a new query would exceed the budget or this run's trial allowance."""


class OracleStrategy(Strategy):
    """Base of the strategies that spend a budget of oracle queries (subclasses implement ``search``).

    The study's objective is the oracle metric: the space must have exactly one objective, naming a
    score of the oracle, and every trial of the study is one oracle query.
    """

    example = EXAMPLE
    options = ORACLE_OPTIONS

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        raw = settings["oracle"]
        name = raw.get("name")
        registry = get_registry()
        if not isinstance(name, str):
            raise SpaceError(
                "the oracle needs an evaluator 'name'", key="oracle.name", allowed=registry.names("evaluators")
            )
        cls = registry.get("evaluators", name, key="oracle.name")
        self.oracle: Evaluator = cls.configure(raw, key="oracle")

    # -- validation --------------------------------------------------------------------------------
    def metrics(self) -> list[str]:
        return list(self.oracle.metrics())

    def validate(self, space: SearchSpace) -> None:
        oracle_metrics = self.oracle.metrics()
        if len(space.objectives) != 1:
            raise SpaceError(
                f"strategy {self.name!r} optimizes one oracle metric; this space has "
                f"{len(space.objectives)} objectives",
                key="objectives",
                allowed=oracle_metrics,
            )
        objective = space.objectives[0]
        if objective.metric not in oracle_metrics:
            raise SpaceError(
                f"the objective of a {self.name!r} run is the oracle's metric; {objective.metric!r} "
                f"is not a score of oracle {self.oracle.name!r}",
                key="objectives[0].metric",
                allowed=oracle_metrics,
            )
        if self.settings["metric"] is not None and self.settings["metric"] != objective.metric:
            raise SpaceError(
                f"{self.settings['metric']!r} differs from the space's objective "
                f"{objective.metric!r}; name the same metric (or leave 'metric' out)",
                key="metric",
                allowed=[objective.metric],
            )
        if self.settings["direction"] is not None and self.settings["direction"] != objective.direction:
            raise SpaceError(
                f"{self.settings['direction']!r} differs from the objective's direction {objective.direction!r}",
                key="direction",
                allowed=[objective.direction],
            )
        if space.study.n_trials < self.settings["budget"]:
            raise SpaceError(
                f"the study's n_trials ({space.study.n_trials}) is below the strategy's budget "
                f"({self.settings['budget']}): every oracle query is a trial",
                key="study.n_trials",
            )
        try:
            self.oracle.validate(space)
        except SpaceError as err:
            key = err.key
            key = key.removeprefix("evaluator.")
            raise SpaceError(err.message, key=f"oracle.{key}" if key else "oracle", allowed=err.allowed) from None

    # -- running -----------------------------------------------------------------------------------
    def run(self, context: SearchContext, n_trials: int) -> None:
        queries = Queries(self, context, n_trials)
        extra: dict[str, Any] = {}
        status = "finished"
        try:
            self.search(context, queries, extra)
        except BudgetSpent:
            status = "stopped: this run's trials are spent; run again to continue"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            self.record(context, queries, extra, status)

    @abstractmethod
    def search(self, context: SearchContext, queries: Queries, extra: dict[str, Any]) -> None:
        """Spend the queries; put what the study should remember (weights, ...) in ``extra``."""

    def seed_for(self, context: SearchContext) -> int:
        return context.seed if self.settings["seed"] is None else self.settings["seed"]

    def record(self, context: SearchContext, queries: Queries, extra: Mapping[str, Any], status: str) -> None:
        """Store the strategy's settings and outcome as ``strategy.*`` study attributes."""
        study = context.study
        study.set_user_attr("strategy.name", self.name)
        study.set_user_attr("strategy.settings", _jsonable(self.settings))
        study.set_user_attr("strategy.queries", f"{queries.spent} of {self.settings['budget']}")
        study.set_user_attr("strategy.status", status)
        best = queries.best_trial()
        if best is not None:
            candidate = TrialRecord.read(best).candidate
            study.set_user_attr(
                "strategy.best",
                {
                    "trial": best.number,
                    "candidate": candidate.id,
                    "arch": candidate.arch,
                    context.space.metrics[0]: best.value,
                },
            )
        for key, value in extra.items():
            study.set_user_attr(f"strategy.{key}", _jsonable(value))


class Queries:
    """The oracle queries of one study: read back from its trials, extended by new ones, never repeated.

    ``query(candidate)`` returns the candidate's objective value (``None`` when its evaluation failed):
    looked up for free when it was queried before, else evaluated by the oracle as a new trial.
    """

    def __init__(self, strategy: OracleStrategy, context: SearchContext, n_trials: int) -> None:
        self.strategy = strategy
        self.context = context
        self.allowed_new = n_trials
        self.budget = strategy.settings["budget"]
        self.maximize = context.space.directions[0] == "maximize"
        self.values: dict[str, float | None] = {}
        self.trial_numbers: dict[str, int] = {}
        self.new = 0
        for trial in context.study.get_trials(deepcopy=False, states=FINISHED):
            candidate_id = TrialRecord.read(trial).candidate.id
            if candidate_id and candidate_id not in self.values:
                self.values[candidate_id] = trial.value if trial.state == TrialState.COMPLETE else None
                self.trial_numbers[candidate_id] = trial.number

    @property
    def spent(self) -> int:
        """Distinct candidates queried so far (in this study)."""
        return len(self.values)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def __contains__(self, candidate_id: str) -> bool:
        return candidate_id in self.values

    def utility(self, value: float | None) -> float:
        """Higher is better whatever the direction; a failed query is worst."""
        if value is None or math.isnan(value):
            return -math.inf
        return value if self.maximize else -value

    def query(self, candidate: Candidate, attrs: Mapping[str, Any] | None = None) -> float | None:
        if candidate.id in self.values:
            return self.values[candidate.id]
        if self.exhausted:
            raise BudgetSpent(f"all {self.budget} queries are spent")
        if self.new >= self.allowed_new:
            raise BudgetSpent(f"this run may add {self.allowed_new} trials")
        trial_attrs = {
            "strategy": self.strategy.name,
            "strategy.query": self.spent + 1,
            **{k: _attr_value(v) for k, v in (attrs or {}).items()},
        }
        frozen = self.context.run_trial(candidate.params, evaluator=self.strategy.oracle, attrs=trial_attrs)
        self.new += 1
        value = frozen.value if frozen.state == TrialState.COMPLETE else None
        self.values[candidate.id] = value
        self.trial_numbers[candidate.id] = frozen.number
        return value

    def best_trial(self) -> Any:
        """The best completed trial among the queried candidates, or ``None``."""
        numbers = [n for cid, n in self.trial_numbers.items() if self.values.get(cid) is not None]
        if not numbers:
            return None
        trials = {t.number: t for t in self.context.study.get_trials(deepcopy=False)}
        return max((trials[n] for n in numbers), key=lambda t: self.utility(t.value))


def _attr_value(value: Any) -> Any:
    """Trial attributes are JSON: NaN becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value
