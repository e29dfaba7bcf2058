"""Losses: each defining formula against a direct computation on small tensors, and the dimension's choices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import automl
from automl_plugins.evaluators.training import evaluate_embeddings, evaluate_model, recall_at_1, train_candidate
from automl_plugins.recipe.losses import (
    CLASSIFICATION_LOSSES,
    LOSSES,
    AnyLoss,
    CompSumLoss,
    ConstrainedLoss,
    DiceLoss,
    EnsLoss,
    FocalLoss,
    MultiSimilarityLoss,
    amplify,
    inverse_box_cox,
    make_loss,
)

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=gen, dtype=torch.float64) * 2
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0])
    return logits, targets


def _p_true(logits, targets):
    return F.softmax(logits, 1)[torch.arange(len(targets)), targets]


def test_label_smoothing_matches_torch(batch):
    logits, targets = batch
    eps, k = 0.2, logits.shape[1]
    soft = F.one_hot(targets, k).double() * (1 - eps) + eps / k
    direct = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
    assert torch.allclose(make_loss("label_smoothing", smoothing=eps)(logits, targets), direct)
    assert torch.allclose(direct, F.cross_entropy(logits, targets, label_smoothing=eps))


def test_focal_with_gamma_zero_is_cross_entropy(batch):
    logits, targets = batch
    assert torch.allclose(FocalLoss(0.0)(logits, targets), F.cross_entropy(logits, targets))
    p = _p_true(logits, targets)
    assert torch.allclose(FocalLoss(2.0)(logits, targets), (-((1 - p) ** 2) * p.log()).mean())


# -- comp-sum and constrained ----------------------------------------------------------------------


def _comp_sum_direct(logits, targets, tau):
    """Φ_τ(Σ_{y'≠y} exp(h_y' − h_y)), example by example, from the paper's definition of Φ_τ."""
    values = []
    for h, y in zip(logits.tolist(), targets.tolist()):
        u = sum(math.exp(h[k] - h[y]) for k in range(len(h)) if k != y)
        values.append(math.log1p(u) if tau == 1 else (1 - (1 + u) ** (1 - tau)) / (tau - 1))
    return sum(values) / len(values)


@pytest.mark.parametrize("tau", [0.0, 0.3, 1.0, 1.25, 1.7, 2.0])
def test_comp_sum_is_phi_tau_of_the_sum_of_exponentials(batch, tau):
    logits, targets = batch
    assert CompSumLoss(tau)(logits, targets).item() == pytest.approx(_comp_sum_direct(logits, targets, tau), rel=1e-9)


def test_comp_sum_points_are_sum_exp_cross_entropy_gce_and_mae(batch):
    logits, targets = batch
    p = _p_true(logits, targets)
    others = logits.exp().sum(1) - logits.exp()[torch.arange(12), targets]
    sum_exp = (others / logits.exp()[torch.arange(12), targets]).mean()
    assert torch.allclose(CompSumLoss(0.0)(logits, targets), sum_exp)
    assert torch.allclose(make_loss("sum_exponential")(logits, targets), sum_exp)
    assert torch.allclose(CompSumLoss(1.0)(logits, targets), F.cross_entropy(logits, targets))
    assert torch.allclose(make_loss("cross_entropy")(logits, targets), F.cross_entropy(logits, targets))
    # Generalized cross-entropy (Zhang & Sabuncu): (1 − p_y^q) / q with q = τ − 1.
    assert torch.allclose(make_loss("gce", q=0.5)(logits, targets), ((1 - p.sqrt()) / 0.5).mean())
    assert torch.allclose(CompSumLoss(1.5)(logits, targets), ((1 - p.sqrt()) / 0.5).mean())
    # Mean absolute error: 1 − p_y, half of ‖softmax − one-hot‖₁.
    mae = (1 - p).mean()
    assert torch.allclose(CompSumLoss(2.0)(logits, targets), mae)
    assert torch.allclose(make_loss("mae")(logits, targets), mae)
    l1 = (F.softmax(logits, 1) - F.one_hot(targets, 4).double()).abs().sum(1).mean()
    assert torch.allclose(2 * mae, l1)
    # The family is continuous through τ = 1.
    for tau in (1 - 1e-6, 1 + 1e-6):
        assert torch.allclose(CompSumLoss(tau)(logits, targets), F.cross_entropy(logits, targets), atol=1e-5)


