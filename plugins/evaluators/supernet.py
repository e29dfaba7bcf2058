"""The ``supernet`` evaluator: train one weight-sharing supernet per space, score candidates by inherited weights.

The first time a candidate of a space is scored, one ``NB201Supernet`` covering the space's NB201
operations and its weight quantization choices (bit-widths, granularities, schemes, per layer or per
model) is trained with single-path uniform sampling (Guo et al., SPOS): each step draws one operation
per edge and one quantization setting per weight layer, uniformly from the space's own choices, and
trains that sub-network on one minibatch. The weights are stored in a file keyed like the score cache
(``<cache path>.supernets/<key>.pt``; the key hashes the task, the dimensions' settings, the supernet's
training settings, the seed and the data fingerprint), so another process, a second run or a Ray worker
loads it instead of training again; a checkpoint after every ``checkpoint_every`` epochs lets a killed
training resume where it stopped. A file lock keeps two processes from training the same supernet.

A candidate is scored by building its model alone (``candidate.build_model()``: its own fake
quantizers, masks and loss), copying the supernet's weights for its path in (``inherit``),
recalibrating BatchNorm statistics on ``calibration_batches`` fixed training minibatches (cumulative
average over them, the usual one-shot practice, e.g. SPOS and EQ-Net's ``reset_running_stats`` +
forward before each sub-network's evaluation) and measuring validation and test accuracy.

Simplifications (see the README): the supernet is trained with float activations (a candidate's
activation quantizers learn their range during the recalibration pass, as post-training calibration);
BatchNorm is the only normalization it covers. ``sampling = "few_shot"`` trains sub-supernets split by
gradient matching (GM-NAS, see ``gmnas.py``); a candidate is scored with the one that covers its path. EQ-Net's
weight-distribution regularisation (``wdr_kurtosis``, ``wdr_skewness``) and group progressive guidance
(``gpg_subnets``) are options (see ``eqnet.py``). ``sampling = "pada"`` draws paths and examples by gradient
importance (PA&DA, see ``pada.py``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automl import Batch, EvalResult, Evaluator, Option, SpaceError
from automl.cache import CACHE_ENV, DEFAULT_CACHE
from automl_plugins.architectures.nb201.space import EDGES, OPERATIONS
from automl_plugins.architectures.nb201.supernet import LayerQuant, NB201Supernet, SuperCell, inherit
from automl_plugins.evaluators.eqnet import kurtosis_loss, progressive_guidance_loss, skewness_loss
from automl_plugins.evaluators.gmnas import split_edge_scores, split_epochs
from automl_plugins.evaluators.pada import (
    example_gradient_norms,
    example_probabilities,
    fold_operation_importance,
    operation_probabilities,
)
from automl_plugins.evaluators.training import evaluate_model

SAMPLING = ("uniform", "pada", "few_shot")
FILE_VERSION = 1
# The settings that change the supernet's weights (the rest only change how candidates are scored).
TRAINING_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "grad_clip")
TRAINING_KEYS += ("max_train_samples", "sampling", "wdr_kurtosis", "wdr_skewness", "gpg_subnets")
FEW_SHOT_KEYS = ("few_shot_splits", "gm_repeats")  # in the key only when sampling = "few_shot"


def weights_folder(settings: Mapping[str, Any]) -> Path:
    """Where supernet weight files live: ``weights_dir``, else beside the score cache."""
    if settings.get("weights_dir"):
        return Path(settings["weights_dir"])
    cache = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    return cache.with_name(cache.name + ".supernets")


class SupernetSpec:
    """What one supernet covers, read from a candidate: operations, sizes, and the quantization choices."""

    def __init__(self, candidate: Any) -> None:
        from automl_plugins.architectures.nb201.space import NB201Architecture

        arch = candidate.architecture
        if not isinstance(arch, NB201Architecture):
            raise SpaceError(
                "the supernet evaluator covers NAS-Bench-201 cells: use the nb201 dimension", key="dimensions"
            )
        if candidate.norm_layer is not None:
            raise SpaceError(
                "the supernet evaluator covers BatchNorm only: remove the normalization dimension", key="dimensions"
            )
        self.dimensions = candidate.canonical().get("__dimensions__", [])
        by_name = {name: settings for _, name, settings in self.dimensions}
        self.operations = list(by_name.get("nb201", {}).get("operations", OPERATIONS))
        self.channels = arch.channels
        self.cells_per_stage = arch.cells_per_stage
        quant = by_name.get("quantization")
        self.bits = sorted(set(quant["weight_bits"])) if quant else [32]
        self.granularities = list(quant["granularities"]) if quant else ["per_tensor"]
        self.schemes = list(quant["schemes"]) if quant else ["symmetric"]
        self.per_layer = bool(quant["per_layer"]) if quant else False

    def build(self, task: Any) -> NB201Supernet:
        return NB201Supernet(
            self.operations,
            EDGES,
            channels=self.channels,
            cells_per_stage=self.cells_per_stage,
            in_channels=task.input_shape[0],
            num_classes=task.num_classes,
        )

    def guidance_chain(
        self, supernet: NB201Supernet, path: Sequence[str], rng: random.Random, length: int
    ) -> list[dict[str, LayerQuant]]:
        """EQ-Net's chain on ``path``: the largest bit-widths, ``length`` − 2 random settings, the smallest."""
        names = path_layers(supernet, path)

        def at(bits: int) -> dict[str, LayerQuant]:
            if bits >= 32:
                return {}
            return dict.fromkeys(names, (bits, rng.choice(self.granularities), rng.choice(self.schemes)))

        middle = [self.quantization(names, rng) for _ in range(length - 2)]
        return [at(max(self.bits)), *middle, at(min(self.bits))]

    def sample(
        self,
        supernet: NB201Supernet,
        rng: random.Random,
        op_weights: Sequence[float] | None = None,
        allowed: Sequence[Sequence[str]] | None = None,
    ) -> tuple[tuple[str, ...], dict[str, LayerQuant]]:
        """One path and quantization setting, uniformly from the space's choices (as its dimensions draw
        them; ``allowed``: a few-shot sub-supernet's operations per edge), or operations drawn by
        ``op_weights`` (PA&DA)."""
        if op_weights is not None:
            path = tuple(rng.choices(self.operations, weights=op_weights, k=len(EDGES)))
        else:
            path = tuple(rng.choice(list(ops)) for ops in allowed or [self.operations] * len(EDGES))
        return path, self.quantization(path_layers(supernet, path), rng)

    def shared_quantization(
        self, supernet: NB201Supernet, paths: Sequence[tuple[str, ...]], rng: random.Random
    ) -> dict[tuple[str, ...], dict[str, LayerQuant]]:
        """One quantization draw over the layers of all ``paths`` (GM-NAS's matching): each path gets
        its layers' settings from it, so layers the paths share are quantized alike."""
        names = sorted({name for path in paths for name in path_layers(supernet, path)})
        drawn = self.quantization(names, rng)
        if not drawn:
            return {path: {} for path in paths}
        return {path: {n: drawn[n] for n in path_layers(supernet, path)} for path in paths}

    def quantization(self, names: Sequence[str], rng: random.Random) -> dict[str, LayerQuant]:
        """A quantization setting of the layers ``names``, uniformly from the space's choices ({}: float)."""
        if self.per_layer:
            bits = {name: rng.choice(self.bits) for name in names}
        else:
            one = rng.choice(self.bits)
            bits = dict.fromkeys(names, one)
        if all(b >= 32 for b in bits.values()):
            return {}
        granularity, scheme = rng.choice(self.granularities), rng.choice(self.schemes)
        return {name: (b, granularity, scheme) for name, b in bits.items()}


