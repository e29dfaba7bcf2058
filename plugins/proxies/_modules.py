"""Helpers shared by proxies: which layers count, and model surgery on fresh copies."""

from __future__ import annotations

from torch import nn


def scored_layers(model: nn.Module) -> list[nn.Module]:
    """The Conv and Linear layers whose weights per-layer proxies sum over."""
    return [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]


def replace_modules(model: nn.Module, kind: type | tuple[type, ...], make: type = nn.Identity) -> int:
    """Replace every submodule of type ``kind`` by ``make()``; returns how many were replaced."""
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, kind):
                setattr(module, child_name, make())
                replaced += 1
    return replaced
