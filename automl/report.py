"""Plain-text tables for the terminal: search summaries, ``automl show`` and ``automl studies``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.record import TrialRecord
from automl.records import (
    best_trials,
    state_counts,
    study_metrics,
    study_overviews,
    study_trials,
    trial_record,
)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Align ``rows`` under ``header``; numbers right-aligned."""
    cells = [[format_value(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows for i in range(len(header))
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append(
            "  ".join((c.rjust(w) if numeric[i] else c.ljust(w)) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        )
    return "\n".join(lines)


def format_value(value: Any, digits: int = 4) -> str:
    """Compact text for a table cell: ``-`` for none, scientific notation for very large or small numbers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits}e}"
        return f"{value:.5g}"
    return str(value)


def study_summary(study: optuna.Study, top: int = 5, storage: optuna.storages.BaseStorage | None = None) -> str:
    """The end-of-search summary: trial counts and the best trials (or the Pareto front).

    ``storage``: the storage the study was opened from (a SQLite file is then read on the fast path).
    """
    metrics = study_metrics(study)
    trials = study_trials(study, storage)
    counts = state_counts(trials)
    lines = [
        (
            f"study {study.study_name!r}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
            f"{counts['FAIL']} failed, {counts['RUNNING']} running"
        )
    ]
    described = study.user_attrs.get("automl.space") or {}
    for key, label in (("strategy_result", "strategy"),):
        if key in study.user_attrs:
            lines.append(f"{label}: {study.user_attrs[key]}")
    ranked = _ranked(study, trials, top)
    if len(study.directions) == 1:
        title = (
            f"best {len(ranked)} distinct candidates by {metrics[0]} "
            f"({described.get('objectives', [{}])[0].get('direction', '')})"
        )
    else:
        title = f"Pareto front ({len(ranked)} trials) over {', '.join(metrics)}"
    if not ranked:
        lines.append("no completed trial yet")
        return "\n".join(lines)
    lines.append(title + ":")
    header = ["trial"] + metrics + ["candidate"]
    rows = [[t.number] + list(t.values) + [_candidate_text(t)] for t in ranked]
    lines.append(table(rows, header))
    return "\n".join(lines)


def _ranked(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial], top: int) -> list:
    """The ``top`` best distinct candidates (one objective) or the Pareto front (several)."""
    if len(study.directions) == 1:
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
        return _distinct(sorted(completed, key=lambda t: t.value, reverse=reverse))[:top]
    return best_trials(study, trials)


def study_summary_data(
    study: optuna.Study, top: int = 5, storage: optuna.storages.BaseStorage | None = None
) -> dict[str, Any]:
    """What ``study_summary`` prints, as plain data (``automl show --json``): the best trials as export records."""
    metrics = study_metrics(study)
    trials = study_trials(study, storage)
    best = _ranked(study, trials, top)
    return {
        "study": study.study_name,
        "space": study.user_attrs.get("automl.space") or {},
        "metrics": metrics,
        "directions": [d.name.lower() for d in study.directions],
        "counts": state_counts(trials),
        "best" if len(study.directions) == 1 else "pareto_front": [trial_record(t, metrics) for t in best],
        "strategy": {k[len("strategy.") :]: v for k, v in study.user_attrs.items() if k.startswith("strategy.")},
    }


def studies_data(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """What ``studies_table`` prints, as plain data (``automl studies --json``)."""
    return [
        {
            "study": study.name,
            "space": study.described.get("source"),
            "evaluator": study.described.get("evaluator"),
            "directions": study.directions,
            "counts": study.counts,
            "best_value": study.best_value,
            "front_size": study.front_size if len(study.directions) > 1 else None,
            "last_activity": study.last_activity.isoformat(timespec="seconds") if study.last_activity else None,
        }
        for study in study_overviews(storage)
    ]


def _distinct(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The first trial of each candidate (a sampler may propose a candidate again; the cache answers)."""
    seen: set[str] = set()
    out = []
    for trial in trials:
        key = TrialRecord.read(trial).candidate.id or f"#{trial.number}"
        if key not in seen:
            seen.add(key)
            out.append(trial)
    return out


def _candidate_text(trial: optuna.trial.FrozenTrial) -> str:
    candidate = TrialRecord.read(trial).candidate
    arch, arch_key = candidate.arch, candidate.arch_key
    others = [f"{k}={v}" for k, v in trial.params.items() if not (arch_key and k.startswith(f"{arch_key}."))]
    return " ".join(([arch] if arch else []) + others)


def studies_table(storage: optuna.storages.BaseStorage) -> str:
    overviews = study_overviews(storage)
    if not overviews:
        return "no studies in this storage"
    rows = []
    for study in overviews:
        counts = study.counts
        rows.append(
            [
                study.name,
                study.described.get("source", "-"),
                study.described.get("evaluator", "-"),
                counts["COMPLETE"],
                counts["RUNNING"],
                counts["FAIL"] + counts["PRUNED"],
                study.best_text(format_value),
                study.last_activity.strftime("%Y-%m-%d %H:%M") if study.last_activity else "-",
            ]
        )
    return table(rows, ["study", "space", "evaluator", "complete", "running", "failed/pruned", "best", "last activity"])
