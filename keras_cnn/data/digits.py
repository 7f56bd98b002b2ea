"""The embedded data, shipped inside scikit-learn: its handwritten digits (1,797 real 8x8 scans from UCI) and,
where colour is needed, patches of its two sample photos."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits as _sklearn_digits
from sklearn.model_selection import train_test_split

NUM_CLASSES = 10


def _check_split(image_size, validation_fraction, why: str = "") -> None:
    """The arguments every embedded set takes: an output size of 8 or more and a held-out fraction in (0, 1)."""
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8{why}; received {image_size!r}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); received {validation_fraction!r}.")


def digits_arrays(
    image_size: int = 32, channels: int = 1, *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """`((x_train, y_train), (x_val, y_val), num_classes)`: float32 images in [0, 1] resized bilinearly to
    `image_size` and repeated to `channels`, int32 labels. The split is stratified and fixed by `seed`, so
    every model is measured on the same held-out images."""
    _check_split(image_size, validation_fraction, " (the digits are 8x8 scans)")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; received {channels!r}.")
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


PHOTO_PATCH, PHOTO_STRIDE = 64, 32


def photo_arrays(
    image_size: int = 32, *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """The embedded colour data: scikit-learn's two sample photos (china.jpg, flower.jpg, 427x640 RGB) cut into
    64x64 patches at stride 32 (228 per photo), labelled by photo and resized to `image_size`. As
    `digits_arrays`: float32 in [0, 1], int32 labels, a stratified split fixed by `seed`."""
    from sklearn.datasets import load_sample_images

    _check_split(image_size, validation_fraction)
    patches, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        height, width, _ = photo.shape
        for top in range(0, height - PHOTO_PATCH + 1, PHOTO_STRIDE):
            for left in range(0, width - PHOTO_PATCH + 1, PHOTO_STRIDE):
                patches.append(photo[top : top + PHOTO_PATCH, left : left + PHOTO_PATCH])
                labels.append(label)
    images = tf.image.resize(np.stack(patches).astype("float32") / 255.0, (image_size, image_size)).numpy()
    x_train, x_val, y_train, y_val = train_test_split(
        images, np.asarray(labels, "int32"), test_size=validation_fraction, stratify=labels, random_state=seed
    )
    return (x_train, y_train), (x_val, y_val), 2
