"""LayerNorm removal: the fake LayerNorm's formula, the measured scale, the order and the fine-tuning schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import automl
from automl.costs import compute_costs
from automl_plugins.architectures.flexibert.model import FlexiBERTEncoder
from automl_plugins.architectures.flexibert.spec import EncoderSpec, LayerSpec
from automl_plugins.evaluators.training import train_candidate
from automl_plugins.recipe.ln_removal import (
    FakeableLayerNorm,
    LayerNormRemoval,
    SplitAttentionInput,
    measure_input_std,
    removal_order,
    split_attention_norms,
)

SPEC = EncoderSpec(16, (LayerSpec("SA", "SDP", 2, 32, 1), LayerSpec("LT", "DCT", 2, 32, 1)))


def _encoder(placement="post"):
    torch.manual_seed(0)
    return FlexiBERTEncoder(SPEC, vocab_size=40, max_positions=16, num_classes=2, options={"norm_placement": placement})


def test_fake_layer_norm_divides_by_the_frozen_scale_and_keeps_the_centring():
    ln = nn.LayerNorm(5)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2)
        ln.bias.normal_()
    fake = FakeableLayerNorm(ln)
    x = torch.randn(3, 4, 5) * 3 + 1
    assert torch.allclose(fake(x), ln(x))  # real until faked
    fake.std.fill_(2.5)
    fake.fake = True
    expected = (x - x.mean(dim=-1, keepdim=True)) / 2.5 * ln.weight + ln.bias
    assert torch.allclose(fake(x), expected)
    # Linear in x: no dependence on the input's scale any more.
    assert torch.allclose(fake(2 * x) - ln.bias, 2 * (fake(x) - ln.bias), atol=1e-6)


def test_measured_scale_is_the_std_of_every_entry_of_the_input():
    model = _encoder()
    tokens = torch.randint(0, 40, (10, 8))
    seen = []
    model.layers[0].norm_op.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    stds = measure_input_std(model, ["layers.0.norm_op"], tokens, batch_size=4)
    assert len(seen) == 3  # batches of 4, 4, 2
    assert stds["layers.0.norm_op"] == pytest.approx(float(torch.cat(seen).std()), rel=1e-6)


@pytest.mark.parametrize("placement", ["post", "peri"])
def test_feed_forward_norms_go_first_then_attention_then_embedding_and_final(placement):
    order = removal_order(_encoder(placement))
    if placement == "peri":
        assert order[:4] == ["layers.0.norm_ff", "layers.0.norm_ff_out", "layers.1.norm_ff", "layers.1.norm_ff_out"]
    else:
        assert order[:4] == ["layers.0.norm_ff", "layers.1.norm_ff", "layers.0.norm_op", "layers.1.norm_op"]
    assert order[-1] == "embedding_norm"


def test_pre_ln_attention_loses_its_layer_norm_on_queries_and_keys_before_values():
    model = _encoder("pre")
    tokens = torch.randint(0, 40, (3, 8))
    expected = model(tokens)
    assert split_attention_norms(model) == 1  # layer 0 attends; layer 1 is a DCT layer
    assert torch.allclose(model(tokens), expected, atol=1e-6)  # the same function
    assert removal_order(model) == [
        "layers.0.norm_ff",
        "layers.1.norm_ff",
        "layers.0.operation.qkv.norm_qk",
        "layers.1.norm_op",
        "layers.0.operation.qkv.norm_v",
        "embedding_norm",
        "final_norm",
    ]
    split = model.layers[0].operation.qkv
    assert isinstance(split, SplitAttentionInput) and split.norm_qk.weight is split.norm_v.weight
    x = torch.randn(2, 8, 16) * 3
    dense = split.qkv(nn.functional.layer_norm(x, (16,), split.norm_qk.weight, split.norm_qk.bias))
    split.norm_qk.std.fill_(2.0)
    split.norm_qk.fake = True
    out = split(x)
    assert torch.allclose(out[..., 32:], dense[..., 32:], atol=1e-6)  # values still see the real LayerNorm
    assert torch.allclose(out[..., :32], split.qkv(split.norm_qk(x))[..., :32])


def test_after_training_fakes_one_layer_norm_per_gap_and_leaves_none():
    model = _encoder()
    tokens, targets = torch.randint(0, 40, (64, 8)), torch.randint(0, 2, (64,))
    removal = LayerNormRemoval(gap=3, batch_size=8)
    count = len(removal_order(model))
    assert removal.schedule(count) == {0: 0, 3: 1, 6: 2, 9: 3, 12: 4}
    faked_at = {}
    step = [0]

    def record(_module, _inputs):
        for name, m in model.named_modules():
            if isinstance(m, FakeableLayerNorm) and m.fake and name not in faked_at:
                faked_at[name] = step[0]
        step[0] += 1

    model.register_forward_pre_hook(record)
    settings = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "grad_clip": 1.0}
    info = removal.after_training(model, automl.Batch(tokens, targets), None, nn.CrossEntropyLoss(), settings)
    assert info["ln_removed"] == count and info["ln_removal_steps"] == 3 * (count + 1)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    # (the first forward pass is the calibration, 8 batches of 8 examples)
    order = removal_order(model)
    assert [faked_at[name] - 8 for name in order] == [0, 3, 6, 9, 12]


def test_the_dimension_runs_after_training_in_the_training_evaluator():
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "n", "n_trials": 1, "sampler": "random"},
            "task": {"name": "text_order", "seq_len": 8, "vocab_size": 64, "batch_size": 16},
            "dimensions": [
                {"name": "flexibert", "hidden_sizes": [128], "layers": [2], "heads": [2], "ff_dims": [512]},
                {"name": "layernorm_removal", "gaps": [2]},
            ],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )
    candidate = space.candidate_from_arch(
        "h128|SA.SDP-h2-ff512x1|LT.DCT-h2-ff512x1", {"layernorm_removal.remove": True, "layernorm_removal.gap": 2}
    )
    result = train_candidate(candidate, {"epochs": 1, "max_train_samples": 64}, device="cpu")
    assert result.info["ln_removed"] == 5 and result.info["ln_removal_steps"] == 12  # post: no final norm
    assert "val_accuracy_before_post_training" in result.info


def test_layernorm_removal_needs_a_transformer():
    with pytest.raises(automl.SpaceError, match="transformer"):
        automl.SearchSpace.from_dict(
            {
                "study": {"name": "n", "n_trials": 1, "sampler": "random"},
                "task": {"name": "digits", "image_size": 16},
                "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}, {"name": "layernorm_removal"}],
                "evaluator": {"name": "proxies", "proxies": ["params"]},
                "objectives": [{"metric": "params"}],
            }
        )


def test_after_training_on_a_pre_ln_encoder_removes_both_attention_paths():
    model = _encoder("pre")
    tokens, targets = torch.randint(0, 40, (32, 8)), torch.randint(0, 2, (32,))
    settings = {"optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9, "grad_clip": 1.0}
    info = LayerNormRemoval(gap=1, batch_size=8).after_training(
        model, automl.Batch(tokens, targets), None, nn.CrossEntropyLoss(), settings
    )
    assert info["ln_removed"] == 7 and info["ln_removal_steps"] == 8
    assert (
        info["ln_removal_std"]["layers.0.operation.qkv.norm_qk"]
        == info["ln_removal_std"]["layers.0.operation.qkv.norm_v"]
    )
    # Both paths faked with one scale: merged back into one LayerNorm and one input projection.
    assert isinstance(model.layers[0].operation.qkv, nn.Linear)
    fakes = [m for m in model.modules() if isinstance(m, FakeableLayerNorm)]
    assert len(fakes) == 6 and all(m.fake and float(m.std) > 0 for m in fakes)
    costs, reference = compute_costs(model, tokens[:1]), compute_costs(_encoder("pre"), tokens[:1])
    assert costs["params"] == reference["params"] and costs["flops"] == reference["flops"]
