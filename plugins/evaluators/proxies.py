"""The proxy evaluator: scores a candidate with training-free proxies on a fixed-seed minibatch."""

from __future__ import annotations

import math
from typing import Any

from automl import EvalResult, Evaluator, Option, ProxyValue, SpaceError, get_registry


class ProxyEvaluator(Evaluator):
    name = "proxies"
    description = "training-free proxies on one fixed-seed minibatch of the task"
    options = {
        "proxies": Option(list, item_type=str, min_items=1, help="proxy names (see automl plugins)"),
        "batch_size": Option(int, default=None, min=1, help="minibatch size (default: the task's)"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        registry = get_registry()
        self.proxies = []
        for i, name in enumerate(settings["proxies"]):
            cls = registry.get("proxies", name, key=f"proxies[{i}]")
            self.proxies.append(cls.configure({}))
        if len(set(settings["proxies"])) != len(settings["proxies"]):
            raise SpaceError("a proxy is listed twice", key="proxies")

    def metrics(self) -> list[str]:
        return list(self.settings["proxies"])

    def validate(self, space) -> None:
        found = space.architecture
        if found is None:
            return
        kind = found[1].arch_kind
        for i, proxy in enumerate(self.proxies):
            if kind not in proxy.applies_to:
                usable = [n for n in get_registry().names("proxies")
                          if kind in get_registry().get("proxies", n).applies_to]
                raise SpaceError(f"proxy {proxy.name!r} does not apply to {kind} architectures",
                                 key=f"evaluator.proxies[{i}]", allowed=usable)

    def evaluate(self, candidate, context) -> EvalResult:
        batch = candidate.task.batch(self.settings["batch_size"], seed=context.seed)
        scores: dict[str, float] = {}
        reasons: dict[str, str] = {}
        for proxy in self.proxies:
            try:
                value = proxy.score(candidate, batch)
            except Exception as err:  # noqa: BLE001 - one proxy failing must not lose the others
                value = ProxyValue.nan(f"{type(err).__name__}: {err}")
            if isinstance(value, ProxyValue):
                if value.reason:
                    reasons[proxy.name] = value.reason
                value = value.value
            scores[proxy.name] = float(value)
            if math.isnan(scores[proxy.name]) and proxy.name not in reasons:
                reasons[proxy.name] = "the proxy returned NaN"
        return EvalResult(scores=scores, reasons=reasons)
