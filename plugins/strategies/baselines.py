"""The baselines a user compares against at the same oracle budget: random search and regularized evolution.

Both draw candidates from the whole space through its dimensions (seeded, define-by-run) and need no
proxies. A re-run replays the same seeded choices; candidates already queried are looked up for free.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import numpy as np

from automl import Option, SpaceError
from automl_plugins.strategies.base import EXAMPLE, ORACLE_OPTIONS, OracleStrategy, Queries
from automl_plugins.strategies.pool import Spec, random_candidates, random_value, sample_candidate

if TYPE_CHECKING:
    from automl import Candidate, SearchContext, SearchSpace

# Draws that may return already-queried candidates before a strategy gives up (a space smaller than T).
_PATIENCE = 200


class RandomSearch(OracleStrategy):
    name = "random"
    description = "random search: T distinct random candidates of the space, queried with the oracle"
    options = ORACLE_OPTIONS

    def search(self, context: SearchContext, queries: Queries, extra: dict[str, Any]) -> None:
        misses = 0
        for candidate, _ in random_candidates(context.space, self.seed_for(context)):
            if queries.exhausted or misses > _PATIENCE * self.settings["budget"]:
                return
            if candidate.id in queries:
                misses += 1
            queries.query(candidate, {"strategy.phase": "random"})


class RegularizedEvolution(OracleStrategy):
    name = "evolution"
    description = (
        "regularized evolution (Real et al., 2019): tournament selection, one-parameter mutations, oldest dies"
    )
    example = {**EXAMPLE, "population_size": 2, "tournament_size": 1}
    options = {
        **ORACLE_OPTIONS,
        "population_size": Option(
            int, default=10, min=2, max=100_000, help="population size (P); the first P are random"
        ),
        "tournament_size": Option(int, default=3, min=1, max=100_000, help="candidates sampled per tournament (S)"),
    }

    def validate(self, space: SearchSpace) -> None:
        super().validate(space)
        if self.settings["tournament_size"] > self.settings["population_size"]:
            raise SpaceError(
                f"tournament_size ({self.settings['tournament_size']}) exceeds population_size "
                f"({self.settings['population_size']})",
                key="tournament_size",
            )

    def search(self, context: SearchContext, queries: Queries, extra: dict[str, Any]) -> None:
        seed = self.seed_for(context)
        rng = np.random.default_rng(seed)
        population: collections.deque[tuple[Candidate, dict[str, Spec], float]] = collections.deque()
        size = self.settings["population_size"]
        misses = 0
        for candidate, specs in random_candidates(context.space, seed):
            if len(population) >= size or queries.exhausted or misses > _PATIENCE * size:
                break
            if candidate.id in queries or any(c.id == candidate.id for c, _, _ in population):
                misses += 1
            value = queries.query(candidate, {"strategy.phase": "initial"})
            population.append((candidate, specs, queries.utility(value)))
        misses = 0
        while not queries.exhausted and population and misses <= _PATIENCE * self.settings["budget"]:
            picks = rng.choice(
                len(population), size=min(self.settings["tournament_size"], len(population)), replace=False
            )
            parent = max((population[int(i)] for i in picks), key=lambda member: member[2])
            child, specs = self.mutate(context.space, parent[0], parent[1], rng)
            if child is None:
                misses += 1
                continue
            if child.id in queries:
                misses += 1
            value = queries.query(child, {"strategy.phase": "mutation"})
            population.append((child, specs, queries.utility(value)))
            if len(population) > size:
                population.popleft()

    @staticmethod
    def mutate(
        space: SearchSpace, parent: Candidate, specs: dict[str, Spec], rng: np.random.Generator
    ) -> tuple[Candidate | None, dict[str, Spec]]:
        """The parent with one parameter changed to another value (parameters it unlocks are drawn at random)."""
        mutable = [name for name, spec in specs.items() if _has_alternative(spec)]
        if not mutable:
            return None, specs
        name = mutable[int(rng.integers(len(mutable)))]
        old = parent.params[name]
        value = old
        while value == old:
            value = random_value(rng, specs[name])
        try:
            return sample_candidate(space, rng, {**parent.params, name: value})
        except Exception:  # noqa: BLE001 - a combination a dimension rejects is simply not a child
            return None, specs


def _has_alternative(spec: Spec) -> bool:
    kind, values = spec
    if kind == "categorical":
        return len(values) > 1
    if kind == "int":
        low, high, _, _ = values
        return high > low
    low, high, _ = values
    return high > low
