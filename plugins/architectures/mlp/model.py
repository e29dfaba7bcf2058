"""The MLP network: flatten, hidden ``Linear → normalization → activation`` layers, a linear classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class VectorNorm(nn.Module):
    """A ``norm_layer`` module made for token sequences (``B×L×C``) applied to ``B×C`` vectors as length 1."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.unsqueeze(1)).squeeze(1)


class MLPNetwork(nn.Module):
    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        num_classes: int,
        activation: str = "relu",
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in widths:
            layers.append(nn.Linear(width, hidden))
            if norm_layer is not None:
                layers.append(VectorNorm(norm_layer(hidden, layout="nlc")))
            layers.append(ACTIVATION_MODULES[activation]())
            width = hidden
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
