"""A candidate: the values one trial chose, and everything needed to build and train its model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from automl.dimensions import Architecture
from automl.tasks import Task

Transform = Callable[[nn.Module, "Candidate"], None]


class Candidate:
    """What a trial chose, built up by the dimensions in stage order.

    - ``params``: every sampled value, keyed ``"<dimension key>.<name>"`` (the Optuna parameter names);
    - ``architecture``: the ``Architecture`` the architecture dimension chose;
    - ``norm_layer`` and ``build_options``: how the model is built;
    - ``loss``: the training criterion (cross-entropy unless a loss dimension sets one);
    - ``transforms``: callables applied, in order, to every freshly built model (pruning, quantization);
    - ``recipe``: settings training evaluators read (data-pruning fraction and the like);
    - ``attrs``: extra values recorded on the trial.

    ``build_model()`` returns a fresh, seeded model with every transform applied; ``id`` is a stable
    hash that is equal for candidates that compute the same thing.
    """

    def __init__(self, task: Task, seed: int = 0) -> None:
        self.task = task
        self.seed = seed
        self.params: dict[str, Any] = {}
        self.architecture: Architecture | None = None
        self.norm_layer: Callable[..., nn.Module] | None = None
        self.build_options: dict[str, Any] = {}
        self.loss_fn: nn.Module | None = None
        self.transforms: list[tuple[str, Transform]] = []
        self.recipe: dict[str, Any] = {}
        self.attrs: dict[str, Any] = {}
        self.arch_key = ""
        self._canonical: dict[str, Any] = {}
        self._reference: nn.Module | None = None

    # -- set by dimensions -------------------------------------------------------------------------
    def set_architecture(self, arch: Architecture, key: str = "") -> None:
        """Set the architecture; ``key`` (the dimension's) makes its raw values give way to its canonical id."""
        self.architecture = arch
        self.arch_key = key
        self.attrs["arch"] = arch.to_string()
        self.attrs["arch_kind"] = arch.kind
        if key:
            self._canonical[key] = arch.canonical_id()

    def add_transform(self, key: str, transform: Transform) -> None:
        """Apply ``transform(model, candidate)`` to every model built from this candidate."""
        self.transforms.append((key, transform))

    def set_canonical(self, key: str, value: Any) -> None:
        """Replace dimension ``key``'s raw values by ``value`` in the candidate id."""
        self._canonical[key] = value

    # -- used by evaluators ------------------------------------------------------------------------
    @property
    def loss(self) -> nn.Module:
        return self.loss_fn if self.loss_fn is not None else nn.CrossEntropyLoss()

    def build_model(self, device: torch.device | str | None = None, *, transforms: bool = True) -> nn.Module:
        """A fresh model, initialised from the candidate's seed, with every transform applied."""
        if self.architecture is None:
            raise ValueError("this candidate has no architecture: add an architecture dimension to the space")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self.architecture.build(self.task, norm_layer=self.norm_layer, options=self.build_options)
            if device is not None:
                model = model.to(device)
            if transforms:
                for _, transform in self.transforms:
                    transform(model, self)
        return model

    @property
    def reference_model(self) -> nn.Module:
        """The model as built, before transforms; built once, for dimensions that read its layers."""
        if self._reference is None:
            self._reference = self.build_model(transforms=False)
        return self._reference

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True, default=str).encode()).hexdigest()[:20]

    def canonical(self) -> dict[str, Any]:
        """The values that identify the candidate: each dimension's canonical form or its raw params."""
        by_key: dict[str, dict[str, Any]] = {}
        for name, value in self.params.items():
            key, _, param = name.partition(".")
            by_key.setdefault(key, {})[param] = value
        out: dict[str, Any] = {k: v for k, v in by_key.items() if k not in self._canonical}
        out.update(self._canonical)
        return out

    def describe(self) -> str:
        """One line: the architecture string, then every other value."""
        prefix = f"{self.arch_key}." if self.arch_key else None
        other = {k: v for k, v in self.params.items() if not (prefix and k.startswith(prefix))}
        text = self.attrs.get("arch", "")
        if other:
            text += (" " if text else "") + " ".join(f"{k}={v}" for k, v in other.items())
        return text
