"""The trial record and the evaluation path: one writer, one reader, one cache path, old studies still open."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import automl
from automl.cache import ScoreCache
from automl.cli import main
from automl.evaluators import EvalResult
from automl.record import RECORD_VERSION, TrialRecord
from automl.records import pareto_front, study_records
from automl.strategies import SearchContext

FIXTURE = Path(__file__).parent / "data" / "study_record_v1.db"
CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"

# The space that wrote the fixture (before records carried a version).
V1_SPACE = {
    "study": {"name": "before-record-v2", "n_trials": 6, "seed": 0, "sampler": "random"},
    "task": {"name": "digits", "image_size": 8, "batch_size": 16},
    "dimensions": [
        {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        {"name": "quantization", "weight_bits": [4, 8], "activation_bits": [32]},
    ],
    "evaluator": {"name": "proxies", "proxies": ["synflow", "params"]},
    "objectives": [{"metric": "synflow", "direction": "maximize"}, {"metric": "size_bits", "direction": "minimize"}],
}


@pytest.fixture
def old_study(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    return f"sqlite:///{path}"


def test_a_study_written_before_versioned_records_opens_everywhere(old_study, capsys):
    study = optuna.load_study(study_name="before-record-v2", storage=old_study)
    records = [TrialRecord.read(t) for t in study.trials]
    assert len(records) == 4 and all(r.version == 1 for r in records)
    for trial, record in zip(study.trials, records):
        assert record.scores["synflow"] == trial.values[0]
        assert record.costs["size_bits"] == trial.values[1] and record.costs["params"] > 0
        assert record.candidate.id and record.candidate.arch.startswith("|")
    assert main(["show", "before-record-v2", "--storage", old_study]) == 0
    assert "Pareto front" in capsys.readouterr().out
    assert main(["export", "before-record-v2", "--storage", old_study, "--format", "jsonl"]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["cost.size_bits"] for row in exported] == [t.values[1] for t in study.trials]
    assert main(["studies", "--storage", old_study]) == 0
    assert "before-record-v2" in capsys.readouterr().out

    from automl_tui.data import StudyTrials

    trials = StudyTrials("before-record-v2", old_study)
    assert trials.refresh().added == [0, 1, 2, 3]

    # Resuming it with today's runner adds version-2 records beside the old ones.
    again = automl.search(V1_SPACE, storage=old_study, cache=False)
    versions = [TrialRecord.read(t).version for t in again.trials]
    assert versions == [1, 1, 1, 1, RECORD_VERSION, RECORD_VERSION]
    assert len(study_records(again)) == 6


def _score_space(objective):
    return {
        "study": {"name": f"cost-{objective}", "n_trials": 3, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "image_size": 8, "batch_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "proxies", "proxies": ["synflow", "params"]},
        "objectives": [{"metric": objective, "direction": "minimize"}],
    }


def test_entries_written_by_automl_score_serve_a_cost_objective(tmp_path):
    from automl_plugins.proxies import score_architectures

    cache = ScoreCache(tmp_path / "cache.db")
    space = automl.SearchSpace.from_dict(_score_space("size_bits"))
    rows = score_architectures([CELL], space, ["synflow", "params"], cache=cache)
    assert not math.isnan(rows[0]["synflow"])
    entry = cache.get(next(iter(cache.table.rows))["key"])
    assert entry.costs == {}  # automl score needs no cost figures

    runner = automl.StudyRunner(space, storage=":memory:", cache=cache)
    trial = runner.run_trial(space.arch_params(CELL))
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("failure")
    record = TrialRecord.read(trial)
    assert record.cached is True and trial.values == [record.costs["size_bits"]]
    # The costs were filled into the entry: the next reader finds them there.
    filled = cache.get(next(iter(cache.table.rows))["key"])
    assert filled.costs == record.costs and filled.scores["synflow"] == rows[0]["synflow"]


def test_eval_results_round_trip_and_read_cache_entries_from_before_costs_had_a_field():
    result = EvalResult(scores={"a": 1.0, "b": math.nan}, info={"x": [1]}, reasons={"b": "why"}, costs={"params": 3.0})
    back = EvalResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.scores["a"] == 1.0 and math.isnan(back.scores["b"])
    assert (back.info, back.reasons, back.costs) == (result.info, result.reasons, result.costs)
    legacy = EvalResult.from_json({"scores": {"a": 1.0}, "info": {"costs": {"params": 5.0}, "curve": [0.1]}})
    assert legacy.costs == {"params": 5.0} and legacy.info == {"curve": [0.1]}
    assert legacy.value("params") == 5.0 and legacy.value("a") == 1.0 and legacy.value("nope") is None


def test_the_study_runner_is_the_search_context_strategies_receive():
    space = automl.SearchSpace.from_dict(_score_space("params"))
    assert isinstance(automl.StudyRunner(space, storage=":memory:", cache=False), SearchContext)


def test_pareto_front_matches_optuna_on_ties_and_three_objectives():
    study = optuna.create_study(directions=["maximize", "minimize", "maximize"])
    rng = __import__("random").Random(0)
    for _ in range(300):
        values = [round(rng.random(), 1), round(rng.random(), 1), rng.random()]  # ties in the first two
        study.add_trial(optuna.trial.create_trial(values=values))
    ours = sorted(t.number for t in pareto_front(study.trials, study.directions))
    assert ours == sorted(t.number for t in study.best_trials)
    assert 1 < len(ours) < 300


@pytest.mark.slow
def test_importing_automl_and_reading_studies_does_not_load_torch(old_study):
    code = (
        "import sys, automl\n"
        "from automl.cli import main\n"
        f"assert main(['studies', '--storage', {old_study!r}]) == 0\n"
        f"assert main(['show', 'before-record-v2', '--storage', {old_study!r}]) == 0\n"
        "print('torch' in sys.modules, 'automl_plugins' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_objectives_are_named_and_scores_are_flat_sortable_attributes(storage):
    space = automl.SearchSpace.from_dict(V1_SPACE)
    study = automl.search(space, storage=storage, n_trials=2, cache=False)
    assert study.metric_names == ["synflow", "size_bits"]
    frame = study.trials_dataframe(multi_index=True)
    assert list(frame["values"].keys()) == ["synflow", "size_bits"]
    for trial in study.trials:
        record = TrialRecord.read(trial)
        assert trial.user_attrs["score.synflow"] == record.scores["synflow"] == trial.values[0]
        assert trial.user_attrs["cost.size_bits"] == record.costs["size_bits"] == trial.values[1]
        assert isinstance(trial.user_attrs["cost.params"], int)  # a count stays an integer
    # Reopening a study whose names are already set writes nothing new; a study without them gets them.
    assert automl.StudyRunner(space, storage=storage, cache=False).study.metric_names == ["synflow", "size_bits"]


def test_a_study_written_before_metric_names_gets_them_when_resumed(old_study):
    assert optuna.load_study(study_name="before-record-v2", storage=old_study).metric_names is None
    runner = automl.StudyRunner(automl.SearchSpace.from_dict(V1_SPACE), storage=old_study, cache=False)
    assert runner.study.metric_names == ["synflow", "size_bits"]
    old = runner.study.trials[0]
    assert not any(key.startswith(("score.", "cost.")) for key in old.user_attrs)  # old trials stay as written
    assert TrialRecord.read(old).scores["synflow"] == old.values[0]


def test_nan_scores_are_none_in_the_flat_attributes():
    from automl.record import flat_attrs

    flat = flat_attrs({"a": math.nan, "b": 0.5}, {"params": 12.0, "flops": 1.5})
    assert flat == {"score.a": None, "score.b": 0.5, "cost.params": 12, "cost.flops": 1.5}
    assert json.loads(json.dumps(flat)) == flat
