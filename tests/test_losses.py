"""Losses: each against a direct computation on a fixed batch, and the dimension's choices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import automl
from automl_plugins.recipe.losses import (
    LOSSES,
    AnyLoss,
    DiceLoss,
    EnsLoss,
    FocalLoss,
    GeneralizedCrossEntropy,
    MAELoss,
    make_loss,
    soft_confusion,
)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=gen) * 2
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0])
    return logits, targets


def test_label_smoothing_matches_torch(batch):
    logits, targets = batch
    eps, k = 0.2, logits.shape[1]
    soft = F.one_hot(targets, k).float() * (1 - eps) + eps / k
    direct = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert torch.allclose(make_loss("label_smoothing", smoothing=eps)(logits, targets), direct)
    assert torch.allclose(direct, F.cross_entropy(logits, targets, label_smoothing=eps))


def test_focal_with_gamma_zero_is_cross_entropy(batch):
    logits, targets = batch
    assert torch.allclose(FocalLoss(0.0)(logits, targets), F.cross_entropy(logits, targets))
    p = F.softmax(logits, 1)[torch.arange(12), targets]
    assert torch.allclose(FocalLoss(2.0)(logits, targets), (-((1 - p) ** 2) * p.log()).mean())


def test_generalized_cross_entropy_and_mae(batch):
    logits, targets = batch
    p = F.softmax(logits, 1)[torch.arange(12), targets]
    assert torch.allclose(GeneralizedCrossEntropy(0.5)(logits, targets), ((1 - p.sqrt()) / 0.5).mean())
    assert torch.allclose(MAELoss()(logits, targets), (2 * (1 - p)).mean(), atol=1e-6)
    # q = 1 is MAE up to a factor of two; small q approaches cross-entropy.
    assert torch.allclose(GeneralizedCrossEntropy(1.0)(logits, targets) * 2, MAELoss()(logits, targets), atol=1e-6)
    assert torch.allclose(GeneralizedCrossEntropy(1e-4)(logits, targets), F.cross_entropy(logits, targets), atol=1e-3)


def test_dice(batch):
    logits, targets = batch
    p = F.softmax(logits, 1)
    y = F.one_hot(targets, 4).float()
    dice = [(2 * (p[:, k] * y[:, k]).sum() + 1) / (p[:, k].sum() + y[:, k].sum() + 1) for k in range(4)]
    assert torch.allclose(DiceLoss()(logits, targets), 1 - torch.stack(dice).mean())


def test_anyloss_matches_the_metric_on_confident_predictions():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 0])
    logits = F.one_hot(predicted, 3).float() * 30  # confident: the soft confusion matrix is the true one
    confusion = soft_confusion(logits, targets)
    exact = torch.zeros(3, 3)
    for t, p in zip(targets, predicted):
        exact[t, p] += 1
    assert torch.allclose(confusion, exact, atol=1e-3)
    recall = torch.tensor([0.5, 1.0, 0.5])
    assert torch.allclose(AnyLoss("balanced_accuracy")(logits, targets), 1 - recall.mean(), atol=1e-3)
    precision = torch.tensor([0.5, 2 / 3, 1.0])
    f1 = 2 * precision * recall / (precision + recall)
    assert torch.allclose(AnyLoss("f1")(logits, targets), 1 - f1.mean(), atol=1e-3)


def test_ensloss_draws_members_in_training_and_uses_cross_entropy_in_eval(batch):
    logits, targets = batch
    loss = EnsLoss(seed=0)
    drawn = set()
    for _ in range(30):
        value = loss(logits, targets)
        assert torch.allclose(value, loss.members[loss.last](logits, targets))
        drawn.add(loss.last)
    assert len(drawn) > 1
    loss.eval()
    assert torch.allclose(loss(logits, targets), F.cross_entropy(logits, targets))


@pytest.mark.parametrize("kind", LOSSES)
def test_every_loss_trains_a_step(kind, batch):
    logits, targets = batch
    logits = logits.clone().requires_grad_()
    value = make_loss(kind)(logits, targets)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_dimension_sets_the_candidate_loss():
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "l", "n_trials": 2, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [
                {"name": "nb201", "channels": 4, "cells_per_stage": 1},
                {"name": "loss", "losses": ["focal", "cross_entropy"], "gamma": [1.0, 3.0]},
            ],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    candidate = space.candidate_from_arch(arch, {"loss.loss": "focal", "loss.gamma": 2.5})
    assert isinstance(candidate.loss, FocalLoss) and candidate.loss.gamma == 2.5
    plain = space.candidate_from_arch(arch, {"loss.loss": "cross_entropy"})
    assert "loss.gamma" not in plain.params and plain.id != candidate.id


def test_bad_range_is_a_space_error():
    with pytest.raises(automl.SpaceError, match="gamma"):
        automl.SearchSpace.from_dict(
            {
                "task": {"name": "digits"},
                "dimensions": [{"name": "nb201"}, {"name": "loss", "gamma": [3.0, 1.0]}],
                "evaluator": {"name": "proxies", "proxies": ["params"]},
                "objectives": [{"metric": "params"}],
            }
        )
