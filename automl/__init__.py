"""automl: plugin-based AutoML search over architectures, normalization, losses, pruning and bit-widths.

The public API::

    import automl

    study = automl.search("search_spaces/nb201_digits.toml")      # returns an optuna.Study
    space = automl.SearchSpace.from_file("search_spaces/nb201_digits.toml")
    candidate = space.sample(trial)        # inside your own Optuna objective
    result = automl.evaluate(candidate, {"name": "proxies", "proxies": ["synflow"]})

Names are imported on first use, so ``import automl`` (and the commands that only read studies) do
not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Candidate": "automl.candidate",
    "Command": "automl.commands",
    "ARCHITECTURE": "automl.dimensions",
    "BUILD": "automl.dimensions",
    "DATA": "automl.dimensions",
    "MODEL": "automl.dimensions",
    "RECIPE": "automl.dimensions",
    "Architecture": "automl.dimensions",
    "ArchitectureDimension": "automl.dimensions",
    "Dimension": "automl.dimensions",
    "ScopedTrial": "automl.dimensions",
    "AutomlError": "automl.errors",
    "PluginError": "automl.errors",
    "SpaceError": "automl.errors",
    "StorageError": "automl.errors",
    "TrialFailed": "automl.errors",
    "Evaluations": "automl.evaluation",
    "EvalContext": "automl.evaluators",
    "EvalResult": "automl.evaluators",
    "Evaluator": "automl.evaluators",
    "hookimpl": "automl.hookspecs",
    "REQUIRED": "automl.options",
    "Option": "automl.options",
    "PassProxy": "automl.passes",
    "SharedPass": "automl.passes",
    "Proxy": "automl.proxies",
    "ProxyValue": "automl.proxies",
    "TrialRecord": "automl.record",
    "get_registry": "automl.registry",
    "StudyRunner": "automl.runner",
    "evaluate": "automl.runner",
    "search": "automl.runner",
    "Objective": "automl.space",
    "SearchSpace": "automl.space",
    "SearchContext": "automl.strategies",
    "Strategy": "automl.strategies",
    "Batch": "automl.tasks",
    "Task": "automl.tasks",
}

__all__ = [
    "ARCHITECTURE",
    "BUILD",
    "DATA",
    "MODEL",
    "RECIPE",
    "REQUIRED",
    "Architecture",
    "ArchitectureDimension",
    "AutomlError",
    "Batch",
    "Candidate",
    "Command",
    "Dimension",
    "EvalContext",
    "EvalResult",
    "Evaluations",
    "Evaluator",
    "Objective",
    "Option",
    "PassProxy",
    "PluginError",
    "Proxy",
    "ProxyValue",
    "ScopedTrial",
    "SearchContext",
    "SearchSpace",
    "SharedPass",
    "SpaceError",
    "StorageError",
    "Strategy",
    "StudyRunner",
    "Task",
    "TrialFailed",
    "TrialRecord",
    "evaluate",
    "get_registry",
    "hookimpl",
    "search",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'automl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from automl.candidate import Candidate
    from automl.commands import Command
    from automl.dimensions import (
        ARCHITECTURE,
        BUILD,
        DATA,
        MODEL,
        RECIPE,
        Architecture,
        ArchitectureDimension,
        Dimension,
        ScopedTrial,
    )
    from automl.errors import AutomlError, PluginError, SpaceError, StorageError, TrialFailed
    from automl.evaluation import Evaluations
    from automl.evaluators import EvalContext, EvalResult, Evaluator
    from automl.hookspecs import hookimpl
    from automl.options import REQUIRED, Option
    from automl.passes import PassProxy, SharedPass
    from automl.proxies import Proxy, ProxyValue
    from automl.record import TrialRecord
    from automl.registry import get_registry
    from automl.runner import StudyRunner, evaluate, search
    from automl.space import Objective, SearchSpace
    from automl.strategies import SearchContext, Strategy
    from automl.tasks import Batch, Task
