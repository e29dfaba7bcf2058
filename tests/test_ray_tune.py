"""Ray Tune strategies: every Ray trial lands in the study with the right state and the local attributes.

One Ray session serves the whole module (starting Ray costs seconds); the strategies find it running
and use it as it is.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
from optuna.trial import TrialState

from automl.errors import SpaceError
from automl.runner import StudyRunner
from automl.space import SearchSpace
from automl_plugins.ray_tune.cluster import ray_session, resolve_address
from automl_plugins.ray_tune.worker import FINAL, ITERATION, PAYLOAD, STEP, VALUE

EPOCHS = 3
TRAINING = {"name": "training", "epochs": EPOCHS, "max_train_samples": 128, "batch_size": 32}
ASHA = {
    "name": "ray_tune",
    "cpus": 1,
    "max_concurrent_trials": 2,
    "scheduler": "asha",
    "scheduler_options": {"max_t": EPOCHS, "grace_period": 1, "reduction_factor": 2},
}


def space_dict(strategy=None, *, n_trials=6, name="ray"):
    data = {
        "study": {"name": name, "n_trials": n_trials, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 16, "image_size": 8},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": copy.deepcopy(TRAINING),
        "objectives": [{"metric": "val_accuracy", "direction": "maximize"}],
    }
    if strategy is not None:
        data["strategy"] = copy.deepcopy(strategy)
    return data


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A private Ray for this module: 2 CPUs, its temp folder under the module's run folder."""
    with ray_session(tmp_path_factory.mktemp("ray-run"), num_cpus=2) as started:
        assert started
        yield


@pytest.fixture(scope="module")
def asha_study(ray_cluster, tmp_path_factory):
    """A seeded 6-trial ASHA search on digits, run once for the tests that read it."""
    folder = tmp_path_factory.mktemp("asha")
    storage = f"sqlite:///{folder / 'studies.db'}"
    space = SearchSpace.from_dict(space_dict(ASHA))
    runner = StudyRunner(space, storage=storage, cache=str(folder / "cache.db"))
    runner.run()
    return runner


