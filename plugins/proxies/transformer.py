"""Training-free proxies for transformer encoders.

Models follow the transformer contract: ``model(tokens)`` → outputs, ``model.ffn_first_layers()`` →
the first ``nn.Linear`` of every feed-forward block (its output is the pre-activation),
``model.attention_modules()`` → the attention modules, which store ``last_attention`` (B × heads × N × N
probabilities) while ``model.record_attention`` is True; optionally ``model.projection_modules()`` → every
module that records ``last_projections`` (attention or not; the attention modules when absent).

- ``wpca`` (W-PCA, ICLR 2025): for every feed-forward block, the number of principal components of
  its pre-activation ((B·N) × D′, columns centred) holding more than η of the variance; score =
  parameters × Σ (or mean) over blocks. Eval mode, no gradients, averaged over ``batches`` minibatches.
- From Serianni & Kalita (ACL 2023), one forward and one backward of Σ outputs in train mode, shared:
  ``head_confidence`` (``source = "projections"``, the default and the reference's definition: for every
  per-token projection a token-mixing module computes from its input — queries, keys, values, the
  weighted queries of a ``WMA`` module, the input projection of a linear transform, each ``B×N×D`` as
  ``last_projections`` holds them — the mean
  over samples and features of its largest value over the tokens; summed over projections.
  ``source = "attention"``: Voita et al.'s head confidence, per attention module the mean over samples,
  heads and queries of the largest attention probability; summed over modules), ``softmax_confidence``
  (the reference's: the mean over the probabilities of the largest value across heads, summed over
  modules; ``modules = "reference"`` adds the softmax the reference's Fourier and cosine layers compute
  over their transformed blocks and discard),
  ``activation_distance`` (per feed-forward block, Σ_ij of the Hamming-agreement kernel c cᵀ + (1−c)(1−c)ᵀ
  of the tokens' binary activation codes, averaged over the sequences of the batch — the reference
  reads only the first; summed over blocks) and ``synaptic_saliency`` (Σ |W ⊙ ∂R/∂W| over the
  feed-forward Linear layers — every Linear of the ``nn.Sequential`` holding a first layer — with R the
  sum of ``model.encode(tokens)``, the encoder's last hidden states, when the model has ``encode``, else
  of its outputs). ``init = "reference"`` re-draws the weights as the reference does (N(0, 0.02²) for
  every Linear and Embedding weight, zero biases) before the pass; the default scores the model as built.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from automl import Option, Proxy, ProxyValue
from automl.costs import count_params
from automl.passes import PassProxy, SharedPass

REDUCTIONS = ("sum", "mean")


def _require(model: nn.Module, *methods: str) -> str | None:
    missing = [m for m in methods if not hasattr(model, m)]
    return f"the model lacks {', '.join(missing)} (not a transformer following the contract)" if missing else None


def components_for_variance(activations: torch.Tensor, eta: float) -> int:
    """Smallest k whose top-k principal components hold more than ``eta`` of the variance (0: no variance)."""
    x = activations.detach().reshape(-1, activations.shape[-1]).double()
    x = x - x.mean(dim=0, keepdim=True)
    covariance = (x.T @ x / max(len(x) - 1, 1)).cpu().numpy()
    eigenvalues = np.clip(np.linalg.eigvalsh(covariance)[::-1], 0.0, None)
    total = float(eigenvalues.sum())
    if total <= 0.0:
        return 0
    ratios = np.cumsum(eigenvalues) / total
    return int(min(np.searchsorted(ratios, eta, side="right") + 1, len(eigenvalues)))


class WpcaProxy(Proxy):
    name = "wpca"
    description = "parameters × Σ over feed-forward blocks of the PCA components holding η of the variance"
    applies_to = ("transformer",)
    options = {
        "eta": Option(
            float, default=0.99, min=0.0, min_exclusive=True, max=1.0, help="share of variance the components hold"
        ),
        "reduce": Option(str, default="sum", choices=REDUCTIONS, help="over feed-forward blocks"),
        "batches": Option(
            int, default=3, min=1, max=100, help="minibatches averaged (the scored one, then seeds 1, 2, …)"
        ),
    }

    def score(self, candidate, batch):
        device = batch.inputs.device
        model = candidate.build_model(device=device)
        missing = _require(model, "ffn_first_layers")
        if missing:
            return ProxyValue.nan(f"wpca: {missing}")
        model.eval()
        layers = list(model.ffn_first_layers())
        if not layers:
            return ProxyValue.nan("wpca: the model has no feed-forward blocks")
        captured: dict[int, torch.Tensor] = {}
        handles = [
            layer.register_forward_hook(lambda _m, _i, out, i=i: captured.__setitem__(i, out))
            for i, layer in enumerate(layers)
        ]
        values = []
        try:
            for b in range(self.settings["batches"]):
                inputs = batch.inputs if b == 0 else candidate.task.batch(len(batch), seed=b).inputs.to(device)
                captured.clear()
                with torch.no_grad():
                    model(inputs)
                counts = [components_for_variance(captured[i], self.settings["eta"]) for i in range(len(layers))]
                values.append(sum(counts) / (len(counts) if self.settings["reduce"] == "mean" else 1))
        finally:
            for handle in handles:
                handle.remove()
        params = count_params(model)
        return ProxyValue(params * float(np.mean(values)), None, {"components": values})


def feed_forward_linears(model: nn.Module, first_layers: list[nn.Linear]) -> list[nn.Linear]:
    """Every Linear of each feed-forward block: the Sequential holding a first layer, else the first layer alone."""
    firsts = {id(layer) for layer in first_layers}
    found: list[nn.Linear] = []
    covered: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Sequential) and any(id(child) in firsts for child in module.children()):
            found += [m for m in module.modules() if isinstance(m, nn.Linear)]
            covered |= {id(child) for child in module.children()}
    return found + [layer for layer in first_layers if id(layer) not in covered]


INITS = ("default", "reference")


def reference_init(model: nn.Module, seed: int) -> None:
    """Re-initialise as the reference (ELECTRA/BERT) does: Linear and Embedding weights N(0, 0.02²), biases 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)


