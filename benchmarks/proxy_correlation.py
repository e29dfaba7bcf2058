"""How well each training-free proxy ranks real architectures, and what it costs.

NAS-Bench-201: a fixed random sample of cells (full skeleton, C=16, N=5, as the published figures
use) scored on one minibatch of the digits task with every cell proxy, compared by Spearman ρ and
Kendall τ with the CIFAR-10 / CIFAR-100 test accuracies of ``plugins/data/nb201_accuracy.csv``,
beside the published values. FlexiBERT: the transformer proxies against GLUE, when a transformer
architecture space is installed. Also milliseconds per architecture for each proxy alone, and for all
of them together through the proxy evaluator (shared passes).

    python benchmarks/proxy_correlation.py --sample 1000 --out nb201_scores.csv

``--out`` keeps every scored cell; running again with the same file resumes where it stopped.
``--time-limit`` stops scoring after that many seconds and reports on the cells scored so far.
``--workers N`` scores in N processes (one torch thread each). ``--image-size``, ``--channels`` and
``--cells`` score other settings than the full-size one; ``--compare-with FULL.csv`` prints each proxy's
and each aggregate's ρ in both settings side by side (how much a reduced setting loses):

    python benchmarks/proxy_correlation.py --sample 1000 --workers 2 --image-size 16 --out px16.csv \
        --compare-with nb201_1000.csv --skip-flexibert --timing-sample 0
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

import automl
from automl import Batch, EvalContext, SearchSpace, get_registry
from automl_plugins.evaluators.proxies import AGGREGATE_PRESETS
from automl_plugins.proxies.score import record_to_arch

CELL_PROXIES = [
    "grad_norm",
    "snip",
    "grasp",
    "fisher",
    "jacob_cov",
    "nwot",
    "synflow",
    "zen",
    "params",
    "flops",
    "zico",
    "meco",
    "swap",
    "az_expressivity",
    "az_progressivity",
    "az_trainability",
    "az_complexity",
]
# Spearman ρ on CIFAR-10: Abdelfattah et al. 2021 (all 15,625 cells) and NAS-Bench-Suite-Zero (725 cells).
PUBLISHED_RHO_C10 = {
    "grad_norm": 0.59,
    "snip": 0.60,
    "grasp": 0.51,
    "fisher": 0.36,
    "synflow": 0.74,
    "jacob_cov": 0.73,
    "nwot": 0.79,
    "params": 0.74,
    "flops": 0.71,
}
TARGET_RHO_C10 = {"synflow": 0.74, "nwot": 0.75, "jacob_cov": 0.70, "params": 0.72, "snip": 0.55, "grad_norm": 0.55}
# Rank aggregates reported beside the single proxies (the sample itself is the reference pool).
BASELINE_AGGREGATE = ("synflow", "nwot", "jacob_cov", "params")
AGGREGATE_SETS: dict[str, tuple[str, ...]] = {
    "baseline": BASELINE_AGGREGATE,
    "default (shipped)": AGGREGATE_PRESETS["default"],
    "az_nas": AGGREGATE_PRESETS["az_nas"],
    "baseline + meco": (*BASELINE_AGGREGATE, "meco"),
    "baseline + zico, meco": (*BASELINE_AGGREGATE, "zico", "meco"),
    "baseline + az_nas": (*BASELINE_AGGREGATE, *AGGREGATE_PRESETS["az_nas"]),
    "baseline + zico, meco, swap + az_nas": (*BASELINE_AGGREGATE, "zico", "meco", "swap", *AGGREGATE_PRESETS["az_nas"]),
}
# AZ-NAS (Lee & Ham, CVPR 2024) on NAS-Bench-201 CIFAR-10: Spearman ρ about 0.9.
PUBLISHED_AGGREGATE = {("az_nas", "log_rank"): "≈ 0.9 (AZ-NAS paper)"}
TRANSFORMER_PROXIES = [
    "wpca",
    "params",
    "head_confidence",
    "softmax_confidence",
    "activation_distance",
    "synaptic_saliency",
]
WPCA_MEAN = 'wpca, reduce = "mean" (reference)'
PUBLISHED_TAU_GLUE = {
    "head_confidence": 0.48,
    "params": 0.45,
    "activation_distance": 0.22,
    "softmax_confidence": 0.22,
    "synaptic_saliency": 0.19,
}


def load_nb201() -> dict[str, tuple[float, float]]:
    path = importlib.resources.files("automl_plugins.data").joinpath("nb201_accuracy.csv")
    with path.open() as f:
        return {
            row["arch"]: (float(row["cifar10_test_acc"]), float(row["cifar100_test_acc"])) for row in csv.DictReader(f)
        }


def nb201_space(
    proxies: list[str],
    batch_size: int,
    channels: int = 16,
    cells: int = 5,
    proxy_options: dict | None = None,
    image_size: int = 32,
) -> SearchSpace:
    """NB201 cells (the published figures' full skeleton by default) scored on a digits minibatch."""
    evaluator: dict = {"name": "proxies", "proxies": proxies}
    if proxy_options:
        evaluator["proxy_options"] = proxy_options
    return SearchSpace.from_dict(
        {
            "task": {"name": "digits", "batch_size": batch_size, "image_size": image_size, "channels": 3},
            "dimensions": [{"name": "nb201", "channels": channels, "cells_per_stage": cells}],
            "evaluator": evaluator,
            "objectives": [{"metric": proxies[0]}],
        }
    )


INPUTS = ("digits", "digits-shuffled", "noise", "photos")


def substitute_batch(inputs: str, space: SearchSpace, size: int) -> Batch | None:
    """The minibatch for ``--inputs`` (``None``: the digits task's own fixed-seed minibatch).

    ``digits-shuffled``: the same digits with their labels permuted; ``noise``: N(0, 1) images; ``photos``:
    crops of scikit-learn's two sample photographs (needs pillow to decode them), standardised per channel.
    The last two have no classes: their labels are drawn at random.
    """
    if inputs == "digits":
        return None
    generator = torch.Generator().manual_seed(123)
    labels = torch.randint(0, 10, (size,), generator=generator)
    if inputs == "digits-shuffled":
        own = space.task.batch(size, seed=0)
        return Batch(own.inputs, own.targets[torch.randperm(size, generator=generator)])
    if inputs == "noise":
        return Batch(torch.randn(size, 3, 32, 32, generator=generator), labels)
    try:
        from sklearn.datasets import load_sample_images

        photos = [
            torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255.0 for image in load_sample_images().images
        ]
    except ImportError as err:
        raise SystemExit(f"--inputs photos: {err}") from None
    crops = torch.Generator().manual_seed(0)
    images = []
    for i in range(size):
        photo, side = photos[i % len(photos)], 96
        top = int(torch.randint(0, photo.shape[1] - side, (1,), generator=crops))
        left = int(torch.randint(0, photo.shape[2] - side, (1,), generator=crops))
        window = photo[None, :, top : top + side, left : left + side]
        images.append(torch.nn.functional.interpolate(window, size=32, mode="bilinear", antialias=True)[0])
    x = torch.stack(images)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    return Batch(x, labels)


def read_scores(path: str | None) -> dict[str, dict[str, float]]:
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return {
            row["arch"]: {k: float(v) for k, v in row.items() if k not in ("arch", "ms")} for row in csv.DictReader(f)
        }


def score_cells(
    space: SearchSpace,
    archs: list[str],
    proxies: list[str],
    out: str | None,
    time_limit: float | None,
    batch: Batch | None = None,
    workers: int = 1,
) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Score ``archs`` with every proxy together (one evaluator call per cell); resumes from ``out``.

    ``batch`` replaces the task's minibatch (the proxies' shared passes still run once per cell).
    """
    done = read_scores(out)
    fresh = not done
    writer = None
    handle = None
    if out:
        handle = open(out, "a", newline="")  # noqa: SIM115
        writer = csv.DictWriter(handle, fieldnames=["arch", *proxies, "ms"])
        if fresh:
            writer.writeheader()
    start = time.perf_counter()
    together_ms = []
    pending = [a for a in archs if a not in done]

    def keep(arch: str, scores: dict[str, float], ms: float) -> None:
        together_ms.append(ms)
        done[arch] = scores
        if writer:
            writer.writerow({"arch": arch, **scores, "ms": round(ms, 1)})
            handle.flush()
        if len(together_ms) % 10 == 0:
            print(f"{len(together_ms)}/{len(pending)} cells, {ms:.0f} ms for the last", file=sys.stderr)

    try:
        if workers > 1 and batch is None:
            # One torch thread per process; the CSV is written here as cells come back, so it stays resumable.
            with ProcessPoolExecutor(workers, initializer=_worker_start, initargs=(space.raw,)) as pool:
                futures = {pool.submit(_worker_score, arch): arch for arch in pending}
                for future in as_completed(futures):
                    keep(futures[future], *future.result())
                    if time_limit is not None and time.perf_counter() - start > time_limit:
                        print(f"time limit reached after {len(together_ms)} cells", file=sys.stderr)
                        for other in futures:
                            other.cancel()
                        break
        else:
            context = EvalContext(None, seed=0, device="cpu")
            for arch in pending:
                if time_limit is not None and time.perf_counter() - start > time_limit:
                    print(f"time limit reached after {len(together_ms)} cells", file=sys.stderr)
                    break
                candidate = space.candidate_from_arch(arch)
                t0 = time.perf_counter()
                if batch is None:
                    scores = dict(space.evaluator.evaluate(candidate, context).scores)
                else:
                    scores = space.evaluator.score_all(candidate, batch)[0]
                keep(arch, scores, (time.perf_counter() - t0) * 1000.0)
    finally:
        if handle:
            handle.close()
    return {a: done[a] for a in archs if a in done}, together_ms


_WORKER: dict = {}


def _worker_start(table: dict) -> None:
    torch.set_num_threads(1)
    automl.get_registry()
    _WORKER["space"] = SearchSpace.from_dict(table)
    _WORKER["context"] = EvalContext(None, seed=0, device="cpu")


def _worker_score(arch: str) -> tuple[dict[str, float], float]:
    space = _WORKER["space"]
    candidate = space.candidate_from_arch(arch)
    t0 = time.perf_counter()
    scores = dict(space.evaluator.evaluate(candidate, _WORKER["context"]).scores)
    return scores, (time.perf_counter() - t0) * 1000.0


def correlations(
    scores: dict[str, dict[str, float]], truth: dict[str, tuple[float, ...]], proxy: str, column: int
) -> tuple[float, float, int]:
    pairs = [
        (s[proxy], truth[a][column])
        for a, s in scores.items()
        if proxy in s and not math.isnan(s[proxy]) and a in truth
    ]
    if len(pairs) < 3:
        return math.nan, math.nan, len(pairs)
    x, y = zip(*pairs)
    return float(spearmanr(x, y)[0]), float(kendalltau(x, y)[0]), len(pairs)


def rho_nan_last(scores: dict[str, dict[str, float]], truth: dict[str, tuple[float, ...]], proxy: str) -> float:
    """Spearman ρ on CIFAR-10 with NaN scores ranked below every other (a proxy that fails predicts worst)."""
    archs = [a for a in scores if proxy in scores[a] and a in truth]
    if len(archs) < 3:
        return math.nan
    x = [scores[a][proxy] for a in archs]
    floor = min((v for v in x if not math.isnan(v)), default=0.0) - 1.0
    x = [floor if math.isnan(v) else v for v in x]
    return float(spearmanr(x, [truth[a][0] for a in archs])[0])


def bootstrap_rho(
    x: np.ndarray, baseline: np.ndarray, y: np.ndarray, draws: int = 500, seed: int = 0
) -> tuple[float, float, float, float]:
    """ρ(x, y), its bootstrap standard error over the cells, ρ(x, y) − ρ(baseline, y) and that difference's SE."""
    rng = np.random.default_rng(seed)
    rho = float(spearmanr(x, y)[0])
    delta = rho - float(spearmanr(baseline, y)[0])
    rhos, deltas = [], []
    for _ in range(draws):
        i = rng.integers(0, len(y), len(y))
        r = float(spearmanr(x[i], y[i])[0])
        rhos.append(r)
        deltas.append(r - float(spearmanr(baseline[i], y[i])[0]))
    return rho, float(np.std(rhos)), delta, float(np.std(deltas))


