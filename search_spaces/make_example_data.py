"""Write the example data of the data-task search spaces under search_spaces/data/.

    python search_spaces/make_example_data.py            # the PNG folder only (the other files ship)
    python search_spaces/make_example_data.py --all      # every file, written again

The .npz, CSV and JSON Lines files ship with the repository; the image folder (1,797 small PNG files)
does not, and image_folder_digits.toml needs it written first. See automl_plugins.tasks.examples.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from automl_plugins.tasks import examples

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also write the files the repository ships")
    args = parser.parse_args()
    written = [examples.digits_png(DATA / "digits_png")]
    if args.all:
        written += [
            examples.digits_npz(DATA / "digits.npz"),
            examples.wine_csv(DATA / "wine.csv"),
            examples.docstrings_jsonl(DATA / "docstrings.jsonl"),
        ]
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
