"""CLI sub-commands as plugins register them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One ``automl NAME`` sub-command.

    ``add_arguments(parser)`` declares its arguments; ``run(args)`` does the work and returns the
    process exit code. Errors derived from ``automl.AutomlError`` are printed as one line.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
