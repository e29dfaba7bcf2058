"""Build time and forward+backward time of each architecture space on a typical batch, on this machine.

Usage:  python benchmarks/spaces.py [--samples 5] [--repeats 3] [--threads N] [--device cpu|cuda]

For each space, ``--samples`` architectures are sampled with a seeded random sampler and each is built
(fresh, initialised) and run forward + backward on one batch ``--repeats`` times; the table gives the median
over architectures of the median time per architecture, the median parameter count, and the batch.
Typical batches: NB201 (C=16, N=5, the benchmark's network) on 32×32 digits, batch 64; nlp_rnn
(2 layers, embedding and hidden 64) on text_lm, 32 × 32 tokens; flexibert on text_mlm, 16 × 32 tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time

import optuna
import torch

from automl import SearchSpace


def _space(task: dict, dimension: dict) -> SearchSpace:
    return SearchSpace.from_dict(
        {
            "study": {"name": "bench", "sampler": "random"},
            "task": task,
            "dimensions": [dimension],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params", "direction": "minimize"}],
        }
    )


SPACES = {
    "nb201 (C=16, N=5)": (
        _space(
            {"name": "digits", "image_size": 32, "batch_size": 64},
            {"name": "nb201", "channels": 16, "cells_per_stage": 5},
        ),
        "64 × 3×32×32",
    ),
    "nlp_rnn (2 × 64)": (
        _space(
            {"name": "text_lm", "seq_len": 32, "batch_size": 32},
            {"name": "nlp_rnn", "embedding_size": 64, "hidden_size": 64, "layers": 2},
        ),
        "32 × 32 tokens",
    ),
    "flexibert": (
        _space({"name": "text_mlm", "seq_len": 32, "batch_size": 16}, {"name": "flexibert"}),
        "16 × 32 tokens",
    ),
}


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if logits.dim() == 3:
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return torch.nn.functional.cross_entropy(logits, targets)


def measure(space: SearchSpace, samples: int, repeats: int, device: str) -> dict[str, float]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    batch = space.task.batch(seed=0).to(device)
    builds, steps, params = [], [], []
    for _ in range(samples):
        candidate = space.sample(study.ask())
        start = time.perf_counter()
        model = candidate.build_model(device)
        builds.append(time.perf_counter() - start)
        params.append(sum(p.numel() for p in model.parameters()))
        times = []
        for _ in range(repeats + 1):  # the first pass warms up
            model.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            _loss(model(batch.inputs), batch.targets).backward()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        steps.append(statistics.median(times[1:]))
    return {
        "build_ms": 1000 * statistics.median(builds),
        "step_ms": 1000 * statistics.median(steps),
        "step_max_ms": 1000 * max(steps),
        "params": statistics.median(params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; {args.samples} random architectures per space, median of {args.repeats} steps each\n")
    header = f"{'space':<20} {'batch':<15} {'params (median)':>16} {'build ms':>9} {'fwd+bwd ms':>11} {'worst':>8}"
    print(header)
    print("─" * len(header))
    for name, (space, batch) in SPACES.items():
        row = measure(space, args.samples, args.repeats, args.device)
        print(
            f"{name:<20} {batch:<15} {row['params']:>16,.0f} {row['build_ms']:>9.1f} {row['step_ms']:>11.1f} "
            f"{row['step_max_ms']:>8.1f}"
        )


if __name__ == "__main__":
    main()
