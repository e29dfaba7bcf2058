"""Built-in tasks."""

from automl import hookimpl
from automl_plugins.tasks.digits import DigitsTask
from automl_plugins.tasks.text import LanguageModellingTask, MaskedLanguageModellingTask, WordOrderTask


@hookimpl
def register_tasks(register):
    register(DigitsTask)
    register(LanguageModellingTask)
    register(MaskedLanguageModellingTask)
    register(WordOrderTask)
