"""Normalization methods for transformers: Unified Normalization, and Pre-RMSNorm / Pre-CRMSNorm.

**Unified Normalization** (Yang et al., ACM MM 2022, "Unified Normalization for Accelerating and Stabilizing
Transformers"): an offline normalization (statistics fixed at inference, so it folds into the next linear
layer) that replaces LayerNorm. ``UnifiedNorm`` follows the authors' ``UN1d`` (github.com/hikvision-research/
Unified-Normalization) in every detail the paper leaves open:

- the statistic is the per-channel quadratic mean ``x² = mean(x²)`` over all tokens of the batch (the code
  normalizes ``z = x / √(σ̂² + ε)`` without subtracting a mean, as PowerNorm does);
- *tailored fluctuation smoothing*: the last ``window`` batch statistics are kept; once the window is full
  and ``warmup`` iterations have passed, the forward pass divides by their **geometric** mean
  ``exp(mean(log x²))`` instead of this batch's; the backward pass keeps a window of ``mean(g·z)`` and an
  exponential moving average (``momentum``) of its arithmetic mean, and returns
  ``∂x = (g − ema(g·z)·z) / √(σ̂² + ε)`` with ``g = ∂y·γ·r`` (PowerNorm's approximate backward, smoothed);
- the gradient compensation ``r = √(σ̂² + ε) / √(running + ε)``, clamped to [1/5, 5], and 1 until
  ``compensation_after`` iterations (the code's ``max(1000, warmup)``);
- *adaptive outlier filtration*: before storing this batch's statistic, the variance ``v`` of ``√x²`` over
  the window is recorded; if, with this batch stored, the arithmetic minus the geometric mean of the window
  exceeds ``v · window`` for any channel, the batch is an outlier: its window entry is replaced by the
  running statistic and it is normalized by its own statistic, with no smoothing and no compensation;
- ``running ← momentum·running + (1 − momentum)·σ̂²`` (``momentum = 0.9``) is what eval mode divides by.

The authors' defaults are ``window = 4``, ``warmup = 4000`` iterations and outlier filtration on for vision,
off for language; a search trial here trains a few hundred steps, so the dimension's default warm-up is
shorter (``un_warmup``) and the compensation starts with it.

**Pre-RMSNorm and Pre-CRMSNorm** (Jiang et al., NeurIPS 2023): a Pre-LN transformer computes the same
function once its main branch (the residual stream) is zero-mean, which centring the embedding and every
residual branch's output projection achieves; LayerNorm of a zero-mean vector is RMSNorm. Zero-mean
vectors in ``d`` dimensions are stored losslessly in ``d − 1`` (the last entry is minus the sum of the
others), and CRMSNorm normalizes the compressed vector: ``x / √((Σx² + (Σx)²)/d + ε)``.
``convert_pre_ln(model, compressed)`` re-parameterises a Pre-LN ``FlexiBERTEncoder`` in place; details:

- as in the authors' ``example.py``, output projections are centred over their outputs
  (``W − mean_rows W``, ``b − mean b``) and, for CRMSNorm, lose their last row; the linear layers a
  normalization feeds get the decompression folded in (``W[:, :−1] − W[:, −1:]``), LayerNorm's γ folded
  into their columns and β into their bias;
- the encoder's embedding LayerNorm (FlexiBERT's, absent from the paper's GPT/ViT) sees the centred
  embedding sum, so it becomes RMSNorm / CRMSNorm; its output γ⊙n + β is centred explicitly, once per
  forward pass, to start the residual stream at zero mean;
- ``LT`` layers (a fixed Fourier/DCT mix, no output projection) and the convolution half of ``DSC`` layers
  cannot take the folding: ``LT`` outputs are centred explicitly, and ``DSC`` layers get the normalization
  decompressed to ``d`` values with γ and β applied (their depthwise convolution pads with zeros, so β cannot
  move into a bias);
- for training in Pre-RMSNorm form the output projections re-centre their weights in every forward pass
  and the embeddings their rows (the authors' ``LinearZeroMeanOutput``), which keeps the equivalence under
  training; the compressed form needs no constraint: every ``d − 1``-dimensional parameter decompresses to
  a zero-mean one. Pruning masks and fake quantization act on the stored weights before the centring.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import SpaceError

TRANSFORMER_NORMS = ("un", "pre_rms", "pre_crms")
REPARAMETERISED = ("pre_rms", "pre_crms")


# -- Unified Normalization ---------------------------------------------------------------------------------


class _UnifiedNormFunction(torch.autograd.Function):
    """``y = γ·x/√(σ̂² + ε) + β`` with UN's smoothed approximate backward (statistics come from the module)."""

    @staticmethod
    def forward(ctx, x, weight, bias, var, r, norm):
        shape = [1, -1] + [1] * (x.dim() - 2)
        z = x / torch.sqrt(var + norm.eps).view(shape)
        ctx.norm = norm
        ctx.state = (norm.step, norm.last_skipped)
        ctx.save_for_backward(z, var, weight, r)
        return z * weight.view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx, grad_out):
        z, var, weight, r = ctx.saved_tensors
        norm = ctx.norm
        step, skipped = ctx.state
        shape = [1, -1] + [1] * (grad_out.dim() - 2)
        dims = [d for d in range(grad_out.dim()) if d != 1]
        g = grad_out * (weight * r).view(shape)
        gz = (g * z).mean(dim=dims)
        with torch.no_grad():
            norm.buffer_gz[step % norm.window] = norm.ema_gz if skipped else gz
            if step <= norm.window or step < norm.warmup or skipped:
                mean_gz = gz
            else:
                mean_gz = norm.buffer_gz.mean(dim=0)
            norm.ema_gz.mul_(norm.momentum).add_((1 - norm.momentum) * mean_gz)
            correction = mean_gz if skipped else norm.ema_gz.clone()
        grad_x = (g - correction.view(shape) * z) / torch.sqrt(var + norm.eps).view(shape)
        grad_weight = (grad_out * (r.view(shape) * z)).sum(dim=dims)
        return grad_x, grad_weight, grad_out.sum(dim=dims), None, None, None


