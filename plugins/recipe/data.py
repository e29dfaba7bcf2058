"""Data pruning: train on a searchable fraction of the training set, ranked by a difficulty score.

The dimension only records the choice in ``candidate.recipe``; training evaluators call
``select_training_subset`` to apply it. Scores:

- ``el2n`` (Paul et al., 2021): ‖softmax(f(x)) − onehot(y)‖₂ after a few training steps of the
  candidate's own model; high means hard.
- ``prototype`` (Sorscher et al., 2022): cosine distance to the nearest k-means centroid in a
  self-supervised embedding learnt on the training split itself (a small SimCLR encoder for images,
  TF-IDF for text); far means hard. Labels are never read.
- ``random``: a uniformly random subset (the baseline both are measured against).

``keep = "hard"`` keeps the highest scores, ``"easy"`` the lowest, and ``"auto"`` (the default)
follows Sorscher et al.'s finding that the best choice depends on how much data there is: easy
examples when data is scarce, hard ones when it is plentiful (``keep_rule``).
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl import DATA, Batch, Dimension, Option, ScopedTrial

SCORES = ("el2n", "prototype", "random")
KEEP = ("auto", "hard", "easy")
LARGE_PER_CLASS = 1000


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


def prototype_scores(
    data: Batch,
    clusters: int,
    seed: int = 0,
    *,
    steps: int = 200,
    vocab_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """Self-supervised prototype difficulty (Sorscher et al. 2022): the cosine distance of every example
    to its nearest k-means centroid in a self-supervised embedding; labels are never read.

    The embedding (``self_supervised_embedding``) is learnt on ``data`` itself: a small SimCLR encoder
    for images, TF-IDF for token sequences. The paper clusters SwAV embeddings with k-means and scores by
    cosine distance to the nearest centroid; k is a free choice there, the number of classes here.
    """
    embedding = self_supervised_embedding(data, steps=steps, vocab_size=vocab_size, cache_dir=cache_dir)
    return prototype_distances(embedding, clusters, seed)[0]


def prototype_distances(embedding: torch.Tensor, clusters: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, centroids): k-means (k-means++ seeding, three restarts) on the L2-normalized
    ``embedding``, then each example's cosine distance 1 − cos(z, c) to its nearest centroid c."""
    from sklearn.cluster import KMeans

    z = F.normalize(embedding.float(), dim=1)
    k = max(1, min(clusters, len(z)))
    kmeans = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(z.double().numpy())
    centroids = torch.from_numpy(kmeans.cluster_centers_).float()
    return 1.0 - (z @ F.normalize(centroids, dim=1).T).max(dim=1).values, centroids


