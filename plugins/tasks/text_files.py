"""Text classification from a CSV or JSON Lines file of texts and labels, with the text tasks' tokenizers.

A CSV file has a header row naming its columns; a JSON Lines file (``.jsonl``, ``.ndjson``) holds one
object per line. ``text`` and ``label`` name the text and class fields. Texts are tokenized as the
bundled-corpus tasks do (``tokens = "word"``: lower-cased words, numbers and punctuation marks;
``"char"``: characters; see ``text.tokenize``). The vocabulary is built from the training split only:
``<unk>`` (id 0), ``<pad>`` (id 1), then the ``vocab_size - 2`` most frequent tokens (ties broken
alphabetically). Each text becomes its first ``seq_len`` tokens, padded with ``<pad>`` on the left, so
a recurrent model's last step reads the text's last token. Inputs are ``B×T`` token ids, targets class
ids (task kind ``text-classification``: the ``nlp_rnn`` and ``flexibert`` architectures take it).
``val_path`` / ``test_path`` name files of the same format holding the data's own splits; otherwise
splits are drawn (see ``datafiles``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from automl import Batch, Option, SpaceError
from automl_plugins.tasks.datafiles import SPLIT_OPTIONS, DataTask, assemble, existing_file, label_names, read_text
from automl_plugins.tasks.text import UNK, tokenize

PAD = "<pad>"
FORMATS = ("auto", "csv", "jsonl")
_BY_SUFFIX = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_records(path: Path, key: str, fmt: str, fields: tuple[str, str], delimiter: str) -> list[tuple[Any, Any]]:
    """(text, label) of every record of a CSV or JSON Lines file."""
    if fmt == "auto":
        fmt = _BY_SUFFIX.get(path.suffix.lower(), "")
        if not fmt:
            raise SpaceError(
                f"{path}: cannot tell the format from {path.suffix or 'no suffix'!r}; set format",
                key="format",
                allowed=FORMATS[1:],
            )
    if fmt == "csv" and path.suffix.lower() == ".tsv" and delimiter == ",":
        delimiter = "\t"
    text = read_text(path, key)
    return _read_jsonl(text, path, key, fields) if fmt == "jsonl" else _read_csv(text, path, key, fields, delimiter)


def _read_csv(text: str, path: Path, key: str, fields: tuple[str, str], delimiter: str) -> list[tuple[Any, Any]]:
    try:
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    except csv.Error as err:
        raise SpaceError(f"{path} is not a readable CSV file ({err})", key=key) from None
    if len(rows) < 2:
        raise SpaceError(f"{path} has {'no rows' if rows else 'no header'}", key=key)
    header = [name.strip() for name in rows[0]]
    where = []
    for name, option in zip(fields, ("text", "label")):
        if name not in header:
            raise SpaceError(f"{path} has no column {name!r}", key=option, allowed=header)
        where.append(header.index(name))
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SpaceError(
                f"{path}: a row has {len(row)} fields where the header has {len(header)} (row {line})", key=key
            )
        out.append((row[where[0]], row[where[1]].strip() or None))
    return out


def _read_jsonl(text: str, path: Path, key: str, fields: tuple[str, str]) -> list[tuple[Any, Any]]:
    out = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise SpaceError(f"{path}: line {line} is not valid JSON ({err.msg})", key=key) from None
        if not isinstance(record, dict):
            raise SpaceError(f"{path}: line {line} is a JSON {type(record).__name__}, not an object", key=key)
        for name, option in zip(fields, ("text", "label")):
            if name not in record:
                raise SpaceError(f"{path}: line {line} has no field {name!r}", key=option, allowed=sorted(record))
        out.append((record[fields[0]], record[fields[1]]))
    if not out:
        raise SpaceError(f"{path} holds no records", key=key)
    return out


class TextClassificationTask(DataTask):
    name = "text_csv"

    @staticmethod
    def example(folder: Path) -> dict:
        """Contract-suite settings: a small file written from data an installed package ships."""
        from automl_plugins.tasks.examples import docstrings_jsonl

        return {"path": str(docstrings_jsonl(folder / "docstrings.jsonl"))}

    description = "text classification from a CSV or JSON Lines file of texts and labels (word or char tokens)"
    kind = "text-classification"
    locations = ("path", "val_path", "test_path", "text", "label", "format")
    options = {
        "path": Option(str, help="the .csv / .tsv / .jsonl file (relative paths: from the working directory)"),
        "text": Option(str, default="text", help="the column or field holding the texts"),
        "label": Option(str, default="label", help="the column or field holding the class labels"),
        "format": Option(str, default="auto", choices=FORMATS, help="file format (auto: from the suffix)"),
        "delimiter": Option(str, default=",", help="the CSV field separator (a single character)"),
        "tokens": Option(str, default="word", choices=("word", "char"), help="word-level or character-level"),
        "vocab_size": Option(int, default=2000, min=16, max=50000, help="vocabulary size, <unk> and <pad> included"),
        "seq_len": Option(int, default=64, min=2, max=4096, help="tokens per text (longer ones are cut)"),
        "val_path": Option(str, default=None, help="a file of the same format holding the validation records"),
        "test_path": Option(str, default=None, help="a file of the same format holding the test records"),
        "batch_size": Option(int, default=32, min=1, max=4096, help="minibatch size for proxies and training"),
        **SPLIT_OPTIONS,
    }

    def load(self) -> dict[str, Batch]:
        s = self.settings
        if len(s["delimiter"]) != 1:
            raise SpaceError(f"{s['delimiter']!r} is not a single character", key="delimiter")
        sources = {"train": "path"} | {split: f"{split}_path" for split in ("val", "test") if s[f"{split}_path"]}
        texts: dict[str, list[str]] = {}
        labels: dict[str, list[str]] = {}
        for split, key in sources.items():
            path = existing_file(s[key], key)
            records = read_records(path, key, s["format"], (s["text"], s["label"]), s["delimiter"])
            texts[split], labels[split] = [], []
            for number, (text, label) in enumerate(records, start=1):
                if not isinstance(text, str):
                    raise SpaceError(f"{path}: record {number} has no text (found {text!r})", key="text")
                if label is None or isinstance(label, (dict, list)):
                    raise SpaceError(f"{path}: record {number} has no usable label (found {label!r})", key="label")
                texts[split].append(text)
                labels[split].append(label_names([label])[0].strip())
        classes, texts, ids = assemble(s, texts, labels, "label")
        tokenized = {split: [tokenize(t, s["tokens"]) for t in items] for split, items in texts.items()}
        counts = Counter(token for tokens in tokenized["train"] for token in tokens)
        ranked = sorted(counts, key=lambda t: (-counts[t], t))[: s["vocab_size"] - 2]
        self.vocab = (UNK, PAD, *ranked)
        index = {token: i for i, token in enumerate(self.vocab)}
        splits = {split: Batch(self._encode(items, index), ids[split]) for split, items in tokenized.items()}
        self.classes = classes
        self.num_classes = len(classes)
        self.vocab_size = len(self.vocab)
        self.input_shape = (s["seq_len"],)
        return splits

    def _encode(self, texts: list[list[str]], index: dict[str, int]) -> torch.Tensor:
        length = self.settings["seq_len"]
        out = torch.full((len(texts), length), 1, dtype=torch.long)
        for row, tokens in enumerate(texts):
            ids = [index.get(t, 0) for t in tokens[:length]]
            if ids:
                out[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor) -> str:
        """Token ids back to text, padding dropped (for reading samples)."""
        joiner = " " if self.settings["tokens"] == "word" else ""
        return joiner.join(self.vocab[i] for i in ids.tolist() if i != 1)

    def content_extra(self) -> Any:
        return self.vocab
