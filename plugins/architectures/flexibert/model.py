"""A heterogeneous transformer encoder built from an ``EncoderSpec``.

Contract (proxies and training evaluators rely on it):

- ``model(tokens)`` with ``tokens`` ``B×N`` (long) returns ``B×N×V`` logits for a language-modelling or
  masked-LM task, ``B×classes`` (from the mean of the last layer's token states) for text classification;
- ``model.ffn_first_layers()``: the first ``nn.Linear`` of each layer's feed-forward block (its output is
  the block's first pre-activation, which the W-PCA proxy reads through a hook);
- ``model.attention_modules()``: the modules that compute attention (``SA`` layers and the attention half
  of ``DSC`` layers); after a forward with ``model.record_attention = True`` each holds ``last_attention``,
  the ``B×heads×N×N`` softmax weights;
- ``model.projection_modules()``: every layer's token-mixing module; with ``record_attention`` each holds
  ``last_projections``, the ``B×N×D`` per-token projections it computed from its input (queries, keys,
  values and, for ``WMA``, the weighted queries; the input projection of ``LT``), which the reference
  head confidence reads;
- ``options["norm_placement"]``: ``"post"`` (default; ``x = norm(x + f(x))``, as BERT), ``"pre"``
  (``x = x + f(norm(x))``, with a final norm) or ``"peri"`` (``x = x + norm_out(f(norm_in(x)))``);
- ``norm_layer(num_features, layout="nlc")`` makes every normalization (``nn.LayerNorm`` by default).

Operations follow the models the FlexiBERT GLUE benchmark trained (Serianni & Kalita's ELECTRA variant):
``SA`` self-attention with a linear output projection, ``SDP`` scaled dot-product ``softmax(QKᵀ/√d)V`` or
``WMA`` weighted multiplicative ``softmax(Q W Kᵀ/√d)V`` with a learned ``d×d`` matrix per head; ``LT`` an
input projection, then a fixed linear transform of each head's ``N×d`` block, ``DFT`` the real part of the
2-D Fourier transform (as FNet) or ``DCT`` the 2-D orthonormal DCT-II; ``DSC`` ConvBERT's mixed attention,
half the heads self-attention and half span-based dynamic convolutions whose kernels (5 or 9 taps) come from
a depthwise-separable convolution, with a linear output projection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from automl_plugins.architectures.flexibert.spec import EncoderSpec, LayerSpec

NORM_PLACEMENTS = ("post", "pre", "peri")
NormLayer = Callable[..., nn.Module]


def layer_norm(num_features: int, layout: str = "nlc") -> nn.Module:
    return nn.LayerNorm(num_features)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kind: str) -> None:
        super().__init__()
        self.heads, self.head_dim, self.kind = heads, hidden // heads, kind
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.weight = nn.Parameter(torch.eye(self.head_dim).repeat(heads, 1, 1)) if kind == "WMA" else None
        self.record = False
        self.last_attention: torch.Tensor | None = None
        self.last_projections: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The width comes from the heads, not the input: a Pre-CRMSNorm input is one narrower.
        b, n, h = x.shape[0], x.shape[1], self.heads * self.head_dim
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q_plain = q
        if self.weight is not None:
            q = q @ self.weight
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        self.last_attention = attention if self.record else None
        self.last_projections = None
        if self.record:
            # Back to B×N×H, the layout of a separate query/key/value Linear's output.
            projections = [q_plain, k, v] + ([q] if self.weight is not None else [])
            self.last_projections = [t.transpose(1, 2).reshape(b, n, h) for t in projections]
        return self.out((attention @ v).transpose(1, 2).reshape(b, n, h))


def dct_matrix(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The orthonormal DCT-II matrix: ``y = M @ x`` transforms along the first axis."""
    n = torch.arange(size, device=device, dtype=dtype)
    matrix = torch.cos(math.pi / size * (n[None, :] + 0.5) * n[:, None]) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


