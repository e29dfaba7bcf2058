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


def _group_scaled(x, groups, eps=1e-5):
    b, c = x.shape[:2]
    g = x.reshape(b, groups, c // groups, *x.shape[2:])
    return (g / torch.sqrt(g.pow(2).mean(dim=2, keepdim=True) + eps)).reshape(x.shape)


def test_powernorm_group_scaling_warmup_and_running_statistic():
    torch.manual_seed(0)
    layer = PowerNorm(4, warmup=3, alpha_fwd=0.9, groups=2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))
        layer.bias.copy_(torch.tensor([0.0, 0.1, -0.2, 0.3]))
    gamma, beta = layer.weight.detach().view(1, 4, 1, 1), layer.bias.detach().view(1, 4, 1, 1)
    phi = torch.ones(4)
    for t in range(1, 7):
        x = torch.randn(5, 4, 3, 3) * (t + 1) + 0.5
        scaled = _group_scaled(x, 2)
        batch = scaled.pow(2).mean(dim=(0, 2, 3))
        # Steps 1..warmup divide by this batch's quadratic mean, later ones by the running one before the step.
        divisor = batch if t <= 3 else phi
        expected = gamma * scaled / torch.sqrt(divisor.view(1, 4, 1, 1) + 1e-5) + beta
        assert torch.allclose(layer(x), expected, atol=1e-5)
        if t < 3:
            phi = phi * (t - 1) / t + batch / t
        phi = 0.9 * phi + 0.1 * batch
        assert torch.allclose(layer.running_phi, phi, atol=1e-6)
    layer.eval()
    x = torch.randn(2, 4, 3, 3)
    expected = gamma * _group_scaled(x, 2) / torch.sqrt(phi.view(1, 4, 1, 1) + 1e-5) + beta
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer.running_phi, phi) and int(layer.iters) == 6  # eval mode leaves them alone
    # No mean subtraction: a positive input stays positive.
    assert (PowerNorm(4).eval()(x.abs() + 0.1) > 0).all()


def test_powernorm_approximate_backward_matches_its_formula():
    torch.manual_seed(0)
    layer = PowerNorm(3, warmup=0, alpha_bkw=0.8)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, -2.0, 0.5]))
        layer.running_phi.copy_(torch.tensor([0.5, 2.0, 1.5]))
    e = torch.zeros(3)
    for _ in range(3):
        x = torch.randn(4, 3, 2, 2).requires_grad_()
        upstream = torch.randn(4, 3, 2, 2)
        phi = layer.running_phi.clone()
        layer(x).backward(upstream)
        z = _group_scaled(x.detach(), 1) / torch.sqrt(phi.view(1, 3, 1, 1) + 1e-5)
        g = upstream * layer.weight.detach().view(1, 3, 1, 1)
        # Paper: dL/dx̂ = (g − ν z)/ψ with ν = (1 − α)·e, then e ← e(1 − (1 − α)Γ) + Λ (gradients w.r.t. the
        # group-scaled input; group scaling's own backward is exact autograd, so compare through it).
        nu = (0.2 * e).view(1, 3, 1, 1)
        grad_scaled = (g - nu * z) / torch.sqrt(phi.view(1, 3, 1, 1) + 1e-5)
        xs = x.detach().clone().requires_grad_()
        _group_scaled(xs, 1).backward(grad_scaled)
        assert torch.allclose(x.grad, xs.grad, atol=1e-5)
        gamma_ = z.pow(2).mean(dim=(0, 2, 3))
        lam = (g * z).mean(dim=(0, 2, 3))
        e = e * (1 - 0.2 * gamma_) + lam
        assert torch.allclose(layer.ema_gz, e, atol=1e-5)
        assert torch.allclose(layer.weight.grad, (upstream * z).sum(dim=(0, 2, 3)), atol=1e-5)
        layer.weight.grad = None


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


def test_none_is_fedwon_scaled_weight_standardization():
    from automl_plugins.recipe._weights import RELU_GAIN

    space = _space(norms=["none"], agc_clipping=0.3)
    candidate = space.candidate_from_arch(ARCH, {"normalization.norm": "none"})
    assert candidate.recipe["agc_clipping"] == 0.3
    model = candidate.build_model()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "automl_ws_gain") for m in convs)
    with torch.no_grad():
        convs[0].automl_ws_gain.copy_(torch.linspace(0.5, 2.0, convs[0].weight.shape[0]).view(-1, 1, 1, 1))
    model(candidate.task.batch(4).inputs)
    for conv in convs:
        w = conv.weight_orig.detach()
        n = w[0].numel()
        mu = w.mean(dim=(1, 2, 3), keepdim=True)
        sigma = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True).sqrt()
        expected = RELU_GAIN * conv.automl_ws_gain.detach() * (w - mu) / (sigma * n**0.5)
        assert torch.allclose(conv.weight, expected, atol=1e-5)
    assert abs(RELU_GAIN - 1.71286) < 1e-5
    # The gain is a trained parameter.
    loss = model(candidate.task.batch(4).inputs).square().mean()
    loss.backward()
    assert convs[0].automl_ws_gain.grad is not None
    assert not any(hasattr(m, "automl_ws_gain") for m in model.modules() if isinstance(m, nn.Linear))


def test_adaptive_gradient_clipping_matches_its_formula():
    from automl_plugins.recipe.normalization import adaptive_clip_grad_, agc_parameters

    torch.manual_seed(0)
    conv = nn.Parameter(torch.randn(4, 2, 3, 3) * torch.tensor([1e-5, 0.1, 1.0, 3.0]).view(4, 1, 1, 1))
    bias = nn.Parameter(torch.randn(5))
    conv.grad = torch.randn(4, 2, 3, 3) * torch.tensor([1.0, 0.001, 5.0, 0.01]).view(4, 1, 1, 1)
    bias.grad = torch.randn(5) * 10
    before_conv, before_bias = conv.grad.clone(), bias.grad.clone()
    adaptive_clip_grad_([conv, bias], 0.1)
    for i in range(4):
        w_norm = max(float(conv[i].detach().norm()), 1e-3)
        g_norm = float(before_conv[i].norm())
        expected = before_conv[i] * (0.1 * w_norm / g_norm) if g_norm / w_norm > 0.1 else before_conv[i]
        assert torch.allclose(conv.grad[i], expected, atol=1e-6)
    assert float(bias.grad.norm()) == pytest.approx(0.1 * float(bias.detach().norm()), rel=1e-5)
    assert torch.allclose(bias.grad, before_bias * bias.grad.norm() / before_bias.norm())
    assert not torch.equal(conv.grad[1], before_conv[1] * 0) and torch.equal(conv.grad[1], before_conv[1])
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 3))
    assert {id(p) for p in agc_parameters(model)} == {id(p) for p in model[0].parameters()}


def test_normalization_free_training_learns():
    from automl_plugins.evaluators.training import train_candidate

    space = _space(norms=["none"])
    candidate = space.candidate_from_arch(ARCH, {"normalization.norm": "none"})
    result = train_candidate(candidate, {"epochs": 2, "lr": 0.05, "max_train_samples": 400}, device="cpu")
    assert result.scores["val_accuracy"] > 0.5


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
