"""The terminal dashboard driven through Textual's pilot on a study seeded by a real search."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl.runner import StudyRunner
from automl.space import SearchSpace

STUDY = "t"
FIXED_START = dt.datetime(2026, 1, 2, 3, 4, 5)


@functools.lru_cache(maxsize=1)
def _real_study(cache_dir: str) -> optuna.Study:
    """Six trials of a real two-objective search on tiny NB201 cells (run once per test session)."""
    space_dict = {
        "study": {"name": STUDY, "n_trials": 6, "seed": 0, "sampler": "random"},
        "task": {"name": "digits", "batch_size": 16, "image_size": 16},
        "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
        "evaluator": {"name": "proxies", "proxies": ["synflow", "params"]},
        "objectives": [{"metric": "synflow", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}],
    }
    runner = StudyRunner(
        SearchSpace.from_dict(space_dict, source="tiny.toml"),
        storage=":memory:",
        cache=str(Path(cache_dir) / "cache.db"),
    )
    runner.run(6)
    return runner.study


@pytest.fixture
def real_trials(tmp_path_factory):
    return _real_study(str(tmp_path_factory.getbasetemp()))


def _fixed(trial: optuna.trial.FrozenTrial, i: int, state: TrialState | None = None) -> optuna.trial.FrozenTrial:
    """The trial with fixed timestamps and duration, so screens render the same on every run."""
    trial = copy.deepcopy(trial)
    trial.datetime_start = FIXED_START + dt.timedelta(minutes=i)
    trial.datetime_complete = trial.datetime_start + dt.timedelta(seconds=1)
    result = dict(trial.user_attrs.get("result", {}))
    result["duration_s"] = 1.0
    trial.set_user_attr("result", result)
    if state == TrialState.FAIL:
        trial.state, trial.values = TrialState.FAIL, None
        trial.set_user_attr("failure", "TrialFailed: synflow diverged")
    return trial


@pytest.fixture
def seeded(storage, real_trials):
    """A SQLite storage holding the real trials (the last one failed) with fixed times; returns the URL."""
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=["maximize", "minimize"])
    for key, value in real_trials.user_attrs.items():
        study.set_user_attr(key, value)
    trials = real_trials.get_trials()
    study.add_trials([_fixed(t, i, TrialState.FAIL if i == len(trials) - 1 else None) for i, t in enumerate(trials)])
    return storage


async def _wait(event: asyncio.Event, timeout: float = 60.0) -> None:
    """Wait for a screen's event, failing the test (not hanging it) if it never comes."""
    await asyncio.wait_for(event.wait(), timeout)


async def _open_study(app, pilot, storage):
    from automl_tui.screens.study import StudyScreen

    screen = StudyScreen(STUDY, storage)
    await app.push_screen(screen)
    await _wait(screen.loaded)
    await pilot.pause()
    return screen


async def test_studies_screen_lists_the_seeded_study_and_opens_it(seeded):
    from textual.widgets import DataTable

    from automl_tui.app import AutomlApp
    from automl_tui.screens.studies import StudiesScreen
    from automl_tui.screens.study import StudyScreen

    app = AutomlApp(storage=seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, StudiesScreen)
        await _wait(screen.loaded)
        table = screen.query_one(DataTable)
        row = table.get_row_at(0)
        assert row[:7] == [STUDY, "tiny.toml", "proxies", 5, 0, 1, 0]
        assert row[7] == "5 on front" or row[7].endswith("on front")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StudyScreen)
        await _wait(app.screen.loaded)
        assert app.screen.table_rows() == 6