def aggregate_section(scores: dict[str, dict[str, float]], truth: dict[str, tuple[float, float]]) -> list[str]:
    """Every aggregate of ``AGGREGATE_SETS`` whose proxies were scored, both aggregations, vs today's mean rank."""
    from automl_plugins.evaluators.proxies import aggregate_within

    archs = [a for a in scores if a in truth]
    rows = [scores[a] for a in archs]
    if not rows or any(p not in rows[0] for p in BASELINE_AGGREGATE):
        return [f"(rank aggregates need today's aggregate, {', '.join(BASELINE_AGGREGATE)}: not all scored)"]
    columns = [np.array([truth[a][c] for a in archs]) for c in (0, 1)]
    baseline = np.array(aggregate_within(rows, BASELINE_AGGREGATE, "mean_rank"))
    lines = [
        (
            f"Rank aggregates over the {len(archs)} scored cells (the sample is the reference pool; NaN ranked "
            "last). Today's aggregate: the mean rank of synflow, nwot, jacob_cov and params; Δ is against it, "
            "with bootstrap standard errors (500 resamples of the cells)."
        ),
        "",
        (
            "| aggregate | aggregation | ρ C-10 ± SE | today's ρ C-10 | Δ C-10 ± SE | ρ C-100 ± SE "
            "| today's ρ C-100 | Δ C-100 ± SE | published ρ C-10 |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, proxies in AGGREGATE_SETS.items():
        if any(p not in rows[0] for p in proxies):
            continue
        for aggregation in ("mean_rank", "log_rank"):
            x = np.array(aggregate_within(rows, proxies, aggregation))
            cells = []
            for y in columns:
                rho, se, delta, delta_se = bootstrap_rho(x, baseline, y)
                today = float(spearmanr(baseline, y)[0])
                cells.append(f"{rho:.3f} ± {se:.3f} | {today:.3f} | {delta:+.3f} ± {delta_se:.3f}")
            published = PUBLISHED_AGGREGATE.get((name, aggregation), "—")
            lines.append(f"| {name} | {aggregation} | {cells[0]} | {cells[1]} | {published} |")
    lines += ["", "Proxies of each aggregate:"] + [f"- {n}: {', '.join(p)}" for n, p in AGGREGATE_SETS.items()]
    return lines


def compare_section(
    scores: dict[str, dict[str, float]],
    other: dict[str, dict[str, float]],
    truth: dict[str, tuple[float, float]],
    label: str,
    other_label: str,
) -> list[str]:
    """Spearman ρ of each proxy (NaN ranked last) and each aggregate in two settings, on the cells both scored.

    Used to check a reduced setting (smaller input, fewer channels or cells) against the full-size one.
    """
    from automl_plugins.evaluators.proxies import aggregate_within

    archs = [a for a in scores if a in other and a in truth]
    proxies = [p for p in scores[archs[0]] if p in other[archs[0]]] if archs else []

    def rho(values: list[float], column: int) -> float:
        floor = min((v for v in values if not math.isnan(v)), default=0.0) - 1.0
        values = [floor if math.isnan(v) else v for v in values]
        return float(spearmanr(values, [truth[a][column] for a in archs])[0])

    rows = []
    for proxy in proxies:
        rows.append((proxy, [scores[a][proxy] for a in archs], [other[a][proxy] for a in archs]))
    for name, members in AGGREGATE_SETS.items():
        if all(p in proxies for p in members):
            for aggregation in ("mean_rank", "log_rank"):
                mine = aggregate_within([scores[a] for a in archs], members, aggregation)
                theirs = aggregate_within([other[a] for a in archs], members, aggregation)
                rows.append((f"{name} ({aggregation})", mine, theirs))
    lines = [
        f"{label} against {other_label}, on the {len(archs)} cells both scored (Spearman ρ, NaN ranked last):",
        "",
        (
            f"| proxy | ρ C-10, {other_label} | ρ C-10, {label} | Δ C-10 | ρ C-100, {other_label} | "
            f"ρ C-100, {label} | Δ C-100 |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for name, mine, theirs in rows:
        cells = []
        for column in (0, 1):
            a, b = rho(theirs, column), rho(mine, column)
            worst = min(worst, b - a)
            cells.append(f"{a:.3f} | {b:.3f} | {b - a:+.3f}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += ["", f"largest loss: {-worst:.3f} ρ"]
    return lines


def timing(space: SearchSpace, archs: list[str], proxies: list[str]) -> tuple[dict[str, float], float]:
    """Mean ms per architecture for each proxy alone, and for all of them through the evaluator."""
    evaluator = space.evaluator
    context = EvalContext(None, seed=0, device="cpu")
    single = {p: 0.0 for p in proxies}
    together = 0.0
    for arch in archs:
        candidate = space.candidate_from_arch(arch)
        batch = candidate.task.batch(None, seed=0)
        for proxy in evaluator.proxies:
            t0 = time.perf_counter()
            proxy.score(candidate, batch)
            single[proxy.name] += (time.perf_counter() - t0) * 1000.0 / len(archs)
        t0 = time.perf_counter()
        evaluator.evaluate(candidate, context)
        together += (time.perf_counter() - t0) * 1000.0 / len(archs)
    return single, together


def flexibert_section(
    proxies: list[str],
    sample: int | None = None,
    batch_size: int | None = None,
    wpca_batches: int = 3,
    reference_init: bool = False,
    seq_len: int = 32,
) -> list[str]:
    """Transformer proxies on the FlexiBERT records (masked-LM minibatch of the bundled text) vs GLUE."""
    registry = get_registry()
    dims = [
        n
        for n in registry.names("dimensions")
        if getattr(registry.get("dimensions", n), "arch_kind", None) == "transformer"
    ]
    if not dims:
        return ["(no transformer architecture space installed: FlexiBERT correlations skipped)"]
    dim_cls = registry.get("dimensions", dims[0])
    tasks = [n for n in registry.names("tasks") if registry.get("tasks", n).kind in dim_cls.task_kinds]
    if not tasks:
        return ["(no text task installed: FlexiBERT correlations skipped)"]
    task = "text_mlm" if "text_mlm" in tasks else tasks[0]
    path = importlib.resources.files("automl_plugins.data").joinpath("flexibert_glue.json")
    records = json.loads(path.read_text())[:sample]
    usable = [p for p in proxies if "transformer" in registry.get("proxies", p).applies_to]
    evaluator: dict = {"name": "proxies", "proxies": usable}
    options: dict = {}
    if "wpca" in usable:
        options["wpca"] = {"batches": wpca_batches}
    if reference_init:
        for proxy in usable:
            if "init" in registry.get("proxies", proxy).options:
                options[proxy] = {"init": "reference"}
    if options:
        evaluator["proxy_options"] = options
    space = SearchSpace.from_dict(
        {
            "task": {"name": task, "seq_len": seq_len, "batch_size": batch_size or 32},
            "dimensions": [{"name": dims[0]}],
            "evaluator": evaluator,
            "objectives": [{"metric": usable[0]}],
        }
    )
    context = EvalContext(None, seed=0, device="cpu")
    scores: dict[str, dict[str, float]] = {}
    truth: dict[str, tuple[float]] = {}
    ms = []
    for record in records:
        candidate = space.candidate_from_arch(record_to_arch(record))
        t0 = time.perf_counter()
        scores[str(record["id"])] = space.evaluator.evaluate(candidate, context).scores
        ms.append((time.perf_counter() - t0) * 1000.0)
        truth[str(record["id"])] = (record["glue"],)
        if "wpca" in usable:
            # The reference's composition: the sum over feed-forward blocks (one per layer) over their number.
            scores[str(record["id"])][WPCA_MEAN] = scores[str(record["id"])]["wpca"] / len(record["encoder_layers"])
    lines = [
        (
            f"FlexiBERT: {len(scores)} encoders, task {task!r} ({seq_len} tokens × {batch_size or 32} sequences), "
            f"W-PCA over {wpca_batches} minibatch(es), {'reference' if reference_init else 'default'} "
            f"initialisation, {np.mean(ms):.0f} ms per encoder for all proxies"
        ),
        "",
        "| proxy | Kendall τ vs GLUE | Spearman ρ vs GLUE | published τ |",
        "|---|---|---|---|",
    ]
    for proxy in usable + ([WPCA_MEAN] if "wpca" in usable else []):
        rho, tau, _ = correlations(scores, truth, proxy, 0)
        lines.append(f"| {proxy} | {tau:.3f} | {rho:.3f} | {PUBLISHED_TAU_GLUE.get(proxy, '—')} |")
    return lines


def lga_section(
    archs: list[str],
    truth: dict[str, tuple[float, float]],
    steps: list[int],
    channels: int,
    cells: int,
    batch_size: int,
) -> list[str]:
    """LGA at initialisation and after each amount of SGD in ``steps``, on NAS-Bench-201 cells vs CIFAR."""
    context = EvalContext(None, seed=0, device="cpu")
    title = (
        f"LGA on {len(archs)} NAS-Bench-201 cells (C={channels}, N={cells}, digits minibatch of {batch_size}, "
        "train mode)"
    )
    lines = [
        title,
        "",
        "| SGD steps before | ρ CIFAR-10 | τ CIFAR-10 | ρ CIFAR-100 | NaN | s per cell |",
        "|---|---|---|---|---|---|",
    ]
    for amount in steps:
        space = nb201_space(["lga"], batch_size, channels, cells, {"lga": {"steps": amount}})
        scores: dict[str, dict[str, float]] = {}
        t0 = time.perf_counter()
        for i, arch in enumerate(archs):
            scores[arch] = dict(space.evaluator.evaluate(space.candidate_from_arch(arch), context).scores)
            if (i + 1) % 10 == 0:
                print(f"lga, {amount} steps: {i + 1}/{len(archs)} cells", file=sys.stderr)
        seconds = (time.perf_counter() - t0) / max(1, len(archs))
        rho10, tau10, n = correlations(scores, truth, "lga", 0)
        rho100, _, _ = correlations(scores, truth, "lga", 1)
        lines.append(f"| {amount} | {rho10:.3f} | {tau10:.3f} | {rho100:.3f} | {len(scores) - n} | {seconds:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=1000, help="NAS-Bench-201 cells to score")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--proxies", default=",".join(CELL_PROXIES), help="comma-separated cell proxies")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--inputs",
        choices=INPUTS,
        default="digits",
        help="NAS-Bench-201 minibatch: the digits task (default), digits with permuted labels, "
        "Gaussian noise or crops of scikit-learn's sample photographs (needs pillow)",
    )
    parser.add_argument("--out", default=None, help="CSV of per-cell scores (resumable)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of scoring before reporting")
    parser.add_argument("--timing-sample", type=int, default=3, help="cells timed proxy by proxy (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1, help="scoring processes, one torch thread each")
    parser.add_argument("--image-size", type=int, default=32, help="digits upscaled to this size (32: full size)")
    parser.add_argument("--channels", type=int, default=16, help="NB201 C (16: full size)")
    parser.add_argument("--cells", type=int, default=5, help="NB201 cells per stage N (5: full size)")
    parser.add_argument(
        "--compare-with",
        default=None,
        help="CSV of the same cells scored in another setting (e.g. full size): ρ of both side by side",
    )
    parser.add_argument("--skip-flexibert", action="store_true")
    parser.add_argument("--skip-nb201", action="store_true")
    parser.add_argument("--flexibert-sample", type=int, default=None, help="first N FlexiBERT encoders (default all)")
    parser.add_argument("--flexibert-batch-size", type=int, default=None, help="sequences per minibatch")
    parser.add_argument(
        "--transformer-proxies",
        default=",".join(TRANSFORMER_PROXIES),
        help="comma-separated transformer proxies for FlexiBERT",
    )
    parser.add_argument("--flexibert-seq-len", type=int, default=32, help="tokens per FlexiBERT sequence")
    parser.add_argument(
        "--reference-init",
        action="store_true",
        help="proxies with an init option score the reference's N(0, 0.02²) initialisation",
    )
    parser.add_argument(
        "--lga-sample",
        type=int,
        default=0,
        help="also score LGA on the first N sampled cells (slow: one backward per sample)",
    )
    parser.add_argument("--lga-steps", default="0,17", help="SGD steps before LGA, comma-separated (17: one epoch)")
    parser.add_argument("--lga-network", default="8,1", help="channels,cells_per_stage of the LGA networks")
    parser.add_argument("--wpca-batches", type=int, default=3, help="minibatches W-PCA averages (reference: 3)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    transformer_proxies = [p.strip() for p in args.transformer_proxies.split(",") if p.strip()]
    if args.skip_nb201:
        for line in flexibert_section(
            transformer_proxies,
            args.flexibert_sample,
            args.flexibert_batch_size,
            args.wpca_batches,
            args.reference_init,
            args.flexibert_seq_len,
        ):
            print(line)
        return 0
    truth = load_nb201()
    archs = sorted(truth)
    random.Random(args.seed).shuffle(archs)
    archs = archs[: args.sample]
    space = nb201_space(proxies, args.batch_size, args.channels, args.cells, image_size=args.image_size)
    t0 = time.perf_counter()
    batch = substitute_batch(args.inputs, space, args.batch_size)
    scores, _ = score_cells(space, archs, proxies, args.out, args.time_limit, batch, args.workers)
    setting = f"{args.image_size}×{args.image_size}, C={args.channels}, N={args.cells}"
    print(
        f"NAS-Bench-201: {len(scores)} of {args.sample} sampled cells scored (sample seed {args.seed}, "
        f"{args.inputs} minibatch of {args.batch_size}, {setting}), {time.perf_counter() - t0:.0f} s"
    )
    if args.compare_with:
        print()
        for line in compare_section(scores, read_scores(args.compare_with), truth, setting, args.compare_with):
            print(line)
    print()
    print(
        "| proxy | ρ CIFAR-10 | τ CIFAR-10 | ρ CIFAR-100 | τ CIFAR-100 | published ρ C-10 | target | NaN "
        "| ρ C-10, NaN last |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for proxy in proxies:
        rho10, tau10, n = correlations(scores, truth, proxy, 0)
        rho100, tau100, _ = correlations(scores, truth, proxy, 1)
        target = TARGET_RHO_C10.get(proxy)
        mark = "" if target is None else (f"≥ {target} {'ok' if rho10 >= target else 'short'}")
        print(
            f"| {proxy} | {rho10:.3f} | {tau10:.3f} | {rho100:.3f} | {tau100:.3f} | "
            f"{PUBLISHED_RHO_C10.get(proxy, '—')} | {mark} | {len(scores) - n} | "
            f"{rho_nan_last(scores, truth, proxy):.3f} |"
        )
    print()
    for line in aggregate_section(scores, truth):
        print(line)
    if args.timing_sample:
        single, together = timing(space, archs[: args.timing_sample], proxies)
        print()
        print(f"Time per architecture (mean over {args.timing_sample} cells, CPU, {torch.get_num_threads()} threads)")
        print()
        print("| proxy | ms alone |")
        print("|---|---|")
        for proxy in proxies:
            print(f"| {proxy} | {single[proxy]:.0f} |")
        most = max(single.values())
        print(f"| **all together (evaluator)** | {together:.0f} |")
        print(f"| sum of the single ones | {sum(single.values()):.0f} |")
        print()
        print(f"all together / most expensive single one = {together / most:.2f} (target ≤ 3)")
    if args.lga_sample:
        channels, cells = (int(v) for v in args.lga_network.split(","))
        print()
        for line in lga_section(
            archs[: args.lga_sample],
            truth,
            [int(v) for v in args.lga_steps.split(",")],
            channels,
            cells,
            args.batch_size,
        ):
            print(line)
    if not args.skip_flexibert:
        print()
        for line in flexibert_section(
            transformer_proxies,
            args.flexibert_sample,
            args.flexibert_batch_size,
            args.wpca_batches,
            args.reference_init,
            args.flexibert_seq_len,
        ):
            print(line)
    return 0


if __name__ == "__main__":
    automl.get_registry()
    sys.exit(main())
