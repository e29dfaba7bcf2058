"""The study runner: recording, resuming, the score cache, failures, objectives, define-by-run."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

import automl
from automl import Option, SearchSpace, StudyRunner
from automl.cli import main
from automl.registry import get_registry

CALLS: list[str] = []


class CountingEvaluator(automl.Evaluator):
    """Scores the number of conv operations in the cell; fails on cells with avg_pool on edge 0→1."""

    name = "counting"
    options = {"fail_on": Option(str, default="avg_pool_3x3"), "nan_on": Option(str, default="")}

    def metrics(self):
        return ["convs"]

    def evaluate(self, candidate, context):
        CALLS.append(candidate.id)
        ops = candidate.architecture.ops
        if ops[0] == self.settings["fail_on"]:
            raise RuntimeError(f"cannot score a cell starting with {ops[0]}")
        if self.settings["nan_on"] and ops[0] == self.settings["nan_on"]:
            return automl.EvalResult({"convs": math.nan}, reasons={"convs": "degenerate cell"})
        return {"convs": float(sum(op.startswith("nor_conv") for op in ops))}


class DepthDimension(automl.Dimension):
    """A conditional dimension: a depth is only sampled when the optimizer is 'sgd'."""

    name = "optimizer"
    kind = "recipe"
    stage = automl.RECIPE

    def suggest(self, trial, candidate):
        optimizer = trial.suggest_categorical("name", ["sgd", "adam"])
        candidate.recipe["optimizer"] = optimizer
        if optimizer == "sgd":
            candidate.recipe["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)


class TestPlugin:
    finished: list[tuple[int, str]] = []

    @staticmethod
    @automl.hookimpl
    def register_evaluators(register):
        register(CountingEvaluator)

    @staticmethod
    @automl.hookimpl
    def register_dimensions(register):
        register(DepthDimension)

    @staticmethod
    @automl.hookimpl
    def trial_finished(study, trial, candidate):
        TestPlugin.finished.append((trial.number, trial.state.name))
        TestPlugin.candidates.append(None if candidate is None else candidate.id)


@pytest.fixture
def plugin():
    CALLS.clear()
    TestPlugin.finished = []
    TestPlugin.candidates = []
    assert get_registry().add_plugin(TestPlugin(), "test-plugin", "test", "0")
    return TestPlugin


def space_dict(**evaluator):
    return {
        "study": {"name": "runner", "n_trials": 12, "seed": 3, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 8, "image_size": 16},
        "dimensions": [
            {
                "name": "nb201",
                "channels": 4,
                "cells_per_stage": 1,
                "operations": ["nor_conv_3x3", "skip_connect", "avg_pool_3x3"],
            }
        ],
        "evaluator": {"name": "counting", **evaluator},
        "objectives": [{"metric": "convs", "direction": "maximize"}],
    }


def test_records_every_trial_and_continues_after_failures(plugin, storage):
    study = automl.search(space_dict(), storage=storage)
    trials = study.get_trials()
    assert len(trials) == 12
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and complete, "random sampling over 3 ops hits both cases in 12 trials"
    for trial in failed:
        assert trial.params["nb201.e01"] == "avg_pool_3x3"
        assert trial.user_attrs["failure"] == "RuntimeError: cannot score a cell starting with avg_pool_3x3"
    for trial in complete:
        result = trial.user_attrs["result"]
        assert trial.values == [result["scores"]["convs"]]
        arch = trial.user_attrs["candidate"]["arch"]
        assert trial.values[0] == arch.count("nor_conv_3x3")
        assert set(result["costs"]) == {"params", "flops", "size_bits"}
        assert result["costs"]["size_bits"] == 32 * result["costs"]["params"]
        assert result["duration_s"] > 0
    assert [n for n, _ in plugin.finished] == list(range(12))
    # Observers receive the very candidate each trial evaluated.
    assert plugin.candidates == [t.user_attrs["candidate"]["id"] for t in trials]
    assert study.user_attrs["automl.space"]["evaluator"] == "counting"


def test_repeated_candidates_come_from_the_cache(plugin, storage):
    data = space_dict(fail_on="none")
    data["dimensions"][0]["operations"] = ["nor_conv_3x3", "skip_connect"]  # 64 cells: repeats are certain
    data["study"]["n_trials"] = 20
    study = automl.search(data, storage=storage)
    ids = [t.user_attrs["candidate"]["id"] for t in study.trials]
    cached = [t.user_attrs["result"]["cached"] for t in study.trials]
    assert len(set(ids)) < len(ids)
    assert sorted(CALLS) == sorted(set(ids)), "each distinct candidate evaluated exactly once"
    assert sum(cached) == len(ids) - len(set(ids))
    # A second study on the same cache evaluates nothing new.
    CALLS.clear()
    automl.search(data, storage=storage, study_name="again")
    assert set(CALLS) <= set(ids) and not CALLS


def test_no_cache_evaluates_every_trial(plugin, storage):
    data = space_dict(fail_on="none")
    data["dimensions"][0]["operations"] = ["skip_connect"]
    data["study"]["n_trials"] = 3
    automl.search(data, storage=storage, cache=False)
    assert len(CALLS) == 3


def test_budget_is_the_total_and_trials_adds_more(plugin, storage, capsys):
    space = SearchSpace.from_dict(space_dict())
    first = StudyRunner(space, storage=storage)
    first.run(5)
    assert first.finished_trials() == 5
    resumed = StudyRunner(space, storage=storage)
    resumed.run()  # finishes the file's budget of 12
    assert len(resumed.study.trials) == 12
    StudyRunner(space, storage=storage).run()
    assert len(resumed.study.get_trials()) == 12, "nothing left to do"
    StudyRunner(space, storage=storage).run(2)
    assert len(resumed.study.get_trials()) == 14


def test_nan_objective_fails_the_trial_with_the_reason(plugin, storage):
    data = space_dict(fail_on="none", nan_on="skip_connect")
    study = automl.search(data, storage=storage)
    nan_trials = [t for t in study.trials if t.params["nb201.e01"] == "skip_connect"]
    assert nan_trials
    for trial in nan_trials:
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["failure"] == "convs is NaN: degenerate cell"


def test_define_by_run_conditional_dimension(plugin, storage):
    data = space_dict(fail_on="none")
    data["dimensions"].append({"name": "optimizer"})
    data["study"]["n_trials"] = 16
    study = automl.search(data, storage=storage)
    sgd = [t for t in study.trials if t.params["optimizer.name"] == "sgd"]
    adam = [t for t in study.trials if t.params["optimizer.name"] == "adam"]
    assert sgd and adam
    assert all("optimizer.momentum" in t.params for t in sgd)
    assert all("optimizer.momentum" not in t.params for t in adam)
    # The same parameters rebuild the same candidate.
    space = SearchSpace.from_dict(data)
    trial = sgd[0]
    candidate = space.candidate(trial.params)
    assert candidate.id == trial.user_attrs["candidate"]["id"]
    assert candidate.recipe == {"optimizer": "sgd", "momentum": trial.params["optimizer.momentum"]}


def test_single_objective_proxy_search_and_show(nb201_space_dict, storage, capsys):
    study = automl.search(nb201_space_dict, storage=storage)
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)
    best = study.best_trial
    assert best.value == max(t.value for t in study.trials)
    assert main(["show", "t", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "best 4 distinct candidates by synflow (maximize)" in out
    assert best.user_attrs["candidate"]["arch"] in out


def test_multi_objective_gives_a_pareto_front(nb201_space_dict, storage, capsys):
    nb201_space_dict["study"].update(n_trials=10, sampler="nsga2")
    nb201_space_dict["objectives"].append({"metric": "size_bits", "direction": "minimize"})
    study = automl.search(nb201_space_dict, storage=storage)
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]

    def dominated(trial):
        return any(
            o.values[0] >= trial.values[0] and o.values[1] <= trial.values[1] and o.values != trial.values
            for o in completed
        )

    # The front, computed here from the definition: exactly the completed trials nothing dominates.
    expected = sorted(t.number for t in completed if not dominated(t))
    assert expected and sorted(t.number for t in study.best_trials) == expected
    main(["show", "t", "--storage", storage])
    out = capsys.readouterr().out
    assert f"Pareto front ({len(expected)} trials) over synflow, size_bits" in out
    table = out.split("Pareto front", 1)[1].splitlines()[3:]
    assert sorted(int(line.split()[0]) for line in table if line.strip()) == expected


def test_export_and_studies(nb201_space_dict, storage, tmp_path, capsys):
    automl.search(nb201_space_dict, storage=storage)
    assert main(["export", "t", "--storage", storage, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4
    assert {
        "number",
        "state",
        "value.synflow",
        "param.nb201.e01",
        "score.synflow",
        "score.params",
        "cost.size_bits",
        "candidate_id",
        "arch",
    } <= set(rows[0])
    out = tmp_path / "t.csv"
    assert main(["export", "t", "--storage", storage, "--out", str(out)]) == 0
    assert out.read_text().count("\n") == 5
    assert main(["studies", "--storage", storage]) == 0
    listing = capsys.readouterr().out
    assert "t " in listing and "proxies" in listing


def test_unknown_study_and_corrupt_storage(tmp_path, capsys, nb201_space_dict, storage):
    automl.search(nb201_space_dict, storage=storage)
    assert main(["show", "nope", "--storage", storage]) == 1
    assert "no study named 'nope'" in capsys.readouterr().err and "(studies: t)"
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    assert main(["studies", "--storage", f"sqlite:///{garbage}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"automl: error: sqlite:///{garbage}: cannot open the study storage")
    assert garbage.read_bytes() == b"this is not a database" * 100, "the file is left as it was"
    # The real study is untouched by the failed attempts.
    assert len(optuna.load_study(study_name="t", storage=storage).trials) == 4


def test_the_space_can_be_sampled_inside_a_users_own_objective(nb201_space_dict):
    space = SearchSpace.from_dict(nb201_space_dict)

    def objective(trial):
        candidate = space.sample(trial)
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)  # the user's own parameter beside ours
        result = automl.evaluate(candidate, {"name": "proxies", "proxies": ["params"]})
        return result.scores["params"] * lr

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    assert {"nb201.e01", "lr"} <= set(study.trials[0].params)


def test_journal_storage_path(nb201_space_dict, tmp_path):
    path = tmp_path / "runs" / "study.log"
    automl.search(nb201_space_dict, storage=str(path))
    assert path.exists()
    assert len(optuna.load_study(study_name="t", storage=automl.storage.open_storage(str(path))).trials) == 4


def test_dimension_settings_are_part_of_the_candidate_id(nb201_space_dict, storage):
    small = SearchSpace.from_dict(nb201_space_dict)
    nb201_space_dict["dimensions"][0]["channels"] = 8
    wider = SearchSpace.from_dict(nb201_space_dict)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert small.candidate_from_arch(arch).id == small.candidate_from_arch(arch).id
    assert small.candidate_from_arch(arch).id != wider.candidate_from_arch(arch).id
    # so the score cache never hands the narrow network's scores to the wide one
    first = StudyRunner(small, storage=storage, study_name="a").evaluate(small.candidate_from_arch(arch))
    second = StudyRunner(wider, storage=storage, study_name="b").evaluate(wider.candidate_from_arch(arch))
    assert not first[1] and not second[1]
    assert first[0].scores["params"] < second[0].scores["params"]
