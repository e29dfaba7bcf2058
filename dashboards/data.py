"""What the dashboard shows, computed apart from drawing it (no textual imports here).

``StudyTrials`` keeps a study's trials and their flat records and refreshes incrementally: finished
trials never change, so a refresh fetches only new trial numbers and the trials that were still running.
The plot functions return NamedTuples the screens draw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.record import TrialRecord
from automl.records import study_metrics, study_overviews, trial_record
from automl.report import format_value as _format_value
from automl.sqlite_reader import read_sqlite_trials, sqlite_url
from automl.storage import load_study, open_storage

UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
# Beyond this many changed trials one bulk read is cheaper than reading them one by one.
BULK_READ_THRESHOLD = 64
# fANOVA on thousands of trials takes seconds; a random subset gives the same ranking.
IMPORTANCE_MAX_TRIALS = 500
# Score names that are a true measurement (benchmark table, training) rather than a proxy.
TRUTH_HINTS = ("accuracy", "acc", "val_", "test_", "valid", "loss", "perplexity", "glue", "truth")


# -- studies ---------------------------------------------------------------------------------------
class StudySummary(NamedTuple):
    """One row of the studies screen."""

    name: str
    space: str
    evaluator: str
    complete: int
    running: int
    failed: int
    pruned: int
    best: str
    last_activity: str


def study_summaries(storage: str | optuna.storages.BaseStorage | None) -> list[StudySummary]:
    """Every study in ``storage``, sorted by name (counted in SQL where the storage allows)."""
    return [
        StudySummary(
            name=study.name,
            space=str(study.described.get("source", "-")),
            evaluator=str(study.described.get("evaluator", "-")),
            complete=study.counts["COMPLETE"],
            running=study.counts["RUNNING"],
            failed=study.counts["FAIL"],
            pruned=study.counts["PRUNED"],
            best=study.best_text(format_value),
            last_activity=study.last_activity.strftime("%y-%m-%d %H:%M") if study.last_activity else "-",
        )
        for study in study_overviews(storage)
    ]


def format_value(value: Any) -> str:
    """Compact text for a table cell (the core's format, three decimals in scientific notation)."""
    return _format_value(value, digits=3)


# -- one study's trials ----------------------------------------------------------------------------
class Refresh(NamedTuple):
    """What a refresh changed: trial numbers added and numbers whose record changed."""

    added: list[int]
    changed: list[int]


class StudyTrials:
    """A study's trials and flat records, refreshed incrementally.

    >>> trials = StudyTrials("nb201-digits", "sqlite:///automl.db")  # doctest: +SKIP
    >>> trials.refresh().added                                        # doctest: +SKIP
    """

    def __init__(self, study_name: str, storage: str | optuna.storages.BaseStorage | None) -> None:
        self.storage = open_storage(storage, read_only=True)
        self.url = sqlite_url(self.storage)
        self.study = load_study(study_name, self.storage)
        self.study_name = study_name
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.metrics = study_metrics(self.study)
        self.directions = [d.name.lower() for d in self.study.directions]
        self.described: dict[str, Any] = self.study.user_attrs.get("automl.space") or {}
        self.trials: list[FrozenTrial] = []
        self.records: list[dict[str, Any]] = []
        self._unfinished: set[int] = set()

    def refresh(self) -> Refresh:
        """Read what changed since the last refresh (everything the first time)."""
        known = len(self.trials)
        if known == 0:
            fresh = self._all_trials()
        else:
            new_ids = self._new_trial_ids(known)
            if new_ids is None:
                # Many new trials: one bulk read is cheaper than reading them one by one.
                fresh = [t for t in self._all_trials() if t.number in self._unfinished or t.number >= known]
            else:
                ids = [
                    self.storage.get_trial_id_from_study_id_trial_number(self.study_id, n)
                    for n in sorted(self._unfinished)
                ] + new_ids
                fresh = [self.storage.get_trial(trial_id) for trial_id in ids]
        if not fresh:
            return Refresh([], [])
        added, changed = [], []
        for trial in sorted(fresh, key=lambda t: t.number):
            record = trial_record(trial, self.metrics)
            if trial.number < known:
                if trial.state != self.trials[trial.number].state or record != self.records[trial.number]:
                    changed.append(trial.number)
                self.trials[trial.number] = trial
                self.records[trial.number] = record
            else:
                # Trial numbers are dense per study, so the list index is the trial number.
                self.trials.append(trial)
                self.records.append(record)
                added.append(trial.number)
            if trial.state in UNFINISHED:
                self._unfinished.add(trial.number)
            else:
                self._unfinished.discard(trial.number)
        return Refresh(added, changed)

    def _all_trials(self) -> list[FrozenTrial]:
        fast = read_sqlite_trials(self.url, self.study_name)
        return fast if fast is not None else self.storage.get_all_trials(self.study_id, deepcopy=False)

    def _new_trial_ids(self, known: int) -> list[int] | None:
        """Storage ids of trials numbered ``known`` and up; ``None`` when too many to read one by one.

        Probing numbers one by one costs a small query each; ``get_n_trials`` would read every trial.
        """
        ids = []
        while len(ids) <= BULK_READ_THRESHOLD:
            try:
                number = known + len(ids)
                ids.append(self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number))
            except KeyError:
                return ids
        return None

    def counts(self) -> dict[str, int]:
        """Trials per state name, from what was read."""
        counts = {s.name: 0 for s in TrialState}
        for trial in self.trials:
            counts[trial.state.name] += 1
        return counts

    def completed(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.values]

    def columns(self) -> list[str]:
        """Every record key, in first-seen order (cheap: scans at most a few hundred records)."""
        seen: dict[str, None] = {}
        step = max(1, len(self.records) // 500)
        for record in self.records[::step] + self.records[-50:]:
            for key in record:
                seen.setdefault(key, None)
        return list(seen)


# -- plots -----------------------------------------------------------------------------------------
class History(NamedTuple):
    """Objective value of every completed trial and the best value so far, by trial number."""

    metric: str
    numbers: list[int]
    values: list[float]
    best: list[float]


def best_so_far(trials: Sequence[FrozenTrial], direction: str, objective: int = 0, metric: str = "value") -> History:
    """The best-so-far curve of objective ``objective`` (``direction`` "maximize" or "minimize")."""
    numbers, values, best = [], [], []
    current: float | None = None
    for trial in trials:
        if trial.state != TrialState.COMPLETE or not trial.values:
            continue
        value = trial.values[objective]
        if value is None or math.isnan(value):
            continue
        if current is None or (value > current if direction == "maximize" else value < current):
            current = value
        numbers.append(trial.number)
        values.append(value)
        best.append(current)
    return History(metric, numbers, values, best)


class ParetoPoints(NamedTuple):
    """Two objectives of every completed trial, and the non-dominated ones."""

    x_metric: str
    y_metric: str
    x: list[float]
    y: list[float]
    front_x: list[float]
    front_y: list[float]
    front_numbers: list[int]


def pareto_points(trials: Sequence[FrozenTrial], directions: Sequence[str], metrics: Sequence[str]) -> ParetoPoints:
    """The first two objectives of every completed trial and their Pareto front."""
    points = [
        (t.values[0], t.values[1], t.number)
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values
        and len(t.values) >= 2
        and not any(math.isnan(v) for v in t.values[:2])
    ]
    sign = [1.0 if d == "maximize" else -1.0 for d in directions[:2]]
    # Sort by the first objective (best first); a point is on the front when it beats every earlier y.
    ranked = sorted(points, key=lambda p: (-sign[0] * p[0], -sign[1] * p[1]))
    front, best_y = [], -math.inf
    for x, y, number in ranked:
        if sign[1] * y > best_y:
            front.append((x, y, number))
            best_y = sign[1] * y
    return ParetoPoints(
        metrics[0],
        metrics[1],
        [p[0] for p in points],
        [p[1] for p in points],
        [p[0] for p in front],
        [p[1] for p in front],
        [p[2] for p in front],
    )


class Importances(NamedTuple):
    """Parameter importances for one objective, most important first."""

    metric: str
    names: list[str]
    values: list[float]
    n_trials: int
    note: str


def param_importances(
    trials: Sequence[FrozenTrial], directions: Sequence[str], metrics: Sequence[str], objective: int = 0, seed: int = 0
) -> Importances:
    """Optuna's fANOVA importances on (at most ``IMPORTANCE_MAX_TRIALS``) completed trials."""
    metric = metrics[objective] if objective < len(metrics) else str(objective)
    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.values and t.params]
    if len(completed) < 2:
        return Importances(metric, [], [], len(completed), "needs at least 2 completed trials")
    if len(completed) > IMPORTANCE_MAX_TRIALS:
        completed = random.Random(seed).sample(completed, IMPORTANCE_MAX_TRIALS)
    # An in-memory copy lets Optuna's evaluator run on a subset without touching the stored study.
    copy = optuna.create_study(directions=list(directions))
    copy.add_trials(completed)
    try:
        found = optuna.importance.get_param_importances(
            copy, target=lambda t: t.values[objective], evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
        )
    except (RuntimeError, ValueError) as err:
        return Importances(metric, [], [], len(completed), str(err))
    return Importances(metric, list(found), [float(v) for v in found.values()], len(completed), "")


