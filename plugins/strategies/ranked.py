"""Strategies that rank a pool of candidates by proxies before spending oracle queries.

The cheap evaluator is the space's ``[evaluator]`` (the proxies); the pool's proxy values go through
the score cache, so a second run over the same pool computes none of them again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from automl import Option, SpaceError
from automl_plugins.evaluators.proxies import AGGREGATE_PRESETS
from automl_plugins.strategies.base import EXAMPLE, ORACLE_OPTIONS, OracleStrategy, Queries
from automl_plugins.strategies.pool import (
    TRANSFORMS,
    build_pool,
    combined_scores,
    normalize,
    proxy_matrix,
    ranking,
)

if TYPE_CHECKING:
    from automl import Candidate, SearchContext, SearchSpace

POOL_OPTIONS: dict[str, Option] = {
    **ORACLE_OPTIONS,
    "proxies": Option(
        list,
        default=None,
        item_type=str,
        min_items=1,
        help="the base proxies: scores of the space's [evaluator] (default: all of them); the sets "
        "'robot' (RoBoT's six) and 'default' (the default aggregate's nine) stand for their proxies",
    ),
    "pool_size": Option(
        int,
        default=1000,
        min=1,
        max=100_000,
        help="candidates in the pool: a seeded sample, or the whole space when it is no larger",
    ),
    "whole_space": Option(bool, default=False, help="pool = every candidate of the space (discrete spaces)"),
    "pool_seed": Option(
        int, default=0, min=0, max=2**32 - 1, help="seed of the pool's sample (fixed across strategy seeds)"
    ),
    "transform": Option(
        str,
        default="signed_log",
        choices=TRANSFORMS,
        help="applied to each proxy before min-max normalization over the pool",
    ),
}


# Named base sets: RoBoT's six (its paper's NAS-Bench-201 set) and the default aggregate's nine.
PROXY_SETS: dict[str, tuple[str, ...]] = {
    "robot": ("grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov"),
    "default": AGGREGATE_PRESETS["default"],
}


def expand_proxy_sets(names: list[str] | None) -> list[str]:
    """``names`` with each named set replaced by its proxies, each proxy once, in order."""
    out: list[str] = []
    for name in names or []:
        for proxy in PROXY_SETS.get(name, (name,)):
            if proxy not in out:
                out.append(proxy)
    return out


class Pool:
    """A pool of candidates with their raw and normalized proxy values."""

    def __init__(
        self, candidates: list[Candidate], names: list[str], raw: np.ndarray, normalized: np.ndarray, description: str
    ) -> None:
        self.candidates = candidates
        self.names = names
        self.raw = raw
        self.normalized = normalized
        self.description = description

    def proxy_attrs(self, index: int) -> dict[str, Any]:
        """The candidate's raw proxy values as trial attributes ``proxy.<name>``."""
        return {f"proxy.{name}": float(self.raw[index, col]) for col, name in enumerate(self.names)}

    def ranked(self, weights: np.ndarray) -> np.ndarray:
        return ranking(combined_scores(self.normalized, weights))


class PoolStrategy(OracleStrategy):
    """Base of the strategies that score a pool with the space's evaluator (the proxies)."""

    example = {**EXAMPLE, "pool_size": 6}
    options = POOL_OPTIONS

    def proxy_names(self, space: SearchSpace) -> list[str]:
        return expand_proxy_sets(self.settings["proxies"]) or list(space.evaluator.metrics())

    def validate(self, space: SearchSpace) -> None:
        super().validate(space)
        available = space.evaluator.metrics()
        for i, entry in enumerate(self.settings["proxies"] or []):
            for name in PROXY_SETS.get(entry, (entry,)):
                if name not in available:
                    within = f" (in the set {entry!r})" if entry in PROXY_SETS else ""
                    raise SpaceError(
                        f"{name!r}{within} is not a score of the space's evaluator {space.evaluator.name!r} "
                        f"(the proxies are the [evaluator] section)",
                        key=f"proxies[{i}]",
                        allowed=available,
                    )
        if len(set(self.settings["proxies"] or [])) != len(self.settings["proxies"] or []):  # before expansion
            raise SpaceError("a proxy is listed twice", key="proxies")

    def pool(self, context: SearchContext) -> Pool:
        candidates, description = build_pool(
            context.space,
            size=self.settings["pool_size"],
            whole_space=self.settings["whole_space"],
            seed=self.settings["pool_seed"],
        )
        names = self.proxy_names(context.space)
        raw = proxy_matrix(context, candidates, names, context.space.evaluator)
        return Pool(candidates, names, raw, normalize(raw, self.settings["transform"]), description)

    def record_pool(self, pool: Pool, extra: dict[str, Any]) -> None:
        extra["pool"] = {"candidates": len(pool.candidates), "kind": pool.description, "proxies": pool.names}

    def exploit(self, pool: Pool, queries: Queries, weights: np.ndarray, phase: str = "exploit") -> None:
        """Query the best-ranked unqueried candidates until the budget is spent (or the pool runs out)."""
        for index in pool.ranked(weights):
            if queries.exhausted:
                return
            candidate = pool.candidates[index]
            if candidate.id in queries:
                continue
            queries.query(candidate, {"strategy.phase": phase, **pool.proxy_attrs(index)})


class ProxyThenOracle(PoolStrategy):
    name = "proxy_then_oracle"
    description = "rank the pool by one proxy or a fixed weighted sum, query the top T with the oracle"
    options = {
        **POOL_OPTIONS,
        "weights": Option(
            dict, default=None, help="fixed weight per proxy, e.g. {synflow = 1.0, params = 0.5} (default: 1 each)"
        ),
    }

    def validate(self, space: SearchSpace) -> None:
        super().validate(space)
        names = self.proxy_names(space)
        for name, weight in (self.settings["weights"] or {}).items():
            if name not in names:
                raise SpaceError(f"{name!r} is not one of the base proxies", key=f"weights.{name}", allowed=names)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise SpaceError(f"expected a number, got {weight!r}", key=f"weights.{name}")

    def weights(self, names: list[str]) -> np.ndarray:
        given = self.settings["weights"]
        if not given:
            return np.ones(len(names))
        return np.array([float(given.get(name, 0.0)) for name in names])

    def search(self, context: SearchContext, queries: Queries, extra: dict[str, Any]) -> None:
        pool = self.pool(context)
        self.record_pool(pool, extra)
        weights = self.weights(pool.names)
        extra["weights"] = dict(zip(pool.names, weights.tolist()))
        self.exploit(pool, queries, weights, phase="rank")
