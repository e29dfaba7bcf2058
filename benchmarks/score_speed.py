"""How fast `automl score` ranks NAS-Bench-201 cells: full-size networks against the reduced whole-space setting.

The same cells (a seeded sample of distinct cells) are scored with the whole-space proxy set (synflow,
nwot, jacob_cov, params, meco and AZ-NAS's four, every one from the shared pass) in four ways, side by
side in one run, without the score cache:

- full size (C = 16, N = 5, 64 digits at 32×32), one process, one thread: the setting of the published
  correlations and of the benchmark tables;
- full size, ``--workers`` processes;
- the whole-space setting (the same network and minibatch, digits at 16×16), one process;
- the whole-space setting, ``--workers`` processes (``search_spaces/nb201_whole_space.toml``).

Each row gives cells per second and the minutes the 6,466 distinct cells would take at that rate.
How much ranking quality the smaller input costs is measured separately, on 1,000 cells, by
``proxy_correlation.py --image-size 16 --compare-with FULL.csv``.

    python benchmarks/score_speed.py [--cells 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from automl.report import table
from automl_plugins.evaluators.proxies import AGGREGATE_PRESETS
from automl_plugins.proxies.score import score_architectures

PROXIES = list(AGGREGATE_PRESETS["default"])  # the default aggregate's nine
WHOLE_SPACE = 6466  # distinct NAS-Bench-201 cells


def space(image_size: int) -> dict:
    return {
        "task": {"name": "digits", "batch_size": 64, "image_size": image_size, "channels": 3},
        "dimensions": [{"name": "nb201", "channels": 16, "cells_per_stage": 5}],
        "evaluator": {"name": "proxies", "proxies": ["params"]},
        "objectives": [{"metric": "params"}],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=40, help="distinct cells scored in each setting")
    parser.add_argument("--workers", type=int, default=2, help="processes of the parallel rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cell sample")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from automl_plugins.proxies.score import whole_space_architectures

    cells = whole_space_architectures(space(32))
    random.Random(args.seed).shuffle(cells)
    cells = cells[: args.cells]
    rows = []
    for label, image_size, workers in [
        ("full size (32×32), 1 process", 32, 1),
        (f"full size (32×32), {args.workers} workers", 32, args.workers),
        ("whole-space setting (16×16), 1 process", 16, 1),
        (f"whole-space setting (16×16), {args.workers} workers", 16, args.workers),
    ]:
        start = time.perf_counter()
        score_architectures(cells, space(image_size), PROXIES, cache=False, device="cpu", workers=workers)
        seconds = time.perf_counter() - start
        rate = len(cells) / seconds
        rows.append([label, f"{seconds:.1f}", f"{rate:.2f}", f"{WHOLE_SPACE / rate / 60:.1f}"])
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(
        f"{len(cells)} distinct NAS-Bench-201 cells (C = 16, N = 5, batch 64), proxies {', '.join(PROXIES)}; "
        f"{os.cpu_count()} CPUs, one torch thread per process"
    )
    print(table(rows, ["setting", "seconds", "cells/s", f"minutes for all {WHOLE_SPACE:,}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
