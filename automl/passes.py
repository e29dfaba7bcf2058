"""Shared passes: one pass over a fresh model that every proxy able to share it reads.

A ``PassProxy`` names the ``SharedPass`` class it reads and what it needs from it (``requires``).
Scored alone, it runs the pass for itself; the proxy evaluator groups the proxies that name the same
pass (and the same ``pass_key``), runs the pass once with the union of their needs and lets each
read its value, so grad_norm, snip, grasp, fisher, jacob_cov and nwot cost one forward and one
backward together.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from automl.proxies import Proxy, ProxyValue

if TYPE_CHECKING:
    from automl.candidate import Candidate
    from automl.tasks import Batch


class SharedPass:
    """One pass over a fresh model of ``candidate`` on ``batch``, computing what ``proxies`` require."""

    def __init__(self, candidate: Candidate, batch: Batch, proxies: Sequence[PassProxy]) -> None:
        self.candidate = candidate
        self.batch = batch
        self.proxies = list(proxies)
        self.needs: set[str] = set().union(*(p.requires for p in proxies)) if proxies else set()
        self.results: dict[str, Any] = {}

    @abstractmethod
    def run(self) -> None:
        """Do the pass and fill ``results``."""


class PassProxy(Proxy):
    """A proxy read off a shared pass. Subclasses set ``shared_pass``, ``requires`` and ``read``."""

    shared_pass: ClassVar[type[SharedPass]]
    requires: ClassVar[frozenset[str]] = frozenset()

    def pass_key(self) -> tuple[Any, ...]:
        """Proxies with equal keys share one pass (override when a setting changes the pass)."""
        return (self.shared_pass,)

    @abstractmethod
    def read(self, shared: SharedPass) -> float | ProxyValue:
        """This proxy's value from a finished pass."""

    def score(self, candidate, batch):
        shared = self.shared_pass(candidate, batch, [self])
        shared.run()
        return self.read(shared)


def run_shared(candidate: Candidate, batch: Batch, proxies: Sequence[PassProxy]) -> dict[str, float | ProxyValue]:
    """Run one pass for ``proxies`` (all with the same ``pass_key``) and read every value."""
    shared = proxies[0].shared_pass(candidate, batch, proxies)
    shared.run()
    return {p.name: p.read(shared) for p in proxies}
