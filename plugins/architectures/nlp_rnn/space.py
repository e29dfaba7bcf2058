"""The NAS-Bench-NLP recurrent-cell dimension (``nlp_rnn``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from automl import Architecture, ArchitectureDimension, Option, ScopedTrial, SpaceError, Task
from automl_plugins.architectures.nlp_rnn.cell import MAX_HIDDEN, RecurrentCell, parse_cell
from automl_plugins.architectures.nlp_rnn.generator import invert, sample_cell
from automl_plugins.architectures.nlp_rnn.model import RecurrentNetwork


class RecurrentArchitecture(Architecture):
    """A recurrent cell and the sizes of the stacked model built from it (see ``model.py`` for the contract)."""

    kind = "recurrent"

    def __init__(self, cell: RecurrentCell, embedding_size: int = 32, hidden_size: int = 32, layers: int = 2) -> None:
        self.cell = cell
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.layers = layers

    def to_string(self) -> str:
        return self.cell.to_string()

    def canonical_id(self) -> str:
        return self.cell.canonical_id()

    def draw(self) -> str:
        return self.cell.draw()

    def build(self, task: Task, norm_layer: Any = None, options: Mapping[str, Any] | None = None) -> nn.Module:
        classes = task.num_classes if task.kind == "text-classification" else 0
        return RecurrentNetwork(
            self.cell,
            vocab_size=task.vocab_size,
            embedding_size=self.embedding_size,
            hidden_size=self.hidden_size,
            layers=self.layers,
            num_classes=classes,
            norm_layer=norm_layer,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecurrentArchitecture) and other.to_string() == self.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())


class RecurrentDimension(ArchitectureDimension):
    name = "nlp_rnn"
    description = "NAS-Bench-NLP recurrent cells (linear/blend/product/sum/activation DAGs) in a stacked language model"
    arch_kind = "recurrent"
    task_kinds = ("language-modelling", "text-classification")
    example = {"embedding_size": 8, "hidden_size": 8, "layers": 1, "max_nodes": 4}
    options = {
        "max_hidden": Option(int, default=MAX_HIDDEN, min=1, max=MAX_HIDDEN, help="most hidden states (k)"),
        "min_nodes": Option(
            int, default=1, min=1, max=24, help="fewest free units (an operation, or linear + activation)"
        ),
        "max_nodes": Option(int, default=8, min=1, max=24, help="most free units"),
        "embedding_size": Option(int, default=32, min=1, max=4096, help="token embedding width"),
        "hidden_size": Option(int, default=32, min=1, max=4096, help="hidden state width (H)"),
        "layers": Option(int, default=2, min=1, max=8, help="stacked recurrent layers"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if settings["min_nodes"] > settings["max_nodes"]:
            raise SpaceError("min_nodes exceeds max_nodes", key="min_nodes")

    def _arch(self, cell: RecurrentCell) -> RecurrentArchitecture:
        s = self.settings
        return RecurrentArchitecture(cell, s["embedding_size"], s["hidden_size"], s["layers"])

    def sample(self, trial: ScopedTrial) -> RecurrentArchitecture:
        return self._arch(sample_cell(trial, self.settings))

    def parse(self, text: str) -> RecurrentArchitecture:
        cell = parse_cell(text)
        self.params(self._arch(cell))  # raises ValueError when the cell is outside this dimension's settings
        return self._arch(cell)

    def params(self, arch: Architecture) -> dict[str, Any]:
        assert isinstance(arch, RecurrentArchitecture)
        return invert(arch.cell, self.settings)
