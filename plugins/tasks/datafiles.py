"""What the tasks over a user's own data share: file checks, class labels, splits and content fingerprints.

A ``DataTask`` reads its data once, when it is configured, so a missing file, a wrong key or an
unreadable value is reported before any trial runs, as one ``SpaceError`` line naming the option
(``task.path``, ``task.x_key``, ...). Splits are held as tensors; ``fingerprint()`` hashes their
content (not the file's path), so the score cache serves the same data under another name and never
serves changed data under the same name.

Splits come from the data's own split (a second file, other keys) or are drawn from the training data:
``val_fraction`` (0.2 unless a validation split is given) and ``test_fraction`` (0 by default: no test
split), stratified by class where every class has two examples or more, fixed by ``split_seed``.
"""

from __future__ import annotations

import hashlib
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from automl import Batch, Option, SpaceError, Task

SPLITS = ("train", "val", "test")
DEFAULT_VAL_FRACTION = 0.2

SPLIT_OPTIONS: dict[str, Option] = {
    "val_fraction": Option(
        float,
        default=None,
        min=0.01,
        max=0.9,
        help="share of the data drawn for validation (default 0.2; not with a validation split of the data's own)",
    ),
    "test_fraction": Option(
        float, default=0.0, min=0.0, max=0.9, help="share of the data drawn for a test split (default 0: none)"
    ),
    "split_seed": Option(int, default=0, min=0, max=2**32 - 1, help="seed of the drawn splits"),
}


def existing_file(path: str, key: str, suffixes: Sequence[str] = ()) -> Path:
    """``path`` as a readable file (with one of ``suffixes`` if given), or a ``SpaceError`` at ``key``."""
    found = Path(path).expanduser()
    if not found.exists():
        raise SpaceError(f"no such file: {path}", key=key)
    if found.is_dir():
        raise SpaceError(f"{path} is a folder, expected a file", key=key)
    if suffixes and found.suffix.lower() not in suffixes:
        raise SpaceError(f"{path}: unsupported file type {found.suffix or '(none)'!r}", key=key, allowed=suffixes)
    return found


def existing_folder(path: str, key: str) -> Path:
    """``path`` as a folder, or a ``SpaceError`` at ``key``."""
    found = Path(path).expanduser()
    if not found.exists():
        raise SpaceError(f"no such folder: {path}", key=key)
    if not found.is_dir():
        raise SpaceError(f"{path} is a file, expected a folder", key=key)
    return found


