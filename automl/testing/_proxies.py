"""The proxy contract: a finite float or NaN with a reason, the same value under the same seed, nothing touched."""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any, ClassVar

import pytest
import torch

from automl.candidate import Candidate
from automl.proxies import Proxy, ProxyValue
from automl.space import SearchSpace
from automl.tasks import Batch
from automl.testing._common import (
    ARCHITECTURE_SPACES,
    ContractError,
    PluginContract,
    build_space,
    configured,
    counting_space,
    seeded_candidates,
    table_of,
)

_spaces: dict[str, SearchSpace] = {}


def kind_space(kind: str) -> SearchSpace:
    """A small space of architectures of ``kind`` built from the built-in plugins' examples (skips if absent)."""
    if kind not in ARCHITECTURE_SPACES:
        pytest.skip(f"no built-in space of {kind!r} architectures: give the proxy an `example_space`")
    if kind not in _spaces:
        task, dimension = ARCHITECTURE_SPACES[kind]
        _spaces[kind] = counting_space(table_of("tasks", task), [table_of("dimensions", dimension)])
    return _spaces[kind]


def proxy_spaces(proxy_class: type[Proxy]) -> dict[str, SearchSpace]:
    """A space for each kind the proxy applies to: its ``example_space`` for its own kind, else the built-ins'.

    Kinds without an installed space are left out; the test is skipped when none is left.
    """
    spaces: dict[str, SearchSpace] = {}
    example = getattr(proxy_class, "example_space", None)
    if example is not None:
        space = build_space(example)
        found = space.architecture
        if found is None:
            raise ContractError(f"{proxy_class.__name__}.example_space has no architecture dimension")
        spaces[found[1].arch_kind] = space
    missing = []
    for kind in proxy_class.applies_to:
        if kind in spaces:
            continue
        try:
            spaces[kind] = kind_space(kind)
        except pytest.skip.Exception as skipped:
            missing.append(str(skipped))
    if not spaces:
        pytest.skip("; ".join(missing) or f"{proxy_class.__name__}.applies_to is empty")
    return spaces


def example_candidate(space: SearchSpace) -> Candidate:
    """The first candidate a seeded random sampler draws from ``space``."""
    return seeded_candidates(space, 1)[0][1]


