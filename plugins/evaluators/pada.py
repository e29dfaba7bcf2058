"""PA&DA (Lu et al., CVPR 2023): sample supernet paths and training data by gradient importance.

PA&DA lowers the variance of the supernet's gradient by drawing paths and examples with probability
proportional to their gradient norms, mixed with uniform sampling by a weight ``tau`` that grows over
training. The details follow the authors' public code (ShunLu91/PA-DA, ``nasbench201/train_panda_201.py``)
where the paper leaves them open:

- one operation distribution shared by all edges, updated once per epoch; an operation's importance is
  the norm of its convolution weights' gradients summed over the cells where the sampled path uses it,
  divided by how many edges of the path use it, and folded into a running value by
  ``value = (value + new) / 2`` after every step; operations without weights keep importance 0, so
  only the uniform share samples them (``operation_probabilities``);
- an example's importance is the norm of the loss gradient with respect to its logits,
  ``‖softmax(z) − onehot(y)‖₂`` for cross-entropy (``example_gradient_norms``), averaged over its
  occurrences in the epoch; examples not drawn that epoch get 0;
- both mixes use ``tau = (epoch − 1) / epochs`` (0 in the first epoch: uniform), and the next epoch's
  training order draws as many examples as the training set holds, with replacement, from the mixed
  distribution (``example_probabilities``); the loss is the plain mean (the code does not reweight by the
  inverse probability).

The supernet's quantization choices stay uniformly sampled: PA&DA samples paths of operations only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def example_gradient_norms(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per example, the norm of d(cross-entropy)/d(logits): ‖softmax(z) − onehot(y)‖₂."""
    probs = F.softmax(logits.detach().float(), dim=1)
    return torch.linalg.vector_norm(probs - F.one_hot(targets, probs.shape[1]).float(), dim=1)


def operation_probabilities(importance: Sequence[float], tau: float) -> list[float]:
    """``tau`` × importance / Σ importance + (1 − ``tau``) × uniform (uniform when every importance is 0)."""
    n = len(importance)
    total = float(sum(importance))
    if total <= 0.0:
        return [1.0 / n] * n
    return [tau * float(v) / total + (1.0 - tau) / n for v in importance]


def example_probabilities(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau`` × score / Σ score + (1 − ``tau``) / N over the N training examples."""
    n = len(scores)
    uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
    total = float(scores.sum())
    if total <= 0.0:
        return uniform
    return tau * scores.double() / total + (1.0 - tau) * uniform


def fold_operation_importance(
    running: list[float], grad_norms: dict[str, float], counts: dict[str, int], operations: Sequence[str]
) -> list[float]:
    """The running importance after one step: ``(old + Σ norms / uses) / 2`` for each operation the step used."""
    out = list(running)
    for i, op in enumerate(operations):
        if grad_norms.get(op, 0.0) != 0.0:
            out[i] = (out[i] + grad_norms[op] / counts[op]) / 2.0
    return out
