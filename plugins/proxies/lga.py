"""Label-gradient alignment (Mok et al., CVPR 2022).

Θ_ij = ⟨∇θ f(x_i), ∇θ f(x_j)⟩ is the empirical NTK on a labelled minibatch, f(x_i) the sum of sample
i's logits and θ every trainable parameter (one gradient per sample, from one forward of the whole
batch). Y_ij = 1 when y_i = y_j, else 0. LGA = ⟨Θ − mean Θ, Y − mean Y⟩ / (‖Θ − mean Θ‖ ‖Y − mean Y‖),
the Pearson correlation of their entries. NTK metrics at initialisation are weak predictors; the
paper's point is that LGA becomes informative after a small amount of training, so ``steps`` (or
``epochs``) of SGD on the task's training split can precede the measurement; the amount is recorded
with the score.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from automl import Option, Proxy, ProxyValue


def per_sample_gradients(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """B × P matrix: row i = ∇θ Σ_c f_c(x_i), all samples through one forward (train-mode BN couples them)."""
    params = [p for p in model.parameters() if p.requires_grad]
    per_sample = model(inputs).flatten(1).sum(dim=1)
    rows = []
    for i in range(len(per_sample)):
        grads = torch.autograd.grad(per_sample[i], params, retain_graph=i + 1 < len(per_sample), allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)]))
    return torch.stack(rows)


def per_sample_gradients_independent(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The same matrix for a model whose samples do not interact (eval mode), vectorised with torch.func."""
    from torch.func import functional_call, grad, vmap

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def summed_output(values: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (values, buffers), (x.unsqueeze(0),)).sum()

    grads = vmap(grad(summed_output), in_dims=(None, 0))(params, inputs)
    return torch.cat([grads[n].flatten(1) for n in names], dim=1)


def label_gradient_alignment(ntk: torch.Tensor, labels: torch.Tensor) -> tuple[float, str | None]:
    """Pearson correlation between the entries of ``ntk`` and the same-label kernel of ``labels``."""
    same = (labels[:, None] == labels[None, :]).to(torch.float64)
    theta = ntk.to(torch.float64)
    theta = theta - theta.mean()
    same = same - same.mean()
    denominator = float(theta.norm() * same.norm())
    if denominator == 0.0 or not math.isfinite(denominator):
        what = "every label is the same" if float(same.norm()) == 0.0 else "the NTK is constant (dead network)"
        return math.nan, what
    return float((theta * same).sum()) / denominator, None


class LgaProxy(Proxy):
    name = "lga"
    description = "label-gradient alignment of the empirical NTK, at init or after a few SGD steps"
    applies_to = ("cell", "transformer")
    example = {"steps": 2}
    options = {
        "steps": Option(int, default=0, min=0, max=100_000, help="SGD steps on the training split before measuring"),
        "epochs": Option(float, default=0.0, min=0.0, max=1000.0, help="training in epochs (added to steps)"),
        "lr": Option(
            float, default=0.05, min=0.0, min_exclusive=True, max=10.0, help="SGD learning rate of that training"
        ),
        "momentum": Option(float, default=0.9, min=0.0, max=1.0),
        "train_batch_size": Option(
            int, default=None, min=1, max=4096, help="training minibatch (default: the scored batch's)"
        ),
        "mode": Option(
            str,
            default="train",
            choices=("train", "eval"),
            help="network mode of the NTK (eval: samples independent, vectorised, much faster)",
        ),
    }

    def training_steps(self, task, batch_size: int) -> int:
        steps = self.settings["steps"]
        if self.settings["epochs"]:
            per_epoch = math.ceil(len(task.split("train")) / batch_size)
            steps += round(self.settings["epochs"] * per_epoch)
        return steps

    def score(self, candidate, batch):
        if batch.targets is None:
            return ProxyValue.nan("lga needs labels; the task's batch has none")
        if batch.targets.dim() != 1:
            # Y_ij compares the labels of two examples: a language model's targets are one per token.
            return ProxyValue.nan(
                f"lga needs one label per example; the {candidate.task.name} task's targets are "
                f"{tuple(batch.targets.shape)} (per token): use a classification task"
            )
        device = batch.inputs.device
        model = candidate.build_model(device=device)
        batch_size = self.settings["train_batch_size"] or len(batch)
        steps = self.training_steps(candidate.task, batch_size)
        if steps:
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=self.settings["lr"], momentum=self.settings["momentum"])
            for step in range(steps):
                # Training batches come from seeds other than the scored batch's (seed = candidate seed).
                train = candidate.task.batch(batch_size, seed=candidate.seed + 1 + step).to(device)
                optimizer.zero_grad()
                candidate.loss(model(train.inputs), train.targets).backward()
                optimizer.step()
        model.train(self.settings["mode"] == "train")
        gradients = None
        if self.settings["mode"] == "eval":
            try:
                gradients = per_sample_gradients_independent(model, batch.inputs)
            except Exception:  # noqa: BLE001 - an operation torch.func cannot vectorise: use the loop
                gradients = None
        if gradients is None:
            gradients = per_sample_gradients(model, batch.inputs)
        info = {"steps": steps, "lr": self.settings["lr"], "train_batch_size": batch_size}
        if not torch.isfinite(gradients).all():
            return ProxyValue(math.nan, "lga: non-finite gradients (training diverged?)", info)
        value, reason = label_gradient_alignment(gradients @ gradients.T, batch.targets)
        return ProxyValue(value, f"lga: {reason}" if reason else None, info)
