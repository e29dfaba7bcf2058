"""Tasks: the data a search evaluates candidates on."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from automl.plugin import Configurable


@dataclass
class Batch:
    """One minibatch: ``inputs`` and ``targets`` tensors (targets may be ``None`` for unlabelled data)."""

    inputs: torch.Tensor
    targets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.inputs.to(device), None if self.targets is None else self.targets.to(device))

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


class Task(Configurable):
    """A dataset with splits, the shape of its inputs and what a model must output.

    ``kind`` says what models it feeds: ``"image-classification"`` (inputs ``B×C×H×W``,
    ``num_classes`` logits), ``"language-modelling"`` (token ids ``B×T``, ``vocab_size`` logits per
    position) or ``"text-classification"`` (token ids ``B×T``, ``num_classes`` logits).
    Subclasses fill ``input_shape`` (without the batch dimension), ``num_classes`` and/or
    ``vocab_size`` in ``__init__``, and implement ``split``.
    """

    kind: ClassVar[str] = ""
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    vocab_size: int = 0

    @abstractmethod
    def split(self, name: str) -> Batch:
        """The whole split ``"train"``, ``"val"`` or ``"test"`` as tensors on the CPU."""

    def batch(self, size: int | None = None, *, seed: int = 0, split: str = "train") -> Batch:
        """A minibatch drawn from ``split`` with a fixed seed: the same seed gives the same batch."""
        data = self.split(split)
        size = size or self.settings.get("batch_size", 64)
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(data), generator=gen)[: min(size, len(data))]
        return Batch(data.inputs[index], None if data.targets is None else data.targets[index])

    def example_input(self) -> torch.Tensor:
        """One input of batch size 1 (for cost counting and shape checks)."""
        return self.batch(1, seed=0).inputs

    def fingerprint(self) -> str:
        """A short hash of the data and settings: the score cache keys on it."""
        data = self.split("train")
        digest = hashlib.sha256()
        digest.update(repr(sorted(self.settings_key().items())).encode())
        digest.update(data.inputs.contiguous().view(-1)[:65536].numpy().tobytes())
        digest.update(str(tuple(data.inputs.shape)).encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "vocab_size": self.vocab_size,
        }
