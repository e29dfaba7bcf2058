"""Strategies that spend few oracle queries: RoBoT, proxy-then-oracle, random search, regularized evolution.

The oracle is the NAS-Bench-201 table evaluator (the 200-epoch CIFAR accuracies in plugins/data); the pools are tiny NB201 networks on digits, scored by proxies defined here
(one of them *is* the oracle, one is seeded noise, one is NaN on half the cells).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import itertools
import math

import numpy as np
import pytest

import automl
from automl import Proxy, ProxyValue, SpaceError, StudyRunner
from automl.cli import main
from automl_plugins.architectures.nb201.space import EDGES
from automl_plugins.strategies.baselines import RegularizedEvolution
from automl_plugins.strategies.pool import (
    build_pool,
    combined_scores,
    enumerate_space,
    normalize,
    sample_candidate,
)

STRATEGIES = ("robot", "proxy_then_oracle", "random", "evolution")


def _table() -> dict[str, tuple[float, float]]:
    path = importlib.resources.files("automl_plugins.data") / "nb201_accuracy.csv"
    with path.open() as handle:
        return {
            row["arch"]: (float(row["cifar10_test_acc"]), float(row["cifar100_test_acc"]))
            for row in csv.DictReader(handle)
        }


TABLE = _table()


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class OracleProxy(Proxy):
    name = "oracle_proxy"
    description = "the oracle itself: the cell's CIFAR-10 accuracy"

    def score(self, candidate, batch):
        return TABLE[candidate.attrs["arch"]][0]


class NoiseProxy(Proxy):
    name = "noise"
    description = "a fixed pseudo-random number per cell"

    def score(self, candidate, batch):
        return _unit("noise" + candidate.attrs["arch"])


class CoinProxy(Proxy):
    name = "coin"
    description = "a fixed pseudo-random bit per cell: uninformative, and as large as the oracle's range"

    def score(self, candidate, batch):
        return float(_unit("coin" + candidate.attrs["arch"]) < 0.5)


class HalfNanProxy(Proxy):
    name = "half_nan"
    description = "the oracle on half the cells, NaN on the other half (the optimum included)"

    def score(self, candidate, batch):
        arch = candidate.attrs["arch"]
        if _unit("nan" + arch) < 0.5 or arch == BEST_CELL:
            return ProxyValue.nan("undefined for this cell")
        return 100.0 - TABLE[arch][0]  # anti-correlated: a proxy that misleads where it is defined


BEST_CELL = max(TABLE, key=lambda arch: TABLE[arch][0])


class _TestPlugin:
    @staticmethod
    @automl.hookimpl
    def register_proxies(register):
        register(OracleProxy)
        register(NoiseProxy)
        register(CoinProxy)
        register(HalfNanProxy)


@pytest.fixture(autouse=True)
def _test_plugin():
    assert automl.get_registry().add_plugin(_TestPlugin(), "test_strategies", "test", "0")


@pytest.fixture(scope="module")
def _module_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("strategies") / "cache.db")


@pytest.fixture(autouse=True)
def _shared_cache(_module_cache, monkeypatch):
    # The pools' proxy values are computed once for the module, as a second run of a search reads them.
    monkeypatch.setenv("AUTOML_CACHE", _module_cache)


def space_dict(strategy: str = "robot", proxies=("oracle_proxy", "noise"), n_trials: int = 30, **options) -> dict:
    table = {"name": strategy, "budget": 8, "oracle": {"name": "table", "benchmark": "nb201", "metrics": ["cifar10"]}}
    if strategy in ("robot", "proxy_then_oracle"):
        table["pool_size"] = 80
    table.update(options)
    return {
        "study": {"name": "s", "n_trials": n_trials, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 8, "image_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "proxies", "proxies": list(proxies)},
        "objectives": [{"metric": "cifar10", "direction": "maximize"}],
        "strategy": table,
    }


def queried(study) -> list[str]:
    return [t.user_attrs["candidate"]["arch"] for t in study.get_trials(deepcopy=False)]


def pool_optimum(space) -> float:
    pool, _ = build_pool(
        space, size=space.strategy.settings["pool_size"], whole_space=False, seed=space.strategy.settings["pool_seed"]
    )
    return max(TABLE[c.attrs["arch"]][0] for c in pool)


@pytest.mark.parametrize("sampler", ["gp", "tpe", pytest.param("ucb", marks=pytest.mark.slow)])
def test_robot_finds_the_optimum_when_a_proxy_is_the_oracle(storage, sampler):
    space = automl.SearchSpace.from_dict(space_dict(proxies=("oracle_proxy", "coin"), sampler=sampler))
    study = automl.search(space, storage=storage)
    assert study.best_value == pool_optimum(space)
    weights = study.user_attrs["strategy.weights"]
    assert weights["oracle_proxy"] > 0
    assert study.user_attrs["strategy.best"]["cifar10"] == study.best_value
    assert study.user_attrs["strategy.queries"] == "8 of 8"
    # Every query is a trial with its proxy values beside its true value.
    for trial in study.trials:
        assert trial.user_attrs["proxy.oracle_proxy"] == trial.value
        assert trial.user_attrs["strategy.phase"] in ("explore", "exploit")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_queries_never_exceed_the_budget(storage, strategy):
    study = automl.search(space_dict(strategy, n_trials=40), storage=storage)
    archs = queried(study)
    assert len(archs) == 8 and len(set(archs)) == 8
    assert all(t.state.name == "COMPLETE" and t.user_attrs["strategy"] == strategy for t in study.trials)
    # A second run of a finished search spends nothing.
    again = automl.search(space_dict(strategy, n_trials=40), storage=storage, n_trials=10)
    assert queried(again) == archs


def test_robot_reference_preset_is_raw_min_max_and_gp_ucb_with_one_random_start():
    from automl_plugins.strategies.robot import RoBoT

    oracle = {"name": "table", "benchmark": "nb201", "metrics": ["cifar10"]}
    robot = RoBoT.configure({"oracle": oracle, "budget": 20, "preset": "reference", "transform": "signed_log"})
    assert {k: robot.settings[k] for k in ("transform", "sampler", "kappa", "startup_trials")} == {
        "transform": "none",
        "sampler": "ucb",
        "kappa": 2.576,
        "startup_trials": 1,
    }
    # Raw min–max: (x − min) / (max − min) per proxy, by hand.
    raw = np.array([[2.0, 1e30], [4.0, 3e30], [3.0, 2e30]])
    assert normalize(raw, robot.settings["transform"]) == pytest.approx(np.array([[0, 0], [1, 1], [0.5, 0.5]]))


def test_gp_ucb_picks_the_maximum_of_mean_plus_kappa_std():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern

    from automl_plugins.strategies.robot import GpUcb, maximise_ucb

    ucb = GpUcb(1, seed=0, kappa=2.576, startup=1)
    first = ucb.ask()
    assert first.shape == (1,) and -1 <= first[0] <= 1  # the random start
    points = np.array([[-0.8], [-0.2], [0.3], [0.9]])
    values = np.array([1.0, 3.0, 2.0, 0.5])
    kernel = Matern(length_scale=0.4, nu=2.5)
    gp = GaussianProcessRegressor(kernel=kernel, alpha=1e-6, normalize_y=True, optimizer=None).fit(points, values)
    grid = np.linspace(-1, 1, 4001)[:, None]
    mean, std = gp.predict(grid, return_std=True)
    direct = mean + 2.576 * std
    chosen = maximise_ucb(gp, 2.576, np.random.default_rng(0), 1)
    mean_c, std_c = gp.predict(chosen[None, :], return_std=True)
    assert float(mean_c[0] + 2.576 * std_c[0]) == pytest.approx(direct.max(), abs=1e-5)
    assert abs(chosen[0] - grid[np.argmax(direct), 0]) < 2e-3


def test_a_repeated_argmax_costs_no_query(storage):
    # One proxy: every weight w > 0 picks its maximum and every w < 0 its minimum, so 12 BO
    # iterations can reach at most 2 distinct argmaxes; the other queries come from exploitation.
    study = automl.search(space_dict(proxies=("noise",), budget=5, explore_iterations=12), storage=storage)
    phases = [t.user_attrs["strategy.phase"] for t in study.trials]
    assert study.user_attrs["strategy.bo_iterations"] == 12
    assert study.user_attrs["strategy.explore_queries"] == phases.count("explore") <= 2
    assert len(study.trials) == 5 and phases.count("exploit") >= 3


def test_nan_proxy_values_are_skipped():
    raw = np.array([[1.0, math.nan], [3.0, 10.0], [2.0, 20.0], [math.inf, 0.0]])
    normalized = normalize(raw)
    assert normalized[:, 0].tolist()[:3] == [0.0, 1.0, 0.5] and math.isnan(normalized[3, 0])
    assert math.isnan(normalized[0, 1]) and normalized[1:, 1].tolist() == [0.5, 1.0, 0.0]
    # The NaN term adds nothing: row 0 scores only its first proxy.
    assert combined_scores(normalized, np.array([1.0, -1.0])).tolist()[:3] == [0.0, 0.5, -0.5]
    # log-measures: non-positive values become NaN and are skipped too.
    assert np.isnan(normalize(np.array([[-1.0], [1.0], [math.e]]), "log")[0, 0])


def test_robot_skips_nan_proxy_values_end_to_end(storage):
    space = automl.SearchSpace.from_dict(space_dict(proxies=("oracle_proxy", "half_nan")))
    study = automl.search(space, storage=storage)
    assert study.best_value == pool_optimum(space)
    assert any(t.user_attrs["proxy.half_nan"] is None for t in study.trials)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_resume_without_requerying(tmp_path, strategy):
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    space = automl.SearchSpace.from_dict(space_dict(strategy))
    first = StudyRunner(space, storage=storage)
    first.run(3)
    assert len(first.study.trials) == 3
    assert first.study.user_attrs["strategy.status"].startswith("stopped")
    resumed = StudyRunner(automl.SearchSpace.from_dict(space_dict(strategy)), storage=storage)
    resumed.run()
    archs = queried(resumed.study)
    assert len(archs) == 8 and len(set(archs)) == 8
    assert resumed.study.user_attrs["strategy.status"] == "finished"
    # The interrupted search queried what an uninterrupted one queries.
    whole = automl.search(space_dict(strategy), storage=storage, study_name="whole")
    assert queried(whole) == archs


def test_the_pool_proxies_come_from_the_cache_the_second_time(storage, tmp_path):
    cache = str(tmp_path / "own-cache.db")
    first = StudyRunner(automl.SearchSpace.from_dict(space_dict()), storage=storage, study_name="one", cache=cache)
    first.run()
    assert first.cache.hits == 0 and first.cache.misses >= 80
    second = StudyRunner(
        automl.SearchSpace.from_dict(space_dict(seed=3)), storage=storage, study_name="two", cache=cache
    )
    second.run()
    assert second.cache.hits >= 80


def test_a_small_space_is_enumerated_whole():
    ops = ["skip_connect", "nor_conv_3x3"]
    data = space_dict(pool_size=100)
    data["dimensions"][0]["operations"] = ops
    # Enumeration needs no oracle (the bundled table checks its cells use the space's operations).
    del data["strategy"]
    data["objectives"] = [{"metric": "noise"}]
    space = automl.SearchSpace.from_dict(data)
    everything = enumerate_space(space, limit=1000)
    ids = [c.id for c in everything]
    # 64 cells, one candidate per class of isomorphic cells (the candidate id's convention).
    cells = [
        space.candidate({f"nb201.e{a}{b}": op for (a, b), op in zip(EDGES, ops6)})
        for ops6 in itertools.product(ops, repeat=6)
    ]
    assert len(set(ids)) == len(ids) and set(ids) == {c.id for c in cells}
    pool, kind = build_pool(space, size=64, whole_space=False, seed=0)
    assert kind == "whole space" and len(pool) == len(ids)
    pool, kind = build_pool(space, size=10, whole_space=False, seed=0)
    assert kind.startswith("sample") and len(pool) == 10


def test_a_mutation_changes_exactly_one_edge():
    space = automl.SearchSpace.from_dict(space_dict("evolution"))
    rng = np.random.default_rng(0)
    parent, specs = sample_candidate(space, rng)
    for _ in range(20):
        child, _ = RegularizedEvolution.mutate(space, parent, specs, rng)
        changed = [k for k in parent.params if parent.params[k] != child.params[k]]
        assert len(changed) == 1


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["objectives"][0].update(metric="noise"), "objectives[0].metric"),
        (lambda d: d["strategy"].update(metric="cifar100"), "strategy.metric"),
        (lambda d: d["strategy"].update(direction="minimize"), "strategy.direction"),
        (lambda d: d["study"].update(n_trials=5), "study.n_trials"),
        (lambda d: d["strategy"]["oracle"].update(name="nope"), "strategy.oracle.name"),
        (lambda d: d["strategy"]["oracle"].update(metrics=["top1"]), "strategy.oracle.metrics[0]"),
        (
            lambda d: d["strategy"]["oracle"].update(benchmark="flexibert", metrics=["glue"]),
            "strategy.oracle.benchmark",
        ),
        (lambda d: d["strategy"].update(proxies=["synflow"]), "strategy.proxies[0]"),
        (lambda d: d["strategy"].update(sampler="cmaes"), "strategy.sampler"),
        (lambda d: d["objectives"].append({"metric": "params"}), "objectives"),
    ],
)
def test_invalid_strategy_tables_name_the_key(change, key):
    data = space_dict()
    data["strategy"]["oracle"]["metrics"] = ["cifar10", "cifar100"]
    change(data)
    if data["strategy"]["oracle"].get("benchmark") == "flexibert":
        data["objectives"][0]["metric"] = "glue"
    with pytest.raises(SpaceError) as raised:
        automl.SearchSpace.from_dict(data)
    assert raised.value.key == key


def test_evolution_rejects_a_tournament_larger_than_the_population():
    with pytest.raises(SpaceError) as raised:
        automl.SearchSpace.from_dict(space_dict("evolution", population_size=3, tournament_size=4))
    assert raised.value.key == "strategy.tournament_size"


def test_a_strategy_runs_from_a_file_and_show_reports_it(tmp_path, capsys):
    path = tmp_path / "robot.toml"
    path.write_text("""
