"""The task contract: seeded batches, a stable fingerprint, inputs of the declared shape."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from automl.tasks import Batch, Task
from automl.testing._common import ContractError, PluginContract, configured


def _same(a: Batch, b: Batch) -> bool:
    if not torch.equal(a.inputs, b.inputs):
        return False
    if (a.targets is None) != (b.targets is None):
        return False
    return a.targets is None or torch.equal(a.targets, b.targets)


def check_seeded_batches(task: Task, fresh: Task, size: int = 8) -> None:
    """The same seed gives equal batches (also from a fresh instance); other seeds usually differ."""
    first = task.batch(size, seed=0)
    for other, what in (
        (task.batch(size, seed=0), "the same instance"),
        (fresh.batch(size, seed=0), "a fresh instance"),
    ):
        if not _same(first, other):
            raise ContractError(f"task {task.name!r}: batch(seed=0) twice from {what} gives different tensors")
    if all(_same(first, task.batch(size, seed=seed)) for seed in (1, 2, 3)):
        raise ContractError(f"task {task.name!r}: batch() gives the same tensors for seeds 0, 1, 2 and 3")


def check_fingerprint(task: Task, fresh: Task) -> None:
    """Two instances with the same settings have one fingerprint, a non-empty string."""
    first, second = task.fingerprint(), fresh.fingerprint()
    if not isinstance(first, str) or not first:
        raise ContractError(f"task {task.name!r}: fingerprint() returned {first!r}, not a non-empty string")
    if first != second:
        raise ContractError(
            f"task {task.name!r}: two fresh instances have fingerprints {first!r} and {second!r}; the score cache "
            f"keys on it, so it must depend only on the data and the settings"
        )


def check_batch_shape(task: Task, size: int = 8) -> None:
    """Inputs are ``size × input_shape``; targets, when present, one row per input."""
    batch = task.batch(size, seed=0)
    if tuple(batch.inputs.shape[1:]) != tuple(task.input_shape):
        raise ContractError(
            f"task {task.name!r}: inputs of shape {tuple(batch.inputs.shape)}, but input_shape is {task.input_shape}"
        )
    if batch.targets is not None and batch.targets.shape[0] != batch.inputs.shape[0]:
        raise ContractError(f"task {task.name!r}: {batch.targets.shape[0]} targets for {batch.inputs.shape[0]} inputs")
    if len(batch) != size:
        raise ContractError(f"task {task.name!r}: batch({size}) has {len(batch)} examples")


class TaskContract(PluginContract):
    """Contract suite for a task (``automl.Task``): subclass it and set ``task``.

    Configured with ``settings`` (default: the class's ``example``): ``batch(size, seed=)`` is
    deterministic (the same seed gives equal tensors, also from a fresh instance; other seeds usually
    differ), inputs have ``input_shape``, and ``fingerprint()`` is equal for two fresh instances.
    """

    plugin_attribute: ClassVar[str] = "task"
    task: ClassVar[type[Task] | None] = None

    @pytest.fixture(scope="class")
    def instances(self, plugin_class: type[Task]) -> tuple[Task, Task]:
        return configured(plugin_class, self.settings), configured(plugin_class, self.settings)

    def test_seeded_batches(self, instances: tuple[Task, Task]) -> None:
        check_seeded_batches(*instances)

    def test_fingerprint_is_stable(self, instances: tuple[Task, Task]) -> None:
        check_fingerprint(*instances)

    def test_batch_has_the_declared_shape(self, instances: tuple[Task, Task]) -> None:
        check_batch_shape(instances[0])
