"""The hooks a plugin implements. Every ``register_*`` hook receives a ``register`` callback.

A plugin is any module or object with functions marked ``@automl.hookimpl``; built-in methods use
exactly the same hooks as third-party packages, which declare an entry point in the ``automl`` group::

    [project.entry-points.automl]
    my_plugin = "my_package.plugin"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("automl")
hookimpl = pluggy.HookimplMarker("automl")


@hookspec
def register_dimensions(register: Callable[[type], None]) -> None:
    """Register search dimensions.

    Args:
        register: call it once per ``automl.Dimension`` subclass (architecture dimensions derive
            from ``automl.ArchitectureDimension``). The class's ``name`` is what a search-space file
            writes in ``[[dimensions]] name = ...``; a name registered twice is an error.
    """


@hookspec
def register_proxies(register: Callable[[type], None]) -> None:
    """Register training-free proxies.

    Args:
        register: call it once per ``automl.Proxy`` subclass; its ``name`` is what the proxy
            evaluator's ``proxies`` list and ``automl score --proxies`` accept.
    """


@hookspec
def register_evaluators(register: Callable[[type], None]) -> None:
    """Register evaluators.

    Args:
        register: call it once per ``automl.Evaluator`` subclass; its ``name`` is what
            ``[evaluator] name = ...`` accepts.
    """


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register tasks (datasets).

    Args:
        register: call it once per ``automl.Task`` subclass; its ``name`` is what
            ``[task] name = ...`` accepts.
    """


@hookspec
def register_strategies(register: Callable[[type], None]) -> None:
    """Register search strategies.

    Args:
        register: call it once per ``automl.Strategy`` subclass; its ``name`` is what
            ``[strategy] name = ...`` accepts.
    """


@hookspec
def register_commands(register: Callable[[Any], None]) -> None:
    """Register CLI sub-commands.

    Args:
        register: call it once per ``automl.Command`` (a name, a help line, a function that adds
            arguments to an ``argparse`` parser, and a function that runs the command and returns an
            exit code).
    """


@hookspec
def trial_finished(study: Any, trial: Any, candidate: Any) -> None:
    """Called in the searching process after every trial ends, whatever its state.

    Args:
        study: the ``optuna.Study``.
        trial: the ``optuna.trial.FrozenTrial`` as stored (its state, values and user attributes).
        candidate: the ``automl.Candidate`` that was evaluated (``None`` if sampling itself failed).
    """
