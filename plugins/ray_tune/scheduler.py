"""``scheduler = "mo_asha"``: Ray Tune stops a trial when the study's MO-ASHA rung decision says so.

The decision is the local runner's (``automl.pruners.MOASHAPruner``), made on the driver from the study:
the searcher records each intermediate value (and, when the trial starts, its cost figures) before the
scheduler asks, so a Ray trial and a local trial are judged by the same record and the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from automl.pruners import MOASHAPruner
    from automl_plugins.ray_tune.searcher import StudySearcher


class MOASHAScheduler(FIFOScheduler):
    """Runs trials in submission order and stops the ones MO-ASHA ranks out at a rung.

    ``searcher`` is the ``StudySearcher`` of the run (set before the run starts); it holds the study.
    """

    def __init__(self, pruner: MOASHAPruner) -> None:
        super().__init__()
        self.pruner = pruner
        self.searcher: StudySearcher | None = None

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.searcher is None:
            return TrialScheduler.CONTINUE
        stop = self.searcher.rung_decision(trial.trial_id, result)
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