async def test_study_screen_sorts_filters_and_opens_a_trial(seeded):
    from textual.widgets import DataTable

    from automl_tui.app import AutomlApp
    from automl_tui.screens.trial import TrialScreen

    app = AutomlApp(storage=seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_study(app, pilot, seeded)
        records = screen.trials.records
        assert screen.row_numbers() == [0, 1, 2, 3, 4, 5]
        table = screen.query_one("#trials", DataTable)
        table.focus()
        table.move_cursor(column=list(table.columns).index("value.synflow"))
        await pilot.press("s")
        synflow = [records[n].get("value.synflow") for n in screen.row_numbers()]
        assert synflow[:5] == sorted(synflow[:5]) and synflow[5] is None  # the failed trial sorts last
        await pilot.press("s")
        descending = [records[n].get("value.synflow") for n in screen.row_numbers()]
        assert descending[5] is None
        descending = descending[:5]
        assert descending == sorted(descending, reverse=True)

        await pilot.press("f")  # complete only
        assert screen.state_filter == "COMPLETE" and screen.table_rows() == 5
        await pilot.press("f", "f")  # running (none), then failed
        assert screen.state_filter == "FAIL" and screen.row_numbers() == [5]

        await pilot.press("enter")
        await pilot.pause()
        trial_screen = app.screen
        assert isinstance(trial_screen, TrialScreen) and trial_screen.number == 5
        assert "diverged" in app.export_screenshot()  # the failure reason is on screen
        await trial_screen.workers.wait_for_complete()
        await pilot.pause()
        assert "node 3 (output)" in trial_screen.drawing  # the NB201 cell graph, drawn through the space
        await pilot.press("escape")
        assert app.screen is screen


async def test_study_screen_charts_importances_and_proxies(seeded):
    from textual.widgets import Static, TabbedContent

    from automl_tui.app import AutomlApp

    app = AutomlApp(storage=seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_study(app, pilot, seeded)
        assert "5 complete" in str(screen.query_one("#study-summary", Static).render())
        await pilot.press("i")
        await _wait(screen.importances_shown)
        assert screen.query_one(TabbedContent).active == "tab-importance"
        assert "over 5 completed trials" in str(screen.query_one("#importance-status", Static).render())
        # Only proxies here (no benchmark or training truth): the tab says what is missing.
        screen.query_one(TabbedContent).active = "tab-proxies"
        await pilot.pause()
        assert "true metrics: none" in str(screen.query_one("#proxies-status", Static).render())


async def test_study_screen_shows_new_trials_on_refresh(seeded, real_trials):
    from automl_tui.app import AutomlApp

    app = AutomlApp(storage=seeded, refresh_interval=60)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_study(app, pilot, seeded)
        study = optuna.load_study(study_name=STUDY, storage=seeded)
        study.add_trial(_fixed(real_trials.trials[0], 10))
        running = study.ask()
        screen.updated.clear()
        screen.refresh_trials()
        await _wait(screen.updated)
        assert screen.row_numbers() == [0, 1, 2, 3, 4, 5, 6, 7]
        assert screen.trials.records[7]["state"] == "RUNNING"
        study.tell(running, [1.0, 2.0])
        screen.updated.clear()
        screen.refresh_trials()
        await _wait(screen.updated)
        assert screen.trials.records[7]["state"] == "COMPLETE"
        assert str(screen.query_one("#trials").get_row("7")[1]) == "COMPLETE"


def _write_space(path: Path, trials: int, evaluator: str = "proxies") -> Path:
    path.write_text(
        textwrap.dedent(f"""
        [study]
        name = "live"
        n_trials = {trials}
        seed = 0
        sampler = "random"

        [task]
        name = "digits"
        batch_size = 16
        image_size = 16

        [[dimensions]]
        name = "nb201"
        channels = 4
        cells_per_stage = 1

        [evaluator]
        name = "{evaluator}"
        proxies = ["params"]

        [[objectives]]
        metric = "params"
        direction = "minimize"
    """)
    )
    return path


async def _until(screen, event_name: str, condition, timeout: float = 120.0) -> None:
    """Wait for the screen's worker messages (not for time) until ``condition()`` holds."""
    event = getattr(screen, event_name)

    async def wait():
        while not condition():
            event.clear()
            await event.wait()

    await asyncio.wait_for(wait(), timeout)


async def test_new_search_starts_shows_stops_and_resumes_a_real_search(tmp_path, storage, monkeypatch):
    # The child's networks are tiny: one thread is fastest on few cores.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from textual.widgets import DataTable, Input, Static

    from automl_tui.app import AutomlApp
    from automl_tui.screens.new_search import NewSearchScreen

    space = _write_space(tmp_path / "live.toml", trials=500)
    app = AutomlApp(storage=storage, refresh_interval=0.4)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, NewSearchScreen)
        screen.query_one("#space-path", Input).value = str(space)
        screen.query_one("#search-budget", Input).value = "500"
        await pilot.press("ctrl+s")
        await _wait(screen.validated)
        assert screen.error == "" and screen.search.running
        table = screen.query_one("#search-trials", DataTable)

        def completed() -> int:
            return 0 if screen.watched is None else screen.watched.counts()["COMPLETE"]

        await _until(screen, "progressed", lambda: completed() >= 1)
        assert table.row_count >= 1 and "COMPLETE" in [table.get_row_at(i)[1] for i in range(table.row_count)]
        await pilot.press("ctrl+x")
        await _until(
            screen,
            "progressed",
            lambda: not screen.search.running and "stopped" in str(screen.query_one("#search-status", Static).render()),
        )
        stopped_at = optuna.load_study(study_name="live", storage=storage)
        finished = len(stopped_at.get_trials(states=(TrialState.COMPLETE,)))
        assert finished >= 1

        process = screen.search
        await pilot.press("ctrl+s")  # resume: the same request runs again (automl run continues the study)
        await _wait(screen.validated)
        assert screen.search is process and process.running and "--trials" in process.command()
        await pilot.press("ctrl+x")
        await _until(screen, "progressed", lambda: not screen.search.running)
        assert optuna.load_study(study_name="live", storage=storage).user_attrs["automl.space"]["source"]


async def test_new_search_shows_a_bad_files_error(tmp_path, storage):
    from textual.widgets import Input, Static

    from automl_tui.app import AutomlApp

    space = _write_space(tmp_path / "bad.toml", trials=2, evaluator="no-such-evaluator")
    app = AutomlApp(storage=storage)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#space-path", Input).value = str(space)
        await pilot.press("ctrl+s")
        await _wait(screen.validated)
        await pilot.pause()
        shown = str(screen.query_one("#search-error", Static).render())
        assert "no-such-evaluator" in shown and "bad.toml" in shown
        assert screen.search is None
        screen.query_one("#space-path", Input).value = str(tmp_path / "missing.toml")
        await pilot.press("ctrl+s")
        await _wait(screen.validated)
        await pilot.pause()
        assert "no such file" in str(screen.query_one("#search-error", Static).render())


async def test_help_screen_opens_and_closes(storage):
    from automl_tui.app import AutomlApp
    from automl_tui.screens.help import HelpScreen

    app = AutomlApp(storage=storage)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_core_and_cli_do_not_load_textual():
    code = (
        "import sys, automl, automl.runner, automl.cli; automl.cli.build_parser(['tui']); "
        "assert 'automl_tui.plugin' in sys.modules, 'tui command not registered'; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext')); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tui_command_is_registered():
    from automl.cli import build_parser

    args = build_parser(["tui"]).parse_args(["tui", "--storage", "sqlite:///x.db"])
    assert args.storage == "sqlite:///x.db"


async def test_columns_can_be_hidden_and_shown(seeded):
    from textual.widgets import DataTable, SelectionList

    from automl_tui.app import AutomlApp
    from automl_tui.screens.columns import ColumnsScreen

    app = AutomlApp(storage=seeded, refresh_interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_study(app, pilot, seeded)
        table = screen.query_one("#trials", DataTable)
        assert "arch" in [c.value for c in table.columns] and "duration_s" not in screen.shown_columns
        await pilot.press("c")
        chooser = app.screen
        assert isinstance(chooser, ColumnsScreen)
        options = chooser.query_one(SelectionList)
        options.deselect("arch")
        options.select("duration_s")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        shown = [c.value for c in table.columns]
        assert "arch" not in shown and "duration_s" in shown
        assert str(table.get_row("0")[shown.index("duration_s")]) == "1"
