"""Built-in tasks: scikit-learn's digits, the bundled text corpus, and a user's own data.

From Python, ``from_data`` builds a task from tensors, arrays or a ``torch.utils.data.Dataset``
(``as_task`` also passes a ``Task`` through) and ``with_task`` puts it into a search space.
"""

from automl import hookimpl
from automl_plugins.tasks.arrays import ArraysTask
from automl_plugins.tasks.digits import DigitsTask
from automl_plugins.tasks.image_folder import ImageFolderTask
from automl_plugins.tasks.tabular import CsvTask
from automl_plugins.tasks.tensors import TensorTask, as_task, from_data, with_task
from automl_plugins.tasks.text import LanguageModellingTask, MaskedLanguageModellingTask, WordOrderTask
from automl_plugins.tasks.text_files import TextClassificationTask

__all__ = [
    "ArraysTask",
    "CsvTask",
    "DigitsTask",
    "ImageFolderTask",
    "LanguageModellingTask",
    "MaskedLanguageModellingTask",
    "TensorTask",
    "TextClassificationTask",
    "WordOrderTask",
    "as_task",
    "from_data",
    "with_task",
]


@hookimpl
def register_tasks(register):
    register(DigitsTask)
    register(LanguageModellingTask)
    register(MaskedLanguageModellingTask)
    register(WordOrderTask)
    register(ArraysTask)
    register(ImageFolderTask)
    register(CsvTask)
    register(TextClassificationTask)
