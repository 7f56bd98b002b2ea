"""Training: recipes as optimizers and schedules, tf.distribute strategies, and the `train` loop."""

from keras_cnn.optimizers import SGD, RMSprop, learning_rate, optimizer, steps_per_epoch
from keras_cnn.training.config import PRECISIONS, TrainConfig, recipe_augment, resolve_precision, resolve_recipe
from keras_cnn.training.distribute import STRATEGIES, is_chief, make_strategy
from keras_cnn.training.history import plot_history
from keras_cnn.training.run import compile_model, label_every_output, output_heads, train

__all__ = [
    "PRECISIONS",
    "SGD",
    "STRATEGIES",
    "RMSprop",
    "TrainConfig",
    "compile_model",
    "is_chief",
    "label_every_output",
    "learning_rate",
    "make_strategy",
    "optimizer",
    "output_heads",
    "plot_history",
    "recipe_augment",
    "resolve_precision",
    "resolve_recipe",
    "steps_per_epoch",
    "train",
]
