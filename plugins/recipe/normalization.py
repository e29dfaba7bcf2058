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


class PowerNorm(nn.Module):
    """PowerNorm (Shen et al., 2020): divide by the running quadratic mean, no mean subtraction.

    Channels are dim 1. In training mode the input is divided by the running quadratic mean ψ² kept so
    far (the statistic of past batches, which keeps the forward pass free of one batch's noise) and
    ψ² then moves towards this batch's mean of x²: ψ² ← (1 − momentum)·ψ² + momentum·mean(x²).
    Eval mode divides by ψ² without updating it. The paper's approximate backward pass through ψ is
    not reproduced: ψ is a buffer, so gradients treat it as a constant.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_phi", torch.ones(num_features))
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        phi = self.running_phi.clone()
        if self.training:
            dims = [d for d in range(x.dim()) if d != 1]
            with torch.no_grad():
                batch = x.detach().pow(2).mean(dim=dims)
                self.running_phi.mul_(1 - self.momentum).add_(self.momentum * batch)
        out = x / torch.sqrt(phi.view(shape) + self.eps)
        if self.weight is not None:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


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


def make_norm(kind: str, num_features: int, layout: str = "nchw", groups: int = 8) -> nn.Module:
    """A normalization layer of ``kind`` for ``num_features`` channels in ``layout``."""
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
        inner = PowerNorm(num_features)
    elif kind == "bcn":
        inner = BatchChannelNorm(num_features, groups)
    else:
        raise ValueError(f"unknown normalization {kind!r} (kinds: {', '.join(NORMS)})")
    return ChannelsLast(inner) if nlc else inner


def norm_factory(kind: str, groups: int = 8) -> Callable[..., nn.Module]:
    """The ``norm_layer`` factory the builders call: ``factory(num_features, layout="nchw")``."""
    return functools.partial(_build, kind, groups)


def _build(kind: str, groups: int, num_features: int, layout: str = "nchw") -> nn.Module:
    return make_norm(kind, num_features, layout, groups)


def standardize_convolutions(model: nn.Module, _candidate: Any = None) -> None:
    """Weight standardization on every convolution (what batch-channel normalization is paired with)."""
    for _, module in _weights.weight_layers(model):
        if isinstance(module, nn.modules.conv._ConvNd):
            module.automl_standardize = True
            _weights.install(module)


class NormalizationDimension(Dimension):
    name = "normalization"
    kind = "normalization"
    stage = BUILD
    description = (
        "normalization layers: batch, layer, group, instance, RMS, PowerNorm, batch-channel (with "
        "weight standardization) or none; pre/post/peri placement for transformers"
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
            min_items=1,
            help="group counts for group and batch-channel normalization (the largest divisor of "
            "the channel count up to this value is used)",
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
        groups = 8
        if kind in ("group", "bcn"):
            groups = trial.suggest_categorical("groups", self.settings["groups"])
        s = self.settings
        if kind == "un":
            candidate.norm_layer = transformer_norm.unified_norm_factory(
                s["un_window"], s["un_warmup"], s["un_outlier_filtration"]
            )
        else:
            candidate.norm_layer = norm_factory(kind, groups)
        if kind == "bcn":
            candidate.add_transform(trial.prefix, standardize_convolutions)
        architecture = candidate.architecture
        if architecture is not None and architecture.kind == "transformer":
            candidate.build_options["norm_placement"] = trial.suggest_categorical(
                "placement", self.settings["placements"]
            )
