"""Per-trial overhead of automl's runner beside a plain Optuna loop with the same objective and storage.

Both loops sample the six NAS-Bench-201 edges (six categorical parameters) and a learning rate (so no two
candidates are the same and the score cache never hits), then "evaluate" by sleeping ``--eval-ms``
milliseconds. automl's loop adds what it does for every trial: the define-by-run space, the
candidate id, the score-cache look-up and write, the recorded user attributes (the record and its flat
``score.*`` / ``cost.*`` numbers) and the observer hook. The evaluator returns what a training trial
records (four scores, three cost figures, stand-in values) so no model is built: the table measures the
framework, not the network. Both loops use the same storage object, as automl opens it (SQLite in WAL mode without a
sync per commit); one more row shows plain Optuna on SQLite with its default settings. Target: extra cost
per trial under 10% of a 100 ms evaluation.

    python benchmarks/overhead.py [--trials 30] [--eval-ms 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

import automl
from automl import EvalResult, Evaluator, Option
from automl.registry import get_registry
from automl.report import table
from automl.storage import open_storage
from automl_plugins.architectures.nb201 import EDGES, OPERATIONS


class SleepEvaluator(Evaluator):
    name = "sleep"
    options = {"ms": Option(float, default=100.0)}

    def metrics(self):
        return ["score", "val_loss", "train_loss", "test_accuracy"]

    def evaluate(self, candidate, context):
        time.sleep(self.settings["ms"] / 1000)
        # The shape of a training trial's result (four scores, three cost figures), with stand-in values so
        # the core computes no cost: this measures the framework and the record it writes, not the model.
        score = float(sum(op == "nor_conv_3x3" for op in candidate.architecture.ops))
        return EvalResult(
            {"score": score, "val_loss": 1.0, "train_loss": 1.0, "test_accuracy": 0.5},
            costs={"params": 1000.0, "flops": 20000.0, "size_bits": 32000.0},
        )


class LearningRateDimension(automl.Dimension):
    name = "lr"
    stage = automl.RECIPE

    def suggest(self, trial, candidate):
        candidate.recipe["lr"] = trial.suggest_float("value", 1e-4, 1.0, log=True)


class BenchmarkPlugin:
    @staticmethod
    @automl.hookimpl
    def register_evaluators(register):
        register(SleepEvaluator)

    @staticmethod
    @automl.hookimpl
    def register_dimensions(register):
        register(LearningRateDimension)


def plain(storage, trials: int, ms: float) -> float:
    study = optuna.create_study(storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        ops = [trial.suggest_categorical(f"nb201.e{a}{b}", OPERATIONS) for a, b in EDGES]
        trial.suggest_float("lr.value", 1e-4, 1.0, log=True)
        time.sleep(ms / 1000)
        return float(sum(op == "nor_conv_3x3" for op in ops))

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return (time.perf_counter() - start) / trials


def framework(storage, trials: int, ms: float, cache: Path) -> float:
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "overhead", "n_trials": trials, "sampler": "random"},
            "task": {"name": "digits"},
            "dimensions": [{"name": "nb201"}, {"name": "lr"}],
            "evaluator": {"name": "sleep", "ms": ms},
            "objectives": [{"metric": "score"}],
        }
    )
    runner = automl.StudyRunner(space, storage=storage, cache=str(cache))
    runner.evaluations.fingerprint()  # the task's data is loaded once per search, not per trial
    start = time.perf_counter()
    runner.run(trials)
    return (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--eval-ms", type=float, default=100.0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    get_registry().add_plugin(BenchmarkPlugin(), "benchmark", "benchmarks/overhead.py", "0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, url in (
            ("in-memory", ":memory:"),
            ("sqlite", f"sqlite:///{tmp}/{{}}.db"),
            ("journal file", f"{tmp}/{{}}.log"),
        ):
            base = plain(open_storage(url.format("plain")), args.trials, args.eval_ms)
            ours = framework(url.format("automl"), args.trials, args.eval_ms, Path(tmp) / f"{label}-cache.db")
            extra = ours - base
            rows.append([label, base * 1000, ours * 1000, extra * 1000, 100 * extra / (args.eval_ms / 1000)])
        default = plain(f"sqlite:///{tmp}/default.db", args.trials, args.eval_ms)
        rows.append(["sqlite, Optuna's default settings", default * 1000, None, None, None])
    print(f"{args.trials} trials per loop, evaluation = {args.eval_ms:g} ms sleep")
    print(table(rows, ["storage", "optuna ms/trial", "automl ms/trial", "extra ms", "extra % of eval"]))


if __name__ == "__main__":
    main()
