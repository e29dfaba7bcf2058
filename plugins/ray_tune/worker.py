"""What runs on a Ray worker: rebuild the candidate from its parameters and run the evaluator unchanged.

Only plain data crosses to the worker (the space's table, the parameters, the seed); the driver keeps
the Optuna study. Intermediate values go back through ``tune.report`` so Ray Tune's scheduler can stop
a trial; the last report carries the outcome as JSON under ``automl_payload``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import optuna

from automl.evaluation import run_evaluator
from automl.evaluators import EvalContext, Evaluator
from automl.runner import failure_reason
from automl.space import SearchSpace

VALUE = "value"  # the intermediate value schedulers compare
ITERATION = "iteration"  # 1, 2, ... per intermediate value: the schedulers' default time attribute
STEP = "step"  # the step the evaluator gave, as the study records it
FINAL = "automl_final"
PAYLOAD = "automl_payload"
ATTRS = "automl_attrs"

# A worker actor is reused across trials: keep the rebuilt space (plugins, data) between them.
_spaces: dict[str, SearchSpace] = {}


class RayTuneContext(EvalContext):
    """The evaluator's context on a Ray worker: ``report`` goes to Ray Tune instead of an Optuna trial.

    When the scheduler stops the trial, Ray ends the training thread inside ``tune.report``.
    """

    def __init__(self, *, seed: int = 0, device: str | None = None, space: SearchSpace | None = None) -> None:
        super().__init__(None, seed=seed, device=device, space=space)
        self.steps: list[int] = []
        self.attrs: dict[str, Any] = {}

    def report(self, value: float, step: int) -> None:
        from ray import tune

        self.curve.append(float(value))
        self.steps.append(int(step))
        metrics: dict[str, Any] = {VALUE: float(value), STEP: int(step), ITERATION: len(self.curve)}
        if self.attrs:
            metrics[ATTRS] = json.dumps(self.attrs, default=str)
            self.attrs = {}
        tune.report(metrics)

    def set_attr(self, key: str, value: Any) -> None:
        self.attrs[key] = value


def space_from_raw(raw: Mapping[str, Any]) -> SearchSpace:
    """The search space for a file's table, built once per worker process."""
    key = json.dumps(raw, sort_keys=True, default=str)
    space = _spaces.get(key)
    if space is None:
        space = _spaces[key] = SearchSpace.from_dict(raw)
    return space


def evaluator_for(space: SearchSpace, raw: Mapping[str, Any] | None) -> Evaluator:
    if raw is None:
        return space.evaluator
    from automl.registry import get_registry

    cls = get_registry().get("evaluators", raw.get("name", ""), key="evaluator.name")
    return cls.configure(raw, key="evaluator")


def evaluate_on_worker(config: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate the candidate ``config`` describes; return the outcome (reports intermediate values)."""
    start = time.perf_counter()
    context = RayTuneContext(seed=config["seed"], device=config.get("device") or _trial_device())
    try:
        space = context.space = space_from_raw(config["space"])
        evaluator = evaluator_for(space, config.get("evaluator"))
        candidate = space.candidate(config["params"])
        candidate.seed = config["seed"]
        result = run_evaluator(candidate, evaluator, context, threads=config.get("threads"))
        payload: dict[str, Any] = {"status": "complete", **result.to_json()}
        first = result.value(space.metrics[0])
    except optuna.TrialPruned as pruned:
        payload, first = {"status": "pruned", "reason": str(pruned)}, None
    except Exception as err:  # noqa: BLE001 - the reason goes back to the study; the search goes on
        payload, first = {"status": "failed", "reason": failure_reason(err)}, None
    payload.update(
        curve=context.curve,
        steps=context.steps,
        attrs=context.attrs,
        device=str(context.device),
        threads=config.get("threads"),
        **_node(),
        duration_s=round(time.perf_counter() - start, 6),
    )
    # The final report repeats the last iteration, so a scheduler sees no new rung from it.
    value = context.curve[-1] if context.curve else (first if first is not None else math.nan)
    return {
        VALUE: float(value),
        ITERATION: max(1, len(context.curve)),
        FINAL: True,
        PAYLOAD: json.dumps(payload, default=str),
    }


def _node() -> dict[str, str | None]:
    """The Ray node this trial ran on (its id and IP address), recorded in the trial's ``ray`` attribute."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        # The address the node joined the cluster with (several nodes may share one machine).
        ip = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id), None)
        return {"node_id": node_id, "node_ip": ip or ray.util.get_node_ip_address()}
    except Exception:  # noqa: BLE001 - outside a Ray worker (a direct call in a test): nothing to record
        return {"node_id": None, "node_ip": None}


def _trial_device() -> str:
    """The GPU when Ray gave this trial one, else the CPU (a trial without GPUs never takes one)."""
    import ray
    import torch

    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def automl_trial(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable: one candidate per call; actors are reused between calls."""
    from ray import tune

    tune.report(evaluate_on_worker(config))