class UnifiedNorm(nn.Module):
    """Unified Normalization (Yang et al., 2022) over dim 1 (channels), as the authors' ``UN1d``; see the module
    docstring for each detail and where it comes from."""

    def __init__(
        self,
        num_features: int,
        *,
        window: int = 4,
        warmup: int = 4000,
        compensation_after: int | None = None,
        outlier_filtration: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window, self.warmup, self.eps, self.momentum = window, warmup, eps, momentum
        self.compensation_after = max(1000, warmup) if compensation_after is None else compensation_after
        self.outlier_filtration = outlier_filtration
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("ema_gz", torch.zeros(num_features))
        self.register_buffer("buffer_x2", torch.zeros(window, num_features))
        self.register_buffer("buffer_gz", torch.zeros(window, num_features))
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))
        self.register_buffer("skipped", torch.zeros((), dtype=torch.long))
        self.step = 0
        self.last_skipped = False

    def extra_repr(self) -> str:
        return (
            f"{self.weight.numel()}, window={self.window}, warmup={self.warmup}, "
            f"outlier_filtration={self.outlier_filtration}"
        )

    def _statistic(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(σ̂², r, skipped) for this training batch; updates the window and the running statistic."""
        self.iterations += 1
        step = int(self.iterations)
        dims = [d for d in range(x.dim()) if d != 1]
        x2 = x.detach().pow(2).mean(dim=dims)
        skip = self.window <= 1
        recorded = self.buffer_x2.sqrt().var()  # over the whole window, before this batch enters it
        self.buffer_x2[step % self.window] = x2
        geometric = torch.exp(torch.log(self.buffer_x2).mean(dim=0))
        if step >= self.warmup and self.outlier_filtration:
            arithmetic = self.buffer_x2.mean(dim=0)
            if bool(((arithmetic - geometric) > recorded * self.window).any()):
                self.buffer_x2[step % self.window] = self.running_var
                skip = True
                self.skipped += 1
        var = x2 if (step <= self.window or step < self.warmup or skip) else geometric
        r = torch.sqrt(var + self.eps) / torch.sqrt(self.running_var + self.eps)
        r = torch.ones_like(r) if (step <= self.compensation_after or skip) else r.clamp(1 / 5, 5)
        self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        self.step, self.last_skipped = step, skip
        return var, r, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            shape = [1, -1] + [1] * (x.dim() - 2)
            z = x / torch.sqrt(self.running_var + self.eps).view(shape)
            return z * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            var, r, _ = self._statistic(x)
        return _UnifiedNormFunction.apply(x, self.weight, self.bias, var, r, self)


# -- Pre-RMSNorm / Pre-CRMSNorm ----------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / √(mean(x²) + ε)`` over the last dimension."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


def crms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """CRMSNorm of a zero-mean vector stored in ``d − 1`` values: ``x / √((Σx² + (Σx)²)/d + ε)``."""
    discarded = x.sum(dim=-1, keepdim=True)
    return x * torch.rsqrt((x.square().sum(dim=-1, keepdim=True) + discarded.square()) / (x.shape[-1] + 1) + eps)


def decompress(x: torch.Tensor) -> torch.Tensor:
    """The zero-mean ``d``-vector a compressed ``d − 1``-vector stands for (last entry: minus the sum)."""
    return torch.cat([x, -x.sum(dim=-1, keepdim=True)], dim=-1)


class ResidualNorm(nn.Module):
    """RMSNorm (``compressed=False``) or CRMSNorm of the residual stream, in ``B×L×C`` layout.

    ``affine``: γ and β applied to the (decompressed) result; ``center``: the result is centred (and, when
    compressed, compressed again) — the embedding normalization, which starts the residual stream.
    """

    def __init__(
        self,
        hidden: int,
        *,
        compressed: bool,
        eps: float,
        affine: bool = False,
        center: bool = False,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.compressed, self.eps, self.center = compressed, eps, center
        self.weight = nn.Parameter(weight.detach().clone()) if affine else None
        self.bias = nn.Parameter(bias.detach().clone()) if affine else None
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compressed:
            out = rms_norm(x, self.eps)
        else:
            out = crms_norm(x, self.eps)
            if self.weight is not None or self.center:
                out = decompress(out)
        if self.weight is not None:
            out = out * self.weight + self.bias
        if self.center:
            out = out - out.mean(dim=-1, keepdim=True)
            if self.compressed:
                out = out[..., :-1]
        return out


class ZeroMeanOutputLinear(nn.Linear):
    """A linear layer whose output has zero mean for every input: the weight's rows and the bias are centred in
    the forward pass (the authors' ``LinearZeroMeanOutput``), so training keeps the constraint."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean(dim=0, keepdim=True)
        bias = self.bias - self.bias.mean() if self.bias is not None else None
        return F.linear(x, weight, bias)


class ZeroMeanEmbedding(nn.Embedding):
    """An embedding whose vectors are centred when looked up (keeps the Pre-RMSNorm input zero-mean in training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out - out.mean(dim=-1, keepdim=True)


def _center_output(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output - output.mean(dim=-1, keepdim=True)


def _center_compress_output(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return (output - output.mean(dim=-1, keepdim=True))[..., :-1]


def _linear_like(old: nn.Linear, weight: torch.Tensor, bias: torch.Tensor, cls: type = nn.Linear) -> nn.Linear:
    new = cls(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def _centred_output(linear: nn.Linear, compressed: bool) -> nn.Linear:
    weight = linear.weight.detach() - linear.weight.detach().mean(dim=0, keepdim=True)
    bias = linear.bias.detach() - linear.bias.detach().mean()
    if compressed:
        return _linear_like(linear, weight[:-1], bias[:-1])
    return _linear_like(linear, weight, bias, ZeroMeanOutputLinear)


def _folded_input(linear: nn.Linear, norm: nn.LayerNorm) -> nn.Linear:
    """``linear(γ⊙n + β)`` as one linear layer of the compressed normalized vector (γ, β and decompression folded)."""
    weight = linear.weight.detach() * norm.weight.detach()
    bias = linear.bias.detach() + linear.weight.detach() @ norm.bias.detach()
    return _linear_like(linear, weight[:, :-1] - weight[:, -1:], bias)


def _check_pre_ln(model: nn.Module) -> None:
    from automl_plugins.architectures.flexibert.model import FlexiBERTEncoder

    if not isinstance(model, FlexiBERTEncoder) or model.placement != "pre":
        raise ValueError("Pre-(C)RMSNorm conversion takes a FlexiBERTEncoder built with norm_placement='pre'")
    norms = [model.embedding_norm, model.final_norm] + [
        n for layer in model.layers for n in (layer.norm_op, layer.norm_ff)
    ]
    if not all(type(n) is nn.LayerNorm and n.elementwise_affine and n.bias is not None for n in norms):
        raise ValueError("Pre-(C)RMSNorm conversion needs every normalization to be an affine nn.LayerNorm")


@torch.no_grad()
def convert_pre_ln(model: nn.Module, compressed: bool = False) -> nn.Module:
    """Re-parameterise a Pre-LN ``FlexiBERTEncoder`` in place as Pre-RMSNorm (or Pre-CRMSNorm when
    ``compressed``): the same function, with RMSNorm (CRMSNorm) on a zero-mean (compressed) residual stream.
    Returns the model."""
    from automl_plugins.architectures.flexibert.model import LinearTransform, SelfAttention, SeparableConvolution

    _check_pre_ln(model)
    eps = model.embedding_norm.eps
    hidden = model.tokens.embedding_dim
    stream = hidden - 1 if compressed else hidden
    for name in ("tokens", "positions"):
        old = getattr(model, name)
        centred = old.weight - old.weight.mean(dim=1, keepdim=True)
        cls = nn.Embedding if compressed else ZeroMeanEmbedding
        new = cls(old.num_embeddings, stream, device=centred.device, dtype=centred.dtype)
        new.weight.copy_(centred[:, :stream])
        setattr(model, name, new)
    emb = model.embedding_norm
    model.embedding_norm = ResidualNorm(
        hidden, compressed=compressed, eps=eps, affine=True, center=True, weight=emb.weight, bias=emb.bias
    )
    for layer in model.layers:
        op = layer.operation
        # The normalization in front of each branch, and the layers it feeds.
        if compressed and not isinstance(op, SeparableConvolution):
            if isinstance(op, SelfAttention):
                op.qkv = _folded_input(op.qkv, layer.norm_op)
            else:
                op.input = _folded_input(op.input, layer.norm_op)
            norm_op = ResidualNorm(hidden, compressed=True, eps=eps)
        else:
            ln = layer.norm_op
            norm_op = ResidualNorm(hidden, compressed=compressed, eps=eps, affine=True, weight=ln.weight, bias=ln.bias)
        if compressed:
            layer.feed_forward[0] = _folded_input(layer.feed_forward[0], layer.norm_ff)
            norm_ff = ResidualNorm(hidden, compressed=True, eps=eps)
        else:
            ln = layer.norm_ff
            norm_ff = ResidualNorm(hidden, compressed=False, eps=eps, affine=True, weight=ln.weight, bias=ln.bias)
        layer.norm_op, layer.norm_ff = norm_op, norm_ff
        # The branch outputs: centred (and compressed).
        if isinstance(op, LinearTransform):
            op.register_forward_hook(_center_compress_output if compressed else _center_output)
        else:
            op.out = _centred_output(op.out, compressed)
        layer.feed_forward[-1] = _centred_output(layer.feed_forward[-1], compressed)
    final = model.final_norm
    if compressed:
        model.head = _folded_input(model.head, final)
        model.final_norm = ResidualNorm(hidden, compressed=True, eps=eps)
    else:
        model.final_norm = ResidualNorm(
            hidden, compressed=False, eps=eps, affine=True, weight=final.weight, bias=final.bias
        )
    model.automl_norm_form = "pre_crms" if compressed else "pre_rms"
    return model


def layer_norm_factory(num_features: int, layout: str = "nlc") -> nn.Module:
    """What a Pre-(C)RMSNorm candidate is built with before its conversion: affine LayerNorm everywhere."""
    if layout != "nlc":
        raise SpaceError("Pre-RMSNorm and Pre-CRMSNorm are transformer normalizations", key="norms")
    return nn.LayerNorm(num_features)


def reparameterise(kind: str):
    """The candidate transform that converts a freshly built Pre-LN model to ``kind`` (pre_rms / pre_crms)."""
    compressed = kind == "pre_crms"

    def transform(model: nn.Module, _candidate: Any = None) -> None:
        convert_pre_ln(model, compressed)

    return transform


class _ChannelsLastUN(UnifiedNorm):
    """``UnifiedNorm`` on ``B×L×C`` token sequences (features last, the statistics over batch and tokens)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(-1, 1)).movedim(1, -1)


def unified_norm_factory(window: int = 4, warmup: int = 4000, outlier_filtration: bool = False):
    """The ``norm_layer(num_features, layout)`` factory of Unified Normalization; the gradient compensation
    starts with the smoothing, after ``warmup`` iterations."""

    def build(num_features: int, layout: str = "nchw") -> nn.Module:
        cls = _ChannelsLastUN if layout == "nlc" else UnifiedNorm
        return cls(
            num_features,
            window=window,
            warmup=warmup,
            compensation_after=warmup,
            outlier_filtration=outlier_filtration,
        )

    return build


def check_transformer_norms(space: Any, norms: list[str]) -> None:
    """Pre-(C)RMSNorm re-parameterises transformers only: a ``SpaceError`` for other architectures."""
    found = getattr(space, "architecture", None)  # (key, architecture dimension) or None
    kind = getattr(found[1], "arch_kind", None) if found else None
    chosen = [n for n in norms if n in REPARAMETERISED]
    if chosen and kind != "transformer":
        raise SpaceError(
            f"{', '.join(chosen)} re-parameterise Pre-LN transformers; this space's architecture is {kind!r}",
            key="norms",
        )


def apply_reparameterised(candidate: Any, kind: str, key: str) -> None:
    """Build ``candidate`` as a Pre-LN transformer and convert every built model to ``kind`` (``key``: the
    dimension's)."""
    candidate.norm_layer = layer_norm_factory
    candidate.build_options["norm_placement"] = "pre"
    candidate.add_transform(key, reparameterise(kind))
