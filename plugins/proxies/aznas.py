"""AZ-NAS (Lee & Ham, CVPR 2024): four complementary proxies from one forward and one backward.

The features are the outputs of the network's stem and of each of its cells, reduction blocks included
(the authors' NAS-Bench-201 code, ``extract_cell_features``, reads exactly these; here ``stage_blocks``):

- ``az_expressivity``: per feature F (B×C×H×W, read as B·H·W samples of C channels, centred), the
  entropy −Σ p log(p + 1e-8) of the eigenvalues of its covariance normalised to sum 1 (isotropy);
  summed over the features.
- ``az_progressivity``: the smallest increase of that entropy from one feature to the next.
- ``az_trainability``: for each consecutive pair (F_in, F_out), a Rademacher g_out and
  g_in = (∂F_out/∂F_in)ᵀ g_out; if the block halves the resolution g_in is pixel-unshuffled to F_out's
  size; σ = the largest singular value of g_inᵀ g_out / (B·H·W); the term is −σ − 1/(σ + 1e-6) + 2
  (0 when σ = 1, the gradient norm preserved), −∞ when the block passes the gradient through unchanged;
  averaged over the pairs.
- ``az_complexity``: FLOPs (multiply-accumulates of one input).

Details from the authors' code (``compute_az_nas_score.py``) where the paper leaves them open: the
1e-8 inside the log, the covariance divided by B·H·W, the 1e-6 in the trainability term, the order in
which the random g_out are drawn (from the last pair to the first) and −∞ for an identity block. Two
differences, both project conventions: the reference re-draws the weights (Kaiming normal, fan-in) and
feeds Gaussian noise; here the model keeps PyTorch's default initialisation and reads the task's
minibatch in the forward the cell proxies share. Eigenvalues are computed in float64 and clipped at 0
(round-off can leave tiny negative ones, whose log the reference turns into NaN).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from automl import Proxy, ProxyValue
from automl.costs import count_flops
from automl_plugins.proxies.gradients import CellPassProxy


def isotropy_entropy(feature: torch.Tensor) -> float:
    """Entropy of the normalised eigenvalues of the channel covariance of a B×C×H×W feature (NaN: no variance)."""
    c = feature.shape[1]
    x = feature.detach().double().movedim(1, -1).reshape(-1, c)
    x = x - x.mean(dim=0, keepdim=True)
    sigma = x.T @ x / x.shape[0]
    s = torch.linalg.eigvalsh(sigma).clamp(min=0.0)
    total = float(s.sum())
    if total <= 0.0 or not math.isfinite(total):
        return math.nan
    p = s / total
    return float(-(p * torch.log(p + 1e-8)).sum())


def trainability_term(g_in: torch.Tensor, g_out: torch.Tensor) -> float:
    """−σ − 1/(σ + 1e-6) + 2, σ the spectral norm of g_inᵀ g_out / (B·H·W); −∞ for an unchanged gradient."""
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return -math.inf
    if g_in.shape[2:] != g_out.shape[2:]:
        g_in = nn.functional.pixel_unshuffle(g_in, g_in.shape[2] // g_out.shape[2])
    b, c_out, h, w = g_out.shape
    rows_in = g_in.double().movedim(1, -1).reshape(-1, g_in.shape[1])
    rows_out = g_out.double().movedim(1, -1).reshape(-1, c_out)
    sigma = float(torch.linalg.matrix_norm(rows_in.T @ rows_out / (b * h * w), ord=2))
    return -sigma - 1.0 / (sigma + 1e-6) + 2.0


class AzPassProxy(CellPassProxy):
    needs = frozenset({"data"})

    def _entropies(self, shared) -> tuple[list[float] | None, str | None]:
        if shared.results.get("stage_blocks") is None:
            return None, f"{self.name}: the model has no stem and cells to read features from"
        features = shared.results.get("stage_features", [])
        if len(features) < 2 or any(f.dim() != 4 for f in features):
            return None, f"{self.name}: needs at least two B×C×H×W stage features"
        values = [isotropy_entropy(f) for f in features]
        flat = [i for i, v in enumerate(values) if math.isnan(v)]
        if flat:
            return None, f"{self.name}: stage feature {flat[0]} has no variance"
        return values, None


class AzExpressivityProxy(AzPassProxy):
    name = "az_expressivity"
    description = (
        "AZ-NAS expressivity: Σ over stem and cell outputs of the entropy of normalised covariance eigenvalues"
    )
    requires = frozenset({"stage_features"})

    def read(self, shared):
        values, reason = self._entropies(shared)
        return ProxyValue.nan(reason) if reason else float(sum(values))


class AzProgressivityProxy(AzPassProxy):
    name = "az_progressivity"
    description = "AZ-NAS progressivity: the smallest increase of that entropy from one stage output to the next"
    requires = frozenset({"stage_features"})

    def read(self, shared):
        values, reason = self._entropies(shared)
        return ProxyValue.nan(reason) if reason else float(np.min(np.diff(values)))


class AzTrainabilityProxy(AzPassProxy):
    name = "az_trainability"
    description = "AZ-NAS trainability: mean over consecutive stage outputs of −σ − 1/σ + 2 of the block's gradient map"
    requires = frozenset({"stage_gradients"})

    def read(self, shared):
        if shared.results.get("stage_blocks") is None:
            return ProxyValue.nan(f"{self.name}: the model has no stem and cells to read features from")
        pairs = shared.results.get("stage_gradients")
        if not pairs:
            return ProxyValue.nan(f"{self.name}: needs at least two stage features")
        return float(np.mean([trainability_term(g_in, g_out) for g_in, g_out in pairs]))


class AzComplexityProxy(Proxy):
    name = "az_complexity"
    description = "AZ-NAS complexity: multiply-accumulates of one input (FLOPs)"
    applies_to = ("cell",)
    needs = frozenset({"data"})
    mode = "eval"

    def score(self, candidate, batch):
        model = candidate.build_model(device=batch.inputs.device)
        return float(count_flops(model, batch.inputs[:1]))
