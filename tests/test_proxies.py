"""Cell proxies: each value against an independent direct computation, sharing, NaN cases.

What every proxy owes (a finite float or NaN with a reason, the same value under the same seed, the candidate
untouched) is the proxy contract, which tests/test_contracts.py runs over every registered proxy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import automl
from automl import Architecture, Candidate, EvalContext, SearchSpace, SpaceError
from automl.testing import registered_plugins
from automl_plugins.proxies.gradients import (
    CellGradientPass,
    FisherProxy,
    GradNormProxy,
    GraspProxy,
    JacobCovProxy,
    NwotProxy,
    SnipProxy,
)
from automl_plugins.proxies.synflow import SynflowProxy
from automl_plugins.proxies.zen import ZenProxy
from automl_plugins.tasks.digits import DigitsTask

CELL_PROXIES = [name for name, cls in registered_plugins("proxies") if "cell" in cls.applies_to]
GOOD_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
EMPTY_CELL = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


class BuiltArch(Architecture):
    """An architecture whose model comes from a factory (hand-built test networks)."""

    kind = "cell"

    def __init__(self, factory):
        self.factory = factory

    def to_string(self) -> str:
        return "hand-built"

    def canonical_id(self) -> str:
        return "hand-built"

    def build(self, task, norm_layer=None, options=None):
        return self.factory()


def tiny_task(batch_size: int = 12) -> DigitsTask:
    return DigitsTask.configure({"image_size": 8, "channels": 1, "batch_size": batch_size})


def candidate_for(factory, task=None, seed: int = 0) -> Candidate:
    candidate = Candidate(task or tiny_task(), seed=seed)
    candidate.set_architecture(BuiltArch(factory))
    return candidate


def small_convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def value(result):
    return result.value if isinstance(result, automl.ProxyValue) else result


def tiny_space(proxies, **evaluator):
    return SearchSpace.from_dict(
        {
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}],
            "evaluator": {"name": "proxies", "proxies": proxies, **evaluator},
            "objectives": [{"metric": proxies[0]}],
        }
    )


# -- each proxy against a direct computation ---------------------------------------------------------
def test_synflow_equals_hand_derived_value_on_two_layer_linear_net():
    torch.manual_seed(0)
    first, second = nn.Linear(64, 5, bias=False), nn.Linear(5, 10, bias=False)
    a1 = first.weight.detach().abs().double().numpy()
    a2 = second.weight.detach().abs().double().numpy()
    candidate = candidate_for(lambda: nn.Sequential(nn.Flatten(), first, second))
    # R = 1ᵀ|W2||W1|1; each layer's Σ θ·∂R/∂θ equals R (R is linear in each layer), so synflow = 2R.
    expected = 2.0 * float(np.ones(10) @ a2 @ a1 @ np.ones(64))
    got = value(SynflowProxy.configure({}).score(candidate, candidate.task.batch(4)))
    assert got == pytest.approx(expected, rel=1e-9)


def direct_loss_gradients(model, batch):
    model.train()
    model.zero_grad()
    nn.CrossEntropyLoss()(model(batch.inputs), batch.targets).backward()
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_grad_norm_and_snip_equal_a_direct_backward():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    layers = direct_loss_gradients(candidate.build_model(), batch)
    grad_norm = sum(float(m.weight.grad.norm()) for m in layers)
    snip = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in layers)
    assert value(GradNormProxy.configure({}).score(candidate, batch)) == pytest.approx(grad_norm, rel=1e-5)
    assert value(SnipProxy.configure({}).score(candidate, batch)) == pytest.approx(snip, rel=1e-5)


def test_grasp_equals_a_finite_difference_hessian_vector_product():
    candidate = candidate_for(lambda: small_convnet().double())
    batch = candidate.task.batch(12)
    batch = automl.Batch(batch.inputs.double(), batch.targets)
    model = candidate.build_model()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def weight_grads():
        model.zero_grad()
        model.train()
        nn.CrossEntropyLoss()(model(batch.inputs), batch.targets).backward()
        return [m.weight.grad.clone() for m in layers]

    g = weight_grads()
    eps = 1e-5
    with torch.no_grad():
        for m, d in zip(layers, g):
            m.weight += eps * d
    plus = weight_grads()
    with torch.no_grad():
        for m, d in zip(layers, g):
            m.weight -= 2 * eps * d
    minus = weight_grads()
    with torch.no_grad():
        for m, d in zip(layers, g):
            m.weight += eps * d
    expected = sum(float((-m.weight.detach() * (p - q) / (2 * eps)).sum()) for m, p, q in zip(layers, plus, minus))
    got = value(GraspProxy.configure({}).score(candidate, batch))
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_fisher_equals_direct_per_channel_sum():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    model = candidate.build_model()
    model.train()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    outputs = {}

    def keep(module, _inputs, out):
        out.retain_grad()
        outputs[module] = out

    for m in layers:
        m.register_forward_hook(keep)
    nn.CrossEntropyLoss()(model(batch.inputs), batch.targets).backward()
    expected = 0.0
    for m in layers:
        act, grad = outputs[m].detach().numpy(), outputs[m].grad.numpy()
        per_channel = (act * grad).reshape(act.shape[0], act.shape[1], -1).sum(axis=2)  # N × C
        fisher = 0.5 * (per_channel**2).mean(axis=0)
        expected += float(fisher.sum()) * m.weight[0].numel()
    got = value(FisherProxy.configure({}).score(candidate, batch))
    assert got == pytest.approx(expected, rel=1e-5)


def test_jacob_cov_equals_numpy_on_reference_style_jacobian():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    model = candidate.build_model()
    model.train()
    x = batch.inputs.clone().requires_grad_(True)
    y = model(x)
    y.backward(torch.ones_like(y))
    rows = x.grad.reshape(len(x), -1).numpy().astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(np.corrcoef(rows))
    k = 1e-5
    expected = -np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k))
    got = value(JacobCovProxy.configure({}).score(candidate, batch))
    assert got == pytest.approx(expected, rel=1e-6)


def test_nwot_kernel_equals_a_direct_count_of_agreeing_units():
    candidate = candidate_for(small_convnet)
    batch = candidate.task.batch(12)
    model = candidate.build_model()
    model.train()
    codes = []
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda _m, inp, _o: codes.append((inp[0] > 0).flatten(1).numpy()))
    model(batch.inputs)
    n = len(batch)
    expected = np.zeros((n, n))
    for c in codes:
        for i in range(n):
            for j in range(n):
                expected[i, j] += int((c[i] == c[j]).sum())
    shared = CellGradientPass(candidate, batch, [NwotProxy.configure({})])
    shared.run()
    np.testing.assert_array_equal(shared.results["kernel"].numpy(), expected)
    got = value(NwotProxy.configure({}).score(candidate, batch))
    assert got == pytest.approx(np.linalg.slogdet(expected)[1], rel=1e-9)


def test_zen_equals_the_formula_computed_directly():
    def net():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())

    candidate = candidate_for(net)
    batch = candidate.task.batch(6)
    model = net()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(model[0].weight.shape, generator=gen))
        model[0].bias.zero_()
        x = torch.randn(batch.inputs.shape, generator=gen)
        noise = torch.randn(batch.inputs.shape, generator=gen)
        model.train()
        difference = (model(x) - model(x + 0.01 * noise)).abs().sum(dim=(1, 2, 3)).mean()
    expected = math.log(float(difference)) + math.log(math.sqrt(float(model[1].running_var.mean())))
    assert value(ZenProxy.configure({}).score(candidate, batch)) == pytest.approx(expected, rel=1e-6)


# -- sharing, determinism, degenerate networks ---------------------------------------------------------
def test_shared_pass_gives_the_same_values_as_each_proxy_alone_and_repeats_exactly():
    assert {"grad_norm", "snip", "synflow", "params"} <= set(CELL_PROXIES)
    space = tiny_space(CELL_PROXIES)
    candidate = space.candidate_from_arch(GOOD_CELL)
    context = EvalContext(None, seed=0, device="cpu")
    first = space.evaluator.evaluate(candidate, context)
    again = space.evaluator.evaluate(space.candidate_from_arch(GOOD_CELL), context)
    assert first.scores == again.scores
    assert not first.reasons
    batch = candidate.task.batch(16, seed=0)
    for proxy in space.evaluator.proxies:
        torch.manual_seed(0)
        alone = value(proxy.score(candidate, batch))
        assert alone == pytest.approx(first.scores[proxy.name], rel=1e-5), proxy.name
    assert set(first.info["proxy_ms"]) == set(CELL_PROXIES)


def test_another_seed_gives_other_values():
    space = tiny_space(["snip"])
    a = space.evaluator.evaluate(space.candidate_from_arch(GOOD_CELL), EvalContext(None, seed=0, device="cpu"))
    candidate = space.candidate_from_arch(GOOD_CELL)
    candidate.seed = 1
    b = space.evaluator.evaluate(candidate, EvalContext(None, seed=1, device="cpu"))
    assert a.scores["snip"] != b.scores["snip"]


def test_zero_network_gives_nan_with_reasons_and_other_proxies_survive():
    space = tiny_space(CELL_PROXIES)
    result = space.evaluator.evaluate(space.candidate_from_arch(EMPTY_CELL), EvalContext(None, seed=0, device="cpu"))
    for name in ("jacob_cov", "nwot", "zen"):
        assert math.isnan(result.scores[name]) and result.reasons[name], name
    assert "constant" in result.reasons["jacob_cov"]
    assert "singular" in result.reasons["nwot"]
    assert result.scores["params"] > 0 and result.scores["synflow"] == 0.0


def test_dead_relus_make_nwot_nan_with_a_reason():
    def dead():
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
        with torch.no_grad():
            net[1].weight.zero_()
            net[1].bias.fill_(-1.0)
        return net

    candidate = candidate_for(dead)
    result = NwotProxy.configure({}).score(candidate, candidate.task.batch(8))
    assert math.isnan(result.value) and "singular" in result.reason


def test_a_failing_pass_gives_nan_with_the_error_for_each_of_its_proxies():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    candidate = candidate_for(Broken)
    space = tiny_space(["snip", "nwot"])
    result = space.evaluator.evaluate(candidate, EvalContext(None, seed=0, device="cpu"))
    assert math.isnan(result.scores["snip"]) and "boom" in result.reasons["snip"]
    assert "boom" in result.reasons["nwot"]


# -- the evaluator's settings --------------------------------------------------------------------------
def test_a_proxy_that_cannot_apply_is_a_validation_error():
    with pytest.raises(SpaceError) as err:
        tiny_space(["synflow", "hidden_cov"])
    assert err.value.key == "evaluator.proxies[1]" and "grad_norm" in err.value.allowed


def test_proxy_options_are_validated_with_their_key():
    with pytest.raises(SpaceError) as err:
        tiny_space(["lga"], proxy_options={"lga": {"steps": -1}})
    assert "proxy_options.lga.steps" in err.value.key
    with pytest.raises(SpaceError) as err:
        tiny_space(["synflow"], proxy_options={"lga": {"steps": 2}})
    assert "proxy_options.lga" in err.value.key
    space = tiny_space(["zen"], proxy_options={"zen": {"repeats": 2}})
    assert space.evaluator.proxies[0].settings["repeats"] == 2


def direct_relative_rank(value, pool):
    """The candidate's average rank among the pool and itself (NaN lowest), over their count."""
    values = np.array([-np.inf if np.isnan(v) else v for v in [*pool, value]])
    v = values[-1]
    return (np.sum(values < v) + (np.sum(values == v) + 1) / 2) / len(values)


