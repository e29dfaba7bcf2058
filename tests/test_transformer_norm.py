"""Transformer normalizations: Pre-(C)RMSNorm re-parameterise a Pre-LN encoder exactly; Unified Normalization
computes the authors' statistics, smoothing, outlier filtration and approximate backward."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import automl
from automl_plugins.architectures.flexibert.model import FlexiBERTEncoder
from automl_plugins.architectures.flexibert.spec import EncoderSpec, LayerSpec
from automl_plugins.recipe.transformer_norm import (
    ResidualNorm,
    UnifiedNorm,
    convert_pre_ln,
    crms_norm,
    decompress,
    rms_norm,
)

SPEC = EncoderSpec(
    16,
    (
        LayerSpec("SA", "SDP", 2, 32, 1),
        LayerSpec("SA", "WMA", 4, 32, 2),
        LayerSpec("LT", "DFT", 2, 32, 1),
        LayerSpec("LT", "DCT", 2, 32, 1),
        LayerSpec("DSC", "5", 4, 32, 1),
    ),
)


def _pre_ln(classes: int) -> FlexiBERTEncoder:
    torch.manual_seed(0)
    model = FlexiBERTEncoder(
        SPEC, vocab_size=50, max_positions=20, num_classes=classes, options={"norm_placement": "pre"}
    )
    with torch.no_grad():  # LayerNorm affine parameters away from their identity initialisation
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
    return model


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("classes", [0, 3])
def test_pre_rms_and_pre_crms_compute_the_pre_ln_function(compressed, classes):
    model = _pre_ln(classes)
    tokens = torch.randint(0, 50, (3, 12))
    expected = model(tokens)
    converted = convert_pre_ln(copy.deepcopy(model), compressed)
    assert not any(isinstance(m, nn.LayerNorm) for m in converted.modules())
    assert converted.tokens.embedding_dim == (15 if compressed else 16)
    assert (converted(tokens) - expected).abs().max() < 1e-5
    if compressed:  # d − 1 wide residual stream: fewer parameters
        assert sum(p.numel() for p in converted.parameters()) < sum(p.numel() for p in model.parameters())


def test_crms_norm_is_rms_norm_of_the_decompressed_vector():
    x = torch.randn(4, 7, dtype=torch.float64)
    x = x - x.mean(dim=-1, keepdim=True)
    compressed = x[:, :-1]
    assert torch.allclose(decompress(compressed), x)
    assert torch.allclose(decompress(crms_norm(compressed, 1e-5)), rms_norm(x, 1e-5))
    # ... and of LayerNorm, for a zero-mean vector (eps inside the root in both).
    assert torch.allclose(rms_norm(x, 1e-5), nn.functional.layer_norm(x, (7,), eps=1e-5))
    assert torch.allclose(crms_norm(compressed, 0.0), compressed / x.square().mean(dim=-1, keepdim=True).sqrt())


def test_pre_rms_training_keeps_the_residual_stream_zero_mean():
    model = convert_pre_ln(_pre_ln(3), compressed=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    tokens, targets = torch.randint(0, 50, (8, 12)), torch.randint(0, 3, (8,))
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(tokens), targets).backward()
        optimizer.step()
    means = []
    for layer in model.layers:
        layer.register_forward_hook(lambda _m, _i, out: means.append(out.mean(dim=-1).abs().max()))
    model(tokens)
    assert max(means) < 1e-5
    # So every RMSNorm still equals the LayerNorm it replaced.
    assert all(isinstance(layer.norm_op, ResidualNorm) for layer in model.layers)


def _space(arch, norms, task="text_order"):
    dims = {
        "flexibert": {"name": "flexibert", "hidden_sizes": [128], "layers": [2], "heads": [2], "ff_dims": [512]},
        "nb201": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
    }
    tasks = {
        "text_order": {"name": "text_order", "seq_len": 12, "vocab_size": 64, "batch_size": 8},
        "digits": {"name": "digits", "image_size": 16, "batch_size": 8},
    }
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "n", "n_trials": 2, "sampler": "random"},
            "task": tasks[task],
            "dimensions": [dims[arch], {"name": "normalization", "norms": norms}],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


@pytest.mark.parametrize("norm", ["pre_rms", "pre_crms", "un"])
def test_transformer_norm_choices_build_and_train_a_step(norm):
    space = _space("flexibert", [norm])
    values = {"normalization.norm": norm, "normalization.placement": "pre"}
    candidate = space.candidate_from_arch("h128|SA.SDP-h2-ff512x1|LT.DCT-h2-ff512x1", values)
    model = candidate.build_model()
    if norm == "un":
        assert any(isinstance(m, UnifiedNorm) for m in model.modules())
    else:
        assert model.automl_norm_form == norm and model.placement == "pre"
    batch = candidate.task.batch(8)
    loss = candidate.loss(model(batch.inputs), batch.targets)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pre_rms_needs_a_transformer():
    with pytest.raises(automl.SpaceError, match="transformers"):
        _space("nb201", ["batch", "pre_rms"], task="digits")


# -- Unified Normalization ---------------------------------------------------------------------------------


def _un(**kw) -> UnifiedNorm:
    norm = UnifiedNorm(3, **kw).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return norm


def test_un_forward_in_warmup_divides_by_this_batch_quadratic_mean_and_tracks_it():
    norm = _un(warmup=10)
    x = torch.randn(4, 3, 5, dtype=torch.float64) * 3 + 1
    y = norm(x)
    x2 = x.pow(2).mean(dim=(0, 2))
    expected = x / torch.sqrt(x2 + 1e-5).view(1, 3, 1) * norm.weight.view(1, 3, 1) + norm.bias.view(1, 3, 1)
    assert torch.allclose(y, expected)
    assert torch.allclose(norm.running_var, 0.9 * torch.ones(3, dtype=torch.float64) + 0.1 * x2)
    norm.eval()
    eval_expected = x / torch.sqrt(norm.running_var + 1e-5).view(1, 3, 1)
    assert torch.allclose(norm(x), eval_expected * norm.weight.view(1, 3, 1) + norm.bias.view(1, 3, 1))


def test_un_smooths_with_the_geometric_mean_of_the_window_after_warmup():
    norm = _un(window=3, warmup=0)
    batches = [torch.randn(4, 3, 5, dtype=torch.float64) * s for s in (1.0, 2.0, 0.5, 3.0)]
    for x in batches[:3]:
        norm(x)
    y = norm(batches[3])  # step 4 > window: the window holds steps 2, 3 and 4
    stats = torch.stack([x.pow(2).mean(dim=(0, 2)) for x in batches[1:]])
    geometric = stats.prod(dim=0) ** (1 / 3)
    z = batches[3] / torch.sqrt(geometric + 1e-5).view(1, 3, 1)
    assert torch.allclose(y, z * norm.weight.view(1, 3, 1) + norm.bias.view(1, 3, 1))


def test_un_backward_is_the_smoothed_approximate_gradient():
    norm = _un(warmup=10, momentum=0.9)
    x = (torch.randn(4, 3, 5, dtype=torch.float64) + 0.5).requires_grad_()
    upstream = torch.randn(4, 3, 5, dtype=torch.float64)
    (norm(x) * upstream).sum().backward()
    x2 = x.detach().pow(2).mean(dim=(0, 2)).view(1, 3, 1)
    z = x.detach() / torch.sqrt(x2 + 1e-5)
    g = upstream * norm.weight.detach().view(1, 3, 1)  # r = 1 before the compensation starts
    gz = (g * z).mean(dim=(0, 2))
    ema = 0.1 * gz  # the moving average starts at zero
    expected = (g - ema.view(1, 3, 1) * z) / torch.sqrt(x2 + 1e-5)
    assert torch.allclose(x.grad, expected)
    assert torch.allclose(norm.ema_gz, ema)
    assert torch.allclose(norm.weight.grad, (upstream * z).sum(dim=(0, 2)))
    assert torch.allclose(norm.bias.grad, upstream.sum(dim=(0, 2)))
    # The exact gradient of y = γ·x/√(mean x²) differs: the approximation is not autograd's.
    exact = torch.autograd.functional.vjp(
        lambda t: t / torch.sqrt(t.pow(2).mean(dim=(0, 2), keepdim=True) + 1e-5) * norm.weight.detach().view(1, 3, 1),
        x.detach(),
        upstream,
    )[1]
    assert not torch.allclose(x.grad, exact)


def test_un_compensation_scales_the_gradient_by_r_after_its_start():
    norm = _un(window=2, warmup=0, compensation_after=0, momentum=0.5)
    first = torch.randn(4, 3, 5, dtype=torch.float64)
    norm(first)
    running = norm.running_var.clone()
    x = (torch.randn(4, 3, 5, dtype=torch.float64) * 2).requires_grad_()
    upstream = torch.randn(4, 3, 5, dtype=torch.float64)
    (norm(x) * upstream).sum().backward()
    # Step 2 ≤ window: the forward uses this batch's statistic; r compares it with the running one.
    var = x.detach().pow(2).mean(dim=(0, 2))
    r = (torch.sqrt(var + 1e-5) / torch.sqrt(running + 1e-5)).clamp(0.2, 5).view(1, 3, 1)
    z = x.detach() / torch.sqrt(var + 1e-5).view(1, 3, 1)
    assert torch.allclose(norm.weight.grad, (upstream * r * z).sum(dim=(0, 2)))


def test_un_outlier_filtration_skips_a_batch_far_from_the_window():
    norm = _un(window=4, warmup=4, outlier_filtration=True)  # the window is full from step 4
    torch.manual_seed(0)
    steady = torch.randn(16, 3, 8, dtype=torch.float64)
    for i in range(6):  # batches of one scale: the window's arithmetic and geometric means agree
        norm(steady * (1 + 0.01 * i))
    assert int(norm.skipped) == 0
    running = norm.running_var.clone()
    outlier = torch.randn(16, 3, 8, dtype=torch.float64) * 100
    y = norm(outlier)
    assert int(norm.skipped) == 1
    assert torch.allclose(norm.buffer_x2[7 % 4], running)  # its window entry is the running statistic
    x2 = outlier.pow(2).mean(dim=(0, 2))  # and it is normalized by its own statistic
    expected = outlier / torch.sqrt(x2 + 1e-5).view(1, 3, 1)
    assert torch.allclose(y, expected * norm.weight.view(1, 3, 1) + norm.bias.view(1, 3, 1))
    assert math.isfinite(float(y.detach().sum()))
