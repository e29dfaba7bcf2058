"""Classification and metric-learning losses, and the dimension that chooses one.

Every loss is an ``nn.Module`` called as ``loss(logits, targets)`` with ``N×K`` logits and ``N`` class
indices, returning the mean over the batch: what training and the loss-dependent proxies call.
Targets equal to ``-100`` (masked language-model positions) are left out, as ``nn.CrossEntropyLoss``
leaves them out. ``multi_similarity`` reads the ``N×K`` outputs as embeddings, not logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import RECIPE, Dimension, Option, ScopedTrial, SpaceError

IGNORE_INDEX = -100

#: The losses that train a classifier (the dimension's default choices).
CLASSIFICATION_LOSSES = (
    "cross_entropy",
    "label_smoothing",
    "focal",
    "comp_sum",
    "sum_exponential",
    "gce",
    "mae",
    "constrained",
    "dice",
    "anyloss_accuracy",
    "anyloss_f1",
    "anyloss_fbeta",
    "anyloss_gmean",
    "anyloss_balanced_accuracy",
    "ensloss",
)
#: Every loss; ``multi_similarity`` trains embeddings (score them with the training evaluator's
#: ``metric = "recall_at_1"``).
LOSSES = (*CLASSIFICATION_LOSSES, "multi_similarity")

ANYLOSS_METRICS = ("accuracy", "f_beta", "gmean", "balanced_accuracy")
CONSTRAINED_PHIS = ("exponential", "squared_hinge", "hinge")


def _kept(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose target is not ``IGNORE_INDEX``."""
    if (targets == IGNORE_INDEX).any():
        keep = targets != IGNORE_INDEX
        return logits[keep], targets[keep]
    return logits, targets


