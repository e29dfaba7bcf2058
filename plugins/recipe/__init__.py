"""Training-recipe and compression dimensions: normalization, loss, pruning masks, bit-widths, data pruning,
LayerNorm removal, dynamic (per-input) channel pruning."""

from automl import hookimpl
from automl_plugins.recipe.data import DataPruningDimension
from automl_plugins.recipe.ftwt import DynamicPruningDimension
from automl_plugins.recipe.ln_removal import LayerNormRemovalDimension
from automl_plugins.recipe.losses import LossDimension
from automl_plugins.recipe.normalization import NormalizationDimension
from automl_plugins.recipe.pruning import PruningDimension
from automl_plugins.recipe.quantization import QuantizationDimension

__all__ = [
    "DataPruningDimension",
    "DynamicPruningDimension",
    "LayerNormRemovalDimension",
    "LossDimension",
    "NormalizationDimension",
    "PruningDimension",
    "QuantizationDimension",
]


@hookimpl
def register_dimensions(register):
    register(NormalizationDimension)
    register(LossDimension)
    register(PruningDimension)
    register(QuantizationDimension)
    register(DataPruningDimension)
    register(LayerNormRemovalDimension)
    register(DynamicPruningDimension)
