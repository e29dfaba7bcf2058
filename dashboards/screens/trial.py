"""The trial screen: every value, score, cost, the failure reason and the architecture drawn as text."""

from __future__ import annotations

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from automl_tui.data import StudyTrials, architecture_drawing, trial_sections


class TrialScreen(Screen):
    """One trial of a study."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    class Drawn(Message):
        """The worker drew the architecture."""

        def __init__(self, drawing: str) -> None:
            super().__init__()
            self.drawing = drawing

    def __init__(self, trials: StudyTrials, number: int) -> None:
        super().__init__()
        self.trials = trials
        self.number = number
        self.drawing = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="trial-body"):
            yield Static("[reverse] architecture [/]")
            yield Static("drawing...", id="trial-arch")
            yield Static(self._values(), id="trial-values", classes="section")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.trials.study_name} · trial {self.number}"
        self._draw()

    def _values(self) -> Table:
        record = self.trials.records[self.number]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        for title, rows in trial_sections(record):
            grid.add_row(f"[reverse] {title} [/]", "")
            for name, text in rows:
                grid.add_row(name, text)
        return grid

    @work(thread=True, exclusive=True)
    def _draw(self) -> None:
        # Rebuilding the candidate loads the plugins and builds the architecture: not on the UI thread.
        drawing = architecture_drawing(self.trials.study, self.trials.trials[self.number])
        self.post_message(self.Drawn(drawing))

    def on_trial_screen_drawn(self, message: Drawn) -> None:
        self.drawing = message.drawing
        self.query_one("#trial-arch", Static).update(message.drawing)
