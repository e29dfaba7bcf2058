"""NAS-Bench-201 cells: string round trips over the whole space, unique ids, skeleton parameter counts."""

from __future__ import annotations

import csv
import itertools
from importlib import resources

import pytest
import torch

from automl import SearchSpace
from automl_plugins.architectures.nb201 import EDGES, OPERATIONS, NB201Architecture, NB201Dimension, parse_arch
from automl_plugins.architectures.nb201.model import Cell, NB201Network
from automl_plugins.tasks.digits import DigitsTask

ALL_OPS = list(itertools.product(OPERATIONS, repeat=len(EDGES)))


def _table_strings() -> list[str]:
    with resources.files("automl_plugins.data").joinpath("nb201_accuracy.csv").open() as handle:
        return [row["arch"] for row in csv.DictReader(handle)]


def test_every_string_of_the_benchmark_parses_and_round_trips():
    strings = _table_strings()
    assert len(strings) == len(set(strings)) == 15625
    parsed = {parse_arch(text) for text in strings}
    assert parsed == set(ALL_OPS)
    for text in strings:
        assert NB201Architecture(parse_arch(text)).to_string() == text


@pytest.mark.slow
def test_unique_ids_match_the_published_count():
    archs = [NB201Architecture(ops) for ops in ALL_OPS]
    canonical = {}
    for arch in archs:
        canonical.setdefault(arch.canonical_id(), set()).add(arch.function_id())
    assert len(canonical) == 6466
    # The benchmark's identity never merges cells that compute different functions.
    assert all(len(functions) == 1 for functions in canonical.values())
    assert len({arch.function_id() for arch in archs}) == 4930


