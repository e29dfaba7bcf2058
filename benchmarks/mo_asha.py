"""The two-objective compression search with and without MO-ASHA: wall time and hypervolume of the front.

Runs ``search_spaces/compress_digits.toml`` (NB201 cells × normalization × loss × pruning × bit-widths,
accuracy against size in bits) twice in one process, with the same seed, the same trial budget and no
score cache: once with ``pruner = "none"`` and once with ``pruner = "mo_asha"`` (rungs at min_resource ·
η^k below the number of epochs), then MO-ASHA once more with trials added until it has trained as many
epochs as the run without pruning (the same compute instead of the same number of trials). The hypervolume is that of the completed trials' Pareto front in
(validation accuracy, size in bits / reference size), against the reference point (accuracy 0, the
largest size any completed trial of either run had), so both runs are measured on one scale; higher is
better, 1 would be a perfect model of zero size.

    python benchmarks/mo_asha.py [--trials 40] [--epochs 4] [--reduction-factor 3] [--max-train-samples N]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import optuna
import tomllib
import torch
from optuna.trial import TrialState

import automl
from automl.record import TrialRecord
from automl.records import pareto_front
from automl.report import table

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "compress_digits.toml"


def space_for(args: argparse.Namespace, pruner: str) -> automl.SearchSpace:
    raw = tomllib.loads(SPACE.read_text())
    data = copy.deepcopy(raw)
    data["study"].update(name=f"compress-{pruner}", n_trials=args.trials, seed=args.seed, pruner=pruner)
    data["study"]["pruner_options"] = (
        {"reduction_factor": args.reduction_factor, "max_resource": args.epochs} if pruner == "mo_asha" else {}
    )
    data["evaluator"]["epochs"] = args.epochs
    if args.max_train_samples:
        data["evaluator"]["max_train_samples"] = args.max_train_samples
    return automl.SearchSpace.from_dict(data)


def hypervolume(points: list[tuple[float, float]], reference_size: float) -> float:
    """Area dominated by (accuracy ↑, size ↓) points above accuracy 0 and below ``reference_size``."""
    area, best_accuracy = 0.0, 0.0
    # Sweep sizes from small to large; each point adds the accuracy it gains over smaller ones.
    for accuracy, size in sorted(points, key=lambda p: (p[1], -p[0])):
        if size >= reference_size or accuracy <= best_accuracy:
            continue
        area += (accuracy - best_accuracy) * (1.0 - size / reference_size)
        best_accuracy = accuracy
    return area


def run(args: argparse.Namespace, pruner: str, epochs: int | None = None) -> dict:
    """One search; with ``epochs``, trials go on until that many epochs were trained (the same compute)."""
    space = space_for(args, pruner)
    runner = automl.StudyRunner(space, storage=":memory:", cache=False)
    start = time.perf_counter()
    if epochs is None:
        runner.run()
    else:
        trained = 0
        while trained < epochs:
            trained += len(TrialRecord.read(runner.run_trial()).curve)
    wall = time.perf_counter() - start
    trials = runner.study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    front = pareto_front(complete, runner.study.directions)
    return {
        "pruner": pruner,
        "trials": len(trials),
        "complete": len(complete),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "epochs": sum(len(TrialRecord.read(t).curve) for t in trials),
        "wall": wall,
        "points": [(t.values[0], t.values[1]) for t in complete],
        "front": [(t.values[0], t.values[1]) for t in front],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--max-train-samples", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one: the fastest on a small CPU)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(args.threads)
    runs = [run(args, "none"), run(args, "mo_asha")]
    runs.append(run(args, "mo_asha", epochs=runs[0]["epochs"]))
    labels = ["none", "mo_asha, same trials", "mo_asha, same epochs"]
    reference = max((size for r in runs for _, size in r["points"]), default=1.0)
    rows = [
        [
            label,
            r["trials"],
            r["complete"],
            r["pruned"],
            r["failed"],
            r["epochs"],
            r["wall"],
            len(r["front"]),
            hypervolume(r["front"], reference),
        ]
        for label, r in zip(labels, runs)
    ]
    print(
        f"compress_digits.toml: {args.trials} trials, {args.epochs} epochs each"
        + (f", {args.max_train_samples} training samples" if args.max_train_samples else "")
        + f", seed {args.seed}, η = {args.reduction_factor}, {args.threads} torch thread(s); "
        f"reference point: accuracy 0, {reference / 1e6:.3f} Mbit"
    )
    print(
        table(
            rows,
            ["pruner", "trials", "complete", "pruned", "failed", "epochs trained", "wall s", "front", "hypervolume"],
        )
    )
    for label, r in zip(labels, runs):
        front = ", ".join(f"{a:.3f}@{s / 1e3:.0f}kbit" for a, s in sorted(r["front"], key=lambda p: p[1]))
        print(f"{label} front: {front}")


if __name__ == "__main__":
    main()
