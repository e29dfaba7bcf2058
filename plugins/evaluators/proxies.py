"""The proxy evaluator: scores a candidate with training-free proxies on a fixed-seed minibatch.

Proxies that read the same shared pass (``PassProxy`` with an equal ``pass_key``) are computed from
one pass over one fresh model; every other proxy builds its own fresh model. The objective can be a
proxy, or ``aggregate``: a combination of the candidate's relative ranks under several proxies within
a reference pool, so proxies of different scales combine. The relative rank of a value v among a pool
of n values is r = (number below + 1 + ½ number equal) / (n + 1) — v's average rank among the pool and
itself, over their count, in (0, 1]; NaN ranks below everything (a proxy that fails predicts worst).
``aggregation = "mean_rank"`` averages r over the proxies; ``"log_rank"`` sums log r, AZ-NAS's
non-linear aggregation (Lee & Ham, CVPR 2024), which punishes a candidate that any one proxy ranks low.
Within a study the pool is a fixed random sample of the space's architectures (``aggregate_pool``,
``aggregate_seed``); ``automl score`` ranks the file's architectures among themselves.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import torch

from automl import EvalResult, Evaluator, Option, ProxyValue, SpaceError, get_registry
from automl.passes import PassProxy, run_shared

AGGREGATE = "aggregate"
AGGREGATIONS = ("mean_rank", "log_rank")
AZ_NAS = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
# Named proxy sets an ``aggregate`` list may use in place of proxy names. ``default``: the cell proxies
# whose log-rank aggregate ranks NAS-Bench-201 best in benchmarks/proxy_correlation.py (README), all but
# synflow and the counts read off one shared forward and backward.
AGGREGATE_PRESETS: dict[str, tuple[str, ...]] = {
    "az_nas": AZ_NAS,
    "default": ("synflow", "nwot", "jacob_cov", "params", "meco", *AZ_NAS),
}


def expand_aggregate(names: Sequence[str]) -> list[str]:
    """``names`` with every preset replaced by its proxies, each proxy once, in order."""
    out: list[str] = []
    for name in names:
        for proxy in AGGREGATE_PRESETS.get(name, (name,)):
            if proxy not in out:
                out.append(proxy)
    return out


def relative_rank(value: float, pool: Sequence[float]) -> float:
    """(below + 1 + ½ equal) / (n + 1) of ``value`` among the sorted ``pool`` (NaN taken as −∞)."""
    value = -math.inf if math.isnan(value) else value
    below = bisect.bisect_left(pool, value)
    equal = bisect.bisect_right(pool, value) - below
    return (below + 1 + 0.5 * equal) / (len(pool) + 1)


def combine_ranks(ranks: Sequence[float], aggregation: str) -> float:
    """Mean of the relative ranks, or the sum of their logs (AZ-NAS's non-linear aggregation)."""
    if aggregation == "log_rank":
        return float(sum(math.log(r) for r in ranks))
    return float(sum(ranks) / len(ranks))


def sorted_pool(values: Sequence[float]) -> list[float]:
    """A pool of proxy values, NaN as −∞, sorted for ``relative_rank``."""
    return sorted(-math.inf if math.isnan(v) else v for v in values)


def aggregate_within(
    rows: Sequence[Mapping[str, float]], proxies: Sequence[str], aggregation: str = "log_rank"
) -> list[float]:
    """Each row's aggregate with the rows themselves as the pool (``automl score``, the benchmarks).

    A row's rank under a proxy is its average rank among all rows, over their count, as in the AZ-NAS code
    (``scipy.stats.rankdata(values) / N``).
    """
    pools = {p: sorted_pool([float(row[p]) for row in rows]) for p in proxies}
    out = []
    for row in rows:
        ranks = []
        for p in proxies:
            v = float(row[p])
            v = -math.inf if math.isnan(v) else v
            pool = pools[p]
            below = bisect.bisect_left(pool, v)
            equal = bisect.bisect_right(pool, v) - below  # the row itself among them
            ranks.append((below + 0.5 * (equal + 1)) / len(pool))
        out.append(combine_ranks(ranks, aggregation))
    return out


class ProxyEvaluator(Evaluator):
    name = "proxies"
    example = {"proxies": ["synflow", "nwot", "params"]}
    description = "training-free proxies on one fixed-seed minibatch of the task"
    options = {
        "proxies": Option(
            list, default=[], item_type=str, help="proxy names (see automl plugins); aggregated ones are added"
        ),
        "batch_size": Option(int, default=None, min=1, max=4096, help="minibatch size (default: the task's)"),
        "proxy_options": Option(dict, default={}, help="per-proxy settings, e.g. [evaluator.proxy_options.lga]"),
        "aggregate": Option(
            list,
            default=[],
            item_type=str,
            help="proxies (or the presets 'default', 'az_nas') whose ranks in a pool combine into 'aggregate'",
        ),
        "aggregation": Option(
            str,
            default="log_rank",
            choices=AGGREGATIONS,
            help="mean_rank: mean relative rank; log_rank: Σ log relative rank (AZ-NAS)",
        ),
        "aggregate_pool": Option(
            int, default=32, min=2, max=10_000, help="architectures in the aggregate's reference pool"
        ),
        "aggregate_seed": Option(int, default=0, min=0, max=2**32 - 1, help="seed that draws the reference pool"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        registry = get_registry()
        names = list(settings["proxies"])
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise SpaceError(f"proxy {twice!r} is listed twice", key="proxies")
        self.aggregated = expand_aggregate(settings["aggregate"])
        names += [n for n in self.aggregated if n not in names]
        if not names:
            raise SpaceError(
                "missing required key 'proxies' (or an empty list): needs at least 1 proxy, in proxies or aggregate",
                key="proxies",
            )
        self.names = names
        options = settings["proxy_options"]
        for name, table in options.items():
            if name not in names and name not in expand_aggregate(settings["aggregate"]):
                raise SpaceError(
                    f"options given for proxy {name!r}, which is not in proxies",
                    key=f"proxy_options.{name}",
                    allowed=names,
                )
            if not isinstance(table, dict):
                raise SpaceError("must be a table of the proxy's options", key=f"proxy_options.{name}")
        self.proxies = []
        listed = len(settings["proxies"])
        for i, name in enumerate(names):
            key = f"proxies[{i}]" if i < listed else "aggregate"
            cls = registry.get("proxies", name, key=key)
            self.proxies.append(cls.configure(options.get(name, {}), key=f"proxy_options.{name}"))
        # Reference pools already scored, by (space, seed): a pool costs many evaluations.
        self._pools: dict[str, dict[str, list[float]]] = {}

    def metrics(self) -> list[str]:
        return list(self.names) + ([AGGREGATE] if self.aggregated else [])

    def validate(self, space) -> None:
        found = space.architecture
        if found is None:
            if self.aggregated:
                raise SpaceError(
                    "the aggregate ranks candidates within a pool of architectures: the space "
                    "needs an architecture dimension",
                    key="evaluator.aggregate",
                )
            return
        kind = found[1].arch_kind
        registry = get_registry()
        for i, proxy in enumerate(self.proxies):
            if kind not in proxy.applies_to:
                usable = [n for n in registry.names("proxies") if kind in registry.get("proxies", n).applies_to]
                raise SpaceError(
                    f"proxy {proxy.name!r} does not apply to {kind} architectures",
                    key=f"evaluator.proxies[{i}]",
                    allowed=usable,
                )

    # -- scoring -----------------------------------------------------------------------------------
    def score_all(
        self, candidate, batch, proxies=None
    ) -> tuple[dict[str, float], dict[str, str], dict[str, Any], dict[str, float]]:
        """Every proxy's value on ``batch``: (scores, reasons, info, milliseconds per proxy group)."""
        proxies = self.proxies if proxies is None else proxies
        groups: dict[Any, list[PassProxy]] = {}
        singles = []
        for proxy in proxies:
            if isinstance(proxy, PassProxy):
                groups.setdefault(proxy.pass_key(), []).append(proxy)
            else:
                singles.append(proxy)
        raw: dict[str, float | ProxyValue] = {}
        timing: dict[str, float] = {}
        errors: list[str] = []
        for members in groups.values():
            start = time.perf_counter()
            try:
                raw.update(run_shared(candidate, batch, members))
            except Exception as err:  # noqa: BLE001 - a failing pass must not lose the other proxies
                for proxy in members:
                    raw[proxy.name] = ProxyValue.nan(f"{type(err).__name__}: {err}")
                    errors.append(proxy.name)
            elapsed = (time.perf_counter() - start) * 1000.0
            for proxy in members:
                timing[proxy.name] = elapsed / len(members)
        for proxy in singles:
            start = time.perf_counter()
            try:
                raw[proxy.name] = proxy.score(candidate, batch)
            except Exception as err:  # noqa: BLE001
                raw[proxy.name] = ProxyValue.nan(f"{type(err).__name__}: {err}")
                errors.append(proxy.name)
            timing[proxy.name] = (time.perf_counter() - start) * 1000.0
        scores: dict[str, float] = {}
        reasons: dict[str, str] = {}
        info: dict[str, Any] = {}
        for proxy in proxies:
            value = raw[proxy.name]
            if isinstance(value, ProxyValue):
                if value.reason:
                    reasons[proxy.name] = value.reason
                if value.info:
                    info[proxy.name] = value.info
                value = value.value
            scores[proxy.name] = float(value)
            if math.isnan(scores[proxy.name]) and proxy.name not in reasons:
                reasons[proxy.name] = "the proxy returned NaN"
        if errors:
            # Proxies that raised (rather than returned NaN): the result is not cached (see EvalResult.transient).
            info["errors"] = errors
        return scores, reasons, info, timing

    def evaluate(self, candidate, context) -> EvalResult:
        batch = candidate.task.batch(self.settings["batch_size"], seed=context.seed).to(context.device)
        # Proxies that draw random numbers (dropout, Gaussian inputs, training batches) repeat exactly.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            scores, reasons, info, timing = self.score_all(candidate, batch)
        info["proxy_ms"] = {k: round(v, 3) for k, v in timing.items()}
        if self.aggregated:
            value, why = self._aggregate(scores, context)
            scores[AGGREGATE] = value
            if why:
                reasons[AGGREGATE] = why
        return EvalResult(scores=scores, info=info, reasons=reasons, transient=bool(info.get("errors")))

    # -- rank aggregate ----------------------------------------------------------------------------
    def _reference_pool(self, context) -> dict[str, list[float]]:
        space = context.space
        if space is None:
            raise SpaceError(
                "the aggregate ranks a candidate within a pool sampled from its search space: evaluate it "
                "through a space (a study, or an EvalContext with space=...)",
                key="evaluator.aggregate",
            )
        key = json.dumps(
            [space.raw.get("task"), space.raw.get("dimensions"), context.seed], sort_keys=True, default=str
        )
        if key not in self._pools:
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.settings["aggregate_seed"]))
            wanted = [p for p in self.proxies if p.name in self.aggregated]
            pool: dict[str, list[float]] = {p.name: [] for p in wanted}
            for _ in range(self.settings["aggregate_pool"]):
                member = space.sample(study.ask())
                member.seed = context.seed
                batch = member.task.batch(self.settings["batch_size"], seed=context.seed).to(context.device)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(context.seed)
                    values = self.score_all(member, batch, wanted)[0]
                for name, value in values.items():
                    pool[name].append(value)
            self._pools[key] = {name: sorted_pool(values) for name, values in pool.items()}
        return self._pools[key]

    def _aggregate(self, scores: dict[str, float], context) -> tuple[float, str | None]:
        pool = self._reference_pool(context)
        if all(math.isnan(scores[name]) for name in self.aggregated):
            return math.nan, "every aggregated proxy is NaN"
        ranks = [relative_rank(scores[name], pool[name]) for name in self.aggregated]
        return combine_ranks(ranks, self.settings["aggregation"]), None
