"""Fire Together Wire Together (Elkerdawy et al., CVPR 2022): dynamic channel pruning with self-supervised masks.

Every convolution unit (convolution → normalization, NAS-Bench-201's ReLU-conv-BN) gets a small gate that
predicts, *per input*, which of its output channels to compute. The gate is trained with a self-supervised
target taken from the unit's own dense output (the "heavy" layer): the channels that carry the top
``mass`` of the activation magnitude::

    a_c   = max_{h,w} |y_c|,      p_c = a_c / Σ_c a_c
    keep  = the channels in descending p order while the cumulative sum ≤ mass (up to 1e-5)
    loss  = CE + λ · mean_units Σ_c mean_batch BCE(gate logit_c, keep_c)

and the unit's output is multiplied by the gate's binary decision ``σ(logit) > 0.5``, in training and at
inference, so masked channels need not be computed. Details from the authors' code (github.com/selkerdawy/
FTWT, ``utils/layers.py``, ``utils/utils.py``, ``cifar.py``), which the paper leaves open:

- the gate reads the unit's input, averaged over space, then a softmax over channels, then a 1×1 convolution
  (here a linear layer) with bias to one logit per output channel (``MaskPredictorNN`` with the default
  ``embedding = -1``, ``softmax = 1``);
- "decoupled" training (the default): the gate sees the input detached, and the binary decision carries no
  gradient, so the gate learns from its BCE loss only and the backbone from the task loss through the masked
  output; λ = 1 until ``cooldown`` (half) of the steps, then 0 (the gates stop learning);
- the per-layer BCE is averaged over the batch and summed over channels, then averaged over layers;
- FLOPs per input: a unit computes ``active channels × output positions × in/groups × k²``
  multiply-accumulates; the average over inputs is the dynamic cost.

Simplified here: the authors train the gates with their own SGD optimizer (lr 0.1, no weight decay); here
they share the candidate's optimizer. The FLOPs figure counts the output channels each gate turns off; the
authors also discount the input channels a previous gated layer turned off, which in NAS-Bench-201's cells
(nodes sum several edges) is not a single layer's mask, so that saving is not claimed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import MODEL, Batch, Dimension, Option, ScopedTrial
from automl.costs import compute_costs
from automl_plugins.recipe import _weights


def activation_mass_target(out: torch.Tensor, mass: float, delta: float = 1e-5) -> torch.Tensor:
    """The self-supervised target (``B×C`` of 0/1): per input, the output channels that hold the top ``mass``
    of the activation magnitude (max over positions of |y|)."""
    strength = out.detach().abs().amax(dim=tuple(range(2, out.dim()))) if out.dim() > 2 else out.detach().abs()
    share = strength / strength.sum(dim=1, keepdim=True).clamp_min(1e-12)
    target = torch.ones_like(share)
    if mass >= 1:
        target[share <= delta] = 0.0
        return target
    ordered, order = share.sort(dim=1, descending=True)
    beyond = (ordered.cumsum(dim=1) - mass) > delta
    target.scatter_(1, order, (~beyond).to(target.dtype))
    return target


class ChannelGate(nn.Module):
    """The mask predictor: spatial mean of the input → softmax over channels → linear → one logit per channel."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x
        return self.linear(torch.softmax(pooled, dim=1))


