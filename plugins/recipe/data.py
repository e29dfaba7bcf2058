"""Data pruning: train on a searchable fraction of the training set, ranked by a difficulty score.

The dimension only records the choice in ``candidate.recipe``; training evaluators call
``select_training_subset`` to apply it. Scores:

- ``el2n`` (Paul et al., 2021): ‖softmax(f(x)) − onehot(y)‖₂ after a few training steps of the
  candidate's own model; high means hard.
- ``prototype`` (Sorscher et al., 2022): distance to the nearest k-means centroid in an embedding
  learnt without labels (here a PCA of the inputs); far means hard.
- ``random``: a uniformly random subset (the baseline both are measured against).

``keep = "hard"`` keeps the highest scores (the better choice when data is plentiful), ``"easy"`` the
lowest (better for small data).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from automl import DATA, Batch, Dimension, Option, ScopedTrial

SCORES = ("el2n", "prototype", "random")
KEEP = ("hard", "easy")


def el2n_scores(
    candidate: Any, data: Batch, device: torch.device, steps: int = 20, batch_size: int = 64, lr: float = 0.05
) -> torch.Tensor:
    """EL2N scores of every example after ``steps`` SGD steps of the candidate's model (on ``device``)."""
    model = candidate.build_model(device).to(device)
    loss_fn = copy.deepcopy(candidate.loss).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(int(candidate.seed))
    inputs, targets = data.inputs.to(device), data.targets.to(device)
    model.train()
    for _ in range(steps):
        index = torch.randperm(len(data), generator=generator)[:batch_size].to(device)
        logits, batch_targets = _flat(model(inputs[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss_fn(logits, batch_targets).backward()
        optimizer.step()
    model.eval()
    scores = []
    with torch.no_grad():
        for first in range(0, len(data), 512):
            p = F.softmax(model(inputs[first : first + 512]), dim=-1)
            y = F.one_hot(targets[first : first + 512], p.shape[-1]).to(p.dtype)
            error = (p - y).norm(dim=-1)
            # Sequence models: an example's score is the mean over its positions.
            scores.append(error.reshape(len(error), -1).mean(dim=1).cpu())
    return torch.cat(scores)


def _flat(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.dim() > 2:
        return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    return logits, targets


def prototype_scores(data: Batch, clusters: int, seed: int = 0, dims: int = 32, iterations: int = 20) -> torch.Tensor:
    """Distance of every example to its nearest k-means centroid in a PCA embedding (labels unused)."""
    x = data.inputs.reshape(len(data), -1).float()
    x = x - x.mean(dim=0)
    q = min(dims, x.shape[0], x.shape[1])
    # An exact SVD (not a randomised one) so the same data always gives the same scores.
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    z = F.normalize(x @ vh[:q].T, dim=1)
    generator = torch.Generator().manual_seed(seed)
    centroids = z[torch.randperm(len(z), generator=generator)[:clusters]].clone()
    for _ in range(iterations):
        assign = torch.cdist(z, centroids).argmin(dim=1)
        for k in range(len(centroids)):
            members = z[assign == k]
            if len(members):
                centroids[k] = members.mean(dim=0)
    return torch.cdist(z, centroids).min(dim=1).values


def select_training_subset(candidate: Any, data: Batch, device: torch.device | str = "cpu") -> tuple[torch.Tensor, str]:
    """Indices (into ``data``) of the examples to train on, per ``candidate.recipe``, and the score used."""
    recipe = candidate.recipe
    fraction = float(recipe.get("data_keep_fraction", 1.0))
    score = recipe.get("data_score", "random")
    count = max(1, round(fraction * len(data)))
    if count >= len(data):
        return torch.arange(len(data)), score
    if score == "el2n":
        scores = el2n_scores(candidate, data, torch.device(device), steps=int(recipe.get("data_score_steps", 20)))
    elif score == "prototype":
        scores = prototype_scores(data, clusters=max(2, candidate.task.num_classes or 10), seed=candidate.seed)
    elif score == "random":
        scores = torch.rand(len(data), generator=torch.Generator().manual_seed(int(candidate.seed)))
    else:
        raise ValueError(f"unknown data score {score!r} (scores: {', '.join(SCORES)})")
    order = torch.argsort(scores, descending=recipe.get("data_keep", "hard") == "hard", stable=True)
    return order[:count].sort().values, score


class DataPruningDimension(Dimension):
    name = "data_pruning"
    kind = "data"
    stage = DATA
    description = "train on a fraction of the training set ranked by difficulty (EL2N, prototype distance, random)"
    options = {
        "fractions": Option(
            list,
            default=[0.5, 0.7, 0.9, 1.0],
            item_type=float,
            min=0.01,
            max=1.0,
            min_items=1,
            help="fractions of the training set to keep",
        ),
        "scores": Option(
            list,
            default=list(SCORES),
            item_type=str,
            choices=SCORES,
            min_items=1,
            help="difficulty scores to rank examples by",
        ),
        "keep": Option(
            list,
            default=["hard"],
            item_type=str,
            choices=KEEP,
            min_items=1,
            help="keep the hardest or the easiest examples",
        ),
        "el2n_steps": Option(int, default=20, min=1, max=100_000, help="training steps before EL2N scores are taken"),
    }

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        fraction = trial.suggest_categorical("fraction", self.settings["fractions"])
        candidate.recipe["data_keep_fraction"] = fraction
        if fraction < 1.0:
            candidate.recipe["data_score"] = trial.suggest_categorical("score", self.settings["scores"])
            candidate.recipe["data_keep"] = trial.suggest_categorical("keep", self.settings["keep"])
            candidate.recipe["data_score_steps"] = self.settings["el2n_steps"]
