"""RoBoT: robustified and boosted training-free NAS (He et al., ICLR 2024).

Base proxies, min–max normalized over a pool, are combined as M_w(A) = Σ_i w_i · M̃_i(A) with
w ∈ [−1, 1]^m (a NaN term skipped). Exploration: Bayesian optimisation over w (Optuna's GP or TPE
sampler on an in-memory study), the value of w being the oracle value of argmax_A M_w(A); an argmax
already queried is looked up, costing no query. Exploitation: rank the pool with the best w found and
query the best-ranked unqueried candidates until T distinct candidates have been queried.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from automl import Option
from automl_plugins.strategies.base import EXAMPLE, Queries
from automl_plugins.strategies.ranked import POOL_OPTIONS, Pool, PoolStrategy

if TYPE_CHECKING:
    from automl import SearchContext


class RoBoT(PoolStrategy):
    name = "robot"
    description = "RoBoT: Bayesian optimisation of proxy weights with T oracle queries, then greedy exploitation"
    example = {**EXAMPLE, "pool_size": 6, "explore_iterations": 2, "startup_trials": 1}
    options = {
        **POOL_OPTIONS,
        "sampler": Option(
            str, default="tpe", choices=("gp", "tpe"), help="Optuna sampler of the weights: TPESampler or GPSampler"
        ),
        "explore_iterations": Option(
            int,
            default=None,
            min=1,
            max=1_000_000,
            help="BO iterations over the weights (default: the budget T); an argmax already queried costs no query",
        ),
        "startup_trials": Option(
            int, default=3, min=1, max=1_000_000, help="random weight vectors before the sampler's model takes over"
        ),
    }

    def bo_study(self, seed: int) -> optuna.Study:
        startup = self.settings["startup_trials"]
        with _quiet_optuna():
            if self.settings["sampler"] == "gp":
                sampler: optuna.samplers.BaseSampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
            else:
                sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
            return optuna.create_study(direction="maximize", sampler=sampler)

    def search(self, context: SearchContext, queries: Queries, extra: dict[str, Any]) -> None:
        pool = self.pool(context)
        self.record_pool(pool, extra)
        weights = self.explore(pool, queries, extra, seed=self.seed_for(context))
        extra["weights"] = dict(zip(pool.names, weights.tolist()))
        self.exploit(pool, queries, weights)

    def explore(self, pool: Pool, queries: Queries, extra: dict[str, Any], seed: int) -> np.ndarray:
        """BO over w; returns the weights whose argmax had the best oracle value."""
        iterations = self.settings["explore_iterations"] or self.settings["budget"]
        study = self.bo_study(seed)
        best_weights, best_utility = np.zeros(len(pool.names)), -math.inf
        explored: list[str] = []
        extra["explore_queries"] = 0
        extra["bo_iterations"] = 0
        for _ in range(iterations):
            if queries.exhausted:
                break
            with _quiet_optuna():
                trial = study.ask()
                weights = np.array([trial.suggest_float(f"w.{name}", -1.0, 1.0) for name in pool.names])
            index = int(pool.ranked(weights)[0])
            candidate = pool.candidates[index]
            value = queries.query(
                candidate,
                {
                    "strategy.phase": "explore",
                    **pool.proxy_attrs(index),
                    **{f"weight.{n}": float(w) for n, w in zip(pool.names, weights)},
                },
            )
            utility = queries.utility(value)
            with _quiet_optuna():
                if math.isinf(utility):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, utility)
            # Ties go to the later weights, as in the reference implementation.
            if utility >= best_utility:
                best_weights, best_utility = weights, utility
            if candidate.id not in explored:
                explored.append(candidate.id)
            extra["explore_queries"] = len(explored)
            extra["bo_iterations"] += 1
            extra["weights"] = dict(zip(pool.names, best_weights.tolist()))
        return best_weights


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """The inner BO study is bookkeeping: keep its per-trial log lines and experimental warnings out."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
