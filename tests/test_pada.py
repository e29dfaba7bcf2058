"""PA&DA's importance sampling, pinned against direct re-computations of its definitions."""

from __future__ import annotations

import optuna
import torch
import torch.nn.functional as F

from automl.space import SearchSpace
from automl_plugins.evaluators.pada import (
    example_gradient_norms,
    example_probabilities,
    fold_operation_importance,
    operation_probabilities,
)
from automl_plugins.evaluators.supernet import SupernetSpec, supernet_key, train_supernet


def test_example_importance_is_the_norm_of_the_loss_gradient_at_the_logits():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, targets, reduction="sum"), logits)
    assert torch.allclose(example_gradient_norms(logits, targets), grad.norm(dim=1), atol=1e-6)


def test_probabilities_mix_importance_with_uniform_by_tau():
    assert operation_probabilities([0.0, 0.0, 1.0, 3.0], 0.5) == [0.125, 0.125, 0.5 * 0.25 + 0.125, 0.5 * 0.75 + 0.125]
    assert operation_probabilities([0.0, 0.0], 0.7) == [0.5, 0.5]
    scores = torch.tensor([1.0, 0.0, 3.0])
    expected = torch.tensor([0.25 * 0.2 + 0.8 / 3, 0.8 / 3, 0.75 * 0.2 + 0.8 / 3], dtype=torch.float64)
    assert torch.allclose(example_probabilities(scores, 0.2), expected)
    assert abs(float(example_probabilities(scores, 0.9).sum()) - 1.0) < 1e-12


def test_operation_importance_is_a_running_pairwise_mean_per_use():
    ops = ["none", "nor_conv_1x1", "nor_conv_3x3"]
    after = fold_operation_importance([0.0, 2.0, 4.0], {"nor_conv_1x1": 6.0}, {"nor_conv_1x1": 3, "none": 3}, ops)
    assert after == [0.0, (2.0 + 6.0 / 3) / 2, 4.0]


def test_pada_training_favours_operations_with_gradients(tmp_path):
    space = SearchSpace.from_dict(
        {
            "study": {"name": "pada", "seed": 0, "sampler": "random"},
            "task": {"name": "digits", "image_size": 8, "channels": 1, "batch_size": 16},
            "dimensions": [{"name": "nb201", "channels": 2, "cells_per_stage": 1}],
            "evaluator": {"name": "supernet", "epochs": 2, "max_train_samples": 32, "sampling": "pada"},
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
        }
    )
    candidate = space.sample(optuna.create_study().ask())
    settings = space.evaluator.settings
    out = train_supernet(
        SupernetSpec(candidate),
        space.task,
        settings,
        seed=0,
        device=torch.device("cpu"),
        folder=tmp_path,
        key=supernet_key(candidate, settings, 0),
    )
    prob = out["info"]["operation_probabilities"]
    assert abs(sum(prob.values()) - 1.0) < 1e-3
    # tau = 1/2 after the second epoch: weight-free operations keep only the uniform half.
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert abs(prob[op] - 0.1) < 1e-3
    assert prob["nor_conv_1x1"] + prob["nor_conv_3x3"] > 0.69
