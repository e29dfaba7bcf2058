"""What scheduling the same short trainings through Ray Tune costs, and what automl adds on top of it.

The same 8 candidates (NB201 cells on digits, a few epochs each) are trained four ways:

1. plain loop: the training evaluator called in a for loop, nothing recorded;
2. local training evaluator: automl's study runner, one recorded trial per candidate;
3. automl Ray Tune path: the ``ray_tune`` strategy (Searcher bridge, every trial in the study);
4. Ray Tune used directly: a function trainable and Ray Tune's own ``OptunaSearch`` adapter.

Both Ray paths use the same Ray session (its start-up is timed on its own), one CPU per trial, FIFO
scheduling, reused actors and the same concurrency. Per-trial overhead = (wall - plain loop) / trials.
Target: automl's Ray path within 10% of Ray Tune used directly.

    .venv/bin/python benchmarks/ray_overhead.py [--trials 8] [--epochs 3] [--concurrent 1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import optuna
import torch

import automl
from automl.evaluators import EvalContext
from automl.runner import StudyRunner


def space_table(evaluator: dict, trials: int) -> dict:
    return {
        "study": {"name": "bench", "n_trials": trials, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 32, "image_size": 8},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": evaluator,
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    }


def training_table(epochs: int, samples: int) -> dict:
    return {"name": "training", "epochs": epochs, "max_train_samples": samples}


def candidates(space: automl.SearchSpace, n: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = []
    for _ in range(n):
        trial = study.ask()
        space.sample(trial)
        params.append(dict(trial.params))
        study.tell(trial, 0.0)
    return params


def plain_loop(space: automl.SearchSpace, params: list[dict]) -> float:
    start = time.perf_counter()
    for p in params:
        candidate = space.candidate(p)
        space.evaluator.evaluate(candidate, EvalContext(None, seed=0))
    return time.perf_counter() - start


def local_evaluator(space: automl.SearchSpace, params: list[dict]) -> float:
    runner = StudyRunner(space, storage=":memory:", study_name=f"local-{time.time()}", cache=False)
    start = time.perf_counter()
    for p in params:
        runner.run_trial(p)
    return time.perf_counter() - start


def automl_ray(space: automl.SearchSpace, params: list[dict], settings: dict) -> float:
    from automl_plugins.ray_tune.searcher import PlannedTrial
    from automl_plugins.ray_tune.strategy import run_on_ray

    runner = StudyRunner(space, storage=":memory:", study_name=f"ray-{time.time()}", cache=False)
    start = time.perf_counter()
    finished = run_on_ray(runner, settings, n_trials=len(params), planned=[PlannedTrial(p) for p in params])
    wall = time.perf_counter() - start
    assert len(finished) == len(params) and all(t.state.name == "COMPLETE" for t in finished), finished
    return wall


class DefineByRun:
    """OptunaSearch's define-by-run space (picklable: OptunaSearch saves it with its state)."""

    def __init__(self, raw: dict) -> None:
        self.raw = raw

    def __call__(self, trial: optuna.Trial) -> None:
        from automl_plugins.ray_tune.worker import space_from_raw

        space_from_raw(self.raw).sample(trial)


def direct_ray(space: automl.SearchSpace, params: list[dict], settings: dict, folder: Path) -> float:
    """What a user would write with Ray Tune alone: a trainable and Ray Tune's OptunaSearch."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    raw = space.raw

    def trainable(config: dict) -> None:
        from automl_plugins.ray_tune.worker import space_from_raw

        local_space = space_from_raw(raw)

        class Context(EvalContext):
            def report(self, value: float, step: int) -> None:
                tune.report({"value": float(value), "step": step})

        candidate = local_space.candidate(config)
        result = local_space.evaluator.evaluate(candidate, Context(None, seed=0))
        tune.report(
            {
                "value": float(result["val_accuracy"] if isinstance(result, dict) else result.scores["val_accuracy"]),
                "done": True,
            }
        )

    search = OptunaSearch(
        space=DefineByRun(raw),
        metric="value",
        mode="max",
        points_to_evaluate=params,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": settings["cpus"], "gpu": 0}),
        tune_config=tune.TuneConfig(
            search_alg=search,
            num_samples=len(params),
            reuse_actors=True,
            max_concurrent_trials=settings["max_concurrent_trials"] or None,
        ),
        run_config=tune.RunConfig(name=f"direct-{time.time()}", storage_path=str(folder), verbose=0),
    )
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    assert len(results) == len(params) and not results.errors, results.errors
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=256, help="training examples per epoch")
    parser.add_argument("--concurrent", type=int, default=1, help="trials at once on Ray (1 CPU each)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each Ray path (the median is shown)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray workers get one thread per CPU they hold; the in-process paths get the same.
    torch.set_num_threads(1)

    space = automl.SearchSpace.from_dict(space_table(training_table(args.epochs, args.samples), args.trials))
    params = candidates(space, args.trials)
    settings = {
        "cpus": 1.0,
        "gpus": 0.0,
        "max_concurrent_trials": args.concurrent,
        "scheduler": "fifo",
        "scheduler_options": {},
        "address": None,
        "num_cpus": None,
        "folder": None,
    }
    plain_loop(space, params[:1])  # warm-up: data loading and first-call kernels
    rows = [
        ("plain loop", plain_loop(space, params)),
        ("local training evaluator", local_evaluator(space, params)),
    ]

    import ray

    from automl_plugins.ray_tune.cluster import ray_session

    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        folder = Path(tmp)
        settings["folder"] = str(folder)
        start = time.perf_counter()
        with ray_session(folder, num_cpus=max(args.concurrent, 1)):
            rows.append(("ray.init (once)", time.perf_counter() - start))
            direct, ours = [], []
            for _ in range(args.repeats):
                direct.append(direct_ray(space, params, settings, folder / "direct"))
                ours.append(automl_ray(space, params, settings))
            rows.append(("Ray Tune + OptunaSearch (direct)", statistics.median(direct)))
            rows.append(("automl Ray Tune path", statistics.median(ours)))
            assert ray.is_initialized()

    plain = rows[0][1]
    print(
        f"{args.trials} trainings, {args.epochs} epochs, {args.concurrent} at once, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    print(f"{'path':34} {'wall s':>8} {'per trial s':>12} {'overhead/trial s':>17}")
    for name, wall in rows:
        if name.startswith("ray.init"):
            print(f"{name:34} {wall:8.2f}")
            continue
        print(f"{name:34} {wall:8.2f} {wall / args.trials:12.3f} {(wall - plain) / args.trials:17.3f}")
    direct_wall, ours_wall = rows[-2][1], rows[-1][1]
    print(
        f"automl Ray path vs Ray Tune direct: {100 * (ours_wall / direct_wall - 1):+.1f}% wall time "
        f"(target: at most +10%)"
    )


if __name__ == "__main__":
    main()
