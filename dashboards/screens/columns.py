"""Choose which trial-table columns the study screen shows."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, SelectionList


class ColumnsScreen(ModalScreen[list[str] | None]):
    """A checklist of every column; ``enter``/``escape`` closes it with the chosen columns."""

    BINDINGS = [Binding("escape", "done", "Done"), Binding("enter", "done", "Done", show=False)]

    def __init__(self, columns: list[str], visible: list[str]) -> None:
        super().__init__()
        self.all_columns = columns
        self.shown_columns = visible

    def compose(self) -> ComposeResult:
        with Vertical(id="columns-box"):
            yield Label("Columns (space toggles, escape closes)")
            choices = [(c, c, c in self.shown_columns) for c in self.all_columns]
            yield SelectionList[str](*choices, id="columns")

    def action_done(self) -> None:
        chosen = set(self.query_one(SelectionList).selected)
        self.dismiss([c for c in self.all_columns if c in chosen])
