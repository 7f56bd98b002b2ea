"""scikit-learn's handwritten digits (1,797 real 8x8 scans from UCI, shipped inside the package) as tf.data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

NUM_CLASSES = 10


def digits_arrays(
    image_size: int = 32, channels: int = 1, *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """`((x_train, y_train), (x_val, y_val), num_classes)`: float32 images in [0, 1] resized bilinearly to
    `image_size` and repeated to `channels`, int32 labels. The split is stratified and fixed by `seed`, so
    every model is measured on the same held-out images."""
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8 (the digits are 8x8 scans); received {image_size!r}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; received {channels!r}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); received {validation_fraction!r}.")
    digits = _sklearn_digits()
    images = (digits.images.astype("float32") / 16.0)[..., None]
    x_train, x_val, y_train, y_val = train_test_split(
        images, digits.target, test_size=validation_fraction, stratify=digits.target, random_state=seed
    )

    def prepare(x: np.ndarray) -> np.ndarray:
        x = tf.image.resize(x, (image_size, image_size), method="bilinear").numpy()
        return np.repeat(x, channels, axis=-1) if channels > 1 else x

    return (prepare(x_train), y_train.astype("int32")), (prepare(x_val), y_val.astype("int32")), NUM_CLASSES


def load_digits(
    image_size: int = 32,
    channels: int = 1,
    *,
    batch_size: int = 64,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """`(train, validation, num_classes)` of `digits_arrays` as batched, prefetching datasets (train shuffled)."""
    (x_train, y_train), (x_val, y_val), classes = digits_arrays(
        image_size, channels, validation_fraction=validation_fraction, seed=seed
    )
    train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).cache()
    train = train.shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
    val = tf.data.Dataset.from_tensor_slices((x_val, y_val)).cache()
    return (
        train.batch(batch_size).prefetch(tf.data.AUTOTUNE),
        val.batch(batch_size).prefetch(tf.data.AUTOTUNE),
        classes,
    )
