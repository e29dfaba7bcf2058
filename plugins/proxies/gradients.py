"""Zero-cost proxies that share one forward/backward of a cell network in train mode.

grad_norm, snip, grasp and fisher (Abdelfattah et al., ICLR 2021), jacob_cov and nwot (Mellor et
al., ICML 2021). One forward on the labelled minibatch feeds all of them:

- nwot reads the binary ReLU codes of that forward;
- jacob_cov takes ∂(Σ outputs)/∂inputs from it (train mode: BatchNorm couples the samples, as the
  reference does);
- grad_norm, snip and fisher take ∂loss/∂(weights, layer outputs) from one backward of the loss;
- grasp differentiates that gradient once more (Hessian-vector product H·g, g the gradient itself).

The same forward also feeds the proxies of later papers that read it (``zico`` has its own pass):
MeCo and SWAP (``patterns.py``) read every module's output and the ReLU codes, AZ-NAS (``aznas.py``)
the outputs of the stem and of every cell, and the gradients between them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from automl import Option, ProxyValue
from automl.passes import PassProxy, SharedPass
from automl_plugins.proxies._linalg import correlation_eigen_score, log_determinant
from automl_plugins.proxies._modules import scored_layers


class CellGradientPass(SharedPass):
    """Forward in train mode; then only the derivatives the requesting proxies need.

    ``requires`` values: ``relu_codes`` (nwot kernel), ``relu_codes_by_name`` (nwot's reference
    counting: every module whose class name contains "ReLU"), ``relu_patterns`` (SWAP: the distinct
    binary codes of the ReLU units over the first ``samples`` samples, for each ``samples`` a requesting
    proxy sets), ``module_min_eigen`` (MeCo), ``stage_features`` and ``stage_gradients`` (AZ-NAS),
    ``input_jacobian`` (jacob_cov), ``weight_grads`` (grad_norm, snip), ``activation_grads`` (fisher),
    ``hessian_grad`` (grasp).
    """

    def run(self) -> None:
        inputs = self.batch.inputs
        model = self.candidate.build_model(device=inputs.device)
        model.train()
        layers = scored_layers(model)
        outputs: dict[nn.Module, list[torch.Tensor]] = {}
        handles = []
        if "relu_codes" in self.needs:
            handles += self._count_relu_codes(model, lambda m: isinstance(m, nn.ReLU), "kernel", "relu_modules")
        if "relu_codes_by_name" in self.needs:
            handles += self._count_relu_codes(
                model, lambda m: "ReLU" in type(m).__name__, "kernel_by_name", "relu_modules_by_name"
            )
        if "relu_patterns" in self.needs:
            handles += self._collect_patterns(model)
        if "module_min_eigen" in self.needs:
            handles += self._collect_min_eigen(model)
        stages: list[torch.Tensor] = []
        if self.needs & {"stage_features", "stage_gradients"}:
            blocks = stage_blocks(model)
            self.results["stage_blocks"] = None if blocks is None else len(blocks)
            for block in blocks or []:
                handles.append(block.register_forward_hook(lambda _m, _a, out: stages.append(out)))
        if "activation_grads" in self.needs:

            def keep_output(module: nn.Module, _args: object, output: torch.Tensor) -> None:
                outputs.setdefault(module, []).append(output)

            handles += [layer.register_forward_hook(keep_output) for layer in layers]
        wants_jacobian = "input_jacobian" in self.needs
        x = inputs.detach().clone().requires_grad_(wants_jacobian)
        try:
            logits = model(x)
        finally:
            for handle in handles:
                handle.remove()
        if "relu_patterns" in self.needs:
            self.results["patterns"] = {
                n: int(torch.unique(torch.cat(codes)).numel()) if codes else 0
                for n, codes in self.results.pop("pattern_parts").items()
            }
        if stages:
            self.results["stage_features"] = [f.detach() for f in stages]
        if "stage_gradients" in self.needs and len(stages) > 1:
            self.results["stage_gradients"] = stage_gradient_pairs(stages)
        if wants_jacobian:
            (jacobian,) = torch.autograd.grad(logits.sum(), x, retain_graph=True, allow_unused=True)
            self.results["jacobian"] = (torch.zeros_like(x) if jacobian is None else jacobian).detach()
        if not self.needs & {"weight_grads", "activation_grads", "hessian_grad"}:
            return
        # Read the weights after the forward: a pruning mask recomputes ``weight`` in a pre-hook.
        weights = [layer.weight for layer in layers]
        acts = [(layer, out) for layer in layers for out in outputs.get(layer, [])]
        loss = self.candidate.loss(logits, self.batch.targets)
        grasp = "hessian_grad" in self.needs
        wanted = weights + [out for _, out in acts]
        grads = torch.autograd.grad(loss, wanted, create_graph=grasp, allow_unused=True)
        weight_grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[: len(weights)])]
        self.results["layers"] = layers
        self.results["weights"] = [w.detach() for w in weights]
        self.results["weight_grads"] = [g.detach() for g in weight_grads]
        if acts:
            self.results["activations"] = [
                (layer, out.detach(), torch.zeros_like(out) if g is None else g.detach())
                for (layer, out), g in zip(acts, grads[len(weights) :])
            ]
        if grasp:
            connected = [(w, g) for w, g in zip(weights, grads[: len(weights)]) if g is not None and g.requires_grad]
            hessian_grads = [torch.zeros_like(w) for w in weights]
            if connected:
                z = sum((g.detach() * g).sum() for _, g in connected)
                hg = torch.autograd.grad(z, [w for w, _ in connected], allow_unused=True)
                index = {id(w): i for i, w in enumerate(weights)}
                for (w, _), h in zip(connected, hg):
                    if h is not None:
                        hessian_grads[index[id(w)]] = h.detach()
            self.results["hessian_grads"] = hessian_grads

    def _count_relu_codes(self, model: nn.Module, chosen, key: str, count_key: str) -> list:
        """Pre-hooks adding each chosen module's Hamming-agreement kernel of input codes to ``results[key]``."""
        n = len(self.batch.inputs)
        self.results[key] = torch.zeros(n, n, dtype=torch.float64, device=self.batch.inputs.device)

        def count_codes(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            # A pre-hook sees the ReLU's input before an in-place ReLU overwrites it.
            # Agreements = (units + s·sᵀ) / 2 with s = ±1 codes: one float32 product, exact (integer sums
            # far below 2²⁴), instead of c·cᵀ + (1 − c)(1 − c)ᵀ in float64.
            signs = (args[0].detach() > 0).flatten(1).float() * 2.0 - 1.0
            agree = (signs @ signs.T).double().add_(signs.shape[1]).mul_(0.5)
            self.results[key] = self.results[key] + agree

        handles = [m.register_forward_pre_hook(count_codes) for m in model.modules() if chosen(m)]
        self.results[count_key] = len(handles)
        return handles

    def _collect_patterns(self, model: nn.Module) -> list:
        """Pre-hooks packing each ReLU unit's code over the first samples into one integer (SWAP)."""
        wanted = sorted({int(p.settings["samples"]) for p in self.proxies if "samples" in p.settings})
        parts: dict[int, list[torch.Tensor]] = {n: [] for n in wanted}
        self.results["pattern_parts"] = parts

        def pack(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            if x.dim() != 4:  # the reference counts the ReLUs of feature maps only
                return
            for n in wanted:
                codes = (x[:n].detach() > 0).flatten(1).long()  # samples × units
                powers = 2 ** torch.arange(len(codes), device=codes.device, dtype=torch.long)
                parts[n].append(torch.unique(powers @ codes))

        return [m.register_forward_pre_hook(pack) for m in model.modules() if isinstance(m, nn.ReLU)]

    def _collect_min_eigen(self, model: nn.Module) -> list:
        """Forward hooks on every module: the smallest eigenvalue of its first sample's channel correlation."""
        values: list[float] = []
        self.results["min_eigen"] = values

        def smallest(_module: nn.Module, _args: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.dim() >= 1:
                values.append(channel_correlation_min_eigen(out[0].detach()))

        return [m.register_forward_hook(smallest) for m in model.modules()]


def channel_correlation_min_eigen(feature: torch.Tensor) -> float:
    """MeCo's per-layer term: λ_min of the Pearson correlation of the channels (rows) of one sample's map.

    ``feature`` is C × H × W (or C); undefined correlations (a constant channel, one position) are set
    to 0 first, as the reference does.
    """
    rows = feature.reshape(feature.shape[0], -1).double()
    if rows.shape[0] < 2 or rows.shape[1] < 2:
        return 0.0  # every correlation undefined: the reference's zero matrix
    corr = torch.corrcoef(rows)
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return float(torch.linalg.eigvalsh(corr)[0])


def stage_blocks(model: nn.Module) -> list[nn.Module] | None:
    """The modules whose outputs AZ-NAS reads: the stem and every cell (``model.stem``, ``model.cells``).

    The reference reads the NAS-Bench-201 network's stem output and the output of each of its cells
    (reduction blocks included); a model without ``stem`` and ``cells`` has none (``None``).
    """
    stem, cells = getattr(model, "stem", None), getattr(model, "cells", None)
    if not isinstance(stem, nn.Module) or not isinstance(cells, (nn.Sequential, nn.ModuleList)):
        return None
    return [stem, *cells]


def stage_gradient_pairs(stages: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(g_in, g_out) for each consecutive pair of stage outputs, from the last pair to the first.

    g_out is a Rademacher (±1) tensor of the later output's shape, drawn from the global generator;
    g_in = (∂ later / ∂ earlier)ᵀ g_out, one vector-Jacobian product through the block between them.
    """
    pairs = []
    for i in reversed(range(1, len(stages))):
        later, earlier = stages[i], stages[i - 1]
        g_out = (torch.bernoulli(torch.full_like(later, 0.5)) - 0.5) * 2
        if not later.requires_grad:
            pairs.append((torch.zeros_like(earlier), g_out))
            continue
        (g_in,) = torch.autograd.grad(later, earlier, g_out, retain_graph=True, allow_unused=True)
        pairs.append((torch.zeros_like(earlier) if g_in is None else g_in.detach(), g_out))
    return pairs


def _finite(total: float, what: str) -> float | ProxyValue:
    return total if math.isfinite(total) else ProxyValue.nan(f"{what} is not finite ({total})")


class CellPassProxy(PassProxy):
    applies_to = ("cell",)
    shared_pass = CellGradientPass


class GradNormProxy(CellPassProxy):
    name = "grad_norm"
    description = "Σ over Conv/Linear layers of ‖∂L/∂W‖_F (train mode, one backward)"
    requires = frozenset({"weight_grads"})

    def read(self, shared):
        total = sum(float(g.norm()) for g in shared.results["weight_grads"])
        return _finite(total, "the gradient norm")


class SnipProxy(CellPassProxy):
    name = "snip"
    description = "Σ |W ⊙ ∂L/∂W| over Conv/Linear weights (connection sensitivity)"
    requires = frozenset({"weight_grads"})

    def read(self, shared):
        r = shared.results
        total = sum(float((w * g).abs().sum()) for w, g in zip(r["weights"], r["weight_grads"]))
        return _finite(total, "snip")


class GraspProxy(CellPassProxy):
    name = "grasp"
    description = "Σ −W ⊙ (H g) over Conv/Linear weights, H·g by double backward"
    requires = frozenset({"hessian_grad"})

    def read(self, shared):
        r = shared.results
        total = sum(float((-w * h).sum()) for w, h in zip(r["weights"], r["hessian_grads"]))
        return _finite(total, "grasp")


class FisherProxy(CellPassProxy):
    name = "fisher"
    description = "Σ over output channels of ½·mean_n(Σ_pos act·∂L/∂act)², counted once per weight of the channel"
    requires = frozenset({"activation_grads"})

    def read(self, shared):
        total = 0.0
        for layer, act, grad in shared.results.get("activations", []):
            product = act * grad
            # Conv outputs are N×C×H×W (sum over positions); Linear outputs N×C (or N×…×C: sum over the middle).
            if product.dim() > 2:
                per_channel = (
                    product.sum(dim=tuple(range(2, product.dim())))
                    if isinstance(layer, nn.modules.conv._ConvNd)
                    else product.flatten(1, -2).sum(dim=1)
                )
            else:
                per_channel = product
            fisher = 0.5 * per_channel.pow(2).mean(dim=0)
            total += float(fisher.sum()) * layer.weight[0].numel()
        return _finite(total, "fisher")


class JacobCovProxy(CellPassProxy):
    name = "jacob_cov"
    description = "−Σ[log(λ+k) + 1/(λ+k)] of the correlation of per-sample input Jacobians (train mode)"
    requires = frozenset({"input_jacobian"})

    def read(self, shared):
        rows = shared.results["jacobian"].flatten(1).cpu().numpy().astype(np.float64)
        value, reason = correlation_eigen_score(rows)
        if reason:
            return ProxyValue.nan(f"jacob_cov: {reason}")
        return value


class NwotProxy(CellPassProxy):
    """NASWOT (Mellor et al., ICML 2021): log|K| of the Hamming-agreement kernel of binary ReLU codes.

    ``modules = "relu"`` (default, the paper's definition) counts the ``nn.ReLU`` modules;
    ``modules = "reference"`` counts, as the authors' code does, every module whose class name
    contains "ReLU": in NAS-Bench-201 the ``ReLUConvBN`` block as well as its own ReLU, so every
    conv-edge ReLU is counted twice (a near-constant 5–8% offset, the same ranking).
    """

    name = "nwot"
    description = "log|K|, K = Σ over ReLUs of the Hamming-agreement kernel of binary activation codes"
    requires = frozenset({"relu_codes"})
    options = {
        "modules": Option(
            str,
            default="relu",
            choices=("relu", "reference"),
            help="relu: nn.ReLU modules (paper); reference: every module named *ReLU* (authors' code)",
        )
    }

    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        self.by_name = settings["modules"] == "reference"
        self.requires = frozenset({"relu_codes_by_name" if self.by_name else "relu_codes"})

    def read(self, shared):
        suffix = "_by_name" if self.by_name else ""
        if not shared.results.get("relu_modules" + suffix):
            return ProxyValue.nan("nwot: the network has no ReLU modules")
        value, reason = log_determinant(shared.results["kernel" + suffix].cpu().numpy())
        if reason:
            return ProxyValue.nan(f"nwot: {reason}")
        return value
