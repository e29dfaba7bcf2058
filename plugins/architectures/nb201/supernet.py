"""A weight-sharing NAS-Bench-201 supernet with elastic weight quantization (one-shot NAS, EQ-Net style).

Every edge of every cell holds all of the space's operations at once; a *path* picks one operation per
edge (the same cell in every position, as NAS-Bench-201 repeats one cell). Every Conv and Linear layer
holds one floating-point weight shared by all bit-widths, granularities and schemes: the active
quantization of a layer fake-quantizes that shared weight on the fly with the project's own weight
quantizer (``WeightFakeQuant``: the range of the current weights, per tensor or per output channel,
symmetric or affine), so each bit-width has its own quantizer over one shared weight, as in EQ-Net's
elastic quantization space. The quantizers keep no state, so a sub-network built alone
(``candidate.build_model()``) with the supernet's weights copied in (``inherit``) computes exactly the
supernet's forward on its path.

Module names mirror ``NB201Network``: the supernet's ``cells.<i>.edges.<e>.<op>.<rest>`` is the
sub-network's ``cells.<i>.ops.<e>.<rest>``; every other name (stem, reduction blocks, classifier) is
the same in both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from automl_plugins.architectures.nb201.model import ResidualReduction, batch_norm, make_operation

# (bits, granularity, scheme) of one layer; 32 bits is floating point.
LayerQuant = tuple[int, str, str]
FLOAT: LayerQuant = (32, "per_tensor", "symmetric")
_CELL_OP = re.compile(r"^cells\.(\d+)\.ops\.(\d+)\.(.*)$")


class ElasticQuant(nn.Module):
    """Fake-quantizes a shared weight at the active (bits, granularity, scheme); one quantizer per setting."""

    def __init__(self) -> None:
        super().__init__()
        self.active: LayerQuant = FLOAT
        self._quantizers: dict[LayerQuant, nn.Module] = {}

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        bits, granularity, scheme = self.active
        if bits >= 32:
            return weight
        quantizer = self._quantizers.get(self.active)
        if quantizer is None:
            from automl_plugins.recipe.quantization import WeightFakeQuant

            quantizer = WeightFakeQuant(bits, granularity, scheme).to(weight.device)
            self._quantizers[self.active] = quantizer
        return quantizer(weight)


class ElasticConv2d(nn.Conv2d):
    """A Conv2d whose forward uses its weight fake-quantized at the active setting."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.elastic = ElasticQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.elastic(self.weight), self.bias)


class ElasticLinear(nn.Linear):
    """A Linear layer whose forward uses its weight fake-quantized at the active setting."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.elastic = ElasticQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.elastic(self.weight), self.bias)


def _make_elastic(module: nn.Module) -> None:
    """Replace every Conv2d and Linear below ``module`` by its elastic form (same shapes, same weights)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and not isinstance(child, ElasticConv2d):
            new = ElasticConv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                child.padding,
                bias=child.bias is not None,
            )
        elif isinstance(child, nn.Linear) and not isinstance(child, ElasticLinear):
            new = ElasticLinear(child.in_features, child.out_features, bias=child.bias is not None)
        else:
            _make_elastic(child)
            continue
        new.load_state_dict(child.state_dict())
        setattr(module, name, new)


class SuperCell(nn.Module):
    """A NAS-Bench-201 cell whose every edge holds all operations; ``forward`` follows one path."""

    def __init__(self, operations: Sequence[str], edges: Sequence[tuple[int, int]], channels: int) -> None:
        super().__init__()
        self.edges = list(edges)
        self.candidates = nn.ModuleList(
            nn.ModuleDict({op: make_operation(op, channels, batch_norm) for op in operations}) for _ in self.edges
        )

    def forward(self, x: torch.Tensor, path: Sequence[str]) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            total = None
            for (source, dest), ops, op in zip(self.edges, self.candidates, path):
                if dest == target:
                    out = ops[op](nodes[source])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[3]


class NB201Supernet(nn.Module):
    """The NAS-Bench-201 skeleton (see ``NB201Network``) with ``SuperCell``s and elastic weight layers.

    ``set_path(ops, quant)`` selects the sub-network: ``ops`` one operation per edge, ``quant`` maps the
    sub-network's layer names (as ``weight_layers`` of ``NB201Network`` names them) to their
    (bits, granularity, scheme); a layer it leaves out is floating point.
    """

    def __init__(
        self,
        operations: Sequence[str],
        edges: Sequence[tuple[int, int]],
        *,
        channels: int,
        cells_per_stage: int,
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.operations = list(operations)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), batch_norm(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, c * 2, batch_norm))
                c *= 2
            layers += [SuperCell(operations, edges, c) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(batch_norm(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        _make_elastic(self)
        self.path: tuple[str, ...] = tuple(operations[:1]) * len(edges)

    def set_path(self, ops: Sequence[str], quant: Mapping[str, LayerQuant] | None = None) -> None:
        unknown = [op for op in ops if op not in self.operations]
        if unknown:
            raise ValueError(f"operation {unknown[0]!r} is not in this supernet ({', '.join(self.operations)})")
        self.path = tuple(ops)
        quant = quant or {}
        for name, module in self.elastic_layers():
            module.elastic.active = FLOAT
        layers = dict(self.named_modules())
        for sub_name, setting in quant.items():
            layer = layers.get(supernet_name(sub_name, self.path))
            if layer is None or not hasattr(layer, "elastic"):
                raise ValueError(f"the supernet has no weight layer for the sub-network's {sub_name!r}")
            layer.elastic.active = (int(setting[0]), str(setting[1]), str(setting[2]))

    def elastic_layers(self) -> list[tuple[str, nn.Module]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, (ElasticConv2d, ElasticLinear))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, self.path) if isinstance(layer, SuperCell) else layer(x)
        return self.classifier(self.pool(self.lastact(x)).flatten(1))


def supernet_name(sub_name: str, path: Sequence[str]) -> str:
    """The supernet's name for the sub-network's module or tensor ``sub_name`` on ``path``."""
    found = _CELL_OP.match(sub_name)
    if found is None:
        return sub_name
    cell, edge, rest = found.groups()
    return f"cells.{cell}.candidates.{edge}.{path[int(edge)]}.{rest}"


@torch.no_grad()
def inherit(model: nn.Module, supernet: NB201Supernet, path: Sequence[str]) -> None:
    """Copy the supernet's weights and BatchNorm statistics for ``path`` into ``model`` (an ``NB201Network``).

    ``model`` may carry the project's weight pipeline (``weight_orig`` behind pruning masks and fake
    quantizers): its ``weight_orig`` takes the shared weight; quantizer and mask state stays its own.
    """
    source = supernet.state_dict()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if "automl_" in name or name.endswith("weight_mask"):
            continue
        key = supernet_name(name, path)
        if key.endswith(".weight_orig"):
            key = key[: -len("_orig")]
        if key not in source:
            raise ValueError(f"the supernet holds no tensor for the sub-network's {name!r} ({key!r})")
        tensor.copy_(source[key])
