"""Stochastic depth (Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016, Eq. 2-5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import keras
from keras import ops

Schedule = Literal["linear", "uniform"]


def survival_probabilities(L: int, p_L: float, schedule: Schedule = "linear") -> list[float]:
    """p_l for residual blocks l = 1..L: linear decay p_l = 1 - (l / L)(1 - p_L) (Eq. 4), or uniform p_l = p_L."""
    if not 0.0 < p_L <= 1.0:
        raise ValueError(f"p_L must be in (0, 1]; received p_L={p_L}.")
    if schedule == "linear":
        return [1.0 - (l / L) * (1.0 - p_L) for l in range(1, L + 1)]
    if schedule == "uniform":
        return [float(p_L)] * L
    raise ValueError(f"Unknown survival schedule {schedule!r}; allowed values are ('linear', 'uniform').")


@keras.saving.register_keras_serializable(package="keras_cnn")
class StochasticDepth(keras.layers.Layer):
    """Residual join with a gated branch: called on `[x, shortcut]`, returns `shortcut + b * branch(x)`.

    Training: one Bernoulli(p_l) draw b per block per mini-batch, shared by every sample. A closed gate returns
    the shortcut and does not run the branch at all (no forward or backward pass, no BN statistics update),
    as in the reference Torch code. Inference: every gate is open and the branch is scaled by p_l (Eq. 5);
    there is no 1/p scaling during training, unlike per-sample "DropPath".

    Args:
        branch: the residual function f_l, a layer or model mapping x to a tensor shaped like the shortcut.
        survival_probability: p_l in (0, 1].
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(
        self, branch: keras.layers.Layer, survival_probability: float, seed: int | None = None, **kwargs
    ):  # pragma: no mutate block
        super().__init__(**kwargs)
        if not 0.0 < survival_probability <= 1.0:
            raise ValueError(f"survival_probability must be in (0, 1]; received {survival_probability}.")
        self.branch = branch
        self.survival_probability = float(survival_probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if not self.branch.built:
            self.branch.build(input_shape[0])
        self.built = True

    def call(self, inputs, training=None):
        x, shortcut = inputs
        if not training:
            return shortcut + self.survival_probability * self.branch(x, training=False)
        gate = keras.random.uniform((), seed=self.seed_generator) < self.survival_probability
        return ops.cond(gate, lambda: shortcut + self.branch(x, training=True), lambda: shortcut)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {
            **super().get_config(),
            "branch": keras.saving.serialize_keras_object(self.branch),
            "survival_probability": self.survival_probability,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        branch = keras.saving.deserialize_keras_object(config.pop("branch"))
        return cls(branch, **config)


def residual_join(x, shortcut, branch_fn: Callable, *, block: str, join: str = "add", survival_probability=1.0):
    """`shortcut + branch_fn(x)` as an `Add` layer named `{block}_{join}`.

    With p_l < 1 the join is a `StochasticDepth` layer of that name, owning the branch as a sub-model
    `{block}_branch` whose inner layers keep their usual names.
    """
    if survival_probability >= 1.0:
        return keras.layers.Add(name=f"{block}_{join}")([shortcut, branch_fn(x)])
    branch_input = keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype)
    branch = keras.Model(branch_input, branch_fn(branch_input), name=f"{block}_branch")
    return StochasticDepth(branch, survival_probability, name=f"{block}_{join}")([x, shortcut])


def block_survival(depths: Sequence[int], p_L: float, schedule: Schedule) -> list[list[float]]:
    """Survival probabilities per stage and block, decaying over all blocks of the network in order."""
    flat = iter(survival_probabilities(sum(depths), p_L, schedule))
    return [[next(flat) for _ in range(d)] for d in depths]
