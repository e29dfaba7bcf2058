"""The bridge between Ray Tune and the automl study: Optuna ask/tell driven from the Ray Tune driver.

Ray Tune asks this searcher for a configuration; the searcher asks the study for a trial, samples the
candidate define-by-run exactly as a local search does, and keeps one map from Ray's trial id to the
Optuna trial. Intermediate values are reported to the Optuna trial as they arrive, and the outcome is
told with the right state:

- the trainable finished: COMPLETE with the objective values (FAIL if an objective is missing or NaN);
- the scheduler stopped the trial: PRUNED, valued at its last intermediate value (single objective);
- the evaluator raised, or the Ray worker died: FAIL with the reason in the ``failure`` attribute.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from automl.candidate import Candidate
from automl.errors import TrialFailed
from automl.evaluation import candidate_costs
from automl.evaluators import EvalResult, Evaluator
from automl.pruners import MOASHAPruner, needs_costs
from automl.record import (
    TrialRecord,
    failure_record,
    pruned_record,
    record_candidate,
    record_costs,
    record_intermediate,
    record_outcome,
)
from automl.runner import failure_reason
from automl_plugins.ray_tune.worker import ATTRS, FINAL, PAYLOAD, STEP, VALUE

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from automl.strategies import SearchContext


@dataclass
class PlannedTrial:
    """A candidate fixed in advance (the second stage of a two-stage search) and its extra attributes."""

    params: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _OpenTrial:
    trial: optuna.Trial
    candidate: Candidate
    started: float
    curve: list[float] = field(default_factory=list)
    seen_steps: set[int] = field(default_factory=set)
    last_step: int | None = None
    steps: list[tuple[int, float]] = field(default_factory=list)
    stop_reason: str | None = None


class StudySearcher(Searcher):
    """A Ray Tune ``Searcher`` that records every trial in the search's study (``context``).

    ``n_trials`` trials are asked at most (a score-cache hit is recorded at once and counts); with
    ``planned`` the candidates are those, in order, instead of the sampler's. ``attrs`` are set on every
    trial. ``scheduler_name`` names what stopped a pruned trial. With ``pruner`` (MO-ASHA, asked by the
    ``mo_asha`` scheduler through ``rung_decision``) each trial's cost figures are recorded when it starts
    and its intermediate values as they arrive, as the local runner records them.
    """

    def __init__(
        self,
        context: SearchContext,
        *,
        n_trials: int,
        evaluator: Evaluator,
        evaluator_raw: Mapping[str, Any] | None = None,
        planned: Sequence[PlannedTrial] | None = None,
        attrs: Mapping[str, Any] | None = None,
        scheduler_name: str = "the scheduler",
        device: str | None = None,
        pruner: MOASHAPruner | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.study = context.study
        self.n_trials = n_trials if planned is None else min(n_trials, len(planned))
        self.evaluator = evaluator
        self.evaluator_raw = dict(evaluator_raw) if evaluator_raw is not None else None
        self.planned = list(planned) if planned is not None else None
        self.attrs = dict(attrs or {})
        self.scheduler_name = scheduler_name
        self.device = device
        self.pruner = pruner
        self.asked = 0
        self.finished: list[FrozenTrial] = []
        self.open: dict[str, _OpenTrial] = {}
        self.ray_trials: dict[str, Trial] = {}
        self._single = len(self.study.directions) == 1

    # -- Ray Tune's Searcher interface ---------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        while self.asked < self.n_trials:
            index = self.asked
            self.asked += 1
            attrs = dict(self.attrs)
            if self.planned is not None:
                planned = self.planned[index]
                attrs.update(planned.attrs)
                # An enqueued trial fixes the candidate: every dimension's suggest returns these values.
                self.study.enqueue_trial(dict(planned.params), skip_if_exists=False)
            trial = self.study.ask()
            started = time.perf_counter()
            try:
                for key, value in attrs.items():
                    trial.set_user_attr(key, value)
                candidate = self.context.space.sample(trial)
                candidate.seed = self.context.seed
                record_candidate(trial, candidate)
                if self.pruner is not None and needs_costs(self.pruner):
                    record_costs(trial, candidate_costs(candidate))
            except Exception as err:  # noqa: BLE001 - a dimension failing fails this trial only
                self._fail(trial, None, failure_reason(err), started)
                continue
            cached = self.context.evaluations.lookup(candidate, self.evaluator)
            if cached is not None:
                self._complete(
                    _OpenTrial(trial, candidate, started),
                    cached,
                    cached=True,
                    duration_s=time.perf_counter() - started,
                )
                continue
            self.open[trial_id] = _OpenTrial(trial, candidate, started)
            return {
                "space": self.context.space.raw,
                "params": dict(candidate.params),
                "seed": self.context.seed,
                "evaluator": self.evaluator_raw,
                "device": self.device,
                "threads": self.context.evaluations.threads,
                "optuna_trial": trial.number,
            }
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        current = self.open.get(trial_id)
        if current is None or result.get(FINAL):
            return
        self._intermediate(current, result)

    def _intermediate(self, current: _OpenTrial, result: Mapping[str, Any]) -> None:
        if result.get(ATTRS):
            for key, value in json.loads(result[ATTRS]).items():
                current.trial.set_user_attr(f"info.{key}", value)
        value, step = result.get(VALUE), result.get(STEP)
        if value is None or step is None:
            return
        step = int(step)
        if step in current.seen_steps:  # the stopping result may arrive both as a result and at completion
            return
        current.seen_steps.add(step)
        current.last_step = step
        current.curve.append(float(value))
        # Optuna keeps intermediate values for single-objective studies only.
        if self._single and not math.isnan(float(value)):
            current.trial.report(float(value), step)
        if self.pruner is not None:
            current.steps.append((step, float(value)))
            record_intermediate(current.trial, current.steps)

    def rung_decision(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Record an intermediate result and say whether MO-ASHA stops the trial (the ``mo_asha`` scheduler).

        Ray Tune asks the scheduler before it hands the result to the searcher: the value is recorded here.
        """
        current = self.open.get(trial_id)
        if current is None or self.pruner is None or result.get(FINAL):
            return False
        before = len(current.steps)
        self._intermediate(current, result)
        if len(current.steps) == before:
            return False  # no new step: nothing new to judge
        current.stop_reason = self.pruner.decide(self.study, current.trial.number)
        return current.stop_reason is not None

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        current = self.open.pop(trial_id, None)
        ray_trial = self.ray_trials.pop(trial_id, None)
        if current is None:
            return
        if error:
            self._fail(current.trial, current.candidate, _ray_error(ray_trial), current.started, curve=current.curve)
            return
        if not result:
            self._fail(
                current.trial,
                current.candidate,
                "Ray Tune ended the trial before it started",
                current.started,
            )
            return
        if PAYLOAD not in result:
            # Ray Tune passes the result that made the scheduler stop the trial here, not to
            # on_trial_result: it is the trial's last intermediate value.
            self._intermediate(current, result)
            self._pruned(
                current,
                current.stop_reason
                or f"stopped by the {self.scheduler_name} scheduler"
                + (f" at step {current.last_step}" if current.last_step is not None else ""),
            )
            return
        payload = json.loads(result[PAYLOAD])
        for key, value in payload.get("attrs", {}).items():
            current.trial.set_user_attr(f"info.{key}", value)
        if payload["status"] == "complete":
            outcome = EvalResult.from_json(payload)
            self._complete(
                current,
                outcome,
                cached=False,
                duration_s=payload["duration_s"],
                ray={"trial_id": trial_id, **{k: payload.get(k) for k in ("device", "node_id", "node_ip", "threads")}},
            )
        elif payload["status"] == "pruned":
            self._pruned(current, payload["reason"], duration_s=payload["duration_s"])
        else:
            self._fail(
                current.trial,
                current.candidate,
                payload["reason"],
                current.started,
                curve=payload.get("curve"),
                duration_s=payload["duration_s"],
            )

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its experiment state for a later Tuner.restore; the study, the score cache and
        # open trials live in this process only (a re-run of the search continues the study instead).
        return {"n_trials": self.n_trials, "asked": self.asked, "scheduler_name": self.scheduler_name}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study is the record (Ray Tune calls this for experiment checkpoints)."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a re-run continues the study."""

    # -- a Ray Tune callback, so a worker error can be told with its message -------------------------
    def callback(self) -> Callback:
        searcher = self

        class _TrialObjects(Callback):
            def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
                searcher.ray_trials[trial.trial_id] = trial

        return _TrialObjects()

    def fail_open_trials(self, reason: str) -> None:
        """Fail what is still running in the study (the Ray run was interrupted or crashed)."""
        for trial_id in list(self.open):
            current = self.open.pop(trial_id)
            self._fail(current.trial, current.candidate, reason, current.started)

    # -- recording -----------------------------------------------------------------------------------
    def _complete(
        self,
        current: _OpenTrial,
        result: EvalResult,
        *,
        cached: bool,
        duration_s: float,
        ray: Mapping[str, Any] | None = None,
    ) -> None:
        trial = current.trial
        record = TrialRecord.of_result(result, cached=cached, duration_s=duration_s)
        if ray:
            trial.set_user_attr("ray", dict(ray))
        try:
            values = self.context.objective_values(result)
        except TrialFailed as err:
            record.failure = str(err)
            record_outcome(trial, record)
            self._tell(trial, current.candidate, TrialState.FAIL, None)
            return
        record_outcome(trial, record)
        if not cached:
            self.context.evaluations.store(current.candidate, self.evaluator, result)
        self._tell(trial, current.candidate, TrialState.COMPLETE, values)

    def _pruned(self, current: _OpenTrial, reason: str, duration_s: float | None = None) -> None:
        duration = duration_s if duration_s is not None else time.perf_counter() - current.started
        record_outcome(current.trial, pruned_record(reason, curve=current.curve, duration_s=duration))
        self._tell(current.trial, current.candidate, TrialState.PRUNED, None)

    def _fail(
        self,
        trial: optuna.Trial,
        candidate: Candidate | None,
        reason: str,
        started: float,
        *,
        curve: Sequence[float] | None = None,
        duration_s: float | None = None,
    ) -> None:
        duration = duration_s if duration_s is not None else time.perf_counter() - started
        record_outcome(trial, failure_record(reason, curve=list(curve or []), duration_s=duration))
        self._tell(trial, candidate, TrialState.FAIL, None)

    def _tell(
        self, trial: optuna.Trial, candidate: Candidate | None, state: TrialState, values: list[float] | None
    ) -> None:
        frozen = self.study.tell(trial, values, state=state, skip_if_finished=True)
        self.finished.append(frozen)
        self.context.trial_finished(frozen, candidate)


def _ray_error(ray_trial: Trial | None) -> str:
    error_file = getattr(ray_trial, "error_file", None) if ray_trial is not None else None
    if error_file and Path(error_file).exists():
        lines = [line for line in Path(error_file).read_text().splitlines() if line.strip()]
        if lines:
            return f"the Ray worker failed: {lines[-1].strip()}"
    return "the Ray worker failed (see Ray's logs in the run folder)"
