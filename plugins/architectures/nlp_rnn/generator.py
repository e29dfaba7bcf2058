"""Sampling NAS-Bench-NLP cells define-by-run so that every sample obeys the space's rules.

The generator builds a cell in *units*: a unit is one operation, or a ``linear`` node together with the
activation that must follow it (op ``linear_tanh``, ``linear_sigm``, ``linear_leaky_relu``; 2 or 3 inputs).
Parameters, in order (names without the dimension's prefix):

- ``hidden``: the number of hidden states k (1 … ``max_hidden``);
- ``nodes``: the number of free units n (``min_nodes`` … ``max_nodes``);
- ``u{i}.op`` (and ``u{i}.arity`` for a linear unit), ``u{i}.in0``, ``u{i}.in1``, … for each free unit.
  Its first input is drawn from the values nothing has read yet, the others from every value so far
  (``x``, the ``h_prev_*`` and earlier units). This is what keeps every input used and no node dead.
- Then, without parameters, the values still unread are folded pairwise, oldest first, by
  ``elementwise_sum`` nodes (``merge_*``) until at most k remain and no ``h_prev`` is among them.
- ``o{j}.op``, ``o{j}.arity``, ``o{j}.in*`` for each output ``h_new_j``: its first input is the j-th
  unread value when there is one; other inputs come from every value but the ``h_prev_*`` (an ``h_new``
  never reads an ``h_prev`` directly).

Free units are named ``node_{i}``, a linear unit's linear node ``<unit>_linear``.
``invert`` recovers the parameters of a cell in this layout (parsing any other valid cell fails with a
clear message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automl_plugins.architectures.nlp_rnn.cell import ACTIVATIONS, Node, RecurrentCell, hidden_name

UNIT_OPS = (
    "linear_tanh",
    "linear_sigm",
    "linear_leaky_relu",
    "blend",
    "elementwise_prod",
    "elementwise_sum",
    *ACTIVATIONS,
)


class _Chooser:
    """Answers the generator's choices from a trial (sampling) or from a target cell (inversion)."""

    def __init__(self, trial: Any = None, target: RecurrentCell | None = None) -> None:
        self.trial = trial
        self.target = {node.name: node for node in target.nodes} if target is not None else None
        self.params: dict[str, Any] = {}

    def value(self, name: str, choices: list[Any], want: Any, *, categorical: bool = False) -> Any:
        if self.trial is not None:
            if categorical:
                return self.trial.suggest_categorical(name, choices)
            if len(choices) == 1 and isinstance(choices[0], int):
                return choices[0]
            return self.trial.suggest_int(name, min(choices), max(choices))
        if want not in choices:
            raise ValueError(f"{name}: {want!r} is not among the generator's choices {choices}")
        self.params[name] = want
        return want

    def item(self, name: str, items: list[str], want: str | None) -> str:
        if self.trial is not None:
            return items[self.trial.suggest_int(name, 0, len(items) - 1)] if len(items) > 1 else items[0]
        if want not in items:
            raise ValueError(f"{name}: input {want!r} is not available there (available: {', '.join(items)})")
        if len(items) > 1:
            self.params[name] = items.index(want)
        return want

    def wanted(self, name: str) -> tuple[str | None, Node | None]:
        """The unit op and the node holding the unit's inputs that the target cell has under ``name``."""
        if self.target is None:
            return None, None
        node = self.target.get(name)
        if node is None:
            raise ValueError(f"the cell has no node {name!r} where the generator's layout puts one")
        linear = self.target.get(f"{name}_linear")
        if linear is not None and node.inputs == (linear.name,) and linear.op == "linear":
            return "linear_" + node.op.removeprefix("activation_"), linear
        return node.op, node


def generate(chooser: _Chooser, settings: Mapping[str, Any]) -> RecurrentCell:
    target_outputs = None
    if chooser.target is not None:
        target_outputs = sum(1 for name in chooser.target if name.startswith("h_new_") and "_linear" not in name)
    k = chooser.value("hidden", list(range(1, settings["max_hidden"] + 1)), target_outputs)
    target_units = None
    if chooser.target is not None:
        target_units = sum(1 for name in chooser.target if name.startswith("node_") and "_linear" not in name)
    n = chooser.value("nodes", list(range(settings["min_nodes"], settings["max_nodes"] + 1)), target_units)
    pool = ["x", *(hidden_name(i) for i in range(k))]
    unread = list(pool)
    nodes: list[Node] = []

    def unit(prefix: str, name: str, first: list[str] | str, rest: list[str]) -> None:
        want_op, source = chooser.wanted(name)
        op = chooser.value(f"{prefix}.op", list(UNIT_OPS), want_op, categorical=True)
        if op.startswith("linear"):
            arity = chooser.value(f"{prefix}.arity", [2, 3], len(source.inputs) if source else None)
        else:
            arity = 3 if op == "blend" else 2 if op.startswith("elementwise") else 1
        wants = list(source.inputs) if source is not None else [None] * arity
        if len(wants) != arity:
            raise ValueError(f"node {name!r} has {len(wants)} inputs where {arity} belong")
        if isinstance(first, str):
            if wants[0] is not None and wants[0] != first:
                raise ValueError(f"node {name!r} reads {wants[0]!r} first where the generator reads {first!r}")
            inputs = [first]
        else:
            inputs = [chooser.item(f"{prefix}.in0", first, wants[0])]
        inputs += [chooser.item(f"{prefix}.in{j}", rest, wants[j]) for j in range(1, arity)]
        for value in inputs:
            if value in unread:
                unread.remove(value)
        if op.startswith("linear"):
            nodes.append(Node(f"{name}_linear", "linear", tuple(inputs)))
            nodes.append(Node(name, "activation_" + op.removeprefix("linear_"), (f"{name}_linear",)))
        else:
            nodes.append(Node(name, op, tuple(inputs)))

    for i in range(n):
        name = f"node_{i}"
        unit(f"u{i}", name, list(unread), list(pool))
        pool.append(name)
        unread.append(name)
    merges = 0
    while len(unread) > k or any(v.startswith("h_prev_") for v in unread):
        a, b = unread[0], unread[1]
        name = f"merge_{merges}"
        nodes.append(Node(name, "elementwise_sum", (a, b)))
        unread = unread[2:] + [name]
        pool.append(name)
        merges += 1
    leftover = list(unread)
    out_pool = [v for v in pool if not v.startswith("h_prev_")]
    for j in range(k):
        name = hidden_name(j, new=True)
        first: list[str] | str = leftover[j] if j < len(leftover) else list(out_pool)
        unit(f"o{j}", name, first, list(out_pool))
        out_pool.append(name)
    return RecurrentCell(nodes)


def sample_cell(trial: Any, settings: Mapping[str, Any]) -> RecurrentCell:
    """A valid cell sampled on ``trial`` (anything with ``suggest_int`` / ``suggest_categorical``)."""
    return generate(_Chooser(trial=trial), settings)


def invert(cell: RecurrentCell, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters for which ``sample_cell`` returns ``cell``; ``ValueError`` if there are none."""
    layout = (
        "the cell is valid but not in the generator's layout (node names node_i, merge_i, h_new_j in "
        "generation order, within this dimension's max_hidden / min_nodes / max_nodes)"
    )
    chooser = _Chooser(target=cell)
    try:
        rebuilt = generate(chooser, settings)
    except ValueError as err:
        raise ValueError(f"{layout}: {err}") from None
    if rebuilt.to_string() != cell.to_string():
        raise ValueError(layout)
    return chooser.params
