"""RoBoT: robustified and boosted training-free NAS (He et al., ICLR 2024).

Base proxies, min–max normalized over a pool, are combined as M_w(A) = Σ_i w_i · M̃_i(A) with
w ∈ [−1, 1]^m (a NaN term skipped). Exploration: Bayesian optimisation over w (Optuna's GP or TPE
sampler on an in-memory study), the value of w being the oracle value of argmax_A M_w(A); an argmax
already queried is looked up, costing no query. Exploitation: rank the pool with the best w found and
query the best-ranked unqueried candidates until T distinct candidates have been queried.

``sampler = "ucb"`` is GP-UCB as the authors' code runs it (the ``bayes_opt`` package's defaults): a
Gaussian process with a Matérn 5/2 kernel (noise 1e-6, normalised targets, 5 optimiser restarts),
the next w maximising μ + κσ (κ = 2.576) over 10,000 random points, polished by L-BFGS-B from 10
random starts. ``preset = "reference"`` is the authors' whole algorithm: min–max normalisation of the
raw proxy values (``transform = "none"``: their ``logmeasures`` key holds raw values), GP-UCB with
κ = 2.576, one random start and then model-guided probes for the rest of the T iterations. One
difference remains: they rank all 15,625 cell strings, isomorphic copies included, where a pool here
holds each candidate once (NAS-Bench-201 cells are identified up to isomorphism, 6,466 of them).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import optuna
from scipy.optimize import minimize

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
            str,
            default="tpe",
            choices=("gp", "tpe", "ucb"),
            help="sampler of the weights: Optuna's TPESampler or GPSampler, or GP-UCB as the authors' code",
        ),
        "kappa": Option(float, default=2.576, min=0.0, max=100.0, help="GP-UCB exploration weight κ (sampler = 'ucb')"),
        "preset": Option(
            str,
            default="default",
            choices=("default", "reference"),
            help="reference: raw min-max, GP-UCB κ = 2.576, one random start (sets transform, sampler, "
            "kappa, startup_trials)",
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

    REFERENCE: ClassVar[dict[str, Any]] = {"transform": "none", "sampler": "ucb", "kappa": 2.576, "startup_trials": 1}

    def __init__(self, **settings: Any) -> None:
        if settings.get("preset") == "reference":
            settings = {**settings, **self.REFERENCE}
        super().__init__(**settings)

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
        ucb = None
        if self.settings["sampler"] == "ucb":
            ucb = GpUcb(len(pool.names), seed, self.settings["kappa"], self.settings["startup_trials"])
        else:
            study = self.bo_study(seed)
        best_weights, best_utility = np.zeros(len(pool.names)), -math.inf
        explored: list[str] = []
        extra["explore_queries"] = 0
        extra["bo_iterations"] = 0
        for _ in range(iterations):
            if queries.exhausted:
                break
            if ucb is not None:
                weights = ucb.ask()
            else:
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
            if ucb is not None:
                ucb.tell(weights, utility)
            else:
                self._tell(study, trial, utility)
            # Ties go to the later weights, as in the reference implementation.
            if utility >= best_utility:
                best_weights, best_utility = weights, utility
            if candidate.id not in explored:
                explored.append(candidate.id)
            extra["explore_queries"] = len(explored)
            extra["bo_iterations"] += 1
            extra["weights"] = dict(zip(pool.names, best_weights.tolist()))
        return best_weights

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.trial.Trial, utility: float) -> None:
        with _quiet_optuna():
            if math.isinf(utility):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, utility)


class GpUcb:
    """GP-UCB over w ∈ [−1, 1]^m, as the ``bayes_opt`` package (the RoBoT authors' optimiser) runs it."""

    def __init__(self, dims: int, seed: int, kappa: float, startup: int) -> None:
        self.dims, self.kappa, self.startup = dims, kappa, startup
        self.rng = np.random.default_rng(seed)
        self.points: list[np.ndarray] = []
        self.values: list[float] = []

    def ask(self) -> np.ndarray:
        if len(self.values) < self.startup:
            return self.rng.uniform(-1.0, 1.0, self.dims)
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import Matern

        gp = GaussianProcessRegressor(
            kernel=Matern(nu=2.5),
            alpha=1e-6,
            normalize_y=True,
            n_restarts_optimizer=5,
            random_state=int(self.rng.integers(2**31)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(np.array(self.points), np.array(self.values))
        return maximise_ucb(gp, self.kappa, self.rng, self.dims)

    def tell(self, weights: np.ndarray, value: float) -> None:
        if math.isfinite(value):  # a failed query teaches the model nothing
            self.points.append(np.asarray(weights, dtype=float))
            self.values.append(float(value))


def maximise_ucb(gp: Any, kappa: float, rng: np.random.Generator, dims: int, warmup: int = 10_000, starts: int = 10):
    """argmax over [−1, 1]^dims of μ(w) + κσ(w): the best of ``warmup`` random points, then L-BFGS-B polishing."""

    def ucb(x: np.ndarray) -> np.ndarray:
        mean, std = gp.predict(np.atleast_2d(x), return_std=True)
        return mean + kappa * std

    candidates = rng.uniform(-1.0, 1.0, (warmup, dims))
    values = ucb(candidates)
    best, best_value = candidates[int(np.argmax(values))], float(np.max(values))
    for start in rng.uniform(-1.0, 1.0, (starts, dims)):
        found = minimize(lambda x: -float(ucb(x)[0]), start, bounds=[(-1.0, 1.0)] * dims, method="L-BFGS-B")
        if found.success and -float(found.fun) > best_value:
            best, best_value = found.x, -float(found.fun)
    return np.clip(best, -1.0, 1.0)


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
