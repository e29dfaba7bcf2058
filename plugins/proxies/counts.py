"""Size proxies: the number of trainable parameters."""

from __future__ import annotations

from automl import Proxy
from automl.costs import count_params


class ParamsProxy(Proxy):
    name = "params"
    description = "number of non-zero parameters"
    applies_to = ("cell", "recurrent", "transformer")

    def score(self, candidate, batch):
        return float(count_params(candidate.build_model()))
