"""scikit-learn's handwritten digits (1,797 8×8 images, 10 classes), upscaled for image networks.

Ships with scikit-learn, so nothing is downloaded. Images are scaled to [0, 1], resized bilinearly to
``image_size`` and repeated over ``channels``, then standardised with the training split's mean and
standard deviation. Splits are stratified and fixed by ``split_seed``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from automl import Batch, Option, SpaceError, Task


@functools.lru_cache(maxsize=8)
def _load(
    image_size: int, channels: int, val_fraction: float, test_fraction: float, split_seed: int
) -> dict[str, Batch]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = images.repeat(1, channels, 1, 1)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, stratify=digits.target, random_state=split_seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=digits.target[rest], random_state=split_seed)
    mean = images[train].mean()
    std = images[train].std()
    images = (images - mean) / std
    return {
        name: Batch(images[idx].contiguous(), labels[idx].contiguous())
        for name, idx in (("train", train), ("val", val), ("test", test))
    }


class DigitsTask(Task):
    name = "digits"
    description = "scikit-learn's 8×8 handwritten digits, upscaled to image_size RGB (10 classes)"
    kind = "image-classification"
    example = {"image_size": 8, "channels": 1, "batch_size": 16}
    options = {
        "batch_size": Option(int, default=64, min=1, max=4096, help="minibatch size for proxies and training"),
        "image_size": Option(int, default=32, min=8, max=256, help="side of the upscaled images"),
        "channels": Option(int, default=3, choices=(1, 3), help="image channels"),
        "val_fraction": Option(float, default=0.2, min=0.05, max=0.5),
        "test_fraction": Option(float, default=0.2, min=0.05, max=0.5),
        "split_seed": Option(int, default=0, min=0, max=2**32 - 1),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        if settings["val_fraction"] + settings["test_fraction"] >= 0.9:
            raise SpaceError("val_fraction + test_fraction leaves too little training data", key="val_fraction")
        self.input_shape = (settings["channels"], settings["image_size"], settings["image_size"])
        self.num_classes = 10

    def split(self, name: str) -> Batch:
        s = self.settings
        splits = _load(s["image_size"], s["channels"], s["val_fraction"], s["test_fraction"], s["split_seed"])
        if name not in splits:
            raise ValueError(f"unknown split {name!r}; the digits task has train, val and test")
        return splits[name]
