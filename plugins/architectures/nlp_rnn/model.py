"""A stacked recurrent language model (embedding, recurrent layers of one cell, decoder) for any cell.

Contract (the hidden-covariance proxy and training evaluators rely on it):

- ``model(tokens)`` with ``tokens`` ``B×T`` (long) returns ``B×T×V`` logits for a language-modelling task,
  ``B×classes`` (read from the last step of the last layer) for a text-classification task;
- ``model.forward_with_hidden(tokens)`` returns ``(logits, hidden)``: ``hidden`` has one tensor per
  recurrent layer, each ``T×B×H``, the hidden state ``h_prev_0`` ENTERING the cell at every step
  (zeros at step 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from automl_plugins.architectures.nlp_rnn.cell import RecurrentCell

_ACTIVATE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": F.leaky_relu,
}


class CellLayer(nn.Module):
    """One recurrent layer: the cell's graph, with one weight matrix per input of every linear node.

    Element-wise operations may combine ``x`` with hidden values, so ``x`` must be ``H`` wide: an input of
    another width (the embedding, when ``embedding_size != hidden_size``) goes through a linear projection.
    """

    def __init__(self, cell: RecurrentCell, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.project = nn.Linear(input_size, hidden_size, bias=False) if input_size != hidden_size else nn.Identity()
        self.linears = nn.ModuleDict()
        for node in cell.nodes:
            if node.op == "linear":
                self.linears[node.name] = nn.Linear(len(node.inputs) * hidden_size, hidden_size)

    def step(self, x: torch.Tensor, states: list[torch.Tensor]) -> list[torch.Tensor]:
        """One time step: ``x`` is ``B×H`` (projected), ``states`` the k states ``B×H``; returns the k new states."""
        values = {"x": x, **{f"h_prev_{i}": s for i, s in enumerate(states)}}
        for node in self.cell.nodes:
            args = [values[s] for s in node.inputs]
            if node.op == "linear":
                out = self.linears[node.name](torch.cat(args, dim=-1))
            elif node.op == "blend":
                out = args[0] * args[1] + (1 - args[0]) * args[2]
            elif node.op == "elementwise_prod":
                out = args[0] * args[1]
            elif node.op == "elementwise_sum":
                out = args[0] + args[1]
            else:
                out = _ACTIVATE[node.op](args[0])
            values[node.name] = out
        return [values[name] for name in self.cell.outputs]

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` ``B×T×input`` → (outputs ``B×T×H``, hidden states entering each step ``T×B×H``)."""
        inputs = self.project(inputs)
        batch, steps, _ = inputs.shape
        states = [inputs.new_zeros(batch, self.hidden_size) for _ in range(self.cell.hidden)]
        entering, outputs = [], []
        for t in range(steps):
            entering.append(states[0])
            states = self.step(inputs[:, t], states)
            outputs.append(states[0])
        return torch.stack(outputs, dim=1), torch.stack(entering, dim=0)


class RecurrentNetwork(nn.Module):
    def __init__(
        self,
        cell: RecurrentCell,
        *,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        layers: int,
        num_classes: int = 0,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.layers = nn.ModuleList(
            CellLayer(cell, embedding_size if i == 0 else hidden_size, hidden_size) for i in range(layers)
        )
        # norm_layer (from a normalization dimension) normalizes each layer's output sequence.
        self.norms = nn.ModuleList(
            norm_layer(hidden_size, layout="nlc") if norm_layer else nn.Identity() for _ in range(layers)
        )
        self.classify = num_classes > 0
        self.head = nn.Linear(hidden_size, num_classes if self.classify else vocab_size)

    def forward_with_hidden(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and, per layer, the ``T×B×H`` hidden states entering the cell at each step."""
        seq = self.embedding(tokens)
        hidden = []
        for layer, norm in zip(self.layers, self.norms):
            seq, entering = layer(seq)
            seq = norm(seq)
            hidden.append(entering)
        logits = self.head(seq[:, -1] if self.classify else seq)
        return logits, hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(tokens)[0]
