"""The score cache: an evaluation is reused for an identical candidate, settings, data and seed."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from automl.errors import StorageError
from automl.evaluators import EvalResult

DEFAULT_CACHE = "automl-cache.db"
CACHE_ENV = "AUTOML_CACHE"
LOCK_TIMEOUT_S = 60


def cache_key(
    candidate_id: str, evaluator_settings: dict[str, Any], data: str, seed: int, threads: int | None = None
) -> str:
    """The key of one evaluation: everything that changes its numbers.

    ``threads`` is the torch thread count the evaluation ran with: floating-point sums split over a
    different number of threads round differently, and a training run amplifies that.
    """
    fields: dict[str, Any] = {"candidate": candidate_id, "evaluator": evaluator_settings, "data": data, "seed": seed}
    if threads is not None:
        fields["threads"] = threads
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ScoreCache:
    """A SQLite table of evaluation results, keyed by ``cache_key``."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
        if self.path.is_dir():
            raise StorageError(f"{self.path}: the score cache is a folder; pass --cache with a file path")
        for attempt in range(20):
            try:
                self._open()
                break
            except sqlite3.OperationalError as err:
                # Workers starting together on a fresh cache race to switch it to WAL and create its table.
                if not any(m in str(err) for m in ("locked", "already exists")) or attempt == 19:
                    raise StorageError(
                        f"{self.path}: the score cache cannot be opened ({err}); another process may hold it for "
                        f"longer than {LOCK_TIMEOUT_S} s, or its folder is not writable"
                    ) from None
                time.sleep(0.05 * (attempt + 1))
            except sqlite3.DatabaseError as err:
                raise StorageError(
                    f"{self.path}: the score cache is not a readable SQLite file ({err}); "
                    f"remove it or pass --cache with another path"
                ) from None
        self.hits = 0
        self.misses = 0

    def _open(self) -> None:
        # The cache waits for a lock as long as a study storage does (several workers share both).
        self.db = sqlite_utils.Database(sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S))
        # WAL without a sync per commit: a cache entry lost to a power cut is only recomputed.
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.table = self.db["scores"]
        if not self.table.exists():
            self.table.create(
                {
                    "key": str,
                    "candidate_id": str,
                    "evaluator": str,
                    "data": str,
                    "seed": int,
                    "result": str,
                    "created": float,
                },
                pk="key",
            )
            self.table.create_index(["candidate_id"], if_not_exists=True)

    def get(self, key: str) -> EvalResult | None:
        try:
            row = self.table.get(key)
        except sqlite_utils.db.NotFoundError:
            self.misses += 1
            return None
        self.hits += 1
        return EvalResult.from_json(json.loads(row["result"]))

    def put(self, key: str, *, candidate_id: str, evaluator: str, data: str, seed: int, result: EvalResult) -> None:
        self.table.upsert(
            {
                "key": key,
                "candidate_id": candidate_id,
                "evaluator": evaluator,
                "data": data,
                "seed": seed,
                "result": json.dumps(result.to_json(), default=str),
                "created": time.time(),
            },
            pk="key",
        )

    def __len__(self) -> int:
        return self.table.count
