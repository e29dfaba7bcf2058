"""The FlexiBERT-style transformer dimension (``flexibert``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from automl import Architecture, ArchitectureDimension, Option, ScopedTrial, SpaceError, Task
from automl_plugins.architectures.flexibert.model import FlexiBERTEncoder
from automl_plugins.architectures.flexibert.spec import (
    FF_COUNTS,
    FF_DIMS,
    HEADS,
    HIDDEN_SIZES,
    NUM_LAYERS,
    OPERATIONS,
    EncoderSpec,
    LayerSpec,
    parse_encoder,
)

LAYER_OPERATIONS = tuple(f"{op}.{param}" for op, params in OPERATIONS.items() for param in params)


class FlexiBERTArchitecture(Architecture):
    """An encoder description; see ``model.py`` for the model's contract."""

    kind = "transformer"

    def __init__(self, spec: EncoderSpec, max_positions: int = 512) -> None:
        self.spec = spec
        self.max_positions = max_positions

    def to_string(self) -> str:
        return self.spec.to_string()

    def canonical_id(self) -> str:
        # Layers are ordered and every choice changes the function: the string is already canonical.
        return self.spec.to_string()

    def draw(self) -> str:
        lines = [f"embedding → hidden {self.spec.hidden}"]
        for i, layer in enumerate(self.spec.layers):
            lines.append(
                f"layer {i}: {layer.operation} {layer.parameter:<3} × {layer.heads} heads │ "
                f"feed-forward {layer.ff_count} × {layer.ff_dim}"
            )
        return "\n".join(lines)

    def build(self, task: Task, norm_layer: Any = None, options: Mapping[str, Any] | None = None) -> nn.Module:
        classes = task.num_classes if task.kind == "text-classification" else 0
        positions = max(self.max_positions, task.input_shape[0] if task.input_shape else 0)
        return FlexiBERTEncoder(
            self.spec,
            vocab_size=task.vocab_size,
            max_positions=positions,
            num_classes=classes,
            norm_layer=norm_layer,
            options=options,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlexiBERTArchitecture) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class FlexiBERTDimension(ArchitectureDimension):
    name = "flexibert"
    description = "FlexiBERT-style heterogeneous encoders: per-layer attention / Fourier-DCT / convolution, heads, FFN"
    arch_kind = "transformer"
    task_kinds = ("language-modelling", "text-classification")
    # Bumped when the built model changes for the same string (2: ConvBERT DSC, LT input projection), so
    # candidate ids and score-cache entries of earlier models are not reused.
    model_revision = 2
    example = {"hidden_sizes": [128], "layers": [2], "ff_dims": [512], "ff_counts": [1], "max_positions": 32}
    options = {
        "hidden_sizes": Option(
            list,
            default=list(HIDDEN_SIZES),
            item_type=int,
            choices=HIDDEN_SIZES,
            min_items=1,
            help="hidden sizes to choose from",
        ),
        "layers": Option(
            list,
            default=list(NUM_LAYERS),
            item_type=int,
            choices=NUM_LAYERS,
            min_items=1,
            help="encoder depths to choose from",
        ),
        "operations": Option(
            list,
            default=list(LAYER_OPERATIONS),
            item_type=str,
            choices=LAYER_OPERATIONS,
            min_items=1,
            help="per-layer operations (SA.SDP, SA.WMA, LT.DFT, LT.DCT, DSC.5, DSC.9)",
        ),
        "heads": Option(list, default=list(HEADS), item_type=int, choices=HEADS, min_items=1),
        "ff_dims": Option(
            list, default=list(FF_DIMS), item_type=int, choices=FF_DIMS, min_items=1, help="feed-forward widths"
        ),
        "ff_counts": Option(
            list,
            default=list(FF_COUNTS),
            item_type=int,
            choices=FF_COUNTS,
            min_items=1,
            help="feed-forward hidden layers per block",
        ),
        "max_positions": Option(int, default=512, min=1, max=8192, help="learned position embeddings"),
    }

    def settings_key(self) -> dict:
        return {**super().settings_key(), "model_revision": self.model_revision}

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        for key, values in settings.items():
            if isinstance(values, list) and len(set(values)) != len(values):
                raise SpaceError("a value is listed twice", key=key)

    def validate(self, space: Any) -> None:
        super().validate(space)
        length = space.task.input_shape[0] if space.task.input_shape else 0
        if length > self.settings["max_positions"]:
            raise SpaceError(f"the task's sequences ({length} tokens) exceed max_positions", key="max_positions")

    def sample(self, trial: ScopedTrial) -> FlexiBERTArchitecture:
        s = self.settings
        hidden = trial.suggest_categorical("hidden", s["hidden_sizes"])
        depth = trial.suggest_categorical("layers", s["layers"])
        layers = []
        for i in range(depth):
            op = trial.suggest_categorical(f"l{i}.op", s["operations"])
            heads = trial.suggest_categorical(f"l{i}.heads", s["heads"])
            ff_dim = trial.suggest_categorical(f"l{i}.ff_dim", s["ff_dims"])
            ff_count = trial.suggest_categorical(f"l{i}.ff_count", s["ff_counts"])
            operation, _, parameter = op.partition(".")
            layers.append(LayerSpec(operation, parameter, heads, ff_dim, ff_count))
        return FlexiBERTArchitecture(EncoderSpec(hidden, tuple(layers)), s["max_positions"])

    def parse(self, text: str) -> FlexiBERTArchitecture:
        spec = parse_encoder(text)
        s = self.settings
        outside = []
        if spec.hidden not in s["hidden_sizes"]:
            outside.append(f"hidden size {spec.hidden}")
        if len(spec.layers) not in s["layers"]:
            outside.append(f"{len(spec.layers)} layers")
        for i, layer in enumerate(spec.layers):
            for what, value, allowed in (
                (f"layer {i} operation", f"{layer.operation}.{layer.parameter}", s["operations"]),
                (f"layer {i} heads", layer.heads, s["heads"]),
                (f"layer {i} ff dimension", layer.ff_dim, s["ff_dims"]),
                (f"layer {i} ff layers", layer.ff_count, s["ff_counts"]),
            ):
                if value not in allowed:
                    outside.append(f"{what} {value}")
        if outside:
            raise ValueError(f"{text!r}: outside this space's options: {', '.join(outside)}")
        return FlexiBERTArchitecture(spec, s["max_positions"])

    def params(self, arch: Architecture) -> dict[str, Any]:
        assert isinstance(arch, FlexiBERTArchitecture)
        values: dict[str, Any] = {"hidden": arch.spec.hidden, "layers": len(arch.spec.layers)}
        for i, layer in enumerate(arch.spec.layers):
            values.update(
                {
                    f"l{i}.op": f"{layer.operation}.{layer.parameter}",
                    f"l{i}.heads": layer.heads,
                    f"l{i}.ff_dim": layer.ff_dim,
                    f"l{i}.ff_count": layer.ff_count,
                }
            )
        return values
