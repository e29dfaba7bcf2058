"""Strategies: search drivers that replace the plain sampler loop (RoBoT, two-stage, Ray Tune)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from automl.plugin import Configurable

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automl.candidate import Candidate
    from automl.evaluation import Evaluations
    from automl.evaluators import EvalResult, Evaluator
    from automl.space import SearchSpace


@runtime_checkable
class SearchContext(Protocol):
    """What a strategy may use of the search that runs it (the study runner implements it).

    - ``space``, ``study``, ``seed`` (the evaluation seed), ``device`` (``None``: the evaluators'
      default) and ``options`` (settings the command line passes to strategies, such as
      ``ray_address``);
    - ``evaluations``: the one evaluation path (score cache, costs) for candidates of this search;
    - ``evaluate(candidate, evaluator)``: a result without recording a trial (cached when possible);
    - ``run_trial(params, evaluator=, attrs=)``: evaluate one candidate as a recorded trial;
    - ``objective_values(result)``: the objective values of a result, ``TrialFailed`` when one is
      missing or not finite;
    - ``trial_finished(trial, candidate)``: tell observers about a trial the strategy recorded itself.
    """

    space: SearchSpace
    study: optuna.Study
    seed: int
    device: str | None
    options: Mapping[str, Any]
    evaluations: Evaluations

    def evaluate(self, candidate: Candidate, evaluator: Evaluator | None = None) -> tuple[EvalResult, bool]: ...

    def run_trial(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        evaluator: Evaluator | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> FrozenTrial: ...

    def objective_values(self, result: EvalResult) -> list[float]: ...

    def trial_finished(self, trial: FrozenTrial, candidate: Candidate | None) -> None: ...


class Strategy(Configurable):
    """Decides which candidates to evaluate, and with which evaluator.

    ``run`` receives a ``SearchContext`` and the number of trials still allowed. It must leave every
    evaluation recorded in the study so that a re-run resumes instead of repeating.
    """

    def metrics(self) -> list[str]:
        """Scores the strategy's own evaluators produce (an oracle's), which objectives may also name."""
        return []

    def validate(self, space: SearchSpace) -> None:
        """Check rules that involve the rest of the space; raise ``SpaceError`` with a key path."""

    @abstractmethod
    def run(self, context: SearchContext, n_trials: int) -> None:
        """Run the search, spending at most ``n_trials`` new trials."""