@pytest.mark.parametrize(
    "phi, direct",
    [
        ("exponential", lambda t: math.exp(-t)),
        ("squared_hinge", lambda t: max(0.0, 1 - t) ** 2),
        ("hinge", lambda t: max(0.0, 1 - t)),
    ],
)
def test_constrained_loss_sums_phi_of_minus_the_other_centred_scores(batch, phi, direct):
    logits, targets = batch
    values = []
    for h, y in zip(logits.tolist(), targets.tolist()):
        mean = sum(h) / len(h)
        centred = [v - mean for v in h]
        assert abs(sum(centred)) < 1e-12  # the constraint Σ_y h(x, y) = 0
        values.append(sum(direct(-centred[k]) for k in range(len(h)) if k != y))
    got = ConstrainedLoss(phi)(logits, targets).item()
    assert got == pytest.approx(sum(values) / len(values), rel=1e-9)
    # Adding a constant to every logit changes nothing: the scores are centred.
    assert ConstrainedLoss(phi)(logits + 3.0, targets).item() == pytest.approx(got, rel=1e-9)


# -- self-adjusting Dice ---------------------------------------------------------------------------


@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("alpha, gamma", [(1.0, 1.0), (0.5, 0.1), (0.0, 1e-4)])
def test_self_adjusting_dice_per_example_and_class(batch, alpha, gamma, square):
    logits, targets = batch
    p = F.softmax(logits, 1).tolist()
    total = 0.0
    for i, y in enumerate(targets.tolist()):
        for k in range(4):
            adj = (1 - p[i][k]) ** alpha * p[i][k]
            t = 1.0 if k == y else 0.0
            below = adj**2 + t**2 + gamma if square else adj + t + gamma
            total += 1 - (2 * adj * t + gamma) / below
    got = DiceLoss(alpha, gamma, square_denominator=square)(logits, targets).item()
    assert got == pytest.approx(total / len(targets), rel=1e-9)


def test_dice_factor_deemphasises_confident_examples():
    # With α = 1 a confident example has p̃ = (1 − p) p ≈ 0 whichever way it leans: the positive term
    # stays at 1 − γ / (1 + γ) = 0.5 and gives no gradient, where plain Dice (α = 0) reaches 0.
    targets = torch.tensor([0, 1])
    confident = torch.tensor([[8.0, -8.0], [-8.0, 8.0]], requires_grad=True)
    plain = DiceLoss(alpha=0.0, gamma=1.0)(confident, targets)
    adjusted = DiceLoss(alpha=1.0, gamma=1.0)(confident, targets)
    assert plain.item() == pytest.approx(0.0, abs=1e-4) and adjusted.item() == pytest.approx(0.5, abs=1e-4)
    adjusted.backward()
    assert confident.grad.abs().max() < 1e-3


def test_dice_binary_one_logit_uses_the_sigmoid():
    logits = torch.tensor([[0.3], [-1.2], [2.0]], dtype=torch.float64)
    targets = torch.tensor([1, 0, 1])
    p = torch.sigmoid(logits[:, 0])
    adj = (1 - p) * p
    y = targets.double()
    direct = (1 - (2 * adj * y + 1) / (adj + y + 1)).mean()
    assert torch.allclose(DiceLoss(1.0, 1.0)(logits, targets), direct)


# -- AnyLoss -----------------------------------------------------------------------------------------


def _binary_metrics(y, yhat, beta=1.0, s=1e-5):
    """The authors' formulas, term by term, for 0/1 labels y and amplified predictions ŷ (lists)."""
    n = len(y)
    tp = sum(a * b for a, b in zip(y, yhat))
    y1, y0, sy_hat = sum(y), n - sum(y), sum(yhat)
    fn, fp = y1 - tp, sy_hat - tp
    tn = n - y1 - sy_hat + tp
    return {
        "accuracy": (tp + tn) / n,
        "f_beta": (1 + beta**2) * tp / (beta**2 * y1 + sy_hat + s),
        "gmean": math.sqrt(tp * tn / (y1 * y0 + s) + s),
        "balanced_accuracy": (y0 * tp + y1 * tn) / (2 * y1 * y0 + s),
        "counts": (tp, fn, fp, tn),
    }


