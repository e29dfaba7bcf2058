"""The study screen: the live trial table, best-so-far history, Pareto front, importances, proxy check."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from automl_tui.data import (
    Correlation,
    Importances,
    Refresh,
    StudyTrials,
    best_so_far,
    format_value,
    param_importances,
    pareto_points,
    proxy_correlations,
    space_proxies,
    split_scores,
)

# The table holds one page of the (filtered, sorted) trials: adding a row costs a cell measurement per
# column, so 10,000 rows would take seconds to show and to refresh.
PAGE_SIZE = 200
STATE_FILTERS = ("all", "COMPLETE", "RUNNING", "FAIL", "PRUNED")
# Columns hidden by default: identifiers and timings (they vary between runs of the same search).
HIDDEN_BY_DEFAULT = ("candidate_id", "started", "completed", "duration_s", "cached")
HIDDEN_PREFIXES = ("info.", "attr.")


def _sort_key(value: Any) -> tuple:
    """Orders None last and numbers before text, whatever the column mixes."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def _label(column: str) -> str:
    return column.removeprefix("param.")


class StudyScreen(Screen):
    """One study: ``enter`` opens a trial, ``s`` sorts, ``f`` filters by state, ``c`` picks columns."""

    # Keyboard-first: the arrows move through the trials and enter opens one as soon as the screen shows.
    AUTO_FOCUS = "#trials"

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "sort", "Sort"),
        Binding("f", "filter", "Filter"),
        Binding("c", "columns", "Columns"),
        Binding("i", "importances", "Importance"),
        Binding("r", "reload", "Refresh"),
        Binding("left_square_bracket", "page(-1)", "Prev page", show=False, key_display="["),
        Binding("right_square_bracket", "page(1)", "Next page", show=False, key_display="]"),
    ]

    state_filter: reactive[str] = reactive("all", init=False)

    class TrialsRead(Message):
        """A refresh finished reading the storage (``error`` when it failed)."""

        def __init__(self, change: Refresh | None, error: str = "") -> None:
            super().__init__()
            self.change = change
            self.error = error

    class ImportancesComputed(Message):
        def __init__(self, importances: Importances) -> None:
            super().__init__()
            self.importances = importances

    def __init__(self, study_name: str, storage: str) -> None:
        super().__init__()
        self.study_name = study_name
        self.storage = storage
        self.trials: StudyTrials | None = None
        self.proxy_names: list[str] = []
        self.shown_columns: list[str] = []
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.view: list[int] = []
        self.page = 0
        self.refreshes = 0
        self.loaded = asyncio.Event()
        self.updated = asyncio.Event()
        self.importances_shown = asyncio.Event()
        self._reading = False

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"study {self.study_name}: reading...", id="study-summary", classes="status")
        with TabbedContent(id="study-tabs"):
            with TabPane("Trials", id="tab-trials"):
                yield Static("", id="table-status", classes="status")
                yield DataTable(id="trials", cursor_type="row", zebra_stripes=True)
            with TabPane("History", id="tab-history"):
                yield PlotextPlot(id="history")
            with TabPane("Pareto", id="tab-pareto"):
                yield PlotextPlot(id="pareto")
            with TabPane("Importance", id="tab-importance"):
                yield Static(
                    "press i to compute parameter importances (fANOVA)", id="importance-status", classes="status"
                )
                yield PlotextPlot(id="importance")
            with TabPane("Proxies", id="tab-proxies"):
                yield Static("", id="proxies-status", classes="status")
                yield DataTable(id="correlations", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.study_name
        self.query_one("#correlations", DataTable).add_columns("proxy", "truth", "n", "spearman", "kendall")
        self.refresh_trials()
        self.set_interval(self.app.refresh_interval, self.refresh_trials)

    # -- reading -----------------------------------------------------------------------------------
    def refresh_trials(self) -> None:
        """Start a background read unless one is already under way."""
        if not self._reading:
            self._reading = True
            self._read()

    def action_reload(self) -> None:
        self.refresh_trials()

    @work(thread=True, exclusive=True, group="read")
    def _read(self) -> None:
        try:
            if self.trials is None:
                self.trials = StudyTrials(self.study_name, self.app.opened_storage(self.storage))
                self.proxy_names = space_proxies(self.trials.study)
            change = self.trials.refresh()
        except Exception as err:  # noqa: BLE001 - shown on the screen; the next refresh tries again
            self.post_message(self.TrialsRead(None, f"{type(err).__name__}: {err}"))
            return
        self.post_message(self.TrialsRead(change))

    def on_study_screen_trials_read(self, message: TrialsRead) -> None:
        try:
            if message.error or message.change is None:
                self.query_one("#study-summary", Static).update(f"[b red]error:[/] {message.error}")
                return
            first = not self.shown_columns
            if first:
                self.shown_columns = self._default_columns()
                self._rebuild_table()
            elif message.change.added or message.change.changed:
                self._apply(message.change)
            if first or message.change.added or message.change.changed:
                self._update_summary()
                self._draw_charts()
        finally:
            self._reading = False
            self.refreshes += 1
            self.loaded.set()
            self.updated.set()

    # -- the table ---------------------------------------------------------------------------------
    def _default_columns(self) -> list[str]:
        assert self.trials is not None
        columns = [c for c in self.trials.columns() if c not in HIDDEN_BY_DEFAULT and not c.startswith(HIDDEN_PREFIXES)]
        # Long text last so the numbers fit an 80-column window.
        return sorted(columns, key=lambda c: c in ("failure", "arch"))

    def _shown(self, number: int) -> bool:
        assert self.trials is not None
        return self.state_filter == "all" or self.trials.records[number]["state"] == self.state_filter

    def _cells(self, number: int) -> list[Any]:
        assert self.trials is not None
        record = self.trials.records[number]
        # Text cells skip markup parsing, the costliest part of adding a row.
        return [number] + [Text(format_value(record.get(c))) for c in self.shown_columns if c != "number"]

    def _ordered(self) -> list[int]:
        """Trial numbers that pass the filter, in the chosen order (missing values always last)."""
        assert self.trials is not None
        records = self.trials.records
        numbers = [n for n in range(len(records)) if self._shown(n)]
        if self.sort_column is None:
            return numbers
        column = self.sort_column
        present = [n for n in numbers if _sort_key(records[n].get(column))[0] < 2]
        missing = [n for n in numbers if _sort_key(records[n].get(column))[0] == 2]
        ordered = sorted(present, key=lambda n: _sort_key(records[n].get(column)), reverse=self.sort_reverse)
        return ordered + missing

    def _page_numbers(self) -> list[int]:
        return self.view[self.page * PAGE_SIZE : (self.page + 1) * PAGE_SIZE]

    def _rebuild_table(self) -> None:
        """New columns: rebuild the whole table (columns and the current page)."""
        assert self.trials is not None
        table = self.query_one("#trials", DataTable)
        if table.columns:
            table.clear(columns=True)
        table.add_column("#", key="number")
        for column in self.shown_columns:
            if column != "number":
                table.add_column(_label(column), key=column)
        self._reorder()

    def _reorder(self) -> None:
        """New order or filter: recompute the view and show its current page."""
        self.view = self._ordered()
        self.page = min(self.page, max(0, (len(self.view) - 1) // PAGE_SIZE))
        self._show_page()

    def _show_page(self) -> None:
        table = self.query_one("#trials", DataTable)
        # clear() homes the cursor; keep its column so pressing s again reverses the same sort.
        column = table.cursor_column
        table.clear()
        for number in self._page_numbers():
            table.add_row(*self._cells(number), key=str(number))
        table.move_cursor(column=min(column, max(0, len(table.columns) - 1)))
        self._update_table_status()

    def _apply(self, change: Refresh) -> None:
        """New or changed trials: touch only the rows of the page on screen that changed."""
        assert self.trials is not None
        before = self._page_numbers()
        self.view = self._ordered()
        after = self._page_numbers()
        table = self.query_one("#trials", DataTable)
        if after[: len(before)] == before:
            columns = ["number"] + [c for c in self.shown_columns if c != "number"]
            for number in set(change.changed) & set(before):
                for column, value in zip(columns, self._cells(number)):
                    table.update_cell(str(number), column, value)
            for number in after[len(before) :]:
                table.add_row(*self._cells(number), key=str(number))
            self._update_table_status()
        else:
            self._show_page()

    def table_rows(self) -> int:
        """Rows in the table: the page on screen."""
        return self.query_one("#trials", DataTable).row_count

    def row_numbers(self) -> list[int]:
        """Trial numbers in the table's current order (for tests and the benchmark)."""
        table = self.query_one("#trials", DataTable)
        return [table.get_row_at(i)[0] for i in range(table.row_count)]

    def _update_table_status(self) -> None:
        sort = (
            f"sorted by {_label(self.sort_column)}{' (desc)' if self.sort_reverse else ''}"
            if self.sort_column
            else "in trial order"
        )
        shown = len(self.view)
        first = self.page * PAGE_SIZE
        rows = (
            f"{shown} trials"
            if shown <= PAGE_SIZE
            else f"trials {first + 1}-{min(first + PAGE_SIZE, shown)} of {shown} ([ ] pages)"
        )
        self.query_one("#table-status", Static).update(f"{rows} · state: {self.state_filter} · {sort}")

    def _update_summary(self) -> None:
        assert self.trials is not None
        counts = self.trials.counts()
        described = self.trials.described
        objectives = ", ".join(f"{m} ({d[:3]})" for m, d in zip(self.trials.metrics, self.trials.directions))
        self.query_one("#study-summary", Static).update(
            f"[b]{self.study_name}[/]  {described.get('source', '-')} · {described.get('evaluator', '-')} · "
            f"{objectives}\n{counts['COMPLETE']} complete · {counts['RUNNING']} running · "
            f"{counts['FAIL']} failed · {counts['PRUNED']} pruned"
        )

    # -- actions -----------------------------------------------------------------------------------
    def action_sort(self) -> None:
        table = self.query_one("#trials", DataTable)
        if not table.columns:
            return
        column = list(table.columns)[table.cursor_column].value
        self.sort_reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column = column
        self.page = 0
        self._reorder()

    def action_page(self, step: int) -> None:
        last = max(0, (len(self.view) - 1) // PAGE_SIZE)
        page = min(last, max(0, self.page + step))
        if page != self.page:
            self.page = page
            self._show_page()

    def action_filter(self) -> None:
        self.state_filter = STATE_FILTERS[(STATE_FILTERS.index(self.state_filter) + 1) % len(STATE_FILTERS)]

    def watch_state_filter(self) -> None:
        if self.trials is not None and self.shown_columns:
            self.page = 0
            self._reorder()

    def action_columns(self) -> None:
        if self.trials is None:
            return
        from automl_tui.screens.columns import ColumnsScreen

        def chosen(columns: list[str] | None) -> None:
            if columns:
                self.shown_columns = columns
                self._rebuild_table()

        self.app.push_screen(ColumnsScreen(self.trials.columns(), self.shown_columns), chosen)

    @on(DataTable.RowSelected, "#trials")
    def _open_trial(self, event: DataTable.RowSelected) -> None:
        from automl_tui.screens.trial import TrialScreen

        assert self.trials is not None
        self.app.push_screen(TrialScreen(self.trials, int(event.row_key.value)))

    # -- charts ------------------------------------------------------------------------------------
    @on(TabbedContent.TabActivated, "#study-tabs")
    def _tab_activated(self) -> None:
        if self.trials is not None and self.shown_columns:
            self._draw_charts()

    def _draw_charts(self) -> None:
        """Draw what the active tab shows (the others are drawn when opened: refreshes stay cheap)."""
        assert self.trials is not None
        trials, metrics, directions = self.trials.trials, self.trials.metrics, self.trials.directions
        tabs = self.query_one(TabbedContent)
        if len(metrics) < 2:
            tabs.hide_tab("tab-pareto")
        active = tabs.active
        if active == "tab-proxies":
            self._draw_correlations()
        elif active == "tab-history":
            history = best_so_far(trials, directions[0], metric=metrics[0])
            plot = self.query_one("#history", PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.clear_figure()
            plt.title(f"{history.metric}: best so far ({directions[0]})")
            plt.xlabel("trial")
            if history.numbers:
                plt.scatter(history.numbers, history.values, marker="dot", label="trial")
                plt.plot(history.numbers, history.best, marker="braille", label="best")
            plot.refresh()
        elif active == "tab-pareto" and len(metrics) >= 2:
            front = pareto_points(trials, directions, metrics)
            plot = self.query_one("#pareto", PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.clear_figure()
            plt.title(f"Pareto front: {front.x_metric} vs {front.y_metric}")
            plt.xlabel(front.x_metric)
            plt.ylabel(front.y_metric)
            if front.x:
                plt.scatter(front.x, front.y, marker="dot", label="trial")
                plt.scatter(front.front_x, front.front_y, marker="x", label="front")
            plot.refresh()

    def _draw_correlations(self) -> None:
        assert self.trials is not None
        proxies, truths = split_scores(self.trials.records[-200:], self.proxy_names)
        table = self.query_one("#correlations", DataTable)
        status = self.query_one("#proxies-status", Static)
        table.clear()
        if not proxies or not truths:
            status.update(
                "proxy-versus-truth needs both proxy scores and a true metric (a benchmark "
                "table or training) in the same trials; this study has proxies: "
                f"{', '.join(proxies) or 'none'}, true metrics: {', '.join(truths) or 'none'}"
            )
            return
        status.update(f"rank correlation of each proxy with {truths[0]}")
        rows: list[Correlation] = proxy_correlations(self.trials.records, proxies, truths[0])
        for row in rows:
            table.add_row(row.proxy, row.truth, row.n, format_value(row.spearman), format_value(row.kendall))

    def action_importances(self) -> None:
        if self.trials is None:
            return
        self.query_one(TabbedContent).active = "tab-importance"
        self.query_one("#importance-status", Static).update("computing importances...")
        self._compute_importances(list(self.trials.trials))

    @work(thread=True, exclusive=True, group="importances")
    def _compute_importances(self, trials: list) -> None:
        assert self.trials is not None
        found = param_importances(trials, self.trials.directions, self.trials.metrics)
        self.post_message(self.ImportancesComputed(found))

    def on_study_screen_importances_computed(self, message: ImportancesComputed) -> None:
        found = message.importances
        status = self.query_one("#importance-status", Static)
        self.importances_shown.set()
        if not found.names:
            status.update(f"no importances: {found.note}")
            return
        status.update(f"importance for {found.metric} over {found.n_trials} completed trials (fANOVA)")
        plot = self.query_one("#importance", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.bar(list(reversed(found.names)), list(reversed(found.values)), orientation="horizontal", width=0.3)
        plot.refresh()
