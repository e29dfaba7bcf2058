"""The local training evaluator: scores, curves, pruning of bad trials, and the plain training function."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch

import automl
from automl_plugins.evaluators.training import train_candidate, training_settings


def _space(**evaluator):
    return {
        "study": {
            "name": "train",
            "n_trials": 6,
            "seed": 0,
            "sampler": "random",
            "pruner": "median",
            "pruner_options": {"n_startup_trials": 2, "n_warmup_steps": 0},
        },
        "task": {"name": "digits", "batch_size": 32, "image_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "training", "epochs": 3, "max_train_samples": 240, **evaluator},
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    }


def test_train_candidate_reports_every_epoch_and_learns():
    space = automl.SearchSpace.from_dict(_space())
    candidate = space.candidate_from_arch(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|"
    )
    reported = []
    result = train_candidate(
        candidate,
        {"epochs": 3, "max_train_samples": 240, "lr": 0.05},
        lambda value, step: reported.append((step, value)),
        "cpu",
    )
    assert [step for step, _ in reported] == [1, 2, 3]
    assert result.info["curve"] == [value for _, value in reported]
    assert result.scores["val_accuracy"] == reported[-1][1]
    assert set(result.scores) == {"val_accuracy", "test_accuracy", "train_loss", "val_loss"}
    assert result.info["train_samples"] == 240
    assert result.scores["val_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert 0.0 <= result.scores["test_accuracy"] <= 1.0
    assert result.costs["params"] > 0 and "costs" not in result.info


def test_report_can_stop_training():
    space = automl.SearchSpace.from_dict(_space())
    candidate = space.sample(
        optuna.trial.FixedTrial(
            {f"nb201.e{a}{b}": "skip_connect" for a, b in ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))}
        )
    )

    def stop(value, step):
        raise optuna.TrialPruned(f"stop at {step}")

    with pytest.raises(optuna.TrialPruned, match="stop at 1"):
        train_candidate(candidate, {"epochs": 3, "max_train_samples": 64}, stop, "cpu")


def test_search_with_median_pruner_prunes_some_trials(storage):
    study = automl.search(_space(), storage=storage)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.PRUNED in states
    assert optuna.trial.TrialState.COMPLETE in states
    for trial in study.trials:
        curve = trial.user_attrs["result"]["info"]["curve"]
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert len(curve) < 3
        else:
            assert len(curve) == 3 and trial.value == curve[-1]
            assert trial.user_attrs["result"]["costs"]["size_bits"] > 0


def test_settings_are_validated():
    assert training_settings({})["epochs"] == 2
    with pytest.raises(automl.SpaceError, match="optimizer"):
        automl.SearchSpace.from_dict(_space(optimizer="rmsprop"))


def test_divergence_fails_the_trial():
    space = automl.SearchSpace.from_dict(_space())
    candidate = space.candidate_from_arch(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    candidate.loss_fn = _NanLoss()
    with pytest.raises(automl.TrialFailed, match="diverged"):
        train_candidate(candidate, {"epochs": 1, "max_train_samples": 64}, None, "cpu")


class _NanLoss(torch.nn.Module):
    def forward(self, logits, targets):
        return logits.sum() * math.nan


# -- the joint compression search from search_spaces/compress_digits.toml ------------------------------
SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "compress_digits.toml"


def _compress_file(tmp_path, evaluator: str, objectives: str, n_trials: int, study: str = "") -> Path:
    """The bundled file made tiny (4 channels, few trials), with its evaluator and objectives replaced."""
    text = SPACE_FILE.read_text()
    head = text[: text.index("[evaluator]")]
    head = head.replace("channels = 8", "channels = 4").replace("n_trials = 40", f"n_trials = {n_trials}")
    head = head.replace("population_size = 10", "population_size = 4") + study
    path = tmp_path / "compress.toml"
    path.write_text(head + evaluator + "\n" + objectives)
    return path


def test_bundled_compression_space_validates():
    space = automl.SearchSpace.from_file(SPACE_FILE)
    kinds = [dim.kind for _, dim in space.dimensions]
    assert kinds == ["architecture", "normalization", "loss", "pruning", "quantization"]
    assert space.metrics == ["val_accuracy", "size_bits"] and space.evaluator.name == "training"


def test_joint_search_with_proxies_prints_pareto_front(tmp_path, storage, capsys):
    from automl.cli import main

    path = _compress_file(
        tmp_path,
        '[evaluator]\nname = "proxies"\nproxies = ["synflow"]\n',
        '[[objectives]]\nmetric = "synflow"\ndirection = "maximize"\n\n'
        '[[objectives]]\nmetric = "size_bits"\ndirection = "minimize"\n',
        8,
    )
    assert main(["run", str(path), "--storage", storage, "--quiet"]) == 0
    study = optuna.load_study(study_name="compress-digits", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 6
    assert len({t.values[1] for t in complete}) > 1  # compression changes the size
    capsys.readouterr()
    assert main(["show", "compress-digits", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "synflow, size_bits" in out and "quantization.weight_bits" in out


def test_joint_search_with_training_prints_pareto_front(tmp_path, storage, capsys):
    from automl.cli import main

    path = _compress_file(
        tmp_path,
        '[evaluator]\nname = "training"\nepochs = 2\nmax_train_samples = 160\n',
        '[[objectives]]\nmetric = "val_accuracy"\ndirection = "maximize"\n\n'
        '[[objectives]]\nmetric = "size_bits"\ndirection = "minimize"\n',
        4,
    )
    assert main(["run", str(path), "--storage", storage, "--quiet"]) == 0
    study = optuna.load_study(study_name="compress-digits", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 3
    for trial in complete:
        assert len(trial.user_attrs["result"]["info"]["curve"]) == 2  # recorded, though not pruned
    capsys.readouterr()
    assert main(["show", "compress-digits", "--storage", storage]) == 0
    assert "Pareto front" in capsys.readouterr().out


def test_joint_search_with_training_and_a_pruner(tmp_path, storage):
    path = _compress_file(
        tmp_path,
        '[evaluator]\nname = "training"\nepochs = 3\nmax_train_samples = 160\n',
        '[[objectives]]\nmetric = "val_accuracy"\ndirection = "maximize"\n',
        7,
        study="\n",
    )
    text = path.read_text().replace('sampler = "nsga2"', 'sampler = "random"')
    text = text.replace("sampler_options = { population_size = 4 }", "")
    text = text.replace('pruner = "none"', 'pruner = "median"\npruner_options = { n_startup_trials = 2 }')
    path.write_text(text)
    study = automl.search(str(path), storage=storage)
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.PRUNED in states and optuna.trial.TrialState.COMPLETE in states
