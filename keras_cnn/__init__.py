"""keras_cnn: classic CNNs for Keras 3, faithful to their papers, with one builder contract and a registry.

Models, layers, the registry and the optimizers (so a trained model's saved optimizer reloads after
`import keras_cnn`) load with the package; `training`, `distill` and `early_exit` (the training loop,
distillation and multi-exit inference, which pull in tf.data and the rest of TensorFlow) and `weights` (the
named weight sets, `preprocess_input`, `decode_predictions`, `publish`) on first use.
"""

import importlib

from keras_cnn import onednn  # noqa: F401  (first: TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, as Keras loads it)

# isort: split
from keras_cnn import layers, optimizers
from keras_cnn.applications import feature_extractor, without_aux
from keras_cnn.complexity import count_macs, exit_costs, trainable_params
from keras_cnn.fold import fold_batchnorm
from keras_cnn.models import *  # noqa: F403  (every builder is public API)
from keras_cnn.models import __all__ as _builders
from keras_cnn.registry import Card, Paper, create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = [
    *_builders,
    "Card",
    "Paper",
    "count_macs",
    "create_model",
    "distill",  # noqa: F405  (loaded on first use: __getattr__)
    "early_exit",  # noqa: F405  (loaded on first use: __getattr__)
    "exit_costs",
    "feature_extractor",
    "fold_batchnorm",
    "layers",
    "list_models",
    "model_info",
    "optimizers",
    "trainable_params",
    "without_aux",
]

_LAZY = {
    "distill": "keras_cnn.training.distill",
    "early_exit": "keras_cnn.early_exit",
    "training": "keras_cnn.training",
    "weights": "keras_cnn.weights",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_cnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
