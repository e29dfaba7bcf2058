"""Tabular classification from a CSV file: numeric feature columns and one label column.

The first row names the columns. ``label`` names the class column (any values: strings or
integers); ``features`` lists the feature columns (default: every other column), each of which must
hold numbers. An empty cell, ``nan`` or ``NA`` is a missing value: an error unless ``missing = "mean"``
fills it with the column's mean over the training split. Features are standardised with the
training split's mean and standard deviation (``standardize``). Inputs are ``B×F`` float32 vectors
(task kind ``tabular-classification``: the ``mlp`` architecture takes them). ``val_path`` /
``test_path`` name CSV files with the same columns holding the data's own splits; otherwise splits are
drawn (see ``datafiles``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch

from automl import Batch, Option, SpaceError
from automl_plugins.tasks.datafiles import SPLIT_OPTIONS, DataTask, assemble, existing_file, read_text, standardize

MISSING = ("error", "mean")
_NA = {"", "nan", "na", "n/a", "null", "none"}


def read_csv(path: Path, key: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV file; a malformed file is a ``SpaceError`` naming the line."""
    text = read_text(path, key)
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as err:
        raise SpaceError(f"{path} is not a readable CSV file ({err})", key=key) from None
    rows = [row for row in rows if row]  # blank lines
    if not rows:
        raise SpaceError(f"{path} is empty", key=key)
    header = [name.strip() for name in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SpaceError(
                f"{path}: a row has {len(row)} fields where the header has {len(header)} (row {line})", key=key
            )
    if len(rows) < 2:
        raise SpaceError(f"{path} has a header but no rows", key=key)
    return header, rows[1:]


def column(header: list[str], name: str, path: Path, key: str) -> int:
    if name not in header:
        raise SpaceError(f"{path} has no column {name!r}", key=key, allowed=header)
    return header.index(name)


def parse_number(cell: str) -> float:
    """A cell as a float, NaN when missing; ``ValueError`` when not a number."""
    text = cell.strip()
    if text.lower() in _NA:
        return math.nan
    value = float(text)
    if math.isinf(value):
        raise ValueError(text)
    return value


def _is_number(cell: str) -> bool:
    try:
        parse_number(cell)
    except ValueError:
        return False
    return True


class CsvTask(DataTask):
    name = "csv"

    @staticmethod
    def example(folder: Path) -> dict:
        """Contract-suite settings: a small file written from data an installed package ships."""
        from automl_plugins.tasks.examples import wine_csv

        return {"path": str(wine_csv(folder / "wine.csv")), "label": "cultivar"}

    description = "tabular classification from a CSV file: numeric feature columns and a label column"
    kind = "tabular-classification"
    locations = ("path", "val_path", "test_path", "label")
    options = {
        "path": Option(str, help="the CSV file (relative paths: from the working directory)"),
        "label": Option(str, default="label", help="the column holding the class labels"),
        "features": Option(list, default=[], item_type=str, help="the feature columns (default: all but the label)"),
        "delimiter": Option(str, default=",", help="the field separator (a single character; '\\t' for TSV)"),
        "missing": Option(
            str, default="error", choices=MISSING, help="empty cells: an error, or the column's training mean"
        ),
        "val_path": Option(str, default=None, help="a CSV file with the same columns holding the validation rows"),
        "test_path": Option(str, default=None, help="a CSV file with the same columns holding the test rows"),
        "standardize": Option(bool, default=True, help="scale each feature by the training split's mean and std"),
        "batch_size": Option(int, default=64, min=1, max=4096, help="minibatch size for proxies and training"),
        **SPLIT_OPTIONS,
    }

    def load(self) -> dict[str, Batch]:
        s = self.settings
        if len(s["delimiter"]) != 1:
            raise SpaceError(f"{s['delimiter']!r} is not a single character", key="delimiter")
        sources = {"train": "path"} | {split: f"{split}_path" for split in ("val", "test") if s[f"{split}_path"]}
        features: dict[str, torch.Tensor] = {}
        labels: dict[str, list[str]] = {}
        names: list[str] = []
        for split, key in sources.items():
            path = existing_file(s[key], key)
            header, rows = read_csv(path, key, s["delimiter"])
            target = column(header, s["label"], path, "label")
            names = s["features"] or [name for name in header if name != s["label"]]
            if not names:
                raise SpaceError(f"{path} has no column besides the label", key="features")
            if s["label"] in s["features"]:
                raise SpaceError(f"the label column {s['label']!r} cannot be a feature", key="features")
            where = [column(header, name, path, f"features[{i}]") for i, name in enumerate(names)]
            labels[split] = self._labels(rows, target, path, s["label"])
            features[split] = self._features(rows, where, names, path)
        classes, inputs, ids = assemble(s, features, labels, "label")
        self._fill_missing(inputs, names)
        splits = {k: Batch(inputs[k].contiguous(), ids[k]) for k in inputs}
        if s["standardize"]:
            standardize(splits, (0,))
        self.feature_names = tuple(names)
        self.classes = classes
        self.num_classes = len(classes)
        self.input_shape = (len(names),)
        return splits

    @staticmethod
    def _labels(rows: list[list[str]], index: int, path: Path, name: str) -> list[str]:
        out = []
        for line, row in enumerate(rows, start=2):
            value = row[index].strip()
            if not value:
                raise SpaceError(f"{path}: row {line} has no label in column {name!r}", key="label")
            out.append(value)
        return out

    @staticmethod
    def _features(rows: list[list[str]], where: list[int], names: list[str], path: Path) -> torch.Tensor:
        columns = []
        for index, name in zip(where, names):
            try:
                columns.append([parse_number(row[index]) for row in rows])
            except ValueError:
                line, cell = next((n, r[index]) for n, r in enumerate(rows, start=2) if not _is_number(r[index]))
                raise SpaceError(
                    f"{path}: column {name!r} is not numeric (row {line}: {cell.strip()!r}); "
                    "list the numeric columns in features",
                    key="features",
                ) from None
        return torch.tensor(columns, dtype=torch.float64).T.contiguous()

    def _fill_missing(self, inputs: dict[str, torch.Tensor], names: list[str]) -> None:
        train = inputs["train"]
        for split, values in inputs.items():
            gaps = torch.isnan(values)
            if not gaps.any():
                continue
            col = int(torch.nonzero(gaps)[0][1])
            if self.settings["missing"] == "error":
                raise SpaceError(
                    f"the {split} data has a missing value in column {names[col]!r}; "
                    'set missing = "mean" to fill it with the training mean',
                    key="missing",
                )
            means = torch.nanmean(train, dim=0)
            empty = torch.isnan(means)
            if empty.any():
                column_name = names[int(torch.nonzero(empty)[0])]
                raise SpaceError(f"column {column_name!r} has no value in the training data", key="features")
            inputs[split] = torch.where(gaps, means.expand_as(values), values)
        for split, values in list(inputs.items()):
            inputs[split] = values.float()
