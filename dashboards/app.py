"""The dashboard application: a thin App that opens the studies screen."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from automl.storage import storage_url
from automl_tui.screens.help import HelpScreen
from automl_tui.screens.new_search import NewSearchScreen
from automl_tui.screens.studies import StudiesScreen


class AutomlApp(App):
    """``automl tui``: browse the studies in one storage, watch them and start new searches."""

    CSS_PATH = "app.tcss"
    TITLE = "automl"
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("n", "new_search", "New search"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, storage: str | None = None, *, refresh_interval: float = 2.0,
                 search_folder: str = "search_spaces") -> None:
        super().__init__()
        self.storage = storage_url(storage)
        self.refresh_interval = refresh_interval
        self.search_folder = search_folder
        self.sub_title = self.storage

    def on_mount(self) -> None:
        self.push_screen(StudiesScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_search(self) -> None:
        if not isinstance(self.screen, NewSearchScreen):
            self.push_screen(NewSearchScreen())
