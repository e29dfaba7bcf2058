"""NAS-Bench-NLP-style recurrent cells (Klyuchnikov et al., IEEE Access 2022)."""

from automl_plugins.architectures.nlp_rnn.cell import OPERATIONS, Node, RecurrentCell, parse_cell
from automl_plugins.architectures.nlp_rnn.model import RecurrentNetwork
from automl_plugins.architectures.nlp_rnn.space import RecurrentArchitecture, RecurrentDimension

__all__ = [
    "OPERATIONS",
    "Node",
    "RecurrentArchitecture",
    "RecurrentCell",
    "RecurrentDimension",
    "RecurrentNetwork",
    "parse_cell",
]
