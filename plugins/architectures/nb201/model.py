"""The NAS-Bench-201 macro skeleton: stem, three stages of cells joined by residual reduction blocks.

Stage s (s = 0, 1, 2) has ``cells_per_stage`` cells with ``channels × 2^s`` channels; between stages a
ResNet basic block halves the resolution and doubles the channels. Global average pooling and a linear
classifier end the network. Every normalization layer comes from ``norm_layer`` (BatchNorm by default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

NormLayer = Callable[..., nn.Module]


def batch_norm(num_features: int, layout: str = "nchw") -> nn.Module:
    return nn.BatchNorm2d(num_features) if layout == "nchw" else nn.LayerNorm(num_features)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, norm: NormLayer) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            norm(c_out, layout="nchw"),
        )


class Zero(nn.Module):
    """The ``none`` operation: contributes nothing (zeros of the input's shape)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_operation(name: str, channels: int, norm: NormLayer) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0, norm)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1, norm)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 operation {name!r}")


class Cell(nn.Module):
    """Four nodes; node j sums the operations on every edge (i → j), i < j. Node 3 is the output."""

    def __init__(self, ops: Sequence[str], edges: Sequence[tuple[int, int]], channels: int, norm: NormLayer) -> None:
        super().__init__()
        self.edges = list(edges)
        self.ops = nn.ModuleList(make_operation(op, channels, norm) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            total = None
            for (source, dest), op in zip(self.edges, self.ops):
                if dest == target:
                    out = op(nodes[source])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[3]


class ResidualReduction(nn.Module):
    """A ResNet basic block with stride 2: two ReLU-conv-norm layers plus a pooled 1×1 shortcut."""

    def __init__(self, c_in: int, c_out: int, norm: NormLayer) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, norm)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, norm)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(
        self,
        ops: Sequence[str],
        edges: Sequence[tuple[int, int]],
        *,
        channels: int,
        cells_per_stage: int,
        in_channels: int,
        num_classes: int,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm = norm_layer or batch_norm
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), norm(channels, layout="nchw")
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, c * 2, norm))
                c *= 2
            layers += [Cell(ops, edges, c, norm) for _ in range(cells_per_stage)]
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(norm(c, layout="nchw"), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map before global pooling."""
        return self.lastact(self.cells(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