@pytest.mark.parametrize("metric", ["accuracy", "f_beta", "gmean", "balanced_accuracy"])
@pytest.mark.parametrize("scale", [5.0, 73.0])
def test_anyloss_binary_is_one_minus_the_metric_of_the_amplified_confusion(metric, scale):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    targets = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0])
    p = torch.sigmoid(logits[:, 1] - logits[:, 0]).tolist()  # two-logit softmax = sigmoid of the difference
    yhat = [1 / (1 + math.exp(-scale * (v - 0.5))) for v in p]
    beta = 2.0 if metric == "f_beta" else 1.0
    expected = _binary_metrics(targets.tolist(), yhat, beta)[metric]
    got = AnyLoss(metric, scale=scale, beta=beta)(logits, targets).item()
    assert got == pytest.approx(1 - expected, rel=1e-9)
    # One logit is the same task read through a sigmoid.
    one = (logits[:, 1] - logits[:, 0])[:, None]
    assert AnyLoss(metric, scale=scale, beta=beta)(one, targets).item() == pytest.approx(got, rel=1e-9)


def test_anyloss_binary_f1_is_the_positive_class_and_matches_the_hard_metric():
    targets = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    predicted = torch.tensor([1, 1, 0, 1, 0, 0, 0, 0])
    logits = F.one_hot(predicted, 2).double() * 20  # confident: A(p) is 0 or 1
    # Positive class: TP 2, FP 1, FN 1 → F1 = 4 / 6.
    assert AnyLoss("f_beta")(logits, targets).item() == pytest.approx(1 - 4 / 6, abs=1e-4)
    # Not the macro F1 over both classes (negative class F1 = 8 / 10).
    assert AnyLoss("f_beta")(logits, targets).item() != pytest.approx(1 - (4 / 6 + 0.8) / 2, abs=1e-3)
    assert AnyLoss("accuracy")(logits, targets).item() == pytest.approx(1 - 6 / 8, abs=1e-4)
    recall, specificity = 2 / 3, 4 / 5
    assert AnyLoss("balanced_accuracy")(logits, targets).item() == pytest.approx(
        1 - (recall + specificity) / 2, abs=1e-4
    )
    assert AnyLoss("gmean")(logits, targets).item() == pytest.approx(1 - math.sqrt(recall * specificity), abs=1e-3)


def test_anyloss_amplifies_around_one_half():
    p = torch.tensor([0.0, 0.4, 0.5, 0.6, 1.0])
    assert torch.allclose(amplify(p, 73.0), 1 / (1 + torch.exp(-73.0 * (p - 0.5))))
    assert amplify(p, 73.0)[1] < 1e-3 and amplify(p, 73.0)[3] > 1 - 1e-3


def test_anyloss_multiclass_is_one_vs_rest_macro_over_argmax_predictions():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 0])
    logits = F.one_hot(predicted, 3).double() * 30
    loss = AnyLoss("f_beta")
    soft = loss.soft_predictions(logits)
    assert torch.allclose(soft, F.one_hot(predicted, 3).double(), atol=1e-6)  # one count per example
    precision = torch.tensor([0.5, 2 / 3, 1.0], dtype=torch.float64)
    recall = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64)
    f1 = 2 * precision * recall / (precision + recall)
    assert loss(logits, targets).item() == pytest.approx(1 - f1.mean().item(), abs=1e-4)
    # Macro over one-vs-rest balanced accuracies; K-class accuracy as trace / N.
    specificity = torch.tensor([3 / 4, 3 / 4, 4 / 4], dtype=torch.float64)
    bacc = ((recall + specificity) / 2).mean().item()
    assert AnyLoss("balanced_accuracy")(logits, targets).item() == pytest.approx(1 - bacc, abs=1e-4)
    assert AnyLoss("accuracy")(logits, targets).item() == pytest.approx(1 - 4 / 6, abs=1e-4)


