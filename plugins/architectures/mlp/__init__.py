"""Multilayer perceptrons for vectors (tabular tasks) and flattened images."""

from automl_plugins.architectures.mlp.space import ACTIVATIONS, MLPArchitecture, MLPDimension, parse_arch

__all__ = ["ACTIVATIONS", "MLPArchitecture", "MLPDimension", "parse_arch"]
