"""EQ-Net's supernet losses (Xu et al., ICCV 2023): weight-distribution regularisation and progressive guidance.

- **WDR** (weight-distribution regularisation) pulls every shared weight tensor's distribution towards
  one that quantizes well at every bit-width: ``λ_k · mean_l (kurt(W_l) − 1.8)² + λ_s · mean_l skew(W_l)²``
  over the weight layers ``l``. As in the authors' code (xuke225/EQ-Net, ``runner/criterion.py``): the
  first weight layer is left out, the standard deviation is the unbiased one (``torch.std``), the moments
  are plain means of the standardised weights, the targets are 1.8 (kurtosis) and 0 (skewness), and the
  default rates of their configuration are λ_k = 0.015, λ_s = 1.0.
- **GPG** (group progressive guidance): each step trains a chain of sub-networks on one minibatch, the
  largest bit-widths first (cross-entropy with the labels), then random settings, the smallest last;
  each after the first learns from the previous one's detached logits with
  ``α · KL(softmax(z_prev) ‖ softmax(z)) + (1 − α) · CE(z, y)``, α = 0.5, temperature 1 (the code's
  ``QuantSuperNetTrainer.train_epoch`` with ``KLLossSoft``; ``num_subnet = 3`` in its configuration).
  Gradients of the whole chain accumulate before one optimizer step. Here the chain varies the
  quantization only, on the step's sampled NB201 path: EQ-Net's supernet is a fixed architecture, so its
  "largest" and "smallest" sub-networks are bit-width extremes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

KURTOSIS_TARGET = 1.8
SKEWNESS_TARGET = 0.0


def _standardised(weight: torch.Tensor) -> torch.Tensor:
    return (weight - weight.mean()) / weight.std()


def kurtosis_loss(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """mean over ``weights[1:]`` of (E[z⁴] − 1.8)², z the standardised weights (the first layer left out)."""
    terms = [(_standardised(w).pow(4).mean() - KURTOSIS_TARGET) ** 2 for w in weights[1:]]
    return torch.stack(terms).mean()


def skewness_loss(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """mean over ``weights[1:]`` of (E[z³] − 0)², z the standardised weights (the first layer left out)."""
    terms = [(_standardised(w).pow(3).mean() - SKEWNESS_TARGET) ** 2 for w in weights[1:]]
    return torch.stack(terms).mean()


def progressive_guidance_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.5
) -> torch.Tensor:
    """α · KL(softmax(teacher) ‖ softmax(logits)) (batch mean) + (1 − α) · cross-entropy with the labels."""
    kl = F.kl_div(F.log_softmax(logits, dim=1), F.softmax(teacher_logits.detach(), dim=1), reduction="batchmean")
    return alpha * kl + (1.0 - alpha) * F.cross_entropy(logits, targets)
