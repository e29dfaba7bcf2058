"""The studies screen: every study in the storage with its counts, best value and last activity."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from automl_tui.data import StudySummary, study_summaries

COLUMNS = ("study", "space", "evaluator", "done", "run", "fail", "pruned", "best", "last activity")


class StudiesScreen(Screen):
    """Lists the storage's studies; ``enter`` opens one."""

    BINDINGS = [Binding("r", "reload", "Refresh"), Binding("enter", "open", "Open", show=True)]

    class Loaded(Message):
        """The worker read the storage (``error`` when it could not)."""

        def __init__(self, rows: list[StudySummary], error: str = "") -> None:
            super().__init__()
            self.rows = rows
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        # Set once a read is on screen: tests (and anything else) wait on it instead of polling.
        self.loaded = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="studies", cursor_type="row", zebra_stripes=True)
        yield Static("reading the storage...", id="studies-status", classes="status")
        yield Footer()

    def on_mount(self) -> None:
        # The first read comes from on_screen_resume, which also runs when the screen is first shown.
        self.set_interval(self.app.refresh_interval * 2, self.load)

    def on_screen_resume(self) -> None:
        """Shown (first time, or back from a study): read the storage again."""
        self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="studies")
    def load(self) -> None:
        try:
            rows = study_summaries(self.app.opened_storage(self.app.storage))
        except Exception as err:  # noqa: BLE001 - a storage that cannot be read is shown, not raised
            self.post_message(self.Loaded([], str(err)))
            return
        self.post_message(self.Loaded(rows))

    def on_studies_screen_loaded(self, message: Loaded) -> None:
        self.loads += 1
        status = self.query_one("#studies-status", Static)
        if message.error:
            status.update(f"[b red]error:[/] {message.error}")
            self.loaded.set()
            return
        table = self.query_one(DataTable)
        selected = self._selected()
        cells = [
            [
                row.name,
                row.space,
                row.evaluator,
                row.complete,
                row.running,
                row.failed,
                row.pruned,
                row.best,
                row.last_activity,
            ]
            for row in message.rows
        ]
        # Columns as wide as their widest cell, set before the rows arrive: a table that measures its
        # columns later (when idle) can keep showing lines drawn at the header's width.
        widths = [max([len(name)] + [len(str(line[i])) for line in cells]) for i, name in enumerate(COLUMNS)]
        table.clear(columns=True)
        for name, width in zip(COLUMNS, widths):
            table.add_column(name, key=name, width=width)
        for row, line in zip(message.rows, cells):
            table.add_row(*line, key=row.name)
        if selected in {r.name for r in message.rows}:
            table.move_cursor(row=table.get_row_index(selected))
        status.update(
            f"{len(message.rows)} studies in {self.app.storage}"
            if message.rows
            else f"no studies in {self.app.storage} — press n to start a search"
        )
        self.loaded.set()

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowSelected, "#studies")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.open(event.row_key.value)

    def action_open(self) -> None:
        name = self._selected()
        if name:
            self.open(name)

    def open(self, name: str) -> None:
        from automl_tui.screens.study import StudyScreen

        self.app.push_screen(StudyScreen(name, self.app.storage))
