"""Few-shot NAS with gradient matching (GM-NAS; Hu et al., ICLR 2022): split the supernet where paths disagree.

Few-shot NAS (Zhao et al., ICML 2021) trains several sub-supernets, each covering part of the space, so
that operations whose weights pull in different directions stop sharing. GM-NAS decides the split by
gradient matching: on an edge, each operation in turn is switched on (the rest of the path fixed) and the
gradient of the loss with respect to the *shared* weights is taken; operations whose gradients point the
same way (high cosine similarity) stay together, those that disagree are separated. The edge whose best
partition separates the most disagreement is split, and each half becomes a sub-supernet that inherits
the parent's weights, optimizer and schedule state and goes on training on its own.

Details the paper leaves open, from the authors' public code (skhu101/GM-NAS,
``WS-GM/nasbench201/train_search.py``, ``utils.py`` and ``search_model_ws_rsws.py``, the single-path
``rsws`` supernet on NAS-Bench-201):

- the shared weights whose gradients are matched are every parameter of the cells except the split
  edge's own operations: the other edges of every searched cell and the reduction blocks, not the stem
  or the classifier (``get_split_gradients``);
- the distance of two operations is 1 − cos of their concatenated gradients, with 1e-6 added to the
  product of norms (``match_loss`` with ``dis_metric = "cos"``), averaged over ``repeats`` minibatches
  (100 in the code), each with a freshly sampled single path for the other edges that leaves the cell
  connected (``_sample_single_path_theta``), and the same minibatch and path for every operation;
- the partition is the split into two groups (2 + 3 of the five NAS-Bench-201 operations) with the
  smallest sum of within-group distances; the edge's score is the sum of all pairwise distances minus
  that, i.e. the distance cut between the groups, and the edge with the largest score is split
  (``mincut_split_201``; ``edge_crit = "grad"``); only edges not split yet are candidates;
- splits happen at fixed epochs during the first part of training (``split_ckpts = 10,20`` of 40 epochs in
  the NAS-Bench-201 script: two rounds, four sub-supernets), children copy weights, optimizer and schedule
  (``restart = none``), and each child trains for the remaining epochs.

Here: ``few_shot_splits`` rounds at epochs ``round(epochs · i / (2 · rounds))`` for i = 1 … rounds (the
script's 10 and 20 of 40 for two rounds); a group of ``n`` operations splits into ⌊n/2⌋ and ⌈n/2⌉
(the code's 2 + 3 for five). Quantization is not split (GM-NAS splits architecture edges): during the
matching each repeat draws one quantization setting for every weight layer the compared paths use, so
all operations of a repeat see the same setting on their shared layers.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from automl_plugins.architectures.nb201.supernet import NB201Supernet, SuperCell

COS_EPS = 1e-6  # added to the product of norms, as the authors' match_loss


def match_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """1 − cos(a, b) of two flat gradient vectors, with 1e-6 added to ‖a‖·‖b‖ (the authors' ``cos``)."""
    a, b = a.double(), b.double()
    return float(1.0 - (a * b).sum() / (a.norm() * b.norm() + COS_EPS))


def balanced_min_cut(distance: np.ndarray) -> tuple[list[list[int]], float]:
    """Split the items of a symmetric distance matrix into ⌊n/2⌋ + ⌈n/2⌉ with the least within-group
    distance; returns the two groups (sorted) and the score: total pairwise distance − within-group
    distance (the distance the cut separates)."""
    n = distance.shape[0]
    if n < 2:
        raise ValueError("an edge with fewer than two operations cannot be split")
    upper = np.triu(distance, k=1)
    total = float(upper.sum())

    def within(group: Sequence[int]) -> float:
        return float(sum(upper[i, j] for i, j in itertools.combinations(sorted(group), 2)))

    best: tuple[float, list[list[int]]] | None = None
    for first in itertools.combinations(range(n), n // 2):
        second = [i for i in range(n) if i not in first]
        cost = within(first) + within(second)
        if best is None or cost < best[0] - 1e-12:
            best = (cost, [list(first), second])
    assert best is not None
    return best[1], total - best[0]


def split_parameters(supernet: NB201Supernet, edge: int) -> list[nn.Parameter]:
    """The shared weights whose gradients are matched for ``edge``: every cell parameter except that edge's."""
    params: list[nn.Parameter] = []
    for cell in supernet.cells:
        if isinstance(cell, SuperCell):
            for index, ops in enumerate(cell.candidates):
                if index != edge:
                    params += list(ops.parameters())
        else:
            params += list(cell.parameters())
    return params


def connected(path: Sequence[str], edges: Sequence[tuple[int, int]]) -> bool:
    """Whether the cell's output (node 3) is reachable from its input (node 0) through non-``none`` edges."""
    reach = {0}
    for (source, dest), op in sorted(zip(edges, path), key=lambda item: item[0][1]):
        if op != "none" and source in reach:
            reach.add(dest)
    return 3 in reach


def split_edge_scores(
    supernet: NB201Supernet,
    allowed: Sequence[Sequence[str]],
    edges: Sequence[tuple[int, int]],
    batches: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    quantization: Callable[[list[tuple[str, ...]]], dict],
    rng: random.Random,
    repeats: int,
    criterion: nn.Module,
) -> dict[int, tuple[list[list[str]], float, np.ndarray]]:
    """For every edge not split yet (all its operations allowed, at least two): the best partition, its
    score and the averaged distance matrix. ``batches()`` gives one training minibatch, ``quantization``
    one setting for the layers of the given paths (the supernet's ``set_path`` form)."""
    full = max(len(ops) for ops in allowed)
    found: dict[int, tuple[list[list[str]], float, np.ndarray]] = {}
    was_training = supernet.training
    supernet.train()
    for edge, ops in enumerate(allowed):
        if len(ops) < 2 or len(ops) < full:
            continue
        params = split_parameters(supernet, edge)
        total = np.zeros((len(ops), len(ops)))
        for _ in range(repeats):
            inputs, targets = batches()
            for _attempt in range(1000):
                base = [rng.choice(list(choices)) for choices in allowed]
                if connected([*base[:edge], "skip_connect", *base[edge + 1 :]], edges):
                    break
            paths = [(*base[:edge], op, *base[edge + 1 :]) for op in ops]
            quant = quantization(paths)
            grads = []
            for path in paths:
                supernet.set_path(path, quant.get(path))
                supernet.zero_grad(set_to_none=True)
                criterion(supernet(inputs), targets).backward()
                grads.append(
                    torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
                )
            for i, j in itertools.combinations(range(len(ops)), 2):
                d = match_distance(grads[i], grads[j])
                total[i, j] += d
                total[j, i] += d
        average = total / repeats
        groups, score = balanced_min_cut(average)
        found[edge] = ([[ops[i] for i in group] for group in groups], score, average)
    supernet.zero_grad(set_to_none=True)
    supernet.train(was_training)
    return found


def split_epochs(epochs: int, rounds: int) -> list[int]:
    """The epochs after which the supernets split: ``round(epochs · i / (2 · rounds))``, i = 1 … rounds."""
    chosen = {max(1, round(epochs * i / (2 * rounds))) for i in range(1, rounds + 1)}
    return sorted(e for e in chosen if e < epochs)


__all__ = [
    "balanced_min_cut",
    "connected",
    "match_distance",
    "split_edge_scores",
    "split_epochs",
    "split_parameters",
]
