"""The dashboard application: a thin App that opens the studies screen."""

from __future__ import annotations

import gc
import threading

import optuna
from textual.app import App
from textual.binding import Binding

from automl.storage import open_storage, storage_url
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

    def __init__(
        self,
        storage: str | None = None,
        *,
        refresh_interval: float = 2.0,
        search_folder: str = "search_spaces",
        freeze_heap: bool = False,
    ) -> None:
        super().__init__()
        self.storage = storage_url(storage)
        self.refresh_interval = refresh_interval
        self.search_folder = search_folder
        self.sub_title = self.storage
        self.freeze_heap = freeze_heap
        self._opened: dict[str, optuna.storages.BaseStorage] = {}
        self._opening = threading.Lock()

    def opened_storage(self, url: str | optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
        """One open storage per URL for the app's screens and workers (opening one costs ~0.2 s)."""
        if not isinstance(url, str):
            return url
        with self._opening:
            if url not in self._opened:
                self._opened[url] = open_storage(url)
            return self._opened[url]

    def on_mount(self) -> None:
        if self.freeze_heap:
            # The hundreds of thousands of objects alive now (modules, the app) live as long as the
            # process: keep them out of every later garbage collection, which would otherwise scan them
            # each time a study's trials are read (a quarter of a second per full collection).
            gc.freeze()
        self.push_screen(StudiesScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_search(self) -> None:
        if not isinstance(self.screen, NewSearchScreen):
            self.push_screen(NewSearchScreen())
