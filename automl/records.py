"""Trials as flat records (one dict per trial): shared by ``automl show``/``export`` and the dashboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial


def trial_record(trial: FrozenTrial, metrics: Iterable[str] = ()) -> dict[str, Any]:
    """A flat dict: number, state, values (named by ``metrics`` when given), params, scores, costs, info."""
    record: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    names = list(metrics)
    values = trial.values or []
    for i, value in enumerate(values):
        record[f"value.{names[i] if i < len(names) else i}"] = value
    candidate = trial.user_attrs.get("candidate", {})
    record["candidate_id"] = candidate.get("id")
    record["arch"] = candidate.get("arch")
    for name, value in trial.params.items():
        record[f"param.{name}"] = value
    result = trial.user_attrs.get("result", {})
    for group, prefix in (("scores", "score"), ("costs", "cost")):
        for name, value in (result.get(group) or {}).items():
            record[f"{prefix}.{name}"] = value
    for name, value in (result.get("info") or {}).items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            record[f"info.{name}"] = value
    for name, value in trial.user_attrs.items():
        if name not in ("candidate", "result", "failure") and isinstance(value, (int, float, str, bool)):
            record[f"attr.{name}"] = value
    record["cached"] = result.get("cached")
    record["duration_s"] = result.get("duration_s", _duration(trial))
    record["failure"] = trial.user_attrs.get("failure") or trial.system_attrs.get("fail_reason")
    record["started"] = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None
    return record


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def study_metrics(study: optuna.Study) -> list[str]:
    """The objective names the space stored with the study (``value.0``... for foreign studies)."""
    described = study.user_attrs.get("automl.space") or {}
    objectives = described.get("objectives") or []
    if objectives:
        return [o["metric"] for o in objectives]
    return [str(i) for i in range(len(study.directions))]


def study_records(study: optuna.Study, states: Iterable[optuna.trial.TrialState] | None = None) -> list[dict[str, Any]]:
    metrics = study_metrics(study)
    trials = study.get_trials(deepcopy=False, states=tuple(states) if states else None)
    return [trial_record(t, metrics) for t in trials]


def columns(records: list[dict[str, Any]]) -> list[str]:
    """Every key that occurs, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several), empty when nothing completed."""
    try:
        if len(study.directions) == 1:
            return [study.best_trial]
        return sorted(study.best_trials, key=lambda t: t.values)
    except ValueError:
        return []


def last_activity(study: optuna.Study) -> dt.datetime | None:
    times = [t.datetime_complete or t.datetime_start for t in study.get_trials(deepcopy=False)]
    times = [t for t in times if t is not None]
    return max(times) if times else None
