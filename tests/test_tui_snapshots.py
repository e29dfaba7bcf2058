"""SVG snapshots of the dashboard's main screens on a seeded study with fixed data (80x24)."""

from __future__ import annotations

import pytest
import test_tui
from test_tui import STUDY, _wait

# The pilot tests' fixtures, shared.
real_trials = test_tui.real_trials
seeded = test_tui.seeded

SIZE = (80, 24)


@pytest.fixture
def storage():
    """A relative URL (tests run in their own folder) so the storage shown on screen never varies."""
    return "sqlite:///studies.db"


def _app(storage):
    from automl_tui.app import AutomlApp

    # A long refresh interval: the snapshot is taken after the first read, never mid-refresh.
    return AutomlApp(storage=storage, refresh_interval=3600)


async def _study(pilot, tab: str = "tab-trials"):
    from textual.widgets import TabbedContent

    from automl_tui.screens.study import StudyScreen

    screen = StudyScreen(STUDY, pilot.app.storage)
    await pilot.app.push_screen(screen)
    await _wait(screen.loaded)
    screen.query_one(TabbedContent).active = tab
    await pilot.pause()
    return screen


async def _studies_loaded(pilot):
    """Wait until the studies screen has read the storage and drawn its table."""
    await _wait(pilot.app.screen.loaded)
    await pilot.app.workers.wait_for_complete()
    # The table lays out when the app is next idle: wait for that (and any scheduled animation).
    await pilot.wait_for_scheduled_animations()


def test_studies_screen(snap_compare, seeded):
    assert snap_compare(_app(seeded), terminal_size=SIZE, run_before=_studies_loaded)


def test_study_screen_trials(snap_compare, seeded):
    assert snap_compare(_app(seeded), terminal_size=SIZE, run_before=_study)


def test_study_screen_history(snap_compare, seeded):
    async def history(pilot):
        await _study(pilot, "tab-history")

    assert snap_compare(_app(seeded), terminal_size=SIZE, run_before=history)


def test_study_screen_pareto(snap_compare, seeded):
    async def pareto(pilot):
        await _study(pilot, "tab-pareto")

    assert snap_compare(_app(seeded), terminal_size=SIZE, run_before=pareto)


def test_trial_screen(snap_compare, seeded):
    async def trial(pilot):
        from textual.widgets import DataTable

        screen = await _study(pilot)
        screen.query_one("#trials", DataTable).focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        await pilot.app.screen.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(_app(seeded), terminal_size=SIZE, run_before=trial)


def test_help_screen(snap_compare, seeded):
    async def help_over_studies(pilot):
        # The studies behind the help screen load in a worker: wait for them so the backdrop is fixed.
        await _studies_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(_app(seeded), terminal_size=SIZE, run_before=help_over_studies)
