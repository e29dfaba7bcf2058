"""The FlexiBERT-style encoder description and its string form.

An encoder is a hidden size and a list of layers; each layer has an operation (``SA`` self-attention
with parameter ``SDP`` scaled dot-product or ``WMA`` weighted multiplicative attention; ``LT`` linear
transform ``DFT`` or ``DCT``; ``DSC`` depthwise-separable convolution with kernel ``5`` or ``9``), a
number of heads, a feed-forward dimension and a number of feed-forward layers.

String form (one token per layer after the hidden size, ``|``-separated)::

    h256|SA.SDP-h4-ff1024x3|LT.DFT-h2-ff512x1|DSC.9-h4-ff512x1

i.e. ``h<hidden>`` then ``<op>.<parameter>-h<heads>-ff<ff dimension>x<ff layers>`` per layer. It maps
1:1 to the records of ``flexibert_glue.json`` (``from_record`` / ``to_record``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HIDDEN_SIZES = (128, 256)
NUM_LAYERS = (2, 4)
OPERATIONS: dict[str, tuple[str, ...]] = {"SA": ("SDP", "WMA"), "LT": ("DFT", "DCT"), "DSC": ("5", "9")}
HEADS = (2, 4)
FF_DIMS = (512, 1024)
FF_COUNTS = (1, 3)

_LAYER = re.compile(r"^(?P<op>[A-Z]+)\.(?P<param>[A-Z0-9]+)-h(?P<heads>\d+)-ff(?P<ff>\d+)x(?P<count>\d+)$")


@dataclass(frozen=True)
class LayerSpec:
    """One encoder layer: operation, its parameter, heads, feed-forward dimension and layer count."""

    operation: str
    parameter: str
    heads: int
    ff_dim: int
    ff_count: int

    def to_string(self) -> str:
        return f"{self.operation}.{self.parameter}-h{self.heads}-ff{self.ff_dim}x{self.ff_count}"

    def check(self, where: str = "layer") -> None:
        """Raise ``ValueError`` naming the value outside the FlexiBERT space."""
        if self.operation not in OPERATIONS:
            raise ValueError(f"{where}: unknown operation {self.operation!r} (operations: {', '.join(OPERATIONS)})")
        if self.parameter not in OPERATIONS[self.operation]:
            raise ValueError(
                f"{where}: {self.operation} takes {' or '.join(OPERATIONS[self.operation])}, not {self.parameter!r}"
            )
        for name, value, allowed in (
            ("heads", self.heads, HEADS),
            ("feed-forward dimension", self.ff_dim, FF_DIMS),
            ("feed-forward layers", self.ff_count, FF_COUNTS),
        ):
            if value not in allowed:
                raise ValueError(f"{where}: {name} {value} is not one of {', '.join(map(str, allowed))}")


@dataclass(frozen=True)
class EncoderSpec:
    hidden: int
    layers: tuple[LayerSpec, ...]

    def to_string(self) -> str:
        return "|".join([f"h{self.hidden}", *(layer.to_string() for layer in self.layers)])

    def check(self) -> None:
        if self.hidden not in HIDDEN_SIZES:
            raise ValueError(f"hidden size {self.hidden} is not one of {', '.join(map(str, HIDDEN_SIZES))}")
        if len(self.layers) not in NUM_LAYERS:
            raise ValueError(f"{len(self.layers)} layers; FlexiBERT encoders have {' or '.join(map(str, NUM_LAYERS))}")
        for i, layer in enumerate(self.layers):
            layer.check(f"layer {i}")
            if self.hidden % layer.heads:
                raise ValueError(f"layer {i}: {layer.heads} heads do not divide hidden size {self.hidden}")

    def to_record(self) -> dict[str, Any]:
        """The layout of a ``flexibert_glue.json`` record (without id and scores)."""
        return {
            "hidden_size": self.hidden,
            "encoder_layers": [
                {
                    "operation_type": layer.operation,
                    "operation_parameter": int(layer.parameter) if layer.parameter.isdigit() else layer.parameter,
                    "num_operation_heads": layer.heads,
                    "feed_forward_dimension": layer.ff_dim,
                    "num_feed_forward": layer.ff_count,
                }
                for layer in self.layers
            ],
        }


def parse_encoder(text: str) -> EncoderSpec:
    """Parse the string form; raise ``ValueError`` naming what is wrong."""
    parts = text.strip().split("|")
    if len(parts) < 2 or not re.fullmatch(r"h\d+", parts[0]):
        raise ValueError(
            f"{text!r}: expected 'h<hidden>|<layer>|...', e.g. 'h128|SA.SDP-h2-ff512x1|LT.DFT-h4-ff1024x3'"
        )
    layers = []
    for i, part in enumerate(parts[1:]):
        match = _LAYER.match(part)
        if not match:
            raise ValueError(
                f"{text!r}: layer {i} {part!r} is not of the form <op>.<parameter>-h<heads>-ff<dim>x<count>"
            )
        layers.append(
            LayerSpec(match["op"], match["param"], int(match["heads"]), int(match["ff"]), int(match["count"]))
        )
    spec = EncoderSpec(int(parts[0][1:]), tuple(layers))
    try:
        spec.check()
    except ValueError as err:
        raise ValueError(f"{text!r}: {err}") from None
    return spec


def from_record(record: Mapping[str, Any]) -> EncoderSpec:
    """The encoder a ``flexibert_glue.json`` record describes."""
    layers = tuple(
        LayerSpec(
            str(layer["operation_type"]),
            str(layer["operation_parameter"]),
            int(layer["num_operation_heads"]),
            int(layer["feed_forward_dimension"]),
            int(layer["num_feed_forward"]),
        )
        for layer in record["encoder_layers"]
    )
    spec = EncoderSpec(int(record["hidden_size"]), layers)
    spec.check()
    return spec


def layer_specs(values: Sequence[Mapping[str, Any]]) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(**v) for v in values)
