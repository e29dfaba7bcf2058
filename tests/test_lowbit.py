"""DoReFa low-bit training (weights, activations and gradients) and the FP-then-QAT schedule."""

from __future__ import annotations

import torch
from torch import nn

import automl
from automl_plugins.evaluators.training import train_candidate
from automl_plugins.recipe.lowbit import (
    QATSchedule,
    dorefa_activation,
    dorefa_gradient,
    dorefa_model,
    dorefa_weight,
    quantize_k,
)
from automl_plugins.recipe.quantization import quantize_model


def test_quantize_k_rounds_to_the_grid_with_a_straight_through_gradient():
    x = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.9, 1.0], requires_grad=True)
    q = quantize_k(x, 2)
    assert torch.allclose(q, torch.tensor([0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]))
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones(6))


def test_dorefa_weight_and_activation_follow_the_paper():
    w = torch.tensor([[-2.0, -0.1], [0.05, 1.0]])
    t = torch.tanh(w)
    direct = 2 * torch.round((t / (2 * t.abs().max()) + 0.5) * 3) / 3 - 1
    assert torch.allclose(dorefa_weight(w, 2), direct)
    levels = (dorefa_weight(torch.randn(50), 2) + 1) * 1.5  # 2 bits: 4 levels from −1 to 1
    assert torch.allclose(levels, levels.round(), atol=1e-6)
    x = torch.tensor([-1.0, 0.3, 0.6, 2.0])
    assert torch.allclose(dorefa_activation(x, 2), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))


def test_dorefa_gradient_is_per_example_scaled_stochastic_rounding():
    g = torch.tensor([[0.4, -0.2, 0.1], [4.0, 1.0, -3.0]])
    noise = torch.tensor([[0.1, -0.3, 0.0], [0.2, 0.4, -0.1]])
    scale = 2 * g.abs().amax(dim=1, keepdim=True)  # per example
    direct = scale * (torch.round((g / scale + 0.5 + noise / 15) * 15) / 15 - 0.5)
    assert torch.allclose(dorefa_gradient(g, 4, noise), direct)
    # On the k-bit grid, and unbiased over the noise.
    q = dorefa_gradient(g, 4)
    steps = (q / scale + 0.5) * 15
    assert torch.allclose(steps, steps.round(), atol=1e-5)
    torch.manual_seed(0)
    mean = torch.stack([dorefa_gradient(g, 2) for _ in range(4000)]).mean(dim=0)
    assert torch.allclose(mean, g, atol=0.05 * float(scale.max()))


def test_middle_layers_multiply_low_bit_operands_and_first_last_stay_float():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    assert dorefa_model(model, 2, 2, 4) == ["2"]
    assert model[0].automl_weight_bits == 32 and model[2].automl_weight_bits == 2
    x = torch.randn(8, 4)
    seen = {}
    model[2].register_forward_hook(lambda _m, inputs, out: seen.update(x=inputs[0], out=out))
    model[2].register_full_backward_hook(lambda _m, _gi, go: seen.update(dr=go[0]))
    torch.manual_seed(1)
    model(x).square().sum().backward()
    h = torch.relu(model[0](x))
    x_q = dorefa_activation(h, 2)
    assert torch.allclose(seen["x"], x_q)
    # The weight gradient is the product of the quantized gradient and the quantized input.
    dr = seen["dr"]
    torch.manual_seed(1)
    dr_q = dorefa_gradient(dr, 4)
    assert torch.allclose(model[2].weight_orig.grad, _ste_grad(model[2].weight_orig, dr_q.T @ x_q), atol=1e-5)


def _ste_grad(weight, grad_wq):
    """d loss / d w through w_q = 2·q(tanh(w)/(2 max|tanh w|) + ½) − 1 with the straight-through rounding."""
    w = weight.detach().clone().requires_grad_()
    t = torch.tanh(w)
    (2 * (t / (2 * t.abs().max()) + 0.5) - 1).backward(grad_wq)
    return w.grad


def test_qat_schedule_trains_in_float_then_quantized():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    reference = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    reference.load_state_dict(model.state_dict())
    quantize_model(model, 2)
    x = torch.randn(5, 4)
    schedule = QATSchedule(0.5)
    schedule.before_step(model, 0, 10)
    assert torch.allclose(model(x), reference(x))  # full precision
    for step in range(1, 5):
        schedule.before_step(model, step, 10)
    assert torch.allclose(model(x), reference(x))
    schedule.before_step(model, 5, 10)
    assert not torch.allclose(model(x), reference(x))  # 2-bit weights from step 5 on
    assert schedule.start == 5


def _digits_space(**quantization):
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "n", "n_trials": 1, "sampler": "random"},
            "task": {"name": "digits", "image_size": 8, "batch_size": 32},
            "dimensions": [
                {"name": "nb201", "channels": 4, "cells_per_stage": 1},
                {"name": "quantization", **quantization},
            ],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def test_dorefa_and_the_schedule_are_quantization_choices():
    space = _digits_space(methods=["fake_quant", "dorefa"], gradient_bits=[4], fp_fractions=[0.0, 0.5])
    values = {
        "quantization.method": "dorefa",
        "quantization.weight_bits": 4,
        "quantization.activation_bits": 8,
        "quantization.gradient_bits": 4,
        "quantization.fp_fraction": 0.5,
    }
    candidate = space.candidate_from_arch(ARCH, values)
    result = train_candidate(candidate, {"epochs": 1, "max_train_samples": 128}, device="cpu")
    assert result.info["qat_start_step"] == 2  # 4 steps of 32
    model = candidate.build_model()
    assert sum(hasattr(m, "automl_dorefa") for m in model.modules()) > 0
