"""Built-in tasks."""

from automl import hookimpl
from automl_plugins.tasks.digits import DigitsTask


@hookimpl
def register_tasks(register):
    register(DigitsTask)
