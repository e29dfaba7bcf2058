"""Recurrent cells of the NAS-Bench-NLP space (Klyuchnikov et al. 2022) as networkx graphs.

A cell is a DAG. Its sources are the input ``x`` and the previous hidden states ``h_prev_0 … h_prev_{k-1}``
(k = 1, 2 or 3: an RNN has one, an LSTM two); its other nodes apply one operation to the nodes listed
as their inputs, in order:

====================  ======  ===================================================================
operation             inputs  computes
====================  ======  ===================================================================
linear                2 or 3  ``W_1 a + W_2 b (+ W_3 c) + bias``; always followed by an activation
blend                 3       ``z ⊙ a + (1 − z) ⊙ b`` for inputs ``(z, a, b)``
elementwise_prod      2       ``a ⊙ b``
elementwise_sum       2       ``a + b``
activation_tanh       1       ``tanh(a)``
activation_sigm       1       ``sigmoid(a)``
activation_leaky_relu 1       ``leaky_relu(a)``
====================  ======  ===================================================================

The nodes ``h_new_0 … h_new_{k-1}`` are the new hidden states (``h_new_0`` is also the cell's output).
Rules (the benchmark generator's): the graph is acyclic; every source is used; every node reaches an
output (no dead nodes); a ``linear`` node feeds exactly one node, an activation; no ``h_new`` node takes
an ``h_prev`` directly.

String form: ``name=op(input,input,…)`` per node, in a topological order, joined by ``;``, e.g. a
minimal RNN: ``node_0_linear=linear(x,h_prev_0);h_new_0=activation_tanh(node_0_linear)``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

ACTIVATIONS = ("activation_tanh", "activation_sigm", "activation_leaky_relu")
ARITY: dict[str, tuple[int, ...]] = {
    "linear": (2, 3),
    "blend": (3,),
    "elementwise_prod": (2,),
    "elementwise_sum": (2,),
    **{a: (1,) for a in ACTIVATIONS},
}
OPERATIONS = tuple(ARITY)
# Operations whose inputs commute (a linear map sums one weight matrix per input).
COMMUTATIVE = {"linear", "elementwise_prod", "elementwise_sum"}
MAX_HIDDEN = 3
_NODE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<op>[a-z_]+)\((?P<inputs>[A-Za-z0-9_,]*)\)$")


def hidden_name(i: int, new: bool = False) -> str:
    return f"h_new_{i}" if new else f"h_prev_{i}"


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]

    def to_string(self) -> str:
        return f"{self.name}={self.op}({','.join(self.inputs)})"


class RecurrentCell:
    """A checked recurrent cell: ``nodes`` in topological order and ``hidden`` (the number of states)."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = tuple(nodes)
        outputs = sorted(
            (n.name for n in self.nodes if re.fullmatch(r"h_new_\d+", n.name)),
            key=lambda name: int(name.rsplit("_", 1)[1]),
        )
        self.hidden = len(outputs)
        self.graph = self._check(outputs)

    @property
    def sources(self) -> tuple[str, ...]:
        return ("x", *(hidden_name(i) for i in range(self.hidden)))

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(hidden_name(i, new=True) for i in range(self.hidden))

    def _check(self, outputs: list[str]) -> nx.DiGraph:
        if not 1 <= self.hidden <= MAX_HIDDEN or outputs != [hidden_name(i, True) for i in range(self.hidden)]:
            raise ValueError(
                f"a cell needs outputs h_new_0 … h_new_{{k-1}} with k from 1 to {MAX_HIDDEN}; "
                f"found {', '.join(outputs) or 'none'}"
            )
        graph = nx.DiGraph()
        defined = set(self.sources)
        graph.add_nodes_from(self.sources, op="input")
        for node in self.nodes:
            if node.name in defined:
                raise ValueError(f"node {node.name!r} is defined twice (or shadows an input)")
            if node.op not in ARITY:
                raise ValueError(
                    f"node {node.name!r}: unknown operation {node.op!r} (operations: {', '.join(OPERATIONS)})"
                )
            if len(node.inputs) not in ARITY[node.op]:
                raise ValueError(
                    f"node {node.name!r}: {node.op} takes "
                    f"{' or '.join(map(str, ARITY[node.op]))} inputs, got {len(node.inputs)}"
                )
            for source in node.inputs:
                if source not in defined:
                    raise ValueError(
                        f"node {node.name!r} reads {source!r}, which is not an input "
                        f"({', '.join(self.sources)}) or an earlier node"
                    )
                if re.fullmatch(r"h_new_\d+", node.name) and source.startswith("h_prev_"):
                    raise ValueError(f"{node.name} takes {source} directly; the space forbids h_prev → h_new edges")
            graph.add_node(node.name, op=node.op, inputs=node.inputs)
            graph.add_edges_from((source, node.name) for source in set(node.inputs))
            defined.add(node.name)
        for source in self.sources:
            if graph.out_degree(source) == 0:
                raise ValueError(f"input {source!r} is never used")
        useful = set(self.outputs).union(*(nx.ancestors(graph, out) for out in self.outputs))
        dead = [n.name for n in self.nodes if n.name not in useful]
        if dead:
            raise ValueError(f"node {dead[0]!r} does not reach any h_new output")
        for node in self.nodes:
            if node.op == "linear":
                readers = [graph.nodes[r]["op"] for r in graph.successors(node.name)]
                if (
                    len(readers) != 1
                    or readers[0] not in ACTIVATIONS
                    or sum(n.inputs.count(node.name) for n in self.nodes) != 1
                ):
                    raise ValueError(f"linear node {node.name!r} must feed exactly one activation node")
        return graph

    def to_string(self) -> str:
        return ";".join(node.to_string() for node in self.nodes)

    def canonical_id(self) -> str:
        """A hash equal for cells that compute the same function up to node names and node order.

        Each node's hash combines its operation with its inputs' hashes (sorted for operations whose inputs
        commute); the id is the hash of the output hashes in order (``h_new_0`` first).
        """
        digests: dict[str, str] = {"x": "x", **{h: h for h in self.sources[1:]}}
        for node in self.nodes:
            parts = [digests[s] for s in node.inputs]
            if node.op in COMMUTATIVE:
                parts.sort()
            digests[node.name] = hashlib.sha1(f"{node.op}({','.join(parts)})".encode()).hexdigest()[:16]
        return hashlib.sha1("|".join(digests[o] for o in self.outputs).encode()).hexdigest()[:20]

    def draw(self) -> str:
        """One line per node: ``name ← op(inputs)``, sources first."""
        lines = [f"{s:>16}   (input)" for s in self.sources]
        lines += [f"{n.name:>16} ← {n.op}({', '.join(n.inputs)})" for n in self.nodes]
        return "\n".join(lines)


def parse_cell(text: str) -> RecurrentCell:
    """Parse and check the string form; raise ``ValueError`` naming what is wrong."""
    nodes = []
    for i, part in enumerate(p.strip() for p in text.strip().split(";")):
        match = _NODE.match(part.replace(" ", ""))
        if not match:
            raise ValueError(f"part {i} {part!r} is not of the form name=op(input,...)")
        inputs = tuple(s for s in match["inputs"].split(",") if s)
        nodes.append(Node(match["name"], match["op"], inputs))
    try:
        return RecurrentCell(nodes)
    except ValueError as err:
        raise ValueError(f"{text[:60]!r}{'…' if len(text) > 60 else ''}: {err}") from None
