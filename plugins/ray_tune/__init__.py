"""Ray Tune: training scheduled on a Ray cluster (or a private Ray on this machine), recorded in the study.

Strategies: ``ray_tune`` (every trial through Ray Tune) and ``two_stage`` (screen a pool with proxies,
train the best through Ray Tune).
"""

from automl import hookimpl
from automl_plugins.ray_tune.strategy import RayTuneStrategy
from automl_plugins.ray_tune.two_stage import TwoStageStrategy


@hookimpl
def register_strategies(register):
    register(RayTuneStrategy)
    register(TwoStageStrategy)