def score(proxy: Proxy, candidate: Candidate, batch: Batch, seed: int = 0) -> Any:
    """``proxy.score`` as the proxy evaluator calls it: the global RNG seeded, and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return proxy.score(candidate, batch)


def _value(proxy: Proxy, out: Any) -> tuple[float, str | None]:
    if isinstance(out, ProxyValue):
        value, reason = out.value, out.reason
    else:
        value, reason = out, None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ContractError(
            f"proxy {proxy.name!r} returned {out!r} ({type(out).__name__}): return a float, or a ProxyValue "
            f"(ProxyValue.nan(reason) when it cannot score)"
        )
    return float(value), reason


def check_proxy_value(proxy: Proxy, candidate: Candidate, batch: Batch) -> float:
    """The score is a finite real number, or NaN with a reason; returns the value."""
    value, reason = _value(proxy, score(proxy, candidate, batch))
    if math.isnan(value) and not (isinstance(reason, str) and reason.strip()):
        raise ContractError(
            f"proxy {proxy.name!r} returned NaN without a reason on {candidate.describe()!r}: "
            f"return ProxyValue.nan('why it cannot score')"
        )
    if math.isinf(value):
        raise ContractError(
            f"proxy {proxy.name!r} returned {value} on {candidate.describe()!r}: return a finite value, or "
            f"ProxyValue.nan(reason)"
        )
    return value


def check_proxy_repeats(proxy: Proxy, space: SearchSpace, params: dict[str, Any], batch_seed: int = 0) -> None:
    """Two fresh candidates with the same values, on the same seeded batch, under the same seed: one value."""
    values = []
    for _ in range(2):
        candidate = space.candidate(params)
        batch = candidate.task.batch(seed=batch_seed)
        values.append(_value(proxy, score(proxy, candidate, batch))[0])
    first, second = values
    if not (first == second or (math.isnan(first) and math.isnan(second))):
        raise ContractError(
            f"proxy {proxy.name!r} gave {first!r}, then {second!r} for the same candidate, batch and seed: a "
            f"proxy must draw its random numbers from torch's seeded generator (or a generator seeded from "
            f"the candidate) so that scores repeat and can be cached"
        )


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    if before.keys() != after.keys():
        return sorted(before.keys() ^ after.keys())
    return [k for k in before if before[k].shape != after[k].shape or not torch.equal(before[k], after[k])]


def check_proxy_leaves_candidate_untouched(proxy: Proxy, candidate: Candidate, batch: Batch) -> None:
    """Scoring changes neither the candidate (id, values, the weights its models are built with) nor the batch."""
    identity, params = candidate.id, copy.deepcopy(candidate.params)
    built = _weights(candidate.build_model())
    reference = _weights(candidate.reference_model)
    inputs = batch.inputs.clone()
    targets = None if batch.targets is None else batch.targets.clone()
    score(proxy, candidate, batch)
    problems = []
    if candidate.id != identity:
        problems.append(f"its id went from {identity} to {candidate.id}")
    if candidate.params != params:
        problems.append(f"its values went from {params} to {candidate.params}")
    changed = _changed(built, _weights(candidate.build_model()))
    if changed:
        problems.append(f"a model built from it afterwards has other weights ({', '.join(changed[:3])})")
    changed = _changed(reference, _weights(candidate.reference_model))
    if changed:
        problems.append(f"its reference_model was modified ({', '.join(changed[:3])})")
    if not torch.equal(batch.inputs, inputs) or (targets is not None and not torch.equal(batch.targets, targets)):
        problems.append("the batch's tensors were modified in place")
    if problems:
        raise ContractError(
            f"proxy {proxy.name!r} changed what it scored: {'; '.join(problems)}. Score a model of your own "
            f"(candidate.build_model() gives a fresh one) and leave the candidate and the batch as they are"
        )


class ProxyContract(PluginContract):
    """Contract suite for a proxy (``automl.Proxy``): subclass it and set ``proxy``.

    For each architecture kind in the proxy's ``applies_to`` (``cell``, ``recurrent``, ``transformer``),
    a tiny candidate is built from the built-in spaces (NB201 on digits, NAS-Bench-NLP cells on
    ``text_lm``, FlexiBERT on ``text_mlm``); a proxy of another kind declares ``example_space``.
    The proxy must return a finite float, or NaN with a reason; the same value for the same candidate,
    batch and seed; and leave the candidate and the batch untouched. ``settings`` (default: the
    class's ``example``) configures the proxy::

        from automl.testing import ProxyContract

        class TestMyProxy(ProxyContract):
            proxy = MyProxy
    """

    plugin_attribute: ClassVar[str] = "proxy"
    proxy: ClassVar[type[Proxy] | None] = None

    @pytest.fixture
    def configured_proxy(self, plugin_class: type[Proxy]) -> Proxy:
        return configured(plugin_class, self.settings)

    @pytest.fixture(scope="class")
    def spaces(self, plugin_class: type[Proxy]) -> dict[str, SearchSpace]:
        return proxy_spaces(plugin_class)

    def test_applies_to_names_architecture_kinds(self, plugin_class: type[Proxy]) -> None:
        kinds = plugin_class.applies_to
        if not kinds or isinstance(kinds, str) or not all(isinstance(k, str) and k for k in kinds):
            raise ContractError(
                f"{plugin_class.__name__}.applies_to must be a tuple of architecture kinds "
                f"(cell, recurrent, transformer), got {kinds!r}"
            )

    def test_value_is_finite_or_nan_with_a_reason(
        self, configured_proxy: Proxy, spaces: dict[str, SearchSpace]
    ) -> None:
        for space in spaces.values():
            candidate = example_candidate(space)
            check_proxy_value(configured_proxy, candidate, candidate.task.batch(seed=0))

    def test_same_seed_gives_the_same_value(self, configured_proxy: Proxy, spaces: dict[str, SearchSpace]) -> None:
        for space in spaces.values():
            check_proxy_repeats(configured_proxy, space, example_candidate(space).params)

    def test_candidate_and_batch_are_left_untouched(
        self, configured_proxy: Proxy, spaces: dict[str, SearchSpace]
    ) -> None:
        for space in spaces.values():
            candidate = example_candidate(space)
            check_proxy_leaves_candidate_untouched(configured_proxy, candidate, candidate.task.batch(seed=0))
