"""MeCo and SWAP: proxies read off the activations of the cell networks' shared forward.

- ``meco`` (Jiang et al., NeurIPS 2023): Σ over layers of λ_min of the Pearson correlation matrix of the
  layer's feature-map channels for one sample. From the authors' code (MeCo repository,
  ``foresight/pruners/measures/meco.py``), where the paper leaves it open: the layers are *every*
  module's output (containers included, so a ``nn.Sequential`` repeats its last child's term), the sample
  is the first of the minibatch after a train-mode forward of the whole minibatch, and undefined
  correlations (a constant channel, a vector output) are set to 0 before the eigenvalues.
- ``swap`` (Peng et al., ICLR 2024): the number of distinct sample-wise activation patterns — each ReLU
  unit's binary code (input > 0) over the samples, counted as a set, over the ReLUs of feature maps
  (the authors' code, ``src/metrics/swap.py``, hooks ``nn.ReLU`` modules with 4-D inputs). The reference
  forwards 16 samples (``samples``, default 16) and averages 32 Gaussian re-initialisations; here the
  first ``samples`` samples of the shared train-mode forward of the minibatch, once, at the model's own
  initialisation. The regularised form multiplies by exp(−(P − μ)² / σ), P the parameters in thousands
  as the reference counts them (``mu`` and ``sigma``; off by default).
"""

from __future__ import annotations

import math

from automl import Option, ProxyValue
from automl.costs import count_params
from automl_plugins.proxies.gradients import CellPassProxy


class MecoProxy(CellPassProxy):
    name = "meco"
    description = "Σ over modules of λ_min of the channel correlation of one sample's feature map"
    needs = frozenset({"data"})
    requires = frozenset({"module_min_eigen"})

    def read(self, shared):
        values = [v for v in shared.results["min_eigen"] if not math.isnan(v)]
        if not values:
            return ProxyValue.nan("meco: no module produced a feature map")
        return float(sum(values))


class SwapProxy(CellPassProxy):
    name = "swap"
    description = "distinct binary activation patterns of the ReLU units over the first samples (SWAP)"
    needs = frozenset({"data"})
    requires = frozenset({"relu_patterns"})
    options = {
        "samples": Option(int, default=16, min=2, max=62, help="samples whose codes form a pattern (reference 16)"),
        "mu": Option(float, default=None, min=0.0, max=1e9, help="regularised SWAP: μ, in thousands of parameters"),
        "sigma": Option(float, default=None, min=1e-9, max=1e9, help="regularised SWAP: σ (both μ and σ turn it on)"),
    }

    def read(self, shared):
        count = shared.results["patterns"][self.settings["samples"]]
        if not count:
            return ProxyValue.nan("swap: the network has no ReLU on a feature map")
        mu, sigma = self.settings["mu"], self.settings["sigma"]
        if mu is None or sigma is None:
            return float(count)
        thousands = count_params(shared.candidate.build_model()) / 1e3
        return float(count) * math.exp(-((thousands - mu) ** 2) / sigma)
