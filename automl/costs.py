"""Cost figures of a built (and possibly compressed) model: parameters, FLOPs, size in bits.

- ``params``: parameters left by pruning: a tensor with a pruning mask (``<name>_mask``, as
  ``torch.nn.utils.prune`` leaves it) counts its kept entries, any other tensor all its entries
  (a bias initialised to zero is still stored, so it counts).
- ``flops``: multiply-accumulate operations of Conv and Linear layers for one input, counting only
  input and output channels that still have a non-zero weight (structured pruning removes work;
  unstructured zeros do not, as on dense hardware).
- ``size_bits``: Σ over parameters of (kept count × bit-width); a module's weight bit-width is its
  ``automl_weight_bits`` attribute when a quantization dimension set one, else 32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

COST_METRICS: tuple[str, ...] = ("params", "flops", "size_bits")
DEFAULT_BITS = 32


def effective_parameters(model: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """(module, name, tensor) for every parameter as pruning leaves it (``<name>_orig × <name>_mask``).

    Reads the mask rather than the tensor the last forward pass computed, so the figures do not depend
    on whether the model has run, and weights that fake quantization happens to round to zero still
    count (their storage is not saved).
    """
    out = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            out.append((module, *_masked(module, name, param)))
    return out


def _masked(module: nn.Module, name: str, param: torch.Tensor) -> tuple[str, torch.Tensor]:
    if name.endswith("_orig"):
        base = name[: -len("_orig")]
        mask = getattr(module, f"{base}_mask", None)
        if isinstance(mask, torch.Tensor):
            return base, param.detach() * mask
        if hasattr(module, base):
            return base, getattr(module, base)
    return name, param


def masked_weight(module: nn.Module) -> torch.Tensor:
    """A layer's weight with its pruning mask applied."""
    orig = getattr(module, "weight_orig", None)
    if isinstance(orig, torch.Tensor):
        return _masked(module, "weight_orig", orig)[1]
    return module.weight


def kept_count(module: nn.Module, name: str, tensor: torch.Tensor) -> int:
    """Entries of parameter ``name`` that pruning kept (all of them without a mask)."""
    mask = getattr(module, f"{name}_mask", None)
    if isinstance(mask, torch.Tensor):
        return int(torch.count_nonzero(mask.detach()))
    return int(tensor.numel())


def count_params(model: nn.Module) -> int:
    return int(sum(kept_count(m, n, p) for m, n, p in effective_parameters(model)))


def size_in_bits(model: nn.Module) -> int:
    total = 0
    for module, name, param in effective_parameters(model):
        bits = getattr(module, "automl_weight_bits", DEFAULT_BITS) if name == "weight" else DEFAULT_BITS
        total += kept_count(module, name, param) * int(bits)
    return total


def _alive(weight: torch.Tensor, dim: int) -> int:
    dims = [d for d in range(weight.dim()) if d != dim]
    return int((weight.detach().abs().sum(dim=dims) > 0).sum()) if dims else int((weight != 0).sum())


def count_flops(model: nn.Module, example_input: Any) -> int:
    """MACs of Conv and Linear layers for one sample of ``example_input``."""
    total = 0

    def conv_hook(module: nn.Module, _inp: Any, output: torch.Tensor) -> None:
        nonlocal total
        weight = masked_weight(module)
        out_alive = _alive(weight, 0)
        in_alive = _alive(weight, 1)
        kernel = weight[0, 0].numel()
        positions = output[0, 0].numel()
        total += positions * out_alive * in_alive * kernel

    def linear_hook(module: nn.Module, _inp: Any, output: torch.Tensor) -> None:
        nonlocal total
        weight = masked_weight(module)
        positions = output.numel() // (output.shape[0] * output.shape[-1]) if output.dim() > 1 else 1
        total += positions * _alive(weight, 0) * _alive(weight, 1)

    handles = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, torch.Tensor):
                model(example_input)
            else:
                model(*example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def compute_costs(model: nn.Module, example_input: Any) -> dict[str, float]:
    """Every cost figure of ``model`` (after its masks and bit-widths)."""
    return {
        "params": float(count_params(model)),
        "flops": float(count_flops(model, example_input)),
        "size_bits": float(size_in_bits(model)),
    }
