"""Size proxies: the number of trainable parameters and the multiply-accumulates of one input."""

from __future__ import annotations

from automl import Proxy
from automl.costs import count_flops, count_params


class ParamsProxy(Proxy):
    name = "params"
    description = "number of non-zero parameters"
    applies_to = ("cell", "recurrent", "transformer", "mlp")

    def score(self, candidate, batch):
        return float(count_params(candidate.build_model()))


class FlopsProxy(Proxy):
    name = "flops"
    description = "multiply-accumulates of Conv and Linear layers for one input"
    applies_to = ("cell", "recurrent", "transformer", "mlp")

    def score(self, candidate, batch):
        model = candidate.build_model(device=batch.inputs.device)
        return float(count_flops(model, batch.inputs[:1]))
