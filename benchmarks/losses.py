"""Validation accuracy after a short training with each loss choice, against cross-entropy.

Every loss of the ``loss`` dimension (with representative parameter values) trains the same NB201 cell
(C=8, N=1, BatchNorm, 16 px digits) with the training settings of ``search_spaces/compress_digits.toml``
(4 epochs, SGD with lr 0.05, batch 64, cosine schedule) for several seeds; the table shows validation
accuracy mean ± std and seconds per training. ``multi_similarity`` trains embeddings: its row and the
cross-entropy row below it show Recall@1 (``metric = "recall_at_1"``), beside the untrained network's.

    python benchmarks/losses.py [--seeds 0 1 2] [--epochs 4] [--only dice anyloss_f1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import automl
from automl.report import table
from automl_plugins.evaluators.training import evaluate_embeddings, train_candidate

CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

# (row label, loss, fixed settings of the loss dimension)
CHOICES: list[tuple[str, str, dict]] = [
    ("cross_entropy", "cross_entropy", {}),
    ("label_smoothing ε=0.1", "label_smoothing", {"smoothing": 0.1}),
    ("focal γ=2", "focal", {"gamma": 2.0}),
    ("sum_exponential (comp-sum τ=0)", "sum_exponential", {}),
    ("comp_sum τ=0.5", "comp_sum", {"tau": 0.5}),
    ("gce q=0.5 (τ=1.5)", "gce", {"q": 0.5}),
    ("gce q=0.7 (τ=1.7)", "gce", {"q": 0.7}),
    ("mae (τ=2)", "mae", {}),
    ("constrained exponential", "constrained", {"phis": ["exponential"]}),
    ("constrained squared_hinge", "constrained", {"phis": ["squared_hinge"]}),
    ("constrained hinge", "constrained", {"phis": ["hinge"]}),
    ("dice α=1 γ=1", "dice", {"dice_alpha": 1.0}),
    ("dice α=0.01 γ=1", "dice", {"dice_alpha": 0.01}),
    ("dice α=1 γ=1, paper denominator", "dice", {"dice_alpha": 1.0, "dice_square": False}),
    ("anyloss_accuracy", "anyloss_accuracy", {}),
    ("anyloss_f1", "anyloss_f1", {}),
    ("anyloss_fbeta β=2", "anyloss_fbeta", {"beta": 2.0}),
    ("anyloss_gmean", "anyloss_gmean", {}),
    ("anyloss_balanced_accuracy", "anyloss_balanced_accuracy", {}),
    ("ensloss λ=0", "ensloss", {}),
    ("ensloss λ=1", "ensloss", {"ensloss_lambda": 1.0}),
]
RANGES = {"smoothing", "gamma", "tau", "q", "dice_alpha", "dice_gamma", "amplify", "beta", "ensloss_lambda"}


def _candidate(kind: str, fixed: dict, args: argparse.Namespace, seed: int, metric: str) -> automl.Candidate:
    loss = {"name": "loss", "losses": [kind]}
    for key, value in fixed.items():
        loss[key] = [value, value] if key in RANGES else value
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "loss-benchmark", "sampler": "random"},
            "task": {"name": "digits", "batch_size": 64, "image_size": args.image_size},
            "dimensions": [
                {"name": "nb201", "channels": args.channels, "cells_per_stage": 1},
                {"name": "normalization", "norms": ["batch"]},
                loss,
            ],
            "evaluator": {"name": "training", "metric": metric},
            "objectives": [{"metric": "val_accuracy" if metric == "accuracy" else "val_recall_at_1"}],
        }
    )
    candidate = space.candidate_from_arch(CELL, {"normalization.norm": "batch", "loss.loss": kind})
    candidate.seed = seed
    return candidate


HEADER = ["loss", "metric", "mean", "± std", "min", "s/run"]


def _row(label: str, values: list[float], seconds: list[float], metric: str) -> list:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    mean_seconds = statistics.mean(seconds)
    return [
        label,
        metric,
        round(statistics.mean(values), 3),
        round(spread, 3),
        round(min(values), 3),
        round(mean_seconds, 1),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--only", nargs="+", help="losses to run (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    settings = {"epochs": args.epochs, "lr": args.lr}

    rows = []
    for label, kind, fixed in CHOICES:
        if args.only and kind not in args.only:
            continue
        values, seconds = [], []
        for seed in args.seeds:
            start = time.perf_counter()
            result = train_candidate(_candidate(kind, fixed, args, seed, "accuracy"), settings, device=args.device)
            seconds.append(time.perf_counter() - start)
            values.append(result.scores["val_accuracy"])
        rows.append(_row(label, values, seconds, "accuracy"))
        print(rows[-1], flush=True)

    if not args.only or "multi_similarity" in args.only:
        recall = {**settings, "metric": "recall_at_1"}
        for kind in ("multi_similarity", "cross_entropy"):
            values, seconds, untrained = [], [], []
            for seed in args.seeds:
                candidate = _candidate(kind, {}, args, seed, "recall_at_1")
                val = candidate.task.split("val").to(args.device)
                model = candidate.build_model(args.device)
                untrained.append(evaluate_embeddings(model, val, candidate.loss.to(args.device))[0])
                start = time.perf_counter()
                result = train_candidate(candidate, recall, device=args.device)
                seconds.append(time.perf_counter() - start)
                values.append(result.scores["val_recall_at_1"])
            rows.append(_row(kind, values, seconds, "recall@1"))
            print(rows[-1], flush=True)
        rows.append(_row("(untrained network)", untrained, [0.0], "recall@1"))

    print()
    print(
        f"NB201 C={args.channels} N=1, BatchNorm, {args.image_size} px digits, {args.epochs} epochs, "
        f"lr {args.lr}, seeds {args.seeds}, {args.device}"
    )
    print(table(rows, HEADER))


if __name__ == "__main__":
    main()
