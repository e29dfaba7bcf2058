"""The user attributes a trial carries, in the same shape as the core runner records them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from automl.candidate import Candidate
from automl.errors import TrialFailed
from automl.evaluators import EvalResult


def candidate_attr(candidate: Candidate) -> dict[str, Any]:
    """The ``candidate`` attribute: stable id, architecture string and kind, architecture key."""
    return {
        "id": candidate.id,
        "arch": candidate.attrs.get("arch"),
        "arch_kind": candidate.attrs.get("arch_kind"),
        "arch_key": candidate.arch_key,
    }


def result_record(result: EvalResult, *, cached: bool, duration_s: float) -> dict[str, Any]:
    """The ``result`` attribute of an evaluated trial."""
    return {
        "scores": jsonable(result.scores),
        "costs": jsonable(result.info.get("costs", {})),
        "info": {k: v for k, v in result.info.items() if k != "costs"},
        "reasons": result.reasons,
        "duration_s": round(duration_s, 6),
        "cached": cached,
    }


def failure_reason(err: BaseException) -> str:
    """What the ``failure`` attribute says for an exception (a ``TrialFailed`` message as it is)."""
    return str(err) if isinstance(err, TrialFailed) else f"{type(err).__name__}: {err}"


def jsonable(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
