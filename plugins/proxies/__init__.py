"""Built-in training-free proxies."""

from automl import hookimpl
from automl_plugins.proxies.counts import FlopsProxy, ParamsProxy
from automl_plugins.proxies.gradients import (
    FisherProxy,
    GradNormProxy,
    GraspProxy,
    JacobCovProxy,
    NwotProxy,
    SnipProxy,
)
from automl_plugins.proxies.synflow import SynflowProxy
from automl_plugins.proxies.zen import ZenProxy

PROXIES = (ParamsProxy, FlopsProxy, SynflowProxy, GradNormProxy, SnipProxy, GraspProxy, FisherProxy,
           JacobCovProxy, NwotProxy, ZenProxy)


@hookimpl
def register_proxies(register):
    for proxy in PROXIES:
        register(proxy)
