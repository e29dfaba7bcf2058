"""Built-in evaluators."""

from automl import hookimpl
from automl_plugins.evaluators.proxies import ProxyEvaluator
from automl_plugins.evaluators.supernet import SupernetEvaluator
from automl_plugins.evaluators.tables import TableEvaluator
from automl_plugins.evaluators.training import TrainingEvaluator


@hookimpl
def register_evaluators(register):
    register(ProxyEvaluator)
    register(SupernetEvaluator)
    register(TableEvaluator)
    register(TrainingEvaluator)
