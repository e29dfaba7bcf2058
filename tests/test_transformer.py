"""FlexiBERT-style encoders: every layer option builds and trains, the benchmark's 250 encoders parse and build,
and the hooks proxies rely on (feed-forward first layers, attention maps, norm placement) work."""

from __future__ import annotations

import itertools
import json
from importlib import resources

import optuna
import pytest
import torch

from automl import SearchSpace, StudyRunner, evaluate
from automl.dimensions import ScopedTrial
from automl_plugins.architectures.flexibert import LAYER_OPERATIONS, FlexiBERTDimension, from_record, parse_encoder
from automl_plugins.architectures.flexibert.model import (
    LinearTransform,
    SelfAttention,
    SeparableConvolution,
    dct_matrix,
)
from automl_plugins.tasks.text import MaskedLanguageModellingTask, WordOrderTask


@pytest.fixture(scope="module")
def mlm():
    return MaskedLanguageModellingTask.configure({"seq_len": 12, "vocab_size": 64, "batch_size": 2})


def _records():
    return json.loads(resources.files("automl_plugins.data").joinpath("flexibert_glue.json").read_text())


def _loss(logits, targets):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def test_every_benchmark_encoder_parses_round_trips_and_builds(mlm):
    dim = FlexiBERTDimension.configure({})
    strings = set()
    records = _records()
    for record in records:
        spec = from_record(record)
        assert spec.to_record() == {k: record[k] for k in ("hidden_size", "encoder_layers")}
        arch = dim.parse(spec.to_string())
        assert arch.to_string() == spec.to_string()
        strings.add(arch.to_string())
        # Built on the meta device: every module is constructed, without spending time initialising weights.
        with torch.device("meta"):
            model = arch.build(mlm)
        assert [(f.in_features, f.out_features) for f in model.ffn_first_layers()] == [
            (spec.hidden, layer.ff_dim) for layer in spec.layers
        ]
        assert len(model.attention_modules()) == sum(layer.operation in ("SA", "DSC") for layer in spec.layers)
        assert len(model.projection_modules()) == len(spec.layers)
    assert len(strings) == 249  # one encoder appears twice in the file (ids 174 and 405)
    # A sample runs for real, one per operation mix.
    batch = mlm.batch(2)
    for record in records[::50]:
        model = dim.parse(from_record(record).to_string()).build(mlm)
        logits = model(batch.inputs)
        assert logits.shape == (2, 12, mlm.vocab_size) and torch.isfinite(logits).all()


@pytest.mark.parametrize("op", LAYER_OPERATIONS)
def test_every_layer_option_builds_and_trains(mlm, op):
    batch = mlm.batch(2)
    for heads, ff_count, placement in itertools.product((2, 4), (1, 3), ("post", "pre", "peri")):
        text = f"h128|{op}-h{heads}-ff512x{ff_count}|SA.SDP-h2-ff512x1"
        model = FlexiBERTDimension.configure({}).parse(text).build(mlm, options={"norm_placement": placement})
        logits = model(batch.inputs)
        assert logits.shape == (2, 12, mlm.vocab_size)
        _loss(logits, batch.targets).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert model.layers[0].feed_forward.first.weight.grad is not None


def test_feed_forward_first_layers_and_attention_maps(mlm):
    arch = FlexiBERTDimension.configure({}).parse(
        "h128|SA.WMA-h4-ff1024x3|LT.DCT-h2-ff512x1|SA.SDP-h2-ff512x1|DSC.5-h4-ff1024x1"
    )
    model = arch.build(mlm)
    first = model.ffn_first_layers()
    assert [layer.out_features for layer in first] == [1024, 512, 512, 1024]
    assert all(isinstance(layer, torch.nn.Linear) and layer.in_features == 128 for layer in first)
    seen = []
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.append(o.shape)) for layer in first]
    attention = model.attention_modules()
    assert [type(m) for m in attention] == [SelfAttention, SelfAttention, SeparableConvolution]
    tokens = mlm.batch(2).inputs
    model(tokens)
    assert all(m.last_attention is None for m in attention)
    model.record_attention = True
    model(tokens)
    for hook in hooks:
        hook.remove()
    assert seen[-4:] == [(2, 12, 1024), (2, 12, 512), (2, 12, 512), (2, 12, 1024)]
    shapes = [m.last_attention.shape for m in attention]
    # DSC.5 with 4 heads: 2 attention heads (the other 2 are convolutions).
    assert shapes == [(2, 4, 12, 12), (2, 2, 12, 12), (2, 2, 12, 12)]
    projections = [[tuple(t.shape) for t in m.last_projections] for m in model.projection_modules()]
    assert projections == [[(2, 12, 128)] * 4, [(2, 12, 128)], [(2, 12, 128)] * 3, [(2, 12, 64)] * 3]
    assert torch.allclose(attention[0].last_attention.sum(-1), torch.ones(2, 4, 12))