def self_supervised_embedding(
    data: Batch,
    *,
    steps: int = 200,
    vocab_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """An embedding of every example of ``data`` learnt without labels, cached on disk by data fingerprint.

    Images (``B×C×H×W`` floats): the representation of a SimCLR encoder (``simclr_embedding``) trained
    for ``steps`` steps. Token sequences (integer ``B×T``): TF-IDF over the vocabulary
    (``tfidf_embedding``). The cache is a folder beside the score cache (``$AUTOML_CACHE`` or
    ``automl-cache.db``, so ``automl-cache.db.embeddings/``) holding one file per fingerprint of the
    inputs and the embedding's settings; an embedding is computed once per data set, whatever candidate asks.
    """
    inputs = data.inputs
    if not inputs.is_floating_point():
        return tfidf_embedding(inputs, vocab_size)
    if inputs.dim() != 4:
        raise ValueError(f"prototype scores need images (B×C×H×W) or token ids (B×T), got shape {tuple(inputs.shape)}")
    folder = Path(cache_dir) if cache_dir is not None else embedding_cache_dir()
    digest = hashlib.sha256()
    digest.update(f"simclr-v1 steps={steps} shape={tuple(inputs.shape)} {inputs.dtype}".encode())
    digest.update(inputs.detach().cpu().contiguous().numpy().tobytes())
    path = folder / f"{digest.hexdigest()[:24]}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except (OSError, RuntimeError, EOFError):
            pass  # a damaged file is recomputed
    embedding = simclr_embedding(inputs, steps=steps)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(embedding, partial)
    partial.replace(path)  # atomic: concurrent workers never read half a file
    return embedding


def embedding_cache_dir() -> Path:
    """The folder beside the score cache where learnt embeddings are kept."""
    from automl.cache import CACHE_ENV, DEFAULT_CACHE

    cache = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    return cache.with_name(cache.name + ".embeddings")


class _Encoder(nn.Module):
    """The SimCLR encoder f (three convolutions, global average pooling) and projection head g."""

    def __init__(self, channels: int, width: int = 16, dim: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width, 2 * width), nn.ReLU(), nn.Linear(2 * width, dim))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image: a random resized crop with a small rotation, contrast and
    brightness jitter, and Gaussian noise (SimCLR's crop and colour distortion, without the flips that
    would change a digit's meaning)."""
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    scale, angle = uniform(0.7, 1.0), uniform(-0.25, 0.25)
    shift_x, shift_y = uniform(-1, 1) * (1 - scale), uniform(-1, 1) * (1 - scale)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    view = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    mean = view.mean(dim=(1, 2, 3), keepdim=True)
    view = (view - mean) * uniform(0.6, 1.4).view(n, 1, 1, 1).to(images) + mean
    view = view + uniform(-0.4, 0.4).view(n, 1, 1, 1).to(images)
    return view + 0.1 * torch.randn(view.shape, generator=generator).to(images)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss: each view's positive is the other view of its image, its negatives the
    2(N − 1) other views of the batch; cosine similarities divided by ``temperature``."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def simclr_embedding(
    images: torch.Tensor, *, steps: int = 200, batch_size: int = 128, lr: float = 1e-3, seed: int = 0
) -> torch.Tensor:
    """Train a small SimCLR encoder (Chen et al. 2020) on ``images`` for ``steps`` Adam steps and return
    the encoder's representation (before the projection head, as SimCLR uses it) of every image.

    Deterministic for a given seed; runs on the CPU in a fork of the random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        images = images.detach().float().cpu()
        encoder = _Encoder(images.shape[1])
        optimizer = torch.optim.Adam(encoder.parameters(), lr=lr, weight_decay=1e-6)
        encoder.train()
        size = min(batch_size, len(images))
        for _ in range(steps):
            index = torch.randperm(len(images), generator=generator)[:size]
            batch = images[index]
            views = encoder.head(encoder.features(torch.cat([augment(batch, generator), augment(batch, generator)])))
            loss = nt_xent(views[:size], views[size:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        encoder.eval()
        with torch.no_grad():
            return torch.cat([encoder.features(images[i : i + 512]) for i in range(0, len(images), 512)])


def tfidf_embedding(tokens: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """TF-IDF of each token sequence over the vocabulary, L2-normalized: tf = count / length,
    idf = ln((1 + N) / (1 + df)) + 1 (scikit-learn's smoothed form), N sequences, df the number of
    sequences holding the token. Negative ids (ignore markers such as −100) are skipped."""
    tokens = tokens.reshape(len(tokens), -1).long()
    vocab = int(vocab_size or int(tokens.max()) + 1)
    valid = (tokens >= 0) & (tokens < vocab)
    counts = torch.zeros(len(tokens), vocab)
    counts.scatter_add_(1, tokens.clamp(0, vocab - 1), valid.float())
    tf = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    df = (counts > 0).sum(dim=0).float()
    idf = torch.log((1 + len(tokens)) / (1 + df)) + 1
    return F.normalize(tf * idf, dim=1)


def keep_rule(recipe: dict[str, Any], size: int, classes: int) -> str:
    """``hard`` or ``easy``: the recipe's choice, or for ``auto`` the paper's rule on data size (keep
    the easy examples of a small data set, the hard ones of a large one), large meaning at least
    ``data_large_per_class`` training examples per class (one class for tasks without classes)."""
    keep = recipe.get("data_keep", "auto")
    if keep != "auto":
        return keep
    threshold = int(recipe.get("data_large_per_class", LARGE_PER_CLASS))
    return "hard" if size / max(classes, 1) >= threshold else "easy"


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
        scores = prototype_scores(
            data,
            clusters=max(2, candidate.task.num_classes or 10),
            seed=candidate.seed,
            steps=int(recipe.get("data_ssl_steps", 200)),
            vocab_size=candidate.task.vocab_size or None,
        )
    elif score == "random":
        scores = torch.rand(len(data), generator=torch.Generator().manual_seed(int(candidate.seed)))
    else:
        raise ValueError(f"unknown data score {score!r} (scores: {', '.join(SCORES)})")
    keep = keep_rule(recipe, len(data), candidate.task.num_classes)
    order = torch.argsort(scores, descending=keep == "hard", stable=True)
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
            default=["auto"],
            item_type=str,
            choices=KEEP,
            min_items=1,
            help="keep the hardest or the easiest examples; auto: easy below large_per_class examples per "
            "class, hard from there (Sorscher et al.)",
        ),
        "large_per_class": Option(
            int,
            default=LARGE_PER_CLASS,
            min=1,
            max=1_000_000,
            help="auto keeps hard examples from this many training examples per class up, easy ones below",
        ),
        "el2n_steps": Option(int, default=20, min=1, max=100_000, help="training steps before EL2N scores are taken"),
        "ssl_steps": Option(
            int,
            default=200,
            min=10,
            max=20000,
            help="training steps of the self-supervised (SimCLR) encoder behind prototype scores on images",
        ),
    }

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        fraction = trial.suggest_categorical("fraction", self.settings["fractions"])
        candidate.recipe["data_keep_fraction"] = fraction
        if fraction < 1.0:
            candidate.recipe["data_score"] = trial.suggest_categorical("score", self.settings["scores"])
            candidate.recipe["data_keep"] = trial.suggest_categorical("keep", self.settings["keep"])
            candidate.recipe["data_score_steps"] = self.settings["el2n_steps"]
            candidate.recipe["data_ssl_steps"] = self.settings["ssl_steps"]
            candidate.recipe["data_large_per_class"] = self.settings["large_per_class"]
            # Settings that change the subset are part of what identifies the candidate.
            recipe = candidate.recipe
            values = {k: recipe[f"data_{k}"] for k in ("keep_fraction", "score", "keep")}
            if recipe["data_score"] == "el2n":
                values["el2n_steps"] = recipe["data_score_steps"]
            if recipe["data_score"] == "prototype":
                values["ssl_steps"] = recipe["data_ssl_steps"]
            if recipe["data_keep"] == "auto":
                values["large_per_class"] = recipe["data_large_per_class"]
            candidate.set_canonical(trial.prefix, values)
