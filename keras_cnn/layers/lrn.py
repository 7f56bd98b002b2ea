"""Local response normalization across channels (Krizhevsky et al., NIPS 2012, Sec. 3.3)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_cnn")
class LocalResponseNormalization(keras.layers.Layer):
    """b = a / (k + alpha * sum_{n neighbouring maps} a^2) ** beta, with the paper's k=2, n=5, alpha=1e-4, beta=0.75.

    `alpha` multiplies the plain sum as in the paper's equation (Caffe divides it by n first).
    """

    def __init__(
        self, n: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs
    ):  # pragma: no mutate block
        super().__init__(**kwargs)
        if n < 1 or n % 2 == 0:
            raise ValueError(f"LocalResponseNormalization needs an odd window n >= 1; received n={n}.")
        self.n, self.k, self.alpha, self.beta = int(n), float(k), float(alpha), float(beta)

    def call(self, x):
        r = self.n // 2
        channels = x.shape[-1]
        squared = ops.pad(ops.square(x), [[0, 0], [0, 0], [0, 0], [r, r]])
        window = sum(squared[..., i : i + channels] for i in range(self.n))
        return x / ops.power(self.k + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "n": self.n, "k": self.k, "alpha": self.alpha, "beta": self.beta}
