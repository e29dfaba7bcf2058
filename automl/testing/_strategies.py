"""The strategy contract: a run of n adds at most n trials; a re-run resumes the same study within its budget."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest
from optuna.trial import TrialState

from automl.runner import StudyRunner
from automl.space import SearchSpace
from automl.strategies import Strategy
from automl.testing._common import (
    ContractError,
    PluginContract,
    configured,
    example_settings,
    plugin_space,
    require,
    table_of,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def strategy_space(cls: type[Strategy], settings: Mapping[str, Any] | None = None, n_trials: int = 4) -> SearchSpace:
    """The class's ``example_space``, or tiny NB201 cells on digits scored by ``synflow`` and ``params``, with
    the strategy (``settings``, default its ``example``); the objective is its first metric (an oracle's)."""
    if getattr(cls, "example_space", None) is not None:
        return plugin_space(cls, "strategy", settings, {})
    require("evaluators", "proxies")
    require("proxies", "synflow")
    metrics = configured(cls, settings).metrics()
    return plugin_space(
        cls,
        "strategy",
        settings,
        {
            "study": {"name": "contract", "n_trials": n_trials, "seed": 0, "sampler": "random"},
            "task": table_of("tasks", "digits"),
            "dimensions": [table_of("dimensions", "nb201")],
            "evaluator": {"name": "proxies", "proxies": ["synflow", "params"]},
            "objectives": [{"metric": metrics[0] if metrics else "synflow"}],
            "strategy": {"name": cls.name, **example_settings(cls, settings)},
        },
    )


def _trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False)


def _finished(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in _trials(study))


def check_left_nothing_running(name: str, study: optuna.Study) -> None:
    running = [t.number for t in _trials(study) if t.state not in FINISHED]
    if running:
        raise ContractError(f"strategy {name!r} left trials {running} unfinished (tell every trial it asks)")


def check_budget(space: SearchSpace, storage: str, n: int) -> optuna.Study:
    """``StudyRunner(...).run(n)`` adds at most ``n`` finished trials and leaves none running; returns the study."""
    runner = StudyRunner(space, storage=storage, cache=False, device="cpu")
    before = _finished(runner.study)
    runner.run(n)
    after = _finished(runner.study)
    name = space.strategy.name if space.strategy else "<none>"
    if after - before > n:
        raise ContractError(f"strategy {name!r} recorded {after - before} new trials in a run of {n}")
    check_left_nothing_running(name, runner.study)
    return runner.study


def check_resumes(space: SearchSpace, storage: str, first: int = 2) -> None:
    """A run of ``first`` trials, then two full runs from fresh runners: the study keeps its trials, continues
    (when budget is left) and never goes past ``n_trials``."""
    name = space.strategy.name if space.strategy else "<none>"
    study = check_budget(space, storage, first)
    done = _finished(study)
    kept = [(t.number, t.params) for t in _trials(study)]
    for attempt in ("second", "third"):
        runner = StudyRunner(space, storage=storage, cache=False, device="cpu")
        runner.run()
        now = _finished(runner.study)
        check_left_nothing_running(name, runner.study)
        if now > space.study.n_trials:
            raise ContractError(
                f"strategy {name!r}: after a {attempt} run the study has {now} finished trials, past its "
                f"n_trials = {space.study.n_trials}"
            )
        present = [(t.number, t.params) for t in _trials(runner.study)][: len(kept)]
        if present != kept:
            raise ContractError(f"strategy {name!r}: a {attempt} run changed the trials the study already had")
        if attempt == "second" and done < space.study.n_trials and now <= done:
            raise ContractError(
                f"strategy {name!r}: a re-run added nothing to a study with {done} of {space.study.n_trials} "
                f"trials; it must continue where the last run stopped"
            )
        done = now


class StrategyContract(PluginContract):
    """Contract suite for a strategy (``automl.Strategy``): subclass it and set ``strategy``.

    The space is the class's ``example_space`` (a full search-space table with this ``[strategy]``) or
    tiny NB201 cells on digits scored by synflow and params, with ``n_trials = 4`` and the strategy
    configured by ``settings`` (default: the class's ``example``). A run of n records at most n new
    finished trials and leaves none running; re-runs from fresh runners continue the same study, keep
    its trials and never exceed ``n_trials``. Each test uses its own SQLite storage.
    """

    plugin_attribute: ClassVar[str] = "strategy"
    strategy: ClassVar[type[Strategy] | None] = None

    @pytest.fixture(scope="class")
    def space(self, plugin_class: type[Strategy]) -> SearchSpace:
        return strategy_space(plugin_class, self.settings)

    def test_a_run_of_n_adds_at_most_n_trials(self, space: SearchSpace, tmp_path: Path) -> None:
        storage = f"sqlite:///{tmp_path / 'contract.db'}"
        check_budget(space, storage, 1)
        check_budget(space, storage, 2)

    def test_a_rerun_resumes_within_the_budget(self, space: SearchSpace, tmp_path: Path) -> None:
        check_resumes(space, f"sqlite:///{tmp_path / 'resume.db'}")
