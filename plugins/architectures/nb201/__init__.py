"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020)."""

from automl_plugins.architectures.nb201.space import EDGES, OPERATIONS, NB201Architecture, NB201Dimension, parse_arch

__all__ = ["EDGES", "OPERATIONS", "NB201Architecture", "NB201Dimension", "parse_arch"]
