"""Built-in training-free proxies, and the ``automl score`` command that computes them for a list of architectures."""

from automl import hookimpl
from automl_plugins.proxies.aznas import (
    AzComplexityProxy,
    AzExpressivityProxy,
    AzProgressivityProxy,
    AzTrainabilityProxy,
)
from automl_plugins.proxies.counts import FlopsProxy, ParamsProxy
from automl_plugins.proxies.gradients import (
    FisherProxy,
    GradNormProxy,
    GraspProxy,
    JacobCovProxy,
    NwotProxy,
    SnipProxy,
)
from automl_plugins.proxies.lga import LgaProxy
from automl_plugins.proxies.patterns import MecoProxy, SwapProxy
from automl_plugins.proxies.recurrent import HiddenCovProxy
from automl_plugins.proxies.score import SCORE_COMMAND, score_architectures
from automl_plugins.proxies.synflow import SynflowProxy
from automl_plugins.proxies.transformer import (
    ActivationDistanceProxy,
    HeadConfidenceProxy,
    SoftmaxConfidenceProxy,
    SynapticSaliencyProxy,
    WpcaProxy,
)
from automl_plugins.proxies.zen import ZenProxy
from automl_plugins.proxies.zico import ZicoProxy

PROXIES = (
    ParamsProxy,
    FlopsProxy,
    SynflowProxy,
    GradNormProxy,
    SnipProxy,
    GraspProxy,
    FisherProxy,
    JacobCovProxy,
    NwotProxy,
    ZenProxy,
    ZicoProxy,
    MecoProxy,
    SwapProxy,
    AzExpressivityProxy,
    AzProgressivityProxy,
    AzTrainabilityProxy,
    AzComplexityProxy,
    LgaProxy,
    HiddenCovProxy,
    WpcaProxy,
    HeadConfidenceProxy,
    SoftmaxConfidenceProxy,
    ActivationDistanceProxy,
    SynapticSaliencyProxy,
)

__all__ = ["PROXIES", "score_architectures"]


@hookimpl
def register_proxies(register):
    for proxy in PROXIES:
        register(proxy)


@hookimpl
def register_commands(register):
    register(SCORE_COMMAND)
