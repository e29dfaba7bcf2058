"""FlexiBERT-style heterogeneous transformer encoders (Tuli et al. 2023; space of Serianni & Kalita 2023)."""

from automl_plugins.architectures.flexibert.model import FlexiBERTEncoder
from automl_plugins.architectures.flexibert.space import LAYER_OPERATIONS, FlexiBERTArchitecture, FlexiBERTDimension
from automl_plugins.architectures.flexibert.spec import EncoderSpec, LayerSpec, from_record, parse_encoder

__all__ = [
    "LAYER_OPERATIONS",
    "EncoderSpec",
    "FlexiBERTArchitecture",
    "FlexiBERTDimension",
    "FlexiBERTEncoder",
    "LayerSpec",
    "from_record",
    "parse_encoder",
]
