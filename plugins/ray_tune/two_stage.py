"""The ``two_stage`` strategy: screen a pool of candidates with a cheap evaluator, train the best on Ray Tune.

Both stages are trials of the same study, told apart by the ``stage`` user attribute:

- ``stage = "screen"``: the candidate scored by the screening evaluator (proxies). The study's objectives
  are the training scores, which a screen does not measure, so a screened trial is recorded as PRUNED
  (evaluated partially) with its screening scores in ``result`` and ``screen`` = ``{metric, value}``;
- ``stage = "train"``: one of the ``top_k`` best screened candidates, evaluated by the space's evaluator
  through Ray Tune exactly as the ``ray_tune`` strategy does (``screen_trial`` names its screen trial).

A re-run continues: screened candidates count toward ``pool``, trained ones toward ``top_k``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from automl.costs import COST_METRICS
from automl.errors import SpaceError
from automl.options import Option
from automl.record import TrialRecord, failure_record, record_candidate, record_outcome
from automl.registry import get_registry
from automl.runner import failure_reason
from automl.strategies import Strategy
from automl_plugins.ray_tune.strategy import EXAMPLE, RAY_OPTIONS, _mode, example_space, make_scheduler, run_on_ray

if TYPE_CHECKING:
    from automl.space import SearchSpace
    from automl.strategies import SearchContext

SCREEN = "screen"
TRAIN = "train"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class TwoStageStrategy(Strategy):
    """Screen ``pool`` sampled candidates with ``screen`` (an evaluator table); train the ``top_k`` best."""

    name = "two_stage"
    description = "screen a pool with a cheap evaluator (proxies), train the top k through Ray Tune"
    example = {"screen": {"name": "proxies", "proxies": ["synflow"]}, "pool": 2, "top_k": 1, **EXAMPLE}
    example_space = example_space({"name": "two_stage", **example})
    options = {
        "screen": Option(dict, help='the screening evaluator\'s table, e.g. {name = "proxies", proxies = [...]}'),
        "screen_metric": Option(
            str,
            default=None,
            help="the screen score that ranks candidates (default: the screening evaluator's first)",
        ),
        "screen_direction": Option(str, default="maximize", choices=("maximize", "minimize")),
        "pool": Option(int, default=20, min=1, max=100_000, help="candidates to screen"),
        "top_k": Option(int, default=4, min=1, max=10_000, help="best screened candidates to train"),
        **RAY_OPTIONS,
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        raw = settings["screen"]
        registry = get_registry()
        cls = registry.get("evaluators", raw.get("name", ""), key="screen.name")
        self.screen_evaluator = cls.configure(raw, key="screen")
        allowed = list(self.screen_evaluator.metrics()) + list(COST_METRICS)
        self.screen_metric = settings["screen_metric"] or allowed[0]
        if self.screen_metric not in allowed:
            raise SpaceError(
                f"{self.screen_metric!r} is not a score of the screening evaluator {self.screen_evaluator.name!r}",
                key="screen_metric",
                allowed=allowed,
            )
        if settings["top_k"] > settings["pool"]:
            raise SpaceError(f"top_k ({settings['top_k']}) is larger than the pool ({settings['pool']})", key="top_k")

    def validate(self, space: SearchSpace) -> None:
        try:
            self.screen_evaluator.validate(space)
        except SpaceError as err:
            raise err.located(prefix="screen") from None
        make_scheduler(self.settings["scheduler"], self.settings["scheduler_options"], _mode(space), space=space)

    def run(self, context: SearchContext, n_trials: int) -> None:
        trials = context.study.get_trials(deepcopy=False, states=FINISHED)
        screened = [t for t in trials if t.user_attrs.get("stage") == SCREEN]
        trained = {TrialRecord.read(t).candidate.id for t in trials if t.user_attrs.get("stage") == TRAIN}
        to_screen = min(max(0, self.settings["pool"] - len(screened)), n_trials)
        for _ in range(to_screen):
            screened.append(self.screen_one(context))
        to_train = min(max(0, self.settings["top_k"] - len(trained)), n_trials - to_screen)
        best = self.ranked(screened, exclude=trained)[:to_train]
        if not best:
            return
        from automl_plugins.ray_tune.searcher import PlannedTrial

        planned = [
            PlannedTrial(dict(t.params), {"screen_trial": t.number, "screen": t.user_attrs.get("screen")}) for t in best
        ]
        run_on_ray(context, self.settings, n_trials=len(planned), planned=planned, attrs={"stage": TRAIN})

    def screen_one(self, context: SearchContext) -> FrozenTrial:
        """Sample a candidate, score it with the screening evaluator, record it as a screen trial."""
        study = context.study
        trial = study.ask()
        start = time.perf_counter()
        candidate = None
        state = TrialState.PRUNED
        try:
            trial.set_user_attr("stage", SCREEN)
            candidate = context.space.sample(trial)
            candidate.seed = context.seed
            record_candidate(trial, candidate)
            result, cached = context.evaluate(candidate, self.screen_evaluator)
            record = TrialRecord.of_result(result, cached=cached, duration_s=time.perf_counter() - start)
            value = result.value(self.screen_metric)
            if value is None or math.isnan(value):
                reason = result.reasons.get(self.screen_metric, "no value")
                record.failure = f"screen score {self.screen_metric} is missing or NaN: {reason}"
                state = TrialState.FAIL
            else:
                trial.set_user_attr(SCREEN, {"metric": self.screen_metric, "value": float(value)})
            record_outcome(trial, record)
        except Exception as err:  # noqa: BLE001 - one candidate failing its screen fails that trial only
            record_outcome(trial, failure_record(failure_reason(err), duration_s=time.perf_counter() - start))
            state = TrialState.FAIL
        frozen = study.tell(trial, None, state=state, skip_if_finished=True)
        context.trial_finished(frozen, candidate)
        return frozen

    def ranked(self, screened: list[FrozenTrial], *, exclude: set[str | None]) -> list[FrozenTrial]:
        """Screened trials with a score, best first, one per candidate, without the ``exclude``d ones."""
        sign = -1.0 if self.settings["screen_direction"] == "maximize" else 1.0
        scored = [t for t in screened if t.user_attrs.get(SCREEN) is not None]
        scored.sort(key=lambda t: (sign * t.user_attrs[SCREEN]["value"], t.number))
        seen: set[str | None] = set(exclude)
        best = []
        for trial in scored:
            candidate_id = TrialRecord.read(trial).candidate.id
            if candidate_id in seen:
                continue
            seen.add(candidate_id)
            best.append(trial)
        return best
