"""Built-in search strategies that spend few true evaluations: RoBoT, proxy-then-oracle and the baselines."""

from automl_plugins.strategies.baselines import RandomSearch, RegularizedEvolution
from automl_plugins.strategies.ranked import ProxyThenOracle
from automl_plugins.strategies.robot import RoBoT

from automl import hookimpl


@hookimpl
def register_strategies(register):
    register(RoBoT)
    register(ProxyThenOracle)
    register(RandomSearch)
    register(RegularizedEvolution)