def test_anyloss_multiclass_rewards_the_argmax_not_p_above_one_over_k():
    targets = torch.tensor([0, 1, 2, 3])
    # Every p_y is 0.3 > 1/K = 0.25, but another class always wins the argmax.
    wrong = torch.full((4, 4), 0.1, dtype=torch.float64)
    wrong[torch.arange(4), targets] = 0.3
    wrong[torch.arange(4), (targets + 1) % 4] = 0.5
    right = torch.full((4, 4), 0.1, dtype=torch.float64)
    right[torch.arange(4), targets] = 0.7
    for metric in ("f_beta", "accuracy", "balanced_accuracy", "gmean"):
        # Balanced accuracy keeps the true negatives' half: all wrong is 1 − (0 + 2/3) / 2.
        worst = 1 - 1 / 3 if metric == "balanced_accuracy" else 1.0
        # (the square root of the G-mean lifts the residual counts of A(p), hence the tolerance)
        assert AnyLoss(metric)(wrong.log(), targets).item() == pytest.approx(worst, abs=0.03)
        assert AnyLoss(metric)(right.log(), targets).item() == pytest.approx(0.0, abs=0.03)


def test_anyloss_multiclass_two_classes_reduces_to_the_published_amplification():
    # For two classes the one-vs-rest prediction σ(L/2 (p_k − p_other)) is A(p_k).
    logits = torch.randn(10, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = F.softmax(logits, 1)
    loss = AnyLoss("f_beta", scale=73.0)
    margins = p - p.flip(1)
    assert torch.allclose(torch.sigmoid(36.5 * margins), amplify(p, 73.0))
    assert torch.allclose(loss.soft_predictions(logits), amplify(p[:, 1], 73.0))


# -- EnsLoss -----------------------------------------------------------------------------------------


def _direct_derivatives(margins, lam, generator):
    """The authors' construction, step by step, on a list of margins."""
    z = margins + [0.0]
    draws = sorted(max(-v, -1.0) for v in inverse_box_cox(torch.randn(len(z), generator=generator), lam).tolist())
    order = sorted(range(len(z)), key=lambda i: z[i])
    grad = [0.0] * len(z)
    for rank, i in enumerate(order):
        grad[i] = draws[rank]
    grad = [g / zi if zi > 1 else g for g, zi in zip(grad, z)]
    return [g - 1e-6 for g in grad[:-1]]


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5])
def test_ensloss_gradient_is_the_sampled_derivative_at_each_margin(lam):
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = EnsLoss(lam=lam, seed=5)
    replay = torch.Generator().manual_seed(5)
    logits.requires_grad_()
    loss(logits, targets).backward()
    sign = 2 * F.one_hot(targets, 4).double() - 1
    margins = (sign * logits.detach()).flatten().tolist()
    expected = torch.tensor(_direct_derivatives(margins, lam, replay), dtype=torch.float64).reshape(6, 4)
    assert torch.allclose(logits.grad, expected * sign / 6)


def test_ensloss_derivatives_are_calibrated_and_convex():
    loss = EnsLoss(seed=0)
    for _ in range(5):
        z = torch.randn(200, dtype=torch.float64) * 3
        g = loss.derivatives(z)
        assert (g < 0).all() and (g >= -1 - 1e-6).all()  # φ' < 0 everywhere, so φ'(0) < 0
        ordered = g[z.argsort()]
        assert (ordered[1:] >= ordered[:-1]).all()  # φ' non-decreasing: φ convex
        big = z > 1
        assert (g[big].abs() <= 1 / z[big] + 1e-6).all()  # the decaying tail


def test_ensloss_draws_a_new_loss_per_batch_binary_margin_and_eval_cross_entropy():
    logits = torch.randn(8, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    loss = EnsLoss(seed=1)
    z = loss.margins(logits, targets)
    assert torch.allclose(z, (2 * targets.double() - 1) * (logits[:, 1] - logits[:, 0]))
    first, second = loss(logits, targets), loss(logits, targets)
    assert not torch.isclose(first, second)
    again = EnsLoss(seed=1)
    assert torch.isclose(again(logits, targets), first)
    loss.eval()
    assert torch.allclose(loss(logits, targets), F.cross_entropy(logits, targets))


def test_ensloss_validation_loss_is_cross_entropy():
    model = torch.nn.Linear(3, 4)
    data = automl.Batch(torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), torch.arange(20) % 4)
    loss = EnsLoss(seed=0)
    _, value = evaluate_model(model, data, loss, batch_size=8)
    with torch.no_grad():
        assert value == pytest.approx(F.cross_entropy(model(data.inputs), data.targets).item(), rel=1e-5)
    assert loss.training  # back in training mode for the next epoch


