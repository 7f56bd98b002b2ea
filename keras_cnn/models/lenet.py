"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to Document Recognition",
Proc. IEEE 1998, Fig. 2 and Table I)."""

from __future__ import annotations

from typing import Literal

import keras
import numpy as np
from keras import ops

from keras_cnn import applications
from keras_cnn.applications import Contract
from keras_cnn.layers.conv import Conv2D
from keras_cnn.registry import Card, Paper, register_all

PAPER = Paper(
    title="Gradient-Based Learning Applied to Document Recognition",
    authors="LeCun, Bottou, Bengio, Haffner",
    venue="Proceedings of the IEEE",
    year=1998,
)

#: Table I: the S2 maps feeding each of the 16 C3 maps (1,516 trainable parameters instead of 2,416).
C3_TABLE = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (4, 5, 0),
    (5, 0, 1),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (3, 4, 5, 0),
    (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def fan_in_uniform(fan_in: int) -> keras.initializers.Initializer:
    """The paper's initialization: U(-2.4 / F_i, 2.4 / F_i) with F_i the unit's fan-in (Sec. III-D)."""
    return keras.initializers.RandomUniform(-2.4 / fan_in, 2.4 / fan_in)


@keras.saving.register_keras_serializable(package="keras_cnn")
def scaled_tanh(x):
    """The paper's squashing function f(a) = A tanh(S a) with A = 1.7159 and S = 2/3 (Appendix A)."""
    return 1.7159 * ops.tanh(x * (2.0 / 3.0))


