"""Tasks from Python objects: tensors, arrays or a ``torch.utils.data.Dataset``.

::

    from automl_plugins.tasks import as_task, from_data, with_task

    task = from_data(images, labels)                          # N×C×H×W floats, N labels
    task = as_task((images, labels))                          # the same; a Task passes through as it is
    task = from_data(train_dataset, val=val_dataset)          # map-style datasets of (input, label)
    space = with_task(automl.SearchSpace.from_file("search_spaces/nb201_digits.toml"), task)
    study = automl.search(space, storage=":memory:", n_trials=10)

What the inputs are decides the task's kind (``kind`` overrides it): floating-point ``N×H×W`` or
``N×C×H×W`` images (``layout = "nhwc"`` for channels last) make an ``image-classification`` task,
floating-point ``N×F`` vectors a ``tabular-classification`` task, integer ``N×T`` token ids a
``text-classification`` task (vocabulary size: the largest id + 1, or ``vocab_size``). Labels are
integers or strings, one per example. Splits and standardisation follow the file tasks (see
``datafiles``): ``val`` / ``test`` take the data's own splits as ``(inputs, labels)`` pairs or
datasets, else ``val_fraction`` (0.2) and ``test_fraction`` (0) draw them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from automl import Batch, Option, SearchSpace, SpaceError, Task
from automl_plugins.tasks.datafiles import SPLIT_OPTIONS, DataTask, assemble, label_names, standardize

KINDS = {"image": "image-classification", "tabular": "tabular-classification", "text": "text-classification"}


class TensorTask(DataTask):
    """A task over tensors held in memory; build one with ``from_data``."""

    name = "tensors"
    description = "a task over tensors or a torch Dataset given from Python (automl_plugins.tasks.from_data)"

    kind = "image-classification"
    locations = ()
    options = {
        "kind": Option(
            str, default=None, choices=tuple(KINDS), help="image, tabular or text (default: from the inputs)"
        ),
        "layout": Option(str, default="nchw", choices=("nchw", "nhwc"), help="axis order of 4-D images"),
        "vocab_size": Option(int, default=None, min=2, help="token vocabulary size (default: largest id + 1)"),
        "standardize": Option(bool, default=True, help="scale float inputs by the training split's mean and std"),
        "batch_size": Option(int, default=64, min=1, max=4096, help="minibatch size for proxies and training"),
        **SPLIT_OPTIONS,
    }

    def __init__(self, data: Mapping[str, tuple[Any, Any]], **settings: Any) -> None:
        self._data = data
        super().__init__(**settings)
        del self._data

    def load(self) -> dict[str, Batch]:
        s = self.settings
        inputs: dict[str, torch.Tensor] = {}
        labels: dict[str, list[str]] = {}
        for split, (x, y) in self._data.items():
            inputs[split] = _tensor(x, split)
            labels[split] = _labels(y, len(inputs[split]), split)
        first = inputs["train"]
        kind = s["kind"] or ("text" if not first.is_floating_point() and first.dim() == 2 else None)
        kind = kind or ("tabular" if first.dim() == 2 else "image")
        self.kind = KINDS[kind]
        for split, x in inputs.items():
            inputs[split] = _shaped(x, kind, s["layout"], split)
        shapes = {tuple(x.shape[1:]) for x in inputs.values()}
        if len(shapes) > 1:
            raise SpaceError(f"the splits' inputs differ in shape: {sorted(shapes)}", key="inputs")
        classes, inputs, ids = assemble(s, inputs, labels, "labels")
        splits = {k: Batch(inputs[k].contiguous(), ids[k]) for k in inputs}
        if kind == "text":
            largest = max(int(b.inputs.max()) for b in splits.values())
            self.vocab_size = s["vocab_size"] or largest + 1
            if largest >= self.vocab_size or min(int(b.inputs.min()) for b in splits.values()) < 0:
                raise SpaceError(f"token ids must lie in 0..{self.vocab_size - 1}; found {largest}", key="vocab_size")
        elif s["standardize"]:
            standardize(splits, (0, 2, 3) if kind == "image" else (0,))
        self.classes = classes
        self.num_classes = len(classes)
        self.input_shape = tuple(splits["train"].inputs.shape[1:])
        return splits


def from_data(
    x: Any,
    y: Any = None,
    *,
    val: Any = None,
    test: Any = None,
    kind: str | None = None,
    layout: str = "nchw",
    vocab_size: int | None = None,
    standardize: bool = True,
    batch_size: int = 64,
    val_fraction: float | None = None,
    test_fraction: float = 0.0,
    split_seed: int = 0,
) -> TensorTask:
    """A task from tensors / arrays (``x`` inputs, ``y`` labels) or from a dataset of ``(input, label)`` pairs.

    ``val`` and ``test`` are the data's own splits, each an ``(inputs, labels)`` pair or a dataset.
    Every option is checked as a search-space file's would be; an error is a ``SpaceError`` naming it.
    """
    data = {"train": _pair(x, y, "x")}
    for split, given in (("val", val), ("test", test)):
        if given is not None:
            data[split] = _pair(*given, split) if isinstance(given, (tuple, list)) else _pair(given, None, split)
    raw = {
        "kind": kind,
        "layout": layout,
        "vocab_size": vocab_size,
        "standardize": standardize,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "split_seed": split_seed,
    }
    from automl.options import validate_options

    settings = validate_options(TensorTask.options, {k: v for k, v in raw.items() if v is not None}, key="task")
    try:
        return TensorTask(data, **settings)
    except SpaceError as err:
        raise err.located(prefix="task") from None


def as_task(task: Any) -> Task:
    """A ``Task`` as it is; an ``(inputs, labels)`` pair or a dataset through ``from_data`` (default options).

    What ``automl.search(space, task=...)`` takes: a task, tensors or a ``torch.utils.data.Dataset``.
    """
    if isinstance(task, Task):
        return task
    if isinstance(task, (tuple, list)) and len(task) == 2:
        return from_data(*task)
    return from_data(task)


def with_task(space: SearchSpace, task: Any) -> SearchSpace:
    """``space`` with its task replaced (validated again: an image architecture refuses tabular data).

    The copy's recorded table names the task ``tensors``: Ray Tune's workers, which rebuild spaces from
    their tables, then fail each trial with ``unknown task 'tensors'`` instead of training on other data.
    """
    return space.with_task(as_task(task))


def _pair(x: Any, y: Any, where: str) -> tuple[Any, Any]:
    if y is not None:
        return x, y
    if isinstance(x, (torch.Tensor, np.ndarray)):
        raise SpaceError(f"{where}: labels are missing (pass y, or a dataset of (input, label) pairs)", key="labels")
    return _from_dataset(x, where)


def _from_dataset(dataset: Any, where: str) -> tuple[torch.Tensor, list[Any]]:
    """Stack a dataset's ``(input, label)`` items (map-style by index, else by iteration)."""
    try:
        items = [dataset[i] for i in range(len(dataset))] if hasattr(dataset, "__getitem__") else list(dataset)
    except TypeError:
        items = list(dataset)
    if not items:
        raise SpaceError(f"{where}: the dataset is empty", key="inputs")
    if not all(isinstance(item, (tuple, list)) and len(item) >= 2 for item in items):
        raise SpaceError(f"{where}: dataset items must be (input, label) pairs", key="inputs")
    try:
        inputs = torch.stack([torch.as_tensor(item[0]) for item in items])
    except (RuntimeError, TypeError, ValueError) as err:
        raise SpaceError(f"{where}: the dataset's inputs do not stack into one tensor ({err})", key="inputs") from None
    return inputs, [item[1] for item in items]