@pytest.mark.parametrize("aggregation", ["mean_rank", "log_rank"])
def test_rank_aggregate_combines_relative_ranks_within_the_reference_pool(aggregation):
    space = tiny_space(
        ["params", "synflow"], aggregate=["params", "synflow"], aggregate_pool=4, aggregation=aggregation
    )
    assert "aggregate" in space.evaluator.metrics()
    context = EvalContext(None, seed=0, device="cpu", space=space)
    result = space.evaluator.evaluate(space.candidate_from_arch(GOOD_CELL), context)
    pool = space.evaluator._reference_pool(context)
    ranks = [direct_relative_rank(result.scores[n], pool[n]) for n in ("params", "synflow")]
    expected = np.mean(ranks) if aggregation == "mean_rank" else np.sum(np.log(ranks))
    assert result.scores["aggregate"] == pytest.approx(expected)
    assert all(0.0 < r <= 1.0 for r in ranks)


def test_relative_ranks_put_nan_last_and_count_ties_half():
    from automl_plugins.evaluators.proxies import aggregate_within, relative_rank, sorted_pool

    pool = sorted_pool([1.0, 2.0, 2.0, float("nan")])
    assert relative_rank(2.0, pool) == pytest.approx((2 + 1 + 1) / 5)  # 2 below (NaN, 1), rank among ties 3–5
    assert relative_rank(float("nan"), pool) == pytest.approx(1.5 / 5)
    assert relative_rank(3.0, pool) == 1.0
    rows = [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": float("nan")}, {"a": 2.0, "b": 1.0}]
    # ranks among the rows (scipy.stats.rankdata / N): a = 1, 2.5, 2.5; b = 3, 1, 2
    assert aggregate_within(rows, ["a", "b"], "mean_rank") == pytest.approx([2 / 3, 3.5 / 6, 4.5 / 6])
    expected = [math.log(1 / 3) + math.log(3 / 3), math.log(2.5 / 3) + math.log(1 / 3), math.log(2.5 / 3 * 2 / 3)]
    assert aggregate_within(rows, ["a", "b"], "log_rank") == pytest.approx(expected)


def test_aggregated_proxies_are_scored_and_az_nas_is_a_preset():
    space = tiny_space(["params"], aggregate=["az_nas"], aggregate_pool=2)
    names = space.evaluator.metrics()
    assert names == ["params", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity", "aggregate"]
    default = tiny_space(["params"], aggregate=["default"], aggregate_pool=2).evaluator.metrics()
    assert default[:5] == ["params", "synflow", "nwot", "jacob_cov", "meco"] and len(default) == 10
    assert space.evaluator.settings["aggregation"] == "log_rank"
    with pytest.raises(SpaceError) as err:
        tiny_space(["params"], aggregate=["no_such_proxy"])
    assert err.value.key == "evaluator.aggregate"


# -- the score command and API -------------------------------------------------------------------------
def write_space(path):
    path.write_text(
        '[task]\nname = "digits"\nbatch_size = 16\nimage_size = 16\n'
        '[[dimensions]]\nname = "nb201"\nchannels = 4\ncells_per_stage = 1\n'
        '[evaluator]\nname = "proxies"\nproxies = ["params"]\n[[objectives]]\nmetric = "params"\n'
    )


def test_score_command_writes_one_row_per_architecture(tmp_path, capsys):
    from automl.cli import main

    write_space(tmp_path / "space.toml")
    (tmp_path / "archs.txt").write_text(f"# cells\n{GOOD_CELL}\n\n{EMPTY_CELL}\n")
    code = main(
        [
            "score",
            str(tmp_path / "archs.txt"),
            "--space",
            str(tmp_path / "space.toml"),
            "--proxies",
            "synflow,nwot,params",
            "--out",
            str(tmp_path / "scores.csv"),
        ]
    )
    assert code == 0
    import csv

    with open(tmp_path / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["arch"] for r in rows] == [GOOD_CELL, EMPTY_CELL]
    assert float(rows[0]["synflow"]) > 0 and rows[1]["nwot"] == "" and "singular" in rows[1]["reason.nwot"]
    bad = main(
        ["score", str(tmp_path / "archs.txt"), "--space", str(tmp_path / "space.toml"), "--proxies", "hidden_cov"]
    )
    assert bad == 2 and "does not apply" in capsys.readouterr().err


def test_score_api_uses_the_score_cache(tmp_path):
    from automl.cache import ScoreCache
    from automl_plugins.proxies import score_architectures

    write_space(tmp_path / "space.toml")
    cache = ScoreCache(tmp_path / "c.db")
    first = score_architectures([GOOD_CELL], tmp_path / "space.toml", ["snip"], cache=cache)
    second = score_architectures([GOOD_CELL], tmp_path / "space.toml", ["snip"], cache=cache)
    assert first[0]["snip"] == second[0]["snip"] and cache.hits == 1
    with pytest.raises(SpaceError) as err:
        score_architectures(["|bogus~0|"], tmp_path / "space.toml", ["snip"], cache=False)
    assert "line 1" in str(err.value)


def test_flexibert_records_are_reduced_to_their_architecture_keys():
    import json

    from automl_plugins.proxies.score import _arch_text

    layer = {
        "operation_type": "SA",
        "operation_parameter": "SDP",
        "num_operation_heads": 2,
        "feed_forward_dimension": 512,
        "num_feed_forward": 1,
    }
    record = {"id": 3, "hidden_size": 128, "encoder_layers": [layer, layer], "glue": 70.1}
    assert _arch_text(json.dumps(record)) == "h128|SA.SDP-h2-ff512x1|SA.SDP-h2-ff512x1"
    broken = {"id": 3, "hidden_size": 128, "encoder_layers": [{"operation_type": "SA"}], "glue": 70.1}
    assert json.loads(_arch_text(json.dumps(broken))) == {
        "hidden_size": 128,
        "encoder_layers": [{"operation_type": "SA"}],
    }
    assert _arch_text(f"  {GOOD_CELL} ") == GOOD_CELL


def test_score_aggregates_ranks_among_the_files_architectures(tmp_path):
    from scipy.stats import rankdata

    from automl_plugins.proxies import score_architectures

    write_space(tmp_path / "space.toml")
    archs = [GOOD_CELL, EMPTY_CELL, "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"]
    for aggregation in ("log_rank", "mean_rank"):
        rows = score_architectures(
            archs, tmp_path / "space.toml", [], aggregate=["nwot", "params"], aggregation=aggregation, cache=False
        )
        nwot = [-np.inf if math.isnan(r["nwot"]) else r["nwot"] for r in rows]
        ranks = [rankdata(nwot) / 3, rankdata([r["params"] for r in rows]) / 3]
        expected = np.log(ranks).sum(axis=0) if aggregation == "log_rank" else np.mean(ranks, axis=0)
        assert [r["aggregate"] for r in rows] == pytest.approx(list(expected))
    assert rows[1]["aggregate"] == min(r["aggregate"] for r in rows)  # the empty cell: NaN nwot, fewest params


def test_score_in_worker_processes_equals_one_process_and_scores_isomorphic_cells_once(tmp_path, capsys):
    from automl.cache import ScoreCache
    from automl_plugins.proxies import score_architectures

    write_space(tmp_path / "space.toml")
    # The last two cells are isomorphic (the zero edges into node 3 sit on different inputs): one candidate id.
    copy_a = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|none~2|"
    copy_b = "|nor_conv_1x1~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|"
    archs = [GOOD_CELL, EMPTY_CELL, copy_a, copy_b]
    one = score_architectures(archs, tmp_path / "space.toml", ["nwot", "params", "meco"], cache=False)
    cache = ScoreCache(tmp_path / "c.db")
    two = score_architectures(archs, tmp_path / "space.toml", ["nwot", "params", "meco"], cache=cache, workers=2)
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a), (a, b)
    assert two[2]["params"] == two[3]["params"] and two[2]["nwot"] == two[3]["nwot"]
    again = score_architectures(archs, tmp_path / "space.toml", ["nwot", "params", "meco"], cache=cache, progress=True)
    assert cache.hits == 3 and [r["params"] for r in again] == [r["params"] for r in two]
    assert "scored 3/3 (3 from the cache)" in capsys.readouterr().err


def test_score_whole_space_lists_every_distinct_cell_once(tmp_path, capsys):
    from automl.cli import main

    space = tmp_path / "space.toml"
    space.write_text(
        '[task]\nname = "digits"\nbatch_size = 16\nimage_size = 8\nchannels = 1\n'
        '[[dimensions]]\nname = "nb201"\nchannels = 2\ncells_per_stage = 1\noperations = ["none", "skip_connect"]\n'
        '[evaluator]\nname = "proxies"\nproxies = ["params"]\n[[objectives]]\nmetric = "params"\n'
    )
    out = tmp_path / "all.csv"
    argv = ["score", "--whole-space", "--space", str(space), "--proxies", "params", "--no-cache", "--out", str(out)]
    assert main(argv) == 0
    rows = out.read_text().splitlines()[1:]
    archs = [r.split(",")[0] for r in rows]
    # 2^6 = 64 strings; cells whose output ignores the input, and isomorphic copies, share one candidate.
    from automl import SearchSpace

    ids = {SearchSpace.from_file(space).candidate_from_arch(a).id for a in archs}
    assert len(ids) == len(archs) and 1 < len(archs) < 64
    assert main(["score", "--space", str(space), "--proxies", "params"]) == 2
    assert "either an architecture file or --whole-space" in capsys.readouterr().err


def test_score_whole_space_refuses_a_space_larger_than_its_limit(tmp_path, capsys, monkeypatch):
    from automl.cli import main
    from automl_plugins.proxies import score

    monkeypatch.setattr(score, "WHOLE_SPACE_LIMIT", 5)
    space = tmp_path / "space.toml"
    write_space(space)
    assert main(["score", "--whole-space", "--space", str(space), "--proxies", "params", "--no-cache"]) == 2
    assert "more than 5 architectures; give a file" in capsys.readouterr().err
