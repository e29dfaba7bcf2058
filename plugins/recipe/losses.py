"""Classification losses and the dimension that chooses one.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` with ``N×K`` logits and ``N`` class
indices, returning the mean over the batch: what training and the loss-dependent proxies call.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import RECIPE, Dimension, Option, ScopedTrial, SpaceError

LOSSES = (
    "cross_entropy",
    "label_smoothing",
    "focal",
    "gce",
    "mae",
    "dice",
    "anyloss_f1",
    "anyloss_balanced_accuracy",
    "ensloss",
)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): −(1 − p_y)^γ log p_y; γ = 0 is cross-entropy."""

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        return (-(1 - log_p.exp()).pow(self.gamma) * log_p).mean()


class GeneralizedCrossEntropy(nn.Module):
    """Generalized cross-entropy (Zhang & Sabuncu, 2018), the comp-sum family's q-loss: (1 − p_y^q) / q.

    q → 0 tends to cross-entropy, q = 1 is the mean absolute error (up to a factor 2).
    """

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q}")
        self.q = q

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        return ((1 - p.clamp_min(1e-12).pow(self.q)) / self.q).mean()


class MAELoss(nn.Module):
    """Mean absolute error between the softmax and the one-hot target: Σ|p − y| = 2(1 − p_y)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=-1)
        return (p - F.one_hot(targets, p.shape[-1]).to(p.dtype)).abs().sum(dim=-1).mean()


class DiceLoss(nn.Module):
    """Soft Dice loss over classes: 1 − mean_k (2 Σ p_k y_k + s) / (Σ p_k + Σ y_k + s)."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=-1)
        y = F.one_hot(targets, p.shape[-1]).to(p.dtype)
        dice = (2 * (p * y).sum(0) + self.smooth) / (p.sum(0) + y.sum(0) + self.smooth)
        return 1 - dice.mean()


def soft_confusion(logits: torch.Tensor, targets: torch.Tensor, amplify: float = 73.0) -> torch.Tensor:
    """An approximated, differentiable confusion matrix C[true, predicted] (AnyLoss, Han et al. 2024).

    Class probabilities are pushed towards 0/1 by an amplifying sigmoid around 1/K, so each sample
    contributes nearly one count to the cell of its predicted class.
    """
    k = logits.shape[-1]
    p = F.softmax(logits, dim=-1)
    sharp = torch.sigmoid(amplify * (p - 1.0 / k))
    y = F.one_hot(targets, k).to(p.dtype)
    return y.t() @ sharp


class AnyLoss(nn.Module):
    """A classification metric made a loss through ``soft_confusion``: 1 − metric(C).

    ``metric``: ``f1`` (macro F1 over classes) or ``balanced_accuracy`` (mean per-class recall).
    """

    def __init__(self, metric: str = "f1", amplify: float = 73.0, eps: float = 1e-7) -> None:
        super().__init__()
        if metric not in ("f1", "balanced_accuracy"):
            raise ValueError(f"unknown AnyLoss metric {metric!r} (metrics: f1, balanced_accuracy)")
        self.metric = metric
        self.amplify = amplify
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        c = soft_confusion(logits, targets, self.amplify)
        tp = c.diagonal()
        actual = c.sum(dim=1)  # row sums: samples of each true class
        predicted = c.sum(dim=0)  # column sums: samples predicted as each class
        if self.metric == "balanced_accuracy":
            present = actual > 0  # classes absent from the batch have no recall
            return 1 - (tp[present] / (actual[present] + self.eps)).mean()
        f1 = 2 * tp / (actual + predicted + self.eps)
        return 1 - f1.mean()


class EnsLoss(nn.Module):
    """A stochastic ensemble of calibrated losses (in the spirit of EnsLoss, Wang et al. 2024).

    In training mode each call draws one loss at random from classification-calibrated ones
    (cross-entropy, focal, generalized cross-entropy, label smoothing), so training follows an
    ensemble of consistent surrogates; eval mode uses cross-entropy, so reported losses are comparable.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            [
                nn.CrossEntropyLoss(),
                FocalLoss(2.0),
                GeneralizedCrossEntropy(0.7),
                nn.CrossEntropyLoss(label_smoothing=0.1),
            ]
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.last = 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.members[0](logits, targets)
        self.last = int(torch.randint(len(self.members), (1,), generator=self.generator))
        return self.members[self.last](logits, targets)


def make_loss(kind: str, *, smoothing: float = 0.1, gamma: float = 2.0, q: float = 0.7, seed: int = 0) -> nn.Module:
    """The loss module of ``kind`` with its parameter."""
    if kind == "cross_entropy":
        return nn.CrossEntropyLoss()
    if kind == "label_smoothing":
        return nn.CrossEntropyLoss(label_smoothing=smoothing)
    if kind == "focal":
        return FocalLoss(gamma)
    if kind == "gce":
        return GeneralizedCrossEntropy(q)
    if kind == "mae":
        return MAELoss()
    if kind == "dice":
        return DiceLoss()
    if kind == "anyloss_f1":
        return AnyLoss("f1")
    if kind == "anyloss_balanced_accuracy":
        return AnyLoss("balanced_accuracy")
    if kind == "ensloss":
        return EnsLoss(seed)
    raise ValueError(f"unknown loss {kind!r} (losses: {', '.join(LOSSES)})")


class LossDimension(Dimension):
    name = "loss"
    kind = "loss"
    stage = RECIPE
    description = (
        "training loss: cross-entropy, label smoothing (ε), focal (γ), generalized CE (q), MAE, Dice, "
        "AnyLoss F1 / balanced accuracy, EnsLoss"
    )
    options = {
        "losses": Option(
            list, default=list(LOSSES), item_type=str, choices=LOSSES, min_items=1, help="losses to choose from"
        ),
        "smoothing": Option(
            list,
            default=[0.05, 0.2],
            item_type=float,
            min=0.0,
            max=0.99,
            min_items=2,
            help="label-smoothing ε range [low, high]",
        ),
        "gamma": Option(
            list, default=[0.5, 5.0], item_type=float, min=0.0, max=100.0, min_items=2, help="focal γ range [low, high]"
        ),
        "q": Option(
            list,
            default=[0.1, 1.0],
            item_type=float,
            min=0.01,
            max=1.0,
            min_items=2,
            help="generalized cross-entropy q range [low, high]",
        ),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for key in ("smoothing", "gamma", "q"):
            low, high, *rest = settings[key]
            if rest or low > high:
                raise SpaceError(f"expected [low, high] with low ≤ high, got {settings[key]}", key=key)

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        kind = trial.suggest_categorical("loss", self.settings["losses"])
        values: dict[str, float] = {}
        for loss_kind, param in (("label_smoothing", "smoothing"), ("focal", "gamma"), ("gce", "q")):
            if kind == loss_kind:
                low, high = self.settings[param]
                values[param] = trial.suggest_float(param, low, high)
        candidate.loss_fn = make_loss(kind, seed=candidate.seed, **values)
