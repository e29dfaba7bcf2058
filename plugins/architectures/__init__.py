"""Built-in architecture spaces."""

from automl import hookimpl
from automl_plugins.architectures.flexibert import FlexiBERTDimension
from automl_plugins.architectures.mlp import MLPDimension
from automl_plugins.architectures.nb201 import NB201Dimension
from automl_plugins.architectures.nlp_rnn import RecurrentDimension


@hookimpl
def register_dimensions(register):
    register(NB201Dimension)
    register(RecurrentDimension)
    register(FlexiBERTDimension)
    register(MLPDimension)
