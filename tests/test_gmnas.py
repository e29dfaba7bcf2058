"""Few-shot NAS with gradient matching (GM-NAS): the matching formulas and the split sub-supernets."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

import automl
from automl_plugins.architectures.nb201.space import EDGES
from automl_plugins.architectures.nb201.supernet import inherit
from automl_plugins.evaluators.gmnas import (
    balanced_min_cut,
    connected,
    match_distance,
    split_edge_scores,
    split_epochs,
    split_parameters,
)
from automl_plugins.evaluators.supernet import (
    SupernetSpec,
    branch_for,
    candidate_quant,
    supernet_key,
    train_supernet,
)
from tests.test_supernet import candidates, killed_after_epoch_two, tiny_space


def test_match_distance_is_one_minus_cosine():
    a, b = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64), torch.tensor([0.5, -1.0, 3.0], dtype=torch.float64)
    cos = float(a @ b) / (float(a.norm()) * float(b.norm()) + 1e-6)
    assert match_distance(a, b) == pytest.approx(1 - cos, abs=1e-12)
    assert match_distance(a, 3 * a) == pytest.approx(0.0, abs=1e-6)
    assert match_distance(a, -a) == pytest.approx(2.0, abs=1e-6)


def test_balanced_min_cut_matches_a_brute_force_over_partitions():
    # Operations 0 and 3 agree, 1, 2 and 4 agree, across the groups they disagree.
    d = np.array(
        [
            [0.0, 0.9, 0.8, 0.1, 0.7],
            [0.9, 0.0, 0.2, 0.8, 0.1],
            [0.8, 0.2, 0.0, 0.9, 0.3],
            [0.1, 0.8, 0.9, 0.0, 0.6],
            [0.7, 0.1, 0.3, 0.6, 0.0],
        ]
    )
    groups, score = balanced_min_cut(d)
    assert groups == [[0, 3], [1, 2, 4]]
    cut = sum(d[i, j] for i in (0, 3) for j in (1, 2, 4))
    assert score == pytest.approx(cut)
    # By hand, every 2 + 3 split: the chosen one has the least within-group distance.
    within = {
        pair: d[pair] + sum(d[i, j] for i, j in itertools.combinations(sorted(set(range(5)) - set(pair)), 2))
        for pair in itertools.combinations(range(5), 2)
    }
    assert min(within, key=within.get) == (0, 3)
    assert balanced_min_cut(np.array([[0.0, 0.4], [0.4, 0.0]])) == ([[0], [1]], pytest.approx(0.4))


def test_connected_cells_reach_the_output_through_operations():
    assert connected(["none", "none", "none", "skip_connect", "none", "none"], EDGES)
    assert connected(["nor_conv_3x3", "none", "avg_pool_3x3", "none", "none", "skip_connect"], EDGES)
    assert not connected(["nor_conv_3x3", "none", "none", "none", "none", "skip_connect"], EDGES)


def test_split_epochs_follow_the_reference_schedule():
    assert split_epochs(40, 2) == [10, 20]  # the authors' NAS-Bench-201 script: split at 10 and 20 of 40
    assert split_epochs(30, 1) == [15]
    assert split_epochs(2, 3) == [1]


def test_matched_gradients_are_the_other_edges_and_blocks_only():
    space = tiny_space()
    supernet = SupernetSpec(candidates(space, 1)[0]).build(space.task)
    params = {id(p) for p in split_parameters(supernet, 2)}
    names = {n for n, p in supernet.named_parameters() if id(p) in params}
    assert names and not any(".candidates.2." in n for n in names)
    assert not any(n.startswith(("stem.", "classifier.", "lastact.")) for n in names)
    assert any(".candidates.0." in n for n in names) and any(n.startswith("cells.1.") for n in names)


def test_edge_scores_average_one_minus_cosine_of_the_path_gradients():
    space = tiny_space()
    spec = SupernetSpec(candidates(space, 1)[0])
    torch.manual_seed(0)
    supernet = spec.build(space.task)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    allowed = [list(spec.operations) for _ in EDGES]
    allowed[0] = ["nor_conv_1x1", "nor_conv_3x3"]  # already split there: only the other edges are candidates
    criterion = torch.nn.CrossEntropyLoss()
    found = split_edge_scores(
        supernet, allowed, EDGES, lambda: (x, y), lambda paths: {}, random.Random(3), 1, criterion
    )
    assert sorted(found) == [1, 2, 3, 4, 5]
    # Re-compute edge 4's matrix directly with the same random path.
    rng = random.Random(3)
    for edge in (1, 2, 3):  # the draws made for the edges before it
        while True:
            base = [rng.choice(ops) for ops in allowed]
            if connected([*base[:edge], "skip_connect", *base[edge + 1 :]], EDGES):
                break
    while True:
        base = [rng.choice(ops) for ops in allowed]
        if connected([*base[:4], "skip_connect", *base[5:]], EDGES):
            break
    grads = []
    for op in spec.operations:
        supernet.set_path((*base[:4], op, *base[5:]))
        supernet.zero_grad(set_to_none=True)
        criterion(supernet(x), y).backward()
        grads.append(
            torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                    for p in split_parameters(supernet, 4)
                ]
            )
        )
    groups, score, matrix = found[4]
    for i, j in itertools.combinations(range(len(grads)), 2):
        cos = float(grads[i].double() @ grads[j].double()) / (float(grads[i].norm()) * float(grads[j].norm()) + 1e-6)
        assert matrix[i, j] == pytest.approx(1 - cos, abs=1e-6)
    assert sorted(len(g) for g in groups) == [2, 3]
    index = {op: i for i, op in enumerate(spec.operations)}
    first, second = ([index[op] for op in group] for group in groups)
    assert score == pytest.approx(sum(matrix[i, j] for i in first for j in second))


def test_few_shot_training_splits_into_sub_supernets_that_cover_each_path(tmp_path):
    space = tiny_space(sampling="few_shot", few_shot_splits=1, gm_repeats=2, epochs=2, weights_dir=str(tmp_path))
    sample = candidates(space, 24)
    spec = SupernetSpec(sample[0])
    key = supernet_key(sample[0], space.evaluator.settings, 0)
    trained = train_supernet(
        spec, space.task, space.evaluator.settings, seed=0, device=torch.device("cpu"), folder=tmp_path, key=key
    )
    assert trained["info"]["sub_supernets"] == 2 and len(trained["branches"]) == 2
    (split,) = trained["info"]["splits"]
    assert split["epoch"] == 1
    edge = split["edge"]
    first, second = (b["allowed"] for b in trained["branches"])
    assert sorted(first[edge] + second[edge]) == sorted(spec.operations) and not set(first[edge]) & set(second[edge])
    assert all(first[e] == second[e] == list(spec.operations) for e in range(len(EDGES)) if e != edge)
    # The two sub-supernets trained on apart after the split.
    a, b = (br["state"] for br in trained["branches"])
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    used = set()
    for candidate in sample:
        ops = candidate.architecture.ops
        index, state = branch_for(trained, ops)
        assert ops[edge] in trained["branches"][index]["allowed"][edge]
        used.add(index)
        supernet = spec.build(space.task)
        supernet.load_state_dict(state)
        supernet.eval()
        model = candidate.build_model().eval()
        inherit(model, supernet, ops)
        supernet.set_path(ops, candidate_quant(model))
        x = torch.randn(4, 1, 8, 8)
        assert torch.allclose(model(x), supernet(x), atol=1e-6, rtol=0)
    assert used == {0, 1}
    result = automl.evaluate(sample[0], space.evaluator, seed=0, device="cpu")
    assert result.info["sub_supernet"] == branch_for(trained, sample[0].architecture.ops)[0]


def test_a_killed_few_shot_training_resumes_after_its_split(tmp_path):
    space = tiny_space(sampling="few_shot", few_shot_splits=1, gm_repeats=1, epochs=3, max_train_samples=32)
    spec, settings, _, common = killed_after_epoch_two(space, tmp_path / "killed")
    resumed = train_supernet(spec, space.task, settings, folder=tmp_path / "killed", **common)
    whole = train_supernet(spec, space.task, settings, folder=tmp_path / "whole", **common)
    assert resumed["info"]["resumed_from_epoch"] == 3
    assert resumed["info"]["splits"] == whole["info"]["splits"]
    for mine, theirs in zip(resumed["branches"], whole["branches"]):
        assert mine["allowed"] == theirs["allowed"]
        for name, tensor in theirs["state"].items():
            assert torch.equal(tensor, mine["state"][name]), name


def test_few_shot_settings_change_the_weight_file_key_only_for_few_shot():
    uniform = tiny_space()
    candidate = candidates(uniform, 1)[0]
    base = dict(uniform.evaluator.settings)
    assert supernet_key(candidate, {**base, "gm_repeats": 7}, 0) == supernet_key(candidate, base, 0)
    few = {**base, "sampling": "few_shot"}
    assert supernet_key(candidate, {**few, "gm_repeats": 7}, 0) != supernet_key(candidate, few, 0)
