"""The weight pipeline of Conv and Linear layers: standardize → mask → fake-quantize, on every forward.

Pruning (``torch.nn.utils.prune``), weight standardization and fake quantization all rewrite a layer's
``weight`` in a forward pre-hook. Hooks run in registration order, and ``prune`` re-registers its own
hook each time a mask is added, so independent hooks would overwrite each other depending on which
transform came first. Instead every transform here sets an attribute on the layer and calls
``install``: one hook, kept last, computes the weight from ``weight_orig`` in a fixed order:

    weight = fake_quant(standardize(weight_orig) * weight_mask)

(``standardize`` is plain weight standardization, or the scaled form of normalization-free networks
when the layer carries a learnable ``automl_ws_gain``.)

Masking after standardization keeps pruned weights exactly zero, and quantization maps zero to zero
(symmetric grids contain 0, affine ones place it on the zero point), so masks hold under training.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import prune

_HANDLE = "_automl_weight_hook"
WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv and Linear layer, each weight tensor once (tied weights skipped)."""
    seen: set[int] = set()
    out = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            weight = getattr(module, "weight_orig", None)
            weight = module.weight if weight is None else weight
            if id(weight) in seen:
                continue
            seen.add(id(weight))
            out.append((name, module))
    return out


def standardize(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Weight standardization: zero mean, unit variance over each output unit's fan-in."""
    dims = tuple(range(1, weight.dim()))
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True, unbiased=False)
    return (weight - mean) / torch.sqrt(var + eps)


RELU_GAIN = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))


def scaled_standardize(
    weight: torch.Tensor, gain: torch.Tensor, gamma: float = RELU_GAIN, eps: float = 1e-4
) -> torch.Tensor:
    """Scaled weight standardization (Brock et al. 2021; FedWon's WSConv): γ·g·(W − μ) / (σ·√N).

    μ and σ are the mean and (biased) standard deviation of each output unit's N fan-in weights, g a
    learnable gain per output unit (initialised to 1) and γ the gain that keeps ReLU activations at unit
    variance, √2 / √(1 − 1/π). As in the NF-Net code, σ²·N is floored at ``eps`` instead of adding eps.
    """
    dims = tuple(range(1, weight.dim()))
    fan_in = weight[0].numel()
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True, unbiased=False)
    scale = torch.rsqrt(torch.clamp(var * fan_in, min=eps))
    return gamma * gain * (weight - mean) * scale


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight the forward pass uses (before the pipeline's hook has run once, too)."""
    if not hasattr(module, "weight_orig"):
        return module.weight
    weight = module.weight_orig
    gain = getattr(module, "automl_ws_gain", None)
    if gain is not None:
        weight = scaled_standardize(weight, gain)
    elif getattr(module, "automl_standardize", False):
        weight = standardize(weight)
    weight = weight * module.weight_mask
    quantizer = getattr(module, "automl_weight_quant", None)
    if quantizer is not None:
        weight = quantize_as_float(quantizer, weight)
    return weight


def quantize_as_float(quantizer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a fake quantizer to ``x`` of any floating dtype (torch's kernels take float32 only)."""
    for buffer in quantizer.buffers():
        if buffer.is_floating_point() and buffer.dtype != torch.float32:
            quantizer.float()  # model.double() (SynFlow) converted the quantizer's scale too
            break
    if x.dtype == torch.float32:
        return quantizer(x)
    return quantizer(x.float()).to(x.dtype)


def _hook(module: nn.Module, _inputs: object) -> None:
    weight = effective_weight(module)
    if weight.requires_grad and torch.is_grad_enabled():
        # Gradient-based scores (SNIP, SynFlow, ...) read ``layer.weight.grad``: keep it for the
        # computed weight, which is exactly the gradient with respect to the weight the layer used.
        weight.retain_grad()
    module.weight = weight


def install(module: nn.Module) -> None:
    """Make sure ``module`` computes its weight through the pipeline, with the pipeline's hook last.

    Call after changing any pipeline attribute or adding a ``prune`` mask.
    """
    if not hasattr(module, "weight_orig"):
        prune.identity(module, "weight")  # weight becomes weight_orig × weight_mask (all ones)
    handle = getattr(module, _HANDLE, None)
    if handle is not None:
        handle.remove()
    setattr(module, _HANDLE, module.register_forward_pre_hook(_hook))
    with torch.no_grad():
        module.weight = effective_weight(module)


def require_architecture(space: object, dimension: str) -> None:
    """Raise ``SpaceError`` when ``space`` has no architecture dimension to build the models ``dimension`` changes."""
    from automl import SpaceError

    if getattr(space, "architecture", None) is None:
        raise SpaceError(
            f"the {dimension} dimension changes built models: add an architecture dimension "
            '(for example name = "nb201") to [[dimensions]]',
            key="dimensions",
        )
