"""The help screen: what each key does on each screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# automl dashboard

**Everywhere**: `?` this help · `n` new search · `q` quit · `escape` back

## Studies
`enter` open the study under the cursor · `r` refresh now

## Study
`tab` / `shift+tab` move between the table and the chart tabs ·
`enter` open the trial under the cursor ·
`s` sort by the column under the cursor (again: reverse) ·
`f` filter by state (all, complete, running, failed, pruned) ·
`c` choose the columns shown · `[` / `]` previous / next page of 200 trials ·
`i` compute parameter importances · `r` refresh now

## Trial
All values, scores, costs, the failure reason and the architecture drawn as text.

## New search
Pick a file under `search_spaces/` or type a path, the storage, the number of trials and the seed.
`ctrl+s` start (or resume: running the same file again continues its study) · `ctrl+x` stop ·
`ctrl+o` open the study. Errors in the file are shown under the form.

The tables refresh every few seconds while a search runs.
"""


class HelpScreen(ModalScreen[None]):
    """Key bindings of every screen."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP)
