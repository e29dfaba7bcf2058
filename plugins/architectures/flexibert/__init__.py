"""FlexiBERT-style heterogeneous transformer encoders (Tuli et al. 2023; space of Serianni & Kalita 2023)."""

from automl_plugins.architectures.flexibert.spec import EncoderSpec, LayerSpec, from_record, parse_encoder

__all__ = ["EncoderSpec", "LayerSpec", "from_record", "parse_encoder"]
