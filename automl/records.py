"""Trials as flat records (one dict per trial): shared by ``automl show``/``export`` and the dashboard."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automl.record import RESULT_ATTR, TrialRecord, is_record_attr
from automl.sqlite_reader import StudyCounts, read_sqlite_counts, read_sqlite_trials, sqlite_url
from automl.storage import open_storage


def trial_record(trial: FrozenTrial, metrics: Iterable[str] = ()) -> dict[str, Any]:
    """A flat dict: number, state, values (named by ``metrics`` when given), params, scores, costs, info."""
    stored = TrialRecord.read(trial)
    record: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    names = list(metrics)
    values = trial.values or []
    for i, value in enumerate(values):
        record[f"value.{names[i] if i < len(names) else i}"] = value
    record["candidate_id"] = stored.candidate.id
    record["arch"] = stored.candidate.arch
    for name, value in trial.params.items():
        record[f"param.{name}"] = value
    for group, prefix in ((stored.scores, "score"), (stored.costs, "cost")):
        for name, value in group.items():
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif prefix == "cost" and isinstance(value, float) and value.is_integer():
                value = int(value)  # parameters, FLOPs and bits are counts: 1234, not 1234.0
            record[f"{prefix}.{name}"] = value
    for name, value in stored.info.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            record[f"info.{name}"] = value
        elif isinstance(value, (list, dict)):
            # The learning curve and other structured details: one JSON text, so a CSV cell holds it too.
            record[f"info.{name}"] = json.dumps(value, default=str)
    for name, value in trial.user_attrs.items():
        if not is_record_attr(name) and isinstance(value, (int, float, str, bool)):
            record[f"attr.{name}"] = value
    record["cached"] = stored.cached if RESULT_ATTR in trial.user_attrs else None
    record["duration_s"] = stored.duration_s
    record["failure"] = stored.failure
    record["started"] = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None
    record["completed"] = trial.datetime_complete.isoformat(timespec="seconds") if trial.datetime_complete else None
    return record


def study_metrics(study: optuna.Study) -> list[str]:
    """The objective names the space stored with the study (``value.0``... for foreign studies)."""
    described = study.user_attrs.get("automl.space") or {}
    objectives = described.get("objectives") or []
    if objectives:
        return [o["metric"] for o in objectives]
    return [str(i) for i in range(len(study.directions))]


def study_records(
    study: optuna.Study,
    states: Iterable[optuna.trial.TrialState] | None = None,
    storage: optuna.storages.BaseStorage | None = None,
) -> list[dict[str, Any]]:
    metrics = study_metrics(study)
    wanted = set(states) if states else None
    return [trial_record(t, metrics) for t in study_trials(study, storage) if wanted is None or t.state in wanted]


def columns(records: list[dict[str, Any]]) -> list[str]:
    """Every key that occurs, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


def study_trials(study: optuna.Study, storage: str | optuna.storages.BaseStorage | None = None) -> list[FrozenTrial]:
    """The study's trials in number order, read through the SQLite fast path where ``storage`` (the storage
    the study was opened from) allows it."""
    fast = read_sqlite_trials(sqlite_url(storage), study.study_name)
    return fast if fast is not None else study.get_trials(deepcopy=False)


def best_trials(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several), empty when nothing completed.

    ``trials`` (the study's trials, already read) saves reading them again for a Pareto front.
    """
    try:
        if len(study.directions) == 1:
            return [study.best_trial]
        if trials is None:
            trials = study_trials(study)
        return sorted(pareto_front(trials, study.directions), key=lambda t: t.values)
    except ValueError:
        return []


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The completed trials no other completed trial dominates, in lexicographic order of their values.

    Trials are sorted by their values turned to minimisation; a trial can then only be dominated by one
    before it, and only by one already on the front, so each is compared with the front alone.
    """
    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]
    points = sorted(
        (
            (tuple(sign * v for sign, v in zip(signs, t.values)), t)
            for t in trials
            if t.state == TrialState.COMPLETE and t.values is not None
        ),
        key=lambda p: p[0],
    )
    front: list[tuple[float, ...]] = []
    kept = []
    for point, trial in points:
        if any(all(a <= b for a, b in zip(q, point)) and q != point for q in front):
            continue
        front.append(point)
        kept.append(trial)
    return kept


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials per state name (every state present, zero where none)."""
    counts = {s.name: 0 for s in TrialState}
    for trial in trials:
        counts[trial.state.name] += 1
    return counts


def last_activity(trials: Iterable[FrozenTrial]) -> dt.datetime | None:
    """The latest start or completion time among ``trials``."""
    times = [t.datetime_complete or t.datetime_start for t in trials]
    return max((t for t in times if t is not None), default=None)


class StudyOverview(NamedTuple):
    """One line about a study: what it searches, its trial counts, best value or front, last activity."""

    name: str
    described: dict[str, Any]
    directions: list[str]
    counts: dict[str, int]
    best_value: float | None
    front_size: int
    last_activity: dt.datetime | None

    def best_text(self, format_value: Callable[[Any], str]) -> str:
        """The best value (one objective) or the size of the Pareto front; ``-`` before any result."""
        if len(self.directions) == 1:
            return "-" if self.best_value is None else format_value(self.best_value)
        return f"{self.front_size} on front" if self.front_size else "-"


def study_overviews(storage: str | optuna.storages.BaseStorage | None) -> list[StudyOverview]:
    """Every study in ``storage`` by name, without reading every trial where the storage can count them."""
    opened = open_storage(storage)
    url = sqlite_url(opened)
    overviews = []
    for frozen in sorted(opened.get_all_studies(), key=lambda s: s.study_name):
        study_id = opened.get_study_id_from_name(frozen.study_name)
        directions = [d.name.lower() for d in frozen.directions]
        counted = read_sqlite_counts(url, frozen.study_name)
        trials: list[FrozenTrial] | None = None
        if counted is None:
            trials = opened.get_all_trials(study_id, deepcopy=False)
            counted = StudyCounts(state_counts(trials), last_activity(trials))
        best_value, front = None, 0
        if len(directions) == 1:
            try:
                # RDB storages answer this with one query.
                best_value = opened.get_best_trial(study_id).value
            except ValueError:
                pass
        elif counted.counts["COMPLETE"]:
            if trials is None:
                trials = read_sqlite_trials(url, frozen.study_name) or opened.get_all_trials(study_id, deepcopy=False)
            front = len(pareto_front(trials, frozen.directions))
        overviews.append(
            StudyOverview(
                frozen.study_name,
                frozen.user_attrs.get("automl.space") or {},
                directions,
                counted.counts,
                best_value,
                front,
                counted.last_activity,
            )
        )
    return overviews
