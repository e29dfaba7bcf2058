"""Zen-score (Lin et al., ICCV 2021): expressivity of a Gaussian-initialised network.

All Conv/Linear weights re-drawn from N(0, 1) (biases 0, BatchNorm affine 1/0), train mode.
score = log E_x ‖f(x) − f(x + γε)‖₁ + Σ_BN log √mean(running variance), with f the feature map before
global pooling (``model.features`` when the model has one), x and ε standard Gaussian inputs of the
task's shape. Needs no data.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from automl import Option, Proxy, ProxyValue


def gaussian_init(model: nn.Module, generator: torch.Generator) -> None:
    """Conv/Linear weights from N(0, 1) (drawn on the CPU from ``generator``), biases 0, norm affine 1/0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                if getattr(module, "weight", None) is not None:
                    nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)


class ZenProxy(Proxy):
    name = "zen"
    description = "log E‖f(x) − f(x + γε)‖ of pre-pooling features + Σ_BN log √mean(running var)"
    applies_to = ("cell",)
    options = {
        "gamma": Option(
            float, default=0.01, min=0.0, min_exclusive=True, max=10.0, help="size of the input perturbation"
        ),
        "repeats": Option(int, default=1, min=1, max=100, help="independent draws averaged"),
    }

    def score(self, candidate, batch):
        device = batch.inputs.device
        values = []
        for repeat in range(self.settings["repeats"]):
            model = candidate.build_model(device=device)
            model.train()
            features = getattr(model, "features", model)
            gen = torch.Generator(device="cpu").manual_seed(candidate.seed * 1000 + repeat)
            with torch.no_grad():
                gaussian_init(model, gen)
                shape = tuple(batch.inputs.shape)
                x = torch.randn(shape, generator=gen).to(device)
                noise = torch.randn(shape, generator=gen).to(device)
                # BatchNorm running variance is read after these forwards, as in the reference.
                out = features(x)
                mixed = features(x + self.settings["gamma"] * noise)
                distance = (out - mixed).abs().flatten(1).sum(dim=1).mean()
                log_bn = 0.0
                for module in model.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
                        log_bn += math.log(math.sqrt(float(module.running_var.mean())))
            if not distance > 0:
                return ProxyValue.nan("zen: the perturbation does not change the features (dead network)")
            values.append(math.log(float(distance)) + log_bn)
        value = sum(values) / len(values)
        return value if math.isfinite(value) else ProxyValue.nan(f"zen is not finite ({value})")
