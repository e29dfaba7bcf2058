"""The ``mlp`` dimension: depth, a width per hidden layer and an activation, with a string form.

String form ``<width>-<width>-…:<activation>`` (``128-64:relu`` is two hidden layers of 128 and 64
units with ReLU). Parameters: ``depth``, then ``w1 … w<depth>`` (define-by-run: only the layers that
exist are sampled) and ``act``. Equal strings are equal networks, so the string is the canonical id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from automl import Architecture, ArchitectureDimension, Option, ScopedTrial, SpaceError, Task
from automl_plugins.architectures.mlp.model import ACTIVATION_MODULES, MLPNetwork

ACTIVATIONS = tuple(ACTIVATION_MODULES)
_FORM = re.compile(r"^(\d+(?:-\d+)*):([a-z]+)$")


def parse_arch(text: str) -> tuple[tuple[int, ...], str]:
    """The hidden widths and the activation of ``128-64:relu``."""
    match = _FORM.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not of the form <width>-<width>-...:<activation> (e.g. 128-64:relu)")
    widths = tuple(int(w) for w in match.group(1).split("-"))
    if min(widths) < 1:
        raise ValueError(f"{text!r}: a layer needs at least one unit")
    if match.group(2) not in ACTIVATIONS:
        raise ValueError(f"{text!r}: unknown activation {match.group(2)!r} (activations: {', '.join(ACTIVATIONS)})")
    return widths, match.group(2)


class MLPArchitecture(Architecture):
    kind = "mlp"

    def __init__(self, widths: Sequence[int], activation: str = "relu") -> None:
        self.widths = tuple(int(w) for w in widths)
        self.activation = activation

    def to_string(self) -> str:
        return "-".join(map(str, self.widths)) + f":{self.activation}"

    def canonical_id(self) -> str:
        return self.to_string()

    def build(self, task: Task, norm_layer: Any = None, options: Mapping[str, Any] | None = None) -> nn.Module:
        return MLPNetwork(
            math.prod(task.input_shape),
            self.widths,
            task.num_classes,
            activation=self.activation,
            norm_layer=norm_layer,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLPArchitecture) and other.to_string() == self.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())


class MLPDimension(ArchitectureDimension):
    name = "mlp"
    description = "multilayer perceptrons for tabular data or flattened images: depth, widths and activation"
    arch_kind = "mlp"
    task_kinds = ("tabular-classification", "image-classification")
    options = {
        "depths": Option(
            list, default=[1, 2, 3], item_type=int, min=1, max=16, min_items=1, help="hidden-layer counts"
        ),
        "widths": Option(
            list,
            default=[16, 32, 64, 128, 256],
            item_type=int,
            min=1,
            max=8192,
            min_items=1,
            help="the units each hidden layer chooses from",
        ),
        "activations": Option(
            list, default=["relu"], item_type=str, choices=ACTIVATIONS, min_items=1, help="activations to choose from"
        ),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for key in ("depths", "widths", "activations"):
            values = settings[key]
            if len(set(values)) != len(values):
                raise SpaceError(f"{key} lists a value twice", key=key)

    def sample(self, trial: ScopedTrial) -> MLPArchitecture:
        depth = trial.suggest_categorical("depth", self.settings["depths"])
        widths = [trial.suggest_categorical(f"w{i + 1}", self.settings["widths"]) for i in range(depth)]
        return MLPArchitecture(widths, trial.suggest_categorical("act", self.settings["activations"]))

    def parse(self, text: str) -> MLPArchitecture:
        widths, activation = parse_arch(text)
        if len(widths) not in self.settings["depths"]:
            raise ValueError(f"{text!r}: depth {len(widths)} is not in this space's depths {self.settings['depths']}")
        outside = [w for w in widths if w not in self.settings["widths"]]
        if outside:
            raise ValueError(f"{text!r}: width {outside[0]} is not in this space's widths {self.settings['widths']}")
        if activation not in self.settings["activations"]:
            raise ValueError(f"{text!r}: activation {activation!r} is not in this space's activations")
        return MLPArchitecture(widths, activation)

    def params(self, arch: Architecture) -> dict[str, Any]:
        assert isinstance(arch, MLPArchitecture)
        values: dict[str, Any] = {"depth": len(arch.widths)}
        values.update({f"w{i + 1}": w for i, w in enumerate(arch.widths)})
        values["act"] = arch.activation
        return values