@pytest.mark.slow
def test_every_ray_trial_is_in_the_study_with_its_state(asha_study):
    trials = [t for t in asha_study.study.get_trials() if "stage" not in t.user_attrs]  # the search's own
    assert [t.number for t in trials] == list(range(6))
    states = [t.state for t in trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, [t.user_attrs.get("failure") for t in trials]
    assert TrialState.COMPLETE in states
    assert TrialState.PRUNED in states
    for trial in trials:
        assert trial.intermediate_values, trial.number
        assert trial.user_attrs["candidate"]["id"]
        curve = trial.user_attrs["result"]["info"]["curve"]
        assert curve == [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        if trial.state == TrialState.PRUNED:
            # Valued at its last intermediate value, which includes the step that made ASHA stop it.
            assert trial.value == trial.intermediate_values[max(trial.intermediate_values)]
            assert "stopped by the asha scheduler" in trial.user_attrs["result"]["pruned"]
            assert trial.user_attrs["result"]["pruned"].endswith(f"at step {max(trial.intermediate_values)}")
        else:
            assert len(trial.intermediate_values) == EPOCHS
            assert trial.value == trial.user_attrs["result"]["scores"]["val_accuracy"]
            assert trial.user_attrs["ray"]["device"] == "cpu"
            assert trial.user_attrs["ray"]["threads"] == 1
            assert trial.user_attrs["ray"]["node_id"] and trial.user_attrs["ray"]["node_ip"]


@pytest.mark.slow
def test_a_ray_trial_records_what_a_local_trial_records(asha_study, storage):
    # The candidate with the most convolutions: the one whose arithmetic depends most on the thread count.
    complete = max(
        (t for t in asha_study.study.get_trials() if t.state == TrialState.COMPLETE),
        key=lambda t: sum("conv" in str(v) for v in t.params.values()),
    )
    local = StudyRunner(SearchSpace.from_dict(space_dict(name="local")), storage=storage, cache=False)
    threads = torch.get_num_threads()
    # This process runs torch with 2 threads (torch's default on a 2-core machine); evaluations run with
    # one, as on the Ray worker, so the same candidate and seed give the same scores.
    torch.set_num_threads(2)
    try:
        twin = local.run_trial(complete.params)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert twin.state == TrialState.COMPLETE
    assert twin.params == complete.params
    assert twin.user_attrs["candidate"] == complete.user_attrs["candidate"]
    # A local trial also carries its worker's heartbeat (the driver's Ray trials are watched by Ray).
    assert set(twin.user_attrs) - {"automl.worker"} <= set(complete.user_attrs)
    ray_result, local_result = complete.user_attrs["result"], twin.user_attrs["result"]
    assert set(local_result) == set(ray_result)
    assert ray_result["costs"] == local_result["costs"]
    assert set(ray_result["scores"]) == set(local_result["scores"])
    assert ray_result["cached"] is False
    # Bit for bit: with another thread count the losses differ in their last digits (train_loss
    # 2.0828328132629395 with one thread, 2.0828327536582947 with two, for a 16-pixel cell of convolutions).
    assert ray_result["scores"] == local_result["scores"]
    assert complete.value == twin.value
    assert complete.intermediate_values == twin.intermediate_values


@pytest.mark.slow
def test_a_cached_candidate_is_recorded_without_going_to_ray(asha_study):
    from automl_plugins.ray_tune.searcher import PlannedTrial, StudySearcher

    complete = [t for t in asha_study.study.get_trials() if t.state == TrialState.COMPLETE]
    assert asha_study.cache is not None and len(asha_study.cache) == len(complete)
    searcher = StudySearcher(
        asha_study,
        n_trials=1,
        evaluator=asha_study.space.evaluator,
        planned=[PlannedTrial(dict(complete[0].params), {"stage": "again"})],
    )
    assert searcher.suggest("x") == "FINISHED"
    again = asha_study.study.get_trials()[-1]
    assert again.state == TrialState.COMPLETE and again.user_attrs["result"]["cached"] is True
    assert again.value == complete[0].value and again.user_attrs["stage"] == "again"


@pytest.mark.slow
def test_a_failing_trial_is_failed_with_its_reason(ray_cluster, storage):
    # No model can be trained on the meta device: every trial fails inside the evaluator, on the worker.
    space = SearchSpace.from_dict(space_dict({**ASHA, "scheduler": "fifo", "scheduler_options": {}}, n_trials=1))
    runner = StudyRunner(space, storage=storage, cache=False, device="meta")
    runner.run()
    trials = runner.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]
    for trial in trials:
        assert trial.user_attrs["failure"]
        # The worker's exception, as the same evaluation raises it locally on the meta device.
        assert trial.user_attrs["failure"] == "RuntimeError: Tensor.item() cannot be called on meta tensors"


@pytest.mark.slow
def test_two_stage_screens_a_pool_and_trains_the_best(ray_cluster, storage):
    strategy = {
        **ASHA,
        "name": "two_stage",
        "scheduler": "fifo",
        "scheduler_options": {},
        "screen": {"name": "proxies", "proxies": ["synflow"]},
        "pool": 4,
        "top_k": 2,
    }
    space = SearchSpace.from_dict(space_dict(strategy, n_trials=6))
    runner = StudyRunner(space, storage=storage, cache=False)
    runner.run()
    trials = runner.study.get_trials()
    screen = [t for t in trials if t.user_attrs.get("stage") == "screen"]
    train = [t for t in trials if t.user_attrs.get("stage") == "train"]
    assert len(screen) == 4 and len(train) == 2 and len(trials) == 6
    assert all(t.state == TrialState.PRUNED and t.user_attrs["screen"]["metric"] == "synflow" for t in screen)
    best = sorted(screen, key=lambda t: -t.user_attrs["screen"]["value"])[:2]
    assert [t.user_attrs["screen_trial"] for t in train] == [t.number for t in best]
    for trained, screened in zip(train, best, strict=True):
        assert trained.state == TrialState.COMPLETE
        assert trained.params == screened.params
        assert trained.user_attrs["candidate"]["id"] == screened.user_attrs["candidate"]["id"]
        assert len(trained.intermediate_values) == EPOCHS
    # Re-running finds both stages done and adds nothing.
    runner.run(4)
    assert len(runner.study.get_trials()) == 6


# -- the Ray Tune → Optuna translation, driven by the results Ray Tune hands the searcher ----------------
def searcher_for(tmp_storage, objectives=None):
    from automl_plugins.ray_tune.searcher import StudySearcher

    data = space_dict(ASHA, n_trials=3)
    if objectives:
        data["objectives"] = objectives
    space = SearchSpace.from_dict(data)
    runner = StudyRunner(space, storage=tmp_storage, cache=False)
    return runner, StudySearcher(runner, n_trials=3, evaluator=space.evaluator, scheduler_name="asha")


def test_a_stopped_trial_is_pruned_with_the_step_that_stopped_it(storage):
    runner, searcher = searcher_for(storage)
    config = searcher.suggest("a")
    assert set(config["params"]) == set(runner.study.trials[0].params)
    searcher.on_trial_result("a", {VALUE: 0.2, STEP: 0, ITERATION: 1})
    # The result that makes the scheduler stop a trial reaches the searcher only at completion.
    searcher.on_trial_complete("a", {VALUE: 0.3, STEP: 1, ITERATION: 2})
    searcher.suggest("b")
    searcher.on_trial_result("b", {VALUE: 0.1, STEP: 0, ITERATION: 1})
    searcher.on_trial_complete("b", {VALUE: 0.1, STEP: 0, ITERATION: 1})  # seen before: counted once
    trial = runner.study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {0: 0.2, 1: 0.3}
    assert trial.value == 0.3
    assert trial.user_attrs["result"]["info"]["curve"] == [0.2, 0.3]
    other = runner.study.trials[1]
    assert other.state == TrialState.PRUNED and other.user_attrs["result"]["info"]["curve"] == [0.1]


def test_outcomes_reported_by_the_worker(storage):
    runner, searcher = searcher_for(storage)
    for trial_id in "abc":
        searcher.suggest(trial_id)
    assert searcher.suggest("d") == "FINISHED"
    final = {VALUE: 0.5, ITERATION: 1, FINAL: True}
    complete = {
        "status": "complete",
        "scores": {"val_accuracy": 0.5},
        "costs": {"params": 10.0},
        "reasons": {},
        "duration_s": 1.0,
    }
    searcher.on_trial_complete("a", {**final, PAYLOAD: json.dumps(complete)})
    searcher.on_trial_complete(
        "b", {**final, PAYLOAD: json.dumps({"status": "failed", "reason": "boom", "duration_s": 1.0})}
    )
    nan = {**complete, "scores": {"val_accuracy": None}, "reasons": {"val_accuracy": "diverged"}}
    searcher.on_trial_complete("c", {**final, PAYLOAD: json.dumps(nan)})
    a, b, c = runner.study.trials
    assert a.state == TrialState.COMPLETE and a.value == 0.5 and a.user_attrs["result"]["costs"] == {"params": 10.0}
    assert b.state == TrialState.FAIL and b.user_attrs["failure"] == "boom"
    assert c.state == TrialState.FAIL and "diverged" in c.user_attrs["failure"]
    assert c.user_attrs["result"]["scores"] == {"val_accuracy": None}


def test_a_dead_worker_fails_the_trial_with_ray_s_error(storage, tmp_path):
    runner, searcher = searcher_for(storage)
    searcher.suggest("a")
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1\nray.exceptions.RayActorError: The actor died unexpectedly\n")
    searcher.ray_trials["a"] = SimpleNamespace(error_file=str(error_file))
    searcher.on_trial_result("a", {VALUE: 0.2, STEP: 1, ITERATION: 1})
    searcher.on_trial_complete("a", error=True)
    trial = runner.study.trials[0]
    assert trial.state == TrialState.FAIL
    assert (
        trial.user_attrs["failure"]
        == "the Ray worker failed: ray.exceptions.RayActorError: The actor died unexpectedly"
    )
    assert trial.user_attrs["result"]["info"]["curve"] == [0.2]


def test_several_objectives_keep_the_curve_without_optuna_intermediate_values(storage):
    runner, searcher = searcher_for(
        storage,
        objectives=[
            {"metric": "val_accuracy", "direction": "maximize"},
            {"metric": "params", "direction": "minimize"},
        ],
    )
    searcher.suggest("a")
    searcher.on_trial_result("a", {VALUE: 0.2, STEP: 1, ITERATION: 1})
    complete = {
        "status": "complete",
        "scores": {"val_accuracy": 0.4},
        "info": {"costs": {"params": 10.0}},
        "reasons": {},
        "duration_s": 1.0,
    }
    searcher.on_trial_complete("a", {VALUE: 0.4, ITERATION: 1, FINAL: True, PAYLOAD: json.dumps(complete)})
    trial = runner.study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.values == [0.4, 10.0]
    assert trial.intermediate_values == {}


def test_an_interrupted_run_leaves_no_trial_running(storage):
    runner, searcher = searcher_for(storage)
    searcher.suggest("a")
    searcher.fail_open_trials("interrupted")
    assert runner.study.trials[0].state == TrialState.FAIL


def test_the_command_line_address_wins_over_the_file():
    assert resolve_address(None) is None
    assert resolve_address("auto") == "auto"
    assert resolve_address("auto", "head:6379") == "head:6379"
    assert resolve_address(None, "head:6379") == "head:6379"


# -- validation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "key"),
    [
        ({"name": "ray_tune", "scheduler": "pbt"}, "strategy.scheduler"),
        ({"name": "ray_tune", "scheduler_options": {"max_tt": 3}}, "strategy.scheduler_options.max_tt"),
        ({"name": "ray_tune", "scheduler_options": {"reduction_factor": 1}}, "strategy.scheduler_options"),
        ({"name": "ray_tune", "gpus": -1}, "strategy.gpus"),
        (
            {
                "name": "two_stage",
                "screen": {"name": "proxies", "proxies": ["synflow"]},
                "top_k": 5,
                "pool": 3,
            },
            "strategy.top_k",
        ),
        (
            {
                "name": "two_stage",
                "screen": {"name": "proxies", "proxies": ["synflow"]},
                "screen_metric": "acc",
            },
            "strategy.screen_metric",
        ),
        ({"name": "two_stage", "screen": {"name": "nope"}}, "strategy.screen.name"),
    ],
)
def test_invalid_strategy_tables_name_the_key(strategy, key):
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(space_dict(strategy))
    assert err.value.key == key, str(err.value)


