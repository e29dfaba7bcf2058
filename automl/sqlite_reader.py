"""A read-only fast path for studies in SQLite files.

Optuna's ORM builds a 10,000-trial study in seconds; the reports and the dashboard read the same tables
with plain SQL, read-only, in a fraction of that. The reader knows one schema revision (Optuna records it
in ``alembic_version``) and returns ``None`` for anything else, so the caller falls back to Optuna's own
reader. A test checks that both readers give equal trials.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy.engine
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from automl.storage import readonly_sqlite_uri

KNOWN_SCHEMAS = ("v3.2.0.a",)
_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


class StudyCounts(NamedTuple):
    """Trials per state name and the latest start or completion time."""

    counts: dict[str, int]
    last_activity: dt.datetime | None


def sqlite_url(storage: str | BaseStorage | None) -> str | None:
    """The ``sqlite:`` URL behind ``storage`` (a URL or an opened ``RDBStorage``), else ``None``."""
    if isinstance(storage, str) or storage is None:
        return storage if storage and storage.startswith("sqlite:") else None
    url = storage.url if isinstance(storage, RDBStorage) else None
    return url if isinstance(url, str) and url.startswith("sqlite:") else None


def read_sqlite_trials(url: str | None, study_name: str) -> list[FrozenTrial] | None:
    """Every trial of ``study_name`` in number order, or ``None`` where this reader does not apply."""
    # Tens of thousands of small dicts would set off the cyclic garbage collector again and again
    # (a third of the read time); they hold no cycles, so it waits until the read is done.
    with _collector_paused():
        return _with_study(url, study_name, _read_trials)


def read_sqlite_counts(url: str | None, study_name: str) -> StudyCounts | None:
    """Trial counts per state and last activity of ``study_name`` in one query, or ``None``."""
    return _with_study(url, study_name, _read_counts)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _with_study(url: str | None, study_name: str, read: Callable[[sqlite3.Connection, int], Any]) -> Any:
    """``read(connection, study_id)`` on a read-only connection; ``None`` where the fast path does not apply."""
    if not url or not url.startswith("sqlite:"):
        return None
    database = sqlalchemy.engine.make_url(url).database
    if not database or database == ":memory:" or not Path(database).is_file():
        return None
    try:
        connection = sqlite3.connect(readonly_sqlite_uri(Path(database)), uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        # One read transaction: every SELECT sees the same snapshot, so a trial a writer completes meanwhile
        # cannot appear COMPLETE without the values read a query earlier.
        connection.execute("BEGIN")
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        if version is None or version[0] not in KNOWN_SCHEMAS:
            return None
        row = connection.execute("SELECT study_id FROM studies WHERE study_name = ?", (study_name,)).fetchone()
        return None if row is None else read(connection, row[0])
    except (sqlite3.Error, KeyError, ValueError):
        return None
    finally:
        connection.close()


def _read_counts(connection: sqlite3.Connection, study_id: int) -> StudyCounts:
    counts = {state.name: 0 for state in TrialState}
    latest: list[dt.datetime] = []
    for state, count, last in connection.execute(
        "SELECT state, COUNT(*), MAX(COALESCE(datetime_complete, datetime_start)) FROM trials "
        "WHERE study_id = ? GROUP BY state",
        (study_id,),
    ):
        counts[TrialState[state].name] = count
        if last:
            latest.append(_time(last))
    return StudyCounts(counts, max(latest, default=None))


def _read_trials(connection: sqlite3.Connection, study_id: int) -> list[FrozenTrial]:
    in_study = "trial_id IN (SELECT trial_id FROM trials WHERE study_id = ?)"

    params: dict[int, dict[str, Any]] = defaultdict(dict)
    distributions: dict[int, dict[str, BaseDistribution]] = defaultdict(dict)
    parsed: dict[str, BaseDistribution] = {}
    for trial_id, name, value, dist_json in connection.execute(
        f"SELECT trial_id, param_name, param_value, distribution_json FROM trial_params WHERE {in_study} "
        "ORDER BY param_id",
        (study_id,),
    ):
        distribution = parsed.get(dist_json) or parsed.setdefault(dist_json, json_to_distribution(dist_json))
        params[trial_id][name] = distribution.to_external_repr(value)
        distributions[trial_id][name] = distribution

    values: dict[int, dict[int, float]] = defaultdict(dict)
    for trial_id, objective, value, kind in connection.execute(
        f"SELECT trial_id, objective, value, value_type FROM trial_values WHERE {in_study} ORDER BY trial_value_id",
        (study_id,),
    ):
        values[trial_id][objective] = _SPECIAL.get(kind, value)

    intermediate: dict[int, dict[int, float]] = defaultdict(dict)
    for trial_id, step, value, kind in connection.execute(
        f"SELECT trial_id, step, intermediate_value, intermediate_value_type FROM trial_intermediate_values "
        f"WHERE {in_study} ORDER BY trial_intermediate_value_id",
        (study_id,),
    ):
        intermediate[trial_id][step] = _SPECIAL.get(kind, value)

    attrs: dict[str, dict[int, dict[str, Any]]] = {}
    for table in ("trial_user_attributes", "trial_system_attributes"):
        found: dict[int, dict[str, Any]] = defaultdict(dict)
        for trial_id, key, value_json in connection.execute(
            f"SELECT trial_id, key, value_json FROM {table} WHERE {in_study} ORDER BY {table[:-1]}_id", (study_id,)
        ):
            found[trial_id][key] = json.loads(value_json)
        attrs[table] = found

    trials = []
    for trial_id, number, state, start, complete in connection.execute(
        "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
        "WHERE study_id = ? ORDER BY number",
        (study_id,),
    ):
        objective_values = values.get(trial_id)
        trials.append(
            FrozenTrial(
                number=number,
                state=TrialState[state],
                value=None,
                values=[objective_values[i] for i in sorted(objective_values)] if objective_values else None,
                datetime_start=_time(start),
                datetime_complete=_time(complete),
                params=params.get(trial_id, {}),
                distributions=distributions.get(trial_id, {}),
                user_attrs=attrs["trial_user_attributes"].get(trial_id, {}),
                system_attrs=attrs["trial_system_attributes"].get(trial_id, {}),
                intermediate_values=intermediate.get(trial_id, {}),
                trial_id=trial_id,
            )
        )
    return trials


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None
