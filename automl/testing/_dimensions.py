"""The dimension and architecture contracts: rebuilt from stored values, seeded, parsable, runnable."""

from __future__ import annotations

from typing import Any, ClassVar

import optuna
import pytest
import torch

from automl.dimensions import Architecture, ArchitectureDimension, Dimension, ScopedTrial
from automl.space import SearchSpace
from automl.tasks import Task
from automl.testing._common import (
    TASK_OF_KIND,
    ContractError,
    PluginContract,
    build_space,
    counting_space,
    example_settings,
    registry_with,
    seeded_candidates,
    table_of,
    with_plugin,
)


def dimension_space(cls: type[Dimension], settings: dict[str, Any] | None = None) -> SearchSpace:
    """The class's ``example_space``, or a small default: an architecture dimension on a task of a kind it
    takes; any other dimension after a tiny NB201 on digits. ``settings`` (default: ``example``) configures it."""
    registry = registry_with("dimensions", cls)
    example = getattr(cls, "example_space", None)
    if example is not None:
        data = with_plugin(example, "dimensions", cls, settings)
        if not any(d.get("name") == cls.name for d in data.get("dimensions", [])):
            raise ContractError(f"{cls.__name__}.example_space has no dimension named {cls.name!r}")
        return build_space(data, registry)
    own = {"name": cls.name, **example_settings(cls, settings)}
    if issubclass(cls, ArchitectureDimension):
        kinds = [k for k in (cls.task_kinds or ("image-classification",)) if k in TASK_OF_KIND]
        if not kinds:
            pytest.skip(f"no built-in task of the kinds {cls.task_kinds}: give {cls.__name__} an `example_space`")
        return counting_space(table_of("tasks", TASK_OF_KIND[kinds[0]]), [own], registry)
    return counting_space(table_of("tasks", "digits"), [table_of("dimensions", "nb201"), own], registry)


def check_rebuilt_from_values(space: SearchSpace, n: int = 4, seed: int = 0) -> None:
    """A sampled candidate and the one rebuilt from its trial's stored values have one id."""
    for trial, candidate in seeded_candidates(space, n, seed):
        rebuilt = space.candidate(trial.params)
        if rebuilt.id != candidate.id or rebuilt.params != candidate.params:
            raise ContractError(
                f"the candidate rebuilt from the stored values {trial.params} differs from the sampled one "
                f"(id {rebuilt.id} vs {candidate.id}; {rebuilt.describe()!r} vs {candidate.describe()!r}): "
                f"a dimension must decide everything through the trial's suggest_* calls"
            )


def check_seeded_sampling(space: SearchSpace, n: int = 4, seed: int = 0) -> None:
    """Two samplers with the same seed draw the same candidates."""
    first = [(c.id, c.params) for _, c in seeded_candidates(space, n, seed)]
    second = [(c.id, c.params) for _, c in seeded_candidates(space, n, seed)]
    if first != second:
        raise ContractError(
            f"two samplers seeded {seed} drew different candidates: {first} then {second}; draw every random "
            f"choice through the trial (suggest_*), never from an unseeded generator"
        )


def expected_output_shape(task: Task, batch_size: int) -> tuple[int, ...] | None:
    """What a model of ``task`` must output for ``batch_size`` inputs (``None``: a kind without a rule)."""
    if task.kind in ("image-classification", "text-classification"):
        return (batch_size, task.num_classes)
    if task.kind == "language-modelling":
        return (batch_size, task.input_shape[0], task.vocab_size)
    return None


def check_forward(model: torch.nn.Module, task: Task, what: str, batch_size: int = 4) -> None:
    """One forward pass on a batch of ``task`` gives finite outputs of the shape the task's kind asks for."""
    batch = task.batch(batch_size, seed=0)
    with torch.no_grad():
        out = model(batch.inputs)
    if not isinstance(out, torch.Tensor):
        raise ContractError(f"{what} returned {type(out).__name__}, not a tensor of outputs")
    expected = expected_output_shape(task, len(batch))
    if expected is not None and tuple(out.shape) != expected:
        raise ContractError(
            f"{what} gave outputs of shape {tuple(out.shape)} for {len(batch)} inputs of the {task.kind} task "
            f"{task.name!r}; expected {expected}"
        )
    if expected is None and out.shape[0] != len(batch):
        raise ContractError(f"{what} gave {out.shape[0]} outputs for {len(batch)} inputs")
    if not torch.isfinite(out).all():
        raise ContractError(f"{what} gave non-finite outputs at initialisation")