# -- MO-ASHA through Ray Tune: the scheduler asks the searcher, which judges from the study ------------------
MO_ASHA = {
    **ASHA,
    "scheduler": "mo_asha",
    "scheduler_options": {"reduction_factor": 2, "max_resource": EPOCHS},
}
ACCURACY_AND_PARAMS = [
    {"metric": "val_accuracy", "direction": "maximize"},
    {"metric": "params", "direction": "minimize"},
]


def test_the_mo_asha_scheduler_stops_a_dominated_trial_at_a_rung(storage):
    from automl_plugins.ray_tune.searcher import StudySearcher
    from automl_plugins.ray_tune.strategy import make_scheduler

    data = space_dict(MO_ASHA, n_trials=3)
    data["objectives"] = ACCURACY_AND_PARAMS
    space = SearchSpace.from_dict(data)
    runner = StudyRunner(space, storage=storage, cache=False)
    scheduler = make_scheduler("mo_asha", MO_ASHA["scheduler_options"], "max", space=space)
    assert scheduler.pruner.rungs == [1, 2]
    searcher = StudySearcher(
        runner, n_trials=3, evaluator=space.evaluator, scheduler_name="mo_asha", pruner=scheduler.pruner
    )
    scheduler.searcher = searcher
    for trial_id, params in zip("abc", (100, 200, 50)):
        searcher.suggest(trial_id)
        opened = searcher.open[trial_id].trial
        assert opened.user_attrs["cost.params"] > 0  # recorded on the driver when the trial starts
        opened.set_user_attr("cost.params", params)  # made-up sizes, for a decision computed by hand

    def result(trial_id, step, value):
        return scheduler.on_trial_result(None, SimpleNamespace(trial_id=trial_id), {VALUE: value, STEP: step})

    assert result("a", 1, 0.5) == "CONTINUE"  # the first at rung 1
    assert result("b", 1, 0.4) == "STOP"  # dominated by a (less accurate, larger): 2nd of 2, 1 continues
    searcher.on_trial_complete("b", {VALUE: 0.4, STEP: 1, ITERATION: 1})
    assert result("c", 1, 0.6) == "CONTINUE"  # dominates a: first of 3
    assert result("a", 2, 0.55) == "CONTINUE"  # the first at rung 2
    assert result("a", 2, 0.55) == "CONTINUE"  # the same step again: judged once
    b = runner.study.trials[1]
    assert b.state == TrialState.PRUNED and b.values is None
    assert b.user_attrs["result"]["pruned"] == (
        "stopped by mo_asha at rung 1 (step 1): ranked 2 of 2 by non-dominated sorting, 1 continue"
    )
    assert b.user_attrs["result"]["info"]["curve"] == [0.4] and b.user_attrs["intermediate"] == [[1, 0.4]]
    assert runner.study.trials[0].user_attrs["intermediate"] == [[1, 0.5], [2, 0.55]]


