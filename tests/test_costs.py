"""Cost figures after compression: kept parameters, FLOPs under structured pruning, size in bits by hand."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from automl.costs import compute_costs, count_flops, count_params, size_in_bits
from automl_plugins.recipe.pruning import prune_channels, prune_unstructured
from automl_plugins.recipe.quantization import quantize_model


def _small():
    torch.manual_seed(0)
    # conv: 8×3×3×3 = 216 weights + 8 biases; linear: 4×8 = 32 weights + 4 biases.
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )


def test_dense_model_by_hand():
    model = _small()
    assert count_params(model) == 216 + 8 + 32 + 4
    assert size_in_bits(model) == 32 * (216 + 8 + 32 + 4)
    # 5×5 input: the conv does 25 positions × 8 × 3 × 9 MACs, the linear 8 × 4.
    assert count_flops(model, torch.randn(1, 3, 5, 5)) == 25 * 8 * 3 * 9 + 8 * 4


def test_pruned_and_quantized_size_by_hand():
    model = _small()
    prune_unstructured(model, {"0": 0.5}, "magnitude")  # 108 of 216 conv weights kept
    quantize_model(model, {"0": 4, "4": 8})  # conv weights 4 bits, linear weights 8 bits
    model(torch.randn(2, 3, 5, 5))
    assert count_params(model) == 108 + 8 + 32 + 4
    assert size_in_bits(model) == 108 * 4 + 8 * 32 + 32 * 8 + 4 * 32
    costs = compute_costs(model, torch.randn(1, 3, 5, 5))
    assert costs == {"params": 152.0, "flops": float(25 * 8 * 3 * 9 + 8 * 4), "size_bits": float(1072)}


def test_structured_pruning_reduces_flops():
    model = _small()
    prune_channels(model, 0.5, norm=1)  # 4 of the conv's 8 output channels
    costs = compute_costs(model, torch.randn(1, 3, 5, 5))
    assert costs["params"] == 108 + 8 + 32 + 4
    # Unstructured zeros in the linear layer's input columns follow the dead channels only if they are
    # zero there; here only the conv's own output rows go.
    assert costs["flops"] == 25 * 4 * 3 * 9 + 8 * 4


def test_unstructured_zeros_do_not_reduce_flops():
    model = _small()
    prune_unstructured(model, {"0": 0.5}, "random")
    assert count_flops(model, torch.randn(1, 3, 5, 5)) == 25 * 8 * 3 * 9 + 8 * 4


def test_costs_read_masks_not_the_last_forward():
    model = _small()
    prune.l1_unstructured(model[0], "weight", amount=0.25)
    before = count_params(model)
    with torch.no_grad():
        model[0].weight_orig.mul_(0)  # values do not matter, only what the mask keeps
    assert count_params(model) == before == 162 + 8 + 32 + 4
