"""Contract suites every plugin of a kind must pass, in the manner of Optuna's sampler test cases.

A plugin author subclasses the suite of the plugin's kind and names the class under test; pytest
collects the subclass and runs every check::

    from automl.testing import ProxyContract

    class TestMyProxy(ProxyContract):
        proxy = MyProxy

The suites: ``ProxyContract`` (``proxy = ...``), ``DimensionContract`` and ``ArchitectureContract``
(``dimension = ...``), ``EvaluatorContract`` (``evaluator = ...``), ``TaskContract`` (``task = ...``)
and ``StrategyContract`` (``strategy = ...``). The plugin is configured with the test class's
``settings`` when it sets them, else with the plugin class's ``example`` (the settings of a small, fast
instance); a plugin with required options and neither fails with a message asking for ``example``.
Dimensions, evaluators and strategies are tried in a whole search space: tiny NB201 cells on the
digits task unless the plugin class declares ``example_space`` (a search-space table, as
``SearchSpace.from_dict`` takes it, that uses the plugin). ``every_registered(kind)`` parametrizes a
suite over every registered plugin of a kind, built-in and installed::

    @every_registered("proxies")
    class TestEveryProxy(ProxyContract):
        pass

The ``check_*`` functions are the rules themselves; each raises ``ContractError`` (an
``AssertionError``) saying what the plugin did. This module needs pytest.
"""

from __future__ import annotations

try:
    import pytest  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("automl.testing needs pytest: pip install 'automl[dev]' (or pytest)") from err

from automl.testing._common import (
    ContractError,
    configured,
    every_registered,
    example_settings,
    registered_plugins,
)
from automl.testing._dimensions import (
    ArchitectureContract,
    DimensionContract,
    check_canonical_id,
    check_forward,
    check_rebuilt_from_values,
    check_seeded_sampling,
    check_string_round_trip,
    dimension_space,
)
from automl.testing._evaluators import (
    EvaluatorContract,
    check_costs,
    check_json_round_trip,
    check_scores_declared,
    evaluator_space,
)
from automl.testing._proxies import (
    ProxyContract,
    check_proxy_leaves_candidate_untouched,
    check_proxy_repeats,
    check_proxy_value,
    proxy_spaces,
)
from automl.testing._strategies import StrategyContract, check_budget, check_resumes, strategy_space
from automl.testing._tasks import TaskContract, check_batch_shape, check_fingerprint, check_seeded_batches

__all__ = [
    "ArchitectureContract",
    "ContractError",
    "DimensionContract",
    "EvaluatorContract",
    "ProxyContract",
    "StrategyContract",
    "TaskContract",
    "check_batch_shape",
    "check_budget",
    "check_canonical_id",
    "check_costs",
    "check_fingerprint",
    "check_forward",
    "check_json_round_trip",
    "check_proxy_leaves_candidate_untouched",
    "check_proxy_repeats",
    "check_proxy_value",
    "check_rebuilt_from_values",
    "check_resumes",
    "check_scores_declared",
    "check_seeded_batches",
    "check_seeded_sampling",
    "check_string_round_trip",
    "configured",
    "dimension_space",
    "evaluator_space",
    "every_registered",
    "example_settings",
    "proxy_spaces",
    "registered_plugins",
    "strategy_space",
]