def test_the_mo_asha_scheduler_needs_one_score_beside_cost_figures():
    data = space_dict(MO_ASHA)
    data["objectives"] = [{"metric": "val_accuracy"}, {"metric": "val_loss", "direction": "minimize"}]
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(data)
    assert err.value.key == "strategy.scheduler", str(err.value)
    data["strategy"]["scheduler_options"] = {"reduction_factor": 1}
    data["objectives"] = ACCURACY_AND_PARAMS
    with pytest.raises(SpaceError, match="reduction_factor: 1 is below the minimum 2"):
        SearchSpace.from_dict(data)


@pytest.mark.slow
def test_a_ray_search_with_mo_asha_prunes_and_records_like_a_local_one(ray_cluster, storage):
    data = space_dict(MO_ASHA, n_trials=6, name="ray-mo-asha")
    data["objectives"] = [{"metric": "val_accuracy"}, {"metric": "size_bits", "direction": "minimize"}]
    data["dimensions"].append({"name": "quantization", "weight_bits": [2, 4, 8, 32], "activation_bits": [32]})
    runner = StudyRunner(SearchSpace.from_dict(data), storage=storage, cache=False)
    runner.run()
    trials = runner.study.get_trials()
    states = [t.state for t in trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, [t.user_attrs.get("failure") for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for trial in trials:
        steps = [s for s, _ in trial.user_attrs["intermediate"]]
        assert trial.user_attrs["cost.size_bits"] > 0
        assert [v for _, v in trial.user_attrs["intermediate"]] == trial.user_attrs["result"]["info"]["curve"]
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["result"]["pruned"].startswith(f"stopped by mo_asha at rung {steps[-1]}")
        else:
            assert steps == [1, 2, 3] and trial.values[1] == trial.user_attrs["cost.size_bits"]
