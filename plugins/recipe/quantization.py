"""Quantization bit-widths simulated with fake quantization (``torch.ao.quantization.FakeQuantize``).

Weights are fake-quantized on every forward from their current range (per tensor or per output
channel, symmetric or affine); inputs of a layer may be quantized too, with a moving-average range
learnt in training mode. ``FakeQuantize`` passes gradients straight through, so training with it is
quantization-aware training. Each layer's ``automl_weight_bits`` says its weight bit-width, which is
what ``automl.costs`` counts in ``size_bits``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import (
    FakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)

from automl import MODEL, Dimension, Option, ScopedTrial
from automl_plugins.recipe import _weights, lowbit
from automl_plugins.recipe._weights import weight_layers

BITS = (2, 3, 4, 6, 8, 16, 32)
GRANULARITIES = ("per_tensor", "per_channel")
METHODS = ("fake_quant", "dorefa")
SCHEMES = ("symmetric", "asymmetric")
FULL_PRECISION = 32


def make_fake_quant(
    bits: int,
    granularity: str = "per_tensor",
    scheme: str = "symmetric",
    *,
    ch_axis: int = 0,
    averaging_constant: float = 1.0,
) -> FakeQuantize:
    """A ``FakeQuantize`` with at most ``2**bits`` levels per tensor (or per channel along ``ch_axis``).

    ``averaging_constant=1`` ranges over the current tensor only (weights); smaller values keep a
    moving average (activations).
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"fake quantization takes 2 to 16 bits, got {bits}")
    symmetric = scheme == "symmetric"
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    if bits > 8:
        dtype = torch.qint32
    else:
        dtype = torch.qint8 if symmetric else torch.quint8
    if granularity == "per_channel":
        qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        return FakeQuantize(
            observer=MovingAveragePerChannelMinMaxObserver,
            quant_min=qmin,
            quant_max=qmax,
            dtype=dtype,
            qscheme=qscheme,
            ch_axis=ch_axis,
            averaging_constant=averaging_constant,
        )
    qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver,
        quant_min=qmin,
        quant_max=qmax,
        dtype=dtype,
        qscheme=qscheme,
        averaging_constant=averaging_constant,
    )


class WeightFakeQuant(nn.Module):
    """Fake-quantizes a weight over the range of its current values (no state carried between calls)."""

    def __init__(self, bits: int, granularity: str = "per_tensor", scheme: str = "symmetric") -> None:
        super().__init__()
        self.bits = bits
        self.quant = make_fake_quant(bits, granularity, scheme)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        self.quant.activation_post_process.reset_min_max_vals()
        return _weights.quantize_as_float(self.quant, weight)


