"""LayerNorm removal by fine-tuning (Heimersheim, 2024, "You can remove GPT2's LayerNorm by fine-tuning").

After a transformer is trained, each LayerNorm is replaced, one at a time, by a *fake* LayerNorm that divides
by a frozen constant instead of the token's standard deviation, and training continues between removals so
the model adapts; at the end no normalization depends on its input's scale (the model is linear between
the non-linearities of attention and the feed-forward blocks)::

    LN(x)      = (x − mean(x)) / std(x) · γ + β
    fake LN(x) = (x − mean(x)) / σ      · γ + β,   σ: the LayerNorm input's average scale on data

Details, from the author's code as continued in github.com/submarat/removing-layer-norm (``train.py``,
``generate_std_dict.py``):

- the mean subtraction stays (it is linear); σ is the standard deviation of all entries of the LayerNorm's
  input (``tensor.std()``), measured on training data before the fine-tuning starts, by the trained model;
- order: the feed-forward LayerNorms first (GPT-2's ``ln_2``), block by block, then the attention ones
  (``ln_1``) on the query/key path, then on the value path (a Pre-LN self-attention layer gets its LayerNorm
  moved into its input projection, once per path, sharing γ and β, so the paths lose it at different steps;
  once both are fake the two are merged back into one),
  then the last one (``ln_f``); one removal every ``gap`` optimizer steps; training goes on for one more gap
  after the last removal. This encoder also has an embedding LayerNorm, removed just before the final one;
  a ``peri`` placement's output norms come after the attention ones; the LayerNorm in front of a Fourier/DCT
  or convolution layer (one input path) goes with the query/key group;
- the learning rate decays (cosine) over the fine-tuning, as in the author's runs.

Left out: GPT-2's special standard deviation for the first (BOS) and end-of-text tokens has no counterpart in
an encoder without such tokens. A Post-LN encoder (FlexiBERT's default placement) has its LayerNorms on the
residual stream itself; they are removed in the same order, without the query/key – value split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from automl import RECIPE, Batch, Dimension, Option, ScopedTrial, SpaceError


class FakeableLayerNorm(nn.Module):
    """A LayerNorm over the last dimension that divides by the frozen ``std`` once it is set (a fake LayerNorm)."""

    def __init__(self, layer_norm: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = layer_norm.normalized_shape
        self.eps = layer_norm.eps
        self.weight = layer_norm.weight
        self.bias = layer_norm.bias
        self.register_buffer("std", torch.zeros((), device=None if self.weight is None else self.weight.device))
        self.fake = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fake:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        out = (x - x.mean(dim=-1, keepdim=True)) / self.std
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out


class SplitAttentionInput(nn.Module):
    """A Pre-LN attention's input projection with its LayerNorm inside, once for queries and keys and once for
    values, so the two paths can lose their LayerNorm at different steps (GPT-2's ``ln_1`` qk and v)."""

    def __init__(self, qkv: nn.Linear, layer_norm: nn.LayerNorm) -> None:
        super().__init__()
        self.qkv = qkv
        # Two views of one LayerNorm: γ and β are shared, only the faking differs.
        self.norm_qk = FakeableLayerNorm(layer_norm)
        self.norm_v = FakeableLayerNorm(layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = self.qkv.out_features // 3
        qk = self.qkv(self.norm_qk(x))[..., : 2 * width]
        v = self.qkv(self.norm_v(x))[..., 2 * width :]
        return torch.cat([qk, v], dim=-1)


def split_attention_norms(model: nn.Module) -> int:
    """In a Pre-LN ``FlexiBERTEncoder``, move each self-attention layer's LayerNorm into its input projection as
    a ``SplitAttentionInput`` (the same function); returns how many were split."""
    from automl_plugins.architectures.flexibert.model import SelfAttention

    if getattr(model, "placement", None) != "pre":
        return 0
    count = 0
    for layer in getattr(model, "layers", []):
        if isinstance(layer.operation, SelfAttention) and type(layer.norm_op) is nn.LayerNorm:
            layer.operation.qkv = SplitAttentionInput(layer.operation.qkv, layer.norm_op)
            layer.norm_op = nn.Identity()
            count += 1
    return count


def merge_attention_norms(model: nn.Module) -> int:
    """Undo ``split_attention_norms`` where both paths are faked with one scale (the same function again, with
    one LayerNorm and one input projection); returns how many were merged."""
    count = 0
    for layer in getattr(model, "layers", []):
        split = getattr(layer.operation, "qkv", None)
        if not isinstance(split, SplitAttentionInput):
            continue
        qk, v = split.norm_qk, split.norm_v
        if qk.fake and v.fake and torch.equal(qk.std, v.std):
            layer.operation.qkv = split.qkv
            layer.norm_op = qk
            count += 1
    return count


def removal_order(model: nn.Module) -> list[str]:
    """The names of the model's LayerNorms in the order they are removed (see the module docstring)."""
    names = [name for name, m in model.named_modules() if isinstance(m, (nn.LayerNorm, FakeableLayerNorm))]

    def rank(name: str) -> tuple[int, int]:
        position = names.index(name)
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("norm_ff"):
            return (0, position)
        if leaf.startswith("norm_op") or leaf == "norm_qk":
            return (1, position)
        if leaf == "norm_v":
            return (2, position)
        if leaf == "embedding_norm":
            return (3, position)
        if leaf == "final_norm":
            return (5, position)
        return (4, position)

    return sorted(names, key=rank)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, module)


@torch.no_grad()
def measure_input_std(model: nn.Module, names: list[str], inputs: torch.Tensor, batch_size: int) -> dict[str, float]:
    """The standard deviation of all entries of each named module's input over ``inputs`` (eval mode)."""
    sums = {n: [0.0, 0.0, 0] for n in names}
    handles = []
    for name in names:

        def hook(_module: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            x = args[0].detach().double()
            acc = sums[name]
            acc[0] += float(x.sum())
            acc[1] += float(x.square().sum())
            acc[2] += x.numel()

        handles.append(model.get_submodule(name).register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for first in range(0, len(inputs), batch_size):
            model(inputs[first : first + batch_size])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    out = {}
    for name, (total, squares, count) in sums.items():
        mean = total / count
        out[name] = math.sqrt(max(squares / count - mean * mean, 0.0) * count / max(count - 1, 1))
    return out


class LayerNormRemoval:
    """The post-training step: measure σ for every LayerNorm, then fake them one at a time while fine-tuning.

    A training hook (``after_training``): the training evaluator calls it after the last epoch.
    """

    def __init__(
        self, gap: int, *, lr_scale: float = 0.1, calibration_samples: int = 256, batch_size: int = 64, seed: int = 0
    ) -> None:
        if gap < 1:
            raise ValueError(f"gap must be at least 1 step, got {gap}")
        self.gap, self.lr_scale, self.batch_size, self.seed = gap, lr_scale, batch_size, seed
        self.calibration_samples = calibration_samples

    def schedule(self, count: int) -> dict[int, int]:
        """{optimizer step: index of the LayerNorm faked before it} for ``count`` LayerNorms."""
        return {i * self.gap: i for i in range(count)}

    def after_training(
        self, model: nn.Module, train: Batch, val: Batch, criterion: nn.Module, settings: Mapping[str, Any]
    ) -> dict[str, Any]:
        from automl_plugins.evaluators.training import _flat, _optimizer

        split_attention_norms(model)
        order = removal_order(model)
        if not order:
            return {"ln_removed": 0}
        generator = torch.Generator().manual_seed(self.seed)
        calibration = torch.randperm(len(train), generator=generator)[: self.calibration_samples]
        stds = measure_input_std(model, order, train.inputs[calibration.to(train.inputs.device)], self.batch_size)
        fakes = []
        for name in order:
            fake = model.get_submodule(name)
            if not isinstance(fake, FakeableLayerNorm):
                fake = FakeableLayerNorm(fake)
                _replace(model, name, fake)
            fake.std.fill_(stds[name])
            fakes.append(fake)
        schedule = self.schedule(len(fakes))
        total = self.gap * (len(fakes) + 1)
        tuning = dict(settings, lr=settings["lr"] * self.lr_scale)
        optimizer = _optimizer(model, tuning)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
        model.train()
        losses = []
        for step in range(total):
            if step in schedule:
                fakes[schedule[step]].fake = True
            index = torch.randint(len(train), (self.batch_size,), generator=generator).to(train.inputs.device)
            loss = criterion(*_flat(model(train.inputs[index]), train.targets[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.get("grad_clip"):
                nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        merge_attention_norms(model)
        return {
            "ln_removed": len(fakes),
            "ln_removal_steps": total,
            "ln_removal_std": {name: round(stds[name], 6) for name in order},
            "ln_removal_last_loss": losses[-1],
        }


class LayerNormRemovalDimension(Dimension):
    name = "layernorm_removal"
    # The contract suites' space: a transformer to remove LayerNorms from (the default space has NB201 cells).
    example_space: ClassVar[dict] = {
        "study": {"name": "layernorm-removal-contract", "sampler": "random"},
        "task": {"name": "text_mlm", "seq_len": 8, "vocab_size": 100, "batch_size": 8},
        "dimensions": [
            {"name": "flexibert", "hidden_sizes": [128], "layers": [2], "ff_dims": [512], "ff_counts": [1]},
            {"name": "layernorm_removal"},
        ],
        "evaluator": {"name": "proxies", "proxies": ["params"]},
        "objectives": [{"metric": "params", "direction": "minimize"}],
    }
    kind = "layernorm_removal"
    stage = RECIPE
    description = (
        "after training, replace each LayerNorm by a frozen-scale one, one at a time while fine-tuning "
        "(Heimersheim 2024)"
    )
    options = {
        "remove": Option(
            list, default=[False, True], item_type=bool, min_items=1, help="whether to remove the LayerNorms"
        ),
        "gaps": Option(
            list, default=[5, 10], item_type=int, min=1, max=1000, min_items=1, help="fine-tuning steps per removal"
        ),
        "lr_scale": Option(
            float, default=0.1, min=0.0, max=1.0, help="fine-tuning learning rate, as a fraction of training's"
        ),
        "calibration_samples": Option(
            int, default=256, min=1, max=100000, help="training examples that measure each LayerNorm's scale"
        ),
    }

    def validate(self, space: Any) -> None:
        found = getattr(space, "architecture", None)
        if found is None or getattr(found[1], "arch_kind", None) != "transformer":
            raise SpaceError("LayerNorm removal fine-tunes transformers: add a transformer architecture", key="name")

    def suggest(self, trial: ScopedTrial, candidate: Any) -> None:
        if not trial.suggest_categorical("remove", self.settings["remove"]):
            candidate.set_canonical(trial.prefix, "kept")
            return
        gap = trial.suggest_categorical("gap", self.settings["gaps"])
        hook = LayerNormRemoval(
            gap,
            lr_scale=self.settings["lr_scale"],
            calibration_samples=self.settings["calibration_samples"],
            batch_size=int(candidate.task.settings.get("batch_size", 64)),
            seed=int(candidate.seed),
        )
        candidate.recipe.setdefault("training_hooks", []).append(hook)
