"""Low-bit integer training and the compute-optimal QAT schedule.

**DoReFa-Net** (Zhou et al., 2016, "DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with
Low Bitwidth Gradients"): weights, activations *and* the gradients flowing back into every layer are
fixed-point numbers of a few bits, so the forward convolution and both backward ones (the activation
gradient ``g·Wᵀ`` and the weight gradient ``xᵀ·g``) multiply low-bit integers. With
``q_k(r) = round((2ᵏ − 1)·r) / (2ᵏ − 1)`` on [0, 1] (straight-through in the backward pass):

- weights (k_W bits): ``w_q = 2·q_k(tanh(w) / (2·max|tanh(w)|) + ½) − 1``;
- activations (k_A bits), the inputs of a layer: ``x_q = q_k(clip(x, 0, 1))``;
- gradients (k_G bits), the gradient ``dr`` arriving at a layer's output, per example (``max₀`` over every
  axis but the batch one): ``dr_q = 2·max₀|dr|·[q_k(dr / (2·max₀|dr|) + ½ + N(k)) − ½]`` with the
  uniform noise ``N(k) = σ / (2ᵏ − 1)``, ``σ ~ U(−½, ½)`` (stochastic rounding).

As in the paper (and its tensorpack code, ``dorefa.py``), the first and the last layers stay in floating
point, the gradient quantizer sits on each layer's output (``fg`` after each convolution), and the weight
update is applied to floating-point weights. The weight gradient is the product of k_G-bit gradients and
k_A-bit activations (what the paper's bit convolution kernels compute); it is not requantized.

**Compute-optimal QAT** (Dremov et al., 2025, "Compute-Optimal Quantization-Aware Training"): training is
split into a full-precision phase and a QAT phase; the fraction of steps spent in full precision is a
searchable parameter (the paper shows the loss-optimal QAT share grows with the compute budget, and fits a
scaling law to predict it; here it is searched, the law is not used). The evaluator's learning-rate
schedule runs over all steps, so with the cosine schedule the QAT phase takes the decay, as in the paper's
"cooldown and QAT fusion". During the full-precision phase the quantizers' range observers keep learning,
so QAT starts from calibrated ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize

from automl_plugins.recipe import _weights
from automl_plugins.recipe._weights import weight_layers

FULL_PRECISION = 32


def quantize_k(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``round((2ᵏ − 1)·x) / (2ᵏ − 1)`` with a straight-through gradient."""
    levels = 2**bits - 1
    return x + (torch.round(x * levels) / levels - x).detach()


def dorefa_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    t = torch.tanh(weight)
    return 2 * quantize_k(t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5, bits) - 1


def dorefa_activation(x: torch.Tensor, bits: int) -> torch.Tensor:
    return quantize_k(x.clamp(0, 1), bits)


def dorefa_gradient(grad: torch.Tensor, bits: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The k-bit gradient; ``noise`` (σ ~ U(−½, ½), the shape of ``grad``) is drawn when not given."""
    levels = 2**bits - 1
    dims = tuple(range(1, grad.dim()))
    scale = 2 * grad.abs().amax(dim=dims, keepdim=True).clamp_min(1e-30) if dims else 2 * grad.abs().clamp_min(1e-30)
    if noise is None:
        noise = torch.rand_like(grad) - 0.5
    unit = grad / scale + 0.5 + noise / levels
    return scale * (torch.round(unit.clamp(0, 1) * levels) / levels - 0.5)


class _QuantizeGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits):
        ctx.bits = bits
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return dorefa_gradient(grad, ctx.bits), None


class DoReFaWeight(nn.Module):
    """The weight quantizer the layer's weight pipeline calls (``_weights``)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return dorefa_weight(weight, self.bits) if self.enabled else weight


class DoReFaLayer(nn.Module):
    """Holds a layer's activation and gradient bit-widths; its hooks quantize the input and the output's gradient."""

    def __init__(self, activation_bits: int, gradient_bits: int) -> None:
        super().__init__()
        self.activation_bits, self.gradient_bits = activation_bits, gradient_bits
        self.enabled = True

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled or self.activation_bits >= FULL_PRECISION:
            return x
        return dorefa_activation(x, self.activation_bits)

    def quantize_output_gradient(self, out: torch.Tensor) -> torch.Tensor:
        if not self.enabled or self.gradient_bits >= FULL_PRECISION or not torch.is_grad_enabled():
            return out
        return _QuantizeGradient.apply(out, self.gradient_bits)


def _pre_hook(module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return (module.automl_dorefa.quantize_input(inputs[0]), *inputs[1:])


def _post_hook(module: nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    return module.automl_dorefa.quantize_output_gradient(output)


def dorefa_model(model: nn.Module, weight_bits: int, activation_bits: int, gradient_bits: int) -> list[str]:
    """DoReFa-quantize every Conv and Linear layer but the first and the last, in place; returns their names.

    Sets ``automl_weight_bits`` (the first and last layers: 32).
    """
    layers = weight_layers(model)
    names = []
    for i, (name, module) in enumerate(layers):
        if i == 0 or i == len(layers) - 1:
            module.automl_weight_bits = FULL_PRECISION
            continue
        module.automl_weight_bits = min(FULL_PRECISION, weight_bits)
        if weight_bits < FULL_PRECISION:
            module.automl_weight_quant = DoReFaWeight(weight_bits)
            _weights.install(module)
        module.automl_dorefa = DoReFaLayer(activation_bits, gradient_bits)
        module.register_forward_pre_hook(_pre_hook)
        module.register_forward_hook(_post_hook)
        names.append(name)
    return names


def set_quantization(model: nn.Module, enabled: bool) -> None:
    """Switch every fake quantizer and DoReFa quantizer of ``model`` on or off (range observers keep running)."""
    for module in model.modules():
        if isinstance(module, FakeQuantize):
            module.enable_fake_quant(enabled)
        elif isinstance(module, (DoReFaWeight, DoReFaLayer)):
            module.enabled = enabled


class QATSchedule:
    """Training hook: full precision for the first ``round(fp_fraction × steps)`` steps, then QAT to the end."""

    def __init__(self, fp_fraction: float) -> None:
        if not 0 <= fp_fraction < 1:
            raise ValueError(f"fp_fraction must be in [0, 1), got {fp_fraction}")
        self.fp_fraction = fp_fraction
        self.start: int | None = None

    def before_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        start = min(round(self.fp_fraction * total_steps), total_steps - 1)
        if step == 0:
            self.start = start
            set_quantization(model, start == 0)
        elif step == start:
            set_quantization(model, True)

    def after_training(
        self, model: nn.Module, _train: Any, _val: Any, _criterion: nn.Module, _settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        set_quantization(model, True)
        return {"qat_start_step": self.start, "qat_fp_fraction": self.fp_fraction}
