"""Search spaces: a task, dimensions, an evaluator and objectives — from a TOML file or from Python."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import tomllib

from automl.candidate import Candidate
from automl.costs import COST_METRICS
from automl.dimensions import ArchitectureDimension, Dimension, ScopedTrial
from automl.errors import SpaceError
from automl.evaluators import Evaluator
from automl.options import Option, validate_options
from automl.registry import Registry, get_registry
from automl.strategies import Strategy
from automl.tasks import Task

SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "bruteforce": "BruteForceSampler",
}
SINGLE_OBJECTIVE_SAMPLERS = {"cmaes"}
PRUNERS: dict[str, str | None] = {
    "none": None,
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "wilcoxon": "WilcoxonPruner",
}
DIRECTIONS = ("maximize", "minimize")
SECTIONS = ("study", "task", "dimensions", "evaluator", "objectives", "strategy")

STUDY_OPTIONS: dict[str, Option] = {
    "name": Option(str, default=None, help="study name (default: the file's stem)"),
    "n_trials": Option(int, default=100, min=1, help="the study's total trial budget"),
    "seed": Option(int, default=0, help="seed for the sampler, model initialisation and minibatches"),
    "sampler": Option(str, default="tpe", choices=tuple(SAMPLERS), help="Optuna sampler"),
    "sampler_options": Option(dict, default={}, help="keyword arguments of the sampler"),
    "pruner": Option(str, default="none", choices=tuple(PRUNERS), help="Optuna pruner"),
    "pruner_options": Option(dict, default={}, help="keyword arguments of the pruner"),
    "description": Option(str, default="", help="free text shown by the dashboard"),
}
OBJECTIVE_OPTIONS: dict[str, Option] = {
    "metric": Option(str, help="a score of the evaluator or a cost figure"),
    "direction": Option(str, default="maximize", choices=DIRECTIONS),
}


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str = "maximize"


@dataclass
class StudySettings:
    name: str = "automl"
    n_trials: int = 100
    seed: int = 0
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class SearchSpace:
    """Everything one search needs: task, dimensions (in stage order), evaluator, objectives, settings.

    Build one from a file (``SearchSpace.from_file``), from a dict in the file's shape
    (``SearchSpace.from_dict``), or from configured objects::

        space = SearchSpace.from_dict({
            "study": {"name": "demo", "n_trials": 20},
            "task": {"name": "digits"},
            "dimensions": [{"name": "nb201"}],
            "evaluator": {"name": "proxies", "proxies": ["synflow"]},
            "objectives": [{"metric": "synflow", "direction": "maximize"}],
        })
    """

    def __init__(
        self,
        *,
        task: Task,
        dimensions: Sequence[tuple[str, Dimension]],
        evaluator: Evaluator,
        objectives: Sequence[Objective],
        study: StudySettings | None = None,
        strategy: Strategy | None = None,
        source: str = "<space>",
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        self.task = task
        order = sorted(range(len(dimensions)), key=lambda i: (dimensions[i][1].stage, i))
        self.dimensions: list[tuple[str, Dimension]] = [dimensions[i] for i in order]
        self.evaluator = evaluator
        self.objectives = list(objectives)
        self.study = study or StudySettings()
        self.strategy = strategy
        self.source = source
        self.raw = dict(raw) if raw is not None else {}
        self._dimension_settings = [[key, dim.name, dim.settings_key()] for key, dim in self.dimensions]
        self._validate_objectives()
        for i, (key, dim) in enumerate(self.dimensions):
            self._located(lambda d=dim: d.validate(self), f"dimensions[{order[i]}]")
        self._located(lambda: evaluator.validate(self), "evaluator")
        if strategy is not None:
            self._located(lambda: strategy.validate(self), "strategy")

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, registry: Registry | None = None) -> SearchSpace:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SpaceError("no such file", source=source) from None
        except OSError as err:
            raise SpaceError(f"cannot read the file: {err.strerror}", source=source) from None
        return cls.from_toml(text, source=source, default_name=path.stem, registry=registry)

    @classmethod
    def from_toml(
        cls, text: str, *, source: str = "<space>", default_name: str = "automl", registry: Registry | None = None
    ) -> SearchSpace:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SpaceError(f"not valid TOML: {err}", source=source) from None
        return cls.from_dict(data, source=source, default_name=default_name, registry=registry)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "<space>",
        default_name: str = "automl",
        registry: Registry | None = None,
    ) -> SearchSpace:
        try:
            return cls._from_dict(data, source, default_name, registry or get_registry())
        except SpaceError as err:
            raise err.located(source) from None

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any], source: str, default_name: str, registry: Registry) -> SearchSpace:
        if not isinstance(data, Mapping):
            raise SpaceError("a search space must be a table")
        for key in data:
            if key not in SECTIONS:
                raise SpaceError(f"unknown section {key!r}", key=key, allowed=SECTIONS)
        study_raw = _table(data, "study", required=False)
        settings = validate_options(STUDY_OPTIONS, study_raw, key="study")
        settings["name"] = settings["name"] or default_name
        study = StudySettings(**settings)

        task = _configure(registry, "tasks", _table(data, "task"), "task")
        dims_raw = data.get("dimensions")
        if dims_raw is None:
            raise SpaceError(
                "missing section [[dimensions]]: a search needs at least one dimension",
                key="dimensions",
                allowed=registry.names("dimensions"),
            )
        if not isinstance(dims_raw, list) or not all(isinstance(d, Mapping) for d in dims_raw):
            raise SpaceError("must be an array of tables ([[dimensions]])", key="dimensions")
        dimensions: list[tuple[str, Dimension]] = []
        for i, raw in enumerate(dims_raw):
            where = f"dimensions[{i}]"
            dim = _configure(registry, "dimensions", raw, where, reserved=("name", "key"))
            dim_key = raw.get("key", dim.name)
            if not isinstance(dim_key, str) or not dim_key.isidentifier():
                raise SpaceError(f"{dim_key!r} is not a valid key (letters, digits, underscores)", key=f"{where}.key")
            if any(k == dim_key for k, _ in dimensions):
                raise SpaceError(
                    f"two dimensions share the key {dim_key!r}; give one a different 'key = ...'", key=f"{where}.key"
                )
            dimensions.append((dim_key, dim))
        if sum(isinstance(d, ArchitectureDimension) for _, d in dimensions) > 1:
            raise SpaceError("only one architecture dimension per space", key="dimensions")

        evaluator = _configure(registry, "evaluators", _table(data, "evaluator"), "evaluator")
        objectives_raw = data.get("objectives")
        if not objectives_raw:
            raise SpaceError(
                "missing section [[objectives]]: name at least one metric to optimize",
                key="objectives",
                allowed=list(evaluator.metrics()) + list(COST_METRICS),
            )
        if not isinstance(objectives_raw, list) or not all(isinstance(o, Mapping) for o in objectives_raw):
            raise SpaceError("must be an array of tables ([[objectives]])", key="objectives")
        objectives = [
            Objective(**validate_options(OBJECTIVE_OPTIONS, o, key=f"objectives[{i}]"))
            for i, o in enumerate(objectives_raw)
        ]
        strategy = None
        if "strategy" in data:
            strategy = _configure(registry, "strategies", _table(data, "strategy"), "strategy")
        space = cls(
            task=task,
            dimensions=dimensions,
            evaluator=evaluator,
            objectives=objectives,
            study=study,
            strategy=strategy,
            source=source,
            raw=copy.deepcopy(dict(data)),
        )
        space.make_sampler()
        space.make_pruner()
        return space

    def _validate_objectives(self) -> None:
        strategy_metrics = list(self.strategy.metrics()) if self.strategy is not None else []
        allowed = (
            list(self.evaluator.metrics())
            + [m for m in strategy_metrics if m not in self.evaluator.metrics()]
            + list(COST_METRICS)
        )
        seen = set()
        for i, objective in enumerate(self.objectives):
            if objective.metric not in allowed:
                of_strategy = f", of strategy {self.strategy.name!r}" if strategy_metrics else ""
                raise SpaceError(
                    f"{objective.metric!r} is neither a score of evaluator "
                    f"{self.evaluator.name!r}{of_strategy} nor a cost figure",
                    key=f"objectives[{i}].metric",
                    allowed=allowed,
                )
            if objective.metric in seen:
                raise SpaceError(f"{objective.metric!r} is listed twice", key=f"objectives[{i}].metric")
            seen.add(objective.metric)
        if self.study.sampler in SINGLE_OBJECTIVE_SAMPLERS and len(self.objectives) > 1:
            raise SpaceError(
                f"sampler {self.study.sampler!r} handles one objective; this space has {len(self.objectives)}",
                key="study.sampler",
                allowed=[s for s in SAMPLERS if s not in SINGLE_OBJECTIVE_SAMPLERS],
            )

    def _located(self, check: Any, prefix: str) -> None:
        try:
            check()
        except SpaceError as err:
            raise err.located(
                self.source,
                prefix
                if not err.key.startswith(("task", "study", "objectives", "dimensions", "evaluator", "strategy"))
                else "",
            )

    def with_task(self, task: Task) -> SearchSpace:
        """This space with its task replaced (validated again: an image architecture refuses tabular data).

        The copy's recorded table names the task by its plugin name only; a process that rebuilds spaces
        from tables (a Ray Tune worker) cannot rebuild a task given as a Python object.
        """
        raw = {**self.raw, "task": {"name": task.name}}
        return SearchSpace(
            task=task,
            dimensions=self.dimensions,
            evaluator=self.evaluator,
            objectives=self.objectives,
            study=self.study,
            strategy=self.strategy,
            source=self.source,
            raw=raw,
        )

    # -- Optuna pieces -----------------------------------------------------------------------------
    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        name = self.study.sampler
        cls = getattr(optuna.samplers, SAMPLERS[name])
        options = dict(self.study.sampler_options)
        try:
            return cls(seed=self.study.seed if seed is None else seed, **options)
        except (TypeError, ValueError, ImportError) as err:
            raise SpaceError(
                f"sampler {name!r} rejects its options: {err}", key="study.sampler_options", source=self.source
            ) from None

    def make_pruner(self) -> optuna.pruners.BasePruner:
        cls_name = PRUNERS[self.study.pruner]
        if cls_name is None:
            if self.study.pruner_options:
                raise SpaceError(
                    "pruner_options given without a pruner", key="study.pruner_options", source=self.source
                )
            return optuna.pruners.NopPruner()
        options = dict(self.study.pruner_options)
        try:
            if cls_name == "PatientPruner":
                inner = options.pop("wrapped", None)
                return optuna.pruners.PatientPruner(
                    getattr(optuna.pruners, PRUNERS[inner])() if PRUNERS.get(inner) else None,
                    **options,
                )
            return getattr(optuna.pruners, cls_name)(**options)
        except (TypeError, ValueError) as err:
            raise SpaceError(
                f"pruner {self.study.pruner!r} rejects its options: {err}",
                key="study.pruner_options",
                source=self.source,
            ) from None

    # -- candidates --------------------------------------------------------------------------------
    def sample(self, trial: optuna.trial.BaseTrial) -> Candidate:
        """Sample a candidate on ``trial`` (define-by-run). Usable inside any Optuna objective."""
        candidate = Candidate(self.task, seed=self.study.seed)
        # The dimensions' settings shape the model (NB201 channels, say): two spaces that differ in them
        # must not share candidate ids, or score-cache entries.
        candidate.set_canonical("__dimensions__", self._dimension_settings)
        for key, dim in self.dimensions:
            dim.suggest(ScopedTrial(trial, key), candidate)
        candidate.params = dict(trial.params)
        return candidate

    def candidate(self, params: Mapping[str, Any]) -> Candidate:
        """Rebuild the candidate with the given (prefixed) parameter values."""
        return self.sample(optuna.trial.FixedTrial(dict(params)))

    @property
    def architecture(self) -> tuple[str, ArchitectureDimension] | None:
        for key, dim in self.dimensions:
            if isinstance(dim, ArchitectureDimension):
                return key, dim
        return None

    def arch_params(self, text: str, where: str = "") -> dict[str, Any]:
        """The prefixed parameters of an architecture given in its string form."""
        found = self.architecture
        if found is None:
            raise SpaceError("this space has no architecture dimension", key="dimensions", source=self.source)
        key, dim = found
        try:
            arch = dim.parse(text)
        except ValueError as err:
            raise SpaceError(f"not a {dim.name} architecture: {err}", key=where, source=self.source) from None
        return {f"{key}.{k}": v for k, v in dim.params(arch).items()}

    def candidate_from_arch(self, text: str, params: Mapping[str, Any] | None = None) -> Candidate:
        """The candidate with architecture ``text`` and the given values for any other dimension."""
        return self.candidate({**self.arch_params(text), **dict(params or {})})

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary stored with the study (the dashboard and ``automl show`` read it)."""
        return {
            "source": self.source,
            "task": self.task.name,
            "dimensions": [f"{k}:{d.name}" if k != d.name else d.name for k, d in self.dimensions],
            "evaluator": self.evaluator.name,
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "strategy": self.strategy.name if self.strategy else None,
            "sampler": self.study.sampler,
            "n_trials": self.study.n_trials,
            "seed": self.study.seed,
            "description": self.study.description,
        }


def _table(data: Mapping[str, Any], name: str, required: bool = True) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        if required:
            raise SpaceError(f"missing section [{name}]", key=name)
        return {}
    if not isinstance(value, Mapping):
        raise SpaceError(f"must be a table ([{name}])", key=name)
    return value


def _configure(
    registry: Registry, kind: str, raw: Mapping[str, Any], key: str, reserved: tuple[str, ...] = ("name",)
) -> Any:
    name = raw.get("name")
    if name is None:
        raise SpaceError("missing key 'name'", key=f"{key}.name", allowed=registry.names(kind))
    if not isinstance(name, str):
        raise SpaceError(f"expected a string, got {name!r}", key=f"{key}.name", allowed=registry.names(kind))
    cls = registry.get(kind, name, key=f"{key}.name")
    return cls.configure(raw, key=key, reserved=reserved)