def read_text(path: Path, key: str) -> str:
    """The file as UTF-8 text (a byte-order mark is dropped); a binary file is a ``SpaceError``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SpaceError(f"{path}: cannot read the file ({err.strerror})", key=key) from None
    if b"\x00" in data[:65536]:
        raise SpaceError(f"{path} is a binary file, not text", key=key)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpaceError(f"{path} is not UTF-8 text (byte {err.start})", key=key) from None


def label_names(raw: Sequence[Any]) -> list[str]:
    """Labels as strings; integral numbers lose a trailing ``.0`` (so 1.0 and 1 are one class)."""
    out = []
    for value in raw:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        out.append(str(value))
    return out


def class_order(names: Sequence[str]) -> tuple[str, ...]:
    """The distinct labels, numerically sorted when all are integers, else alphabetically."""
    distinct = set(names)
    try:
        return tuple(sorted(distinct, key=int))
    except ValueError:
        return tuple(sorted(distinct))


def encode_labels(
    by_split: Mapping[str, Sequence[str]], key: str, *, explicit: Sequence[str] = ()
) -> tuple[tuple[str, ...], dict[str, torch.Tensor]]:
    """Class names (ordered as ``class_order``) and each split's labels as class ids.

    ``explicit``: the splits the data brought itself; a label there that no training example has is
    most likely a typo, and an error.
    """
    classes = class_order([n for names in by_split.values() for n in names])
    train = set(by_split.get("train", ()))
    for split in explicit:
        stray = sorted(set(by_split[split]) - train)
        if stray:
            raise SpaceError(f"the {split} data has label {stray[0]!r}, which no training example has", key=key)
    if len(classes) < 2:
        raise SpaceError(f"the labels hold {len(classes)} class(es); classification needs at least 2", key=key)
    index = {name: i for i, name in enumerate(classes)}
    return classes, {
        split: torch.tensor([index[n] for n in names], dtype=torch.long) for split, names in by_split.items()
    }


def draw_splits(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Indices of train / val / test drawn from one labelled set (val or test absent at fraction 0).

    Stratified by class when every class has at least two examples and each drawn split can hold
    every class; otherwise a plain random draw. Deterministic for a seed.
    """
    from sklearn.model_selection import train_test_split

    def cut(index: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
        try:
            return train_test_split(index, test_size=share, stratify=labels[index], random_state=seed)
        except ValueError:  # a class too small to stratify, or a split smaller than the class count
            return train_test_split(index, test_size=share, random_state=seed)

    index = np.arange(len(labels))
    out: dict[str, np.ndarray] = {}
    if test_fraction > 0:
        index, out["test"] = cut(index, test_fraction)
    if val_fraction > 0:
        index, out["val"] = cut(index, val_fraction / (1.0 - test_fraction))
    out["train"] = index
    return {name: np.sort(out[name]) for name in SPLITS if name in out}


def split_fractions(settings: Mapping[str, Any], *, has_val: bool, has_test: bool, size: int) -> tuple[float, float]:
    """The (val, test) shares to draw from the training data, checked against what the data brings."""
    val = settings["val_fraction"]
    test = settings["test_fraction"]
    if has_val and val is not None:
        raise SpaceError("the data has its own validation split: leave val_fraction out", key="val_fraction")
    if has_test and test:
        raise SpaceError("the data has its own test split: leave test_fraction out", key="test_fraction")
    val = 0.0 if has_val else (DEFAULT_VAL_FRACTION if val is None else val)
    if val + test >= 0.95:
        raise SpaceError(
            f"val_fraction + test_fraction = {val + test:g} leaves too little training data", key="val_fraction"
        )
    # scikit-learn's draw rounds each held-out count up: the training data must keep an example.
    held_test = math.ceil(size * test)
    held_val = math.ceil((size - held_test) * val / (1.0 - test))
    if size - held_test - held_val < 1:
        raise SpaceError(
            f"val_fraction {val:g} and test_fraction {test:g} of {size} examples leave no training example",
            key="val_fraction",
        )
    return val, test


def assemble(
    settings: Mapping[str, Any], inputs: dict[str, Any], labels: Mapping[str, Sequence[str]], label_key: str
) -> tuple[tuple[str, ...], dict[str, Any], dict[str, torch.Tensor]]:
    """Class names, then each split's inputs and class ids, with the splits the data lacks drawn from train.

    ``inputs`` and ``labels`` hold what the data brought, by split (``train`` always); an input is a
    tensor (indexed on its first axis) or a list. ``label_key`` is the option blamed for bad labels.
    """
    classes, ids = encode_labels(labels, label_key, explicit=[k for k in labels if k != "train"])
    val, test = split_fractions(settings, has_val="val" in labels, has_test="test" in labels, size=len(ids["train"]))
    inputs = dict(inputs)
    if val or test:
        whole_x, whole_y = inputs["train"], ids["train"]
        for split, index in draw_splits(whole_y.numpy(), val, test, settings["split_seed"]).items():
            rows = torch.from_numpy(index)
            inputs[split] = whole_x[rows] if isinstance(whole_x, torch.Tensor) else [whole_x[i] for i in index]
            ids[split] = whole_y[rows]
    order = [name for name in SPLITS if name in inputs]
    return classes, {k: inputs[k] for k in order}, {k: ids[k] for k in order}


def standardize(splits: dict[str, Batch], dims: tuple[int, ...]) -> None:
    """Scale every split's float inputs by the training split's mean and standard deviation over ``dims``."""
    train = splits["train"].inputs
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant feature stays constant (zero)
    for name, batch in splits.items():
        splits[name] = Batch(((batch.inputs - mean) / std).contiguous(), batch.targets)


class DataTask(Task):
    """A task over data read once, at configuration, into train / val (/ test) tensors.

    Subclasses implement ``load`` (return the splits, fill ``input_shape``, ``num_classes`` and
    ``classes``) and list in ``locations`` the options that only say where the data is (paths, keys,
    column names): the fingerprint leaves them out and hashes the data itself.
    """

    locations: ClassVar[tuple[str, ...]] = ("path", "val_path", "test_path")
    classes: tuple[str, ...] = ()

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._splits = self.load()
        self._fingerprint: str | None = None

    @abstractmethod
    def load(self) -> dict[str, Batch]:
        """Every split the data has, read once when the task is configured."""

    def split(self, name: str) -> Batch:
        if name not in self._splits:
            have = ", ".join(s for s in SPLITS if s in self._splits)
            raise ValueError(f"unknown split {name!r}; the {self.name} task has {have}")
        return self._splits[name]

    def split_sizes(self) -> dict[str, int]:
        return {name: len(batch) for name, batch in self._splits.items()}

    def fingerprint(self) -> str:
        """A hash of every split's tensors and of the settings that shape them (paths and keys left out)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.name.encode())
            shaping = {k: v for k, v in self.settings.items() if k not in self.locations}
            digest.update(repr(sorted(shaping.items())).encode())
            digest.update(repr(self.content_extra()).encode())
            for name in SPLITS:
                if name in self._splits:
                    batch = self._splits[name]
                    for tensor in (batch.inputs, batch.targets):
                        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                        digest.update(tensor.contiguous().numpy())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def content_extra(self) -> Any:
        """Anything besides the tensors that tells two datasets apart (a text task's vocabulary)."""
        return ()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": list(self.classes), "splits": self.split_sizes()}
