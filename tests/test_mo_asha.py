"""Multi-objective early stopping (MO-ASHA): the sort and the rung decision by hand, then a real search."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import automl
from automl.pruners import (
    MOASHAPruner,
    epsilon_net_order,
    mo_asha_ranking,
    nondominated_fronts,
    promoted,
    rung_of,
    rung_steps,
    scaled,
)
from automl.record import TrialRecord

# Six made-up trials at one rung: (validation accuracy, size in bits).
TRIALS = {"A": (0.9, 100), "B": (0.8, 50), "C": (0.7, 200), "D": (0.6, 10), "E": (0.5, 60), "F": (0.85, 300)}
OBJECTIVES = [("val_accuracy", "maximize"), ("size_bits", "minimize")]


def _minimized():
    return [[-acc, size] for acc, size in TRIALS.values()]


def test_non_dominated_sorting_and_the_epsilon_net_tie_break_by_hand():
    points = _minimized()
    names = list(TRIALS)
    # A has the best accuracy, D the smallest size, B is beaten by A in accuracy only and by D in size only;
    # C is dominated by A, E by B and D, F by A: the second front is C, E, F.
    assert [[names[i] for i in front] for front in nondominated_fronts(points)] == [["A", "B", "D"], ["C", "E", "F"]]
    # Scaled over the six: accuracy -0.9..-0.5 (span 0.4), size 10..300 (span 290).
    unit = scaled(points)
    assert unit[0] == pytest.approx([0.0, 90 / 290]) and unit[3] == pytest.approx([0.75, 0.0])
    # First front: A (best accuracy) first; D is 0.81 from A, B only 0.30: D, then B.
    assert [names[i] for i in epsilon_net_order(unit, [0, 1, 3])] == ["A", "D", "B"]
    # Second front: F (best accuracy among C, E, F); E is 1.20 from F, C 0.51: E, then C.
    assert [names[i] for i in epsilon_net_order(unit, [2, 4, 5])] == ["F", "E", "C"]
    assert [names[i] for i in mo_asha_ranking(points)] == ["A", "D", "B", "F", "E", "C"]


def test_the_rung_decision_keeps_the_top_third_by_hand():
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=3)
    points = {name: [-acc, size] for name, (acc, size) in TRIALS.items()}

    def judged(name):
        others = [p for other, p in points.items() if other != name]
        return pruner.judge(1, points[name], others)

    # Six at the rung, η = 3: two continue. B is on the first front but the tie-break ranks it third.
    assert judged("A") == (True, 0, 6)
    assert judged("D") == (True, 1, 6)
    assert judged("B") == (False, 2, 6)
    assert judged("F") == (False, 3, 6)
    assert promoted(1, 3) == 1 and promoted(2, 3) == 1 and promoted(9, 3) == 3
    # The first trial at a rung always continues; the second only if it ranks first.
    assert pruner.judge(1, points["E"], []) == (True, 0, 1)
    assert pruner.judge(1, points["E"], [points["D"]])[0] is False
    assert pruner.judge(1, points["D"], [points["E"]])[0] is True


def test_rungs_and_when_a_trial_reaches_one():
    assert rung_steps(min_resource=1, reduction_factor=3, max_resource=9) == [1, 3]
    assert rung_steps(min_resource=2, reduction_factor=2, max_resource=20) == [2, 4, 8, 16]
    assert rung_steps(rungs=[4, 1, 4], max_resource=4) == [1]
    assert rung_of([], 1, [1, 3]) == 1
    assert rung_of([1], 2, [1, 3]) is None  # judged at rung 1 already: never judged there again
    assert rung_of([1, 2], 3, [1, 3]) == 3
    assert rung_of([], 5, [1, 3]) == 3  # steps that skip rungs are judged at the highest one passed


def _study_with_rung_values():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (acc, size) in enumerate(list(TRIALS.values())[:5]):  # A..E finished (complete or pruned)
        attrs = {"intermediate": [[1, acc], [2, acc + 0.01]], "cost.size_bits": size}
        state = TrialState.COMPLETE if i % 2 == 0 else TrialState.PRUNED
        values = [acc + 0.01, float(size)] if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, values=values, user_attrs=attrs))
    # A failed trial and a trial without costs do not compete.
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"intermediate": [[1, 0.99]], "cost.size_bits": 1}))
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.99, 1.0], user_attrs={"intermediate": [[1, 1]]}))
    return study


def test_the_pruner_reads_the_study_record():
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=3, max_resource=3)
    study = _study_with_rung_values()
    trial = study.ask({"x": FloatDistribution(0, 1)})
    trial.set_user_attr("cost.size_bits", 300)  # F: ranked 4th of 6 at rung 1
    trial.set_user_attr("intermediate", [[1, 0.85]])
    reason = pruner.decide(study, trial.number)
    assert reason == "stopped by mo_asha at rung 1 (step 1): ranked 4 of 6 by non-dominated sorting, 2 continue"
    assert pruner.prune(study, study.trials[trial.number]) is True
    # The same values with the smallest size: the first front, first in the ε-net order after A.
    trial.set_user_attr("cost.size_bits", 5)
    assert pruner.decide(study, trial.number) is None
    # Step 2 is no rung (rungs 1 and 3 below max_resource 3 give only rung 1): no decision at all.
    trial.set_user_attr("cost.size_bits", 300)
    trial.set_user_attr("intermediate", [[1, 0.85], [2, 0.1]])
    assert pruner.decide(study, trial.number) is None


def test_mo_asha_options_and_objectives_are_validated(nb201_space_dict):
    def space(pruner_options, objectives):
        data = dict(nb201_space_dict)
        data["study"] = {**data["study"], "pruner": "mo_asha", "pruner_options": pruner_options}
        data["evaluator"] = {"name": "training", "epochs": 2}
        data["objectives"] = objectives
        return automl.SearchSpace.from_dict(data)

    two = [{"metric": "val_accuracy"}, {"metric": "params", "direction": "minimize"}]
    built = space({"reduction_factor": 2, "max_resource": 2}, two).make_pruner()
    assert isinstance(built, MOASHAPruner) and built.rungs == [1]
    with pytest.raises(automl.SpaceError, match="reduction_factor: 1 is below the minimum 2"):
        space({"reduction_factor": 1}, two)
    with pytest.raises(automl.SpaceError, match="above the maximum"):
        space({"min_resource": 10**10}, two)
    with pytest.raises(automl.SpaceError, match="unknown key 'grace'"):
        space({"grace": 1}, two)
    with pytest.raises(automl.SpaceError, match="either rungs or min_resource") as err:
        space({"rungs": [1, 2], "min_resource": 1}, two)
    assert err.value.key == "study.pruner_options.rungs" and err.value.source == "<space>"
    assert space({"rungs": [2, 1]}, two).make_pruner().rungs == [1, 2]
    with pytest.raises(automl.SpaceError, match="2 scores") as err:
        space({}, [{"metric": "val_accuracy"}, {"metric": "val_loss", "direction": "minimize"}])
    assert err.value.key == "study.pruner"


def _two_objective_training(n_trials, **study):
    return {
        "study": {
            "name": "mo-asha",
            "n_trials": n_trials,
            "seed": 0,
            "sampler": "random",
            "pruner": "mo_asha",
            "pruner_options": {"reduction_factor": 2, "max_resource": 3},
            **study,
        },
        "task": {"name": "digits", "batch_size": 32, "image_size": 8},
        "dimensions": [
            {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            {"name": "quantization", "weight_bits": [2, 4, 8, 32], "activation_bits": [32]},
        ],
        "evaluator": {"name": "training", "epochs": 3, "max_train_samples": 96, "batch_size": 32},
        "objectives": [
            {"metric": "val_accuracy", "direction": "maximize"},
            {"metric": "size_bits", "direction": "minimize"},
        ],
    }


@pytest.mark.slow
def test_a_two_objective_training_search_prunes_dominated_trials(storage):
    study = automl.search(_two_objective_training(8), storage=storage, cache=False)
    assert study.metric_names == ["val_accuracy", "size_bits"]
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    for trial in study.trials:
        record = TrialRecord.read(trial)
        assert trial.user_attrs["cost.size_bits"] > 0  # recorded when the trial started
        assert [v for _, v in trial.user_attrs["intermediate"]] == record.curve
        if trial.state == TrialState.PRUNED:
            assert record.pruned.startswith("stopped by mo_asha at rung") and len(record.curve) < 3
            assert trial.values is None  # a pruned multi-objective trial has no values
        else:
            assert len(record.curve) == 3
            assert trial.values == [trial.user_attrs["score.val_accuracy"], trial.user_attrs["cost.size_bits"]]


def test_a_short_two_objective_search_prunes_through_the_runner(storage):
    data = _two_objective_training(3)
    data["study"]["pruner_options"] = {"reduction_factor": 2, "max_resource": 2}
    data["evaluator"].update(epochs=2, max_train_samples=32)
    study = automl.search(data, storage=storage, cache=False)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and len(pruned) < 3
    for trial in pruned:
        record = TrialRecord.read(trial)
        assert record.curve == [trial.user_attrs["intermediate"][0][1]] and record.costs["size_bits"] > 0
