"""automl: plugin-based AutoML search over architectures, normalization, losses, pruning and bit-widths.

The public API::

    import automl

    study = automl.search("search_spaces/nb201_digits.toml")      # returns an optuna.Study
    space = automl.SearchSpace.from_file("search_spaces/nb201_digits.toml")
    candidate = space.sample(trial)        # inside your own Optuna objective
    result = automl.evaluate(candidate, {"name": "proxies", "proxies": ["synflow"]})
"""

from __future__ import annotations

__version__ = "0.1.0"

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
from automl.evaluators import EvalContext, EvalResult, Evaluator
from automl.hookspecs import hookimpl
from automl.options import REQUIRED, Option
from automl.proxies import Proxy, ProxyValue
from automl.registry import get_registry
from automl.runner import StudyRunner, evaluate, search
from automl.space import Objective, SearchSpace
from automl.strategies import Strategy
from automl.tasks import Batch, Task

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
    "Evaluator",
    "Objective",
    "Option",
    "PluginError",
    "Proxy",
    "ProxyValue",
    "ScopedTrial",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "Strategy",
    "StudyRunner",
    "Task",
    "TrialFailed",
    "evaluate",
    "get_registry",
    "hookimpl",
    "search",
]
