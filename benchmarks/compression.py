"""Accuracy after a short quantization-aware training beside model size in bits, for a few NB201 cells.

For each cell, every combination of weight bit-width (32/8/4/2; activations stay 32-bit) and global
magnitude sparsity (0/50/90%) is trained with the training evaluator's function (``train_candidate``) on
the digits task, and the table shows validation and test accuracy beside parameters kept and size in
bits: the trade-off a compression search chooses from.

    python benchmarks/compression.py [--epochs 8] [--channels 8] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

import automl
from automl.report import table
from automl_plugins.evaluators.training import train_candidate

CELLS = {
    "resnet-like": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "conv-heavy": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "1x1+pool": "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|",
}
BITS = (32, 8, 4, 2)
SPARSITIES = (0.0, 0.5, 0.9)


def space(channels: int, cells_per_stage: int, image_size: int) -> automl.SearchSpace:
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "compression-benchmark", "sampler": "random"},
            "task": {"name": "digits", "batch_size": 64, "image_size": image_size},
            "dimensions": [
                {"name": "nb201", "channels": channels, "cells_per_stage": cells_per_stage},
                {"name": "pruning", "methods": ["magnitude"], "sparsities": list(SPARSITIES)},
                {
                    "name": "quantization",
                    "weight_bits": list(BITS),
                    "activation_bits": [32],
                    "granularities": ["per_channel"],
                    "schemes": ["symmetric"],
                },
            ],
            "evaluator": {"name": "training"},
            "objectives": [{"metric": "val_accuracy"}],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells-per-stage", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    search_space = space(args.channels, args.cells_per_stage, args.image_size)
    settings = {"epochs": args.epochs, "lr": args.lr}
    rows = []
    for cell_name, cell in CELLS.items():
        for sparsity in SPARSITIES:
            for bits in BITS:
                params = {
                    "pruning.method": "magnitude",
                    "pruning.scope": "global",
                    "pruning.sparsity": sparsity,
                    "quantization.weight_bits": bits,
                    "quantization.activation_bits": 32,
                    "quantization.granularity": "per_channel",
                    "quantization.scheme": "symmetric",
                }
                candidate = search_space.candidate_from_arch(cell, params)
                candidate.seed = args.seed
                start = time.perf_counter()
                result = train_candidate(candidate, settings, None, args.device)
                costs = result.costs
                rows.append(
                    [
                        cell_name,
                        bits,
                        f"{sparsity:.0%}",
                        int(costs["params"]),
                        int(costs["size_bits"]),
                        round(costs["size_bits"] / 8 / 1024, 2),
                        result.scores["val_accuracy"],
                        result.scores["test_accuracy"],
                        round(time.perf_counter() - start, 2),
                    ]
                )
                print(" ".join(map(str, rows[-1])), flush=True)
    print(
        f"\nNB201 on digits ({args.image_size}px, C={args.channels}, N={args.cells_per_stage}), "
        f"{args.epochs} epochs of QAT on {args.device}; global magnitude pruning (classifier kept whole), "
        "per-channel symmetric weight quantization"
    )
    print(table(rows, ["cell", "w bits", "sparsity", "params", "size_bits", "KiB", "val_acc", "test_acc", "s"]))


if __name__ == "__main__":
    main()
