"""Built-in evaluators."""

from automl import hookimpl
from automl_plugins.evaluators.proxies import ProxyEvaluator


@hookimpl
def register_evaluators(register):
    register(ProxyEvaluator)
