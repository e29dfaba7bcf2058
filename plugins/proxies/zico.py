"""ZiCo (Li et al., ICLR 2023): the inverse coefficient of variation of the loss gradients.

For every Conv/Linear layer, the gradients of the loss with respect to its weights on ``splits``
minibatches g_1 … g_S; per weight, mean_s |g_s| / std_s(g_s); the layer's term is the log of their sum
over the weights whose std is not zero, and ZiCo sums the terms over the layers (a layer whose sum is 0
adds nothing). Train mode.

From the authors' code (``ZeroShotProxy/compute_zico.py``) where the paper leaves it open: the std is
the population std (``np.std``), weights with zero std are left out, and layers with a zero sum are
skipped. The minibatches are the ``splits`` equal parts of the task's minibatch, as the NASLib-style
port in the MeCo repository scores NAS-Bench-201 (two halves of one batch). The authors' loop never
zeroes the gradients between minibatches, so its s-th "gradient" is the sum of the first s;
``gradients = "accumulated"`` reproduces that, the default ``"separate"`` follows the paper.
"""

from __future__ import annotations

import math

import torch

from automl import Option, ProxyValue
from automl.passes import PassProxy, SharedPass
from automl_plugins.proxies._modules import scored_layers


class ZicoPass(SharedPass):
    """One forward and backward of the loss per part of the minibatch, keeping every layer's weight gradient."""

    def run(self) -> None:
        inputs, targets = self.batch.inputs, self.batch.targets
        model = self.candidate.build_model(device=inputs.device)
        model.train()
        splits = max(p.settings["splits"] for p in self.proxies)
        n = len(inputs)
        if n < splits:
            self.results["error"] = f"a minibatch of {n} cannot be split in {splits}"
            return
        grads: list[list[torch.Tensor]] = []
        for s in range(splits):
            start, stop = s * n // splits, (s + 1) * n // splits
            loss = self.candidate.loss(model(inputs[start:stop]), targets[start:stop])
            weights = [layer.weight for layer in scored_layers(model)]
            found = torch.autograd.grad(loss, weights, allow_unused=True)
            grads.append([torch.zeros_like(w) if g is None else g.detach().flatten() for w, g in zip(weights, found)])
        self.results["grads"] = [torch.stack([g[i].flatten() for g in grads]).double() for i in range(len(grads[0]))]


def zico_from_gradients(per_layer: list[torch.Tensor]) -> float:
    """Σ over layers of log Σ_w mean_s|g| / std_s(g) (weights with std 0 left out, zero sums skipped).

    ``per_layer``: one S × W tensor per layer, row s the layer's flattened gradient on minibatch s.
    """
    total = 0.0
    for g in per_layer:
        std = g.std(dim=0, unbiased=False)
        kept = std != 0
        ratio = float((g.abs().mean(dim=0)[kept] / std[kept]).sum())
        if ratio != 0.0:
            total += math.log(ratio)
    return total


class ZicoProxy(PassProxy):
    name = "zico"
    description = "Σ over layers of log Σ_w mean|∂L/∂w| / std(∂L/∂w) across minibatches (ZiCo)"
    applies_to = ("cell",)
    needs = frozenset({"data", "labels", "gradients"})
    shared_pass = ZicoPass
    options = {
        "splits": Option(int, default=2, min=2, max=64, help="equal parts of the minibatch, one gradient each"),
        "gradients": Option(
            str,
            default="separate",
            choices=("separate", "accumulated"),
            help="separate: each part's gradient (paper); accumulated: running sums, as the authors' loop",
        ),
    }

    def pass_key(self):
        return (self.shared_pass, self.settings["splits"])

    def read(self, shared):
        if "error" in shared.results:
            return ProxyValue.nan(f"zico: {shared.results['error']}")
        per_layer = shared.results["grads"]
        if self.settings["gradients"] == "accumulated":
            per_layer = [g.cumsum(dim=0) for g in per_layer]
        if not per_layer:
            return ProxyValue.nan("zico: the network has no Conv or Linear layer")
        value = zico_from_gradients(per_layer)
        return value if math.isfinite(value) else ProxyValue.nan(f"zico is not finite ({value})")
