"""The new-search screen: pick a file, storage, budget and seed; start, stop and resume a search."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from automl.errors import AutomlError
from automl.record import TrialRecord
from automl_tui.data import StudyTrials, format_value
from automl_tui.search_process import SearchProcess, SearchRequest, search_files, validate_request


class NewSearchScreen(Screen):
    """Start ``automl run`` in the background and watch its trials arrive."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+s", "start", "Start/resume"),
        Binding("ctrl+x", "stop", "Stop"),
        Binding("ctrl+o", "open_study", "Open study"),
    ]

    class Validated(Message):
        """The worker checked the form: ``study`` on success, ``error`` otherwise."""

        def __init__(self, request: SearchRequest, study: str = "", error: str = "") -> None:
            super().__init__()
            self.request = request
            self.study = study
            self.error = error

    class Progress(Message):
        """The watcher read the study's trials; ``finished`` once the process has exited."""

        def __init__(self, rows: list[tuple], counts: dict[str, int], finished: bool, output: str) -> None:
            super().__init__()
            self.rows = rows
            self.counts = counts
            self.finished = finished
            self.output = output

    def __init__(self) -> None:
        super().__init__()
        self.search: SearchProcess | None = None
        self.study_name = ""
        self.watched: StudyTrials | None = None
        self.progressed = asyncio.Event()
        self.validated = asyncio.Event()
        self.error = ""

    def compose(self) -> ComposeResult:
        files = search_files(self.app.search_folder)
        yield Header()
        with VerticalScroll(id="search-form"):
            with Horizontal(classes="field"):
                yield Label("space file", classes="field-label")
                yield Select(
                    [(f, f) for f in files], prompt="pick a file under search_spaces/", id="space-select", compact=True
                )
            with Horizontal(classes="field"):
                yield Label("or path", classes="field-label")
                yield Input(placeholder="path/to/space.toml", id="space-path", compact=True)
            with Horizontal(classes="field"):
                yield Label("storage", classes="field-label")
                yield Input(self.app.storage, id="storage", compact=True)
            with Horizontal(classes="field"):
                yield Label("trials", classes="field-label")
                yield Input("10", id="search-budget", type="integer", compact=True)
                yield Label("seed", classes="field-label-short")
                yield Input("", placeholder="file's", id="search-seed", type="integer", compact=True)
            with Horizontal(id="search-buttons"):
                yield Button("Start / resume", id="start", variant="primary", compact=True)
                yield Button("Stop", id="stop", variant="error", disabled=True, compact=True)
                yield Button("Open study", id="open", disabled=True, compact=True)
            yield Static("", id="search-error", classes="error")
            yield Static("", id="search-status", classes="status")
            with Vertical(id="search-trials-box"):
                yield DataTable(id="search-trials", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "new search"
        self.query_one("#search-trials", DataTable).add_columns("#", "state", "value", "arch")

    def on_unmount(self) -> None:
        if self.search is not None:
            self.search.close()

    # -- the form ----------------------------------------------------------------------------------
    def request(self) -> SearchRequest:
        path = self.query_one("#space-path", Input).value.strip()
        selected = self.query_one("#space-select", Select).value
        space_file = path or (selected if isinstance(selected, str) else "")
        trials_text = self.query_one("#search-budget", Input).value.strip()
        seed_text = self.query_one("#search-seed", Input).value.strip()
        return SearchRequest(
            space_file=space_file,
            storage=self.query_one("#storage", Input).value.strip(),
            trials=int(trials_text) if trials_text.lstrip("-").isdigit() else 0,
            seed=int(seed_text) if seed_text.lstrip("-").isdigit() else None,
        )

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if self.search is not None and self.search.running:
            return
        self.validated.clear()
        self.query_one("#search-error", Static).update("")
        self.query_one("#search-status", Static).update("checking the search-space file...")
        self._validate(self.request())

    @work(thread=True, exclusive=True, group="validate")
    def _validate(self, request: SearchRequest) -> None:
        try:
            study = validate_request(request)
        except AutomlError as err:
            self.post_message(self.Validated(request, error=str(err)))
            return
        except Exception as err:  # noqa: BLE001 - a broken file must show its reason, not crash the app
            self.post_message(self.Validated(request, error=f"{type(err).__name__}: {err}"))
            return
        self.post_message(self.Validated(request, study=study))

    def on_new_search_screen_validated(self, message: Validated) -> None:
        self.error = message.error
        if message.error:
            self.query_one("#search-error", Static).update(f"[b]error:[/] {message.error}")
            self.query_one("#search-status", Static).update("not started")
            self.validated.set()
            return
        if self.search is None or self.search.request != message.request:
            if self.search is not None:
                self.search.close()
            self.search = SearchProcess(message.request)
        self.study_name = message.study
        self.watched = None
        self.search.start()
        self.progressed.clear()
        self.query_one("#stop", Button).disabled = False
        self.query_one("#open", Button).disabled = False
        self.query_one("#search-status", Static).update(
            f"running study {self.study_name!r}: {message.request.trials} trials into {message.request.storage}"
        )
        self.validated.set()
        self._watch()

    @on(Button.Pressed, "#stop")
    def action_stop(self) -> None:
        if self.search is not None and self.search.running:
            self.query_one("#search-status", Static).update("stopping...")
            self._stop()

    @work(thread=True, exclusive=True, group="stop")
    def _stop(self) -> None:
        assert self.search is not None
        self.search.stop()

    @on(Button.Pressed, "#open")
    def action_open_study(self) -> None:
        if self.study_name:
            from automl_tui.screens.study import StudyScreen

            self.app.push_screen(
                StudyScreen(self.study_name, self.search.request.storage if self.search else self.app.storage)
            )

    # -- watching ----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="watch")
    def _watch(self) -> None:
        """Poll the study while the process runs; the last message has ``finished`` set."""
        import time

        search = self.search
        assert search is not None
        while True:
            finished = not search.running
            try:
                if self.watched is None:
                    self.watched = StudyTrials(self.study_name, search.request.storage)
                self.watched.refresh()
                rows = [
                    (
                        t.number,
                        t.state.name,
                        format_value(t.values[0]) if t.values else "-",
                        TrialRecord.read(t).candidate.arch or "-",
                    )
                    for t in self.watched.trials[-200:]
                ]
                counts = self.watched.counts()
            except AutomlError:
                # The child has not created the study yet.
                rows, counts = [], {}
            self.post_message(self.Progress(rows, counts, finished, search.output()))
            if finished:
                return
            time.sleep(self.app.refresh_interval / 4)

    def on_new_search_screen_progress(self, message: Progress) -> None:
        table = self.query_one("#search-trials", DataTable)
        table.clear()
        for row in reversed(message.rows):
            table.add_row(*row)
        counts = message.counts
        done = (
            f"{counts.get('COMPLETE', 0)} complete, {counts.get('RUNNING', 0)} running, {counts.get('FAIL', 0)} failed"
            if counts
            else "waiting for the first trial"
        )
        status = self.query_one("#search-status", Static)
        if message.finished:
            assert self.search is not None
            code = self.search.returncode
            # A search told to stop ends its trial as interrupted and exits 128 + the signal (SIGTERM: 143).
            stopped = code is not None and (code < 0 or code in (129, 130, 143))
            how = "finished" if code == 0 else "stopped" if stopped else f"exited with code {code}"
            status.update(f"study {self.study_name!r} {how}: {done} — ctrl+s resumes")
            self.query_one("#stop", Button).disabled = True
            if code not in (0, None) and code > 0:
                self.query_one("#search-error", Static).update(message.output.strip()[-800:])
        else:
            status.update(f"study {self.study_name!r} running: {done}")
        self.progressed.set()
