"""Image classification from a folder of images: one subfolder per class, read with Pillow.

``path/<class>/<any/depth>/<image>``: every subfolder of ``path`` (hidden ones aside) is a class, named
by its folder; every file below it with an image suffix (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``,
``.gif``, ``.webp``, ``.tif``, ``.tiff``, ``.ppm``, ``.pgm``) is one of its images; other files are
ignored. Images are converted to RGB or grayscale (``color``), resized bilinearly to
``image_size × image_size`` (aspect ratios are not kept), scaled to [0, 1] and standardised per channel
with the training split's statistics. ``val_path`` / ``test_path`` name folders of the same layout
holding the data's own splits; otherwise splits are drawn (see ``datafiles``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from automl import Batch, Option, SpaceError
from automl_plugins.tasks.datafiles import (
    SPLIT_OPTIONS,
    DataTask,
    assemble,
    existing_folder,
    standardize,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
COLORS = ("rgb", "grayscale")


def read_image_folder(root: Path, key: str, image_size: int, color: str) -> tuple[np.ndarray, list[str]]:
    """Every image under ``root``'s class folders as ``N×H×W×C`` uint8, and its class name."""
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SpaceError(f"{root} has no class folders (expected one subfolder per class, holding its images)", key=key)
    mode = "RGB" if color == "rgb" else "L"
    images: list[np.ndarray] = []
    labels: list[str] = []
    for name in classes:
        files = sorted(
            f
            for f in (root / name).rglob("*")
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and not f.name.startswith(".")
        )
        if not files:
            raise SpaceError(f"class folder {root / name} holds no images ({', '.join(IMAGE_SUFFIXES)})", key=key)
        for file in files:
            try:
                with Image.open(file) as image:
                    image = image.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
                    pixels = np.asarray(image, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
                raise SpaceError(f"{file} is not an image Pillow can read ({type(err).__name__})", key=key) from None
            images.append(pixels.reshape(image_size, image_size, -1))
            labels.append(name)
    return np.stack(images), labels


class ImageFolderTask(DataTask):
    name = "image_folder"

    @staticmethod
    def example(folder: Path) -> dict:
        """Contract-suite settings: a small file written from data an installed package ships."""
        from automl_plugins.tasks.examples import digits_png

        return {"path": str(digits_png(folder / "digits", per_class=6)), "image_size": 8}

    description = "image classification from a folder with one subfolder of images per class (Pillow)"
    kind = "image-classification"
    options = {
        "path": Option(str, help="the folder holding one subfolder per class (relative: from the working directory)"),
        "val_path": Option(str, default=None, help="a folder of the same layout with the validation images"),
        "test_path": Option(str, default=None, help="a folder of the same layout with the test images"),
        "image_size": Option(int, default=32, min=4, max=512, help="images are resized to image_size × image_size"),
        "color": Option(str, default="rgb", choices=COLORS, help="read as RGB (3 channels) or grayscale (1)"),
        "standardize": Option(bool, default=True, help="scale each channel by the training split's mean and std"),
        "batch_size": Option(int, default=64, min=1, max=4096, help="minibatch size for proxies and training"),
        **SPLIT_OPTIONS,
    }

    def load(self) -> dict[str, Batch]:
        s = self.settings
        sources = {"train": "path"} | {split: f"{split}_path" for split in ("val", "test") if s[f"{split}_path"]}
        images: dict[str, torch.Tensor] = {}
        labels: dict[str, list[str]] = {}
        for split, key in sources.items():
            pixels, labels[split] = read_image_folder(existing_folder(s[key], key), key, s["image_size"], s["color"])
            images[split] = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        classes, images, ids = assemble(s, images, labels, "path")
        splits = {k: Batch(images[k].contiguous(), ids[k]) for k in images}
        if s["standardize"]:
            standardize(splits, (0, 2, 3))
        self.classes = classes
        self.num_classes = len(classes)
        self.input_shape = tuple(splits["train"].inputs.shape[1:])
        return splits
