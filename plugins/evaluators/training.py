"""The local training evaluator: k epochs of (quantization-aware, masked) training on the task.

Everything happens in one plain function, ``train_candidate``, so another runner (Ray Tune) can
schedule it unchanged: it needs a candidate, the evaluator's settings, a ``report(value, step)``
callback and a device. The model comes from ``candidate.build_model()`` with every transform applied:
pruning masks hold (pruned weights stay zero) and fake quantization is active during training. The
loss is ``candidate.loss``; a data-pruning choice in ``candidate.recipe`` shrinks the training set, and
``agc_clipping`` there (the normalization-free choice) replaces the gradient-norm clip by adaptive
gradient clipping. ``metric = "recall_at_1"`` scores the model's outputs as embeddings (metric learning)
instead of as class logits.

``candidate.recipe["training_hooks"]`` holds objects that schedule recipe steps: ``before_step(model,
step, total_steps)`` runs before every optimizer step (steps count from 0), ``extra_loss(model)`` is added
to the loss of every step (an auxiliary loss the model computed in its forward pass), and
``after_training(model, train, val, criterion, settings)`` runs after the last epoch (a post-training step
such as LayerNorm removal, or a measurement; it returns a dict for ``info``), after which the validation
scores are measured again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from automl import Batch, EvalResult, Evaluator, Option, TrialFailed
from automl.costs import compute_costs
from automl.evaluators import default_device
from automl.options import validate_options

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant")
EVAL_METRICS = ("accuracy", "recall_at_1")
METRICS = ["val_accuracy", "test_accuracy", "train_loss", "val_loss"]
RECALL_METRICS = ["val_recall_at_1", "test_recall_at_1", "train_loss", "val_loss"]

TRAINING_OPTIONS: dict[str, Option] = {
    "epochs": Option(int, default=2, min=1, max=10_000, help="training epochs"),
    "batch_size": Option(int, default=None, min=1, max=4096, help="training minibatch size (default: the task's)"),
    "optimizer": Option(str, default="sgd", choices=OPTIMIZERS),
    "lr": Option(
        float, default=0.05, min=0.0, min_exclusive=True, max=10.0, help="learning rate at the start of the schedule"
    ),
    "momentum": Option(float, default=0.9, min=0.0, max=1.0, help="SGD momentum"),
    "weight_decay": Option(float, default=5e-4, min=0.0, max=1.0),
    "schedule": Option(str, default="cosine", choices=SCHEDULES, help="learning-rate schedule over all steps"),
    "grad_clip": Option(float, default=5.0, min=0.0, max=1e6, help="gradient-norm clip (0: none)"),
    "max_train_samples": Option(
        int,
        default=None,
        min=1,
        max=10_000_000,
        help="train on a fixed random subset of this many examples (default: all)",
    ),
    "eval_batch_size": Option(int, default=512, min=1, max=65_536, help="minibatch size for validation and test"),
    "metric": Option(
        str,
        default="accuracy",
        choices=EVAL_METRICS,
        help="score of validation and test: accuracy of the argmax, or recall_at_1 of the outputs as "
        "embeddings (nearest neighbour by cosine similarity within the split; for metric-learning losses)",
    ),
}

Report = Callable[[float, int], None]


def training_settings(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` checked and completed with the defaults of ``TRAINING_OPTIONS``."""
    # None stands for "the default" (completed settings carry it for options without a fixed default).
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    return validate_options(TRAINING_OPTIONS, given, key="evaluator", reserved=("name",))


