"""The dashboard's data layer (no textual): incremental reads and the numbers behind each chart."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automl.storage import open_storage
from automl_tui.data import (
    StudyTrials,
    best_so_far,
    param_importances,
    pareto_points,
    proxy_correlations,
    split_scores,
    trial_sections,
)


def _trial(values, state=TrialState.COMPLETE, x=0.5, number=0):
    trial = create_trial(
        state=state,
        values=values if state == TrialState.COMPLETE else None,
        params={"x": x},
        distributions={"x": FloatDistribution(0, 1)},
    )
    trial.number = number
    return trial


def test_best_so_far_keeps_the_running_best_and_skips_unfinished():
    trials = [
        _trial([3.0], number=0),
        _trial(None, TrialState.FAIL, number=1),
        _trial([1.0], number=2),
        _trial([5.0], number=3),
    ]
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
    records = [
        {"score.synflow": float(i), "score.params": float(-i if i % 2 else i), "score.accuracy": i * 2.0}
        for i in range(10)
    ]
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
    sections = dict(
        trial_sections(
            {"number": 3, "state": "FAIL", "param.nb201.e01": "none", "score.synflow": 1.5, "failure": "boom"}
        )
    )
    assert sections["params"] == [("nb201.e01", "none")]
    assert ("failure", "boom") in sections["trial"]


def test_the_sqlite_fast_path_reads_the_same_trials_as_optuna(tmp_path):
    from automl.sqlite_reader import read_sqlite_trials

    url = f"sqlite:///{tmp_path / 'fast.db'}"
    study = optuna.create_study(study_name="fast", storage=url)
    pareto = optuna.create_study(study_name="pareto", storage=url, directions=["maximize", "minimize"])
    pareto.optimize(lambda t: (t.suggest_float("y", 0, 1), float("-inf")), n_trials=3)

    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        trial.suggest_categorical("op", ["a", "b", None])
        trial.suggest_int("n", 1, 9, log=True)
        trial.set_user_attr("result", {"scores": {"x": x}, "nested": [1, 2]})
        trial.report(float("inf") if x > 0.5 else x, 0)
        trial.report(float("nan"), 1)
        if x < -0.5:
            raise ValueError("failed on purpose")
        return float("-inf") if x > 0.8 else x * x

    study.optimize(objective, n_trials=25, catch=(ValueError,))
    study.enqueue_trial({"x": 0.0})
    study.ask()  # one RUNNING trial with a system attribute
    fast = read_sqlite_trials(url, "fast") + read_sqlite_trials(url, "pareto")
    slow = optuna.load_study(study_name="fast", storage=url).get_trials(deepcopy=False) + optuna.load_study(
        study_name="pareto", storage=url
    ).get_trials(deepcopy=False)
    assert len(fast) == len(slow) == 29

    def same(a, b):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))

    for a, b in zip(fast, slow):
        for key, value in vars(b).items():
            mine = vars(a)[key]
            if isinstance(value, dict):
                assert list(mine) == list(value) and all(same(mine[k], value[k]) for k in value), key
            else:
                assert same(mine, value), key
    assert read_sqlite_trials(url, "absent") is None
    assert read_sqlite_trials("postgresql://nowhere/db", "fast") is None


def test_study_overviews_count_in_sql_and_agree_with_optuna(tmp_path):
    from automl.records import study_overviews

    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        if x < -0.6:
            raise ValueError("failed on purpose")
        if x > 0.7:
            raise optuna.TrialPruned()
        return x, x * x

    sqlite_url = f"sqlite:///{tmp_path / 'overview.db'}"
    journal = str(tmp_path / "overview.log")
    overviews = {}
    for url in (sqlite_url, journal):
        storage = open_storage(url)
        pareto = optuna.create_study(
            study_name="pareto",
            storage=storage,
            directions=["maximize", "minimize"],
            sampler=optuna.samplers.RandomSampler(seed=1),
        )
        pareto.optimize(objective, n_trials=30, catch=(ValueError,))
        pareto.ask()  # one RUNNING trial
        single = optuna.create_study(
            study_name="single", storage=storage, sampler=optuna.samplers.RandomSampler(seed=2)
        )
        single.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=5)
        optuna.create_study(study_name="empty", storage=storage)
        overviews[url] = study_overviews(url)
        states = [t.state.name for t in pareto.trials]
        by_name = {o.name: o for o in overviews[url]}
        assert [o.name for o in overviews[url]] == ["empty", "pareto", "single"]
        assert by_name["pareto"].counts["FAIL"] == states.count("FAIL") > 0
        assert by_name["pareto"].counts["PRUNED"] == states.count("PRUNED") > 0
        assert by_name["pareto"].counts["RUNNING"] == 1
        assert by_name["pareto"].front_size == len(pareto.best_trials) > 1
        assert by_name["single"].best_value == single.best_value
        assert by_name["single"].last_activity == max(t.datetime_complete for t in single.trials)
        assert by_name["empty"].best_text(str) == "-" and by_name["empty"].last_activity is None
    # The SQL counts (SQLite) and the trial-by-trial counts (journal) agree on the same searches.
    assert [(o.counts, o.front_size) for o in overviews[sqlite_url]] == [
        (o.counts, o.front_size) for o in overviews[journal]
    ]
