"""Benchmark-table evaluator: look a candidate's architecture up in a table of published results.

Bundled tables (``automl_plugins/data``): ``benchmark = "nb201"`` (NAS-Bench-201 test accuracy, %, metrics
``cifar10`` and ``cifar100``) and ``benchmark = "flexibert"`` (GLUE score ``glue`` and the per-task scores
``cola``, ``mnli``, ``mrpc``, ``qnli``, ``qqp``, ``rte``, ``sst``, ``sts``). Any other table is a CSV,
JSON-lines or JSON-array file (``path``) whose ``key_column`` holds architecture strings in the space's
own string form and whose other numeric columns are metrics. The lookup key is always
``candidate.architecture.to_string()``.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from automl import EvalResult, Evaluator, Option, SpaceError, TrialFailed

BENCHMARKS = ("nb201", "flexibert")
# The bundled NB201 file's columns, under the short metric names a search-space file uses.
NB201_COLUMNS = {"cifar10_test_acc": "cifar10", "cifar100_test_acc": "cifar100"}
# Which architecture dimension a bundled table's strings belong to.
BENCHMARK_SPACES = {"nb201": "nb201", "flexibert": "flexibert"}


class Table:
    """Rows of metric values keyed by architecture string.

    ``duplicates`` counts keys that several rows share; their metric values are averaged (the bundled
    FlexiBERT file measures one encoder twice, ids 174 and 405).
    """

    def __init__(
        self, source: str, rows: Mapping[str, Mapping[str, float]], columns: list[str], duplicates: int = 0
    ) -> None:
        self.source = source
        self.rows = dict(rows)
        self.columns = columns
        self.duplicates = duplicates

    def __len__(self) -> int:
        return len(self.rows)


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _collect(source: str, records: list[tuple[str, Mapping[str, Any]]]) -> Table:
    sums: dict[str, dict[str, list[float]]] = {}
    columns: list[str] = []
    for key, values in records:
        row = sums.setdefault(key, {})
        for column, value in values.items():
            if column not in columns:
                columns.append(column)
            row.setdefault(column, []).append(_number(value))
    duplicates = sum(1 for key in sums if any(len(v) > 1 for v in sums[key].values()))
    rows = {key: {c: sum(v) / len(v) for c, v in row.items()} for key, row in sums.items()}
    return Table(source, rows, columns, duplicates)


@functools.lru_cache(maxsize=8)
def load_benchmark(name: str) -> Table:
    """A bundled table, read once per process."""
    data = resources.files("automl_plugins.data")
    if name == "nb201":
        with data.joinpath("nb201_accuracy.csv").open() as handle:
            records = [
                (row["arch"], {NB201_COLUMNS[c]: v for c, v in row.items() if c in NB201_COLUMNS})
                for row in csv.DictReader(handle)
            ]
        return _collect("bundled nb201_accuracy.csv", records)
    if name == "flexibert":
        from automl_plugins.architectures.flexibert import from_record

        records = []
        for record in json.loads(data.joinpath("flexibert_glue.json").read_text()):
            records.append(
                (
                    from_record(record).to_string(),
                    {"glue": record["glue"], **{k: v for k, v in record["scores"].items() if k != "glue"}},
                )
            )
        return _collect("bundled flexibert_glue.json", records)
    raise ValueError(f"unknown benchmark {name!r}")


@functools.lru_cache(maxsize=8)
def _load_file(path: str, mtime: float, key_column: str) -> Table:
    file = Path(path)
    suffix = file.suffix.lower()
    try:
        text = file.read_text()
    except OSError as err:
        raise SpaceError(f"cannot read {path}: {err.strerror}", key="path") from None
    rows: list[dict[str, Any]]
    try:
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif suffix in (".jsonl", ".ndjson"):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif suffix == ".json":
            rows = json.loads(text)
        else:
            raise SpaceError(
                f"{path}: unknown table format {suffix!r}", key="path", allowed=[".csv", ".jsonl", ".ndjson", ".json"]
            )
    except (json.JSONDecodeError, csv.Error) as err:
        raise SpaceError(f"{path} is not valid {suffix[1:].upper()}: {err}", key="path") from None
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise SpaceError(f"{path}: expected one object (row) per record", key="path")
    if not rows:
        raise SpaceError(f"{path} has no rows", key="path")
    present = list(rows[0])
    if key_column not in present:
        raise SpaceError(f"{path} has no column {key_column!r}", key="key_column", allowed=present)
    records = []
    for i, row in enumerate(rows):
        if key_column not in row:
            raise SpaceError(f"{path}: row {i + 1} has no {key_column!r}", key="key_column")
        records.append((str(row[key_column]).strip(), {c: v for c, v in row.items() if c != key_column}))
    return _collect(path, records)


def load_table(path: str, key_column: str) -> Table:
    """A user table (CSV, JSON lines or a JSON array of objects), re-read when the file changes."""
    file = Path(path)
    if not file.is_file():
        raise SpaceError(f"no such table file {path!r} (paths are relative to the current directory)", key="path")
    return _load_file(str(file.resolve()), file.stat().st_mtime, key_column)


class TableEvaluator(Evaluator):
    name = "table"
    description = "look the architecture up in a benchmark table (bundled NB201 / FlexiBERT, or a CSV/JSON file)"
    example = {"benchmark": "nb201", "metrics": ["cifar10", "cifar100"]}
    options = {
        "benchmark": Option(
            str,
            default=None,
            choices=BENCHMARKS,
            help="a bundled table: nb201 (metrics cifar10, cifar100) or flexibert (glue, cola, ...)",
        ),
        "path": Option(
            str,
            default=None,
            path="text",
            help="a CSV / JSON-lines / JSON file mapping architecture strings to metrics",
        ),
        "key_column": Option(str, default="arch", help="the column of a user table holding architecture strings"),
        "metrics": Option(
            list, default=[], item_type=str, help="the columns to report (default: every column but the key)"
        ),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if (settings["benchmark"] is None) == (settings["path"] is None):
            raise SpaceError(
                "give exactly one of 'benchmark' (a bundled table) or 'path' (a file)",
                key="benchmark" if settings["benchmark"] else "path",
                allowed=BENCHMARKS,
            )
        if settings["benchmark"]:
            self.table = load_benchmark(settings["benchmark"])
        else:
            self.table = load_table(settings["path"], settings["key_column"])
        for i, metric in enumerate(settings["metrics"]):
            if metric not in self.table.columns:
                raise SpaceError(
                    f"{self.table.source} has no column {metric!r}", key=f"metrics[{i}]", allowed=self.table.columns
                )
        if len(set(settings["metrics"])) != len(settings["metrics"]):
            raise SpaceError("a metric is listed twice", key="metrics")

    def metrics(self) -> list[str]:
        return list(self.settings["metrics"]) or list(self.table.columns)

    def validate(self, space: Any) -> None:
        found = space.architecture
        if found is None:
            raise SpaceError(
                "a table evaluator looks up architectures, but the space has no architecture dimension",
                key="dimensions",
            )
        _, dim = found
        wanted = BENCHMARK_SPACES.get(self.settings["benchmark"] or "")
        if wanted and dim.name != wanted:
            raise SpaceError(
                f"the {self.settings['benchmark']} table holds {wanted} architectures, but the "
                f"space's architecture dimension is {dim.name!r}",
                key="evaluator.benchmark",
            )
        # The table must speak the space's string form: at least one key has to parse (a space may cover
        # only part of a table, so keys outside its options are fine).
        first_error = None
        for key in self.table.rows:
            try:
                dim.parse(key)
                break
            except ValueError as err:
                first_error = first_error or err
        else:
            where = "evaluator.key_column" if self.settings["path"] else "evaluator.benchmark"
            raise SpaceError(
                f"no key of {self.table.source} is a {dim.name} architecture of this space; the "
                f"first fails with: {first_error}",
                key=where,
            )

    def evaluate(self, candidate: Any, context: Any) -> EvalResult:
        arch = candidate.architecture.to_string()
        row = self.table.rows.get(arch)
        if row is None:
            raise TrialFailed(
                f"architecture {arch!r} is not in the table {self.table.source} ({len(self.table)} architectures)"
            )
        scores = {metric: row.get(metric, math.nan) for metric in self.metrics()}
        reasons = {
            m: f"the table has no value of {m!r} for this architecture" for m, v in scores.items() if math.isnan(v)
        }
        return EvalResult(scores=scores, info={"table": self.table.source}, reasons=reasons)
