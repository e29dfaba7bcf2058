"""Pruning masks: exact sparsity, masks that hold under training, N:M groups, SNIP, channels, data pruning."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

import automl
from automl_plugins.recipe.data import prototype_scores, select_training_subset
from automl_plugins.recipe.pruning import (
    nm_mask,
    prunable_layers,
    prune_channels,
    prune_nm,
    prune_unstructured,
    snip_scores,
)

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"


def _space(*dims):
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "p", "n_trials": 2, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 4, "cells_per_stage": 1}, *dims],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


def _model():
    return _space().candidate_from_arch(ARCH).build_model()


def _zeros(module):
    return int((module.weight == 0).sum())


def _train_step(model, lr=0.5):
    x = torch.randn(8, 3, 16, 16)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    model(x)  # the forward pass recomputes every layer's weight from weight_orig × weight_mask


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_per_layer_sparsity_is_exact_and_holds_under_training(method):
    model = _model()
    layers = prunable_layers(model)
    amounts = {name: [0.3, 0.5, 0.75][i % 3] for i, (name, _) in enumerate(layers)}
    prune_unstructured(model, amounts, method)
    for name, module in layers:
        assert _zeros(module) == round(amounts[name] * module.weight.numel())
    masks = {name: module.weight_mask.clone() for name, module in layers}
    _train_step(model)
    for name, module in layers:
        assert torch.all(module.weight[masks[name] == 0] == 0)
        assert _zeros(module) == round(amounts[name] * module.weight.numel())


def test_global_magnitude_sparsity_is_exact_over_all_layers():
    model = _model()
    layers = prunable_layers(model)
    prune_unstructured(model, 0.6, "magnitude")
    total = sum(m.weight.numel() for _, m in layers)
    assert sum(_zeros(m) for _, m in layers) == round(0.6 * total)
    # Magnitude: every kept weight is at least as large as every pruned one.
    kept = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for _, m in layers])
    pruned = torch.cat([m.weight_orig[m.weight_mask == 0].abs() for _, m in layers])
    assert kept.min() >= pruned.max()
    # The classifier stays whole.
    assert not hasattr(model.classifier, "weight_mask")


def test_snip_keeps_the_most_sensitive_connections():
    candidate = _space().candidate_from_arch(ARCH)
    model = candidate.build_model()
    batch = candidate.task.batch(16)
    scores = snip_scores(model, batch, candidate.loss)
    prune_unstructured(model, 0.5, "snip", scores=scores)
    layers = prunable_layers(model)
    total = sum(m.weight.numel() for _, m in layers)
    assert sum(_zeros(m) for _, m in layers) == round(0.5 * total)
    kept = torch.cat([scores[n][m.weight_mask == 1] for n, m in layers])
    pruned = torch.cat([scores[n][m.weight_mask == 0] for n, m in layers])
    assert kept.min() >= pruned.max()


def test_channel_pruning_removes_whole_rows_by_norm_and_flops_drop():
    model = _model()
    dense = automl.costs.count_flops(model, torch.randn(1, 3, 16, 16))
    prune_channels(model, 0.5, norm=2)
    for _, module in prunable_layers(model):
        rows = module.weight.reshape(module.weight.shape[0], -1)
        dead = rows.abs().sum(1) == 0
        assert int(dead.sum()) == round(0.5 * module.weight.shape[0])
        norms = module.weight_orig.reshape(rows.shape[0], -1).norm(dim=1)
        assert norms[~dead].min() >= norms[dead].max()
    assert automl.costs.count_flops(model, torch.randn(1, 3, 16, 16)) < dense


def _nm_by_loops(weight, n, m):
    """N:M by its definition: at each (out, kh, kw), the n largest |w| of every m consecutive input channels."""
    mask = torch.zeros_like(weight)
    out, cin = weight.shape[:2]
    for o in range(out):
        for pos in itertools.product(*(range(k) for k in weight.shape[2:])):
            for start in range(0, cin, m):
                lane = [weight[(o, i, *pos)].abs().item() for i in range(start, min(start + m, cin))]
                for j in sorted(range(len(lane)), key=lambda j: -lane[j])[:n]:
                    mask[(o, start + j, *pos)] = 1.0
    return mask


@pytest.mark.parametrize("shape", [(6, 8, 3, 3), (3, 6, 2, 2), (5, 12), (4, 3, 3, 3)])
@pytest.mark.parametrize("pattern", [(2, 4), (1, 4), (2, 8)])
def test_nm_masks_run_along_input_channels(shape, pattern):
    torch.manual_seed(0)
    weight = torch.randn(*shape)
    n, m = pattern
    mask = nm_mask(weight, n, m)
    assert torch.equal(mask, _nm_by_loops(weight, n, m))
    if shape[1] % m == 0:
        # Exactly n of every m consecutive input channels at each (out, kh, kw): the sparse-tensor-core layout.
        lanes = mask.movedim(1, -1).reshape(-1, m)
        assert torch.all(lanes.sum(-1) == n)


def test_nm_masks_hold_in_a_model_under_training():
    model = _model()
    prune_nm(model, 2, 4)
    _train_step(model)
    for _, module in prunable_layers(model):
        if module.weight.shape[1] % 4 == 0:
            lanes = module.weight.movedim(1, -1).reshape(-1, 4)
            assert torch.all((lanes != 0).sum(-1) <= 2)
            assert torch.all(module.weight_mask.movedim(1, -1).reshape(-1, 4).sum(-1) == 2)


def test_global_pruning_guard_prevents_layer_collapse():
    import math

    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "g", "n_trials": 1, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 16, "image_size": 16},
            "dimensions": [{"name": "nb201", "channels": 8, "cells_per_stage": 1}],
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )
    candidate = space.candidate_from_arch(ARCH)
    bare = candidate.build_model()
    prune_unstructured(bare, 0.9, "magnitude")
    assert any(int(m.weight_mask.sum()) == 0 for _, m in prunable_layers(bare))  # collapse without the guard

    model = candidate.build_model()
    weights = {name: m.weight.detach().clone() for name, m in prunable_layers(model)}
    prune_unstructured(model, 0.9, "magnitude", min_density=0.05)
    layers = prunable_layers(model)
    total = sum(w.numel() for w in weights.values())
    assert sum(_zeros(m) for _, m in layers) == round(0.9 * total)
    # Direct re-computation: each layer's top ceil(5%) by |w| is kept, then the largest |w| of the rest globally.
    guarded = {}
    for name, w in weights.items():
        count = math.ceil(0.05 * w.numel())
        flat = torch.zeros(w.numel(), dtype=torch.bool)
        flat[torch.argsort(w.abs().flatten(), descending=True, stable=True)[:count]] = True
        guarded[name] = flat.view_as(w)
    free = round(0.1 * total) - sum(int(g.sum()) for g in guarded.values())
    rest = torch.cat([w.abs()[~guarded[n]] for n, w in weights.items()])
    threshold = rest.sort(descending=True).values[free - 1]
    for name, module in layers:
        expected = guarded[name] | (weights[name].abs() >= threshold)
        assert torch.equal(module.weight_mask.bool(), expected)
        assert int(module.weight_mask.sum()) >= math.ceil(0.05 * module.weight.numel())


def _synflow_by_hand(w1, w2):
    """S = |θ ⊙ ∂R/∂θ| for R = 1ᵀ|W2||W1|1 (two bias-free linear layers, all-ones input)."""
    a1, a2 = w1.abs(), w2.abs()
    s1 = a1 * a2.sum(dim=0)[:, None]  # ∂R/∂|W1|[i, j] = Σ_k |W2|[k, i]
    s2 = a2 * a1.sum(dim=1)[None, :]  # ∂R/∂|W2|[k, i] = Σ_j |W1|[i, j]
    return s1, s2


def test_synflow_scores_and_iterative_masks_match_their_definition():
    from automl_plugins.recipe.pruning import prune_synflow

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False))
    w1, w2 = model[0].weight.detach().clone(), model[2].weight.detach().clone()
    one_shot = copy.deepcopy(model)
    prune_synflow(one_shot, 0.6, torch.zeros(1, 5), iterations=1, skip_last=False)
    s1, s2 = _synflow_by_hand(w1, w2)
    flat = torch.cat([s1.flatten(), s2.flatten()])
    keep = torch.zeros_like(flat)
    keep[torch.argsort(flat, descending=True)[: round(0.4 * flat.numel())]] = 1
    assert torch.equal(one_shot[0].weight_mask.flatten(), keep[:30]) and torch.equal(
        one_shot[2].weight_mask.flatten(), keep[30:]
    )

    # Two rounds: keep 0.4^(1/2) of the weights by the scores of the dense network, then 0.4 by the
    # scores of the network the first round left.
    prune_synflow(model, 0.6, torch.zeros(1, 5), iterations=2, skip_last=False)
    m1, m2 = torch.ones_like(w1), torch.ones_like(w2)
    for progress in (0.5, 1.0):
        s1, s2 = _synflow_by_hand(w1 * m1, w2 * m2)
        flat = torch.cat([torch.where(m1.bool(), s1, -1.0).flatten(), torch.where(m2.bool(), s2, -1.0).flatten()])
        count = round((1 - 0.4**progress) * flat.numel())
        keep = torch.ones_like(flat)
        keep[torch.argsort(flat, stable=True)[:count]] = 0
        m1, m2 = keep[:30].view_as(w1), keep[30:].view_as(w2)
    assert torch.equal(model[0].weight_mask, m1) and torch.equal(model[2].weight_mask, m2)
    assert int((model[0].weight == 0).sum() + (model[2].weight == 0).sum()) == round(0.6 * 48)


def test_synflow_prunes_nb201_without_collapse_and_keeps_masks_under_training():
    from automl_plugins.recipe.pruning import prune_synflow

    model = _model()
    prune_synflow(model, 0.9, torch.zeros(1, 3, 16, 16), iterations=20)
    layers = prunable_layers(model)
    total = sum(m.weight.numel() for _, m in layers)
    assert sum(_zeros(m) for _, m in layers) == round(0.9 * total)
    assert all(int(m.weight_mask.sum()) > 0 for _, m in layers)
    masks = [m.weight_mask.clone() for _, m in layers]
    _train_step(model)
    for mask, (_, module) in zip(masks, layers):
        assert torch.all(module.weight[mask == 0] == 0)


def test_guard_keeps_more_when_it_cannot_meet_the_sparsity():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 100), nn.Linear(100, 2))
    prune_unstructured(model, 0.99, "magnitude", min_density=0.2)
    assert int(model[0].weight_mask.sum()) == 20 and int(model[1].weight_mask.sum()) == 200


def test_dimension_per_layer_choices_follow_the_model():
    space = _space({"name": "pruning", "methods": ["magnitude"], "scopes": ["layer"], "sparsities": [0.0, 0.5]})
    study = automl.search(space, storage=":memory:", n_trials=2)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE"
    layer_params = [k for k in trial.params if k.startswith("pruning.sparsity.")]
    candidate = space.candidate(trial.params)
    names = [n for n, _ in prunable_layers(candidate.reference_model)]
    assert sorted(layer_params) == sorted(f"pruning.sparsity.{n}" for n in names)
    # Another cell has other layers, so other parameters (define-by-run).
    other = study.trials[1]
    other_names = [n for n, _ in prunable_layers(space.candidate(other.params).reference_model)]
    assert sorted(k for k in other.params if k.startswith("pruning.sparsity.")) == sorted(
        f"pruning.sparsity.{n}" for n in other_names
    )
    model = candidate.build_model()
    for name, module in prunable_layers(model):
        assert _zeros(module) == round(trial.params[f"pruning.sparsity.{name}"] * module.weight.numel())


@pytest.mark.parametrize("method", ["magnitude", "random", "snip", "synflow", "channel", "nm"])
def test_every_method_builds_and_trains_a_step(method):
    space = _space({"name": "pruning", "methods": [method], "sparsities": [0.75]})
    params = {
        "pruning.method": method,
        "pruning.scope": "global",
        "pruning.sparsity": 0.75,
        "pruning.norm": 1,
        "pruning.pattern": "2:4",
    }
    candidate = space.candidate_from_arch(ARCH, params)
    model = candidate.build_model()
    masks = [m.weight_mask.clone() for _, m in prunable_layers(model)]
    batch = candidate.task.batch(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    candidate.loss(model(batch.inputs), batch.targets).backward()
    optimizer.step()
    model(batch.inputs)
    for mask, (_, module) in zip(masks, prunable_layers(model)):
        assert torch.all(module.weight[mask == 0] == 0)
    assert automl.costs.count_params(model) < automl.costs.count_params(candidate.reference_model)


def test_bad_pattern_is_a_space_error():
    with pytest.raises(automl.SpaceError, match="patterns"):
        _space({"name": "pruning", "patterns": ["4:2"]})


def test_data_pruning_keeps_the_requested_fraction():
    candidate = _space().candidate_from_arch(ARCH)
    train = candidate.task.split("train")
    train = automl.Batch(train.inputs[:120], train.targets[:120])
    for score in ("el2n", "prototype", "random"):
        candidate.recipe = {
            "data_keep_fraction": 0.25,
            "data_score": score,
            "data_score_steps": 2,
            "data_ssl_steps": 10,
        }
        keep, used = select_training_subset(candidate, train)
        assert used == score and len(keep) == 30 and len(set(keep.tolist())) == 30
    # Hard examples are far from their prototype: keeping the hardest keeps the largest distances.
    distances = prototype_scores(train, clusters=10, seed=candidate.seed, steps=10)
    for keep_mode, hard in (("hard", True), ("easy", False), ("auto", False)):  # 12 per class is small data
        candidate.recipe = {
            "data_keep_fraction": 0.25,
            "data_score": "prototype",
            "data_keep": keep_mode,
            "data_ssl_steps": 10,
        }
        keep, _ = select_training_subset(candidate, train)
        rest = torch.ones(120, dtype=torch.bool)
        rest[keep] = False
        if hard:
            assert distances[keep].min() >= distances[rest].max()
        else:
            assert distances[keep].max() <= distances[rest].min()


def test_keep_rule_follows_data_size():
    from automl_plugins.recipe.data import keep_rule

    assert keep_rule({"data_keep": "auto"}, 1077, 10) == "easy"
    assert keep_rule({"data_keep": "auto"}, 50000, 10) == "hard"
    assert keep_rule({"data_keep": "auto", "data_large_per_class": 100}, 1077, 10) == "hard"
    assert keep_rule({"data_keep": "hard"}, 10, 10) == "hard" and keep_rule({"data_keep": "easy"}, 10**6, 2) == "easy"


def test_prototype_distance_is_cosine_distance_to_the_nearest_kmeans_centroid():
    from automl_plugins.recipe.data import prototype_distances

    torch.manual_seed(0)
    centres = torch.randn(3, 5) * 4
    embedding = torch.cat([centres[i] + torch.randn(20, 5) for i in range(3)])
    distances, centroids = prototype_distances(embedding, 3, seed=0)
    z = embedding / embedding.norm(dim=1, keepdim=True)
    cosine = torch.stack([(z @ c) / c.norm() for c in centroids], dim=1)
    assert torch.allclose(distances, 1 - cosine.max(dim=1).values, atol=1e-5)
    # k-means' fixed point: every centroid is the mean of the normalized embeddings nearest to it.
    assign = torch.cdist(z, centroids).argmin(dim=1)
    for k in range(3):
        assert torch.allclose(centroids[k], z[assign == k].mean(dim=0), atol=1e-5)


def test_nt_xent_matches_its_definition():
    from automl_plugins.recipe.data import nt_xent

    torch.manual_seed(0)
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    views = torch.cat([a, b])
    sim = torch.nn.functional.cosine_similarity(views[:, None], views[None], dim=-1) / 0.5
    losses = []
    for i in range(8):
        positive = (i + 4) % 8
        others = torch.stack([sim[i, j] for j in range(8) if j != i])
        losses.append(-(sim[i, positive] - torch.logsumexp(others, dim=0)))
    assert torch.allclose(nt_xent(a, b, 0.5), torch.stack(losses).mean(), atol=1e-5)


def test_tfidf_embedding_matches_its_definition():
    import math

    from automl_plugins.recipe.data import tfidf_embedding

    tokens = torch.tensor([[1, 2, 2, 0], [3, 3, 3, 1], [1, 2, -100, 4]])
    embedding = tfidf_embedding(tokens, vocab_size=6)
    rows = []
    docs = [[t for t in row if t >= 0] for row in tokens.tolist()]
    for doc in docs:
        row = []
        for term in range(6):
            tf = doc.count(term) / len(doc)
            df = sum(term in other for other in docs)
            row.append(tf * (math.log((1 + len(docs)) / (1 + df)) + 1))
        norm = math.sqrt(sum(v * v for v in row))
        rows.append([v / norm for v in row])
    assert torch.allclose(embedding, torch.tensor(rows), atol=1e-6)
    # A bag of words: the order of the tokens in a sequence does not matter (raw ids are never used).
    assert torch.allclose(tfidf_embedding(tokens.flip(1), 6), embedding)


def test_image_embedding_is_learnt_once_and_cached_by_data(tmp_path):
    from automl_plugins.recipe.data import embedding_cache_dir, self_supervised_embedding

    train = _space().candidate_from_arch(ARCH).task.split("train")
    data = automl.Batch(train.inputs[:64])
    first = self_supervised_embedding(data, steps=10)
    folder = embedding_cache_dir()
    assert folder == tmp_path / "cache.db.embeddings"  # beside the score cache ($AUTOML_CACHE)
    files = list(folder.glob("*.pt"))
    assert len(files) == 1 and first.shape == (64, 32) and torch.isfinite(first).all()
    torch.save(torch.full_like(first, 7.0), files[0])
    assert torch.equal(self_supervised_embedding(data, steps=10), torch.full_like(first, 7.0))  # read, not retrained
    self_supervised_embedding(automl.Batch(train.inputs[64:128]), steps=10)  # other data: another entry
    self_supervised_embedding(data, steps=11)  # other settings: another entry
    assert len(list(folder.glob("*.pt"))) == 3


def test_text_prototypes_use_tfidf_not_token_ids():
    from automl_plugins.recipe.data import tfidf_embedding

    torch.manual_seed(0)
    tokens = torch.randint(0, 30, (40, 12))
    scores = prototype_scores(automl.Batch(tokens), clusters=4, seed=0, vocab_size=30)
    from automl_plugins.recipe.data import prototype_distances

    assert torch.allclose(scores, prototype_distances(tfidf_embedding(tokens, 30), 4, seed=0)[0])
    # Relabelling the vocabulary (a permutation of the ids) changes raw ids, not the bag-of-words geometry.
    relabel = torch.randperm(30)
    assert torch.allclose(prototype_scores(automl.Batch(relabel[tokens]), 4, seed=0, vocab_size=30), scores, atol=1e-5)


def test_data_pruning_dimension_shrinks_training():
    space = automl.SearchSpace.from_dict(
        {
            "study": {"name": "d", "n_trials": 1, "sampler": "random"},
            "task": {"name": "digits", "batch_size": 32, "image_size": 16},
            "dimensions": [
                {"name": "nb201", "channels": 4, "cells_per_stage": 1},
                {"name": "data_pruning", "fractions": [0.5], "scores": ["random"]},
            ],
            "evaluator": {"name": "training", "epochs": 1, "max_train_samples": 100},
            "objectives": [{"metric": "val_accuracy"}],
        }
    )
    study = automl.search(space, storage=":memory:")
    info = study.trials[0].user_attrs["result"]["info"]
    assert info["train_samples"] == 50 and info["data_score"] == "random"


def test_pruned_zero_is_not_revived_by_a_later_mask():
    layer = nn.Conv2d(4, 8, 3)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(8, 2))
    prune_unstructured(model, {"0": 0.5}, "random")
    first = layer.weight_mask.clone()
    prune_unstructured(model, {"0": 0.75}, "magnitude")
    assert torch.all(layer.weight_mask[first == 0] == 0)
    assert _zeros(layer) == round(0.75 * layer.weight.numel())


@pytest.mark.parametrize("norm", ["batch", "bcn", "none", "power"])
def test_compressed_models_can_be_copied_and_rebuilt_identically(norm):
    import copy

    space = _space({"name": "normalization", "norms": [norm]}, {"name": "pruning"}, {"name": "quantization"})
    params = {
        "normalization.norm": norm,
        "normalization.groups": 2,
        "pruning.method": "snip",
        "pruning.scope": "global",
        "pruning.sparsity": 0.5,
        "quantization.weight_bits": 4,
        "quantization.activation_bits": 8,
        "quantization.granularity": "per_tensor",
        "quantization.scheme": "asymmetric",
    }
    candidate = space.candidate_from_arch(ARCH, params)
    first, second = candidate.build_model(), candidate.build_model()
    twin = copy.deepcopy(first)
    x = candidate.task.batch(4).inputs
    first.eval(), second.eval(), twin.eval()
    assert torch.equal(first(x), second(x)) and torch.equal(first(x), twin(x))


def test_el2n_scores_sequence_models_per_example():
    from automl_plugins.recipe.data import el2n_scores

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(11, 8)
            self.head = nn.Linear(8, 11)

        def forward(self, x):
            return self.head(self.embed(x))

    class Candidate:
        seed = 0
        loss = nn.CrossEntropyLoss()

        def build_model(self, device=None):
            torch.manual_seed(0)
            return Tiny()

    data = automl.Batch(torch.randint(0, 11, (20, 6)), torch.randint(0, 11, (20, 6)))
    scores = el2n_scores(Candidate(), data, torch.device("cpu"), steps=2, batch_size=8)
    assert scores.shape == (20,) and torch.all(scores >= 0)


def test_unpruned_and_unquantized_choices_share_one_candidate_id():
    space = _space({"name": "pruning"}, {"name": "quantization"})
    dense = [
        space.candidate_from_arch(
            ARCH,
            {
                "pruning.method": method,
                "pruning.scope": "global",
                "pruning.sparsity": 0.0,
                "pruning.norm": 2,
                "quantization.weight_bits": 32,
                "quantization.activation_bits": 32,
            },
        )
        for method in ("magnitude", "snip", "channel")
    ]
    assert len({c.id for c in dense}) == 1
    pruned = space.candidate_from_arch(
        ARCH,
        {
            "pruning.method": "snip",
            "pruning.scope": "global",
            "pruning.sparsity": 0.5,
            "quantization.weight_bits": 32,
            "quantization.activation_bits": 32,
        },
    )
    assert pruned.id != dense[0].id
    model = dense[0].build_model()
    assert not any(hasattr(m, "weight_mask") for m in model.modules())
    assert all(m.automl_weight_bits == 32 for _, m in prunable_layers(model, skip_last=False))
