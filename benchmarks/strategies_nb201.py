"""Search strategies on NAS-Bench-201 at a budget of T oracle queries: found test accuracy and wall time.

The oracle is the NAS-Bench-201 table (plugins/data/nb201_accuracy.csv): a query returns a cell's
200-epoch CIFAR-10 (or CIFAR-100) test accuracy, and the search keeps the best queried cell. The
RoBoT paper's oracle was a 12-epoch validation accuracy, reporting the found cell's test accuracy:
ours is the easier, noiseless version of the same protocol. The proxies are computed on
scikit-learn's digits (32×32 by default), for a pool of sampled cells (or the whole space), once:
they go to the score cache and every later run reads them back.

    .venv/bin/python benchmarks/strategies_nb201.py                       # full-size cells (hours on a CPU)
    .venv/bin/python benchmarks/strategies_nb201.py --channels 8 --cells 1 --image-size 16   # minutes

Prints a markdown table: mean ± std over the seeds of the found test accuracy, per method.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any

import optuna
import torch

import automl
from automl.cache import ScoreCache
from automl_plugins.evaluators.tables import load_benchmark
from automl_plugins.strategies.pool import build_pool, proxy_matrix

ROBOT_PROXIES = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov"]
PUBLISHED = {  # He et al., ICLR 2024, Table 3 (NAS-Bench-201, T = 20, 10 seeds)
    "RoBoT, published (whole space, 12-epoch validation oracle)": (94.36, 73.51),
    "optimum of the whole space (published)": (94.37, 73.51),
}
METRICS = ("cifar10", "cifar100")


def space_dict(args: argparse.Namespace, metric: str, strategy: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "study": {"name": "bench", "n_trials": max(args.budget, 1), "seed": 0},
        "task": {"name": "digits", "batch_size": args.batch_size, "image_size": args.image_size},
        "dimensions": [{"name": "nb201", "channels": args.channels, "cells_per_stage": args.cells}],
        "evaluator": {"name": "proxies", "proxies": list(args.proxies)},
        "objectives": [{"metric": metric if strategy else args.proxies[0], "direction": "maximize"}],
    }
    if strategy is not None:
        data["strategy"] = {
            "oracle": {"name": "table", "benchmark": "nb201", "metrics": [metric]},
            "pool_size": args.pool_size,
            "whole_space": args.whole_space,
            "pool_seed": args.pool_seed,
            **strategy,
        }
        if strategy["name"] in ("random", "evolution"):
            for key in ("pool_size", "whole_space", "pool_seed"):
                data["strategy"].pop(key)
    return data


def methods(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    T = args.budget
    found = [
        (f"RoBoT (GP), T={T}", {"name": "robot", "budget": T, "sampler": "gp"}),
        (f"RoBoT (TPE), T={T}", {"name": "robot", "budget": T, "sampler": "tpe"}),
        (
            f"RoBoT (reference preset: raw min-max, GP-UCB κ=2.576, 1 random start), T={T}",
            {"name": "robot", "budget": T, "preset": "reference"},
        ),
    ]
    found += [
        (f"{p} alone (top-1, 1 query)", {"name": "proxy_then_oracle", "budget": 1, "proxies": [p]})
        for p in args.proxies
    ]
    found += [
        (
            f"proxy-then-oracle (sum of the {len(args.proxies)} normalized proxies, top {T})",
            {"name": "proxy_then_oracle", "budget": T},
        ),
        (f"random search, T={T}", {"name": "random", "budget": T}),
        (f"regularized evolution, T={T}", {"name": "evolution", "budget": T}),
    ]
    return [(label, s) for label, s in found if not args.only or any(o in label for o in args.only)]


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=20, help="oracle queries T")
    parser.add_argument("--pool-size", type=int, default=1000)
    parser.add_argument("--whole-space", action="store_true", help="pool = all 15,625 cells")
    parser.add_argument("--pool-seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=16, help="NB201 C for the proxies' networks")
    parser.add_argument("--cells", type=int, default=5, help="NB201 cells per stage N for the proxies' networks")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--proxies", nargs="+", default=ROBOT_PROXIES)
    parser.add_argument("--cache", default="automl-cache.db", help="score cache holding the pool's proxies")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--workers", type=int, default=1, help="score the pool's missing proxies first in this many processes"
    )
    parser.add_argument("--only", nargs="*", default=None, help="run only methods whose label contains one of these")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache = ScoreCache(args.cache)

    # The pool and its proxies: computed once (and cached), then every run reads them back.
    space = automl.SearchSpace.from_dict(space_dict(args, "cifar10", None))
    pool, kind = build_pool(space, size=args.pool_size, whole_space=args.whole_space, seed=args.pool_seed)
    runner = automl.StudyRunner(space, storage=":memory:", seed=0, cache=cache)
    start = time.perf_counter()
    if args.workers > 1:  # fill the score cache in parallel; proxy_matrix then reads it back
        from automl_plugins.proxies.score import score_architectures

        cells = [c.architecture.to_string() for c in pool]
        score_architectures(cells, space.raw, list(args.proxies), cache=cache, workers=args.workers, progress=True)
    matrix = proxy_matrix(runner, pool, args.proxies, space.evaluator)
    proxy_time = time.perf_counter() - start
    computed, cached = runner.cache.misses, runner.cache.hits
    table = load_benchmark("nb201")
    optimum = {m: max(table.rows[c.architecture.to_string()][m] for c in pool) for m in METRICS}

    def hits(values: list[float], metric: str) -> str:
        return f"{sum(v >= optimum[metric] for v in values)}/{len(values)}"

    nan_share = {p: float(sum(math.isnan(v) for v in matrix[:, i])) / len(pool) for i, p in enumerate(args.proxies)}
    print(
        f"pool: {kind}, {len(pool)} cells; proxies {', '.join(args.proxies)} on digits "
        f"{args.image_size}x{args.image_size}, batch {args.batch_size}, NB201 C={args.channels} N={args.cells}; "
        f"{proxy_time:.0f} s to read or compute them ({computed} computed, {cached} cached)",
        file=sys.stderr,
    )
    print(f"NaN share per proxy: {nan_share}", file=sys.stderr)

    rows = []
    for label, strategy in methods(args):
        found: dict[str, list[float]] = {m: [] for m in METRICS}
        walls: list[float] = []
        for metric in METRICS:
            for seed in range(args.seeds):
                run_space = automl.SearchSpace.from_dict(space_dict(args, metric, {**strategy, "seed": seed}))
                start = time.perf_counter()
                run = automl.StudyRunner(run_space, storage=":memory:", seed=0, cache=cache)
                run.run()
                walls.append(time.perf_counter() - start)
                found[metric].append(run.study.best_value)
        rows.append(
            [
                label,
                strategy["budget"],
                fmt(found["cifar10"]),
                fmt(found["cifar100"]),
                hits(found["cifar10"], "cifar10"),
                hits(found["cifar100"], "cifar100"),
                f"{statistics.fmean(walls):.2f}",
            ]
        )
        print(" | ".join(map(str, rows[-1])), file=sys.stderr)

    print(
        f"\nNAS-Bench-201, oracle = the table's 200-epoch test accuracy, T = {args.budget} queries, "
        f"{args.seeds} seeds (mean ± std); pool: {kind} ({len(pool)} cells), proxies on digits with "
        f"NB201 C={args.channels} N={args.cells}, {args.image_size}x{args.image_size}; "
        f"pool proxies: {proxy_time:.0f} s this run ({computed} computed, {cached} from the cache)\n"
    )
    print(
        "| method | queries | CIFAR-10 test acc | CIFAR-100 test acc | pool optimum found, C-10 | pool optimum found, "
        "C-100 | wall s / run |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print(f"| optimum of this pool | - | {optimum['cifar10']:.2f} | {optimum['cifar100']:.2f} | - | - | - |")
    for label, (c10, c100) in PUBLISHED.items():
        print(f"| {label} | {20 if 'RoBoT' in label else '-'} | {c10:.2f} | {c100:.2f} | - | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
