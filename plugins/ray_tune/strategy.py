"""The ``ray_tune`` strategy: the space's evaluator, scheduled by Ray Tune, recorded in the automl study."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from automl.errors import SpaceError
from automl.evaluators import Evaluator
from automl.options import Option
from automl.strategies import Strategy
from automl_plugins.ray_tune.cluster import cluster_gpus, ray_session, resolve_address
from automl_plugins.ray_tune.worker import ITERATION, VALUE, automl_trial

if TYPE_CHECKING:
    from automl.space import SearchSpace
    from automl.strategies import SearchContext
    from automl_plugins.ray_tune.searcher import PlannedTrial

# Ray Tune schedulers that work on a stream of intermediate values for fixed candidates.
SCHEDULERS: dict[str, str] = {
    "asha": "AsyncHyperBandScheduler",
    "hyperband": "HyperBandScheduler",
    "median_stopping_rule": "MedianStoppingRule",
    "fifo": "FIFOScheduler",
    "none": "FIFOScheduler",
    "mo_asha": "MOASHAScheduler",  # automl_plugins.ray_tune.scheduler: the study's MO-ASHA decision
}

RAY_OPTIONS: dict[str, Option] = {
    "cpus": Option(float, default=1.0, min=0.0, max=1024.0, help="CPUs per trial"),
    "gpus": Option(
        float,
        default=None,
        min=0.0,
        max=64.0,
        help="GPUs per trial, fractions allowed (default: 1 when the cluster has GPUs, else 0)",
    ),
    "max_concurrent_trials": Option(
        int,
        default=0,
        min=0,
        max=10_000,
        help="trials running at once (0: as many as the cluster's resources hold now)",
    ),
    "scheduler": Option(str, default="asha", choices=tuple(SCHEDULERS), help="Ray Tune trial scheduler"),
    "scheduler_options": Option(
        dict, default={}, help="keyword arguments of the scheduler (metric and mode are set for you)"
    ),
    "address": Option(
        str, default=None, help='join this Ray cluster ("auto" or host:port; --ray-address overrides it)'
    ),
    "num_cpus": Option(int, default=None, min=1, max=4096, help="CPUs of a Ray started here (default: all)"),
    "folder": Option(
        str, default=None, path="folder", help="run folder for Ray's temp files and results (default: runs/<study>)"
    ),
}

# A tiny search for the contract suites (automl.testing): one-epoch training of tiny NB201 cells, on a Ray
# started here with two CPUs.
EXAMPLE: dict[str, Any] = {"cpus": 1, "num_cpus": 2, "scheduler": "fifo"}


def example_space(strategy: Mapping[str, Any]) -> dict[str, Any]:
    """A search-space table of three trials that trains tiny NB201 cells on digits under ``strategy``."""
    return {
        "study": {"name": "ray-example", "n_trials": 3, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "image_size": 8, "channels": 1, "batch_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "training", "epochs": 1, "max_train_samples": 64, "batch_size": 32},
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
        "strategy": dict(strategy),
    }


def make_scheduler(
    name: str,
    options: Mapping[str, Any],
    mode: str,
    *,
    key: str = "scheduler_options",
    space: SearchSpace | None = None,
) -> Any:
    """The Ray Tune scheduler ``name`` with ``options``; ``SpaceError`` for options it does not take.

    ``mo_asha`` takes the options of the study pruner of that name and judges the ``space``'s objectives.
    """
    from ray.tune import schedulers

    if name == "mo_asha":
        return _mo_asha_scheduler(options, space, key)
    cls = getattr(schedulers, SCHEDULERS[name])
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "metric", "mode")]
    settings = dict(options)
    for option in settings:
        if option not in accepted:
            raise SpaceError(f"scheduler {name!r} has no option {option!r}", key=f"{key}.{option}", allowed=accepted)
    if cls is schedulers.FIFOScheduler:
        return cls()
    if "time_attr" in accepted:
        settings.setdefault("time_attr", ITERATION)
    if "stop_last_trials" in accepted:
        # A trial that reaches max_t trains to its end and completes; it is not "stopped".
        settings.setdefault("stop_last_trials", False)
    try:
        return cls(metric=VALUE, mode=mode, **settings)
    except (AssertionError, TypeError, ValueError) as err:
        raise SpaceError(f"scheduler {name!r} rejects its options: {err or 'invalid values'}", key=key) from None


def _mo_asha_scheduler(options: Mapping[str, Any], space: SearchSpace | None, key: str) -> Any:
    from automl.pruners import mo_asha_from_options
    from automl_plugins.ray_tune.scheduler import MOASHAScheduler

    objectives = [(o.metric, o.direction) for o in space.objectives] if space is not None else []
    pruner = mo_asha_from_options(objectives, options, key=key, what="scheduler 'mo_asha'", objectives_key="scheduler")
    return MOASHAScheduler(pruner)


class RayTuneStrategy(Strategy):
    """Every trial is scheduled by Ray Tune; the sampler, the study and the score cache stay in this process.

    The space's evaluator runs unchanged on the Ray workers; its intermediate values feed the Ray Tune
    scheduler (ASHA by default) and the study's learning curves.
    """

    name = "ray_tune"
    description = "schedule the evaluator (training) with Ray Tune: GPUs per trial, ASHA, a local Ray or a cluster"
    example = EXAMPLE
    example_space = example_space({"name": "ray_tune", **EXAMPLE})
    options = RAY_OPTIONS

    def validate(self, space: SearchSpace) -> None:
        make_scheduler(self.settings["scheduler"], self.settings["scheduler_options"], _mode(space), space=space)

    def run(self, context: SearchContext, n_trials: int) -> None:
        run_on_ray(context, self.settings, n_trials=n_trials)


def run_on_ray(
    context: SearchContext,
    settings: Mapping[str, Any],
    *,
    n_trials: int,
    evaluator: Evaluator | None = None,
    evaluator_raw: Mapping[str, Any] | None = None,
    planned: Sequence[PlannedTrial] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> list[FrozenTrial]:
    """Run up to ``n_trials`` trials of the search's study through Ray Tune; returns them as stored.

    ``settings`` are the ``ray_tune`` options. ``evaluator`` (with the table ``evaluator_raw`` that
    rebuilds it on the workers) replaces the space's; ``planned`` fixes the candidates.
    """
    from ray import tune

    from automl_plugins.ray_tune.searcher import StudySearcher

    space = context.space
    study_name = context.study.study_name
    folder = Path(settings.get("folder") or Path("runs") / study_name).absolute()
    mode = _mode(space)
    scheduler = make_scheduler(settings["scheduler"], settings["scheduler_options"], mode, space=space)
    searcher = StudySearcher(
        context,
        n_trials=n_trials,
        evaluator=evaluator or space.evaluator,
        evaluator_raw=evaluator_raw,
        planned=planned,
        attrs=attrs,
        scheduler_name=settings["scheduler"],
        device=context.device,
        pruner=getattr(scheduler, "pruner", None),
    )
    if hasattr(scheduler, "searcher"):
        scheduler.searcher = searcher
    if searcher.n_trials <= 0:
        return []
    with ray_session(
        folder,
        address=resolve_address(settings.get("address"), context.options.get("ray_address")),
        num_cpus=settings.get("num_cpus"),
    ):
        gpus = settings.get("gpus")
        if gpus is None:
            gpus = 1.0 if cluster_gpus() >= 1 else 0.0
        trainable = tune.with_resources(automl_trial, {"cpu": settings["cpus"], "gpu": gpus})
        concurrent = settings["max_concurrent_trials"] or _fitting_trials(settings["cpus"], gpus)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=searcher.n_trials,
                max_concurrent_trials=min(concurrent, searcher.n_trials),
                reuse_actors=True,
                trial_dirname_creator=_trial_folder,
            ),
            run_config=tune.RunConfig(
                name=f"{study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(folder / "ray-results"),
                verbose=0,
                callbacks=[searcher.callback()],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        try:
            tuner.fit()
        finally:
            searcher.fail_open_trials("interrupted: the Ray Tune run ended before this trial finished")
    return searcher.finished


def _fitting_trials(cpus: float, gpus: float) -> int:
    """How many trials the cluster holds at once.

    Ray Tune starts one trial at a time for a custom searcher unless it is told a concurrency: giving
    it this number lets every worker start together.
    """
    import ray

    resources = ray.cluster_resources()
    fits = [
        resources.get("CPU", 1.0) / cpus if cpus else math.inf,
        resources.get("GPU", 0.0) / gpus if gpus else math.inf,
    ]
    found = min(fits)
    return max(1, int(found)) if math.isfinite(found) else 1


def _trial_folder(trial: Any) -> str:
    return f"trial-{trial.trial_id}"


def _mode(space: SearchSpace) -> str:
    """Schedulers compare intermediate values in the direction of the first objective."""
    return "max" if space.directions[0] == "maximize" else "min"
