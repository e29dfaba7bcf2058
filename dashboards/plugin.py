"""Registers ``automl tui``; textual is imported only when the command runs."""

from __future__ import annotations

import argparse

import automl
from automl.commands import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    from automl.cli import STORAGE_HELP

    parser.add_argument("--storage", default=None, help=STORAGE_HELP)
    parser.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes (default: 2)")


def _run(args: argparse.Namespace) -> int:
    from automl_tui.app import AutomlApp

    AutomlApp(storage=args.storage, refresh_interval=max(0.2, args.refresh), freeze_heap=True).run()
    return 0


@automl.hookimpl
def register_commands(register) -> None:
    register(Command("tui", "the terminal dashboard: watch studies, compare trials, start searches", _arguments, _run))
