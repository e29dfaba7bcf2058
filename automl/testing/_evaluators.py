"""The evaluator contract: declared metrics, results that survive JSON, cost figures."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from automl.candidate import Candidate
from automl.costs import COST_METRICS
from automl.evaluators import EvalContext, EvalResult, Evaluator
from automl.space import SearchSpace
from automl.testing._common import (
    ContractError,
    PluginContract,
    configured,
    example_settings,
    plugin_space,
    same_value,
    seeded_candidates,
    table_of,
)


def evaluator_space(cls: type[Evaluator], settings: Mapping[str, Any] | None = None) -> SearchSpace:
    """The class's ``example_space``, or tiny NB201 cells on digits scored by the evaluator (``settings``,
    default its ``example``) with its first metric as objective."""
    if getattr(cls, "example_space", None) is not None:
        return plugin_space(cls, "evaluator", settings, {})
    metrics = configured(cls, settings).metrics()
    return plugin_space(
        cls,
        "evaluator",
        settings,
        {
            "study": {"name": "contract", "seed": 0, "sampler": "random"},
            "task": table_of("tasks", "digits"),
            "dimensions": [table_of("dimensions", "nb201")],
            "evaluator": {"name": cls.name, **example_settings(cls, settings)},
            "objectives": [{"metric": metrics[0] if metrics else "params"}],
        },
    )


def evaluate(evaluator: Evaluator, candidate: Candidate, seed: int = 0) -> EvalResult:
    """``evaluator.evaluate`` on the CPU without a trial, its result as an ``EvalResult``."""
    out = evaluator.evaluate(candidate, EvalContext(None, seed=seed, device="cpu"))
    if not isinstance(out, (EvalResult, Mapping)):
        raise ContractError(
            f"evaluator {evaluator.name!r} returned {type(out).__name__}; return an EvalResult or a mapping of scores"
        )
    return EvalResult.coerce(out)


def result_costs(result: EvalResult) -> Mapping[str, Any] | None:
    """The cost figures a result carries (``EvalResult.costs``)."""
    return result.costs


def check_scores_declared(evaluator: Evaluator, result: EvalResult) -> None:
    """Score names are among ``metrics()``; every score is a float; a NaN score has a reason."""
    declared = list(evaluator.metrics())
    extra = [k for k in result.scores if k not in declared]
    if extra:
        raise ContractError(
            f"evaluator {evaluator.name!r} returned scores {extra} that metrics() does not declare ({declared}): "
            f"objectives are validated against metrics()"
        )
    for key, value in result.scores.items():
        if isinstance(value, bool) or not isinstance(value, float):
            raise ContractError(f"evaluator {evaluator.name!r}: score {key!r} is {value!r}, not a float")
        if math.isnan(value) and not result.reasons.get(key):
            raise ContractError(f"evaluator {evaluator.name!r}: score {key!r} is NaN without a reason in `reasons`")


def check_json_round_trip(evaluator: Evaluator, result: EvalResult) -> None:
    """``EvalResult.from_json(json.loads(json.dumps(result.to_json())))`` equals the result (NaN equal to NaN)."""
    try:
        text = json.dumps(result.to_json())
    except (TypeError, ValueError) as err:
        raise ContractError(f"evaluator {evaluator.name!r} returned a result that is not JSON: {err}") from None
    back = EvalResult.from_json(json.loads(text))
    for field in dataclasses.fields(EvalResult):
        before, after = getattr(result, field.name), getattr(back, field.name)
        if not same_value(before, after):
            raise ContractError(
                f"evaluator {evaluator.name!r}: the result's {field.name} changes through JSON: {before!r} comes "
                f"back as {after!r} (record plain JSON values: dicts, lists, str, int, float, bool, None)"
            )


def check_costs(evaluator: Evaluator, result: EvalResult) -> None:
    """The cost figures (``params``, ``flops``, ``size_bits``) are there, as non-negative finite numbers."""
    if "costs" in result.info:
        raise ContractError(
            f"evaluator {evaluator.name!r}: cost figures go in EvalResult.costs, not info['costs'] (readers look there)"
        )
    costs = result_costs(result)
    if not isinstance(costs, Mapping):
        raise ContractError(f"evaluator {evaluator.name!r}: the evaluated result carries no cost figures")
    for name in COST_METRICS:
        value = costs.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ContractError(
                f"evaluator {evaluator.name!r}: cost {name!r} is {value!r}; the costs it returns must hold "
                f"{', '.join(COST_METRICS)} (leave them out and the core computes them)"
            )


class EvaluatorContract(PluginContract):
    """Contract suite for an evaluator (``automl.Evaluator``): subclass it and set ``evaluator``.

    The space is the class's ``example_space`` (a full search-space table whose ``[evaluator]`` is this
    one) or tiny NB201 cells on digits evaluated with ``settings`` (default: the class's ``example``).
    Two seeded candidates are evaluated on the CPU: score names are among ``metrics()``, floats, NaN
    only with a reason; the result survives a JSON round-trip; evaluated through ``automl.evaluate``,
    it carries the cost figures.
    """

    plugin_attribute: ClassVar[str] = "evaluator"
    evaluator: ClassVar[type[Evaluator] | None] = None
    candidates: ClassVar[int] = 2

    @pytest.fixture(scope="class")
    def space(self, plugin_class: type[Evaluator]) -> SearchSpace:
        return evaluator_space(plugin_class, self.settings)

    @pytest.fixture(scope="class")
    def results(self, space: SearchSpace) -> list[EvalResult]:
        return [evaluate(space.evaluator, c) for _, c in seeded_candidates(space, self.candidates)]

    def test_scores_are_declared_metrics(self, space: SearchSpace, results: list[EvalResult]) -> None:
        for result in results:
            check_scores_declared(space.evaluator, result)

    def test_result_survives_json(self, space: SearchSpace, results: list[EvalResult]) -> None:
        for result in results:
            check_json_round_trip(space.evaluator, result)

    def test_costs_are_present(self, space: SearchSpace) -> None:
        import automl

        _, candidate = seeded_candidates(space, 1)[0]
        check_costs(space.evaluator, automl.evaluate(candidate, space.evaluator, seed=0, device="cpu"))
