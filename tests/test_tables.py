"""The benchmark-table evaluator: bundled tables, user files, clear errors, exact reproduction in a search."""

from __future__ import annotations

import csv
import json
from importlib import resources

import optuna
import pytest

from automl import SearchSpace, SpaceError, StudyRunner, TrialFailed, evaluate
from automl_plugins.evaluators.tables import load_benchmark


def _nb201_rows() -> dict[str, tuple[float, float]]:
    with resources.files("automl_plugins.data").joinpath("nb201_accuracy.csv").open() as handle:
        return {
            r["arch"]: (float(r["cifar10_test_acc"]), float(r["cifar100_test_acc"])) for r in csv.DictReader(handle)
        }


def _space(evaluator, objective="cifar10", sampler="random", seed=0, n_trials=10, dimension=None):
    return SearchSpace.from_dict(
        {
            "study": {"name": "tables", "n_trials": n_trials, "seed": seed, "sampler": sampler},
            "task": {"name": "digits", "batch_size": 8, "image_size": 8},
            "dimensions": [dimension or {"name": "nb201", "channels": 2, "cells_per_stage": 1}],
            "evaluator": evaluator,
            "objectives": [{"metric": objective, "direction": "maximize"}],
        }
    )


def test_random_search_reproduces_the_table_exactly():
    rows = _nb201_rows()
    space = _space({"name": "table", "benchmark": "nb201", "metrics": ["cifar10", "cifar100"]})
    study = StudyRunner(space, storage=":memory:", cache=False).run(12)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 12
    for trial in trials:
        arch = trial.user_attrs["candidate"]["arch"]
        assert trial.value == rows[arch][0]
        assert trial.user_attrs["result"]["scores"] == {"cifar10": rows[arch][0], "cifar100": rows[arch][1]}


def test_tpe_finds_a_top_one_percent_cell_within_fifty_trials():
    # Budget: 50 trials with seed 0 (default TPE, 10 random start-up trials). Random sampling would reach the
    # top 1% (157 of 15,625 cells, CIFAR-10 accuracy >= 93.775) within 50 trials with probability 1 - 0.99^50 ≈ 39%.
    values = sorted((v[0] for v in _nb201_rows().values()), reverse=True)
    threshold = values[len(values) // 100 - 1]
    space = _space({"name": "table", "benchmark": "nb201", "metrics": ["cifar10"]}, sampler="tpe", n_trials=50)
    study = StudyRunner(space, storage=":memory:", cache=False).run()
    assert len(study.trials) == 50
    assert study.best_value >= threshold


def test_default_metrics_are_every_column():
    space = _space({"name": "table", "benchmark": "nb201"})
    assert space.evaluator.metrics() == ["cifar10", "cifar100"]
    flexibert = load_benchmark("flexibert")
    assert flexibert.columns[0] == "glue" and "cola" in flexibert.columns
    # 250 records, one encoder measured twice (ids 174 and 405): 249 strings, their scores averaged.
    assert len(flexibert) == 249 and flexibert.duplicates == 1


def test_user_tables_in_csv_jsonl_and_json(tmp_path):
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    b = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    (tmp_path / "t.csv").write_text(f"cell,acc,latency\n{a},91.5,3\n{b},10,1\n")
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"cell": a, "acc": 91.5}) + "\n" + json.dumps({"cell": b, "acc": 10}) + "\n"
    )
    (tmp_path / "t.json").write_text(json.dumps([{"cell": a, "acc": 91.5}, {"cell": b, "acc": 10}]))
    for name in ("t.csv", "t.jsonl", "t.json"):
        space = _space(
            {"name": "table", "path": str(tmp_path / name), "key_column": "cell", "metrics": ["acc"]}, objective="acc"
        )
        assert evaluate(space.candidate_from_arch(a), space.evaluator).scores == {"acc": 91.5}
        with pytest.raises(TrialFailed, match="is not in the table"):
            evaluate(space.candidate_from_arch(a.replace("avg_pool_3x3", "nor_conv_1x1")), space.evaluator)
    space = _space({"name": "table", "path": "t.csv", "key_column": "cell"}, objective="latency")
    assert space.evaluator.metrics() == ["acc", "latency"]


def test_a_missing_candidate_fails_its_trial_and_the_search_goes_on(tmp_path):
    a = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    (tmp_path / "one.csv").write_text(f"arch,acc\n{a},91.5\n")
    space = _space({"name": "table", "path": "one.csv"}, objective="acc")
    study = StudyRunner(space, storage=":memory:", cache=False).run(3)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 3
    assert "is not in the table" in failed[0].user_attrs["failure"]
    assert failed[0].user_attrs["candidate"]["arch"] in failed[0].user_attrs["failure"]


@pytest.mark.parametrize(
    "evaluator, key, message",
    [
        ({"name": "table", "path": "nowhere.csv"}, "evaluator.path", "no such file"),
        (
            {"name": "table", "benchmark": "nb201", "metrics": ["imagenet"]},
            "evaluator.metrics[0]",
            "no column 'imagenet'",
        ),
        ({"name": "table", "path": "t.csv", "key_column": "architecture"}, "evaluator.key_column", "no column"),
        ({"name": "table"}, "evaluator.path", "exactly one of"),
        ({"name": "table", "benchmark": "nb201", "path": "t.csv"}, "evaluator.benchmark", "exactly one of"),
        ({"name": "table", "benchmark": "flexibert"}, "evaluator.benchmark", "holds flexibert architectures"),
        ({"name": "table", "path": "bad.csv"}, "evaluator.key_column", "is a nb201 architecture"),
        ({"name": "table", "path": "t.txt"}, "evaluator.path", "unknown table format"),
    ],
)
def test_clear_errors_for_files_columns_and_spaces(tmp_path, evaluator, key, message):
    (tmp_path / "t.csv").write_text("arch,acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n")
    (tmp_path / "bad.csv").write_text("arch,acc\nresnet18,70\n")
    (tmp_path / "t.txt").write_text("x")
    objective = "glue" if evaluator.get("benchmark") == "flexibert" else "acc"
    with pytest.raises(SpaceError, match=message) as info:
        _space(evaluator, objective=objective)
    assert info.value.key == key
