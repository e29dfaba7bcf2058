"""LGA, hidden covariance and the transformer proxies against direct computations on hand-built models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from automl import Architecture, Batch, Candidate, EvalContext, ProxyValue, SpaceError, Task
from automl_plugins.evaluators.proxies import ProxyEvaluator
from automl_plugins.proxies.lga import LgaProxy
from automl_plugins.proxies.recurrent import HiddenCovProxy, hidden_covariance
from automl_plugins.proxies.transformer import (
    ActivationDistanceProxy,
    HeadConfidenceProxy,
    SoftmaxConfidenceProxy,
    SynapticSaliencyProxy,
    WpcaProxy,
)
from automl_plugins.tasks.digits import DigitsTask

K = 1e-5


class BuiltArch(Architecture):
    def __init__(self, factory, kind):
        self.factory = factory
        self.kind = kind

    def to_string(self) -> str:
        return "hand-built"

    def canonical_id(self) -> str:
        return "hand-built"

    def build(self, task, norm_layer=None, options=None):
        return self.factory()


class TokenTask(Task):
    """Fixed random token sequences with a class label each."""

    name = "tokens"
    kind = "text-classification"

    def __init__(self, **settings):
        super().__init__(**settings)
        self.vocab_size, self.num_classes, self.input_shape = 20, 3, (7,)
        gen = torch.Generator().manual_seed(0)
        self.data = Batch(torch.randint(0, 20, (40, 7), generator=gen), torch.randint(0, 3, (40,), generator=gen))

    def split(self, name):
        return self.data


def candidate_for(factory, kind, task=None):
    candidate = Candidate(task or TokenTask(), seed=0)
    candidate.set_architecture(BuiltArch(factory, kind))
    return candidate


def value(result):
    return result.value if isinstance(result, ProxyValue) else result


def reference_eigen_score(units: np.ndarray) -> float:
    eigenvalues = np.linalg.eigvalsh(np.corrcoef(units))
    return float(-np.sum(np.log(eigenvalues + K) + 1.0 / (eigenvalues + K)))


# -- hidden covariance -------------------------------------------------------------------------------
def test_hidden_covariance_equals_numpy_on_a_hand_built_hidden_state_tensor():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(5, 4, 3)) @ rng.normal(size=(3, 6))  # T×B×H, H=6 units of rank 3
    hidden += 0.01 * rng.normal(size=hidden.shape)
    units = hidden.reshape(-1, 6).T  # H × (T·B)
    got = hidden_covariance(torch.tensor(hidden))
    assert got.value == pytest.approx(reference_eigen_score(units), rel=1e-9)
    assert got.info == {"units": 6, "constant_units": 0}


def test_hidden_covariance_drops_a_constant_unit_or_gives_nan():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(5, 4, 4))
    hidden[:, :, 2] = 0.7
    dropped = hidden_covariance(torch.tensor(hidden))
    kept = np.delete(hidden.reshape(-1, 4).T, 2, axis=0)
    assert dropped.value == pytest.approx(reference_eigen_score(kept), rel=1e-9)
    assert dropped.info["constant_units"] == 1
    strict = hidden_covariance(torch.tensor(hidden), drop_constant=False)
    assert math.isnan(strict.value) and "constant" in strict.reason


class TinyRNN(nn.Module):
    """Follows the recurrent contract: forward_with_hidden → (logits, [T×B×H per layer])."""

    def __init__(self, layers=2):
        super().__init__()
        self.embed = nn.Embedding(20, 5)
        self.cells = nn.ModuleList(nn.RNNCell(5 if i == 0 else 6, 6) for i in range(layers))
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(6, 20)

    def forward_with_hidden(self, tokens):
        x = self.dropout(self.embed(tokens)).transpose(0, 1)  # T×B×E
        entering = []
        for cell in self.cells:
            h = torch.zeros(x.shape[1], 6)
            states, outs = [], []
            for t in range(x.shape[0]):
                states.append(h)
                h = cell(x[t], h)
                outs.append(h)
            entering.append(torch.stack(states))
            x = torch.stack(outs)
        return self.head(x).transpose(0, 1), entering

    def forward(self, tokens):
        return self.forward_with_hidden(tokens)[0]


def test_hidden_cov_proxy_reads_the_chosen_layer_in_eval_mode():
    candidate = candidate_for(TinyRNN, "recurrent")
    batch = candidate.task.batch(8)
    model = candidate.build_model()
    model.eval()
    with torch.no_grad():
        _, hidden = model.forward_with_hidden(batch.inputs)
    for layer in (1, 2):
        # The first step's state is the zero initial state: a constant unit for every unit, dropped per unit
        # only when constant over all samples — here the later steps vary, so no unit is constant.
        expected = reference_eigen_score(hidden[layer - 1].reshape(-1, 6).T.double().numpy())
        got = HiddenCovProxy.configure({"layer": layer}).score(candidate, batch)
        assert got.value == pytest.approx(expected, rel=1e-9)
    too_deep = HiddenCovProxy.configure({"layer": 3}).score(candidate, batch)
    assert math.isnan(too_deep.value) and "2 recurrent layer" in too_deep.reason


# -- LGA ---------------------------------------------------------------------------------------------
def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 10))


def test_lga_equals_an_explicit_per_sample_gradient_loop():
    task = DigitsTask.configure({"image_size": 8, "channels": 1, "batch_size": 10})
    candidate = candidate_for(mlp, "cell", task)
    batch = task.batch(10)
    model = candidate.build_model()
    rows = []
    for i in range(len(batch)):
        model.zero_grad()
        model(batch.inputs[i : i + 1]).sum().backward()
        rows.append(np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
    gradients = np.array(rows, dtype=np.float64)
    ntk = gradients @ gradients.T
    labels = batch.targets.numpy()
    same = (labels[:, None] == labels[None, :]).astype(np.float64)
    expected = np.corrcoef(ntk.ravel(), same.ravel())[0, 1]
    got = LgaProxy.configure({}).score(candidate, batch)
    assert got.value == pytest.approx(expected, rel=1e-6)
    assert got.info["steps"] == 0


def test_lga_after_training_records_the_amount_and_repeats_exactly():
    task = DigitsTask.configure({"image_size": 8, "channels": 1, "batch_size": 10})
    candidate = candidate_for(mlp, "cell", task)
    batch = task.batch(10)
    at_init = LgaProxy.configure({}).score(candidate, batch).value
    trained = LgaProxy.configure({"steps": 3, "lr": 0.1})
    first, second = trained.score(candidate, batch), trained.score(candidate, batch)
    assert first.value == second.value != at_init
    assert first.info["steps"] == 3
    per_epoch = math.ceil(len(task.split("train")) / 10)
    assert LgaProxy.configure({"epochs": 0.5, "steps": 1}).training_steps(task, 10) == 1 + round(0.5 * per_epoch)


# -- transformer proxies -----------------------------------------------------------------------------
class TinyAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.qkv, self.out = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.record = False
        self.last_attention = None

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        if self.record:
            self.last_attention = attention
            self.last_projections = [t.transpose(1, 2).reshape(b, n, d) for t in (q, k, v)]
        return self.out((attention @ v).transpose(1, 2).reshape(b, n, d))


class TinyEncoder(nn.Module):
    """Follows the transformer contract (ffn_first_layers, attention_modules, record_attention)."""

    def __init__(self, dim=8, heads=2, layers=2, ffn=12):
        super().__init__()
        self.record_attention = False
        self.embed = nn.Embedding(20, dim)
        self.attn = nn.ModuleList(TinyAttention(dim, heads) for _ in range(layers))
        self.ffn = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim)) for _ in range(layers)
        )
        self.head = nn.Linear(dim, 3)

    def ffn_first_layers(self):
        return [block[0] for block in self.ffn]

    def attention_modules(self):
        return list(self.attn)

    def forward(self, tokens):
        x = self.embed(tokens)
        for attention, ffn in zip(self.attn, self.ffn):
            attention.record = self.record_attention
            x = x + attention(x)
            x = x + ffn(x)
        return self.head(x.mean(dim=1))


def direct_run(candidate, batch, backward=False):
    model = candidate.build_model()
    model.train()
    model.record_attention = True
    pre = []
    for layer in model.ffn_first_layers():
        layer.register_forward_hook(lambda _m, _i, out: pre.append(out.detach()))
    out = model(batch.inputs)
    if backward:
        out.sum().backward()
    return model, [m.last_attention.detach() for m in model.attention_modules()], pre


def test_wpca_equals_numpy_principal_components_times_parameters():
    candidate = candidate_for(TinyEncoder, "transformer")
    batch = candidate.task.batch(6)
    model = candidate.build_model()
    model.eval()
    pre = []
    for layer in model.ffn_first_layers():
        layer.register_forward_hook(lambda _m, _i, out: pre.append(out.detach().reshape(-1, out.shape[-1]).numpy()))
    with torch.no_grad():
        model(batch.inputs)
    counts = []
    for x in pre:
        eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False)))[::-1]
        share = np.cumsum(eigenvalues) / eigenvalues.sum()
        counts.append(int(np.argmax(share > 0.99)) + 1)
    params = sum(p.numel() for p in model.parameters())
    got = WpcaProxy.configure({"batches": 1}).score(candidate, batch)
    assert got.value == pytest.approx(params * sum(counts))
    mean = WpcaProxy.configure({"batches": 1, "reduce": "mean"}).score(candidate, batch)
    assert mean.value == pytest.approx(params * sum(counts) / len(counts))
    loose = WpcaProxy.configure({"batches": 1, "eta": 0.5}).score(candidate, batch)
    assert loose.value < got.value


def test_attention_confidences_and_activation_distance_equal_direct_computations():
    candidate = candidate_for(TinyEncoder, "transformer")
    batch = candidate.task.batch(5)
    _, attention, pre = direct_run(candidate, batch)
    voita_head = sum(float(a.max(dim=-1).values.mean()) for a in attention)
    softmax = sum(float(a.max(dim=1).values.mean()) for a in attention)
    distance = 0.0
    for p in pre:
        codes = (p > 0).numpy()
        for sample in codes:  # N × D′
            distance += sum(
                int((sample[i] == sample[j]).sum()) for i in range(len(sample)) for j in range(len(sample))
            ) / len(codes)
    evaluator = ProxyEvaluator.configure(
        {
            "proxies": ["head_confidence", "softmax_confidence", "activation_distance", "synaptic_saliency"],
            "batch_size": 5,
        }
    )
    result = evaluator.evaluate(candidate, EvalContext(None, seed=0, device="cpu"))
    assert result.scores["head_confidence"] == pytest.approx(reference_head_confidence(candidate, batch), rel=1e-6)
    assert result.scores["softmax_confidence"] == pytest.approx(softmax, rel=1e-6)
    assert result.scores["activation_distance"] == pytest.approx(distance, rel=1e-9)
    voita = HeadConfidenceProxy.configure({"source": "attention"}).score(candidate, batch)
    assert value(voita) == pytest.approx(voita_head, rel=1e-6)
    assert value(SoftmaxConfidenceProxy.configure({"reduce": "mean"}).score(candidate, batch)) == pytest.approx(
        softmax / len(attention), rel=1e-6
    )
    assert value(ActivationDistanceProxy.configure({}).score(candidate, batch)) == pytest.approx(distance)


def reference_head_confidence(candidate, batch, bert_init=False):
    """Σ over the Q, K, V Linear outputs (B×N×D) of the mean of their max over tokens, read by hooks on a qkv split."""
    model = candidate.build_model()
    if bert_init:
        torch.manual_seed(candidate.seed)
        for module in model.modules():
            if type(module) in (nn.Linear, nn.Embedding):
                module.weight.data.normal_(0.0, 0.02)
                if type(module) is nn.Linear:
                    module.bias.data.zero_()
    model.train()
    outputs = []
    for attention in model.attention_modules():
        attention.qkv.register_forward_hook(lambda _m, _i, out: outputs.extend(out.chunk(3, dim=-1)))
    model(batch.inputs)
    assert len(outputs) == 3 * len(model.attention_modules())
    total = 0.0
    for out in outputs:
        per_feature = out.detach().numpy().max(axis=1)  # B × D: the largest value over the tokens
        total += float(per_feature.mean())
    return total


def test_head_confidence_reads_the_attention_projections_as_the_reference_does():
    candidate = candidate_for(TinyEncoder, "transformer")
    batch = candidate.task.batch(5)
    expected = reference_head_confidence(candidate, batch)
    default = HeadConfidenceProxy.configure({})
    assert default.settings["source"] == "projections"
    assert value(default.score(candidate, batch)) == pytest.approx(expected, rel=1e-6)
    mean = HeadConfidenceProxy.configure({"reduce": "mean"}).score(candidate, batch)
    assert value(mean) == pytest.approx(expected / 6, rel=1e-6)  # 2 modules × (Q, K, V)
    assert value(HeadConfidenceProxy.configure({"source": "attention"}).score(candidate, batch)) != pytest.approx(
        expected
    )
    with pytest.raises(SpaceError) as err:
        HeadConfidenceProxy.configure({"source": "softmax"}, key="evaluator.proxy_options.head_confidence")
    assert "projections" in str(err.value)


def test_reference_initialisation_redraws_weights_before_the_shared_pass():
    candidate = candidate_for(TinyEncoder, "transformer")
    batch = candidate.task.batch(5)
    expected = reference_head_confidence(candidate, batch, bert_init=True)
    assert expected != pytest.approx(reference_head_confidence(candidate, batch))
    alone = HeadConfidenceProxy.configure({"init": "reference"}).score(candidate, batch)
    assert value(alone) == pytest.approx(expected, rel=1e-6)
    evaluator = ProxyEvaluator.configure(
        {
            "proxies": ["head_confidence", "softmax_confidence"],
            "batch_size": 5,
            "proxy_options": {"head_confidence": {"init": "reference"}},
        }
    )
    scores = evaluator.evaluate(candidate, EvalContext(None, seed=0, device="cpu")).scores
    assert scores["head_confidence"] == pytest.approx(expected, rel=1e-6)
    # softmax_confidence kept the default initialisation: a separate pass, its own value.
    default_softmax = value(SoftmaxConfidenceProxy.configure({}).score(candidate, batch))
    assert scores["softmax_confidence"] == pytest.approx(default_softmax, rel=1e-6)


def test_head_confidence_without_recorded_projections_is_nan_with_a_reason():
    class NoProjections(TinyAttention):
        def forward(self, x):
            out = super().forward(x)
            self.last_projections = None
            return out

    def encoder():
        model = TinyEncoder()
        model.attn = nn.ModuleList(NoProjections(8, 2) for _ in range(2))
        return model

    candidate = candidate_for(encoder, "transformer")
    got = HeadConfidenceProxy.configure({}).score(candidate, candidate.task.batch(4))
    assert math.isnan(got.value) and "last_projections" in got.reason
    assert math.isfinite(
        value(HeadConfidenceProxy.configure({"source": "attention"}).score(candidate, candidate.task.batch(4)))
    )


def test_flexibert_wma_attention_records_queries_keys_values_and_weighted_queries():
    from automl_plugins.architectures.flexibert.model import SelfAttention

    module = SelfAttention(8, 2, "WMA")
    with torch.no_grad():
        module.weight.copy_(torch.randn_like(module.weight))
    x = torch.randn(3, 5, 8)
    module.record = True
    module(x)
    q, k, v = module.qkv(x).chunk(3, dim=-1)
    weighted = (q.view(3, 5, 2, 4).transpose(1, 2) @ module.weight).transpose(1, 2).reshape(3, 5, 8)
    for got, want in zip(module.last_projections, (q, k, v, weighted), strict=True):
        torch.testing.assert_close(got, want)
    module.record = False
    module(x)
    assert module.last_projections is None


def test_synaptic_saliency_equals_a_direct_backward():
    candidate = candidate_for(TinyEncoder, "transformer")
    batch = candidate.task.batch(5)
    model, _, _ = direct_run(candidate, batch, backward=True)
    linears = [m for block in model.ffn for m in block if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    expected = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in linears)
    assert value(SynapticSaliencyProxy.configure({}).score(candidate, batch)) == pytest.approx(expected, rel=1e-6)


def test_transformer_proxies_on_a_model_without_the_contract_give_nan_with_a_reason():
    candidate = candidate_for(lambda: nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(28, 3)), "transformer")
    batch = candidate.task.batch(4)
    wpca = WpcaProxy.configure({}).score(candidate, batch)
    assert math.isnan(wpca.value) and "ffn_first_layers" in wpca.reason
    evaluator = ProxyEvaluator.configure({"proxies": ["head_confidence"]})
    result = evaluator.evaluate(candidate, EvalContext(None, seed=0, device="cpu"))
    assert math.isnan(result.scores["head_confidence"]) and "ffn_first_layers" in result.reasons["head_confidence"]


def test_lga_eval_mode_vectorised_gradients_equal_the_loop():
    from automl_plugins.proxies.lga import per_sample_gradients, per_sample_gradients_independent

    task = DigitsTask.configure({"image_size": 8, "channels": 1, "batch_size": 6})
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(72, 10))
    model.eval()
    inputs = task.batch(6).inputs
    torch.testing.assert_close(per_sample_gradients_independent(model, inputs), per_sample_gradients(model, inputs))
    candidate = candidate_for(mlp, "cell", task)
    assert not math.isnan(LgaProxy.configure({"mode": "eval"}).score(candidate, task.batch(6)).value)


def test_evaluator_records_lga_training_and_repeats_transformer_scores_exactly():
    candidate = candidate_for(TinyEncoder, "transformer")
    evaluator = ProxyEvaluator.configure(
        {
            "proxies": ["lga", "head_confidence", "wpca"],
            "batch_size": 6,
            "proxy_options": {"lga": {"steps": 2}, "wpca": {"batches": 2}},
        }
    )
    context = EvalContext(None, seed=0, device="cpu")
    first = evaluator.evaluate(candidate, context)
    second = evaluator.evaluate(candidate, context)
    assert first.scores == second.scores
    assert first.info["lga"]["steps"] == 2 and len(first.info["wpca"]["components"]) == 2
    assert set(first.info["proxy_ms"]) == {"lga", "head_confidence", "wpca"}


def test_attention_proxies_of_an_encoder_without_attention_sum_to_zero():
    def no_attention():
        model = TinyEncoder()
        model.attention_modules = list
        return model

    candidate = candidate_for(no_attention, "transformer")
    batch = candidate.task.batch(4)
    assert HeadConfidenceProxy.configure({}).score(candidate, batch).value == 0.0
    averaged = HeadConfidenceProxy.configure({"reduce": "mean"}).score(candidate, batch)
    assert math.isnan(averaged.value) and "average" in averaged.reason


def test_hidden_cov_on_the_recurrent_space_equals_numpy():
    import optuna

    from automl import SearchSpace

    space = SearchSpace.from_dict(
        {
            "task": {"name": "text_lm", "seq_len": 8, "batch_size": 8, "vocab_size": 300},
            "dimensions": [{"name": "nlp_rnn", "embedding_size": 16, "hidden_size": 16, "layers": 1}],
            "evaluator": {"name": "proxies", "proxies": ["hidden_cov"]},
            "objectives": [{"metric": "hidden_cov"}],
        }
    )
    candidate = space.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    result = space.evaluator.evaluate(candidate, EvalContext(None, seed=0, device="cpu"))
    model = candidate.build_model()
    model.eval()
    with torch.no_grad():
        _, hidden = model.forward_with_hidden(candidate.task.batch(8, seed=0).inputs)
    units = hidden[0].reshape(-1, hidden[0].shape[-1]).T.double().numpy()
    units = units[np.ptp(units, axis=1) > 0]
    assert result.scores["hidden_cov"] == pytest.approx(reference_eigen_score(units), rel=1e-6)


def test_flexibert_records_score_with_the_transformer_proxies():
    import importlib.resources
    import json

    from automl_plugins.proxies import score_architectures

    records = json.loads(importlib.resources.files("automl_plugins.data").joinpath("flexibert_glue.json").read_text())
    small = min(
        records,
        key=lambda r: (
            r["hidden_size"],
            len(r["encoder_layers"]),
            sum(layer["feed_forward_dimension"] for layer in r["encoder_layers"]),
        ),
    )
    space = {
        "task": {"name": "text_mlm", "seq_len": 8, "batch_size": 4, "vocab_size": 300},
        "dimensions": [{"name": "flexibert"}],
        "evaluator": {"name": "proxies", "proxies": ["params"]},
        "objectives": [{"metric": "params"}],
    }
    proxies = ["wpca", "params", "head_confidence", "activation_distance", "synaptic_saliency"]
    rows = score_architectures([json.dumps(small)], space, proxies, cache=False, proxy_options={"wpca": {"batches": 1}})
    assert all(math.isfinite(rows[0][p]) for p in proxies), rows


def test_head_confidence_of_a_flexibert_encoder_counts_every_layer_kind_as_the_reference_hooks_do():
    """The reference hooks the query/key/value Linears of attention and ConvBERT layers and the input Linear of
    linear-transform layers; the proxy must sum over exactly those outputs."""
    from automl.space import SearchSpace

    space = SearchSpace.from_dict(
        {
            "task": {"name": "text_mlm", "seq_len": 8, "batch_size": 4, "vocab_size": 300},
            "dimensions": [{"name": "flexibert"}],
            "evaluator": {"name": "proxies", "proxies": ["head_confidence"]},
            "objectives": [{"metric": "head_confidence"}],
        }
    )
    candidate = space.candidate_from_arch("h128|SA.SDP-h2-ff512x1|LT.DFT-h2-ff512x1|DSC.5-h4-ff512x1|LT.DCT-h4-ff512x1")
    batch = candidate.task.batch(4)
    model = candidate.build_model()
    model.train()
    outputs = []
    for layer in model.layers:
        op = layer.operation
        if hasattr(op, "qkv"):  # one fused Linear: its three thirds are the query, key and value outputs
            op.qkv.register_forward_hook(lambda _m, _i, out: outputs.extend(out.chunk(3, dim=-1)))
        for name in ("query", "key", "value", "input"):
            if hasattr(op, name):
                getattr(op, name).register_forward_hook(lambda _m, _i, out: outputs.append(out))
    model(batch.inputs)
    assert len(outputs) == 3 + 1 + 3 + 1
    expected = sum(float(out.detach().numpy().max(axis=1).mean()) for out in outputs)
    got = HeadConfidenceProxy.configure({}).score(candidate, batch)
    assert value(got) == pytest.approx(expected, rel=1e-6)