[study]
name = "robot-file"
n_trials = 20
[task]
name = "digits"
batch_size = 8
image_size = 16
[[dimensions]]
name = "nb201"
channels = 4
cells_per_stage = 1
[evaluator]
name = "proxies"
proxies = ["oracle_proxy", "noise"]
[[objectives]]
metric = "cifar10"
[strategy]
name = "robot"
budget = 6
pool_size = 100
sampler = "tpe"
oracle = {name = "table", benchmark = "nb201", metrics = ["cifar10"]}
""")
    storage = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["run", str(path), "--storage", storage, "--quiet"]) == 0
    assert main(["show", "robot-file", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "6 complete" in out
    for line in ("weights: {", 'queries: "6 of 6"', "best: {", 'name: "robot"'):
        assert line in out


def test_robot_base_set_names_expand_to_their_proxies():
    from automl_plugins.evaluators.proxies import AGGREGATE_PRESETS
    from automl_plugins.strategies.ranked import PROXY_SETS, expand_proxy_sets

    assert PROXY_SETS["default"] == AGGREGATE_PRESETS["default"]
    assert expand_proxy_sets(["robot", "synflow", "meco"]) == [*PROXY_SETS["robot"], "meco"]
    proxies = [*PROXY_SETS["default"], "grad_norm"]
    space = automl.SearchSpace.from_dict(space_dict(proxies=proxies))
    strategy = automl.SearchSpace.from_dict(
        {**space.raw, "strategy": {**space.raw["strategy"], "proxies": ["default"]}}
    )
    assert strategy.strategy.proxy_names(strategy) == list(PROXY_SETS["default"])
    with pytest.raises(SpaceError) as raised:  # the six need grasp, which this evaluator does not score
        automl.SearchSpace.from_dict({**space.raw, "strategy": {**space.raw["strategy"], "proxies": ["robot"]}})
    assert raised.value.key == "strategy.proxies[0]" and "in the set 'robot'" in raised.value.message
