"""Dashboard speed on a large study: opening a 10,000-trial study and one refresh.

Run:  python benchmarks/dashboard.py [--trials 10000] [--storage sqlite:///bench-dashboard.db]

Seeds (once) a study of synthetic but realistically shaped trials (NB201 parameters, proxy scores,
costs, the automl user attributes), then prints a table of:

- studies screen: listing the storage's studies with their counts, best value and last activity;
- data: reading every trial and building the records (``StudyTrials.refresh`` the first time);
- data refresh: one incremental refresh after a few new trials arrive;
- app open: the study screen in the real app (headless) until its first page of rows shows;
- app refresh: the study screen's refresh after a few new trials, until it has drawn them.
Opening times are the median of ``--repeat`` opens (default 3). Each is measured on the SQLite file
and on the same trials in memory (the dashboard's own cost).
Targets: opening under 1 s, a refresh under 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES = ["e01", "e02", "e03", "e12", "e13", "e23"]
STUDY = "bench-dashboard"


def synthetic_trial(number: int, rng: random.Random, state: TrialState = TrialState.COMPLETE):
    params = {f"nb201.{e}": rng.choice(OPS) for e in EDGES}
    arch = "|" + "|+|".join(params[f"nb201.{e}"] for e in EDGES) + "|"
    synflow = rng.uniform(0, 100)
    scores = {"synflow": synflow, "params": rng.uniform(1e4, 1e6), "accuracy": synflow / 2 + rng.uniform(0, 40)}
    return create_trial(
        state=state,
        values=[synflow] if state == TrialState.COMPLETE else None,
        params=params,
        distributions={k: CategoricalDistribution(OPS) for k in params},
        user_attrs={
            "candidate": {"id": f"{number:016x}", "arch": arch, "arch_kind": "cell", "arch_key": "nb201"},
            "result": {
                "scores": scores,
                "costs": {"params": scores["params"], "flops": 1e7},
                "info": {},
                "reasons": {},
                "duration_s": 0.01,
                "cached": False,
            },
        },
    )


def seed_study(storage: str, n_trials: int) -> None:
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize", load_if_exists=True)
    have = len(study.get_trials(deepcopy=False))
    if have >= n_trials:
        return
    study.set_user_attr(
        "automl.space",
        {
            "source": "synthetic",
            "task": "digits",
            "dimensions": ["nb201"],
            "evaluator": "proxies",
            "objectives": [{"metric": "synflow", "direction": "maximize"}],
            "strategy": None,
            "sampler": "random",
            "n_trials": n_trials,
            "seed": 0,
        },
    )
    rng = random.Random(have)
    print(f"seeding {n_trials - have} trials into {storage} ...", file=sys.stderr)
    study.add_trials([synthetic_trial(i, rng) for i in range(have, n_trials)])


def add_trials(storage: str, n: int) -> None:
    study = optuna.load_study(study_name=STUDY, storage=storage)
    rng = random.Random(time.time())
    study.add_trials([synthetic_trial(0, rng) for _ in range(n)])


def yardstick() -> float:
    """Seconds for a fixed pure-Python workload: the machine's speed at the time of the run, to compare runs."""
    rng = random.Random(0)
    start = time.perf_counter()
    sorted(rng.random() for _ in range(1_000_000))
    return time.perf_counter() - start


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


async def app_timings(storage, repeat: int) -> tuple[float, float]:
    """Seconds to open the study screen until its first page shows (median of ``repeat`` opens), and for
    one refresh with 5 new trials."""
    from automl_tui.app import AutomlApp
    from automl_tui.screens.study import StudyScreen

    # As ``automl tui`` runs it (the heap alive at start is frozen out of garbage collections).
    app = AutomlApp(storage="sqlite:///unused.db", refresh_interval=3600, freeze_heap=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        opens = []
        for attempt in range(repeat):
            if attempt:
                app.pop_screen()
                await pilot.pause()
            start = time.perf_counter()
            screen = StudyScreen(STUDY, storage)
            await app.push_screen(screen)
            await screen.loaded.wait()
            await pilot.pause()
            opens.append(time.perf_counter() - start)
        opened = statistics.median(opens)
        total = len(screen.trials.trials)
        add_trials(storage, 5)
        screen.updated.clear()
        start = time.perf_counter()
        screen.refresh_trials()
        await screen.updated.wait()
        await pilot.pause()
        refreshed = time.perf_counter() - start
        assert len(screen.trials.trials) == total + 5
    return opened, refreshed


def measure(storage, repeat: int) -> list[tuple[str, float, float | None]]:
    from automl_tui.data import StudyTrials, best_so_far, param_importances, study_summaries

    studies_s = statistics.median(timed(lambda: study_summaries(storage))[0] for _ in range(repeat))
    opens = [timed(lambda: _opened(StudyTrials, storage)) for _ in range(repeat)]
    data_open, trials = statistics.median(t for t, _ in opens), opens[-1][1]
    add_trials(storage, 5)
    data_refresh, change = timed(trials.refresh)
    assert len(change.added) == 5, change
    history_s, _ = timed(lambda: best_so_far(trials.trials, "maximize"))
    importance_s, _ = timed(lambda: param_importances(trials.trials, ["maximize"], ["synflow"]))
    app_open, app_refresh = asyncio.run(app_timings(storage, repeat))
    return [
        ("studies screen: list (counts, best)", studies_s, 1.0),
        ("data: open (read + records)", data_open, 1.0),
        ("data: refresh (5 new trials)", data_refresh, 0.2),
        ("app: open study screen", app_open, 1.0),
        ("app: refresh (5 new trials)", app_refresh, 0.2),
        ("best-so-far history", history_s, None),
        ("importances (500-trial sample)", importance_s, None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--storage", default=None, help="default: sqlite:///bench-dashboard-N.db here")
    parser.add_argument("--repeat", type=int, default=3, help="opens timed; the median is shown")
    parser.add_argument("--sqlite-only", action="store_true", help="skip the in-memory comparison")
    args = parser.parse_args()
    storage = args.storage or f"sqlite:///{Path.cwd() / f'bench-dashboard-{args.trials}.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed_study(storage, args.trials)

    results = {"sqlite": measure(storage, args.repeat)}
    if not args.sqlite_only:
        # The same trials in memory: what the dashboard itself costs, without the SQL read.
        memory = optuna.storages.InMemoryStorage()
        source = optuna.load_study(study_name=STUDY, storage=storage)
        optuna.create_study(study_name=STUDY, storage=memory, direction="maximize").add_trials(
            source.get_trials(deepcopy=False)
        )
        results["in-memory"] = measure(memory, args.repeat)
    print(f"study of {args.trials}+ trials ({storage}); yardstick (sort 10⁶ floats): {yardstick():.3f} s")
    print(f"{'storage':10} {'measurement':34} {'seconds':>8} {'target':>7}")
    for kind, rows in results.items():
        for name, seconds, target in rows:
            mark = "" if target is None else ("ok" if seconds < target else "SLOW")
            print(f"{kind:10} {name:34} {seconds:8.3f} {('< ' + str(target)) if target else '':>7} {mark}")


def _opened(cls, storage):
    trials = cls(STUDY, storage)
    trials.refresh()
    return trials


if __name__ == "__main__":
    main()
