"""The trial record: what automl stores about one trial, with one writer and one reader.

Every runner (the local study runner, strategies, the Ray Tune searcher, ``automl score`` through its
rows) writes trials through ``record_candidate`` and ``record_outcome``; every reader (``automl
show``/``export``, the reports, the dashboard) goes through ``TrialRecord.read``. The record lives in
three Optuna user attributes, so plain Optuna tools see it too:

- ``candidate``: ``{"id", "arch", "arch_kind", "arch_key"}``, set as soon as the candidate is sampled;
- ``result``: ``{"version", "scores", "costs", "info", "reasons", "duration_s", "cached"}`` and
  ``"pruned"`` (the reason) for a pruned trial;
- ``failure``: the reason, for a failed trial.

Beside them, every score and cost figure is also a flat number of its own, ``score.<name>`` and
``cost.<name>`` (``None`` for NaN), so tools that sort and filter user attributes (optuna-dashboard,
``study.trials_dataframe()``) see them; readers keep using the ``result`` attribute. A pruner that
needs them (``mo_asha``) finds the cost figures as ``cost.<name>`` from the trial's start, and its
intermediate values as ``[step, value]`` pairs in ``intermediate``. Studies written before these
attributes existed read the same.

Version 1 (records written before the version field existed) has the same keys; ``read`` accepts both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl.evaluators import EvalResult

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automl.candidate import Candidate

RECORD_VERSION = 2
CANDIDATE_ATTR = "candidate"
RESULT_ATTR = "result"
FAILURE_ATTR = "failure"
RECORD_ATTRS = (CANDIDATE_ATTR, RESULT_ATTR, FAILURE_ATTR)
SCORE_PREFIX = "score."
COST_PREFIX = "cost."
INTERMEDIATE_ATTR = "intermediate"


def is_record_attr(name: str) -> bool:
    """Whether a trial's user attribute is part of automl's record (the rest are a runner's own extras)."""
    return name in RECORD_ATTRS or name == INTERMEDIATE_ATTR or name.startswith((SCORE_PREFIX, COST_PREFIX))


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def _number(value: Any) -> float:
    return math.nan if value is None else value


@dataclass
class CandidateInfo:
    """Who the trial evaluated: the candidate id, its architecture string and kind, the architecture's key."""

    id: str | None = None
    arch: str | None = None
    arch_kind: str | None = None
    arch_key: str | None = None

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateInfo:
        return cls(
            id=candidate.id,
            arch=candidate.attrs.get("arch"),
            arch_kind=candidate.attrs.get("arch_kind"),
            arch_key=candidate.arch_key,
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "arch": self.arch, "arch_kind": self.arch_kind, "arch_key": self.arch_key}


@dataclass
class TrialRecord:
    """One trial's outcome as automl records it.

    ``scores`` and ``costs`` hold NaN where a value failed (``reasons`` says why); ``info`` holds
    everything else an evaluation recorded (the learning curve under ``curve``). ``pruned`` and
    ``failure`` carry the reason of a pruned or failed trial.
    """

    candidate: CandidateInfo = field(default_factory=CandidateInfo)
    scores: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    cached: bool = False
    pruned: str | None = None
    failure: str | None = None
    version: int = RECORD_VERSION

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def of_result(cls, result: EvalResult, *, cached: bool, duration_s: float) -> TrialRecord:
        return cls(
            scores=dict(result.scores),
            costs=dict(result.costs),
            info=dict(result.info),
            reasons=dict(result.reasons),
            duration_s=round(duration_s, 6),
            cached=cached,
        )

    @property
    def curve(self) -> list[float]:
        return list(self.info.get("curve") or [])

    def value(self, metric: str) -> float | None:
        """A score or cost figure by name (``None`` when the record holds neither)."""
        if metric in self.scores:
            return self.scores[metric]
        return self.costs.get(metric)

    def result(self) -> EvalResult:
        return EvalResult(
            scores=dict(self.scores), info=dict(self.info), reasons=dict(self.reasons), costs=dict(self.costs)
        )

    # -- storage -----------------------------------------------------------------------------------
    def result_attr(self) -> dict[str, Any]:
        attr: dict[str, Any] = {
            "version": self.version,
            "scores": _jsonable(self.scores),
            "costs": _jsonable(self.costs),
            "info": self.info,
            "reasons": self.reasons,
            "duration_s": self.duration_s,
            "cached": self.cached,
        }
        if self.pruned is not None:
            attr["pruned"] = self.pruned
        return attr

    @classmethod
    def read(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a stored trial (any record version; an empty record for foreign trials)."""
        attrs = trial.user_attrs
        candidate = attrs.get(CANDIDATE_ATTR) or {}
        result = attrs.get(RESULT_ATTR) or {}
        duration = result.get("duration_s")
        if duration is None and trial.datetime_start and trial.datetime_complete:
            duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
        return cls(
            candidate=CandidateInfo(
                id=candidate.get("id"),
                arch=candidate.get("arch"),
                arch_kind=candidate.get("arch_kind"),
                arch_key=candidate.get("arch_key"),
            ),
            scores={k: _number(v) for k, v in (result.get("scores") or {}).items()},
            costs=_costs(result, attrs),
            info=dict(result.get("info") or {}),
            reasons=dict(result.get("reasons") or {}),
            duration_s=duration,
            cached=bool(result.get("cached", False)),
            pruned=result.get("pruned"),
            failure=attrs.get(FAILURE_ATTR) or trial.system_attrs.get("fail_reason"),
            version=int(result.get("version", 1)),
        )


def _costs(result: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, float]:
    # A trial pruned before its result had costs keeps those recorded when it started (cost.<name>).
    costs = {k: _number(v) for k, v in (result.get("costs") or {}).items()}
    for key, value in attrs.items():
        if key.startswith(COST_PREFIX) and key[len(COST_PREFIX) :] not in costs:
            costs[key[len(COST_PREFIX) :]] = _number(value)
    return costs


# -- the one writer ------------------------------------------------------------------------------------
def record_candidate(trial: optuna.Trial, candidate: Candidate) -> None:
    """Record who the trial evaluates, as soon as the candidate is sampled (the dashboard shows it live)."""
    trial.set_user_attr(CANDIDATE_ATTR, CandidateInfo.of(candidate).to_json())


def record_outcome(trial: optuna.Trial, record: TrialRecord) -> None:
    """Store ``record`` on the running ``trial`` (its result and, for a failed trial, the reason).

    The scores and cost figures also go to flat ``score.<name>`` / ``cost.<name>`` attributes; one
    already stored with the same value (costs recorded when the trial started) is not written again.
    """
    if record.scores or record.costs or record.info or record.pruned is not None or record.failure is None:
        trial.set_user_attr(RESULT_ATTR, record.result_attr())
    if record.failure is not None:
        trial.set_user_attr(FAILURE_ATTR, record.failure)
    _set_flat(trial, flat_attrs(record.scores, record.costs))


def record_costs(trial: optuna.Trial, costs: Mapping[str, float]) -> None:
    """Record a candidate's cost figures as ``cost.<name>`` when its trial starts (before training)."""
    _set_flat(trial, flat_attrs({}, costs))


def record_intermediate(trial: optuna.Trial, pairs: list[tuple[int, float]]) -> None:
    """Record the intermediate values so far as ``[step, value]`` pairs (``intermediate``).

    Optuna stores intermediate values for single-objective studies only; this attribute holds them for
    any study, so a multi-objective pruner can read every trial's values at a rung.
    """
    trial.set_user_attr(INTERMEDIATE_ATTR, [[int(s), None if math.isnan(v) else float(v)] for s, v in pairs])


def flat_attrs(scores: Mapping[str, float], costs: Mapping[str, float]) -> dict[str, float | int | None]:
    """``score.<name>`` and ``cost.<name>`` numbers (NaN as ``None``, whole cost figures as integers)."""
    out: dict[str, float | int | None] = {}
    for prefix, values in ((SCORE_PREFIX, scores), (COST_PREFIX, costs)):
        for name, value in values.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out[prefix + name] = None
            elif prefix == COST_PREFIX and float(value).is_integer() and abs(value) < 2**53:
                out[prefix + name] = int(value)
            else:
                out[prefix + name] = float(value)
    return out


def _set_flat(trial: optuna.Trial, values: Mapping[str, Any]) -> None:
    stored = trial.user_attrs
    for key, value in values.items():
        if key not in stored or stored[key] != value:
            trial.set_user_attr(key, value)


def failure_record(reason: str, *, curve: list[float] | None = None, duration_s: float | None = None) -> TrialRecord:
    """The record of a trial that failed with ``reason`` (keeping the learning curve it had)."""
    return TrialRecord(
        info={"curve": list(curve)} if curve else {},
        duration_s=None if duration_s is None else round(duration_s, 6),
        failure=reason,
    )


def pruned_record(reason: str, *, curve: list[float], duration_s: float) -> TrialRecord:
    """The record of a trial stopped by a pruner or scheduler, with its learning curve."""
    return TrialRecord(info={"curve": list(curve)}, duration_s=round(duration_s, 6), pruned=reason)