class DimensionContract(PluginContract):
    """Contract suite for a search dimension (``automl.Dimension``): subclass it and set ``dimension``.

    The space is the class's ``example_space`` (a search-space table holding the dimension) or a small
    default: a tiny NB201 on digits, then the dimension configured with ``settings`` (default: the
    class's ``example``). Candidates rebuilt from a trial's stored values have the sampled candidate's
    id; seeded samplers draw the same candidates; their models build and run.
    """

    plugin_attribute: ClassVar[str] = "dimension"
    dimension: ClassVar[type[Dimension] | None] = None
    trials: ClassVar[int] = 4

    @pytest.fixture(scope="class")
    def space(self, plugin_class: type[Dimension]) -> SearchSpace:
        return dimension_space(plugin_class, self.settings)

    def test_rebuilt_from_stored_values_gives_the_same_id(self, space: SearchSpace) -> None:
        check_rebuilt_from_values(space, self.trials)

    def test_seeded_sampler_draws_the_same_candidates(self, space: SearchSpace) -> None:
        check_seeded_sampling(space, self.trials)

    def test_candidates_build_and_run(self, space: SearchSpace) -> None:
        for _, candidate in seeded_candidates(space, 2):
            check_forward(candidate.build_model(), space.task, f"the model of {candidate.describe()!r}")


def architectures(space: SearchSpace, n: int) -> tuple[str, ArchitectureDimension, list[Architecture]]:
    found = space.architecture
    if found is None:
        raise ContractError("the space has no architecture dimension")
    key, dim = found
    return key, dim, [c.architecture for _, c in seeded_candidates(space, n)]


def check_string_round_trip(dim: ArchitectureDimension, arch: Architecture) -> None:
    text = arch.to_string()
    again = dim.parse(text).to_string()
    if again != text:
        raise ContractError(f"{dim.name}: parse({text!r}).to_string() gives {again!r}")


def check_canonical_id(key: str, dim: ArchitectureDimension, arch: Architecture) -> None:
    """Parsing twice, and sampling from ``params`` through a FixedTrial, give the architecture's canonical id."""
    text = arch.to_string()
    ids = {"sampled": arch.canonical_id(), "parsed": dim.parse(text).canonical_id()}
    ids["parsed again"] = dim.parse(text).canonical_id()
    params = {f"{key}.{name}": value for name, value in dim.params(arch).items()}
    rebuilt = dim.sample(ScopedTrial(optuna.trial.FixedTrial(params), key))
    ids["sampled from params()"] = rebuilt.canonical_id()
    if len(set(ids.values())) != 1:
        raise ContractError(f"{dim.name}: the canonical id of {text!r} is not stable: {ids}")
    if rebuilt.to_string() != text:
        raise ContractError(f"{dim.name}: params({text!r}) sampled through a FixedTrial gives {rebuilt.to_string()!r}")


class ArchitectureContract(DimensionContract):
    """Contract suite for an architecture dimension (``automl.ArchitectureDimension``): set ``dimension``.

    Besides the dimension contract: the string form round-trips through ``parse``; the canonical id is
    stable (parsed twice, rebuilt from ``params`` through a ``FixedTrial``); ``build(task)`` runs
    forward and gives the task's output shape; the architecture's ``kind`` is the dimension's ``arch_kind``.
    """

    def test_string_form_round_trips(self, space: SearchSpace) -> None:
        _, dim, archs = architectures(space, self.trials)
        for arch in archs:
            check_string_round_trip(dim, arch)

    def test_canonical_id_is_stable(self, space: SearchSpace) -> None:
        key, dim, archs = architectures(space, self.trials)
        for arch in archs:
            check_canonical_id(key, dim, arch)

    def test_build_runs_forward_with_the_task_output_shape(self, space: SearchSpace) -> None:
        _, dim, archs = architectures(space, 2)
        for arch in archs:
            if arch.kind != dim.arch_kind:
                raise ContractError(
                    f"{dim.name}: arch_kind is {dim.arch_kind!r} but its architectures' kind {arch.kind!r}"
                )
            check_forward(arch.build(space.task), space.task, f"{dim.name} architecture {arch.to_string()!r}")
