"""Every choice of every recipe dimension, trained against the baseline on the same cell, data and schedule.

One NB201 cell (C=8, N=1, 16 px digits) trains with the training settings of
``search_spaces/compress_digits.toml`` (4 epochs, SGD lr 0.05, batch 64, cosine schedule) once per
choice and seed. Each row changes one dimension from the baseline (BatchNorm, cross-entropy, no pruning,
32 bits, all data) to one of its choices; the table prints validation accuracy mean ± std over the
seeds, its difference to the baseline, and seconds per epoch. Choices come from each recipe dimension's
declared options, so a choice added to a dimension appears here without editing this file; a choice
that does not apply to this cell (a transformer-only normalization) is listed with the reason.

    python benchmarks/recipe.py [--seeds 0 1 2] [--epochs 4] [--only normalization loss] [--cell CELL]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import optuna

import automl
from automl.registry import get_registry
from automl.report import table

CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

# dimension -> (the option listing its choices, settings that make one choice a fixed, representative point)
CHOICE_OPTION = {
    "normalization": "norms",
    "loss": "losses",
    "pruning": "methods",
    "quantization": "weight_bits",
    "data_pruning": "scores",
}
# Transformer-only dimensions (layernorm_removal) and choices (pre_rms, pre_crms) are measured on a
# transformer in benchmarks/recipe_methods.py.
FIXED: dict[str, dict[str, Any]] = {
    "normalization": {"groups": [4]},
    "loss": {
        "smoothing": [0.1, 0.1],
        "gamma": [2.0, 2.0],
        "tau": [0.5, 0.5],
        "q": [0.5, 0.5],
        "phis": ["squared_hinge"],
    },
    "pruning": {"sparsities": [0.75], "scopes": ["global"], "channel_norms": [1]},
    "quantization": {"activation_bits": [8], "granularities": ["per_channel"], "schemes": ["symmetric"]},
    "data_pruning": {"fractions": [0.7], "keep": ["auto"]},
}
# Further choices of a dimension, each row with the baseline's choice of the main option: (dimension, table).
EXTRA_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("quantization", "dorefa W4 A8 G8", {"weight_bits": [4], "methods": ["dorefa"], "gradient_bits": [8]}),
    ("quantization", "W4 A8, first 50% of steps in full precision", {"weight_bits": [4], "fp_fractions": [0.5]}),
    ("dynamic_pruning", "FTWT gate, mass 0.9", {"gate": [True], "masses": [0.9]}),
    ("dynamic_pruning", "FTWT gate, mass 1.0", {"gate": [True], "masses": [1.0]}),
]
# Choices measured by another benchmark or task: embeddings need Recall@1 (benchmarks/losses.py).
SKIP = {("loss", "multi_similarity"): "trains embeddings: Recall@1 in benchmarks/losses.py"}


def rows_to_run(only: list[str] | None) -> list[tuple[str, Any, dict[str, Any] | None, str | None]]:
    """(dimension, choice, its table or None for the baseline, why it is skipped)."""
    registry = get_registry()
    rows: list[tuple[str, Any, dict[str, Any] | None, str | None]] = [("baseline", "-", None, None)]
    for dim, option in CHOICE_OPTION.items():
        if only and dim not in only or dim not in registry.names("dimensions"):
            continue
        declared = registry.get("dimensions", dim).options[option]
        for choice in declared.choices or declared.default:
            table_ = {"name": dim, option: [choice], **FIXED.get(dim, {})}
            rows.append((dim, choice, table_, SKIP.get((dim, choice))))
    for dim, label, extra in EXTRA_ROWS:
        if (only and dim not in only) or dim not in registry.names("dimensions"):
            continue
        rows.append((dim, label, {"name": dim, **FIXED.get(dim, {}), **extra}, None))
    return rows


def train(dim_table: dict[str, Any] | None, seed: int, args: argparse.Namespace) -> tuple[float, float]:
    """Validation accuracy and seconds per epoch of one training."""
    dims: list[dict[str, Any]] = [{"name": "nb201", "channels": 8, "cells_per_stage": 1}]
    if dim_table is not None:
        dims.append(dim_table)
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "recipe-benchmark", "sampler": "random", "seed": seed},
            "task": {"name": "digits", "batch_size": 64, "image_size": 16},
            "dimensions": dims,
            "evaluator": {"name": "training", "epochs": args.epochs, "lr": 0.05},
            "objectives": [{"metric": "val_accuracy"}],
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.enqueue_trial(space.arch_params(args.cell))
    candidate = space.sample(study.ask())  # the cell fixed, the one choice of the recipe dimension taken
    result = automl.evaluate(candidate, space.evaluator, seed=seed, device="cpu")
    return result.scores["val_accuracy"], result.info["train_seconds"] / args.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--only", nargs="+", default=None, help="dimensions to measure (default: all; none: the baseline)"
    )
    parser.add_argument("--cell", default=CELL, help="the NB201 cell every row trains (default: a ResNet-like cell)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = []
    baseline = None
    for dim, choice, dim_table, skip in rows_to_run(args.only):
        if skip:
            results.append([dim, str(choice), None, None, None, None, skip])
            continue
        accuracies, epoch_s, reason = [], [], ""
        start = time.perf_counter()
        for seed in args.seeds:
            try:
                accuracy, seconds = train(dim_table, seed, args)
            except automl.SpaceError as err:
                reason = f"n/a: {err.message}"
                break
            accuracies.append(accuracy)
            epoch_s.append(seconds)
        if reason:
            results.append([dim, str(choice), None, None, None, None, reason])
            continue
        mean = statistics.mean(accuracies)
        std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        if dim == "baseline":
            baseline = mean
        delta = None if baseline is None else mean - baseline
        chance = " at chance" if mean < 0.2 else ""
        results.append(
            [
                dim,
                str(choice),
                round(mean, 3),
                round(std, 3),
                None if delta is None else round(delta, 3),
                round(statistics.mean(epoch_s), 2),
                chance.strip(),
            ]
        )
        print(f"{dim} {choice}: {mean:.3f} ± {std:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print(table(results, ["dimension", "choice", "val acc", "± std", "Δ baseline", "s/epoch", "note"]))


if __name__ == "__main__":
    main()
