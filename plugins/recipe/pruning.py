"""Pruning masks through ``torch.nn.utils.prune``: magnitude, random, SNIP, SynFlow, channel (Ln), N:M.

Masks are real: ``prune`` keeps ``weight_orig`` and a ``weight_mask`` buffer and the forward pass uses
their product, so pruned weights are zero in every forward pass and stay zero under training (their
gradient is masked too). Every function here prunes a model in place; the dimension at the bottom
chooses among them per trial.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from automl import MODEL, Dimension, Option, ScopedTrial, SpaceError
from automl_plugins.recipe import _weights
from automl_plugins.recipe._weights import weight_layers

METHODS = ("magnitude", "random", "snip", "synflow", "channel", "nm")
SCOPES = ("global", "layer")


def prunable_layers(model: nn.Module, skip_last: bool = True) -> list[tuple[str, nn.Module]]:
    """The Conv and Linear layers a mask may go on; the last one (the classifier) is kept whole by default."""
    layers = weight_layers(model)
    return layers[:-1] if skip_last and len(layers) > 1 else layers


def _finish(modules: list[nn.Module]) -> None:
    # A new prune hook lands after the weight pipeline's: put the pipeline back last. It also leaves
    # ``weight`` a plain tensor until the next forward pass, so a freshly pruned model can be deep-copied.
    for module in modules:
        if hasattr(module, "weight_mask"):
            _weights.install(module)


def prune_unstructured(
    model: nn.Module,
    sparsity: float | Mapping[str, float],
    method: str = "magnitude",
    *,
    scores: Mapping[str, torch.Tensor] | None = None,
    skip_last: bool = True,
    seed: int = 0,
    min_density: float = 0.0,
) -> None:
    """Unstructured masks: a float ``sparsity`` is global (ranked over every layer together), a mapping
    gives each layer (by module name) its own. ``method``: ``magnitude`` (|w|), ``random``, or ``snip``
    (``scores`` from ``snip_scores``).

    The number of weights removed is ``round(sparsity × count)``, exactly. ``min_density`` guards a
    global ranking against layer collapse (a layer losing every weight cuts the network, Tanaka et al.
    2020): each layer's ``ceil(min_density × n)`` best-scored weights are never removed and the global
    ranking runs over the rest. When the guard leaves fewer weights than the sparsity asks to remove,
    every unguarded weight goes and the model ends a little denser than asked.
    """
    layers = prunable_layers(model, skip_last)
    if method == "snip" and scores is None:
        raise ValueError("snip pruning needs scores (see snip_scores)")
    generator = torch.Generator().manual_seed(seed)

    def score_of(name: str, module: nn.Module) -> torch.Tensor:
        weight = _weights.effective_weight(module).detach()
        if method == "magnitude":
            return weight.abs()
        if method == "random":
            return torch.rand(weight.shape, generator=generator).to(weight.device)
        if method == "snip":
            return scores[name].to(weight.device)
        raise ValueError(f"unknown unstructured pruning method {method!r} (methods: magnitude, random, snip)")

    all_scores = {name: score_of(name, module) for name, module in layers}
    # Weights pruned already (an earlier mask) rank lowest so a mask never revives them.
    for name, module in layers:
        mask = getattr(module, "weight_mask", None)
        if mask is not None:
            all_scores[name] = torch.where(mask.bool(), all_scores[name], torch.full_like(all_scores[name], -1.0))
    if isinstance(sparsity, Mapping):
        for name, module in layers:
            amount = float(sparsity.get(name, 0.0))
            _apply_mask(module, _lowest_mask(all_scores[name], amount))
    else:
        flat = torch.cat([s.flatten().float().cpu() for s in all_scores.values()])
        guarded = torch.cat([_top_mask(s.flatten().float().cpu(), min_density) for s in all_scores.values()])
        keep = _lowest_mask(flat, float(sparsity), guarded)
        offset = 0
        for name, module in layers:
            n = all_scores[name].numel()
            _apply_mask(module, keep[offset : offset + n].view_as(all_scores[name]).to(all_scores[name].device))
            offset += n
    _finish([m for _, m in layers])


def _lowest_mask(scores: torch.Tensor, amount: float, guarded: torch.Tensor | None = None) -> torch.Tensor:
    """A 0/1 mask that zeroes the ``round(amount × n)`` lowest scores (ties broken by position), never
    a ``guarded`` one (fewer are zeroed when the guard leaves too few)."""
    n = scores.numel()
    k = round(amount * n)
    flat = scores.flatten().float()
    if guarded is not None:
        guarded = guarded.flatten().to(flat.device)
        k = min(k, n - int(guarded.sum()))
        flat = torch.where(guarded, torch.full_like(flat, float("inf")), flat)
    mask = torch.ones(n, device=scores.device)
    if k > 0:
        order = torch.argsort(flat, stable=True)
        mask[order[:k]] = 0.0
    return mask.view_as(scores)


def _top_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """True at the ``ceil(density × n)`` highest scores (ties broken by position)."""
    count = min(math.ceil(density * scores.numel() - 1e-9), scores.numel()) if density > 0 else 0
    top = torch.zeros(scores.numel(), dtype=torch.bool)
    if count:
        top[torch.argsort(scores.flatten(), descending=True, stable=True)[:count]] = True
    return top


def _apply_mask(module: nn.Module, mask: torch.Tensor) -> None:
    prune.custom_from_mask(module, "weight", mask.to(dtype=module.weight.dtype))


def snip_scores(model: nn.Module, batch: Any, loss: nn.Module, skip_last: bool = True) -> dict[str, torch.Tensor]:
    """Connection sensitivity |∂L/∂w ⊙ w| of each prunable weight on one minibatch (SNIP, Lee et al. 2019).

    Computed on a copy, so the model's batch-norm statistics and gradients stay untouched.
    """
    probe = copy.deepcopy(model)
    probe.train()
    device = next(probe.parameters()).device
    inputs, targets = batch.inputs.to(device), batch.targets.to(device)
    logits = probe(inputs)
    if logits.dim() > 2:
        logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    probe.zero_grad(set_to_none=True)
    loss(logits, targets).backward()
    out = {}
    for name, module in prunable_layers(probe, skip_last):
        weight = getattr(module, "weight_orig", None)
        weight = module.weight if weight is None else weight
        grad = weight.grad if weight.grad is not None else torch.zeros_like(weight)
        out[name] = (grad * weight).detach().abs()
    return out


def prune_synflow(
    model: nn.Module,
    sparsity: float | Mapping[str, float],
    example_input: torch.Tensor,
    *,
    iterations: int = 100,
    skip_last: bool = True,
    min_density: float = 0.0,
) -> None:
    """Iterative SynFlow (Tanaka et al. 2020): prune to ``sparsity`` in ``iterations`` rounds without
    data, re-scoring the surviving weights each round. A float sparsity ranks every layer together (the
    paper's global scope), a mapping ranks within each layer.

    Scores are S(θ) = |θ ⊙ ∂R/∂θ| with R = 1ᵀ(∏ₗ|θ⁽ˡ⁾|)1: every parameter and buffer replaced by its
    absolute value (the layers' weights as the forward pass computes them, masks applied), a float64
    copy in eval mode, one all-ones input. Round k keeps the fraction (1 − sparsity)^(k/n) of the
    prunable weights (the exponential schedule of the paper; eval mode, the absolute values of
    buffers too, and 100 rounds follow the authors' code). ``min_density`` guards each layer as in
    ``prune_unstructured``. Conserving the synaptic flow is what keeps a layer from collapsing.
    """
    layers = prunable_layers(model, skip_last)
    if not layers:
        return
    probe = copy.deepcopy(model).double().eval()
    probe_layers = dict(prunable_layers(probe, skip_last))
    with torch.no_grad():
        for name, module in _weights.weight_layers(probe):
            weight = _weights.effective_weight(module).detach().abs()
            # The probe's layers compute exactly |θ| ⊙ mask: no standardization or quantization on top.
            module.automl_ws_gain = None
            module.automl_standardize = False
            module.automl_weight_quant = None
            if hasattr(module, "weight_orig"):
                module.weight_orig.copy_(weight)
            else:
                _weights.install(module)
                module.weight_orig.copy_(weight)
        for tensor in list(probe.parameters()) + list(probe.buffers()):
            if tensor.is_floating_point():
                tensor.abs_()
        for module in probe_layers.values():
            _weights.install(module)
    device = next(iter(probe_layers.values())).weight_orig.device
    ones = torch.ones((1, *example_input.shape[1:]), dtype=example_input.dtype, device=device)
    ones = ones.double() if ones.is_floating_point() else ones
    for k in range(1, iterations + 1):
        scores = synflow_scores(probe, ones, skip_last)
        for name, module in probe_layers.items():
            scores[name] = torch.where(module.weight_mask.bool(), scores[name], torch.full_like(scores[name], -1.0))
        masks = _round_masks(scores, sparsity, k / iterations, min_density)
        with torch.no_grad():
            for name, module in probe_layers.items():
                module.weight_mask.copy_(masks[name].to(module.weight_mask))
    for name, module in layers:
        _apply_mask(module, probe_layers[name].weight_mask.detach().to(module.weight.device, module.weight.dtype))
    _finish([m for _, m in layers])


def _round_masks(
    scores: dict[str, torch.Tensor], sparsity: float | Mapping[str, float], progress: float, min_density: float
) -> dict[str, torch.Tensor]:
    """One round of the exponential schedule: keep the fraction (1 − sparsity)^progress, ranked over
    every layer together (a float sparsity) or within each layer (a mapping)."""
    if isinstance(sparsity, Mapping):
        return {
            name: _lowest_mask(v, 1.0 - (1.0 - float(sparsity.get(name, 0.0))) ** progress)
            for name, v in scores.items()
        }
    flat = torch.cat([v.flatten().float().cpu() for v in scores.values()])
    guarded = torch.cat([_top_mask(v.flatten().float().cpu(), min_density) for v in scores.values()])
    keep = _lowest_mask(flat, 1.0 - (1.0 - float(sparsity)) ** progress, guarded)
    out, offset = {}, 0
    for name, v in scores.items():
        out[name] = keep[offset : offset + v.numel()].view_as(v)
        offset += v.numel()
    return out


def synflow_scores(probe: nn.Module, ones: torch.Tensor, skip_last: bool = True) -> dict[str, torch.Tensor]:
    """|θ ⊙ ∂R/∂θ| of every prunable layer's weight, R the sum of ``probe``'s output on ``ones``
    (``probe`` already holds absolute values: see ``prune_synflow``)."""
    probe.zero_grad(set_to_none=True)
    output = probe(ones)
    output.sum().backward()
    out = {}
    for name, module in prunable_layers(probe, skip_last):
        grad = module.weight.grad if module.weight.grad is not None else torch.zeros_like(module.weight)
        out[name] = (module.weight * grad).detach().abs()
    return out


def prune_channels(
    model: nn.Module, sparsity: float | Mapping[str, float], norm: int = 1, *, skip_last: bool = True
) -> None:
    """Structured pruning: remove the output channels (rows) with the smallest Ln norm in each layer.

    ``round(sparsity × out_channels)`` channels per layer, exactly (``prune.ln_structured``), except that
    one channel always stays: a layer without outputs would cut the network.
    """
    layers = prunable_layers(model, skip_last)
    for name, module in layers:
        amount = float(sparsity.get(name, 0.0)) if isinstance(sparsity, Mapping) else float(sparsity)
        channels = module.weight.shape[0]
        count = min(round(amount * channels), channels - 1)
        if count > 0:
            prune.ln_structured(module, "weight", amount=count, n=norm, dim=0)
    _finish([m for _, m in layers])


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest-magnitude weights in every group of ``m`` consecutive input channels.

    Groups run along the input-channel axis (dim 1), the reduction axis of the matrix product a sparse
    tensor core takes: a Linear ``out × in`` weight has groups ``w[o, i:i+m]``; a convolution
    ``out × in × kh × kw`` has a group ``w[o, i:i+m, y, x]`` at every (output channel, kernel position),
    the layout of NVIDIA's 2:4 sparsity for convolutions (the implicit GEMM reduces over input channels
    with the kernel position outermost). When ``in`` is not a multiple of ``m`` the last, shorter group
    keeps up to ``n`` of its real members.
    """
    scores = weight.detach().abs()
    if scores.dim() < 2:
        raise ValueError(f"N:M masks need a weight with an input-channel axis, got shape {tuple(weight.shape)}")
    # Input channels last: (out, kh, kw, in) for convolutions, (out, in) for Linear layers.
    lanes = scores.movedim(1, -1)
    fan_in = lanes.shape[-1]
    pad = (-fan_in) % m
    if pad:
        # Padding ranks below every real weight (scores are ≥ 0), so it is never kept over one.
        filler = torch.full((*lanes.shape[:-1], pad), -1.0, device=lanes.device, dtype=lanes.dtype)
        lanes = torch.cat([lanes, filler], dim=-1)
    groups = lanes.reshape(*lanes.shape[:-1], -1, m)
    top = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, top, 1.0)
    mask = mask.reshape(*lanes.shape)[..., :fan_in]
    return mask.movedim(-1, 1).contiguous()


def prune_nm(model: nn.Module, n: int = 2, m: int = 4, *, skip_last: bool = True) -> None:
    """N:M semi-structured sparsity (2:4 runs fast on sparse tensor cores) on every prunable layer."""
    layers = prunable_layers(model, skip_last)
    for _, module in layers:
        existing = getattr(module, "weight_mask", None)
        scores = _weights.effective_weight(module).detach().abs()
        if existing is not None:
            scores = scores * existing
        _apply_mask(module, nm_mask(scores, n, m))
    _finish([m for _, m in layers])


def sparsity_of(model: nn.Module, skip_last: bool = True) -> float:
    """The fraction of zero weights over the prunable layers (as the masks leave them)."""
    zeros = total = 0
    for _, module in prunable_layers(model, skip_last):
        weight = _weights.effective_weight(module)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / max(total, 1)


class PruningDimension(Dimension):
    name = "pruning"
    kind = "pruning"
    stage = MODEL
    description = (
        "weight pruning masks: magnitude, random, SNIP or iterative SynFlow (global or per-layer sparsity), "
        "channel pruning (Ln) or N:M"
    )
    options = {
        "methods": Option(
            list,
            default=list(METHODS),
            item_type=str,
            choices=METHODS,
            min_items=1,
            help="pruning methods to choose from",
        ),
        "sparsities": Option(
            list,
            default=[0.0, 0.5, 0.75, 0.9],
            item_type=float,
            min=0.0,
            max=0.99,
            min_items=1,
            help="sparsities to choose from (fraction of weights removed)",
        ),
        "scopes": Option(
            list,
            default=["global"],
            item_type=str,
            choices=SCOPES,
            min_items=1,
            help="global: one sparsity ranked over all layers; layer: a sparsity per layer",
        ),
        "channel_norms": Option(
            list, default=[1, 2], item_type=int, choices=(1, 2), min_items=1, help="the Ln norm that ranks channels"
        ),
        "patterns": Option(list, default=["2:4"], item_type=str, min_items=1, help="N:M patterns, e.g. 2:4"),
        "min_layer_density": Option(
            float,
            default=0.05,
            min=0.0,
            max=0.5,
            help="global sparsity keeps at least this fraction of every layer's weights (0: no guard "
            "against layer collapse)",
        ),
        "snip_batch_size": Option(int, default=64, min=1, max=4096, help="minibatch size for SNIP's sensitivities"),
        "synflow_iterations": Option(
            int, default=100, min=1, max=1000, help="SynFlow's pruning rounds (the paper's exponential schedule)"
        ),
        "skip_last": Option(bool, default=True, help="never prune the last layer (the classifier)"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for i, pattern in enumerate(settings["patterns"]):
            n, _, m = pattern.partition(":")
            if not (n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
                raise SpaceError(f"{pattern!r} is not an N:M pattern with 0 < N < M", key=f"patterns[{i}]")

    def validate(self, space: Any) -> None:
        _weights.require_architecture(space, self.name)

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        method = trial.suggest_categorical("method", self.settings["methods"])
        skip_last = self.settings["skip_last"]
        if method == "nm":
            pattern = trial.suggest_categorical("pattern", self.settings["patterns"])
            n, m = (int(v) for v in pattern.split(":"))
            candidate.add_transform(trial.prefix, lambda model, _c: prune_nm(model, n, m, skip_last=skip_last))
            return
        scope = trial.suggest_categorical("scope", self.settings["scopes"])
        if scope == "global":
            sparsity: float | dict[str, float] = trial.suggest_categorical("sparsity", self.settings["sparsities"])
        else:
            # Define-by-run: one choice per prunable layer of this candidate's own model.
            sparsity = {
                name: trial.suggest_categorical(f"sparsity.{name}", self.settings["sparsities"])
                for name, _ in prunable_layers(candidate.reference_model, skip_last)
            }
        norm = trial.suggest_categorical("norm", self.settings["channel_norms"]) if method == "channel" else 1
        values = sparsity.values() if isinstance(sparsity, dict) else [sparsity]
        if not any(values):
            # Nothing pruned: every method gives the same model, so they share one candidate id (and cache entry).
            candidate.set_canonical(trial.prefix, "dense")
            return
        if method == "channel":
            candidate.add_transform(
                trial.prefix, lambda model, _c: prune_channels(model, sparsity, norm, skip_last=skip_last)
            )
            return
        batch_size = self.settings["snip_batch_size"]
        min_density = self.settings["min_layer_density"] if scope == "global" else 0.0
        if min_density:
            # The guard changes the masks, so it is part of what identifies the candidate.
            candidate.set_canonical(
                trial.prefix, {"method": method, "scope": scope, "sparsity": sparsity, "min_layer_density": min_density}
            )

        if method == "synflow":
            iterations = self.settings["synflow_iterations"]

            def synflow_transform(model: nn.Module, cand: Any) -> None:
                prune_synflow(
                    model,
                    sparsity,
                    cand.task.example_input(),
                    iterations=iterations,
                    skip_last=skip_last,
                    min_density=min_density,
                )

            candidate.add_transform(trial.prefix, synflow_transform)
            return

        def transform(model: nn.Module, cand: Any) -> None:
            scores = None
            if method == "snip":
                scores = snip_scores(model, cand.task.batch(batch_size, seed=cand.seed), cand.loss, skip_last)
            prune_unstructured(
                model, sparsity, method, scores=scores, skip_last=skip_last, seed=cand.seed, min_density=min_density
            )

        candidate.add_transform(trial.prefix, transform)
