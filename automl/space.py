"""Search spaces: a task, dimensions, an evaluator and objectives — from a TOML file or from Python."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import tomllib
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from automl.candidate import Candidate
from automl.costs import COST_METRICS
from automl.dimensions import ArchitectureDimension, Dimension, ScopedTrial
from automl.errors import SpaceError
from automl.evaluators import Evaluator
from automl.limits import Limits
from automl.options import REQUIRED, SEED_MAX, Option, validate_options
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
# Samplers that need a package automl does not install: checked before anything runs.
SAMPLER_PACKAGES = {"cmaes": "cmaes", "gp": "scipy", "qmc": "scipy"}
PRUNERS: dict[str, str | None] = {
    "none": None,
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "wilcoxon": "WilcoxonPruner",
    "mo_asha": "MOASHAPruner",  # automl.pruners: several objectives, costs known before training
}
DIRECTIONS = ("maximize", "minimize")
SECTIONS = ("study", "task", "dimensions", "evaluator", "objectives", "strategy")
# A search-space file is a few kilobytes; reading is capped so /dev/zero or a huge file is refused at once.
SPACE_FILE_LIMIT = 2**20
# The largest model a candidate may have: at most this many parameters, and at most one per 16 bytes of the
# machine's memory (float32 weights, gradients and two optimizer moments).
MAX_MODEL_PARAMS = 2_000_000_000
BYTES_PER_PARAM = 16

# Sane ranges of the sampler and pruner arguments a file can set, by argument name: (min, max, exclusive min).
_ARGUMENT_RANGES: dict[str, tuple[float, float, bool]] = {
    "n_startup_trials": (0, 1_000_000, False),
    "n_ei_candidates": (1, 100_000, False),
    "prior_weight": (0, 1e6, True),
    "population_size": (2, 100_000, False),
    "mutation_prob": (0, 1, False),
    "crossover_prob": (0, 1, False),
    "swapping_prob": (0, 1, False),
    "dividing_parameter": (1, 1_000, False),
    "sigma0": (0, 1e6, True),
    "popsize": (1, 100_000, False),
    "inc_popsize": (-1, 100, False),
    "n_warmup_steps": (0, 1_000_000_000, False),
    "interval_steps": (1, 1_000_000_000, False),
    "n_min_trials": (1, 1_000_000, False),
    "percentile": (0, 100, False),
    "min_resource": (1, 1_000_000_000, False),
    "max_resource": (1, 1_000_000_000, False),
    "reduction_factor": (2, 100, False),
    "min_early_stopping_rate": (0, 100, False),
    "bootstrap_count": (0, 1_000_000, False),
    "patience": (0, 1_000_000_000, False),
    "min_delta": (0, 1e12, False),
    "p_threshold": (0, 1, False),
    "n_startup_steps": (0, 1_000_000_000, False),
}
_ARGUMENT_CHOICES: dict[str, tuple[str, ...]] = {
    "qmc_type": ("sobol", "halton"),
    "restart_strategy": ("ipop", "bipop"),
    "min_resource": ("auto",),
    "max_resource": ("auto",),
}
_TOML_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict}

STUDY_OPTIONS: dict[str, Option] = {
    "name": Option(str, default=None, help="study name (default: the file's stem)"),
    "n_trials": Option(int, default=100, min=1, max=10_000_000, help="the study's total trial budget"),
    "seed": Option(
        int, default=0, min=0, max=SEED_MAX, help="seed for the sampler, model initialisation and minibatches"
    ),
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
        limits: Limits | None = None,
    ) -> None:
        self.task = task
        self.limits = limits or Limits()
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
            if path.is_dir():
                raise SpaceError("is a directory, not a search-space file", source=source)
            with path.open("rb") as f:
                data = f.read(SPACE_FILE_LIMIT + 1)
        except FileNotFoundError:
            raise SpaceError("no such file", source=source) from None
        except OSError as err:
            raise SpaceError(f"cannot read the file: {err.strerror}", source=source) from None
        if len(data) > SPACE_FILE_LIMIT:
            raise SpaceError(f"larger than {SPACE_FILE_LIMIT // 2**20} MiB: not a search-space file", source=source)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpaceError(
                f"not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}): not a search-space file",
                source=source,
            ) from None
        return cls.from_toml(text, source=source, default_name=path.stem, registry=registry)

    @classmethod
    def from_toml(
        cls, text: str, *, source: str = "<space>", default_name: str = "automl", registry: Registry | None = None
    ) -> SearchSpace:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SpaceError(f"not valid TOML: {err}", source=source) from None
        except RecursionError:
            raise SpaceError("not valid TOML: arrays or tables nested too deeply", source=source) from None
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
        if dims_raw is None or dims_raw == []:
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

        limits, evaluator_table = Limits.split(_table(data, "evaluator"))
        evaluator = _configure(registry, "evaluators", evaluator_table, "evaluator")
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
            limits=limits,
        )
        space.make_sampler()
        space.make_pruner()
        space.check_model_size()
        space.check_sampler_space()
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
            limits=self.limits,
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
        package = SAMPLER_PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise SpaceError(
                f"sampler {name!r} needs the {package!r} package, which is not installed: pip install {package}",
                key="study.sampler",
                source=self.source,
            )
        cls = getattr(optuna.samplers, SAMPLERS[name])
        options = self._arguments(cls, self.study.sampler_options, "study.sampler_options", f"sampler {name!r}")
        try:
            with warnings.catch_warnings():
                # The documented samplers are automl's choice: Optuna's "experimental" notice is not the user's.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return cls(seed=self.study.seed if seed is None else seed, **options)
        except (TypeError, ValueError, ImportError) as err:
            raise SpaceError(
                f"sampler {name!r} rejects its options: {err}", key="study.sampler_options", source=self.source
            ) from None

    def make_pruner(self) -> optuna.pruners.BasePruner:
        cls_name = PRUNERS[self.study.pruner]
        key = "study.pruner_options"
        if cls_name is None:
            if self.study.pruner_options:
                raise SpaceError("pruner_options given without a pruner", key=key, source=self.source)
            return optuna.pruners.NopPruner()
        what = f"pruner {self.study.pruner!r}"
        try:
            if self.study.pruner == "mo_asha":
                return self._mo_asha(key)
            cls = getattr(optuna.pruners, cls_name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return self._pruner(cls, key, what)
        except SpaceError as err:
            raise err.located(self.source) from None
        except (TypeError, ValueError) as err:
            raise SpaceError(f"{what} rejects its options: {err}", key=key, source=self.source) from None

    def _mo_asha(self, key: str) -> optuna.pruners.BasePruner:
        from automl.pruners import mo_asha_from_options

        return mo_asha_from_options(
            [(o.metric, o.direction) for o in self.objectives],
            self.study.pruner_options,
            key=key,
            what="pruner 'mo_asha'",
            objectives_key="study.pruner",
        )

    def _pruner(self, cls: type, key: str, what: str) -> optuna.pruners.BasePruner:
        if cls is not optuna.pruners.PatientPruner:
            return cls(**self._arguments(cls, self.study.pruner_options, key, what))
        wrappable = [p for p, c in PRUNERS.items() if c not in (None, "PatientPruner", "MOASHAPruner")]
        extra = {
            "wrapped": Option(str, default=None, choices=wrappable, help="the pruner it wraps"),
            "wrapped_options": Option(dict, default={}, help="the wrapped pruner's options"),
        }
        options = self._arguments(cls, self.study.pruner_options, key, what, extra=extra)
        inner_name = options.pop("wrapped", None)
        inner_raw = options.pop("wrapped_options", {})
        inner = None
        if inner_name is not None:
            inner_cls = getattr(optuna.pruners, PRUNERS[inner_name])
            inner = inner_cls(
                **self._arguments(inner_cls, inner_raw, f"{key}.wrapped_options", f"pruner {inner_name!r}")
            )
        elif inner_raw:
            raise SpaceError("wrapped_options given without 'wrapped'", key=f"{key}.wrapped_options")
        return cls(inner, **options)

    def _arguments(
        self, cls: type, raw: Mapping[str, Any], key: str, what: str, extra: Mapping[str, Option] | None = None
    ) -> dict[str, Any]:
        """``raw`` checked against the keyword arguments of ``cls`` a file can express, and ``extra``."""
        declared: dict[str, Option] = dict(extra or {})
        for name, parameter in inspect.signature(cls).parameters.items():
            types = _toml_types(parameter.annotation)
            if name in ("seed", "wrapped_pruner") or not types:
                continue  # set by automl, or not expressible in a file (callables, sampler objects)
            declared[name] = _argument_option(name, types, parameter.default)
        checked: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in declared:
                raise SpaceError(
                    f"unknown key {name!r}: not an option of {what}",
                    key=f"{key}.{name}",
                    allowed=sorted(declared),
                    source=self.source,
                )
            try:
                checked[name] = _check_argument(declared[name], value, f"{key}.{name}")
            except SpaceError as err:
                raise err.located(self.source) from None
        for name, option in declared.items():
            if option.required and name not in raw:
                raise SpaceError(f"missing required key {name!r} of {what}", key=f"{key}.{name}", source=self.source)
        return checked

    # -- checks that sample --------------------------------------------------------------------------
    def check_model_size(self) -> None:
        """Refuse a space whose models would not fit in memory, from the parameter counts of probing candidates.

        The probes take the last choice and the top of every range of the architecture dimension, then each
        choice index in turn (so every operation of a cell is seen everywhere at least once); each is built on
        PyTorch's meta device (shapes only, no memory). A build that fails there is left to the trials.
        """
        found = self.architecture
        if found is None:
            return
        key, dim = found
        import torch

        largest, rounds, index = 0, 1, -1
        while index < min(rounds, 8):
            trial = _ProbeTrial(index)
            try:
                arch = dim.sample(ScopedTrial(trial, key))
                with torch.device("meta"):
                    model = arch.build(self.task, norm_layer=None, options={})
                largest = max(largest, sum(p.numel() for p in model.parameters()))
            except Exception:  # noqa: BLE001 - a best-effort estimate; the trials report a build that fails
                return
            rounds = max([rounds] + [len(d.choices) for d in trial.distributions.values() if hasattr(d, "choices")])
            index += 1
        limit = max_model_params()
        if largest > limit:
            raise SpaceError(
                f"a candidate of this space has {largest:,} parameters, more than the {limit:,} allowed "
                f"(at most {MAX_MODEL_PARAMS:,}, and {BYTES_PER_PARAM} bytes each must fit in this machine's "
                f"memory); make the network smaller",
                key=f"dimensions[{self._raw_index(key)}]",
                source=self.source,
            )

    def check_sampler_space(self) -> None:
        """``bruteforce`` enumerates a finite space: refuse one where a dimension samples a continuous range.

        Probing candidates take each choice index in turn, so every choice of every categorical is seen.
        """
        if self.study.sampler != "bruteforce":
            return
        index, rounds = 0, 1
        while index < min(rounds, 32):
            trial = _ProbeTrial(index)
            try:
                self.sample(trial)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - a sampling failure is reported by the trials
                return
            for name, distribution in trial.distributions.items():
                if isinstance(distribution, FloatDistribution) and distribution.step is None:
                    raise SpaceError(
                        f"sampler 'bruteforce' enumerates every candidate, but {name!r} is a continuous range "
                        f"[{distribution.low}, {distribution.high}]; use another sampler or discrete values",
                        key="study.sampler",
                        source=self.source,
                        allowed=[s for s in SAMPLERS if s != "bruteforce"],
                    )
                if isinstance(distribution, CategoricalDistribution):
                    rounds = max(rounds, len(distribution.choices))
            index += 1

    def _raw_index(self, key: str) -> int:
        for i, raw in enumerate(self.raw.get("dimensions") or []):
            if isinstance(raw, Mapping) and raw.get("key", raw.get("name")) == key:
                return i
        return 0

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


def max_model_params() -> int:
    """The most parameters a candidate's model may have on this machine (see ``MAX_MODEL_PARAMS``)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return MAX_MODEL_PARAMS
    return min(MAX_MODEL_PARAMS, memory // BYTES_PER_PARAM)


class _ProbeTrial:
    """A stand-in trial for checks: every suggestion takes choice ``index`` (modulo the number of choices;
    -1 is the last choice and the top of a range) and its distribution is recorded."""

    number = -1

    def __init__(self, index: int) -> None:
        self.index = index
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def _record(self, name: str, value: Any, distribution: BaseDistribution) -> Any:
        self.params.setdefault(name, value)
        self.distributions.setdefault(name, distribution)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        return self._record(name, choices[self.index % len(choices)], CategoricalDistribution(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        count = (high - low) // step + 1
        return self._record(name, low + step * (self.index % count), IntDistribution(low, high, step=step, log=log))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        value = high if self.index < 0 else low
        return self._record(name, value, FloatDistribution(low, high, step=step, log=log))


def _toml_types(annotation: Any) -> tuple[type, ...]:
    """The types a TOML file can give for an argument annotated ``annotation`` (``"int | None"``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text + "|"):
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return tuple(_TOML_TYPES[p.split("[")[0]] for p in parts if p.split("[")[0] in _TOML_TYPES)


def _argument_option(name: str, types: tuple[type, ...], default: Any) -> Option:
    low, high, exclusive = _ARGUMENT_RANGES.get(name, (None, None, False))
    return Option(
        types[0] if len(types) == 1 else object,
        default=default if default is not inspect.Parameter.empty else REQUIRED,
        min=low,
        max=high,
        min_exclusive=exclusive,
        extra={"types": types},
    )


def _check_argument(option: Option, value: Any, key: str) -> Any:
    """Check ``value`` for an argument of one of ``option.extra["types"]``."""
    types = option.extra.get("types")
    if types is None:
        return option.check(value, key)
    if isinstance(value, bool):
        typ = bool if bool in types else None
    elif isinstance(value, int):
        typ = int if int in types else float if float in types else None
    elif isinstance(value, float):
        typ = float if float in types else None
    elif isinstance(value, str):
        typ = str if str in types else None
    elif isinstance(value, Mapping):
        typ = dict if dict in types else None
    else:
        typ = None
    if typ is None:
        expected = " or ".join(_TYPE_WORDS[t] for t in types)
        shown = repr(value) if not isinstance(value, bool) else str(value).lower()
        raise SpaceError(f"expected {expected}, got {shown}", key=key)
    name = key.rsplit(".", 1)[-1]
    choices = _ARGUMENT_CHOICES.get(name) if typ is str else None
    rule = Option(typ, min=option.min, max=option.max, min_exclusive=option.min_exclusive, choices=choices)
    return rule.check(value, key)


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table"}


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
