"""Every registered plugin, built-in or installed, against the contract suite of its kind."""

from __future__ import annotations

from automl import ArchitectureDimension
from automl.testing import (
    ArchitectureContract,
    DimensionContract,
    EvaluatorContract,
    ProxyContract,
    StrategyContract,
    TaskContract,
    every_registered,
)

# Strategies that start a Ray cluster: seconds each, so they run with the slow tests.
RAY_STRATEGIES = ("ray_tune", "two_stage")


def _is_architecture(cls: type) -> bool:
    return issubclass(cls, ArchitectureDimension)


@every_registered("proxies")
class TestEveryProxy(ProxyContract):
    pass


@every_registered("dimensions", where=lambda cls: not _is_architecture(cls))
class TestEveryDimension(DimensionContract):
    pass


@every_registered("dimensions", where=_is_architecture)
class TestEveryArchitecture(ArchitectureContract):
    pass


@every_registered("evaluators")
class TestEveryEvaluator(EvaluatorContract):
    pass


@every_registered("tasks")
class TestEveryTask(TaskContract):
    pass


@every_registered("strategies", slow=RAY_STRATEGIES)
class TestEveryStrategy(StrategyContract):
    pass
