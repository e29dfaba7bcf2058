"""How well a weight-sharing supernet ranks architecture × bit-width candidates against stand-alone training.

A fixed sample of candidates (NB201 cells × per-layer weight bit-widths × granularity × scheme, drawn
by a seeded random sampler) is scored twice: by the ``supernet`` evaluator (one supernet trained once,
inherited weights, BatchNorm recalibrated) and by training each candidate from scratch with the training
evaluator's function (same data, optimizer, learning rate and batch size). The table gives the supernet's
training time, the time per candidate of each, and Kendall τ and Spearman ρ between the two accuracies.

The task is digits at low resolution with fewer training samples (``--image-size 8``,
``--train-samples 400`` by default) so that stand-alone accuracies spread instead of all reaching ~98%.

    python benchmarks/supernet.py [--candidates 40] [--supernet-epochs 30] [--epochs 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import optuna
import torch
from scipy import stats

import automl
from automl.report import table
from automl_plugins.evaluators.training import train_candidate

SAMPLINGS = ("uniform", "pada", "few_shot")  # the path samplings the supernet evaluator implements


def space(args: argparse.Namespace, sampling: str, folder: str) -> automl.SearchSpace:
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "supernet-benchmark", "seed": args.seed, "sampler": "random"},
            "task": {"name": "digits", "batch_size": args.batch_size, "image_size": args.image_size, "channels": 1},
            "dimensions": [
                {"name": "nb201", "channels": args.channels, "cells_per_stage": 1},
                {
                    "name": "quantization",
                    "weight_bits": [2, 3, 4, 8, 32],
                    "activation_bits": [32],
                    "per_layer": True,
                },
            ],
            "evaluator": {
                "name": "supernet",
                "epochs": args.supernet_epochs,
                "lr": args.lr,
                "max_train_samples": args.train_samples,
                "sampling": sampling,
                "few_shot_splits": args.few_shot_splits,
                "gm_repeats": args.gm_repeats,
                "calibration_batches": args.calibration_batches,
                "weights_dir": folder,
            },
            "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--supernet-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=15, help="stand-alone training epochs per candidate")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--train-samples", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplings", default=",".join(SAMPLINGS), help="comma-separated path samplings")
    parser.add_argument("--few-shot-splits", type=int, default=2, help="few_shot: split rounds (2: four sub-supernets)")
    parser.add_argument("--gm-repeats", type=int, default=100, help="few_shot: minibatches of the gradient matching")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        base = space(args, SAMPLINGS[0], folder)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
        params: list[dict] = []
        candidates = []
        for _ in range(args.candidates):
            trial = study.ask()
            candidates.append(base.sample(trial))
            params.append(dict(trial.params))

        standalone, standalone_s = [], []
        recipe = {"epochs": args.epochs, "lr": args.lr, "max_train_samples": args.train_samples}
        recipe["batch_size"] = args.batch_size
        for candidate in candidates:
            start = time.perf_counter()
            result = train_candidate(candidate, recipe, device=args.device)
            standalone_s.append(time.perf_counter() - start)
            standalone.append(result.scores["val_accuracy"])
            print(f"stand-alone {len(standalone)}/{len(candidates)}: {standalone[-1]:.3f}", file=sys.stderr, flush=True)

        rows = []
        for sampling in args.samplings.split(","):
            sp = space(args, sampling, folder)
            evaluator = sp.evaluator
            start = time.perf_counter()
            _, trained = evaluator.supernet(sp.candidate(params[0]), args.seed, torch.device(args.device))
            train_s = time.perf_counter() - start
            if sampling == "few_shot":
                for split in trained["info"]["splits"]:
                    print(f"few_shot split: {split}", file=sys.stderr)
                sampling = f"few_shot ({trained['info']['sub_supernets']} sub-supernets)"
            shared, shared_s = [], []
            for p in params:
                candidate = sp.candidate(p)
                start = time.perf_counter()
                result = automl.evaluate(candidate, evaluator, seed=args.seed, device=args.device)
                shared_s.append(time.perf_counter() - start)
                shared.append(result.scores["val_accuracy"])
            tau = stats.kendalltau(shared, standalone).statistic
            rho = stats.spearmanr(shared, standalone).statistic
            rows.append(
                [
                    sampling,
                    f"{train_s:.1f}",
                    f"{statistics.mean(shared_s):.3f}",
                    f"{statistics.mean(standalone_s):.2f}",
                    f"{min(shared):.3f}–{max(shared):.3f}",
                    f"{min(standalone):.3f}–{max(standalone):.3f}",
                    f"{tau:.3f}",
                    f"{rho:.3f}",
                ]
            )
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"{args.candidates} candidates; digits {args.image_size} px, {args.train_samples} training samples; "
        f"NB201 C={args.channels} N=1; supernet {args.supernet_epochs} epochs, stand-alone {args.epochs} epochs; {where}"
    )
    header = [
        "sampling",
        "supernet train s",
        "s/candidate (supernet)",
        "s/candidate (stand-alone)",
        "supernet acc range",
        "stand-alone acc range",
        "Kendall τ",
        "Spearman ρ",
    ]
    print(table(rows, header))


if __name__ == "__main__":
    main()
