"""keras_cnn: classic CNNs for Keras 3, faithful to their papers, with one builder contract and a registry."""

from keras_cnn import early_exit, layers
from keras_cnn.applications import feature_extractor, without_aux
from keras_cnn.complexity import count_macs, exit_costs, trainable_params
from keras_cnn.models import *  # noqa: F403  (every builder is public API)
from keras_cnn.models import __all__ as _builders
from keras_cnn.registry import ModelInfo, Paper, create_model, list_models, model_info
from keras_cnn.training import distill

__version__ = "0.1.0"
__all__ = [
    *_builders,
    "ModelInfo",
    "Paper",
    "count_macs",
    "create_model",
    "distill",
    "early_exit",
    "exit_costs",
    "feature_extractor",
    "layers",
    "list_models",
    "model_info",
    "trainable_params",
    "without_aux",
]