def _empty(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): −(1 − p_y)^γ log p_y; γ = 0 is cross-entropy."""

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = _kept(logits, targets)
        if not len(targets):
            return _empty(logits)
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        return (-(1 - log_p.exp()).pow(self.gamma) * log_p).mean()


# -- comp-sum and constrained losses (Mao, Mohri & Zhong, ICML 2023) ---------------------------------


class CompSumLoss(nn.Module):
    """The comp-sum family (Mao, Mohri & Zhong, "Cross-Entropy Loss Functions: Theoretical Analysis
    and Applications", ICML 2023): ℓ_τ = Φ_τ(Σ_{y'≠y} exp(h_y' − h_y)) with

        Φ_τ(u) = log(1 + u)                              τ = 1
        Φ_τ(u) = (1 − (1 + u)^(1−τ)) / (τ − 1)           τ ≥ 0, τ ≠ 1

    Since 1/(1 + u) is the softmax probability p_y, ℓ_τ = (1 − p_y^(τ−1)) / (τ − 1): τ = 0 is the
    sum-exponential loss Σ_{y'≠y} exp(h_y' − h_y), τ = 1 the logistic loss (cross-entropy),
    τ ∈ (1, 2) the generalized cross-entropy of Zhang & Sabuncu (2018) with q = τ − 1, and τ = 2 the
    mean absolute error 1 − p_y (half the L1 distance ‖p − e_y‖₁ of Ghosh et al., 2017).
    """

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        if tau < 0:
            raise ValueError(f"tau must be ≥ 0, got {tau}")
        self.tau = float(tau)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = _kept(logits, targets)
        if not len(targets):
            return _empty(logits)
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        if self.tau == 1.0:
            return -log_p.mean()
        # −expm1 keeps (1 − p^(τ−1)) / (τ − 1) accurate for τ near 1.
        return (-torch.expm1((self.tau - 1.0) * log_p) / (self.tau - 1.0)).mean()


class ConstrainedLoss(nn.Module):
    """A constrained loss (Lee, Lin & Wahba, 2004), as analysed beside the comp-sum losses by Mao,
    Mohri & Zhong: ℓ = Σ_{y'≠y} Φ(−h_y') for scores with Σ_y h_y = 0.

    ``phi``: ``exponential`` Φ(t) = e^(−t), ``squared_hinge`` Φ(t) = max(0, 1 − t)², ``hinge``
    Φ(t) = max(0, 1 − t). The paper states the constraint on the hypothesis set; here the scores are
    the centred logits h = logits − mean(logits), which satisfy it and predict the same class.
    """

    def __init__(self, phi: str = "squared_hinge") -> None:
        super().__init__()
        if phi not in CONSTRAINED_PHIS:
            raise ValueError(f"unknown constrained-loss Φ {phi!r} (choices: {', '.join(CONSTRAINED_PHIS)})")
        self.phi = phi

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = _kept(logits, targets)
        if not len(targets):
            return _empty(logits)
        h = logits - logits.mean(dim=-1, keepdim=True)
        if self.phi == "exponential":
            terms = h.exp()  # Φ(−h) = e^h
        elif self.phi == "squared_hinge":
            terms = F.relu(1 + h).pow(2)
        else:
            terms = F.relu(1 + h)
        others = 1 - F.one_hot(targets, h.shape[-1]).to(h.dtype)
        return (terms * others).sum(dim=-1).mean()


# -- self-adjusting Dice (Li et al., ACL 2020) -------------------------------------------------------


class DiceLoss(nn.Module):
    """Self-adjusting Dice loss (Li et al., "Dice Loss for Data-imbalanced NLP Tasks", ACL 2020).

    Per example and class, with p̃ = (1 − p)^α · p (the self-adjusting factor that deemphasises
    confident examples) and the smoothing γ:

        DSC = (2 p̃ y + γ) / (p̃ + y + γ),    loss = mean over examples of Σ_k (1 − DSC_k)

    The per-example form and the (1 − p)^α factor are the paper's (Table 1). The paper states DSC for
    the positive class of a binary task; for K classes the sum over classes of each class's
    one-vs-rest term is the authors' public code (``DiceLoss._multiple_class``), and so is γ = 1 by
    default (their training scripts). ``square_denominator`` uses p̃² + y² + γ below the fraction, as the
    authors' scripts do (``--dice_square``), following Milletari et al.'s squared form. A one-column
    output is read as the positive-class logit of a binary task (sigmoid).
    """

    def __init__(self, alpha: float = 1.0, gamma: float = 1.0, square_denominator: bool = False) -> None:
        super().__init__()
        if alpha < 0 or gamma < 0:
            raise ValueError(f"alpha and gamma must be ≥ 0, got {alpha}, {gamma}")
        self.alpha = alpha
        self.gamma = gamma
        self.square_denominator = square_denominator

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = _kept(logits, targets)
        if not len(targets):
            return _empty(logits)
        if logits.dim() == 1 or logits.shape[-1] == 1:
            p = torch.sigmoid(logits.reshape(-1, 1))
            y = targets.reshape(-1, 1).to(p.dtype)
        else:
            p = F.softmax(logits, dim=-1)
            y = F.one_hot(targets, p.shape[-1]).to(p.dtype)
        p_adj = (1 - p).pow(self.alpha) * p
        if self.square_denominator:
            denominator = p_adj.pow(2) + y.pow(2) + self.gamma
        else:
            denominator = p_adj + y + self.gamma
        dsc = (2 * p_adj * y + self.gamma) / denominator
        return (1 - dsc).sum(dim=-1).mean()


# -- AnyLoss (Han, Moniz & Chawla, 2024) ---------------------------------------------------------------


def amplify(p: torch.Tensor, scale: float = 73.0) -> torch.Tensor:
    """AnyLoss's approximation function A(p) = 1 / (1 + e^(−L (p − 0.5))): pushes a probability
    towards 0 or 1 so that sums of A(p) approximate counts of predictions."""
    return torch.sigmoid(scale * (p - 0.5))


def soft_confusion(
    labels: torch.Tensor, predicted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(TP, FN, FP, TN) summed over the batch (dim 0) from 0/1 ``labels`` and soft predictions.

    Written as the AnyLoss authors' code does: TP = Σ y ŷ, FN = Σ y − TP, FP = Σ ŷ − TP and
    TN = N − Σ y − Σ ŷ + TP. With ``N×K`` inputs each column is one class against the rest.
    """
    tp = (labels * predicted).sum(dim=0)
    positives = labels.sum(dim=0)
    predicted_positives = predicted.sum(dim=0)
    n = labels.new_tensor(float(labels.shape[0]))
    return tp, positives - tp, predicted_positives - tp, n - positives - predicted_positives + tp


def confusion_metric(
    metric: str,
    tp: torch.Tensor,
    fn: torch.Tensor,
    fp: torch.Tensor,
    tn: torch.Tensor,
    beta: float = 1.0,
    eps: float = 1e-5,
) -> torch.Tensor:
    """A metric of the (soft) confusion matrix, as AnyLoss defines it for the positive class.

    ``accuracy`` (TP + TN) / N; ``f_beta`` (1 + β²) TP / (β² (TP + FN) + TP + FP); ``gmean``
    √(TPR · TNR); ``balanced_accuracy`` (TPR + TNR) / 2. ``eps`` (the authors' 1e-5) keeps the
    denominators away from zero.
    """
    positives, negatives = tp + fn, tn + fp
    if metric == "accuracy":
        return (tp + tn) / (positives + negatives)
    if metric == "f_beta":
        b2 = beta * beta
        return (1 + b2) * tp / (b2 * positives + tp + fp + eps)
    if metric == "gmean":
        return (tp * tn / (positives * negatives + eps) + eps).sqrt()
    if metric == "balanced_accuracy":
        return (negatives * tp + positives * tn) / (2 * positives * negatives + eps)
    raise ValueError(f"unknown AnyLoss metric {metric!r} (metrics: {', '.join(ANYLOSS_METRICS)})")


class AnyLoss(nn.Module):
    """A confusion-matrix metric made a loss: 1 − metric(soft confusion matrix) (Han, Moniz & Chawla,
    "AnyLoss: Transforming Classification Metrics into Loss Functions", 2024).

    **Binary tasks (two logits, or one)**, exactly as published: p is the positive-class probability
    (softmax over two logits = sigmoid of their difference), ŷ = A(p) with the amplifying scale L
    (``scale``, 73 in the authors' experiments), the confusion matrix of ``soft_confusion`` and the
    metric of ``confusion_metric`` for the positive class (class 1). The G-mean is √(TPR · TNR) as in the
    authors' Section 3 code; their later quick-start code drops the square root.

    **More than two classes** (an extension, not in the paper): one-vs-rest soft confusion from the
    softmax, macro-averaged over the classes present in the batch; ``accuracy`` is instead the K-class
    accuracy Σ_k TP_k / N, because a mean of one-vs-rest accuracies is dominated by the true negatives
    (on digits it stays at chance). Class k's soft prediction is ŷ_k = σ((L/2)(p_k − max_{j≠k} p_j)),
    near 1 when k wins the argmax and near 0 otherwise: for two classes it is exactly the paper's A(p)
    (p_1 − p_0 = 2(p_1 − 0.5)), an example with a clear winner counts once, and the loss rewards
    argmax = y, not p_y > 1/K.
    """

    def __init__(self, metric: str = "f_beta", scale: float = 73.0, beta: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__()
        if metric not in ANYLOSS_METRICS:
            raise ValueError(f"unknown AnyLoss metric {metric!r} (metrics: {', '.join(ANYLOSS_METRICS)})")
        self.metric = metric
        self.scale = scale
        self.beta = beta
        self.eps = eps

    def soft_predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """ŷ: ``N`` positive-class predictions (binary) or ``N×K`` one-vs-rest predictions."""
        if logits.dim() == 1 or logits.shape[-1] == 1:
            return amplify(torch.sigmoid(logits.reshape(-1)), self.scale)
        p = F.softmax(logits, dim=-1)
        if p.shape[-1] == 2:
            return amplify(p[:, 1], self.scale)
        top2 = p.topk(2, dim=-1).values
        best_other = torch.where(p >= top2[:, :1], top2[:, 1:2], top2[:, :1])
        return torch.sigmoid(0.5 * self.scale * (p - best_other))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = _kept(logits, targets)
        if not len(targets):
            return _empty(logits)
        predicted = self.soft_predictions(logits)
        if predicted.dim() == 1:
            labels = targets.to(predicted.dtype)
            return 1 - confusion_metric(self.metric, *soft_confusion(labels, predicted), self.beta, self.eps)
        labels = F.one_hot(targets, predicted.shape[-1]).to(predicted.dtype)
        tp, fn, fp, tn = soft_confusion(labels, predicted)
        if self.metric == "accuracy":
            # The K-class accuracy, trace / N: a mean of one-vs-rest accuracies is dominated by the
            # true negatives and is best served by predicting no class at all.
            return 1 - tp.sum() / len(targets)
        per_class = confusion_metric(self.metric, tp, fn, fp, tn, self.beta, self.eps)
        present = labels.sum(dim=0) > 0
        return 1 - per_class[present].mean()


# -- EnsLoss (Dai, ICML 2025) --------------------------------------------------------------------------


def inverse_box_cox(z: torch.Tensor, lam: float) -> torch.Tensor:
    """The inverse Box-Cox transform: e^z for λ = 0, max(1 + λz, 0)^(1/λ) otherwise."""
    if lam == 0:
        return z.exp()
    return (1 + lam * z).clamp_min(0).pow(1 / lam)


class EnsLoss(nn.Module):
    """EnsLoss (Ben Dai, "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing Overfitting in
    Classification", ICML 2025): every training batch gets a new random *calibrated loss-derivative*.

    The impact of a margin loss φ on SGD is its derivative φ'(z) at the margins z = y f(x). A convex
    φ is classification-calibrated iff φ'(0) < 0 (Bartlett et al., 2006), so the method draws
    derivatives instead of losses: one random non-decreasing (convexity), negative (calibration)
    sequence per batch, and steps along Σ φ'(z_i) ∇z_i. As in the authors' code (``losses.ensLoss``):
    derivatives are −BC⁻¹(ε; λ) with ε ~ N(0, 1) (the inverse Box-Cox transform, λ = ``lam``; λ = 0
    makes them log-normal), clipped at −1, sorted and assigned in the order of the batch's margins
    (with a margin-0 anchor in the ranking, as one version of their code has; another leaves it out,
    which moves each draw by at most one rank), divided by z where z > 1 (a decaying tail) and shifted
    by −10⁻⁶ to stay strictly negative. The value returned is Σ φ'(z_i) z_i / N with φ' held fixed: its
    gradient is the EnsLoss step, its value is no loss level. In eval mode it is cross-entropy, so
    validation losses stay comparable.

    The paper is binary: with two logits f = logit_1 − logit_0 (one logit: f itself). With K > 2
    classes (an extension) every example gives K one-vs-rest margins z_ik = ±logit_ik (+ for k = y),
    all ranked together under the batch's one random loss, summed over classes.
    """

    def __init__(self, lam: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.lam = lam
        self.generator = torch.Generator().manual_seed(seed)

    def derivatives(self, margins: torch.Tensor) -> torch.Tensor:
        """One random calibrated loss-derivative per margin (a flat tensor), without gradient."""
        z = torch.cat([margins.detach().flatten(), margins.new_zeros(1)])
        draws = -inverse_box_cox(torch.randn(len(z), generator=self.generator), self.lam)
        draws = draws.clamp_min(-1.0).sort().values.to(z.device, z.dtype)
        grad = torch.empty_like(z)
        grad[z.argsort()] = draws
        grad = torch.where(z > 1, grad / z.clamp_min(1.0), grad) - 1e-6
        return grad[:-1]

    def margins(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``N`` binary margins y f(x) (y = ±1), or ``N×K`` one-vs-rest margins."""
        if logits.dim() == 1 or logits.shape[-1] == 1:
            return (2 * targets.to(logits.dtype) - 1) * logits.reshape(-1)
        if logits.shape[-1] == 2:
            return (2 * targets.to(logits.dtype) - 1) * (logits[:, 1] - logits[:, 0])
        sign = 2 * F.one_hot(targets, logits.shape[-1]).to(logits.dtype) - 1
        return sign * logits

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
        logits, targets = _kept(logits, targets)
        if not len(targets):
            return _empty(logits)
        z = self.margins(logits, targets)
        grad = self.derivatives(z).reshape(z.shape)
        return (grad * z).sum() / len(targets)


# -- multi-similarity (Wang et al., CVPR 2019) --------------------------------------------------------


class MultiSimilarityLoss(nn.Module):
    """Multi-similarity loss (Wang, Han, Huang, Dong & Scott, "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning", CVPR 2019) on the L2-normalised outputs as embeddings.

    With cosine similarities S: pairs are mined per anchor i — a negative j stays if
    S_ij + ε > min over positives of S_ik, a positive j if S_ij − ε < max over negatives of S_ik — and
    weighted by

        1/α log(1 + Σ_P e^(−α (S_ik − λ))) + 1/β log(1 + Σ_N e^(β (S_ik − λ)))

    summed over anchors that keep at least one pair of each kind and divided by the batch size. The
    defaults α = 2, β = 40, λ = 0.5, ε = 0.1 and the division by the whole batch are the authors'
    public code (``MultiSimilarityLoss`` and its config defaults). Their code drops positives whose similarity rounds to 1 to skip the anchor itself; here
    the anchor is excluded by index. Batches are drawn at random (no class-balanced sampler).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 40.0, lam: float = 0.5, margin: float = 0.1) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        self.lam = lam
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        embeddings, targets = _kept(embeddings, targets)
        n = len(targets)
        if n < 2:
            return _empty(embeddings)
        x = F.normalize(embeddings.reshape(n, -1), dim=1)
        sim = x @ x.t()
        same = targets[:, None] == targets[None, :]
        positive = same & ~torch.eye(n, dtype=torch.bool, device=sim.device)
        negative = ~same
        hardest_positive = sim.masked_fill(~positive, math.inf).amin(dim=1, keepdim=True)
        hardest_negative = sim.masked_fill(~negative, -math.inf).amax(dim=1, keepdim=True)
        keep_negative = negative & (sim + self.margin > hardest_positive)
        keep_positive = positive & (sim - self.margin < hardest_negative)
        anchors = keep_negative.any(dim=1) & keep_positive.any(dim=1)
        if not anchors.any():
            return _empty(embeddings)
        pos_term = _log1p_sum_exp(-self.alpha * (sim - self.lam), keep_positive) / self.alpha
        neg_term = _log1p_sum_exp(self.beta * (sim - self.lam), keep_negative) / self.beta
        return (pos_term + neg_term)[anchors].sum() / n


def _log1p_sum_exp(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log(1 + Σ_j exp(values_ij)) over the masked j of each row, stably."""
    masked = values.masked_fill(~mask, -math.inf)
    return torch.logsumexp(torch.cat([masked.new_zeros(len(masked), 1), masked], dim=1), dim=1)


# -- the dimension -------------------------------------------------------------------------------------


DEFAULT_VALUES: dict[str, Any] = {
    "smoothing": 0.1,
    "gamma": 2.0,
    "tau": 1.0,
    "q": 0.7,
    "phi": "squared_hinge",
    "dice_alpha": 1.0,
    "dice_gamma": 1.0,
    "dice_square": True,
    "amplify": 73.0,
    "beta": 1.0,
    "ensloss_lambda": 0.0,
    "seed": 0,
    "ms_alpha": 2.0,
    "ms_beta": 40.0,
    "ms_lambda": 0.5,
    "ms_margin": 0.1,
}


def make_loss(kind: str, **values: Any) -> nn.Module:
    """The loss module of ``kind`` with its parameters (missing ones take their defaults).

    Parameters: ``smoothing`` (label smoothing), ``gamma`` (focal), ``tau`` (comp-sum), ``q``
    (generalized cross-entropy, τ = 1 + q), ``phi`` (constrained), ``dice_alpha``, ``dice_gamma``, ``dice_square``,
    ``amplify`` (AnyLoss L), ``beta`` (AnyLoss F_β), ``ensloss_lambda``, ``seed`` (EnsLoss), ``ms_alpha``,
    ``ms_beta``, ``ms_lambda``, ``ms_margin`` (multi-similarity).
    """
    v = {**DEFAULT_VALUES, **values}
    if kind == "cross_entropy":
        return nn.CrossEntropyLoss()
    if kind == "label_smoothing":
        return nn.CrossEntropyLoss(label_smoothing=v["smoothing"])
    if kind == "focal":
        return FocalLoss(v["gamma"])
    if kind == "comp_sum":
        return CompSumLoss(v["tau"])
    if kind == "sum_exponential":
        return CompSumLoss(0.0)
    if kind == "gce":
        return CompSumLoss(1.0 + v["q"])
    if kind == "mae":
        return CompSumLoss(2.0)
    if kind == "constrained":
        return ConstrainedLoss(v["phi"])
    if kind == "dice":
        return DiceLoss(v["dice_alpha"], v["dice_gamma"], square_denominator=v["dice_square"])
    if kind.startswith("anyloss_"):
        metric = {"f1": "f_beta", "fbeta": "f_beta"}.get(kind[len("anyloss_") :], kind[len("anyloss_") :])
        beta = v["beta"] if kind == "anyloss_fbeta" else 1.0
        if metric in ANYLOSS_METRICS:
            return AnyLoss(metric, scale=v["amplify"], beta=beta)
    if kind == "ensloss":
        return EnsLoss(v["ensloss_lambda"], seed=int(v["seed"]))
    if kind == "multi_similarity":
        return MultiSimilarityLoss(v["ms_alpha"], v["ms_beta"], v["ms_lambda"], v["ms_margin"])
    raise ValueError(f"unknown loss {kind!r} (losses: {', '.join(LOSSES)})")


#: For each loss, the [low, high] range options that set its parameters (a range with low = high
#: fixes the value; otherwise the trial samples it).
RANGES: dict[str, tuple[str, ...]] = {
    "label_smoothing": ("smoothing",),
    "focal": ("gamma",),
    "comp_sum": ("tau",),
    "gce": ("q",),
    "dice": ("dice_alpha", "dice_gamma"),
    "anyloss_accuracy": ("amplify",),
    "anyloss_f1": ("amplify",),
    "anyloss_fbeta": ("amplify", "beta"),
    "anyloss_gmean": ("amplify",),
    "anyloss_balanced_accuracy": ("amplify",),
    "ensloss": ("ensloss_lambda",),
    "multi_similarity": ("ms_alpha", "ms_beta", "ms_lambda", "ms_margin"),
}


def _range(default: list[float], help: str, low: float | None = None, high: float | None = None) -> Option:
    return Option(list, default=default, item_type=float, min=low, max=high, min_items=2, help=help)


class LossDimension(Dimension):
    name = "loss"
    kind = "loss"
    stage = RECIPE
    description = (
        "training loss: cross-entropy, label smoothing, focal, the comp-sum family (sum-exponential, "
        "GCE, MAE), constrained losses, self-adjusting Dice, AnyLoss metrics, EnsLoss, multi-similarity"
    )
    options = {
        "losses": Option(
            list,
            default=list(CLASSIFICATION_LOSSES),
            item_type=str,
            choices=LOSSES,
            min_items=1,
            help="losses to choose from (multi_similarity trains embeddings: use it alone, with the "
            "training evaluator's metric = 'recall_at_1')",
        ),
        "smoothing": _range([0.05, 0.2], "label-smoothing ε range [low, high]", 0.0, 0.99),
        "gamma": _range([0.5, 5.0], "focal γ range [low, high]", 0.0, 10.0),
        "tau": _range([0.0, 2.0], "comp-sum τ range [low, high] (0 sum-exp, 1 cross-entropy, 2 MAE)", 0.0, 2.0),
        "q": _range([0.1, 1.0], "generalized cross-entropy q range [low, high] (τ = 1 + q)", 0.01, 1.0),
        "phis": Option(
            list,
            default=list(CONSTRAINED_PHIS),
            item_type=str,
            choices=CONSTRAINED_PHIS,
            min_items=1,
            help="Φ of the constrained loss",
        ),
        "dice_alpha": _range([0.01, 1.0], "self-adjusting Dice α range [low, high]: (1 − p)^α p", 0.0, 10.0),
        "dice_gamma": _range([1.0, 1.0], "self-adjusting Dice smoothing γ range [low, high]", 0.0, 10.0),
        "dice_square": Option(
            bool,
            default=True,
            help="self-adjusting Dice with p̃² + y² + γ below the fraction, as the authors' released "
            "scripts train (false: the paper's p̃ + y + γ)",
        ),
        "amplify": _range([73.0, 73.0], "AnyLoss amplifying scale L range [low, high]", 1.0, 1000.0),
        "beta": _range([0.5, 2.0], "AnyLoss F_β β range [low, high]", 0.01, 100.0),
        "ensloss_lambda": _range([0.0, 0.0], "EnsLoss Box-Cox λ range [low, high]", -1.0, 1.0),
        "ms_alpha": _range([2.0, 2.0], "multi-similarity positive scale α range [low, high]", 0.01, 100.0),
        "ms_beta": _range([40.0, 40.0], "multi-similarity negative scale β range [low, high]", 0.01, 100.0),
        "ms_lambda": _range([0.5, 0.5], "multi-similarity similarity threshold λ range [low, high]", -1.0, 1.0),
        "ms_margin": _range([0.1, 0.1], "multi-similarity mining margin ε range [low, high]", 0.0, 2.0),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for params in RANGES.values():
            for key in params:
                low, high, *rest = settings[key]
                if rest or low > high:
                    raise SpaceError(f"expected [low, high] with low ≤ high, got {settings[key]}", key=key)

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        kind = trial.suggest_categorical("loss", self.settings["losses"])
        values: dict[str, Any] = {}
        for param in RANGES.get(kind, ()):
            low, high = self.settings[param]
            values[param] = trial.suggest_float(param, low, high) if low < high else low
        if kind == "dice":
            values["dice_square"] = self.settings["dice_square"]
        if kind == "constrained":
            phis = self.settings["phis"]
            values["phi"] = trial.suggest_categorical("phi", phis) if len(phis) > 1 else phis[0]
        # Fixed values shape the loss as much as sampled ones: the candidate id carries both.
        candidate.set_canonical(trial.prefix, {"loss": kind, **values})
        candidate.loss_fn = make_loss(kind, seed=candidate.seed, **values)
