"""Cost figures of a built (and possibly compressed) model: parameters, FLOPs, size in bits.

- ``params``: non-zero parameters (a pruned weight counts as zero).
- ``flops``: multiply-accumulate operations of Conv and Linear layers for one input, counting only
  input and output channels that still have a non-zero weight (structured pruning removes work;
  unstructured zeros do not, as on dense hardware).
- ``size_bits``: Σ over parameters of (non-zero count × bit-width); a module's weight bit-width is its
  ``automl_weight_bits`` attribute when a quantization dimension set one, else 32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

COST_METRICS: tuple[str, ...] = ("params", "flops", "size_bits")
DEFAULT_BITS = 32


def effective_parameters(model: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """(module, name, tensor) for every parameter as the forward pass sees it (masks applied)."""
    out = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("_orig") and hasattr(module, name[: -len("_orig")]):
                name = name[: -len("_orig")]
                param = getattr(module, name)
            out.append((module, name, param))
    return out


def count_params(model: nn.Module) -> int:
    return int(sum(int(torch.count_nonzero(p.detach())) for _, _, p in effective_parameters(model)))


def size_in_bits(model: nn.Module) -> int:
    total = 0
    for module, name, param in effective_parameters(model):
        bits = getattr(module, "automl_weight_bits", DEFAULT_BITS) if name == "weight" else DEFAULT_BITS
        total += int(torch.count_nonzero(param.detach())) * int(bits)
    return total


def _alive(weight: torch.Tensor, dim: int) -> int:
    dims = [d for d in range(weight.dim()) if d != dim]
    return int((weight.detach().abs().sum(dim=dims) > 0).sum()) if dims else int((weight != 0).sum())


def count_flops(model: nn.Module, example_input: Any) -> int:
    """MACs of Conv and Linear layers for one sample of ``example_input``."""
    total = 0

    def conv_hook(module: nn.Module, _inp: Any, output: torch.Tensor) -> None:
        nonlocal total
        weight = module.weight
        out_alive = _alive(weight, 0)
        in_alive = _alive(weight, 1)
        kernel = weight[0, 0].numel()
        positions = output[0, 0].numel()
        total += positions * out_alive * in_alive * kernel

    def linear_hook(module: nn.Module, _inp: Any, output: torch.Tensor) -> None:
        nonlocal total
        weight = module.weight
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
    return {"params": float(count_params(model)), "flops": float(count_flops(model, example_input)),
            "size_bits": float(size_in_bits(model))}
