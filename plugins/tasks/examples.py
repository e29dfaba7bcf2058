"""Small example data files for the data tasks, written from data that installed packages ship.

- ``digits_npz``: scikit-learn's 1,797 handwritten digits as uint8 ``N×8×8`` images, ``x``/``y``
  (1,437 images) plus a held-out ``x_test``/``y_test`` (360, stratified, seed 0);
- ``digits_png``: the same images as 8×8 grayscale PNG files, one folder per digit;
- ``wine_csv``: scikit-learn's wine recognition data (178 wines, 13 chemical measurements, 3 cultivars
  named ``class_0`` … ``class_2``) with a header row, label column ``cultivar``;
- ``docstrings_jsonl``: which standard-library package a docstring comes from (``asyncio``, ``email``,
  ``logging``, ``xml``): the first paragraph of the documented public functions, classes and methods
  of each package (20 to 300 characters, at most 150 per package), as ``{"text", "label"}`` lines.
  Docstrings change between Python versions: the repository ships the file written once.

``python search_spaces/make_example_data.py`` writes them all under ``search_spaces/data/``.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import numpy as np

DOC_PACKAGES = ("asyncio", "email", "logging", "xml")
DOCS_PER_PACKAGE = 150


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def digits_npz(path: str | Path) -> Path:
    """scikit-learn's digits as ``x``, ``y``, ``x_test``, ``y_test`` (uint8 ``N×8×8`` images, int labels)."""
    from sklearn.model_selection import train_test_split

    images, labels = _digits()
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    train, test = np.sort(train), np.sort(test)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=images[train], y=labels[train], x_test=images[test], y_test=labels[test])
    return path


def digits_png(folder: str | Path, per_class: int | None = None) -> Path:
    """scikit-learn's digits as ``folder/<digit>/<index>.png`` (8×8 grayscale), ``per_class`` each at most."""
    from PIL import Image

    images, labels = _digits()
    folder = Path(folder)
    written: dict[int, int] = {}
    for index, (image, label) in enumerate(zip(images, labels)):
        if per_class is not None and written.get(int(label), 0) >= per_class:
            continue
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{index:04d}.png")
        written[int(label)] = written.get(int(label), 0) + 1
    return folder


def wine_csv(path: str | Path) -> Path:
    """scikit-learn's wine data as a CSV file: 13 numeric columns and ``cultivar``."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*wine.feature_names, "cultivar"])
        for row, label in zip(wine.data, wine.target):
            writer.writerow([f"{v:g}" for v in row] + [wine.target_names[label]])
    return path


def package_docstrings(package: str) -> list[str]:
    """First paragraphs (20–300 characters, whitespace collapsed) of the public API's docstrings in ``package``."""
    root = importlib.import_module(package)
    names = [package] + sorted(
        m.name
        for m in pkgutil.walk_packages(root.__path__, package + ".")
        if ".test" not in m.name and "__main__" not in m.name
    )
    found: dict[str, None] = {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - a module that needs a missing platform library is skipped
            continue
        documented = []
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj):
                documented.append(obj)
                documented += [
                    m for a, m in sorted(vars(obj).items()) if not a.startswith("_") and inspect.isfunction(m)
                ]
            elif inspect.isfunction(obj):
                documented.append(obj)
        for obj in documented:
            doc = inspect.getdoc(obj)
            if doc:
                paragraph = " ".join(doc.split("\n\n")[0].split())
                if 20 <= len(paragraph) <= 300:
                    found.setdefault(paragraph, None)
    return list(found)


def docstrings_jsonl(path: str | Path) -> Path:
    """Docstrings labelled by their standard-library package, one JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for package in DOC_PACKAGES:
            for text in package_docstrings(package)[:DOCS_PER_PACKAGE]:
                out.write(json.dumps({"text": text, "label": package}) + "\n")
    return path
