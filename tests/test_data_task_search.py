"""End-to-end searches on the shipped data-task examples, the score cache keyed by content, Python tensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import tomllib
import torch

import automl
from automl import SearchSpace
from automl.runner import StudyRunner
from automl_plugins.tasks import examples, from_data, with_task

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"


def example(name: str, path: Path | str | None = None, n_trials: int = 3) -> dict:
    """A shipped example's table, its data path made absolute (tests run in their own folder)."""
    data = tomllib.loads((SPACES / f"{name}.toml").read_text())
    data["task"]["path"] = str(path or ROOT / data["task"]["path"])
    data["study"]["n_trials"] = n_trials
    return data


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_the_shipped_data_files_are_what_the_example_writers_write(tmp_path):
    shipped = np.load(SPACES / "data" / "digits.npz")
    written = np.load(examples.digits_npz(tmp_path / "d.npz"))
    assert sorted(shipped.files) == ["x", "x_test", "y", "y_test"]
    for key in shipped.files:
        assert np.array_equal(shipped[key], written[key])
    assert (SPACES / "data" / "wine.csv").read_text() == examples.wine_csv(tmp_path / "w.csv").read_text()
    lines = (SPACES / "data" / "docstrings.jsonl").read_text().splitlines()
    assert len(lines) == 600
    for path in (SPACES / "data").iterdir():
        assert path.is_dir() or path.stat().st_size < 200_000


@pytest.mark.parametrize(
    ("name", "evaluated"),
    [
        ("arrays_digits", "synflow"),
        pytest.param("csv_wine", "val_loss", marks=pytest.mark.slow),  # trains: 4-7 s on the shared machine
        ("text_docstrings", "params"),
    ],
)
def test_each_shipped_example_runs_a_small_search(storage, name, evaluated):
    data = example(name)
    if data["evaluator"]["name"] == "training":
        data["evaluator"]["epochs"] = 2  # the example's own budget is for the command line, not the suite
    study = automl.search(data, storage=storage)
    done = completed(study)
    assert len(done) >= 2
    assert all(evaluated in t.user_attrs["result"]["scores"] for t in done)


def test_the_image_folder_example_runs_on_a_written_folder(storage, tmp_path):
    folder = examples.digits_png(tmp_path / "digits_png", per_class=12)
    study = automl.search(example("image_folder_digits", folder), storage=storage)
    assert len(completed(study)) == 3
    space = SearchSpace.from_dict(example("image_folder_digits", folder))
    assert space.task.input_shape == (1, 16, 16) and space.task.split_sizes() == {"train": 96, "val": 24}


def test_the_score_cache_follows_the_content_not_the_path(tmp_path):
    source = SPACES / "data" / "wine.csv"
    copy = tmp_path / "renamed.csv"
    shutil.copy(source, copy)

    def evaluate(path: Path) -> bool:
        space = SearchSpace.from_dict(example("csv_wine", path))
        runner = StudyRunner(space, storage=":memory:", cache=str(tmp_path / "cache.db"))
        return runner.evaluate(space.candidate_from_arch("8:relu"))[1]

    assert evaluate(source) is False
    assert evaluate(copy) is True  # same rows under another name: served from the cache
    lines = copy.read_text().splitlines()
    copy.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")  # two rows swap
    assert evaluate(copy) is False


def test_a_search_over_python_tensors(storage, nb201_space_dict):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:400], dtype=torch.float32).unsqueeze(1)
    task = from_data(images, digits.target[:400], test_fraction=0.1)
    space = with_task(SearchSpace.from_dict(nb201_space_dict), task)
    study = automl.search(space, storage=storage, n_trials=2)
    assert len(completed(study)) == 2
    assert study.user_attrs["automl.space"]["task"] == "tensors"
    # The same through automl.search(space, task=...): a pair of tensors, or a torch Dataset.
    pair = automl.search(
        nb201_space_dict, storage=storage, study_name="pair", n_trials=1, task=(images, digits.target[:400])
    )
    assert len(completed(pair)) == 1 and pair.user_attrs["automl.space"]["task"] == "tensors"
    dataset = torch.utils.data.TensorDataset(images, torch.tensor(digits.target[:400]))
    through = automl.search(nb201_space_dict, storage=storage, study_name="dataset", n_trials=1, task=dataset)
    assert len(completed(through)) == 1
