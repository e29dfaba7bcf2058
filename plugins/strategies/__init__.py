"""Built-in search strategies that spend few true evaluations: RoBoT, proxy-then-oracle and the baselines."""

from automl import hookimpl
from automl_plugins.strategies.baselines import RandomSearch, RegularizedEvolution
from automl_plugins.strategies.ranked import ProxyThenOracle
from automl_plugins.strategies.robot import RoBoT


@hookimpl
def register_strategies(register):
    register(RoBoT)
    register(ProxyThenOracle)
    register(RandomSearch)
    register(RegularizedEvolution)
