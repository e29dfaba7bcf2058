"""Training-free proxies: a score for an untrained network that predicts how well it will train."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from automl.plugin import Configurable

if TYPE_CHECKING:
    from automl.candidate import Candidate
    from automl.tasks import Batch


@dataclass
class ProxyValue:
    """A proxy's value, with the reason when it is NaN (singular matrix, dead network, ...).

    ``info``: anything to record beside the value (the amount of training it used, units dropped);
    the proxy evaluator stores it as ``info.<proxy name>``.
    """

    value: float
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def nan(cls, reason: str) -> ProxyValue:
        return cls(math.nan, reason)


class Proxy(Configurable):
    """A training-free score. Higher predicts better, for every proxy.

    ``applies_to``: the architecture kinds (``cell``, ``recurrent``, ``transformer``) it can score;
    asking for it on another kind is a validation error.
    """

    applies_to: ClassVar[tuple[str, ...]] = ("cell",)

    @abstractmethod
    def score(self, candidate: Candidate, batch: Batch) -> float | ProxyValue:
        """Score a fresh model of ``candidate`` on ``batch``; return NaN with a reason rather than raise."""
