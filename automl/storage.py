"""Opening study storages: a SQLite file by default, a journal file, or any Optuna storage URL."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import optuna
import sqlalchemy.exc

from automl.errors import StorageError, UnknownStudyError

DEFAULT_STORAGE = "sqlite:///automl.db"
STORAGE_ENV = "AUTOML_STORAGE"
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def storage_url(storage: str | None) -> str:
    """The storage to use: the argument, ``$AUTOML_STORAGE``, or ``sqlite:///automl.db``."""
    return storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def open_storage(storage: str | optuna.storages.BaseStorage | None) -> optuna.storages.BaseStorage:
    """An Optuna storage for a URL, a journal-file path (``*.log``, ``*.journal``) or ``None`` (default).

    Raises ``StorageError`` with the URL when the storage cannot be opened or is not a study database.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    url = storage_url(storage)
    if url == ":memory:":
        return optuna.storages.InMemoryStorage()
    try:
        if "://" not in url:
            if not url.endswith(JOURNAL_SUFFIXES):
                raise StorageError(
                    f"{url}: not a storage URL; use sqlite:///FILE.db, a journal file "
                    f"ending in {', '.join(JOURNAL_SUFFIXES)}, or any Optuna storage URL"
                )
            from optuna.storages.journal import JournalFileBackend

            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except StorageError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, OSError, RuntimeError) as err:
        raise StorageError(f"{url}: cannot open the study storage ({_first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - journal parsers raise plain errors on corrupt files
        raise StorageError(f"{url}: cannot open the study storage ({type(err).__name__}: {_first_line(err)})") from None


def _engine_kwargs(url: str) -> dict:
    if not url.startswith("sqlite"):
        return {}
    database = sqlalchemy.engine.make_url(url).database
    if not database or database == ":memory:":
        return {}

    def connect() -> sqlite3.Connection:
        # Several processes may share one SQLite study: wait for the lock instead of failing at once.
        # WAL lets the dashboard read while a search writes, and commits without a sync each (a study
        # survives a crash of the process; only a power cut may take back its last trials).
        connection = sqlite3.connect(database, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return {"creator": connect}


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_study(name: str, storage: str | optuna.storages.BaseStorage | None) -> optuna.Study:
    """Load study ``name``; ``UnknownStudyError`` lists the studies the storage holds."""
    opened = open_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False))
        raise UnknownStudyError(
            f"no study named {name!r} in {storage_url(storage) if not isinstance(storage, optuna.storages.BaseStorage) else 'the storage'}"
            f" (studies: {', '.join(names) if names else 'none'})"
        ) from None