class GatedUnit(nn.Module):
    """A convolution unit whose output channels are switched per input by a ``ChannelGate``."""

    def __init__(self, unit: nn.Sequential, mass: float) -> None:
        super().__init__()
        self.unit = unit
        index = next(i for i, m in enumerate(unit) if isinstance(m, nn.Conv2d))
        self.conv_index = index
        conv = unit[index]
        self.gate = ChannelGate(conv.in_channels, conv.out_channels)
        self.mass = mass
        self.last_loss: torch.Tensor | None = None
        self.record = False
        self.active: list[torch.Tensor] = []
        self.positions = 0

    @property
    def conv(self) -> nn.Conv2d:
        return self.unit[self.conv_index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modules = list(self.unit)  # (slicing would rebuild a Sequential subclass such as ReLUConvBN)
        h = x
        for module in modules[: self.conv_index]:
            h = module(h)  # what the convolution reads (after NB201's ReLU)
        out = h
        for module in modules[self.conv_index :]:
            out = module(out)
        logits = self.gate(h.detach())
        self.last_loss = None
        if self.training:
            target = activation_mass_target(out, self.mass)
            # Averaged over the batch, summed over channels (the authors' per-layer loss).
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            self.last_loss = loss.mean(dim=0).sum()
        with torch.no_grad():
            binary = (torch.sigmoid(logits) > 0.5).to(out.dtype)
        if self.record:
            self.active.append(binary.sum(dim=1).cpu())
            self.positions = out.shape[2] * out.shape[3]
        return out * binary.view(*binary.shape, *([1] * (out.dim() - 2)))

    def dense_macs(self) -> float:
        """Multiply-accumulates of the dense convolution for one input."""
        conv = self.conv
        k = conv.kernel_size[0] * conv.kernel_size[1]
        return float(conv.out_channels * self.positions * (conv.in_channels // conv.groups) * k)


def _units(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    """Convolution units to gate: Sequentials holding one Conv2d followed by a normalization (ReLU-conv-BN)."""
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential) or isinstance(module, GatedUnit):
            continue
        convs = [i for i, m in enumerate(module) if isinstance(m, nn.Conv2d)]
        if len(convs) == 1 and convs[0] < len(module) - 1 and name:
            out.append((name, module))
    return out


def add_gates(model: nn.Module, mass: float) -> list[GatedUnit]:
    """Wrap every convolution unit of ``model`` in a ``GatedUnit`` (in place); returns the gated units."""
    gated = []
    for name, unit in _units(model):
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        device = next(unit.parameters()).device
        wrapped = GatedUnit(unit, mass).to(device)
        setattr(parent, leaf, wrapped)  # Sequential and ModuleList children are named "0", "1", ...
        gated.append(wrapped)
    return gated


def gated_units(model: nn.Module) -> list[GatedUnit]:
    return [m for m in model.modules() if isinstance(m, GatedUnit)]


@torch.no_grad()
def dynamic_flops(model: nn.Module, data: Batch, batch_size: int = 256) -> dict[str, float]:
    """The average per-input multiply-accumulates with the gates' masks, beside the dense figure.

    ``flops`` of ``automl.costs`` (gates included) minus, for every gated unit, the work of the output channels
    its gate turned off, averaged over the inputs of ``data`` (eval mode).
    """
    units = gated_units(model)
    example = data.inputs[:1]
    dense = float(compute_costs(model, example)["flops"])
    for unit in units:
        unit.record, unit.active = True, []
    was_training = model.training
    model.eval()
    try:
        for first in range(0, len(data), batch_size):
            model(data.inputs[first : first + batch_size])
    finally:
        model.train(was_training)
        for unit in units:
            unit.record = False
    saved = 0.0
    fractions = []
    for unit in units:
        active = torch.cat(unit.active).double().mean().item()
        fraction = active / unit.conv.out_channels
        fractions.append(fraction)
        saved += unit.dense_macs() * (1 - fraction)
        unit.active = []
    return {
        "ftwt_flops": dense - saved,
        "ftwt_dense_flops": dense,
        "ftwt_active_fraction": sum(fractions) / max(len(fractions), 1),
    }


class FireTogetherTraining:
    """Training hook: adds the gates' mask loss (weight 1 until ``cooldown`` of the steps, then 0) and, after
    training, measures the per-input FLOPs on the validation split."""

    def __init__(self, cooldown: float = 0.5) -> None:
        self.cooldown = cooldown
        self.weight = 1.0

    def before_step(self, _model: nn.Module, step: int, total_steps: int) -> None:
        self.weight = 0.0 if step >= int(self.cooldown * total_steps) else 1.0

    def extra_loss(self, model: nn.Module) -> torch.Tensor:
        losses = [u.last_loss for u in gated_units(model) if u.last_loss is not None]
        if not losses or self.weight == 0:
            return torch.zeros(())
        return self.weight * torch.stack(losses).mean()

    def after_training(
        self, model: nn.Module, _train: Batch, val: Batch, _criterion: nn.Module, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        return dynamic_flops(model, val, settings.get("eval_batch_size", 256))


class DynamicPruningDimension(Dimension):
    name = "dynamic_pruning"
    kind = "dynamic_pruning"
    # Before the static pruning masks and bit-widths (MODEL, MODEL + 5), which then apply to the gated units.
    stage = MODEL - 1
    description = (
        "Fire Together Wire Together: per-input channel masks from small gates trained on the top activation "
        "mass of each convolution's output"
    )
    options = {
        "gate": Option(list, default=[False, True], item_type=bool, min_items=1, help="whether to add the gates"),
        "masses": Option(
            list,
            default=[1.0, 0.95, 0.9],
            item_type=float,
            min=0.05,
            max=1.0,
            min_items=1,
            help="activation mass the kept channels must hold (1: drop only dead channels)",
        ),
        "cooldown": Option(
            float, default=0.5, min=0.0, max=1.0, help="fraction of the steps the gates learn (then they freeze)"
        ),
    }

    def validate(self, space: Any) -> None:
        _weights.require_architecture(space, self.name)

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        if not trial.suggest_categorical("gate", self.settings["gate"]):
            candidate.set_canonical(trial.prefix, "static")
            return
        mass = trial.suggest_categorical("mass", self.settings["masses"])
        candidate.add_transform(trial.prefix, lambda model, _c: add_gates(model, mass))
        candidate.recipe.setdefault("training_hooks", []).append(FireTogetherTraining(self.settings["cooldown"]))