def test_norm_placement_and_norm_layer_factory(mlm):
    made = []

    def rms(features, layout="nchw"):
        made.append(layout)
        return torch.nn.RMSNorm(features)

    dim = FlexiBERTDimension.configure({})
    arch = dim.parse("h128|SA.SDP-h2-ff512x1|LT.DFT-h2-ff512x1")
    counts = {}
    for placement in ("post", "pre", "peri"):
        made.clear()
        model = arch.build(mlm, norm_layer=rms, options={"norm_placement": placement})
        counts[placement] = len(made)
        assert set(made) == {"nlc"}
        assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    # embedding + 2 per layer; pre adds a final norm; peri normalizes inputs and outputs of both blocks.
    assert counts == {"post": 5, "pre": 6, "peri": 9}
    default = arch.build(mlm)
    assert default.placement == "post" and isinstance(default.embedding_norm, torch.nn.LayerNorm)
    x = torch.randn(2, 12, 128)
    layer = default.layers[0]
    h = layer.norm_op(x + layer.operation(x))
    assert torch.allclose(layer(x), layer.norm_ff(h + layer.feed_forward(h)))
    with pytest.raises(ValueError, match="norm_placement"):
        arch.build(mlm, options={"norm_placement": "sideways"})


def test_linear_transforms_are_the_fourier_and_cosine_transforms():
    m = dct_matrix(8, torch.device("cpu"), torch.float64)
    assert torch.allclose(m @ m.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    # DCT-II of a constant sequence has only the zero-frequency term.
    assert torch.allclose(m @ torch.ones(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64)[0] * 8**0.5)
    x = torch.randn(1, 6, 8)
    for kind, expected in (
        ("DFT", torch.fft.fft2(x.view(1, 6, 2, 4).transpose(1, 2), dim=(-2, -1)).real),
        (
            "DCT",
            dct_matrix(6, x.device, x.dtype) @ x.view(1, 6, 2, 4).transpose(1, 2) @ dct_matrix(4, x.device, x.dtype).T,
        ),
    ):
        transform = LinearTransform(8, 2, kind)
        transform.input = torch.nn.Identity()
        assert torch.allclose(transform(x), expected.transpose(1, 2).reshape(1, 6, 8), atol=1e-5)


def test_classification_head_and_sampling():
    task = WordOrderTask.configure({"seq_len": 12, "vocab_size": 64})
    dim = FlexiBERTDimension.configure({"hidden_sizes": [128], "layers": [2], "ff_dims": [512]})
    seen_ops = set()
    for seed in range(8):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        arch = dim.sample(ScopedTrial(trial, "flexibert"))
        assert {f"flexibert.{k}": v for k, v in dim.params(arch).items()} == trial.params
        seen_ops.update(f"{layer.operation}.{layer.parameter}" for layer in arch.spec.layers)
        assert dim.parse(arch.to_string()) == arch
    logits = arch.build(task)(task.batch(3).inputs)
    assert logits.shape == (3, 2)
    assert len(seen_ops) >= 4


@pytest.mark.parametrize(
    "text, message",
    [
        ("h192|SA.SDP-h2-ff512x1|SA.SDP-h2-ff512x1", "hidden size 192"),
        ("h128|SA.XYZ-h2-ff512x1|SA.SDP-h2-ff512x1", "SA takes SDP or WMA"),
        ("h128|SA.SDP-h3-ff512x1|SA.SDP-h2-ff512x1", "heads 3"),
        ("h128|SA.SDP-h2-ff512x1", "1 layers"),
        ("128|SA.SDP-h2-ff512x1", "expected 'h<hidden>"),
        ("h128|attention|SA.SDP-h2-ff512x1", "is not of the form"),
    ],
)
def test_malformed_encoders_are_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        parse_encoder(text)


def test_table_lookup_of_flexibert_candidates():
    space = SearchSpace.from_dict(
        {
            "study": {"name": "fb", "n_trials": 2, "sampler": "random"},
            "task": {"name": "text_mlm", "seq_len": 8, "vocab_size": 32, "batch_size": 2},
            "dimensions": [{"name": "flexibert", "hidden_sizes": [128], "layers": [2]}],
            "evaluator": {"name": "table", "benchmark": "flexibert", "metrics": ["glue", "cola"]},
            "objectives": [{"metric": "glue", "direction": "maximize"}],
        }
    )
    record = next(r for r in _records() if r["hidden_size"] == 128 and len(r["encoder_layers"]) == 2)
    candidate = space.candidate_from_arch(from_record(record).to_string())
    result = evaluate(candidate, space.evaluator)
    assert result.scores == {"glue": record["glue"], "cola": record["scores"]["cola"]}
    # Most random encoders are not among the 250 measured: their trials fail with the reason, the search goes on.
    study = StudyRunner(space, storage=":memory:").run()
    assert len(study.trials) == 2


def test_draw_shows_one_line_per_layer():
    arch = FlexiBERTDimension.configure({}).parse("h256|SA.WMA-h4-ff1024x3|DSC.9-h2-ff512x1")
    lines = arch.draw().splitlines()
    assert lines[0] == "embedding → hidden 256"
    assert lines[1].startswith("layer 0: SA WMA") and "4 heads" in lines[1] and "3 × 1024" in lines[1]
    assert lines[2].startswith("layer 1: DSC 9") and "1 × 512" in lines[2]


def _expected_params(spec, vocab, positions):
    """Parameters implied by the layer definitions (post-norm LayerNorms, masked-LM head)."""
    h = spec.hidden
    total = vocab * h + positions * h + 2 * h + h * vocab + vocab
    for layer in spec.layers:
        d = h // layer.heads
        if layer.operation == "SA":
            total += 3 * h * h + 3 * h + h * h + h + (layer.heads * d * d if layer.parameter == "WMA" else 0)
        elif layer.operation == "LT":
            total += h * h + h  # the input projection
        else:
            k, w = int(layer.parameter), max(1, layer.heads // 2) * d  # ConvBERT: half the heads attend
            total += (
                3 * (h * w + w)
                + h * k
                + (h * w + w)
                + (w * max(1, layer.heads // 2) * k + max(1, layer.heads // 2) * k)
            )
            total += h * w + w + 2 * w * h + h
        ff = layer.ff_dim
        total += h * ff + ff + (layer.ff_count - 1) * (ff * ff + ff) + ff * h + h
        total += 2 * 2 * h
    return total


def test_parameter_counts_follow_the_layer_definitions(mlm):
    dim = FlexiBERTDimension.configure({"max_positions": 64})
    for record in _records()[:6]:
        spec = from_record(record)
        model = dim.parse(spec.to_string()).build(mlm)
        assert sum(p.numel() for p in model.parameters()) == _expected_params(spec, mlm.vocab_size, 64)


def test_mixed_attention_convolution_heads_equal_a_direct_loop():
    torch.manual_seed(0)
    module = SeparableConvolution(8, 4, 5)  # 2 attention heads and 2 convolution heads of width 2
    x = torch.randn(2, 7, 8)
    got = module(x)
    q, k, v = module.query(x), module.key(x), module.value(x)
    key_conv = module.pointwise(module.depthwise(x.transpose(1, 2))).transpose(1, 2)
    taps = torch.softmax(module.kernel_weights(key_conv * q).view(2, 7, 2, 5), dim=-1)
    span = module.span(x)
    heads = []
    for head in range(2):
        cols = slice(2 * head, 2 * head + 2)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / 2**0.5
        heads.append(torch.softmax(scores, dim=-1) @ v[..., cols])
    convolved = torch.zeros(2, 7, 2, 2)
    for b in range(2):
        for i in range(7):
            for head in range(2):
                for tap in range(5):
                    j = i + tap - 2  # a window centred on token i, zero outside the sequence
                    if 0 <= j < 7:
                        convolved[b, i, head] += taps[b, i, head, tap] * span[b, j, 2 * head : 2 * head + 2]
    attended = torch.stack(heads, dim=2)
    expected = module.out(torch.cat([attended, convolved], dim=2).reshape(2, 7, 8))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_a_new_model_revision_gives_new_candidate_ids(monkeypatch):
    from automl.space import SearchSpace

    def candidate_id():
        space = SearchSpace.from_dict(
            {
                "task": {"name": "text_mlm", "seq_len": 8, "batch_size": 4, "vocab_size": 300},
                "dimensions": [{"name": "flexibert"}],
                "evaluator": {"name": "proxies", "proxies": ["params"]},
                "objectives": [{"metric": "params"}],
            }
        )
        return space.candidate_from_arch("h128|SA.SDP-h2-ff512x1|LT.DFT-h2-ff512x1").id

    before = candidate_id()
    assert candidate_id() == before
    # Scores cached for the encoders an earlier revision built must not answer for today's.
    monkeypatch.setattr(FlexiBERTDimension, "model_revision", FlexiBERTDimension.model_revision + 1)
    assert candidate_id() != before
