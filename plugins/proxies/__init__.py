"""Built-in training-free proxies."""

from automl import hookimpl
from automl_plugins.proxies.counts import ParamsProxy
from automl_plugins.proxies.synflow import SynflowProxy


@hookimpl
def register_proxies(register):
    register(ParamsProxy)
    register(SynflowProxy)
