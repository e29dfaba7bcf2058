"""Strategies: search drivers that replace the plain sampler loop (RoBoT, two-stage, Ray Tune)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from automl.plugin import Configurable

if TYPE_CHECKING:
    from automl.runner import StudyRunner
    from automl.space import SearchSpace


class Strategy(Configurable):
    """Decides which candidates to evaluate, and with which evaluator.

    ``run`` receives the ``StudyRunner`` (the study, the space, and ``run_trial`` to evaluate a given
    candidate as a recorded trial) and the number of trials still allowed. It must leave every
    evaluation recorded in the study so that a re-run resumes instead of repeating.
    """

    def metrics(self) -> list[str]:
        """Scores the strategy's own evaluators produce (an oracle's), which objectives may also name."""
        return []

    def validate(self, space: SearchSpace) -> None:
        """Check rules that involve the rest of the space; raise ``SpaceError`` with a key path."""

    @abstractmethod
    def run(self, runner: StudyRunner, n_trials: int) -> None:
        """Run the search, spending at most ``n_trials`` new trials."""