class InputFakeQuant(nn.Module):
    """Fake-quantizes a layer's input; the range is learnt in training mode and frozen in eval mode
    (a model that has never trained learns it on its first batch, so eval-only use still works)."""

    def __init__(self, bits: int, scheme: str = "asymmetric") -> None:
        super().__init__()
        self.bits = bits
        self.quant = make_fake_quant(bits, "per_tensor", scheme, averaging_constant=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        observer = self.quant.activation_post_process
        low, high = observer.min_val, observer.max_val
        seen = bool(torch.isfinite(low).all() and torch.isfinite(high).all() and (low <= high).all())
        if not seen:
            observer.reset_min_max_vals()  # a fresh range (also after surgery such as SynFlow's abs)
        if self.training or not seen:
            self.quant.enable_observer()
        else:
            self.quant.disable_observer()
        return _weights.quantize_as_float(self.quant, x)


def _quantize_input(module: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return (module.automl_input_quant(inputs[0]), *inputs[1:])


def quantize_model(
    model: nn.Module,
    weight_bits: int | Mapping[str, int],
    activation_bits: int | Mapping[str, int] = FULL_PRECISION,
    *,
    granularity: str = "per_tensor",
    scheme: str = "symmetric",
) -> None:
    """Fake-quantize every Conv and Linear layer in place; bit-widths are one value or one per layer name.

    32 bits leaves a tensor in floating point. Sets ``automl_weight_bits`` on every layer.
    """
    for name, module in weight_layers(model):
        w_bits = int(weight_bits[name] if isinstance(weight_bits, Mapping) else weight_bits)
        a_bits = int(
            activation_bits.get(name, FULL_PRECISION) if isinstance(activation_bits, Mapping) else activation_bits
        )
        device = _weights.effective_weight(module).device
        module.automl_weight_bits = w_bits
        if w_bits < FULL_PRECISION:
            module.automl_weight_quant = WeightFakeQuant(w_bits, granularity, scheme).to(device)
            _weights.install(module)
        if a_bits < FULL_PRECISION:
            module.automl_input_quant = InputFakeQuant(a_bits, scheme).to(device)
            module.register_forward_pre_hook(_quantize_input)


class QuantizationDimension(Dimension):
    name = "quantization"
    kind = "quantization"
    # After pruning (MODEL), so the bit-widths apply to the masked weights.
    stage = MODEL + 5
    description = (
        "weight and activation bit-widths (fake quantization, QAT), per tensor or per channel, "
        "symmetric or asymmetric, one for the model or one per layer"
    )
    options = {
        "weight_bits": Option(
            list,
            default=list(BITS),
            item_type=int,
            choices=BITS,
            min_items=1,
            help="weight bit-widths to choose from (32: floating point)",
        ),
        "activation_bits": Option(
            list,
            default=[8, 32],
            item_type=int,
            choices=BITS,
            min_items=1,
            help="bit-widths of layer inputs to choose from (32: floating point)",
        ),
        "granularities": Option(
            list,
            default=list(GRANULARITIES),
            item_type=str,
            choices=GRANULARITIES,
            min_items=1,
            help="weight ranges per tensor or per output channel",
        ),
        "schemes": Option(list, default=list(SCHEMES), item_type=str, choices=SCHEMES, min_items=1),
        "per_layer": Option(
            bool, default=False, help="choose bit-widths per layer (define-by-run over the model's layers)"
        ),
        "methods": Option(
            list,
            default=["fake_quant"],
            item_type=str,
            choices=METHODS,
            min_items=1,
            help="fake_quant (QAT, straight-through gradients) or dorefa (low-bit gradients too; see lowbit.py)",
        ),
        "gradient_bits": Option(
            list, default=[8], item_type=int, choices=BITS, min_items=1, help="DoReFa gradient bit-widths"
        ),
        "fp_fractions": Option(
            list,
            default=[0.0],
            item_type=float,
            min=0.0,
            max=0.95,
            min_items=1,
            help="fraction of the training steps in full precision before QAT (compute-optimal QAT)",
        ),
    }

    def validate(self, space: Any) -> None:
        _weights.require_architecture(space, self.name)

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        s = self.settings
        # Asked only when a study lists more than the default, so earlier studies keep their candidate ids.
        method = trial.suggest_categorical("method", s["methods"]) if s["methods"] != ["fake_quant"] else "fake_quant"
        if method == "dorefa":
            self._suggest_dorefa(trial, candidate)
            return
        weight_bits: int | dict[str, int]
        activation_bits: int | dict[str, int]
        if s["per_layer"]:
            names = [name for name, _ in weight_layers(candidate.reference_model)]
            weight_bits = {n: trial.suggest_categorical(f"weight_bits.{n}", s["weight_bits"]) for n in names}
            activation_bits = {
                n: trial.suggest_categorical(f"activation_bits.{n}", s["activation_bits"]) for n in names
            }
            quantized = any(b < FULL_PRECISION for b in [*weight_bits.values(), *activation_bits.values()])
        else:
            weight_bits = trial.suggest_categorical("weight_bits", s["weight_bits"])
            activation_bits = trial.suggest_categorical("activation_bits", s["activation_bits"])
            quantized = min(weight_bits, activation_bits) < FULL_PRECISION
        if not quantized:
            # Floating point throughout: only the (unchanged) bit-width attributes to set; one candidate id.
            candidate.set_canonical(trial.prefix, "float")
            candidate.add_transform(trial.prefix, lambda model, _c: quantize_model(model, FULL_PRECISION))
            return
        self._suggest_schedule(trial, candidate)
        # Granularity and scheme only matter when something is quantized (define-by-run).
        granularity = trial.suggest_categorical("granularity", s["granularities"])
        scheme = trial.suggest_categorical("scheme", s["schemes"])
        candidate.add_transform(
            trial.prefix,
            lambda model, _c: quantize_model(
                model, weight_bits, activation_bits, granularity=granularity, scheme=scheme
            ),
        )

    def _suggest_schedule(self, trial: ScopedTrial, candidate: Any) -> None:
        fractions = self.settings["fp_fractions"]
        fraction = trial.suggest_categorical("fp_fraction", fractions) if fractions != [0.0] else 0.0
        if fraction > 0:
            candidate.recipe.setdefault("training_hooks", []).append(lowbit.QATSchedule(fraction))

    def _suggest_dorefa(self, trial: ScopedTrial, candidate: Any) -> None:
        s = self.settings
        weight_bits = trial.suggest_categorical("weight_bits", s["weight_bits"])
        activation_bits = trial.suggest_categorical("activation_bits", s["activation_bits"])
        gradient_bits = trial.suggest_categorical("gradient_bits", s["gradient_bits"])
        self._suggest_schedule(trial, candidate)
        candidate.add_transform(
            trial.prefix, lambda model, _c: lowbit.dorefa_model(model, weight_bits, activation_bits, gradient_bits)
        )
