"""Evaluations run with a fixed thread count: the same candidate and seed give the same numbers whatever
the process's torch threads, and the thread count is part of the score-cache key."""

from __future__ import annotations

import pytest
import torch

from automl.cache import ScoreCache, cache_key
from automl.errors import UsageError
from automl.evaluation import Evaluations, default_threads, fixed_threads
from automl.runner import StudyRunner
from automl.space import SearchSpace

CONV_CELL = {
    "nb201.e01": "nor_conv_3x3",
    "nb201.e02": "nor_conv_3x3",
    "nb201.e12": "nor_conv_3x3",
    "nb201.e03": "nor_conv_3x3",
    "nb201.e13": "nor_conv_1x1",
    "nb201.e23": "nor_conv_3x3",
}


def training_space(name: str) -> SearchSpace:
    return SearchSpace.from_dict(
        {
            "study": {"name": name, "n_trials": 1, "seed": 0, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 8, "cells_per_stage": 1}],
            "evaluator": {"name": "training", "epochs": 2, "max_train_samples": 128, "batch_size": 32},
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
        }
    )


def test_the_thread_count_is_part_of_the_cache_key(nb201_space_dict, tmp_path):
    assert cache_key("c", {"e": 1}, "data", 0, 1) != cache_key("c", {"e": 1}, "data", 0, 2)
    space = SearchSpace.from_dict(nb201_space_dict)
    cache = ScoreCache(tmp_path / "cache.db")
    one, two = (Evaluations(space.task, seed=0, cache=cache, threads=n) for n in (1, 2))
    candidate = space.candidate(CONV_CELL)
    assert one.threads == 1 and two.threads == 2
    assert one.key(candidate, space.evaluator) != two.key(candidate, space.evaluator)


def test_the_default_thread_count_is_one_unless_set(monkeypatch):
    monkeypatch.delenv("AUTOML_THREADS", raising=False)
    assert default_threads() == 1
    monkeypatch.setenv("AUTOML_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("AUTOML_THREADS", "zero")
    with pytest.raises(UsageError, match=r"\$AUTOML_THREADS: must be a positive integer, got 'zero'"):
        default_threads()


def test_fixed_threads_holds_inside_the_block_and_restores_after():
    torch.set_num_threads(2)
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


@pytest.mark.slow
def test_the_process_thread_count_does_not_change_the_scores(storage):
    # With the process's own thread count, training losses differ in their last digits between 1 and 2
    # threads; evaluations run with one thread either way, so every number is the same.
    results = []
    for process_threads in (1, 2):
        torch.set_num_threads(process_threads)
        runner = StudyRunner(training_space(f"threads{process_threads}"), storage=storage, cache=False)
        trial = runner.run_trial(CONV_CELL)
        results.append((trial.user_attrs["result"]["scores"], trial.intermediate_values))
    assert results[0] == results[1]