def train_candidate(
    candidate: Any,
    settings: Mapping[str, Any] | None,
    report: Report | None = None,
    device: torch.device | str | None = None,
) -> EvalResult:
    """Train ``candidate``'s model and return its scores.

    Reports the validation accuracy after every epoch through ``report(value, epoch)`` (epochs count
    from 1); ``report`` may raise (``optuna.TrialPruned``) to stop the training. Returns the scores
    ``val_accuracy`` and ``val_loss`` (last epoch), ``test_accuracy`` and ``train_loss`` (mean over the
    last epoch), with the validation curve, the training-set size and the cost figures in ``info``.
    With ``metric = "recall_at_1"`` the curve, the reports and the scores ``val_recall_at_1`` and
    ``test_recall_at_1`` take Recall@1 in place of accuracy.
    Raises ``TrialFailed`` when the loss stops being finite.
    """
    settings = training_settings(settings)
    device = torch.device(device) if device is not None else default_device()
    task = candidate.task
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(candidate.seed))

    train = task.split("train")
    if settings["max_train_samples"] and settings["max_train_samples"] < len(train):
        keep = torch.randperm(len(train), generator=generator)[: settings["max_train_samples"]]
        train = Batch(train.inputs[keep], train.targets[keep])
    info: dict[str, Any] = {}
    fraction = candidate.recipe.get("data_keep_fraction")
    if fraction is not None and fraction < 1.0:
        from automl_plugins.recipe.data import keep_rule, select_training_subset

        info["data_keep"] = keep_rule(candidate.recipe, len(train), task.num_classes)
        keep, scored = select_training_subset(candidate, train, device)
        train = Batch(train.inputs[keep], train.targets[keep])
        info["data_score"] = scored
    info["train_samples"] = len(train)
    train = train.to(device)
    val = task.split("val").to(device)

    model = candidate.build_model(device).to(device)
    criterion = candidate.loss.to(device)
    optimizer = _optimizer(model, settings)
    agc = candidate.recipe.get("agc_clipping")
    if agc:
        from automl_plugins.recipe.normalization import adaptive_clip_grad_, agc_parameters

        clipped = agc_parameters(model)
    batch_size = settings["batch_size"] or task.settings.get("batch_size", 64)
    steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
    total_steps = steps_per_epoch * settings["epochs"]
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps) if settings["schedule"] == "cosine" else None
    )

    hooks = list(candidate.recipe.get("training_hooks", ()))
    before_step = [h.before_step for h in hooks if hasattr(h, "before_step")]
    extra_loss = [h.extra_loss for h in hooks if hasattr(h, "extra_loss")]
    step = 0
    curve: list[float] = []
    train_loss = math.nan
    val_score = val_loss = math.nan
    name = "accuracy" if settings["metric"] == "accuracy" else "recall_at_1"
    for epoch in range(1, settings["epochs"] + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator).to(device)
        total, seen = 0.0, 0
        for first in range(0, len(train), batch_size):
            index = order[first : first + batch_size]
            if len(index) < 2 and len(train) > 1:
                continue  # a batch of one breaks batch normalization and adds nothing
            for hook in before_step:
                hook(model, step, total_steps)
            step += 1
            logits = model(train.inputs[index])
            loss = criterion(*_flat(logits, train.targets[index]))
            for hook in extra_loss:
                loss = loss + hook(model)
            if not torch.isfinite(loss):
                raise TrialFailed(f"training diverged: the loss is {float(loss.detach())} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if agc:
                # Normalization-free training clips each unit's gradient relative to its weights instead.
                adaptive_clip_grad_(clipped, agc)
            elif settings["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        train_loss = total / max(seen, 1)
        val_score, val_loss = _score(model, val, criterion, settings)
        curve.append(val_score)
        if report is not None:
            report(val_score, epoch)

    after = [h.after_training for h in hooks if hasattr(h, "after_training")]
    for hook in after:
        info.update(hook(model, train, val, criterion, settings))
    if after:
        info[f"val_{name}_before_post_training"] = val_score
        val_score, val_loss = _score(model, val, criterion, settings)
    scores = {f"val_{name}": val_score, "val_loss": val_loss, "train_loss": train_loss}
    try:
        test = task.split("test").to(device)
    except ValueError:
        scores[f"test_{name}"] = math.nan
        reasons = {f"test_{name}": f"the {task.name} task has no test split"}
    else:
        scores[f"test_{name}"] = _score(model, test, criterion, settings)[0]
        reasons = {}
    info.update(
        curve=curve,
        epochs=settings["epochs"],
        device=str(device),
        train_seconds=round(time.perf_counter() - start, 3),
    )
    costs = compute_costs(model, task.example_input().to(device))
    if "ftwt_flops" in info:
        # Dynamic channel gating (Fire Together Wire Together): the FLOPs an input costs on average.
        costs["flops"] = float(info["ftwt_flops"])
    return EvalResult(scores=scores, info=info, reasons=reasons, costs=costs)


@torch.no_grad()
def evaluate_model(model: nn.Module, data: Batch, criterion: nn.Module, batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean loss) of ``model`` on ``data`` in eval mode; token-level for sequence outputs.

    The criterion is in eval mode too: a stochastic training loss (EnsLoss) reports its evaluation loss.
    """
    was_training, criterion_was_training = model.training, criterion.training
    model.eval()
    criterion.eval()
    correct = total = 0
    loss_sum = 0.0
    try:
        for first in range(0, len(data), batch_size):
            logits, targets = _flat(
                model(data.inputs[first : first + batch_size]), data.targets[first : first + batch_size]
            )
            correct += int((logits.argmax(dim=-1) == targets).sum())
            total += int(targets.numel())
            loss_sum += float(criterion(logits, targets)) * int(targets.numel())
    finally:
        model.train(was_training)
        criterion.train(criterion_was_training)
    return correct / max(total, 1), loss_sum / max(total, 1)


def _score(model: nn.Module, data: Batch, criterion: nn.Module, settings: Mapping[str, Any]) -> tuple[float, float]:
    if settings["metric"] == "recall_at_1":
        return evaluate_embeddings(model, data, criterion, settings["eval_batch_size"])
    return evaluate_model(model, data, criterion, settings["eval_batch_size"])


@torch.no_grad()
def evaluate_embeddings(
    model: nn.Module, data: Batch, criterion: nn.Module, batch_size: int = 512
) -> tuple[float, float]:
    """(Recall@1, mean loss) of ``model``'s outputs on ``data`` read as embeddings, in eval mode."""
    was_training, criterion_was_training = model.training, criterion.training
    model.eval()
    criterion.eval()
    outputs, loss_sum = [], 0.0
    try:
        for first in range(0, len(data), batch_size):
            out = model(data.inputs[first : first + batch_size]).flatten(1)
            targets = data.targets[first : first + batch_size]
            loss_sum += float(criterion(out, targets)) * len(targets)
            outputs.append(out)
    finally:
        model.train(was_training)
        criterion.train(criterion_was_training)
    return recall_at_1(torch.cat(outputs), data.targets), loss_sum / max(len(data), 1)


@torch.no_grad()
def recall_at_1(embeddings: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> float:
    """The fraction of examples whose nearest other example (cosine similarity) has the same label.

    Every example queries all the others of the same set, as retrieval benchmarks score a test split
    against itself (e.g. the multi-similarity authors' ``RetMetric.recall_k``).
    """
    x = nn.functional.normalize(embeddings.float().flatten(1), dim=1)
    hits = 0
    for first in range(0, len(x), chunk):
        sim = x[first : first + chunk] @ x.t()
        rows = torch.arange(len(sim), device=sim.device)
        sim[rows, rows + first] = -math.inf
        hits += int((labels[sim.argmax(dim=1)] == labels[first : first + chunk]).sum())
    return hits / max(len(x), 1)


def _flat(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Language models give B×T×V logits for B×T targets: every position is one prediction.
    if logits.dim() > 2:
        return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return logits, targets


def _optimizer(model: nn.Module, settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    name, lr, decay = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=settings["momentum"], weight_decay=decay, nesterov=settings["momentum"] > 0
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


class TrainingEvaluator(Evaluator):
    name = "training"
    description = (
        "trains each candidate for a few epochs (its loss, masks and fake quantization), reporting "
        "validation accuracy per epoch to the pruner"
    )
    example = {"epochs": 1, "max_train_samples": 64, "batch_size": 32}
    options = TRAINING_OPTIONS

    def metrics(self) -> list[str]:
        return list(RECALL_METRICS if self.settings.get("metric") == "recall_at_1" else METRICS)

    def evaluate(self, candidate: Any, context: Any) -> EvalResult:
        return train_candidate(candidate, self.settings, context.report, context.device)
