"""The dashboard's data layer (no textual): incremental reads and the numbers behind each chart."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl_tui.data import (
    StudyTrials,
    best_so_far,
    pareto_points,
    param_importances,
    proxy_correlations,
    split_scores,
    trial_sections,
)


def _trial(values, state=TrialState.COMPLETE, x=0.5, number=0):
    trial = create_trial(state=state, values=values if state == TrialState.COMPLETE else None,
                         params={"x": x}, distributions={"x": FloatDistribution(0, 1)})
    trial.number = number
    return trial


def test_best_so_far_keeps_the_running_best_and_skips_unfinished():
    trials = [_trial([3.0], number=0), _trial(None, TrialState.FAIL, number=1), _trial([1.0], number=2),
              _trial([5.0], number=3)]
    maxi = best_so_far(trials, "maximize")
    assert maxi.numbers == [0, 2, 3] and maxi.best == [3.0, 3.0, 5.0]
    assert best_so_far(trials, "minimize").best == [3.0, 1.0, 1.0]


def test_pareto_front_of_two_objectives():
    # maximize the first, minimize the second: (3, 1) dominates (2, 2); (4, 5) and (1, 0) are also optimal.
    points = [[3.0, 1.0], [2.0, 2.0], [4.0, 5.0], [1.0, 0.0], [3.5, 6.0]]
    trials = [_trial(v, number=i) for i, v in enumerate(points)]
    front = pareto_points(trials, ["maximize", "minimize"], ["acc", "params"])
    assert sorted(front.front_numbers) == [0, 2, 3]
    assert len(front.x) == 5 and (front.x_metric, front.y_metric) == ("acc", "params")


def test_proxy_correlations_rank_proxies_against_the_truth():
    records = [{"score.synflow": float(i), "score.params": float(-i if i % 2 else i),
                "score.accuracy": i * 2.0} for i in range(10)]
    records.append({"score.synflow": math.nan, "score.accuracy": 1.0})
    proxies, truths = split_scores(records, ["synflow", "params", "jacov"])
    assert proxies == ["synflow", "params"] and truths == ["accuracy"]
    found = {c.proxy: c for c in proxy_correlations(records, proxies, "accuracy")}
    assert found["synflow"].spearman == pytest.approx(1.0) and found["synflow"].kendall == pytest.approx(1.0)
    assert found["synflow"].n == 10  # the NaN proxy score is left out
    assert found["params"].spearman < 0.5


def test_importances_on_a_real_study():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) * 10 + t.suggest_float("y", 0, 1) * 0.1, n_trials=30)
    found = param_importances(study.trials, ["minimize"], ["loss"])
    assert found.names[0] == "x" and found.n_trials == 30
    assert param_importances(study.trials[:1], ["minimize"], ["loss"]).note


def test_study_trials_reads_only_what_changed(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    study.add_trial(_trial([1.0]))
    running = study.ask()
    trials = StudyTrials("s", storage)
    first = trials.refresh()
    assert first.added == [0, 1] and trials.records[1]["state"] == "RUNNING"
    assert trials.refresh() == ([], [])
    study.tell(running, 2.0)
    study.add_trial(_trial([0.5]))
    change = trials.refresh()
    assert change.added == [2] and change.changed == [1]
    assert [r["state"] for r in trials.records] == ["COMPLETE"] * 3
    assert trials.counts()["COMPLETE"] == 3


def test_trial_sections_group_a_record():
    sections = dict(trial_sections({"number": 3, "state": "FAIL", "param.nb201.e01": "none",
                                    "score.synflow": 1.5, "failure": "boom"}))
    assert sections["params"] == [("nb201.e01", "none")]
    assert ("failure", "boom") in sections["trial"]