def test_inverse_box_cox():
    z = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(inverse_box_cox(z, 0.0), z.exp())
    assert torch.allclose(inverse_box_cox(z, 0.5), (1 + 0.5 * z).clamp_min(0) ** 2)


# -- multi-similarity --------------------------------------------------------------------------------


def _ms_direct(embeddings, labels, alpha, beta, lam, margin):
    x = F.normalize(embeddings, dim=1)
    sim = (x @ x.t()).tolist()
    labels = labels.tolist()
    n = len(labels)
    total = 0.0
    for i in range(n):
        pos = [sim[i][j] for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [sim[i][j] for j in range(n) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        kept_neg = [s for s in neg if s + margin > min(pos)]
        kept_pos = [s for s in pos if s - margin < max(neg)]
        if not kept_neg or not kept_pos:
            continue
        total += math.log(1 + sum(math.exp(-alpha * (s - lam)) for s in kept_pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (s - lam)) for s in kept_neg)) / beta
    return total / n


@pytest.mark.parametrize("params", [(2.0, 40.0, 0.5, 0.1), (2.0, 50.0, 1.0, 0.1), (1.0, 10.0, 0.0, 0.5)])
def test_multi_similarity_matches_the_per_anchor_formula(params):
    gen = torch.Generator().manual_seed(7)
    embeddings = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0, 2])  # class 3 has no positive pair
    got = MultiSimilarityLoss(*params)(embeddings, labels).item()
    assert got == pytest.approx(_ms_direct(embeddings, labels, *params), rel=1e-9)
    assert got > 0


def test_multi_similarity_without_informative_pairs_is_zero_with_a_gradient():
    embeddings = torch.eye(3, dtype=torch.float64).requires_grad_()
    value = MultiSimilarityLoss()(embeddings, torch.tensor([0, 1, 2]))  # no positive pairs at all
    value.backward()
    assert value.item() == 0.0 and embeddings.grad is not None


def test_recall_at_1_is_the_nearest_other_example():
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # Neighbours: 0↔1, 2↔3, 4 → 1 (cos 0.78) over 3 (cos 0.74): four of five hit.
    assert recall_at_1(embeddings, labels) == pytest.approx(4 / 5)
    assert recall_at_1(embeddings, labels, chunk=2) == pytest.approx(4 / 5)


@pytest.mark.slow
def test_multi_similarity_training_raises_recall_at_1():
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "ms", "sampler": "random"},
            "task": {"name": "digits", "batch_size": 32, "image_size": 8, "channels": 1},
            "dimensions": [
                {"name": "nb201", "channels": 4, "cells_per_stage": 1},
                {"name": "loss", "losses": ["multi_similarity"]},
            ],
            "evaluator": {"name": "training", "metric": "recall_at_1"},
            "objectives": [{"metric": "val_recall_at_1", "direction": "maximize"}],
        }
    )
    assert "val_recall_at_1" in space.evaluator.metrics() and "val_accuracy" not in space.evaluator.metrics()
    candidate = space.candidate_from_arch(ARCH, {"loss.loss": "multi_similarity"})
    val = candidate.task.split("val")
    untrained = evaluate_embeddings(candidate.build_model(), val, candidate.loss)
    settings = {"epochs": 2, "max_train_samples": 320, "metric": "recall_at_1"}
    result = train_candidate(candidate, settings, device="cpu")
    assert set(result.scores) == {"val_recall_at_1", "test_recall_at_1", "train_loss", "val_loss"}
    assert result.info["curve"][-1] == result.scores["val_recall_at_1"]
    assert result.scores["val_recall_at_1"] > untrained[0] + 0.05
    assert result.scores["val_loss"] < untrained[1]