def path_layers(supernet: NB201Supernet, path: Sequence[str]) -> list[str]:
    """The sub-network's weight-layer names (as ``NB201Network`` names them) on ``path``."""
    names = []
    for name, _ in supernet.elastic_layers():
        parts = name.split(".")
        if len(parts) > 4 and parts[0] == "cells" and parts[2] == "candidates":
            if path[int(parts[3])] != parts[4]:
                continue
            name = ".".join(["cells", parts[1], "ops", parts[3], *parts[5:]])
        names.append(name)
    return names


def candidate_quant(model: nn.Module) -> dict[str, LayerQuant]:
    """The (bits, granularity, scheme) of every fake-quantized weight layer of a built candidate model."""
    out = {}
    for name, module in model.named_modules():
        quantizer = getattr(module, "automl_weight_quant", None)
        if quantizer is None:
            continue
        qscheme = quantizer.quant.qscheme
        granularity = "per_channel" if "per_channel" in str(qscheme) else "per_tensor"
        scheme = "symmetric" if "symmetric" in str(qscheme) else "asymmetric"
        out[name] = (int(quantizer.bits), granularity, scheme)
    return out


def supernet_key(candidate: Any, settings: Mapping[str, Any], seed: int) -> str:
    """The weight file's key: task, dimensions' settings, training settings, seed and data fingerprint."""
    task = candidate.task
    blob = json.dumps(
        {
            "version": FILE_VERSION,
            "task": {"name": task.name, **task.settings},
            "dimensions": candidate.canonical().get("__dimensions__", []),
            "supernet": {
                k: settings[k] for k in TRAINING_KEYS + (FEW_SHOT_KEYS if settings["sampling"] == "few_shot" else ())
            },
            "seed": seed,
            "data": task.fingerprint(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _training_data(task: Any, settings: Mapping[str, Any], seed: int) -> Batch:
    train = task.split("train")
    limit = settings["max_train_samples"]
    if limit and limit < len(train):
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:limit]
        train = Batch(train.inputs[keep], train.targets[keep])
    return train


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def train_supernet(
    spec: SupernetSpec,
    task: Any,
    settings: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    folder: Path,
    key: str,
    on_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume, or load) the supernet ``key``; return ``{"state": state dict, "info": {...}}``.

    Resumes from ``<key>.ckpt.pt`` when a killed training left one; ``on_epoch(epoch)`` is called after
    each epoch's checkpoint (a test stops the training there). Holds ``<key>.lock`` while training.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final, checkpoint = folder / f"{key}.pt", folder / f"{key}.ckpt.pt"
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process training this supernet finishes first
        if final.exists():
            return torch.load(final, map_location="cpu", weights_only=False)
        return _train_locked(spec, task, settings, seed, device, final, checkpoint, on_epoch)


class _Branch:
    """One (sub-)supernet being trained: the operations it allows per edge, its weights and optimizer."""

    def __init__(self, allowed, model, optimizer, scheduler) -> None:
        self.allowed: list[list[str]] = [list(ops) for ops in allowed]
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler


def _make_branch(spec, settings, allowed, model, total_steps) -> _Branch:
    params = list(model.parameters())
    if settings["optimizer"] == "adam":
        optimizer = torch.optim.Adam(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
    else:
        optimizer = torch.optim.SGD(
            params, lr=settings["lr"], momentum=settings["momentum"], weight_decay=settings["weight_decay"]
        )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    return _Branch(allowed, model, optimizer, scheduler)


def _child(spec, settings, parent: _Branch, edge: int, group: Sequence[str], total_steps: int) -> _Branch:
    """A sub-supernet of ``parent`` allowing only ``group`` on ``edge``: its weights, optimizer and
    schedule state copied (GM-NAS's children go on from the parent's state, ``restart = none``)."""
    allowed = [list(ops) for ops in parent.allowed]
    allowed[edge] = list(group)
    branch = _make_branch(spec, settings, allowed, copy.deepcopy(parent.model), total_steps)
    branch.optimizer.load_state_dict(parent.optimizer.state_dict())
    branch.scheduler.load_state_dict(parent.scheduler.state_dict())
    return branch


def _train_locked(spec, task, settings, seed, device, final, checkpoint, on_epoch) -> dict[str, Any]:
    start_time = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet = spec.build(task).to(device)
    train = _training_data(task, settings, seed).to(device)
    batch_size = settings["batch_size"] or task.settings.get("batch_size", 64)
    steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
    total_steps = steps_per_epoch * settings["epochs"]
    full = [list(spec.operations) for _ in EDGES]
    branches = [_make_branch(spec, settings, full, supernet, total_steps)]
    order_gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    first_epoch, seconds_before, resumed_from = 1, 0.0, None
    pada = settings["sampling"] == "pada"
    few_shot = settings["sampling"] == "few_shot"
    split_at = split_epochs(settings["epochs"], settings["few_shot_splits"]) if few_shot else []
    splits: list[dict[str, Any]] = []
    op_prob = [1.0 / len(spec.operations)] * len(spec.operations)
    data_prob: torch.Tensor | None = None
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        saved = state.get("branches") or [
            {"allowed": full, "model": state["model"], "optimizer": state["optimizer"], "scheduler": state["scheduler"]}
        ]
        branches = []
        for entry in saved:
            model = spec.build(task).to(device)
            model.load_state_dict(entry["model"])
            branch = _make_branch(spec, settings, entry["allowed"], model, total_steps)
            branch.optimizer.load_state_dict(entry["optimizer"])
            branch.scheduler.load_state_dict(entry["scheduler"])
            branches.append(branch)
        order_gen.set_state(state["order_gen"])
        rng.setstate(state["rng"])
        first_epoch = resumed_from = state["epoch"] + 1
        op_prob, data_prob = state["op_prob"], state["data_prob"]
        seconds_before = state["seconds"]
        splits = state.get("splits", [])
    criterion = nn.CrossEntropyLoss()
    for epoch in range(first_epoch, settings["epochs"] + 1):
        if data_prob is None:
            order = torch.randperm(len(train), generator=order_gen)
        else:  # PA&DA: as many examples as the set holds, drawn with replacement by importance
            order = torch.multinomial(data_prob, len(train), replacement=True, generator=order_gen)
        order = order.to(device)
        importance = [0.0] * len(spec.operations)
        score_sum = torch.zeros(len(train), dtype=torch.float64)
        score_count = torch.zeros(len(train), dtype=torch.float64)
        for branch in branches:
            supernet, optimizer, scheduler = branch.model, branch.optimizer, branch.scheduler
            params = list(supernet.parameters())
            supernet.train()
            for first in range(0, len(train), batch_size):
                index = order[first : first + batch_size]
                if len(index) < 2:
                    continue  # a batch of one breaks batch normalization
                path, quant = spec.sample(supernet, rng, op_prob if pada else None, branch.allowed)
                inputs, targets = train.inputs[index], train.targets[index]
                optimizer.zero_grad(set_to_none=True)
                if settings["wdr_kurtosis"] or settings["wdr_skewness"]:
                    weights = [m.weight for _, m in supernet.elastic_layers()]
                    wdr = settings["wdr_kurtosis"] * kurtosis_loss(weights)
                    (wdr + settings["wdr_skewness"] * skewness_loss(weights)).backward()
                if settings["gpg_subnets"] > 1:
                    teacher = logits = None
                    for setting in spec.guidance_chain(supernet, path, rng, settings["gpg_subnets"]):
                        supernet.set_path(path, setting)
                        out = supernet(inputs)
                        if teacher is None:
                            criterion(out, targets).backward()
                            logits = out
                        else:
                            progressive_guidance_loss(out, teacher, targets).backward()
                        teacher = out.detach()
                else:
                    supernet.set_path(path, quant)
                    logits = supernet(inputs)
                    criterion(logits, targets).backward()
                if settings["grad_clip"]:
                    nn.utils.clip_grad_norm_(params, settings["grad_clip"])
                optimizer.step()
                scheduler.step()
                if pada:
                    norms = example_gradient_norms(logits, train.targets[index]).double().cpu()
                    score_sum.index_add_(0, index.cpu(), norms)
                    score_count.index_add_(0, index.cpu(), torch.ones_like(norms))
                    importance = fold_operation_importance(
                        importance, _operation_grad_norms(supernet, path), _uses(path), spec.operations
                    )
        if pada:
            tau = (epoch - 1) / settings["epochs"]
            op_prob = operation_probabilities(importance, tau)
            scores = torch.where(score_count > 0, score_sum / score_count.clamp(min=1), torch.zeros_like(score_sum))
            data_prob = example_probabilities(scores, tau)
        if epoch in split_at:
            branches = _split_all(
                spec, settings, branches, train, batch_size, order_gen, rng, epoch, splits, total_steps
            )
        if epoch % settings["checkpoint_every"] == 0 and epoch < settings["epochs"]:
            _save(
                {
                    "epoch": epoch,
                    "branches": [
                        {
                            "allowed": b.allowed,
                            "model": b.model.state_dict(),
                            "optimizer": b.optimizer.state_dict(),
                            "scheduler": b.scheduler.state_dict(),
                        }
                        for b in branches
                    ],
                    "order_gen": order_gen.get_state(),
                    "rng": rng.getstate(),
                    "op_prob": op_prob,
                    "data_prob": data_prob,
                    "splits": splits,
                    "seconds": seconds_before + time.perf_counter() - start_time,
                },
                checkpoint,
            )
        if on_epoch is not None:
            on_epoch(epoch)
    info = {
        "train_seconds": round(seconds_before + time.perf_counter() - start_time, 3),
        "epochs": settings["epochs"],
        "resumed_from_epoch": resumed_from,
        "device": str(device),
        "sampling": settings["sampling"],
    }
    if pada:
        info["operation_probabilities"] = dict(zip(spec.operations, [round(p, 4) for p in op_prob]))
    states = [{k: v.cpu() for k, v in b.model.state_dict().items()} for b in branches]
    result: dict[str, Any] = {"state": states[0], "info": info}
    if few_shot:
        info["splits"] = splits
        info["sub_supernets"] = len(branches)
        result["branches"] = [{"allowed": b.allowed, "state": st} for b, st in zip(branches, states)]
    _save(result, final)
    with contextlib.suppress(FileNotFoundError):
        checkpoint.unlink()
    return result


def _split_all(spec, settings, branches, train, batch_size, order_gen, rng, epoch, splits, total_steps) -> list:
    """GM-NAS: split every branch on its edge of largest gradient-matching cut (see ``gmnas.py``)."""
    criterion = nn.CrossEntropyLoss()

    def minibatch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randperm(len(train), generator=order_gen)[:batch_size].to(train.inputs.device)
        return train.inputs[index], train.targets[index]

    out = []
    for number, branch in enumerate(branches):
        found = split_edge_scores(
            branch.model,
            branch.allowed,
            EDGES,
            minibatch,
            lambda paths, model=branch.model: spec.shared_quantization(model, paths, rng),
            rng,
            settings["gm_repeats"],
            criterion,
        )
        if not found:  # nothing left to split
            out.append(branch)
            continue
        edge = max(sorted(found), key=lambda e: found[e][1])
        groups, score, _ = found[edge]
        splits.append(
            {
                "epoch": epoch,
                "branch": number,
                "edge": edge,
                "groups": groups,
                "score": round(score, 6),
                "edge_scores": {e: round(v[1], 6) for e, v in found.items()},
            }
        )
        out += [_child(spec, settings, branch, edge, group, total_steps) for group in groups]
    return out


def _uses(path: Sequence[str]) -> dict[str, int]:
    return {op: path.count(op) for op in set(path)}


def _operation_grad_norms(supernet: NB201Supernet, path: Sequence[str]) -> dict[str, float]:
    """Σ over cells of the gradient norm of each path operation's convolution weight (PA&DA's importance)."""
    totals: dict[str, float] = {}
    for cell in supernet.cells:
        if not isinstance(cell, SuperCell):
            continue
        for ops, op in zip(cell.candidates, path):
            for module in ops[op].modules():
                if isinstance(module, nn.Conv2d) and module.weight.grad is not None:
                    totals[op] = totals.get(op, 0.0) + float(module.weight.grad.norm())
    return totals


def branch_for(trained: Mapping[str, Any], path: Sequence[str]) -> tuple[int, dict[str, torch.Tensor]]:
    """(index, weights) of the (sub-)supernet covering ``path``: the only one without few-shot splits, else
    the sub-supernet whose allowed operations contain the path's operation on every edge."""
    branches = trained.get("branches")
    if not branches:
        return 0, trained["state"]
    for index, branch in enumerate(branches):
        if all(op in ops for op, ops in zip(path, branch["allowed"])):
            return index, branch["state"]
    raise ValueError(f"no sub-supernet covers the path {tuple(path)}")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: Batch, batches: int, batch_size: int, seed: int) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them as the plain average over
    ``batches`` fixed training minibatches (``momentum=None``); returns the batches used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches == 0:
        return 0
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).to(data.inputs.device)
    used = 0
    for first in range(0, min(len(data), batches * batch_size), batch_size):
        index = order[first : first + batch_size]
        if len(index) < 2:
            break
        model(data.inputs[index])
        used += 1
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
    return used


class SupernetEvaluator(Evaluator):
    name = "supernet"
    description = (
        "inherited-weight accuracy from one weight-sharing NB201 supernet over operations and weight "
        "bit-widths (trained once per space, stored beside the score cache)"
    )
    example = {"epochs": 1, "max_train_samples": 64, "calibration_batches": 1, "batch_size": 32}
    options = {
        "epochs": Option(int, default=30, min=1, max=10_000, help="supernet training epochs"),
        "batch_size": Option(int, default=None, min=2, max=4096, help="training minibatch size (default: the task's)"),
        "optimizer": Option(str, default="sgd", choices=("sgd", "adam")),
        "lr": Option(float, default=0.05, min=0.0, min_exclusive=True, max=10.0, help="initial learning rate (cosine)"),
        "momentum": Option(float, default=0.9, min=0.0, max=1.0, help="SGD momentum"),
        "weight_decay": Option(float, default=5e-4, min=0.0, max=1.0),
        "grad_clip": Option(float, default=5.0, min=0.0, max=1e6, help="gradient-norm clip (0: none)"),
        "max_train_samples": Option(
            int, default=None, min=1, max=10_000_000, help="train on a fixed random subset of this many examples"
        ),
        "sampling": Option(
            str,
            default="uniform",
            choices=SAMPLING,
            help="path sampling: uniform single-path (SPOS), pada (PA&DA importance sampling) or few_shot "
            "(GM-NAS: sub-supernets split by gradient matching)",
        ),
        "few_shot_splits": Option(
            int,
            default=2,
            min=1,
            max=6,
            help="few_shot: split rounds, each halving every sub-supernet's operations on one edge (2: four "
            "sub-supernets, as GM-NAS on NAS-Bench-201)",
        ),
        "gm_repeats": Option(
            int,
            default=100,
            min=1,
            max=10_000,
            help="few_shot: minibatches the gradient matching averages (GM-NAS: 100)",
        ),
        "wdr_kurtosis": Option(
            float, default=0.0, min=0.0, max=100.0, help="EQ-Net WDR: weight of (kurtosis − 1.8)² (EQ-Net: 0.015)"
        ),
        "wdr_skewness": Option(
            float, default=0.0, min=0.0, max=100.0, help="EQ-Net WDR: weight of skewness² (EQ-Net: 1)"
        ),
        "gpg_subnets": Option(
            int,
            default=1,
            min=1,
            max=16,
            help="EQ-Net GPG: sub-networks per step, largest bits → random → smallest, each guided by the "
            "previous (1: off; EQ-Net: 3)",
        ),
        "calibration_batches": Option(
            int, default=8, min=0, max=10_000, help="training minibatches that re-estimate BatchNorm statistics"
        ),
        "checkpoint_every": Option(int, default=1, min=1, max=10_000, help="epochs between training checkpoints"),
        "eval_batch_size": Option(int, default=512, min=1, max=65_536, help="minibatch size for validation and test"),
        "weights_dir": Option(str, default=None, help="folder of supernet weight files (default: beside the cache)"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._loaded: dict[str, dict[str, Any]] = {}  # key → trained supernet, per process
        self._built: dict[tuple[str, str], NB201Supernet] = {}  # (key, device) → the module with its weights

    def metrics(self) -> list[str]:
        return ["val_accuracy", "test_accuracy", "val_loss"]

    def validate(self, space: Any) -> None:
        found = space.architecture
        if found is None or found[1].name != "nb201":
            raise SpaceError("the supernet evaluator needs the nb201 architecture dimension", key="dimensions")
        for _, dim in space.dimensions:
            if dim.name == "normalization":
                raise SpaceError("the supernet evaluator covers BatchNorm only", key="dimensions", allowed=["nb201"])

    def supernet(self, candidate: Any, seed: int, device: torch.device, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        """(key, trained supernet) for ``candidate``'s space: from memory, the weight file, or trained now."""
        key = supernet_key(candidate, self.settings, seed)
        if key not in self._loaded:
            self._loaded[key] = train_supernet(
                SupernetSpec(candidate),
                candidate.task,
                self.settings,
                seed=seed,
                device=device,
                folder=weights_folder(self.settings),
                key=key,
                **kwargs,
            )
        return key, self._loaded[key]

    def evaluate(self, candidate: Any, context: Any) -> EvalResult:
        spec = SupernetSpec(candidate)
        device = context.device
        key, trained = self.supernet(candidate, context.seed, device)
        start = time.perf_counter()
        branch, state = branch_for(trained, candidate.architecture.ops)
        supernet = self._built.get((key, str(device), branch))
        if supernet is None:
            supernet = spec.build(candidate.task)
            supernet.load_state_dict(state)
            supernet = self._built[(key, str(device), branch)] = supernet.to(device)
        model = candidate.build_model(device).to(device)
        inherit(model, supernet, candidate.architecture.ops)
        task = candidate.task
        train = _training_data(task, self.settings, context.seed).to(device)
        batch_size = self.settings["batch_size"] or task.settings.get("batch_size", 64)
        used = recalibrate_batchnorm(model, train, self.settings["calibration_batches"], batch_size, context.seed)
        criterion = candidate.loss.to(device)
        val_acc, val_loss = evaluate_model(
            model, task.split("val").to(device), criterion, self.settings["eval_batch_size"]
        )
        scores = {"val_accuracy": val_acc, "val_loss": val_loss}
        reasons = {}
        try:
            test = task.split("test").to(device)
        except ValueError:
            scores["test_accuracy"] = math.nan
            reasons["test_accuracy"] = f"the {task.name} task has no test split"
        else:
            scores["test_accuracy"] = evaluate_model(model, test, criterion, self.settings["eval_batch_size"])[0]
        info = {
            "supernet": key,
            "sub_supernet": branch,
            "supernet_train_seconds": trained["info"]["train_seconds"],
            "calibration_batches": used,
            "eval_seconds": round(time.perf_counter() - start, 3),
        }
        return EvalResult(scores=scores, info=info, reasons=reasons)


__all__ = ["SupernetEvaluator", "branch_for", "candidate_quant", "recalibrate_batchnorm", "train_supernet"]