class LinearTransform(nn.Module):
    """An input projection, then a fixed 2-D transform of each head's ``N×d`` block (no softmax, no weights)."""

    def __init__(self, hidden: int, heads: int, kind: str) -> None:
        super().__init__()
        self.heads, self.kind = heads, kind
        self.input = nn.Linear(hidden, hidden)
        self.record = False
        self.last_projections: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.input(x)
        b, n, h = projected.shape
        self.last_projections = [projected] if self.record else None
        blocks = projected.view(b, n, self.heads, h // self.heads).transpose(1, 2)  # B×heads×N×d
        if self.kind == "DFT":
            mixed = torch.fft.fft2(blocks.float(), dim=(-2, -1)).real.to(x.dtype)
        else:
            seq = dct_matrix(n, x.device, x.dtype)
            feat = dct_matrix(h // self.heads, x.device, x.dtype)
            mixed = seq @ blocks @ feat.T
        return mixed.transpose(1, 2).reshape(b, n, h)


class SeparableConvolution(nn.Module):
    """ConvBERT's mixed attention: half the heads attend, the other half are span-based dynamic convolutions.

    ``heads // 2`` (at least 1) attention heads of width ``hidden // heads`` over queries, keys and values;
    as many convolution heads, whose kernel (``kernel`` taps, softmax-normalised) is computed per token from
    the queries times a depthwise-separable convolution of the input, applied to a projection of the input.
    Both halves are concatenated and projected back to the hidden size.
    """

    def __init__(self, hidden: int, heads: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.heads = max(1, heads // 2)
        self.head_dim = hidden // heads
        width = self.heads * self.head_dim
        self.query = nn.Linear(hidden, width)
        self.key = nn.Linear(hidden, width)
        self.value = nn.Linear(hidden, width)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False)
        self.pointwise = nn.Conv1d(hidden, width, 1)
        self.kernel_weights = nn.Linear(width, self.heads * kernel)
        self.span = nn.Linear(hidden, width)
        self.out = nn.Linear(2 * width, hidden)
        self.record = False
        self.last_attention: torch.Tensor | None = None
        self.last_projections: list[torch.Tensor] | None = None

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # B×heads×N×d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)
        attention = torch.softmax(self._split(q) @ self._split(k).transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        self.last_attention = attention if self.record else None
        self.last_projections = [q, k, v] if self.record else None
        attended = (attention @ self._split(v)).transpose(1, 2)  # B×N×heads×d
        # Dynamic convolution: a kernel per token and head from the queries and the convolved keys.
        key_conv = self.pointwise(self.depthwise(x.transpose(1, 2))).transpose(1, 2)  # B×N×width
        taps = torch.softmax(self.kernel_weights(key_conv * q).view(b, n, self.heads, 1, self.kernel), dim=-1)
        pad = self.kernel // 2
        spans = nn.functional.pad(self.span(x), (0, 0, pad, self.kernel - 1 - pad))  # B×(N+k−1)×width
        windows = spans.unfold(1, self.kernel, 1).reshape(b, n, self.heads, self.head_dim, self.kernel)
        convolved = (windows * taps).sum(dim=-1)  # B×N×heads×d
        return self.out(torch.cat([attended, convolved], dim=2).reshape(b, n, -1))


def make_operation(spec: LayerSpec, hidden: int) -> nn.Module:
    if spec.operation == "SA":
        return SelfAttention(hidden, spec.heads, spec.parameter)
    if spec.operation == "LT":
        return LinearTransform(hidden, spec.heads, spec.parameter)
    return SeparableConvolution(hidden, spec.heads, int(spec.parameter))


class FeedForward(nn.Sequential):
    """``ff_count`` hidden layers of width ``ff_dim`` (GELU) and a projection back to the hidden size."""

    def __init__(self, hidden: int, ff_dim: int, ff_count: int) -> None:
        layers: list[nn.Module] = []
        width = hidden
        for _ in range(ff_count):
            layers += [nn.Linear(width, ff_dim), nn.GELU()]
            width = ff_dim
        super().__init__(*layers, nn.Linear(width, hidden))

    @property
    def first(self) -> nn.Linear:
        return self[0]


class EncoderLayer(nn.Module):
    def __init__(self, spec: LayerSpec, hidden: int, placement: str, norm: NormLayer) -> None:
        super().__init__()
        self.placement = placement
        self.operation = make_operation(spec, hidden)
        self.feed_forward = FeedForward(hidden, spec.ff_dim, spec.ff_count)
        self.norm_op = norm(hidden, layout="nlc")
        self.norm_ff = norm(hidden, layout="nlc")
        if placement == "peri":
            self.norm_op_out = norm(hidden, layout="nlc")
            self.norm_ff_out = norm(hidden, layout="nlc")

    def _block(self, x: torch.Tensor, f: nn.Module, norm: nn.Module, name: str) -> torch.Tensor:
        if self.placement == "post":
            return norm(x + f(x))
        if self.placement == "pre":
            return x + f(norm(x))
        return x + getattr(self, f"{name}_out")(f(norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._block(x, self.operation, self.norm_op, "norm_op")
        return self._block(x, self.feed_forward, self.norm_ff, "norm_ff")


class FlexiBERTEncoder(nn.Module):
    def __init__(
        self,
        spec: EncoderSpec,
        *,
        vocab_size: int,
        max_positions: int,
        num_classes: int = 0,
        norm_layer: NormLayer | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        options = dict(options or {})
        placement = options.get("norm_placement") or "post"
        if placement not in NORM_PLACEMENTS:
            raise ValueError(f"norm_placement {placement!r} is not one of {', '.join(NORM_PLACEMENTS)}")
        norm = norm_layer or layer_norm
        hidden = spec.hidden
        self.spec = spec
        self.placement = placement
        self.tokens = nn.Embedding(vocab_size, hidden)
        self.positions = nn.Embedding(max_positions, hidden)
        self.embedding_norm = norm(hidden, layout="nlc")
        self.layers = nn.ModuleList(EncoderLayer(layer, hidden, placement, norm) for layer in spec.layers)
        self.final_norm = norm(hidden, layout="nlc") if placement == "pre" else nn.Identity()
        self.classify = num_classes > 0
        self.head = nn.Linear(hidden, num_classes if self.classify else vocab_size)

    @property
    def record_attention(self) -> bool:
        return any(m.record for m in self.projection_modules())

    @record_attention.setter
    def record_attention(self, value: bool) -> None:
        for module in self.projection_modules():
            module.record = bool(value)

    def attention_modules(self) -> list[nn.Module]:
        """The modules that compute attention probabilities (``SA`` and the attention half of ``DSC``)."""
        return [
            layer.operation
            for layer in self.layers
            if isinstance(layer.operation, (SelfAttention, SeparableConvolution))
        ]

    def projection_modules(self) -> list[nn.Module]:
        """Every token-mixing module, each recording its per-token input projections (all three kinds)."""
        return [layer.operation for layer in self.layers]

    def ffn_first_layers(self) -> list[nn.Linear]:
        return [layer.feed_forward.first for layer in self.layers]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last layer's token states, ``B×N×H``."""
        n = tokens.shape[1]
        if n > self.positions.num_embeddings:
            raise ValueError(f"sequence of {n} tokens is longer than max_positions={self.positions.num_embeddings}")
        x = self.tokens(tokens) + self.positions(torch.arange(n, device=tokens.device))
        x = self.embedding_norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states = self.encode(tokens)
        return self.head(states.mean(dim=1) if self.classify else states)


__all__ = ["NORM_PLACEMENTS", "FlexiBERTEncoder"]
