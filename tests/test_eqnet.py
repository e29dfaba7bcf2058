"""EQ-Net's WDR and progressive-guidance losses, pinned against direct re-computations."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
import torch

from automl.space import SearchSpace
from automl_plugins.evaluators.eqnet import kurtosis_loss, progressive_guidance_loss, skewness_loss
from automl_plugins.evaluators.supernet import SupernetSpec, supernet_key, train_supernet


def _moments(w: np.ndarray) -> tuple[float, float]:
    z = (w - w.mean()) / w.std(ddof=1)  # the authors' torch.std: unbiased
    return float((z**3).mean()), float((z**4).mean())


def test_wdr_is_the_mean_squared_gap_of_skewness_and_kurtosis_leaving_out_the_first_layer():
    torch.manual_seed(0)
    weights = [torch.randn(4, 3, 3, 3) * 5, torch.randn(8, 4, 1, 1) ** 3, torch.rand(10, 8)]
    moments = [_moments(w.double().numpy()) for w in weights[1:]]
    skew = np.mean([s**2 for s, _ in moments])
    kurt = np.mean([(k - 1.8) ** 2 for _, k in moments])
    assert float(skewness_loss(weights)) == pytest.approx(skew, rel=1e-5)
    assert float(kurtosis_loss(weights)) == pytest.approx(kurt, rel=1e-5)


def test_progressive_guidance_is_half_kl_to_the_previous_logits_and_half_cross_entropy():
    torch.manual_seed(1)
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    p = torch.softmax(teacher, 1)
    kl = (p * (p.log() - torch.log_softmax(student, 1))).sum(1).mean()
    ce = -torch.log_softmax(student, 1)[torch.arange(5), y].mean()
    assert torch.allclose(progressive_guidance_loss(student, teacher, y), 0.5 * kl + 0.5 * ce, atol=1e-6)


def test_training_with_both_losses_runs_and_is_another_supernet(tmp_path):
    data = {
        "study": {"name": "eqnet", "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "image_size": 8, "channels": 1, "batch_size": 16},
        "dimensions": [
            {"name": "nb201", "channels": 2, "cells_per_stage": 1},
            {"name": "quantization", "weight_bits": [2, 4, 32], "activation_bits": [32], "per_layer": True},
        ],
        "evaluator": {
            "name": "supernet",
            "epochs": 1,
            "max_train_samples": 32,
            "wdr_kurtosis": 0.015,
            "wdr_skewness": 1.0,
            "gpg_subnets": 3,
        },
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    }
    space = SearchSpace.from_dict(data)
    candidate = space.sample(optuna.create_study().ask())
    settings = space.evaluator.settings
    key = supernet_key(candidate, settings, 0)
    spec = SupernetSpec(candidate)
    out = train_supernet(spec, space.task, settings, seed=0, device=torch.device("cpu"), folder=tmp_path, key=key)
    assert all(torch.isfinite(t).all() for t in out["state"].values() if t.is_floating_point())
    plain = SearchSpace.from_dict({**data, "evaluator": {"name": "supernet", "epochs": 1, "max_train_samples": 32}})
    assert supernet_key(candidate, plain.evaluator.settings, 0) != key
    supernet = spec.build(space.task)
    chain = spec.guidance_chain(supernet, candidate.architecture.ops, random.Random(0), 3)
    assert chain[0] == {} and {q[0] for q in chain[-1].values()} == {2} and len(chain) == 3
