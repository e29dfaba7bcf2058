"""Fire Together Wire Together: the activation-mass target, the gate, the decoupled mask loss and the per-input
FLOPs figure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import automl
from automl_plugins.evaluators.training import train_candidate
from automl_plugins.recipe.ftwt import (
    ChannelGate,
    GatedUnit,
    activation_mass_target,
    add_gates,
    dynamic_flops,
    gated_units,
)


def _maps(strengths):
    """B×C×2×2 maps whose per-channel max |y| is ``strengths`` (one sign flipped to check the absolute value)."""
    s = torch.tensor(strengths, dtype=torch.float32)
    out = torch.zeros(s.shape[0], s.shape[1], 2, 2)
    out[:, :, 0, 1] = -s
    out[:, :, 1, 0] = s / 2
    return out


def test_target_keeps_the_channels_holding_the_top_activation_mass():
    out = _maps([[2.0, 4.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    # Shares 0.2, 0.4, 0.1, 0.3: cumulative in descending order 0.4, 0.7, 0.9, 1.0.
    assert activation_mass_target(out, 0.7)[0].tolist() == [0, 1, 0, 1]
    assert activation_mass_target(out, 0.75)[0].tolist() == [0, 1, 0, 1]  # cumulative ≤ mass only
    assert activation_mass_target(out, 0.9)[0].tolist() == [1, 1, 0, 1]
    assert activation_mass_target(out, 0.5)[1].tolist() == [1, 1, 0, 0]  # ties: sort order
    dead = _maps([[2.0, 0.0, 1.0, 3.0]])
    assert activation_mass_target(dead, 1.0)[0].tolist() == [1, 0, 1, 1]  # mass 1: only dead channels go


def test_gate_is_a_linear_map_of_the_softmax_of_the_pooled_input():
    gate = ChannelGate(3, 5)
    x = torch.randn(2, 3, 4, 4)
    expected = gate.linear.weight @ torch.softmax(x.mean(dim=(2, 3)), dim=1).T + gate.linear.bias[:, None]
    assert torch.allclose(gate(x), expected.T, atol=1e-6)


def _unit():
    torch.manual_seed(0)
    return nn.Sequential(nn.ReLU(), nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6))


def test_gated_unit_masks_output_channels_and_its_loss_trains_only_the_gate():
    gated = GatedUnit(_unit(), mass=0.9)
    with torch.no_grad():
        gated.gate.linear.weight.zero_()
        gated.gate.linear.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0, 5.0, 5.0]))
    x = torch.randn(4, 3, 5, 5)
    out = gated(x)
    dense = gated.unit(x)
    keep = torch.tensor([1.0, 0, 1, 0, 1, 1]).view(1, 6, 1, 1)
    assert torch.allclose(out, dense * keep)
    logits = gated.gate(F.relu(x))
    target = activation_mass_target(dense, 0.9)
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=0).sum()
    assert torch.allclose(gated.last_loss, expected)
    gated.last_loss.backward()
    assert gated.gate.linear.weight.grad.abs().sum() > 0
    assert gated.unit[1].weight.grad is None  # decoupled: the mask loss never reaches the backbone


def test_dynamic_flops_discount_the_channels_each_input_turns_off():
    model = nn.Sequential(_unit(), nn.Flatten(), nn.Linear(6 * 5 * 5, 2))
    (gated,) = add_gates(model, 1.0)
    with torch.no_grad():
        gated.gate.linear.weight.zero_()
        gated.gate.linear.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0, -5.0, 5.0]))
    data = automl.Batch(torch.randn(10, 3, 5, 5), torch.zeros(10, dtype=torch.long))
    figures = dynamic_flops(model, data, batch_size=4)
    dense_conv = 6 * 25 * 3 * 9
    assert figures["ftwt_active_fraction"] == pytest.approx(0.5)
    assert figures["ftwt_dense_flops"] - figures["ftwt_flops"] == pytest.approx(dense_conv * 0.5)


def test_nb201_candidate_trains_with_gates_and_reports_per_input_flops():
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "n", "n_trials": 1, "sampler": "random"},
            "task": {"name": "digits", "image_size": 8, "batch_size": 32},
            "dimensions": [
                {"name": "nb201", "channels": 4, "cells_per_stage": 1},
                {"name": "dynamic_pruning", "masses": [0.9]},
            ],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    candidate = space.candidate_from_arch(arch, {"dynamic_pruning.gate": True, "dynamic_pruning.mass": 0.9})
    model = candidate.build_model()
    assert len(gated_units(model)) == 1 + 3 * 4 + 2 * 2  # stem, 4 conv edges in each of 3 cells, 2 reductions
    result = train_candidate(candidate, {"epochs": 1, "max_train_samples": 128}, device="cpu")
    info = result.info
    assert 0 < info["ftwt_flops"] <= info["ftwt_dense_flops"]
    assert 0 <= info["ftwt_active_fraction"] <= 1
    static = space.candidate_from_arch(arch, {"dynamic_pruning.gate": False})
    assert not gated_units(static.build_model()) and static.id != candidate.id
