"""NAS-Bench-201 cells as networkx graphs: identities of isomorphic cells, and a text drawing.

A cell is a DAG over nodes 0 (input) to 3 (output); edge (i, j) carries an operation and node j sums the
outputs of its incoming edges. Two operations do not transform their input: ``none`` outputs zeros and
``skip_connect`` passes its input through. Cells whose graphs differ only in how these two appear can
compute the same function, and the identities below merge them.

Two identities, from coarse to strict:

``function_id`` — the computed function. ``none`` edges are removed, a node no path from the input
reaches is zero (and so is any operation applied to it: ReLU-conv and pooling of zeros are zeros at
initialisation), nodes from which the output cannot be reached are dead, a ``skip_connect`` contributes
its source's terms to the sum, and sums are commutative. 4,930 of the 15,625 cells are distinct.

``canonical_id`` — the benchmark's published convention (Dong & Yang 2020 report 6,466 unique cells),
which every NB201 result that quotes unique architectures uses. Each node is described by a string: the
input is ``0``; a ``none`` edge is the zero term ``#`` that stays in its target's list (so the number of
``none`` inputs of a node is part of its identity); an edge leaving a node described as just ``#`` (a
node whose only input is zero) is ``#`` too; ``skip_connect`` contributes its source's description as
one string (the source's sum is not flattened); any other operation contributes ``(source)@op``; a node
is its terms sorted as strings and joined by ``+``. The exact spelling matters: because a skipped sum is
inserted as one string, the string order decides which nestings coincide, and only this spelling gives
the published 6,466. Equal canonical ids imply equal functions (checked over the whole space in the
tests), never the reverse: it refines ``function_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

INPUT, OUTPUT = 0, 3
ZERO = "#"


def cell_graph(ops: Sequence[str], edges: Sequence[tuple[int, int]]) -> nx.DiGraph:
    """The cell as a directed graph: nodes 0..3, one edge per (source, target) with attribute ``op``."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(INPUT, OUTPUT + 1))
    for (source, target), op in zip(edges, ops):
        graph.add_edge(source, target, op=op)
    return graph


def live_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """The part of the cell that can affect the output: no ``none`` edges, no dead or unreachable nodes."""
    live = nx.DiGraph()
    live.add_nodes_from(graph.nodes)
    live.add_edges_from((u, v, d) for u, v, d in graph.edges(data=True) if d["op"] != "none")
    reachable = nx.descendants(live, INPUT) | {INPUT}
    useful = nx.ancestors(live, OUTPUT) | {OUTPUT}
    return live.subgraph(reachable & useful).copy()


def function_id(graph: nx.DiGraph) -> str:
    """An expression of the output in the input ``x``: equal exactly for cells computing the same function."""
    live = live_graph(graph)
    if OUTPUT not in live or INPUT not in live:
        return "0"
    terms: dict[int, list[str]] = {INPUT: ["x"]}
    for node in nx.topological_sort(live):
        if node == INPUT:
            continue
        node_terms: list[str] = []
        for source in live.predecessors(node):
            op = live.edges[source, node]["op"]
            if op == "skip_connect":
                node_terms += terms[source]
            else:
                node_terms.append(f"{op}({'+'.join(terms[source])})")
        terms[node] = sorted(node_terms)
    return "+".join(terms[OUTPUT])


def benchmark_id(graph: nx.DiGraph) -> str:
    """The benchmark's convention for unique cells (see the module docstring): 6,466 classes."""
    described: dict[int, str] = {INPUT: "0"}
    for node in nx.topological_sort(graph):
        if node == INPUT:
            continue
        node_terms = []
        for source in sorted(graph.predecessors(node)):
            op = graph.edges[source, node]["op"]
            if op == "none" or described[source] == ZERO:
                node_terms.append(ZERO)
            elif op == "skip_connect":
                node_terms.append(described[source])
            else:
                node_terms.append(f"({described[source]})@{op}")
        described[node] = "+".join(sorted(node_terms))
    return described[OUTPUT]


def draw_cell(graph: nx.DiGraph) -> str:
    """A text drawing: one line per node with the operations feeding it; dead parts are marked."""
    live = live_graph(graph)
    lines = []
    for node in sorted(graph.nodes):
        role = " (input)" if node == INPUT else " (output)" if node == OUTPUT else ""
        if node == INPUT:
            lines.append(f"node {node}{role}")
            continue
        inputs = []
        for source in sorted(graph.predecessors(node)):
            op = graph.edges[source, node]["op"]
            inputs.append("0" if op == "none" else f"{op}(n{source})")
        if node in live:
            state = ""
        else:
            state = "   [always zero]" if node == OUTPUT else "   [no effect on the output]"
        lines.append(f"node {node}{role} = {' + '.join(inputs)}{state}")
    width = max(len(line) for line in lines)
    rule = "─" * width
    return "\n".join([rule, *lines, rule])
