"""The local training evaluator: scores, curves, pruning of bad trials, and the plain training function."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

import automl
from automl_plugins.evaluators.training import train_candidate, training_settings


def _space(**evaluator):
    return {
        "study": {"name": "train", "n_trials": 6, "seed": 0, "sampler": "random", "pruner": "median",
                  "pruner_options": {"n_startup_trials": 2, "n_warmup_steps": 0}},
        "task": {"name": "digits", "batch_size": 32, "image_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "training", "epochs": 3, "max_train_samples": 240, **evaluator},
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    }


def test_train_candidate_reports_every_epoch_and_learns():
    space = automl.SearchSpace.from_dict(_space())
    candidate = space.candidate_from_arch("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+"
                                          "|skip_connect~0|skip_connect~1|nor_conv_3x3~2|")
    reported = []
    result = train_candidate(candidate, {"epochs": 3, "max_train_samples": 240, "lr": 0.05},
                             lambda value, step: reported.append((step, value)), "cpu")
    assert [step for step, _ in reported] == [1, 2, 3]
    assert result.info["curve"] == [value for _, value in reported]
    assert result.scores["val_accuracy"] == reported[-1][1]
    assert set(result.scores) == {"val_accuracy", "test_accuracy", "train_loss", "val_loss"}
    assert result.info["train_samples"] == 240
    assert result.scores["val_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert 0.0 <= result.scores["test_accuracy"] <= 1.0
    assert result.info["costs"]["params"] > 0


def test_report_can_stop_training():
    space = automl.SearchSpace.from_dict(_space())
    candidate = space.sample(optuna.trial.FixedTrial(
        {f"nb201.e{a}{b}": "skip_connect" for a, b in ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))}))

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
    candidate = space.candidate_from_arch("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                          "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    candidate.loss_fn = _NanLoss()
    with pytest.raises(automl.TrialFailed, match="diverged"):
        train_candidate(candidate, {"epochs": 1, "max_train_samples": 64}, None, "cpu")


class _NanLoss(torch.nn.Module):
    def forward(self, logits, targets):
        return logits.sum() * math.nan
