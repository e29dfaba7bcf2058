"""Several ``automl run`` processes sharing one study (a journal file, a SQLite file): no trial lost or repeated."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from automl.runner import StudyRunner
from automl.space import SearchSpace
from automl.storage import open_storage

SPACE = """
[study]
name = "shared"
n_trials = 8
seed = 0
sampler = "random"

[task]
name = "digits"
batch_size = 16
image_size = 8

[[dimensions]]
name = "nb201"
channels = 4
cells_per_stage = 1

[evaluator]
name = "proxies"
proxies = ["params"]

[[objectives]]
metric = "params"
direction = "minimize"
"""


WORKERS = 4


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["runs/shared.log", "sqlite:///shared.db"])
def test_four_processes_share_one_study(tmp_path, storage):
    (tmp_path / "space.toml").write_text(SPACE.replace("n_trials = 8", "n_trials = 12"))
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "automl.cli",
                "run",
                "space.toml",
                "--storage",
                storage,
                "--sampler-seed",
                str(worker),
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(WORKERS)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err

    study = optuna.load_study(study_name="shared", storage=open_storage(storage, read_only=True))
    trials = study.get_trials(deepcopy=False)
    # Every trial number exactly once, every trial finished; each process stops once the study holds
    # the budget, so at most one trial per other process was still in flight.
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("failure") for t in trials]
    assert 12 <= len(trials) <= 12 + WORKERS - 1
    # Different sampler seeds: the processes did not evaluate the same candidates in lockstep.
    ids = [t.user_attrs["candidate"]["id"] for t in trials]
    assert len(set(ids)) >= len(ids) - WORKERS + 1
    # Another run finds the budget spent.
    runner = StudyRunner(SearchSpace.from_file("space.toml"), storage=storage, cache=False)
    assert runner.remaining() == 0


def test_sampler_seed_changes_the_candidates_but_not_the_evaluation_seed(nb201_space_dict):
    space = SearchSpace.from_dict(nb201_space_dict)
    first = StudyRunner(space, storage=":memory:", cache=False)
    other = StudyRunner(space, storage=":memory:", cache=False, sampler_seed=1)
    first.run(2)
    other.run(2)
    assert other.seed == first.seed == 0
    assert [t.params for t in first.study.trials] != [t.params for t in other.study.trials]