class Correlation(NamedTuple):
    """Rank correlation between one proxy score and the true metric."""

    proxy: str
    truth: str
    n: int
    spearman: float
    kendall: float


def split_scores(records: Iterable[dict[str, Any]], proxy_names: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The ``score.*`` columns that are proxies and those that are true measurements.

    A score is a proxy when its name is a registered proxy; otherwise it is a truth when its name
    looks like a measurement (accuracy, loss...).
    """
    proxies = set(proxy_names)
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            if key.startswith("score."):
                names.setdefault(key[len("score.") :], None)
    proxy_cols = [n for n in names if n in proxies]
    truth_cols = [n for n in names if n not in proxies and any(h in n.lower() for h in TRUTH_HINTS)]
    return proxy_cols, truth_cols


def space_proxies(study: optuna.Study) -> list[str]:
    """The proxy names the study's space lists (``[evaluator] proxies``), read without loading plugins."""
    raw = study.user_attrs.get("automl.raw") or {}
    evaluator = raw.get("evaluator") or {}
    found = []
    for item in evaluator.get("proxies") or []:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str):
            found.append(name)
    return found


def proxy_correlations(records: Sequence[dict[str, Any]], proxies: Sequence[str], truth: str) -> list[Correlation]:
    """Spearman and Kendall correlation of each proxy score with score ``truth`` over finished records."""
    from scipy import stats

    rows = []
    for proxy in proxies:
        pairs = [(r.get(f"score.{proxy}"), r.get(f"score.{truth}")) for r in records]
        pairs = [(float(a), float(b)) for a, b in pairs if _finite(a) and _finite(b)]
        if len(pairs) < 3:
            rows.append(Correlation(proxy, truth, len(pairs), math.nan, math.nan))
            continue
        xs, ys = zip(*pairs)
        spearman = stats.spearmanr(xs, ys).statistic
        kendall = stats.kendalltau(xs, ys).statistic
        rows.append(Correlation(proxy, truth, len(pairs), float(spearman), float(kendall)))
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- one trial -------------------------------------------------------------------------------------
def architecture_drawing(study: optuna.Study, trial: FrozenTrial) -> str:
    """The trial's architecture drawn as text through the study's space; the arch string if that fails."""
    arch = TrialRecord.read(trial).candidate.arch
    raw = study.user_attrs.get("automl.raw")
    if raw and trial.params:
        try:
            from automl.space import SearchSpace

            space = SearchSpace.from_dict(raw)
            architecture = space.candidate(trial.params).architecture
        except Exception:  # noqa: BLE001 - a space from an older plugin version still shows the arch string
            architecture = None
        if architecture is not None:
            return architecture.draw()
    return arch or "(no architecture recorded)"


def trial_sections(record: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """A trial record grouped for display: (title, [(name, text)])."""
    groups: dict[str, list[tuple[str, str]]] = {
        "trial": [],
        "values": [],
        "params": [],
        "scores": [],
        "costs": [],
        "info": [],
        "attributes": [],
    }
    prefixes = {
        "value.": "values",
        "param.": "params",
        "score.": "scores",
        "cost.": "costs",
        "info.": "info",
        "attr.": "attributes",
    }
    for key, value in record.items():
        for prefix, group in prefixes.items():
            if key.startswith(prefix):
                groups[group].append((key[len(prefix) :], format_value(value)))
                break
        else:
            groups["trial"].append((key, format_value(value)))
    return [(title, rows) for title, rows in groups.items() if rows]