# -- every loss and the dimension ------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOSSES)
def test_every_loss_trains_a_step(kind, batch):
    logits, targets = batch
    logits = logits.clone().requires_grad_()
    value = make_loss(kind)(logits, targets)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", CLASSIFICATION_LOSSES)
def test_every_classification_loss_skips_ignored_positions(kind, batch):
    logits, targets = batch
    masked = targets.clone()
    masked[::3] = -100
    keep = masked != -100
    loss = make_loss(kind)
    loss.eval()  # EnsLoss draws at random in training mode
    assert torch.allclose(loss(logits, masked), loss(logits[keep], targets[keep]))


def _space(loss: dict) -> automl.SearchSpace:
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "l", "n_trials": 2, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}, {"name": "loss", **loss}],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


def test_dimension_sets_the_candidate_loss():
    space = _space({"losses": ["focal", "cross_entropy"], "gamma": [1.0, 3.0]})
    candidate = space.candidate_from_arch(ARCH, {"loss.loss": "focal", "loss.gamma": 2.5})
    assert isinstance(candidate.loss, FocalLoss) and candidate.loss.gamma == 2.5
    plain = space.candidate_from_arch(ARCH, {"loss.loss": "cross_entropy"})
    assert "loss.gamma" not in plain.params and plain.id != candidate.id


def test_dimension_samples_ranges_and_fixes_single_values():
    space = _space({"losses": ["comp_sum", "dice", "anyloss_fbeta", "constrained"], "tau": [0.5, 1.5]})
    comp = space.candidate_from_arch(ARCH, {"loss.loss": "comp_sum", "loss.tau": 0.75})
    assert isinstance(comp.loss, CompSumLoss) and comp.loss.tau == 0.75
    dice = space.candidate_from_arch(ARCH, {"loss.loss": "dice", "loss.dice_alpha": 0.3})
    assert dice.loss.alpha == 0.3 and dice.loss.gamma == 1.0 and dice.loss.square_denominator
    assert "loss.dice_gamma" not in dice.params  # a fixed value is not a trial parameter
    anyloss = space.candidate_from_arch(ARCH, {"loss.loss": "anyloss_fbeta", "loss.beta": 2.0})
    assert anyloss.loss.metric == "f_beta" and anyloss.loss.beta == 2.0 and anyloss.loss.scale == 73.0
    constrained = space.candidate_from_arch(ARCH, {"loss.loss": "constrained", "loss.phi": "hinge"})
    assert constrained.loss.phi == "hinge"
    # A fixed value still names the candidate: another fixed γ is another candidate.
    other = _space({"losses": ["dice"], "dice_gamma": [0.5, 0.5]})
    assert other.candidate_from_arch(ARCH, {"loss.loss": "dice", "loss.dice_alpha": 0.3}).id != dice.id


def test_multi_similarity_is_not_a_default_choice():
    assert "multi_similarity" in LOSSES and "multi_similarity" not in CLASSIFICATION_LOSSES
    space = _space({})
    assert "multi_similarity" not in space.dimensions[1][1].settings["losses"]


@pytest.mark.parametrize("key", ["gamma", "tau", "dice_alpha", "ensloss_lambda"])
def test_bad_range_is_a_space_error(key):
    with pytest.raises(automl.SpaceError, match=key):
        _space({key: [0.9, 0.1]})


def test_out_of_range_tau_is_a_space_error():
    with pytest.raises(automl.SpaceError, match="tau"):
        _space({"tau": [0.0, 2.5]})


def test_bundled_metric_learning_space_validates():
    space = automl.SearchSpace.from_file(Path(__file__).resolve().parents[1] / "search_spaces" / "metric_digits.toml")
    assert space.metrics == ["val_recall_at_1"] and space.evaluator.settings["metric"] == "recall_at_1"
    candidate = space.candidate_from_arch(
        ARCH, {"loss.loss": "multi_similarity", "loss.ms_beta": 20.0, "loss.ms_lambda": 0.6}
    )
    assert isinstance(candidate.loss, MultiSimilarityLoss) and candidate.loss.beta == 20.0