def _tensor(x: Any, where: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(x).detach().cpu()
    except (RuntimeError, TypeError, ValueError) as err:
        raise SpaceError(f"{where}: the inputs are not a tensor ({err})", key="inputs") from None
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255.0
    if tensor.is_floating_point():
        tensor = tensor.float()
        if not torch.isfinite(tensor).all():
            raise SpaceError(f"{where}: the inputs hold NaN or infinite values", key="inputs")
    elif tensor.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8):
        raise SpaceError(f"{where}: inputs of type {tensor.dtype} are neither floats nor token ids", key="inputs")
    return tensor


def _shaped(x: torch.Tensor, kind: str, layout: str, where: str) -> torch.Tensor:
    dims = "×".join(map(str, x.shape))
    if kind == "text":
        if x.dim() != 2 or x.is_floating_point():
            raise SpaceError(f"{where}: text inputs are N×T integer token ids, got {dims} {x.dtype}", key="inputs")
        return x.long()
    x = x.float()
    if kind == "tabular":
        if x.dim() != 2:
            raise SpaceError(f"{where}: tabular inputs are N×F, got {dims}", key="inputs")
        return x
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() != 4:
        raise SpaceError(f"{where}: images are N×H×W or N×C×H×W, got {dims}", key="inputs")
    return x.permute(0, 3, 1, 2) if layout == "nhwc" else x


def _labels(y: Any, count: int, where: str) -> list[str]:
    if isinstance(y, (torch.Tensor, np.ndarray)):
        values = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise SpaceError(
                f"{where}: labels have shape {values.shape}; give one class label per example", key="labels"
            )
        if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (np.mod(values, 1) == 0)):
            raise SpaceError(f"{where}: labels hold non-integer numbers", key="labels")
        y = values.tolist()
    else:
        y = [v.item() if isinstance(v, torch.Tensor) else v for v in y]
    if len(y) != count:
        raise SpaceError(f"{where}: {len(y)} labels for {count} inputs", key="labels")
    return label_names(y)