def test_ids_see_through_dead_nodes_none_edges_and_skips():
    # Node 1's output never reaches node 3 when edges 1→2 and 1→3 are none: its operation is irrelevant.
    a = NB201Architecture(["nor_conv_3x3", "nor_conv_1x1", "none", "avg_pool_3x3", "none", "skip_connect"])
    b = NB201Architecture(["avg_pool_3x3", "nor_conv_1x1", "none", "avg_pool_3x3", "none", "skip_connect"])
    assert a.to_string() != b.to_string()
    assert a.canonical_id() == b.canonical_id()
    # Inputs of a sum commute: swapping which of two conv edges into node 3 comes from node 0 vs. a skip
    # chain that equals node 0 gives the same function.
    c = NB201Architecture(["skip_connect", "none", "none", "nor_conv_3x3", "avg_pool_3x3", "none"])
    d = NB201Architecture(["skip_connect", "none", "none", "avg_pool_3x3", "nor_conv_3x3", "none"])
    assert c.function_id() == d.function_id()
    assert c.canonical_id() == d.canonical_id()
    # Different operations on a live edge are different cells.
    e = NB201Architecture(["skip_connect", "none", "none", "nor_conv_1x1", "avg_pool_3x3", "none"])
    assert e.canonical_id() != c.canonical_id()
    # All-zero cells are one function.
    zero = NB201Architecture(["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "none", "none", "none"])
    assert zero.function_id() == NB201Architecture(["none"] * 6).function_id() == "0"


def test_draw_shows_every_node_and_marks_dead_ones():
    arch = NB201Architecture(
        parse_arch("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    )
    drawing = arch.draw()
    assert "node 0 (input)" in drawing
    assert "node 2 = nor_conv_1x1(n0) + 0" in drawing
    assert "node 3 (output) = avg_pool_3x3(n0) + 0 + skip_connect(n2)" in drawing
    assert "node 1 = nor_conv_3x3(n0)   [no effect on the output]" in drawing
    assert "[always zero]" in NB201Architecture(["none"] * 6).draw()


def _cell_params(ops, c):
    conv = {"nor_conv_3x3": 9 * c * c + 2 * c, "nor_conv_1x1": c * c + 2 * c}
    return sum(conv.get(op, 0) for op in ops)


def _skeleton_params(ops, c, n, in_channels, classes):
    """Parameters implied by the skeleton: stem conv+BN; N cells per stage at C, 2C, 4C; two residual
    reductions (two 3×3 conv+BN and a 1×1 shortcut conv); the final BN; the linear classifier."""
    total = in_channels * 9 * c + 2 * c
    for stage in range(3):
        cs = c * 2**stage
        if stage:
            prev = cs // 2
            total += 9 * prev * cs + 2 * cs + 9 * cs * cs + 2 * cs + prev * cs
        total += n * _cell_params(ops, cs)
    return total + 2 * 4 * c + 4 * c * classes + classes


@pytest.mark.parametrize(
    "text",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
    ],
)
def test_parameter_counts_follow_the_skeleton_arithmetic(text):
    ops = parse_arch(text)
    for c, n in ((16, 5), (4, 1), (8, 2)):
        model = NB201Network(ops, EDGES, channels=c, cells_per_stage=n, in_channels=3, num_classes=10)
        assert sum(p.numel() for p in model.parameters()) == _skeleton_params(ops, c, n, 3, 10)


def test_published_extremes_of_the_parameter_count():
    # NAS-Bench-201 reports 0.07 MB to 1.53 MB of parameters on CIFAR-10 (C=16, N=5).
    for op, expected in (("nor_conv_3x3", 1_531_546), ("none", 73_306)):
        model = NB201Network([op] * 6, EDGES, channels=16, cells_per_stage=5, in_channels=3, num_classes=10)
        assert sum(p.numel() for p in model.parameters()) == expected


def _no_norm(num_features, layout="nchw"):
    return torch.nn.Identity()


@pytest.mark.slow
def test_every_cell_builds_and_runs():
    # The cell is the only part of the network that varies: build all 15,625 of them (one channel, to keep
    # this fast) and run every 25th, then whole tiny networks for a sample with every operation on every edge.
    x = torch.randn(1, 1, 3, 3)
    with torch.no_grad():
        for i, ops in enumerate(ALL_OPS):
            cell = Cell(ops, EDGES, 1, _no_norm)
            assert len(cell.ops) == 6
            if i % 25 == 0:
                assert cell.eval()(x).shape == x.shape
    task = DigitsTask.configure({"image_size": 8, "batch_size": 2})
    batch = task.batch(2)
    for i in range(len(OPERATIONS)):
        ops = [OPERATIONS[(i + k) % len(OPERATIONS)] for k in range(6)]
        model = NB201Architecture(ops, channels=2, cells_per_stage=1).build(task)
        out = model(batch.inputs)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        torch.nn.functional.cross_entropy(out, batch.targets).backward()


def test_norm_layer_factory_is_honoured():
    made = []

    def norm(num_features, layout="nchw"):
        made.append((num_features, layout))
        return torch.nn.GroupNorm(1, num_features)

    task = DigitsTask.configure({"image_size": 8})
    model = NB201Architecture(["nor_conv_3x3"] * 6, channels=4, cells_per_stage=1).build(task, norm_layer=norm)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert {layout for _, layout in made} == {"nchw"} and (16, "nchw") in made


def test_dimension_samples_parses_and_rejects(nb201_space_dict):
    space = SearchSpace.from_dict(nb201_space_dict)
    _, dim = space.architecture
    assert isinstance(dim, NB201Dimension)
    text = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
    candidate = space.candidate_from_arch(text)
    assert candidate.architecture.to_string() == text
    assert space.arch_params(text)["nb201.e12"] == "none"
    with pytest.raises(ValueError, match="unknown operation 'conv_5x5'"):
        dim.parse(text.replace("nor_conv_1x1", "conv_5x5"))
    with pytest.raises(ValueError, match="expected 3 nodes"):
        dim.parse("|nor_conv_3x3~0|")
    narrow = NB201Dimension.configure({"operations": ["nor_conv_3x3", "skip_connect"]})
    with pytest.raises(ValueError, match="not in this space's operations"):
        narrow.parse(text)


def test_isomorphic_candidates_share_an_id(nb201_space_dict):
    space = SearchSpace.from_dict(nb201_space_dict)
    a = space.candidate_from_arch("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    b = space.candidate_from_arch("|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    assert a.id == b.id