def reference_dct_matrix(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The unnormalised DCT-II the reference's cosine layers use: ``y_k = 2 Σ_n x_n cos(π k (2n + 1) / 2N)``."""
    n = torch.arange(size, device=device, dtype=dtype)
    return 2.0 * torch.cos(math.pi / size * (n[None, :] + 0.5) * n[:, None])


def discarded_transform_softmax(module: nn.Module, projected: torch.Tensor) -> torch.Tensor | None:
    """The softmax the reference's Fourier/cosine layer computes over its transformed blocks and discards.

    ``projected`` is the layer's input projection (B×N×H); the blocks are B×heads×N×d, transformed by
    ``fft2`` (real part) or the unnormalised 2-D DCT-II, then softmax over the last axis. ``None`` for a
    module that is not a linear transform (no ``kind`` of DFT/DCT).
    """
    kind, heads = getattr(module, "kind", None), getattr(module, "heads", None)
    if kind not in ("DFT", "DCT") or not heads:
        return None
    b, n, h = projected.shape
    blocks = projected.view(b, n, heads, h // heads).transpose(1, 2)
    if kind == "DFT":
        mixed = torch.fft.fft2(blocks.float(), dim=(-2, -1)).real
    else:
        rows = reference_dct_matrix(n, projected.device, projected.dtype)
        columns = reference_dct_matrix(h // heads, projected.device, projected.dtype)
        mixed = rows @ blocks @ columns.T
    return torch.softmax(mixed, dim=-1)


def hidden_feed_forward_layers(model: nn.Module, first_layers: list[nn.Linear]) -> list[list[nn.Linear]]:
    """Per feed-forward block, every Linear followed by an activation (all but the block's output layer)."""
    firsts = {id(layer) for layer in first_layers}
    blocks = []
    for module in model.modules():
        children = list(module.children()) if isinstance(module, nn.Sequential) else []
        if any(id(child) in firsts for child in children):
            blocks.append(
                [
                    child
                    for child, after in pairwise(children)
                    if isinstance(child, nn.Linear) and not isinstance(after, nn.Linear)
                ]
            )
    covered = {id(layer) for block in blocks for layer in block}
    return blocks + [[layer] for layer in first_layers if id(layer) not in covered]


class TransformerPass(SharedPass):
    """Train mode, attention recorded, feed-forward pre-activations captured, backward of Σ outputs."""

    def run(self) -> None:
        inputs = self.batch.inputs
        model = self.candidate.build_model(device=inputs.device)
        if self.proxies and self.proxies[0].settings.get("init") == "reference":
            reference_init(model, self.candidate.seed)
        missing = _require(model, "ffn_first_layers", "attention_modules")
        if missing:
            raise ValueError(missing)
        model.train()
        ffn = list(model.ffn_first_layers())
        attention = list(model.attention_modules())
        # Models that mix tokens without attention too (linear transforms) list every projecting module.
        projecting = list(model.projection_modules()) if hasattr(model, "projection_modules") else attention
        pre_activations: list[torch.Tensor] = []
        handles = []
        if "ffn_codes" in self.needs:
            handles = [
                layer.register_forward_hook(lambda _m, _i, out: pre_activations.append(out.detach())) for layer in ffn
            ]
        hidden: list[list[torch.Tensor]] = []
        if "ffn_codes_every_layer" in self.needs:
            for block in hidden_feed_forward_layers(model, ffn):
                hidden.append([])
                handles += [
                    layer.register_forward_hook(lambda _m, _i, out, into=hidden[-1]: into.append(out.detach()))
                    for layer in block
                ]
        model.record_attention = bool(self.needs & {"attention", "projections", "transform_softmax"})
        try:
            # The reference differentiates the encoder's last hidden states, not a task head's outputs.
            outputs = model.encode(inputs) if hasattr(model, "encode") else model(inputs)
        finally:
            for handle in handles:
                handle.remove()
            model.record_attention = False
        if "attention" in self.needs:
            self.results["attention"] = [
                m.last_attention.detach() for m in attention if getattr(m, "last_attention", None) is not None
            ]
        if "projections" in self.needs:
            self.results["projections"] = [
                None if getattr(m, "last_projections", None) is None else [t.detach() for t in m.last_projections]
                for m in projecting
            ]
        if "transform_softmax" in self.needs:
            self.results["transform_softmax"] = [
                softmax
                for m in projecting
                if getattr(m, "last_projections", None)
                and (softmax := discarded_transform_softmax(m, m.last_projections[0].detach())) is not None
            ]
        self.results["ffn_pre_activations"] = pre_activations
        self.results["ffn_hidden_pre_activations"] = hidden
        if "saliency" in self.needs:
            saliency_layers = feed_forward_linears(model, ffn)
            weights = [layer.weight for layer in saliency_layers]
            grads = torch.autograd.grad(outputs.sum(), weights, allow_unused=True)
            self.results["saliency"] = [
                (w.detach(), torch.zeros_like(w) if g is None else g.detach()) for w, g in zip(weights, grads)
            ]


class TransformerPassProxy(PassProxy):
    applies_to = ("transformer",)
    shared_pass = TransformerPass
    options = {
        "reduce": Option(str, default="sum", choices=REDUCTIONS, help="over modules"),
        "init": Option(
            str,
            default="default",
            choices=INITS,
            help="weights the pass scores: the model's own (default) or re-drawn as the reference's "
            "N(0, 0.02²) Linear/Embedding weights with zero biases",
        ),
    }

    def pass_key(self):
        # Proxies asking for different initialisations cannot share one model.
        return (self.shared_pass, self.settings["init"])

    def reduce(self, values: list[float], what: str) -> float | ProxyValue:
        if not values:
            if self.settings["reduce"] == "sum":
                # A sum over no modules is 0, as in the reference (an encoder without attention layers).
                return ProxyValue(0.0, None, {"modules": 0})
            return ProxyValue.nan(f"{self.name}: the model has no {what} to average over")
        total = float(sum(values)) / (len(values) if self.settings["reduce"] == "mean" else 1)
        return total if math.isfinite(total) else ProxyValue.nan(f"{self.name} is not finite ({total})")


HEAD_CONFIDENCE_SOURCES = ("projections", "attention")


def projection_confidence(projection: torch.Tensor) -> float:
    """Mean over samples and features of the largest value over the tokens of a ``B×N×D`` projection."""
    return float(projection.max(dim=1).values.mean())


class HeadConfidenceProxy(TransformerPassProxy):
    name = "head_confidence"
    description = (
        "Σ over token-mixing projections (queries, keys, values…) of the mean of their largest value over tokens"
    )
    options: ClassVar[dict[str, Option]] = {
        **TransformerPassProxy.options,
        "source": Option(
            str,
            default="projections",
            choices=HEAD_CONFIDENCE_SOURCES,
            help="projections: the reference's (Serianni & Kalita) Q/K/V outputs; "
            "attention: Voita et al.'s largest attention probability per query",
        ),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        # What the shared pass must record depends on the source; an instance attribute shadows the class's.
        self.requires = frozenset({settings.get("source", "projections")})

    def read(self, shared):
        if self.settings["source"] == "attention":
            values = [float(a.max(dim=-1).values.mean()) for a in shared.results["attention"]]
            return self.reduce(values, "recorded attention")
        recorded = shared.results["projections"]
        if any(p is None for p in recorded):
            return ProxyValue.nan(
                "head_confidence: a token-mixing module does not record last_projections "
                '(the transformer contract\'s per-token projections); use source = "attention"'
            )
        values = [projection_confidence(t) for projections in recorded for t in projections]
        return self.reduce(values, "attention projections")


class SoftmaxConfidenceProxy(TransformerPassProxy):
    """Σ over attention modules of the mean largest attention probability across heads.

    ``modules = "attention"`` (default): the attention probabilities only, so an encoder without attention
    scores 0. ``modules = "reference"``: also the softmax the reference's Fourier and cosine layers compute
    over their transformed head blocks (B×heads×N×d, softmax over d) and discard, which its softmax hook
    catches; the cosine layers' transform is then the reference's unnormalised DCT-II.
    """

    name = "softmax_confidence"
    description = "Σ over attention modules of the mean largest attention probability across heads"
    requires = frozenset({"attention"})
    options: ClassVar[dict[str, Option]] = {
        **TransformerPassProxy.options,
        "modules": Option(
            str,
            default="attention",
            choices=("attention", "reference"),
            help="attention: attention softmaxes; reference: also the discarded softmax of Fourier/cosine layers",
        ),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        if settings.get("modules") == "reference":
            self.requires = frozenset({"attention", "transform_softmax"})

    def read(self, shared):
        maps = list(shared.results["attention"])
        if self.settings["modules"] == "reference":
            maps += shared.results["transform_softmax"]
        values = [float(a.max(dim=1).values.mean()) for a in maps]
        return self.reduce(values, "recorded attention")


def agreement_total(codes: torch.Tensor) -> torch.Tensor:
    """Σ_ij of c cᵀ + (1−c)(1−c)ᵀ over the tokens (rows) of each sequence of a B×N×D′ code tensor."""
    return (codes @ codes.transpose(1, 2) + (1 - codes) @ (1 - codes).transpose(1, 2)).sum(dim=(1, 2))


class ActivationDistanceProxy(TransformerPassProxy):
    """Σ over feed-forward blocks of the Hamming-agreement kernel total of the tokens' activation codes.

    ``form = "default"``: the first feed-forward layer of each block, averaged over the sequences of the
    minibatch. ``form = "reference"``: as the reference hooks the activation function, the codes after
    every hidden feed-forward layer of a block (one to three), each a term, of the first sequence only.
    """

    name = "activation_distance"
    description = "Σ over feed-forward blocks of the Hamming-agreement kernel total of tokens' activation codes"
    requires = frozenset({"ffn_codes"})
    options: ClassVar[dict[str, Option]] = {
        **TransformerPassProxy.options,
        "form": Option(
            str,
            default="default",
            choices=("default", "reference"),
            help="default: first layer, batch mean; reference: every hidden layer, first sequence",
        ),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        if settings.get("form") == "reference":
            self.requires = frozenset({"ffn_codes_every_layer"})

    def read(self, shared):
        if self.settings["form"] == "reference":
            values = [
                float(agreement_total((pre[:1] > 0).double().reshape(1, -1, pre.shape[-1]))[0])
                for block in shared.results["ffn_hidden_pre_activations"]
                for pre in block
            ]
            return self.reduce(values, "feed-forward blocks")
        values = []
        for pre in shared.results["ffn_pre_activations"]:
            # Codes of ReLU/GELU outputs: positive exactly where the pre-activation is positive.
            codes = (pre > 0).double().reshape(pre.shape[0], -1, pre.shape[-1])  # B × N × D′
            agree = codes @ codes.transpose(1, 2) + (1 - codes) @ (1 - codes).transpose(1, 2)
            values.append(float(agree.sum(dim=(1, 2)).mean()))
        return self.reduce(values, "feed-forward blocks")


class SynapticSaliencyProxy(TransformerPassProxy):
    name = "synaptic_saliency"
    description = "Σ |W ⊙ ∂(Σ encoder states)/∂W| over the feed-forward Linear layers"
    requires = frozenset({"saliency"})

    def read(self, shared):
        values = [float((w * g).abs().sum()) for w, g in shared.results["saliency"]]
        return self.reduce(values, "feed-forward layers")
