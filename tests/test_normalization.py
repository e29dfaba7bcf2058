"""Normalization layers: each kind in both layouts, PowerNorm and batch-channel norm in train and eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import automl
from automl_plugins.recipe.normalization import NORMS, BatchChannelNorm, PowerNorm, RMSNorm, make_norm

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"


def _space(**norm):
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "n", "n_trials": 2, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}, {"name": "normalization", **norm}],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("layout", ["nchw", "nlc"])
def test_every_norm_keeps_shape_and_backpropagates(kind, layout):
    layer = make_norm(kind, 8, layout, groups=4)
    x = (torch.randn(4, 8, 5, 5) if layout == "nchw" else torch.randn(4, 6, 8)).requires_grad_()
    out = layer(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    layer.eval()
    assert layer(x).shape == x.shape


@pytest.mark.parametrize("kind", NORMS)
def test_every_norm_builds_and_trains_a_step_in_nb201(kind):
    space = _space(norms=[kind])
    candidate = space.candidate_from_arch(ARCH, {"normalization.norm": kind, "normalization.groups": 2})
    model = candidate.build_model()
    expected = {
        "batch": nn.BatchNorm2d,
        "layer": nn.GroupNorm,
        "group": nn.GroupNorm,
        "instance": nn.InstanceNorm2d,
        "rms": RMSNorm,
        "power": PowerNorm,
        "bcn": BatchChannelNorm,
    }
    if kind == "none":
        assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in model.modules())
    else:
        assert any(type(m) is expected[kind] for m in model.modules())
    batch = candidate.task.batch(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = candidate.loss(model(batch.inputs), batch.targets)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(candidate.loss(model(batch.inputs), batch.targets))


def test_group_count_adapts_to_channels():
    layer = make_norm("group", 6, groups=4)
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 3


def test_powernorm_train_and_eval_modes():
    torch.manual_seed(0)
    layer = PowerNorm(3, momentum=0.5, affine=False)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    out = layer(x)
    # Training mode divides by the running quadratic mean seen so far (ones at start), then updates it.
    assert torch.allclose(out, x / torch.sqrt(torch.tensor(1.0 + layer.eps)))
    quadratic = x.pow(2).mean(dim=(0, 2, 3))
    assert torch.allclose(layer.running_phi, 0.5 * torch.ones(3) + 0.5 * quadratic)
    layer.eval()
    phi = layer.running_phi.clone()
    out = layer(x)
    assert torch.allclose(out, x / torch.sqrt(phi.view(1, 3, 1, 1) + layer.eps))
    assert torch.equal(layer.running_phi, phi)  # eval mode leaves the statistic alone
    # No mean subtraction: a positive input stays positive.
    assert (layer(x.abs() + 0.1) > 0).all()


def test_batch_channel_norm_train_and_eval_modes():
    torch.manual_seed(0)
    layer = BatchChannelNorm(4, groups=2)
    x = torch.randn(6, 4, 3, 3) * 2 + 5
    out = layer(x)
    bn = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / torch.sqrt(
        x.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + 1e-5
    )
    groups = bn.reshape(6, 2, -1)
    expected = (
        (groups - groups.mean(-1, keepdim=True)) / torch.sqrt(groups.var(-1, unbiased=False, keepdim=True) + 1e-5)
    ).reshape_as(x)
    assert torch.allclose(out, expected, atol=1e-4)
    layer.eval()
    running = layer.batch.running_mean.clone()
    single = layer(x[:1])  # eval mode: batch statistics come from the running estimates
    assert single.shape == (1, 4, 3, 3)
    assert torch.equal(layer.batch.running_mean, running)


def test_bcn_standardizes_convolution_weights():
    space = _space(norms=["bcn"])
    candidate = space.candidate_from_arch(ARCH, {"normalization.norm": "bcn", "normalization.groups": 2})
    model = candidate.build_model()
    model(candidate.task.batch(4).inputs)
    conv = model.stem[0]
    weight = conv.weight.reshape(conv.weight.shape[0], -1)
    assert torch.allclose(weight.mean(dim=1), torch.zeros(weight.shape[0]), atol=1e-5)
    assert torch.allclose(weight.var(dim=1, unbiased=False), torch.ones(weight.shape[0]), atol=1e-3)


def test_placement_is_only_asked_for_transformers():
    space = _space()
    candidate = space.candidate_from_arch(ARCH, {"normalization.norm": "layer"})
    assert "normalization.placement" not in candidate.params
    assert "norm_placement" not in candidate.build_options


def test_unknown_norm_is_a_space_error():
    with pytest.raises(automl.SpaceError, match="norms"):
        _space(norms=["batch", "weird"])
