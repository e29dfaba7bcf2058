"""Zero-cost proxies that share one forward/backward of a cell network in train mode.

grad_norm, snip, grasp and fisher (Abdelfattah et al., ICLR 2021), jacob_cov and nwot (Mellor et
al., ICML 2021). One forward on the labelled minibatch feeds all of them:

- nwot reads the binary ReLU codes of that forward;
- jacob_cov takes ∂(Σ outputs)/∂inputs from it (train mode: BatchNorm couples the samples, as the
  reference does);
- grad_norm, snip and fisher take ∂loss/∂(weights, layer outputs) from one backward of the loss;
- grasp differentiates that gradient once more (Hessian-vector product H·g, g the gradient itself).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from automl import ProxyValue
from automl.passes import PassProxy, SharedPass
from automl_plugins.proxies._linalg import correlation_eigen_score, log_determinant
from automl_plugins.proxies._modules import scored_layers


class CellGradientPass(SharedPass):
    """Forward in train mode; then only the derivatives the requesting proxies need.

    ``requires`` values: ``relu_codes`` (nwot kernel), ``input_jacobian`` (jacob_cov), ``weight_grads``
    (grad_norm, snip), ``activation_grads`` (fisher), ``hessian_grad`` (grasp).
    """

    def run(self) -> None:
        inputs = self.batch.inputs
        model = self.candidate.build_model(device=inputs.device)
        model.train()
        layers = scored_layers(model)
        outputs: dict[nn.Module, list[torch.Tensor]] = {}
        handles = []
        kernel = None
        if "relu_codes" in self.needs:
            kernel = torch.zeros(len(inputs), len(inputs), dtype=torch.float64, device=inputs.device)

            def count_codes(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                nonlocal kernel
                # A pre-hook sees the ReLU's input before an in-place ReLU overwrites it.
                codes = (args[0].detach() > 0).flatten(1).double()
                kernel = kernel + codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T

            handles += [m.register_forward_pre_hook(count_codes) for m in model.modules() if isinstance(m, nn.ReLU)]
            self.results["relu_modules"] = len(handles)
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
        if kernel is not None:
            self.results["kernel"] = kernel
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
    name = "nwot"
    description = "log|K|, K = Σ over ReLUs of the Hamming-agreement kernel of binary activation codes"
    requires = frozenset({"relu_codes"})

    def read(self, shared):
        if not shared.results.get("relu_modules"):
            return ProxyValue.nan("nwot: the network has no ReLU modules")
        value, reason = log_determinant(shared.results["kernel"].cpu().numpy())
        if reason:
            return ProxyValue.nan(f"nwot: {reason}")
        return value
