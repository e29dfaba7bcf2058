"""Fake quantization: at most 2^b values per tensor or channel, straight-through gradients, QAT with masks."""

from __future__ import annotations

import pytest
import torch

import automl
from automl_plugins.recipe._weights import weight_layers
from automl_plugins.recipe.pruning import prune_unstructured
from automl_plugins.recipe.quantization import BITS, make_fake_quant, quantize_model

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"


def _space(*dims):
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "q", "n_trials": 2, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}, *dims],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("granularity", ["per_tensor", "per_channel"])
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_at_most_2_to_the_b_values(bits, granularity, scheme):
    model = _space().candidate_from_arch(ARCH).build_model()
    quantize_model(model, bits, granularity=granularity, scheme=scheme)
    model(torch.randn(2, 3, 16, 16))
    for _, module in weight_layers(model):
        weight = module.weight.detach()
        assert module.automl_weight_bits == bits
        units = [weight] if granularity == "per_tensor" else list(weight)
        for unit in units:
            assert len(torch.unique(unit)) <= 2**bits
        assert not torch.equal(weight, module.weight_orig.detach())


def test_gradients_pass_straight_through():
    fq = make_fake_quant(4, "per_tensor", "symmetric")
    x = torch.linspace(-1, 1, 50, requires_grad=True)
    fq(x).sum().backward()
    assert torch.all(x.grad == 1)  # inside the range the gradient is the identity's


def test_zero_stays_zero_so_masks_survive_quantization():
    model = _space().candidate_from_arch(ARCH).build_model()
    prune_unstructured(model, 0.5, "magnitude")
    quantize_model(model, 3, 8, granularity="per_channel", scheme="asymmetric")
    masks = [m.weight_mask.clone() for _, m in weight_layers(model)[:-1]]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x = torch.randn(8, 3, 16, 16)
    for _ in range(2):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    model(x)
    for mask, (_, module) in zip(masks, weight_layers(model)[:-1]):
        assert torch.all(module.weight[mask == 0] == 0)
        assert len(torch.unique(module.weight.detach())) <= 2**3 * module.weight.shape[0]


def test_activation_quantization_limits_layer_inputs():
    model = _space().candidate_from_arch(ARCH).build_model()
    quantize_model(model, 32, 2)
    seen = []
    layer = model.classifier
    handle = layer.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach()))
    model(torch.randn(4, 3, 16, 16))
    handle.remove()
    assert len(torch.unique(seen[0])) <= 4
    assert not hasattr(layer, "weight_orig")  # 32-bit weights stay plain parameters


def test_eval_mode_freezes_activation_ranges():
    model = _space().candidate_from_arch(ARCH).build_model()
    quantize_model(model, 8, 8)
    model(torch.randn(4, 3, 16, 16))
    quant = model.classifier.automl_input_quant.quant
    scale = quant.scale.clone()
    model.eval()
    model(torch.randn(4, 3, 16, 16) * 10)
    assert torch.equal(quant.scale, scale)


@pytest.mark.parametrize("bits", BITS)
def test_every_bit_width_builds_and_trains_a_step(bits):
    space = _space({"name": "quantization", "weight_bits": [bits], "activation_bits": [8]})
    params = {
        "quantization.weight_bits": bits,
        "quantization.activation_bits": 8,
        "quantization.granularity": "per_channel",
        "quantization.scheme": "symmetric",
    }
    candidate = space.candidate_from_arch(ARCH, params)
    model = candidate.build_model()
    batch = candidate.task.batch(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = candidate.loss(model(batch.inputs), batch.targets)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(candidate.loss(model(batch.inputs), batch.targets))
    costs = automl.costs.compute_costs(model, candidate.task.example_input())
    reference = automl.costs.compute_costs(candidate.reference_model, candidate.task.example_input())
    assert costs["params"] == reference["params"]
    assert (costs["size_bits"] < reference["size_bits"]) == (bits < 32)


def test_per_layer_bits_are_define_by_run():
    space = _space({"name": "quantization", "weight_bits": [4, 8], "activation_bits": [32], "per_layer": True})
    study = automl.search(space, storage=":memory:", n_trials=1)
    trial = study.trials[0]
    candidate = space.candidate(trial.params)
    names = [n for n, _ in weight_layers(candidate.reference_model)]
    assert sorted(k for k in trial.params if k.startswith("quantization.weight_bits.")) == sorted(
        f"quantization.weight_bits.{n}" for n in names
    )
    model = candidate.build_model()
    for name, module in weight_layers(model):
        assert module.automl_weight_bits == trial.params[f"quantization.weight_bits.{name}"]


def test_double_precision_copies_still_quantize():
    model = _space().candidate_from_arch(ARCH).build_model()
    quantize_model(model, 4, 8, granularity="per_channel")
    out = model.double()(torch.ones(1, 3, 16, 16, dtype=torch.float64))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_compression_without_an_architecture_is_a_space_error():
    with pytest.raises(automl.SpaceError, match="architecture dimension"):
        automl.SearchSpace.from_dict(
            {
                "task": {"name": "digits"},
                "dimensions": [{"name": "quantization"}],
                "evaluator": {"name": "proxies", "proxies": ["params"]},
                "objectives": [{"metric": "params"}],
            }
        )
