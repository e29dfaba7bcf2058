"""Built-in architecture spaces."""

from automl import hookimpl
from automl_plugins.architectures.nb201 import NB201Dimension


@hookimpl
def register_dimensions(register):
    register(NB201Dimension)
