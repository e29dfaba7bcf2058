"""Image classification from an array file: NumPy ``.npz`` or a torch ``.pt`` dictionary of tensors.

The file holds the images under ``x_key`` (``"x"``) and one label per image under ``y_key`` (``"y"``).
Images are ``N×H×W`` (one channel) or ``N×C×H×W`` / ``N×H×W×C`` as ``layout`` says; ``layout = "auto"``
assumes PyTorch's NCHW unless axis 1 cannot be channels (more than 4) while the last axis can (1, 3
or 4). Labels are integers or strings; classes are the distinct labels in numerical (else alphabetical)
order. A validation or test split of the file's own is named by ``val_keys`` / ``test_keys`` (the
images' key, then the labels'); otherwise splits are drawn (see ``datafiles``).

Pixels become float32 (``uint8`` scaled by 1/255), optionally resized bilinearly to ``image_size``,
then standardised per channel with the training split's mean and standard deviation (``standardize``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from automl import Batch, Option, SpaceError
from automl_plugins.tasks.datafiles import (
    SPLIT_OPTIONS,
    DataTask,
    assemble,
    existing_file,
    label_names,
    standardize,
)

SUFFIXES = (".npz", ".pt", ".pth")
LAYOUTS = ("auto", "nchw", "nhwc")


def read_arrays(path: Path, key: str) -> dict[str, Any]:
    """The named arrays of a ``.npz`` archive or of a ``.pt`` file holding a dict of tensors."""
    if path.suffix.lower() == ".npz":
        if not zipfile.is_zipfile(path):
            raise SpaceError(f"{path} is not a NumPy .npz archive (not a zip file)", key=key)
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except ValueError as err:
            raise SpaceError(f"{path}: cannot read an array ({err})", key=key) from None
        except Exception as err:  # noqa: BLE001 - zipfile, OSError, EOFError: all mean "not an archive"
            raise SpaceError(f"{path} is not a NumPy .npz archive ({type(err).__name__}: {err})", key=key) from None
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors have many types; one line says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpaceError(f"{path} is not a torch file of tensors ({first})", key=key) from None
    if not isinstance(content, Mapping) or not all(isinstance(k, str) for k in content):
        raise SpaceError(
            f"{path} holds a {type(content).__name__}; save a dict of tensors: torch.save({{'x': x, 'y': y}}, path)",
            key=key,
        )
    return dict(content)


def as_numpy(value: Any, path: Path, name: str, key: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return np.asarray(value)  # labels saved as a plain list (of class names, say) in a .pt file
    raise SpaceError(f"{path}: {name!r} is a {type(value).__name__}, not an array", key=key)


def image_tensor(x: np.ndarray, layout: str, where: str, key: str) -> tuple[torch.Tensor, str]:
    """Images as float32 ``N×C×H×W`` (uint8 scaled to [0, 1]) and the layout used."""
    if x.dtype.kind not in "uifb":
        raise SpaceError(f"{where} holds {x.dtype} values, not numbers", key=key)
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if x.dtype == np.uint8:
        images = images / 255.0
    if not torch.isfinite(images).all():
        raise SpaceError(f"{where} holds NaN or infinite values", key=key)
    if images.dim() == 3:
        return images.unsqueeze(1), "nhw"
    if images.dim() != 4:
        shape = "×".join(map(str, x.shape))
        raise SpaceError(
            f"{where} has shape {shape}: images are N×H×W, N×C×H×W or N×H×W×C "
            "(vectors: use the csv task, or automl_plugins.tasks.from_data from Python)",
            key=key,
        )
    if layout == "auto":
        layout = "nhwc" if images.shape[1] > 4 and images.shape[3] in (1, 3, 4) else "nchw"
    if layout == "nhwc":
        images = images.permute(0, 3, 1, 2)
    return images.contiguous(), layout


class ArraysTask(DataTask):
    name = "arrays"

    @staticmethod
    def example(folder: Path) -> dict:
        """Contract-suite settings: a small file written from data an installed package ships."""
        from automl_plugins.tasks.examples import digits_npz

        return {"path": str(digits_npz(folder / "digits.npz"))}

    description = "image classification from a .npz / .pt file of images (x) and labels (y)"
    kind = "image-classification"
    locations = ("path", "x_key", "y_key", "val_keys", "test_keys")
    options = {
        "path": Option(str, help="the .npz or .pt file (relative paths: from the working directory)"),
        "x_key": Option(str, default="x", help="name of the images in the file"),
        "y_key": Option(str, default="y", help="name of the labels in the file"),
        "val_keys": Option(
            list,
            default=[],
            item_type=str,
            help="images and labels of the file's own validation split, e.g. ['x_val', 'y_val']",
        ),
        "test_keys": Option(list, default=[], item_type=str, help="images and labels of the file's own test split"),
        "layout": Option(
            str, default="auto", choices=LAYOUTS, help="axis order of 4-D images (auto: NCHW unless channels are last)"
        ),
        "image_size": Option(int, default=None, min=4, max=1024, help="resize to this side (default: keep the size)"),
        "standardize": Option(bool, default=True, help="scale each channel by the training split's mean and std"),
        "batch_size": Option(int, default=64, min=1, max=4096, help="minibatch size for proxies and training"),
        **SPLIT_OPTIONS,
    }

    def load(self) -> dict[str, Batch]:
        s = self.settings
        path = existing_file(s["path"], "path", SUFFIXES)
        arrays = read_arrays(path, "path")
        sources = {"train": (s["x_key"], s["y_key"], "x_key", "y_key")}
        for split in ("val", "test"):
            keys = s[f"{split}_keys"]
            if keys:
                if len(keys) != 2:
                    raise SpaceError(
                        f"name two arrays, the images' and the labels', got {len(keys)}", key=f"{split}_keys"
                    )
                sources[split] = (keys[0], keys[1], f"{split}_keys[0]", f"{split}_keys[1]")
        images: dict[str, torch.Tensor] = {}
        labels: dict[str, list[str]] = {}
        for split, (x_name, y_name, x_opt, y_opt) in sources.items():
            for name, opt in ((x_name, x_opt), (y_name, y_opt)):
                if name not in arrays:
                    raise SpaceError(f"{path} has no array {name!r}", key=opt, allowed=sorted(arrays))
            x = as_numpy(arrays[x_name], path, x_name, x_opt)
            y = as_numpy(arrays[y_name], path, y_name, y_opt)
            images[split], self.layout = image_tensor(x, s["layout"], f"{path}: {x_name!r}", x_opt)
            labels[split] = self._labels(y, len(x), path, y_name, y_opt)
        classes, images, ids = assemble(s, images, labels, "y_key")
        shapes = {tuple(t.shape[1:]) for t in images.values()}
        if len(shapes) > 1:
            raise SpaceError(f"the splits' images differ in shape: {sorted(shapes)}", key="val_keys")
        if s["image_size"]:
            size = (s["image_size"], s["image_size"])
            images = {k: F.interpolate(v, size=size, mode="bilinear", align_corners=False) for k, v in images.items()}
        splits = {k: Batch(images[k].contiguous(), ids[k]) for k in images}
        if s["standardize"]:
            standardize(splits, (0, 2, 3))
        self.classes = classes
        self.num_classes = len(classes)
        self.input_shape = tuple(splits["train"].inputs.shape[1:])
        return splits

    @staticmethod
    def _labels(y: np.ndarray, count: int, path: Path, name: str, key: str) -> list[str]:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            shape = "×".join(map(str, y.shape))
            raise SpaceError(f"{path}: {name!r} has shape {shape}; give one class label per image", key=key)
        if len(y) != count:
            raise SpaceError(f"{path}: {name!r} has {len(y)} labels for {count} images", key=key)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (np.mod(y, 1) == 0)):
            raise SpaceError(
                f"{path}: {name!r} holds non-integer numbers; class labels are integers or strings", key=key
            )
        if y.dtype.kind not in "iubfUS":
            raise SpaceError(f"{path}: {name!r} holds {y.dtype} values; class labels are integers or strings", key=key)
        if y.dtype.kind == "S":
            y = y.astype(str)
        return label_names(y.tolist())
