"""ZiCo, MeCo, SWAP and AZ-NAS, and the reference forms of nwot: each against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from automl import EvalContext
from automl_plugins.architectures.nb201.model import ReLUConvBN, batch_norm
from automl_plugins.proxies.aznas import (
    AzComplexityProxy,
    AzExpressivityProxy,
    AzProgressivityProxy,
    AzTrainabilityProxy,
)
from automl_plugins.proxies.gradients import NwotProxy
from automl_plugins.proxies.patterns import MecoProxy, SwapProxy
from automl_plugins.proxies.zico import ZicoProxy
from tests.test_proxies import GOOD_CELL, candidate_for, small_convnet, tiny_space, value

RECENT = ["zico", "meco", "swap", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity"]


# -- ZiCo ----------------------------------------------------------------------------------------------
def direct_zico(model, batch, accumulate=False):
    model.train()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    half = len(batch) // 2
    per_split = []
    model.zero_grad()
    for part in (slice(0, half), slice(half, len(batch))):
        if not accumulate:
            model.zero_grad()
        nn.CrossEntropyLoss()(model(batch.inputs[part]), batch.targets[part]).backward()
        per_split.append([m.weight.grad.detach().numpy().astype(np.float64).ravel().copy() for m in layers])
    total = 0.0
    for i in range(len(layers)):
        g = np.stack([split[i] for split in per_split])
        std = g.std(axis=0)
        kept = std != 0
        ratio = np.sum(np.abs(g).mean(axis=0)[kept] / std[kept])
        if ratio != 0:
            total += math.log(ratio)
    return total


@pytest.mark.parametrize("form", ["separate", "accumulated"])
def test_zico_equals_a_direct_computation_on_two_halves(form):
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    expected = direct_zico(candidate.build_model(), batch, accumulate=form == "accumulated")
    got = value(ZicoProxy.configure({"gradients": form}).score(candidate, batch))
    assert got == pytest.approx(expected, rel=1e-6)


def test_zico_forms_differ_and_a_too_small_batch_is_nan():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    a = value(ZicoProxy.configure({}).score(candidate, batch))
    b = value(ZicoProxy.configure({"gradients": "accumulated"}).score(candidate, batch))
    assert a != pytest.approx(b)
    result = ZicoProxy.configure({"splits": 8}).score(candidate, candidate.task.batch(4))
    assert math.isnan(result.value) and "cannot be split" in result.reason


# -- MeCo ----------------------------------------------------------------------------------------------
def test_meco_sums_the_smallest_channel_correlation_eigenvalue_of_every_module():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    model = candidate.build_model()
    model.train()
    terms = []

    def hook(_m, _i, out):
        rows = out[0].detach().numpy().astype(np.float64).reshape(out.shape[1], -1)
        if rows.shape[1] < 2:
            terms.append(0.0)
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(rows), nan=0.0)
        terms.append(float(np.linalg.eigvalsh(corr).min()))

    for m in model.modules():
        m.register_forward_hook(hook)
    model(batch.inputs)
    # the conv (3 channels), BN, ReLU, second conv and ReLU contribute; vectors give 0
    assert len(terms) == len(list(model.modules())) and any(t != 0 for t in terms)
    got = value(MecoProxy.configure({}).score(candidate, batch))
    assert got == pytest.approx(sum(terms), rel=1e-6, abs=1e-9)


# -- SWAP ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("samples", [3, 12])
def test_swap_counts_distinct_unit_codes_over_the_first_samples(samples):
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    model = candidate.build_model()
    model.train()
    codes = []
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda _m, inp, out: codes.append(np.sign(out.detach().numpy()).reshape(12, -1)))
    model(batch.inputs)
    units = np.concatenate(codes, axis=1)[:samples].T  # one row per unit: its code over the samples
    expected = len({tuple(row) for row in units})
    assert 1 < expected < units.shape[0]
    got = value(SwapProxy.configure({"samples": samples}).score(candidate, batch))
    assert got == expected


def test_regularised_swap_multiplies_by_the_gaussian_of_the_parameter_count():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    plain = value(SwapProxy.configure({}).score(candidate, batch))
    thousands = sum(p.numel() for p in small_convnet().parameters()) / 1e3
    got = value(SwapProxy.configure({"mu": 0.1, "sigma": 0.05}).score(candidate, batch))
    assert got == pytest.approx(plain * math.exp(-((thousands - 0.1) ** 2) / 0.05), rel=1e-9)


# -- AZ-NAS --------------------------------------------------------------------------------------------
class Staged(nn.Module):
    """A stem, a normal block, a reduction block (stride 2, channels doubled), optionally an identity cell."""

    def __init__(self, identity=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        cells = [
            nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
            nn.Sequential(nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)),
        ]
        if identity:
            cells.append(nn.Identity())
        self.cells = nn.Sequential(*cells)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        return self.head(self.cells(self.stem(x)))


def entropy(feature):
    x = feature.detach().numpy().astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, feature.shape[1])
    x = x - x.mean(axis=0)
    s = np.clip(np.linalg.eigvalsh(x.T @ x / len(x)), 0, None)
    p = s / s.sum()
    return float(-(p * np.log(p + 1e-8)).sum())


def test_az_nas_expressivity_progressivity_trainability_equal_a_direct_computation():
    candidate = candidate_for(Staged)
    batch = candidate.task.batch(12)
    torch.manual_seed(5)
    model = candidate.build_model()
    model.train()
    feats = [model.stem(batch.inputs)]
    for cell in model.cells:
        feats.append(cell(feats[-1]))
    entropies = [entropy(f) for f in feats]
    terms = []
    for i in reversed(range(1, len(feats))):
        g_out = (torch.bernoulli(torch.full_like(feats[i], 0.5)) - 0.5) * 2
        (g_in,) = torch.autograd.grad(feats[i], feats[i - 1], g_out, retain_graph=True)
        g_in, g_out = g_in.numpy().astype(np.float64), g_out.numpy().astype(np.float64)
        if g_in.shape[2] != g_out.shape[2]:  # pixel unshuffle by 2: channel c·4 + 2·dy + dx
            b, c, h, w = g_in.shape
            g_in = (
                g_in.reshape(b, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
            )
        # the mean over positions of the outer products g_in ⊗ g_out, as the reference's plain form states it
        b, _, h, w = g_out.shape
        outer = np.einsum("bihw,bjhw->ij", g_in, g_out) / (b * h * w)
        sigma = np.linalg.svd(outer, compute_uv=False).max()
        terms.append(-sigma - 1 / (sigma + 1e-6) + 2)
    torch.manual_seed(5)
    assert value(AzExpressivityProxy.configure({}).score(candidate, batch)) == pytest.approx(sum(entropies), rel=1e-6)
    torch.manual_seed(5)
    progress = value(AzProgressivityProxy.configure({}).score(candidate, batch))
    assert progress == pytest.approx(min(np.diff(entropies)), rel=1e-6, abs=1e-9)
    torch.manual_seed(5)
    got = value(AzTrainabilityProxy.configure({}).score(candidate, batch))
    assert got == pytest.approx(np.mean(terms), rel=1e-5)


def test_az_nas_trainability_is_minus_infinity_with_an_identity_cell_and_nan_without_stages():
    candidate = candidate_for(lambda: Staged(identity=True))
    assert value(AzTrainabilityProxy.configure({}).score(candidate, candidate.task.batch(8))) == -math.inf
    plain = candidate_for(small_convnet)
    result = AzExpressivityProxy.configure({}).score(plain, plain.task.batch(8))
    assert math.isnan(result.value) and "stem and cells" in result.reason


def test_az_complexity_counts_the_multiply_accumulates():
    candidate = candidate_for(Staged)
    batch = candidate.task.batch(4)
    # 8×8 input: stem 4·9·64, cell 4·4·9·64 (+ no bias MACs), reduction 4·8·9·16, classifier 8·10
    expected = 4 * 9 * 64 + 4 * 4 * 9 * 64 + 4 * 8 * 9 * 16 + 8 * 10
    assert value(AzComplexityProxy.configure({}).score(candidate, batch)) == expected


# -- nwot, the reference's counting --------------------------------------------------------------------
def test_nwot_reference_form_counts_relu_named_blocks_as_well():
    def net():
        return nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            ReLUConvBN(3, 3, 3, 1, 1, batch_norm),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(12, 10),
        )

    candidate = candidate_for(net)
    batch = candidate.task.batch(12)
    model = candidate.build_model()
    model.train()
    by_class, by_name = np.zeros((12, 12)), np.zeros((12, 12))

    def add(kernel):
        def hook(_m, inp, _o):
            c = (inp[0] > 0).flatten(1).numpy().astype(np.float64)
            kernel[:] += c @ c.T + (1 - c) @ (1 - c).T

        return hook

    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(add(by_class))
        if "ReLU" in type(m).__name__:
            m.register_forward_hook(add(by_name))
    model(batch.inputs)
    paper = value(NwotProxy.configure({}).score(candidate, batch))
    reference = value(NwotProxy.configure({"modules": "reference"}).score(candidate, batch))
    assert paper == pytest.approx(np.linalg.slogdet(by_class)[1], rel=1e-9)
    assert reference == pytest.approx(np.linalg.slogdet(by_name)[1], rel=1e-9)
    assert reference > paper


# -- through the evaluator -----------------------------------------------------------------------------
def test_recent_proxies_share_the_cell_pass_and_match_their_values_alone():
    space = tiny_space(RECENT + ["nwot"])
    candidate = space.candidate_from_arch(GOOD_CELL)
    result = space.evaluator.evaluate(candidate, EvalContext(None, seed=0, device="cpu"))
    assert not result.reasons, result.reasons
    ms = result.info["proxy_ms"]
    assert ms["meco"] == ms["swap"] == ms["az_trainability"] == ms["nwot"]
    batch = candidate.task.batch(16, seed=0)
    for proxy in space.evaluator.proxies:
        torch.manual_seed(0)
        assert value(proxy.score(candidate, batch)) == pytest.approx(result.scores[proxy.name], rel=1e-5), proxy.name


# -- transformer proxies, the reference's forms ----------------------------------------------------------
ENCODER = "h128|SA.SDP-h2-ff512x1|LT.DCT-h4-ff512x3|LT.DFT-h2-ff512x1|LT.DCT-h2-ff512x1"


def flexibert_candidate():
    from automl import SearchSpace

    space = SearchSpace.from_dict(
        {
            "task": {"name": "text_mlm", "seq_len": 8, "batch_size": 3, "vocab_size": 50},
            "dimensions": [{"name": "flexibert"}],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )
    return space.candidate_from_arch(ENCODER)


def test_softmax_confidence_reference_form_adds_the_discarded_transform_softmax():
    from scipy.fft import dctn
    from scipy.special import softmax

    from automl_plugins.architectures.flexibert.model import LinearTransform
    from automl_plugins.proxies.transformer import SoftmaxConfidenceProxy

    candidate = flexibert_candidate()
    batch = candidate.task.batch(3)
    model = candidate.build_model()
    model.train()
    projected = []
    transforms = [m for m in model.modules() if isinstance(m, LinearTransform)]
    for m in transforms:
        m.input.register_forward_hook(lambda mod, _i, out, m=m: projected.append((m, out.detach().double().numpy())))
    model.record_attention = True
    model.encode(batch.inputs)
    attention = [float(m.last_attention.detach().max(dim=1).values.mean()) for m in model.attention_modules()]
    discarded = []
    for m, x in projected:
        b, n, h = x.shape
        blocks = x.reshape(b, n, m.heads, h // m.heads).transpose(0, 2, 1, 3)
        # scipy's unnormalised DCT-II is the reference's dct_2d: y_k = 2 Σ x_n cos(π k (2n+1) / 2N)
        mixed = dctn(blocks, type=2, axes=(-2, -1)) if m.kind == "DCT" else np.fft.fft2(blocks).real
        discarded.append(float(softmax(mixed, axis=-1).max(axis=1).mean()))
    assert len(attention) == 1 and len(discarded) == 3
    plain = value(SoftmaxConfidenceProxy.configure({}).score(candidate, batch))
    reference = value(SoftmaxConfidenceProxy.configure({"modules": "reference"}).score(candidate, batch))
    assert plain == pytest.approx(sum(attention), rel=1e-6)
    assert reference == pytest.approx(sum(attention) + sum(discarded), rel=1e-5)


def test_activation_distance_reference_form_reads_every_hidden_layer_of_the_first_sequence():
    from automl_plugins.proxies.transformer import ActivationDistanceProxy

    candidate = flexibert_candidate()
    batch = candidate.task.batch(3)
    model = candidate.build_model()
    model.train()
    outputs = []
    for m in model.modules():
        if isinstance(m, nn.GELU):  # the reference hooks the activation function's output
            m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    model.encode(batch.inputs)
    assert len(outputs) == 1 + 3 + 1 + 1
    expected = 0.0
    for out in outputs:
        c = (out[0] > 0).double().numpy()  # N × D′ of the first sequence
        expected += float((c @ c.T + (1 - c) @ (1 - c).T).sum())
    got = value(ActivationDistanceProxy.configure({"form": "reference"}).score(candidate, batch))
    assert got == pytest.approx(expected, rel=1e-9)
    default = value(ActivationDistanceProxy.configure({}).score(candidate, batch))
    assert default != pytest.approx(got)
