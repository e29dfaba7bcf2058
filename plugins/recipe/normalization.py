"""Normalization layers and the dimension that chooses one (and, for transformers, its placement).

Every choice is a factory ``norm_layer(num_features, layout="nchw" | "nlc") -> nn.Module`` that the
architecture builders call: ``nchw`` feature maps are ``B×C×H×W`` (or ``B×C×L``), ``nlc`` token
sequences are ``B×L×C`` with features last.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from automl import BUILD, Dimension, Option, ScopedTrial, SpaceError
from automl_plugins.recipe import _weights, transformer_norm

NORMS = ("batch", "layer", "group", "instance", "rms", "power", "bcn", "none")
PLACEMENTS = ("pre", "post", "peri")
CHOICES = NORMS + transformer_norm.TRANSFORMER_NORMS


class ChannelsLast(nn.Module):
    """Runs a channels-first normalization on ``B×L×C`` sequences (moves features to dim 1 and back)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.movedim(-1, 1)).movedim(1, -1)


class RMSNorm(nn.Module):
    """Root-mean-square normalization over the channel dimension of each position, with a learnt gain."""

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        scale = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return x * scale * self.weight.view(shape)


class _PowerFunction(torch.autograd.Function):
    """PowerNorm's normalization with its approximate backward pass (Shen et al. 2020, Algorithm 1).

    Forward: ``z = x / sqrt(ψ² + eps)``, ``y = γ·z + β``, with ψ² given (no gradient flows into it).
    Backward: with ``g = γ·∂L/∂y``, ``∂L/∂x = (g − ν·z) / sqrt(ψ² + eps)`` where ``ν = (1 − α_bkw)·e``
    and ``e`` is the running average of g·z kept in ``ema_gz``: ``e ← e + mean(ĝ·z)`` with
    ``ĝ = g − ν·z``, i.e. ``e ← e·(1 − (1 − α_bkw)·mean(z²)) + mean(g·z)``. This is the paper's
    ν_B = ν_{B−1}(1 − (1 − α)Γ_B) + (1 − α)Λ_B written for ``e = ν / (1 − α)``, the form of the
    authors' code. Means run over every dimension but the channels (dim 1).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, phi, ema_gz, alpha_bkw, eps):
        shape = [1, -1] + [1] * (x.dim() - 2)
        scale = torch.rsqrt(phi.view(shape) + eps)
        z = x * scale
        ctx.save_for_backward(z, scale, weight)
        ctx.ema_gz, ctx.alpha_bkw = ema_gz, alpha_bkw
        return z * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx, grad_out):
        z, scale, weight = ctx.saved_tensors
        shape = [1, -1] + [1] * (z.dim() - 2)
        dims = [d for d in range(z.dim()) if d != 1]
        ema_gz = ctx.ema_gz
        g = grad_out * weight.view(shape)
        approx = g - (1 - ctx.alpha_bkw) * ema_gz.view(shape).to(g.dtype) * z
        with torch.no_grad():
            ema_gz.add_((approx * z).mean(dim=dims).to(ema_gz.dtype))
        return approx * scale, (grad_out * z).sum(dim=dims), grad_out.sum(dim=dims), None, None, None, None


class PowerNorm(nn.Module):
    """PowerNorm (Shen et al., ICML 2020): divide by a running quadratic mean, no mean subtraction.

    Channels are dim 1. In training mode, step t (counted in the ``iters`` buffer):

    1. group scaling (the authors' code, ``GroupScaling1D``; the paper's algorithm starts at step 2):
       each position's channels, in ``groups`` groups, are divided by the square root of their mean
       square plus eps (one group, the code's default; its transformers use one per attention head);
    2. the batch quadratic mean ψ_B² = mean(x²) over every dimension but the channels;
    3. forward: ``z = x / sqrt(ψ² + eps)`` with ψ² = ψ_B² while t ≤ ``warmup`` (batch statistics, as
       the authors' code does for its first ``warmup_iters`` updates) and the running ψ² of the steps
       before after that; ``y = γ·z + β``;
    4. the running ψ²: while t < ``warmup`` first the cumulative mean ψ² ← ψ²·(t−1)/t + ψ_B²/t, then
       always ψ² ← α_fwd·ψ² + (1 − α_fwd)·ψ_B² (both updates as in the authors' code);
    5. backward: the approximate backward of ``_PowerFunction`` with α_bkw.

    Eval mode applies step 1, then ``y = γ·x/sqrt(ψ² + eps) + β`` with the running ψ².
    α_fwd = α_bkw = 0.9 and eps = 1e-5 are the authors' defaults. The backward pass divides by the ψ²
    the forward pass used (the paper's 1/ψ_{B−1}); the authors' code divides by the batch ψ_B² even
    after the warm-up, which this class does not copy.
    """

    def __init__(
        self,
        num_features: int,
        warmup: int = 20,
        alpha_fwd: float = 0.9,
        alpha_bkw: float = 0.9,
        groups: int = 1,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.warmup = warmup
        self.alpha_fwd = alpha_fwd
        self.alpha_bkw = alpha_bkw
        self.groups = _divisor(num_features, groups)
        self.eps = eps
        self.register_buffer("running_phi", torch.ones(num_features))
        self.register_buffer("ema_gz", torch.zeros(num_features))
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.weight = nn.Parameter(torch.ones(num_features), requires_grad=affine)
        self.bias = nn.Parameter(torch.zeros(num_features), requires_grad=affine)

    def extra_repr(self) -> str:
        return f"{self.running_phi.numel()}, warmup={self.warmup}, groups={self.groups}, eps={self.eps}"

    def group_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Divide each position's channels, group by group, by their root mean square."""
        b, c = x.shape[:2]
        grouped = x.reshape(b, self.groups, c // self.groups, *x.shape[2:])
        moment = grouped.pow(2).mean(dim=2, keepdim=True)
        return (grouped * torch.rsqrt(moment + self.eps)).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group_scale(x)
        if not self.training:
            shape = [1, -1] + [1] * (x.dim() - 2)
            return x * torch.rsqrt(self.running_phi.view(shape) + self.eps) * self.weight.view(shape) + self.bias.view(
                shape
            )
        dims = [d for d in range(x.dim()) if d != 1]
        with torch.no_grad():
            self.iters += 1
            t = int(self.iters)
            batch = x.detach().pow(2).mean(dim=dims).to(self.running_phi.dtype)
            phi = batch if t <= self.warmup else self.running_phi.clone()
            if t < self.warmup:
                self.running_phi.mul_((t - 1) / t).add_(batch / t)
            self.running_phi.mul_(self.alpha_fwd).add_((1 - self.alpha_fwd) * batch)
        return _PowerFunction.apply(x, self.weight, self.bias, phi.to(x.dtype), self.ema_gz, self.alpha_bkw, self.eps)


class BatchChannelNorm(nn.Module):
    """Batch-channel normalization (Qiao et al., 2020): batch normalization, then group normalization.

    The batch step uses batch statistics in training mode and running estimates in eval mode; the
    channel step normalizes each sample over channel groups, so the output does not depend on how
    many samples a batch holds once trained. The convolutions feeding it use weight standardization
    (applied by the normalization dimension).
    """

    def __init__(self, num_features: int, groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__()
        self.batch = nn.BatchNorm1d(num_features, eps=eps)
        self.channel = nn.GroupNorm(_divisor(num_features, groups), num_features, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(shape[0], shape[1], -1)
        return self.channel(self.batch(flat)).reshape(shape)


def _divisor(num_features: int, groups: int) -> int:
    """The largest group count ≤ ``groups`` that divides ``num_features``."""
    groups = max(1, min(groups, num_features))
    while num_features % groups:
        groups -= 1
    return groups


def make_norm(kind: str, num_features: int, layout: str = "nchw", groups: int = 8, power_warmup: int = 20) -> nn.Module:
    """A normalization layer of ``kind`` for ``num_features`` channels in ``layout``.

    ``none`` is an identity: the normalization-free recipe (FedWon) lives in the convolutions' weights
    (``scaled_standardize_convolutions``) and in the training loop's adaptive gradient clipping.
    """
    if layout not in ("nchw", "nlc"):
        raise ValueError(f"unknown layout {layout!r} (layouts: nchw, nlc)")
    nlc = layout == "nlc"
    if kind == "none":
        return nn.Identity()
    if kind == "layer":
        # Over the features of each position for sequences; over C×H×W (one group) for feature maps.
        return nn.LayerNorm(num_features) if nlc else nn.GroupNorm(1, num_features)
    if kind == "rms":
        return nn.RMSNorm(num_features) if nlc else RMSNorm(num_features)
    if kind == "batch":
        inner: nn.Module = nn.BatchNorm1d(num_features) if nlc else nn.BatchNorm2d(num_features)
    elif kind == "group":
        inner = nn.GroupNorm(_divisor(num_features, groups), num_features)
    elif kind == "instance":
        inner = (nn.InstanceNorm1d if nlc else nn.InstanceNorm2d)(num_features, affine=True)
    elif kind == "power":
        inner = PowerNorm(num_features, warmup=power_warmup)
    elif kind == "bcn":
        inner = BatchChannelNorm(num_features, groups)
    else:
        raise ValueError(f"unknown normalization {kind!r} (kinds: {', '.join(NORMS)})")
    return ChannelsLast(inner) if nlc else inner


def norm_factory(kind: str, groups: int = 8, power_warmup: int = 20) -> Callable[..., nn.Module]:
    """The ``norm_layer`` factory the builders call: ``factory(num_features, layout="nchw")``."""
    return functools.partial(_build, kind, groups, power_warmup)


def _build(kind: str, groups: int, power_warmup: int, num_features: int, layout: str = "nchw") -> nn.Module:
    return make_norm(kind, num_features, layout, groups, power_warmup)


def standardize_convolutions(model: nn.Module, _candidate: Any = None) -> None:
    """Weight standardization on every convolution (what batch-channel normalization is paired with)."""
    for _, module in _weights.weight_layers(model):
        if isinstance(module, nn.modules.conv._ConvNd):
            module.automl_standardize = True
            _weights.install(module)


def scaled_standardize_convolutions(model: nn.Module, _candidate: Any = None) -> None:
    """Scaled weight standardization on every convolution, each with a learnable gain per output channel
    (FedWon's WSConv; see ``_weights.scaled_standardize``)."""
    for _, module in _weights.weight_layers(model):
        if isinstance(module, nn.modules.conv._ConvNd):
            shape = (module.weight.shape[0],) + (1,) * (module.weight.dim() - 1)
            weight = getattr(module, "weight_orig", module.weight)
            module.automl_ws_gain = nn.Parameter(torch.ones(shape, device=weight.device, dtype=weight.dtype))
            _weights.install(module)


def agc_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters adaptive gradient clipping acts on: all but the last layer's (NF-Nets leave the
    classifier unclipped)."""
    layers = _weights.weight_layers(model)
    last = {id(p) for p in layers[-1][1].parameters()} if layers else set()
    return [p for p in model.parameters() if p.requires_grad and id(p) not in last]


@torch.no_grad()
def adaptive_clip_grad_(parameters: list[nn.Parameter], clipping: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al. 2021), unit by unit, in place.

    For every unit i (a row of a weight: one output channel, its fan-in; a whole vector for gains and
    biases), if ‖G_i‖ / max(‖W_i‖, eps) > λ then G_i ← λ·max(‖W_i‖, eps)/‖G_i‖ · G_i. eps = 1e-3 as in
    the NF-Net code.
    """
    for param in parameters:
        if param.grad is None:
            continue
        weight_norm = _unit_norm(param).clamp(min=eps)
        grad_norm = _unit_norm(param.grad)
        limit = clipping * weight_norm
        factor = limit / grad_norm.clamp(min=1e-6)
        param.grad.copy_(torch.where(grad_norm > limit, param.grad * factor, param.grad))


def _unit_norm(x: torch.Tensor) -> torch.Tensor:
    if x.dim() <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)


class NormalizationDimension(Dimension):
    name = "normalization"
    kind = "normalization"
    stage = BUILD
    description = (
        "normalization layers: batch, layer, group, instance, RMS, PowerNorm, batch-channel (with "
        "weight standardization) or none (FedWon: scaled weight standardization and adaptive gradient "
        "clipping); pre/post/peri placement for transformers"
    )
    options = {
        "norms": Option(
            list,
            default=list(NORMS),
            item_type=str,
            choices=CHOICES,
            min_items=1,
            help="normalizations to choose from (also un, pre_rms, pre_crms; see transformer_norm.py)",
        ),
        "un_window": Option(int, default=4, min=1, max=64, help="Unified Normalization: batches smoothed over"),
        "un_warmup": Option(
            int, default=100, min=0, max=100000, help="Unified Normalization: iterations before smoothing starts"
        ),
        "un_outlier_filtration": Option(bool, default=False, help="Unified Normalization: adaptive outlier filtration"),
        "groups": Option(
            list,
            default=[2, 4, 8],
            item_type=int,
            min=1,
            max=1024,
            min_items=1,
            help="group counts for group and batch-channel normalization (the largest divisor of "
            "the channel count up to this value is used)",
        ),
        "power_warmup": Option(
            int,
            default=20,
            min=0,
            max=100000,
            help="PowerNorm: training steps that normalize by the batch's quadratic mean before the running one",
        ),
        "agc_clipping": Option(
            float,
            default=0.16,
            min=0.001,
            max=10.0,
            help="none (FedWon): adaptive gradient clipping's λ, the largest gradient-to-weight norm ratio per unit",
        ),
        "placements": Option(
            list,
            default=list(PLACEMENTS),
            item_type=str,
            choices=PLACEMENTS,
            min_items=1,
            help="where transformers put normalization: pre, post or peri (before and after)",
        ),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if len(set(settings["norms"])) != len(settings["norms"]):
            raise SpaceError("norms lists a normalization twice", key="norms")

    def validate(self, space: Any) -> None:
        _weights.require_architecture(space, self.name)
        transformer_norm.check_transformer_norms(space, self.settings["norms"])

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        kind = trial.suggest_categorical("norm", self.settings["norms"])
        if kind in transformer_norm.REPARAMETERISED:
            transformer_norm.apply_reparameterised(candidate, kind, trial.prefix)  # always Pre-LN, converted
            return
        values: dict[str, Any] = {"norm": kind}
        groups = 8
        if kind in ("group", "bcn"):
            groups = values["groups"] = trial.suggest_categorical("groups", self.settings["groups"])
        s = self.settings
        if kind == "un":
            candidate.norm_layer = transformer_norm.unified_norm_factory(
                s["un_window"], s["un_warmup"], s["un_outlier_filtration"]
            )
        else:
            candidate.norm_layer = norm_factory(kind, groups, s["power_warmup"])
        architecture = candidate.architecture
        if architecture is not None and architecture.kind == "transformer":
            placement = trial.suggest_categorical("placement", self.settings["placements"])
            candidate.build_options["norm_placement"] = values["placement"] = placement
        if kind == "bcn":
            candidate.add_transform(trial.prefix, standardize_convolutions)
        if kind == "power":
            # Settings that change the trained model are part of what identifies the candidate.
            candidate.set_canonical(trial.prefix, {**values, "warmup": self.settings["power_warmup"]})
        if kind == "none":
            candidate.add_transform(trial.prefix, scaled_standardize_convolutions)
            candidate.recipe["agc_clipping"] = self.settings["agc_clipping"]
            candidate.set_canonical(trial.prefix, {**values, "agc_clipping": self.settings["agc_clipping"]})
