"""NAS-Bench-201 cells: six edges, five operations, the benchmark's exact string form."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
from torch import nn

from automl import Architecture, ArchitectureDimension, Option, ScopedTrial, SpaceError, Task
from automl_plugins.architectures.nb201.graph import benchmark_id, cell_graph, draw_cell, function_id
from automl_plugins.architectures.nb201.model import NB201Network

OPERATIONS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# The order of the string form: node 1 from 0; node 2 from 0, 1; node 3 from 0, 1, 2.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
_NODE = re.compile(r"^\|(?:[a-z0-9_]+~\d\|)+$")


def parse_arch(text: str) -> tuple[str, ...]:
    """The six operations of ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, in ``EDGES`` order."""
    text = text.strip()
    nodes = text.split("+")
    if len(nodes) != 3:
        raise ValueError(f"{text!r}: expected 3 nodes separated by '+', found {len(nodes)}")
    ops: list[str] = []
    for target, node in enumerate(nodes, start=1):
        if not _NODE.match(node):
            raise ValueError(f"{text!r}: node {target} {node!r} is not of the form |op~i|...|")
        entries = node.strip("|").split("|")
        if len(entries) != target:
            raise ValueError(f"{text!r}: node {target} needs {target} inputs, has {len(entries)}")
        for source, entry in enumerate(entries):
            op, _, index = entry.partition("~")
            if op not in OPERATIONS:
                raise ValueError(f"{text!r}: unknown operation {op!r} (operations: {', '.join(OPERATIONS)})")
            if int(index) != source:
                raise ValueError(f"{text!r}: node {target} lists input {index} where {source} belongs")
            ops.append(op)
    return tuple(ops)


class NB201Architecture(Architecture):
    kind = "cell"

    def __init__(self, ops: Sequence[str], channels: int = 16, cells_per_stage: int = 5) -> None:
        self.ops = tuple(ops)
        if len(self.ops) != len(EDGES):
            raise ValueError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(self.ops)}")
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self._graph: nx.DiGraph | None = None

    def to_string(self) -> str:
        nodes = []
        for target in (1, 2, 3):
            entries = [f"{op}~{src}" for (src, dst), op in zip(EDGES, self.ops) if dst == target]
            nodes.append("|" + "|".join(entries) + "|")
        return "+".join(nodes)

    def graph(self) -> nx.DiGraph:
        """The cell as a networkx graph (nodes 0..3, attribute ``op`` on each edge); built once."""
        if self._graph is None:
            self._graph = cell_graph(self.ops, EDGES)
        return self._graph

    def canonical_id(self) -> str:
        """Equal for isomorphic cells, by the benchmark's convention (6,466 classes; see ``graph.py``)."""
        return benchmark_id(self.graph())

    def function_id(self) -> str:
        """Equal exactly for cells that compute the same function (4,930 classes; see ``graph.py``)."""
        return function_id(self.graph())

    def draw(self) -> str:
        """The cell, one line per node, with parts that cannot affect the output marked."""
        return draw_cell(self.graph())

    def build(self, task: Task, norm_layer: Any = None, options: Mapping[str, Any] | None = None) -> nn.Module:
        return NB201Network(
            self.ops,
            EDGES,
            channels=self.channels,
            cells_per_stage=self.cells_per_stage,
            in_channels=task.input_shape[0],
            num_classes=task.num_classes,
            norm_layer=norm_layer,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NB201Architecture) and other.ops == self.ops

    def __hash__(self) -> int:
        return hash(self.ops)


class NB201Dimension(ArchitectureDimension):
    name = "nb201"
    description = "NAS-Bench-201 cells: 6 edges × 5 operations (15,625 cells) in the benchmark's CIFAR skeleton"
    arch_kind = "cell"
    task_kinds = ("image-classification",)
    example = {"channels": 4, "cells_per_stage": 1}
    options = {
        "channels": Option(int, default=16, min=1, max=1024, help="channels of the first stage (C)"),
        "cells_per_stage": Option(int, default=5, min=1, max=64, help="cells per stage (N)"),
        "operations": Option(
            list,
            default=list(OPERATIONS),
            item_type=str,
            choices=OPERATIONS,
            min_items=1,
            help="the operations an edge may take",
        ),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if len(set(settings["operations"])) != len(settings["operations"]):
            raise SpaceError("operations lists an operation twice", key="operations")

    def _param(self, edge: tuple[int, int]) -> str:
        return f"e{edge[0]}{edge[1]}"

    def sample(self, trial: ScopedTrial) -> NB201Architecture:
        ops = [trial.suggest_categorical(self._param(edge), self.settings["operations"]) for edge in EDGES]
        return self._arch(ops)

    def _arch(self, ops: Sequence[str]) -> NB201Architecture:
        return NB201Architecture(ops, self.settings["channels"], self.settings["cells_per_stage"])

    def parse(self, text: str) -> NB201Architecture:
        ops = parse_arch(text)
        outside = [op for op in ops if op not in self.settings["operations"]]
        if outside:
            raise ValueError(f"{text!r}: operation {outside[0]!r} is not in this space's operations")
        return self._arch(ops)

    def params(self, arch: Architecture) -> dict[str, Any]:
        assert isinstance(arch, NB201Architecture)
        return {self._param(edge): op for edge, op in zip(EDGES, arch.ops)}
