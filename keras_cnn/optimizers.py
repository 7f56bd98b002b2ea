"""Recipes (keras_cnn.recipes) as Keras optimizers and learning-rate schedules.

Weight decay is applied as each paper applied it. Torch and Caffe SGD add `wd * w` to the gradient before the
momentum update (coupled L2, what `weight_decay_mode="l2"` records); Keras' own `weight_decay` argument is
decoupled (AdamW-style: `w -= lr * wd * w` after the update), which differs once momentum is involved. `SGD`
and `RMSprop` here take `l2` and do the coupled update.
"""

from __future__ import annotations

import itertools
import math

import keras
from keras import ops

from keras_cnn.recipes import Recipe


class _CoupledL2:
    """Adds `l2 * variable` to every gradient before the wrapped optimizer's update (Torch `weight_decay`)."""

    def __init__(self, *args, l2: float = 0.0, **kwargs):
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0; received {l2!r}.")
        super().__init__(*args, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


class _FusedMomentum:
    """Keras' momentum update, `m = momentum * m - lr * g; w += m` (Nesterov: `w += momentum * m - lr * g`), as one
    TensorFlow kernel per variable (`ResourceApplyKerasMomentum`, the same formula) instead of Keras' six ops: a
    ResNet-20 step at batch 16 took 25.0 against 27.8 ms with the same weights after it (docs/training.md).
    Other backends, no momentum and sparse gradients take Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() != "tensorflow" or not self.momentum:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        if isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        handle = lambda v: v.handle if isinstance(v, tf.Variable) else v.value.handle  # noqa: E731
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=handle(variable),
            accum=handle(self.momentums[self._get_variable_index(variable)]),
            lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype),
            use_nesterov=self.nesterov,
        )


@keras.saving.register_keras_serializable(package="keras_cnn")
class SGD(_CoupledL2, _FusedMomentum, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with coupled L2 weight decay `l2` (Torch/Caffe `weight_decay`), its momentum update
    one fused kernel per variable on TensorFlow."""


@keras.saving.register_keras_serializable(package="keras_cnn")
class RMSprop(_CoupledL2, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with coupled L2 weight decay `l2` (TF-slim's Inception/MobileNet recipes)."""


def learning_rate(recipe: Recipe, *, steps_per_epoch: int, epochs: int, lr: float | None = None):
    """The recipe's schedule over `epochs` of `steps_per_epoch` steps, peaking at `lr` (default the recipe's).

    "step": multiplied by `gamma` at each milestone (a fraction of the run, rounded to a step); a warm-up
    (`warmup_lr` for `warmup_steps`) comes first when the recipe has one. "cosine": cosine decay to zero.
    "plateau": a constant the `ReduceLROnPlateau` callback of `callbacks_for` lowers."""
    peak = recipe.lr if lr is None else lr
    total = steps_per_epoch * epochs
    if recipe.decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=max(total, 1))
    if recipe.decay == "plateau":
        return peak
    if recipe.decay != "step":
        raise ValueError(f"Unknown decay {recipe.decay!r}; known: 'step', 'cosine', 'plateau'.")
    boundaries = [round(m * total) for m in recipe.milestones]
    values = [peak * recipe.gamma**i for i in range(len(boundaries) + 1)]
    if recipe.warmup_lr is not None and recipe.warmup_steps:
        boundaries, values = [recipe.warmup_steps, *boundaries], [recipe.warmup_lr, *values]
    if not boundaries:
        return peak
    if boundaries[0] < 1 or any(b <= a for a, b in itertools.pairwise(boundaries)):
        raise ValueError(
            f"{epochs} epochs of {steps_per_epoch} steps are too short for this schedule (step boundaries "
            f"{boundaries} must increase): train for more epochs."
        )
    # Keras keeps values[i] while step <= boundaries[i]; the papers' rate changes at step b itself.
    return keras.optimizers.schedules.PiecewiseConstantDecay([b - 1 for b in boundaries], values)


def optimizer(recipe: Recipe, schedule, *, l2: float | None = None) -> keras.optimizers.Optimizer:
    """The recipe's optimizer on `schedule`, with its weight decay as coupled L2 (or `l2` when given)."""
    decay = recipe.weight_decay if recipe.weight_decay_mode == "l2" else 0.0
    decay = decay if l2 is None else l2
    if recipe.optimizer == "sgd":
        return SGD(schedule, momentum=recipe.momentum, nesterov=recipe.nesterov, l2=decay)
    if recipe.optimizer == "rmsprop":
        return RMSprop(schedule, rho=0.9, momentum=recipe.momentum, epsilon=1.0, l2=decay)
    raise ValueError(
        f"Optimizer {recipe.optimizer!r} of this recipe ({recipe.source}) has no Keras implementation; "
        "train with another recipe (e.g. recipe='quick')."
    )


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Steps of one full pass, the last batch partial."""
    return max(1, math.ceil(examples / batch_size))
