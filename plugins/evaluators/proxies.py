"""The proxy evaluator: scores a candidate with training-free proxies on a fixed-seed minibatch.

Proxies that read the same shared pass (``PassProxy`` with an equal ``pass_key``) are computed from
one pass over one fresh model; every other proxy builds its own fresh model. The objective can be a
proxy, or ``aggregate``: the mean over several proxies of the candidate's rank (empirical CDF) within
a fixed random reference pool of the space's architectures, so proxies of different scales combine.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from typing import Any

import optuna
import torch

from automl import EvalResult, Evaluator, Option, ProxyValue, SpaceError, get_registry
from automl.passes import PassProxy, run_shared

AGGREGATE = "aggregate"


class ProxyEvaluator(Evaluator):
    name = "proxies"
    description = "training-free proxies on one fixed-seed minibatch of the task"
    example = {"proxies": ["synflow", "nwot", "params"]}
    options = {
        "proxies": Option(list, item_type=str, min_items=1, help="proxy names (see automl plugins)"),
        "batch_size": Option(int, default=None, min=1, max=4096, help="minibatch size (default: the task's)"),
        "proxy_options": Option(dict, default={}, help="per-proxy settings, e.g. [evaluator.proxy_options.lga]"),
        "aggregate": Option(
            list,
            default=[],
            item_type=str,
            help="proxies whose mean rank over a reference pool is the score 'aggregate'",
        ),
        "aggregate_pool": Option(
            int, default=32, min=2, max=10_000, help="architectures in the aggregate's reference pool"
        ),
        "aggregate_seed": Option(int, default=0, min=0, max=2**32 - 1, help="seed that draws the reference pool"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        registry = get_registry()
        names = settings["proxies"]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise SpaceError(f"proxy {twice!r} is listed twice", key="proxies")
        options = settings["proxy_options"]
        for name, table in options.items():
            if name not in names:
                raise SpaceError(
                    f"options given for proxy {name!r}, which is not in proxies",
                    key=f"proxy_options.{name}",
                    allowed=names,
                )
            if not isinstance(table, dict):
                raise SpaceError("must be a table of the proxy's options", key=f"proxy_options.{name}")
        self.proxies = []
        for i, name in enumerate(names):
            cls = registry.get("proxies", name, key=f"proxies[{i}]")
            self.proxies.append(cls.configure(options.get(name, {}), key=f"proxy_options.{name}"))
        for i, name in enumerate(settings["aggregate"]):
            if name not in names:
                raise SpaceError(f"aggregate proxy {name!r} is not in proxies", key=f"aggregate[{i}]", allowed=names)
        # Reference pools already scored, by (space, seed): a pool costs many evaluations.
        self._pools: dict[str, dict[str, list[float]]] = {}

    def metrics(self) -> list[str]:
        return list(self.settings["proxies"]) + ([AGGREGATE] if self.settings["aggregate"] else [])

    def validate(self, space) -> None:
        found = space.architecture
        if found is None:
            if self.settings["aggregate"]:
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
        if self.settings["aggregate"]:
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
            wanted = [p for p in self.proxies if p.name in self.settings["aggregate"]]
            pool: dict[str, list[float]] = {p.name: [] for p in wanted}
            for _ in range(self.settings["aggregate_pool"]):
                member = space.sample(study.ask())
                member.seed = context.seed
                batch = member.task.batch(self.settings["batch_size"], seed=context.seed).to(context.device)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(context.seed)
                    values = self.score_all(member, batch, wanted)[0]
                for name, value in values.items():
                    if not math.isnan(value):
                        pool[name].append(value)
            self._pools[key] = {name: sorted(values) for name, values in pool.items()}
        return self._pools[key]

    def _aggregate(self, scores: dict[str, float], context) -> tuple[float, str | None]:
        pool = self._reference_pool(context)
        ranks = []
        for name in self.settings["aggregate"]:
            value, reference = scores[name], pool[name]
            if math.isnan(value) or not reference:
                continue
            below = bisect.bisect_left(reference, value)
            equal = bisect.bisect_right(reference, value) - below
            ranks.append((below + 0.5 * equal) / len(reference))
        if not ranks:
            return math.nan, "every aggregated proxy is NaN"
        return sum(ranks) / len(ranks), None