@keras.saving.register_keras_serializable(package="keras_cnn")
class ConnectionTableConv2D(keras.layers.Layer):
    """A valid convolution in which output map j sees only the input maps `table[j]` (layer C3)."""

    def __init__(self, table, kernel_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.table = tuple(tuple(int(i) for i in row) for row in table)
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        k, channels = self.kernel_size, input_shape[-1]
        if (highest := max(map(max, self.table))) >= channels:
            raise ValueError(f"The connection table reads input map {highest}; the input has maps 0 to {channels - 1}.")
        self.kernels = [
            self.add_weight(name=f"kernel_{j}", shape=(k, k, len(row), 1), initializer=fan_in_uniform(k * k * len(row)))
            for j, row in enumerate(self.table)
        ]
        self.bias = self.add_weight(name="bias", shape=(len(self.table),), initializer="zeros")
        # Where each entry of the dense (k, k, channels, maps) kernel sits in the concatenation of the flattened
        # per-map kernels; unconnected entries read the zero appended after them.
        size = sum(k * k * len(row) for row in self.table)
        self.index = np.full((k, k, channels, len(self.table)), size, dtype="int32")
        offset = 0
        for j, row in enumerate(self.table):
            self.index[:, :, list(row), j] = offset + np.arange(k * k * len(row)).reshape(k, k, len(row))
            offset += k * k * len(row)

    def call(self, x):
        """One dense convolution whose kernel is zero outside the table (16 small ones trained 7x slower)."""
        flat = ops.concatenate([ops.reshape(w, (-1,)) for w in self.kernels] + [ops.zeros((1,), self.compute_dtype)])
        return ops.conv(x, ops.take(flat, self.index)) + self.bias

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        shrink = self.kernel_size - 1
        return (n, None if h is None else h - shrink, None if w is None else w - shrink, len(self.table))

    def macs(self, input_shape, output_shape) -> int:
        _, h, w, _ = output_shape
        return h * w * self.kernel_size**2 * sum(len(row) for row in self.table)

    def get_config(self):
        return {**super().get_config(), "table": self.table, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="keras_cnn")
class Subsampling2D(keras.layers.Layer):
    """Layers S2/S4: the sum of each 2x2 window times a trainable coefficient plus a trainable bias, per map."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.coefficient = self.add_weight(name="coefficient", shape=(channels,), initializer=fan_in_uniform(4))
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, x):
        return 4.0 * ops.average_pool(x, 2, strides=2) * self.coefficient + self.bias

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h // 2, None if w is None else w // 2, c)


@keras.saving.register_keras_serializable(package="keras_cnn")
class EuclideanRBF(keras.layers.Layer):
    """The output layer: y_i = sum_j (x_j - w_ij)^2 with fixed (non-trainable) +-1 codes w_i (Sec. II-B).

    Returns -y_i, so the class with the smallest penalty has the largest logit. The paper drew the codes
    as 7x12 bitmaps of the characters; those bitmaps are not published, so the codes here are fixed
    pseudo-random +-1 vectors (seeded), which keeps the layer fixed and the distances comparable.
    """

    def __init__(self, units: int, seed: int = 1998, **kwargs):
        super().__init__(**kwargs)
        self.units, self.seed = int(units), int(seed)

    def build(self, input_shape):
        codes = np.random.default_rng(self.seed).choice([-1.0, 1.0], size=(input_shape[-1], self.units))
        self.centers = self.add_weight(
            name="centers", shape=codes.shape, initializer=keras.initializers.Constant(codes), trainable=False
        )

    def call(self, x):
        return -ops.sum(ops.square(ops.expand_dims(x, -1) - self.centers), axis=-2)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def macs(self, input_shape, output_shape) -> int:
        return int(np.prod(self.centers.shape))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_cnn")
class MAPCriterion(keras.losses.Loss):
    """The paper's training criterion (Sec. II-C, Eq. 9): E = y_D + log(e^-j + sum_i e^-y_i), on the logits -y
    of `LeNet5(classifier_activation=None)` and integer or one-hot labels.

    e^-j is a rubbish class that no label names: while every penalty y_i exceeds j the criterion only pulls the
    correct class's penalty down, instead of pushing all the others up as cross-entropy does. The paper does
    not give j. With j = 10 the quick recipe trains the paper variant on real MNIST to 99.06 % and 99.18 %
    (seeds 0 and 1; paper: 99.05 %), where cross-entropy, the same formula without e^-j, reached 98.69 %
    (docs/training.md); j = 5 and j = 20 gave the same within 0.05 points.
    """

    def __init__(self, j: float = 10.0, name: str = "map_criterion", **kwargs):
        super().__init__(name=name, **kwargs)
        if not np.isfinite(j) or j <= 0:
            raise ValueError(f"j must be a positive finite number; received {j!r}.")
        self.j = float(j)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        logits = ops.concatenate([logits, ops.full_like(logits[:, :1], -self.j)], axis=-1)
        if len(y_true.shape) == len(y_pred.shape):  # one-hot (mixed) labels: the rubbish class gets no mass
            y_true = ops.pad(ops.cast(y_true, "float32"), [(0, 0), (0, 1)])
            return keras.losses.categorical_crossentropy(y_true, logits, from_logits=True)
        return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)

    def get_config(self):
        return {**super().get_config(), "j": self.j}


def criterion(variant: str = "paper", **_) -> keras.losses.Loss | None:
    """The paper variant's own criterion (`MAPCriterion`); the modern variant trains on cross-entropy."""
    return MAPCriterion() if variant == "paper" else None


@applications.builder(classes=10, name="lenet5")
def LeNet5(
    contract: Contract,
    *,
    variant: Literal["paper", "modern"] = "paper",
) -> keras.Model:
    """LeNet-5 on 32x32 single-channel input (LeCun et al. 1998, Fig. 2).

    variant="paper": partial C3 connection table (Table I), trainable subsampling S2/S4, the scaled tanh,
    F6 = 84 units and the fixed Euclidean RBF output (trainable: exactly the paper's 60,000 at 10 classes;
    the 840 RBF codes are fixed), initialized U(-2.4/F_i, 2.4/F_i) as in the paper. Its RBF penalties are
    sums of 84 squares, so it wants small steps (SGD lr <= 2e-3; the paper's global eta was 5e-4 to 1e-5).
    variant="modern": full C3, plain 2x2 average pooling, tanh, and a trainable dense softmax output
    (61,706 trainable), the form most re-implementations use.
    """
    if variant not in ("paper", "modern"):
        raise ValueError(f"Unknown LeNet-5 variant={variant!r}; allowed values are ('paper', 'modern').")
    img_input = contract.input(default_size=32, min_size=32, channels=1, flatten_head=True)
    paper = variant == "paper"
    act = scaled_tanh if paper else "tanh"

    def subsample(x, label):
        if paper:
            return keras.layers.Activation(act, name=f"{label}_act")(Subsampling2D(name=label)(x))
        return keras.layers.AveragePooling2D(2, name=label)(x)

    def init(fan_in: int) -> dict:
        return {"kernel_initializer": fan_in_uniform(fan_in)} if paper else {}

    c1 = Conv2D(6, 5, activation=act, name="c1", **init(25 * img_input.shape[-1]))(img_input)
    x = subsample(c1, "s2")
    if paper:
        c3 = keras.layers.Activation(act, name="c3_act")(ConnectionTableConv2D(C3_TABLE, name="c3")(x))
    else:
        c3 = Conv2D(16, 5, activation=act, name="c3")(x)
    x = subsample(c3, "s4")
    c5 = Conv2D(120, 5, activation=act, name="c5", **init(25 * 16))(x)

    def top(x, classes, classifier_activation):
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(84, activation=act, name="f6", **init(x.shape[-1]))(x)
        head = applications.head_dtype()  # the classifier: float32 in mixed precision
        if paper:
            x = EuclideanRBF(classes, name="rbf", dtype=head)(x)
            return keras.layers.Activation(classifier_activation or "linear", name="predictions", dtype=head)(x)
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions", dtype=head)(x)

    return contract.finish(img_input, c5, stages=[c1, c3, c5], top=top)


CARDS = (
    Card(
        name="lenet5",
        builder=LeNet5,
        min_size=32,
        paper=PAPER,
        params=60_000,
        macs=0.33e6,
        reported={"mnist_test_error": 0.95, "mnist_test_error_distortions": 0.8},
        source="LeCun et al. 1998 [M]",
        recipe="lenet",
        input_size=(32, 32, 1),
        classes=10,
        notes="Paper variant: 60,000 trainable (C3 table, trainable S2/S4, fixed RBF); 'modern' variant: 61,706.",
        quick={"lr": 0.002},  # the RBF output diverges at the quick recipe's 0.05 (loss ~92 in epoch 1)
        criterion=criterion,
    ),
)
register_all(CARDS)
