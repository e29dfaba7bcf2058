"""SynFlow (Tanaka et al., 2020) as a NAS proxy (Abdelfattah et al., ICLR 2021).

Every parameter and buffer replaced by its absolute value, BatchNorm removed, float64, an all-ones
input of batch 1; R = Σ outputs; score = Σ over Conv/Linear weights of |θ ⊙ ∂R/∂θ|. Needs no data.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from automl import Proxy, ProxyValue
from automl_plugins.proxies._modules import replace_modules, scored_layers


class SynflowProxy(Proxy):
    name = "synflow"
    description = "synaptic flow: Σ|θ ⊙ ∂R/∂θ| of the |θ| network on an all-ones input"
    applies_to = ("cell",)

    def score(self, candidate, batch):
        model = candidate.build_model()
        replace_modules(model, nn.modules.batchnorm._BatchNorm)
        model = model.double()
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                if tensor.is_floating_point():
                    tensor.abs_()
        model.zero_grad()
        ones = torch.ones((1, *batch.inputs.shape[1:]), dtype=torch.float64)
        model(ones).sum().backward()
        total = 0.0
        for layer in scored_layers(model):
            if layer.weight.grad is not None:
                total += float((layer.weight.detach() * layer.weight.grad).abs().sum())
        if not math.isfinite(total):
            return ProxyValue.nan(f"the synaptic flow overflowed float64 ({total})")
        # Raw values reach 1e40 and more: the log is recorded beside them for plotting and combining.
        return ProxyValue(total, None, {"log10": math.log10(total) if total > 0 else None})
