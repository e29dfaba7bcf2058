"""Hidden covariance (Serianni & Kalita, ACL 2023): a training-free score for recurrent networks.

One unlabelled minibatch runs through the network in eval mode; ``model.forward_with_hidden(tokens)``
returns the hidden state entering the cell at every step of every recurrent layer (T × B × H). For the
chosen layer, Z has the H hidden units as rows and the B·T states as columns; R is the correlation
matrix of its rows and score = −Σ_j [log(λ_j + k) + 1/(λ_j + k)] over R's eigenvalues, k = 1e-5.
A constant unit has no correlation: it is dropped (the count is recorded) or makes the score NaN.
"""

from __future__ import annotations

import numpy as np
import torch

from automl import Option, Proxy, ProxyValue
from automl_plugins.proxies._linalg import correlation_eigen_score


def hidden_covariance(hidden: torch.Tensor, drop_constant: bool = True) -> ProxyValue:
    """The score of one layer's hidden states (T × B × H)."""
    units = hidden.detach().reshape(-1, hidden.shape[-1]).T.double().cpu().numpy()
    # Exactly equal values: a std test would keep a constant row whose mean has rounding noise.
    constant = np.ptp(units, axis=1) == 0
    dropped = int(constant.sum())
    info = {"units": int(units.shape[0]), "constant_units": dropped}
    if dropped:
        if not drop_constant:
            return ProxyValue(
                float("nan"), f"hidden_cov: {dropped} of {units.shape[0]} hidden units are constant", info
            )
        units = units[~constant]
    value, reason = correlation_eigen_score(units)
    return ProxyValue(value, f"hidden_cov: {reason}" if reason else None, info)


class HiddenCovProxy(Proxy):
    name = "hidden_cov"
    description = "−Σ[log(λ+k) + 1/(λ+k)] of the correlation of a recurrent layer's hidden units (eval mode)"
    applies_to = ("recurrent",)
    options = {
        "layer": Option(int, default=1, min=1, max=8, help="recurrent layer (1 = first)"),
        "constant_units": Option(
            str,
            default="drop",
            choices=("drop", "nan"),
            help="a unit constant over the batch: drop it, or make the score NaN",
        ),
    }

    def score(self, candidate, batch):
        model = candidate.build_model(device=batch.inputs.device)
        if not hasattr(model, "forward_with_hidden"):
            return ProxyValue.nan("hidden_cov: the model has no forward_with_hidden (not a recurrent model)")
        model.eval()
        with torch.no_grad():
            _, hidden = model.forward_with_hidden(batch.inputs)
        layer = self.settings["layer"]
        if layer > len(hidden):
            return ProxyValue.nan(f"hidden_cov: layer {layer} asked, the model has {len(hidden)} recurrent layer(s)")
        return hidden_covariance(hidden[layer - 1], self.settings["constant_units"] == "drop")
