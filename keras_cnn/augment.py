"""Augmentation and multi-crop evaluation as the classic papers ran them, on float images in [0, 1].

* `PCALighting`: AlexNet's lighting noise (Krizhevsky, Sutskever & Hinton 2012, Sec. 4.1), constants of
  fb.resnet.torch (reference-figures.md §5). A Keras layer: use it in a model or in a tf.data map.
* `pad_crop_flip`: the CIFAR augmentation of He et al. 2016 (pad 4, random 32x32 crop, horizontal flip).
* `ten_crop` / `predict_ten_crop`: the AlexNet 10-crop test (4 corners + centre and their mirrors,
  softmax averaged).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

#: Eigenvalues and eigenvectors (column j = eigenvector j) of ImageNet's RGB pixel covariance, [0, 1] scale.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


@keras.saving.register_keras_serializable(package="keras_cnn")
class PCALighting(keras.layers.Layer):
    """Adds eigvec @ (alpha * eigval) to every pixel of an image, alpha ~ N(0, alphastd^2) drawn once per
    image (3 values, shared by all its pixels); the identity at inference. `value_range` scales the offset
    for images not in [0, 1] (255 for uint8-scaled floats). `from_images` takes the eigen-decomposition of
    your own data instead of ImageNet's."""

    def __init__(self, alphastd: float = 0.1, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC,
                 value_range: float = 1.0, seed: int | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        eigval, eigvec = np.asarray(eigval, "float32"), np.asarray(eigvec, "float32")
        if eigval.shape != (3,) or eigvec.shape != (3, 3):
            raise ValueError(f"eigval must have 3 values and eigvec 3x3; received {eigval.shape}, {eigvec.shape}.")
        if alphastd < 0:
            raise ValueError(f"alphastd must be >= 0; received {alphastd!r}.")
        self.alphastd, self.value_range, self.seed = float(alphastd), float(value_range), seed
        self.eigval, self.eigvec = eigval, eigvec
        self.seed_generator = keras.random.SeedGenerator(seed)

    @classmethod
    def from_images(cls, images, alphastd: float = 0.1, **kwargs) -> PCALighting:
        """The decomposition of the RGB covariance of `images` (N x H x W x 3, any scale)."""
        pixels = np.asarray(images, "float64")
        if pixels.ndim < 2 or pixels.shape[-1] != 3 or pixels.size < 6:
            raise ValueError(f"from_images needs RGB images (..., 3), two pixels or more; received {pixels.shape}.")
        pixels = pixels.reshape(-1, 3)
        eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False))
        order = np.argsort(eigval)[::-1]
        return cls(alphastd, eigval[order], eigvec[:, order], **kwargs)

    def offsets(self, batch: int):
        """One RGB offset per image: (batch, 3)."""
        alpha = keras.random.normal((batch, 3), stddev=self.alphastd, seed=self.seed_generator)
        return ops.matmul(alpha * self.eigval, ops.transpose(self.eigvec)) * self.value_range

    def call(self, images, training=None):
        if not training or self.alphastd == 0:
            return images
        unbatched = len(images.shape) == 3
        batch = images if not unbatched else images[None]
        rgb = ops.cast(self.offsets(ops.shape(batch)[0]), batch.dtype)
        out = batch + rgb[:, None, None, :]
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alphastd": self.alphastd, "eigval": self.eigval.tolist(),
                "eigvec": self.eigvec.tolist(), "value_range": self.value_range, "seed": self.seed}  # fmt: skip


def pad_crop_flip(image, pad: int = 4, *, flip: bool = True, seed: int | None = None):
    """One image (H, W, C): zero-pad by `pad`, crop a random H x W window, mirror with probability 1/2."""
    height, width, channels = image.shape
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.random_crop(image, (height, width, channels), seed=seed)
    return tf.image.random_flip_left_right(image, seed=seed) if flip else image


def ten_crop(images, size: int):
    """(N, H, W, C) -> (10, N, size, size, C): the four corners and the centre, then the same five mirrored."""
    images = ops.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    if height < size or width < size:
        raise ValueError(f"ten_crop needs images of at least {size}x{size}; received {height}x{width}.")
    top, left = (height - size) // 2, (width - size) // 2
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), (top, left)]
    crops = [images[:, y : y + size, x : x + size, :] for y, x in corners]
    return ops.stack(crops + [ops.flip(c, axis=2) for c in crops])


def predict_ten_crop(
    model: keras.Model, images, size: int | None = None, *, from_logits: bool = False, batch_size: int = 32
) -> np.ndarray:
    """Class probabilities averaged over the 10 crops of each image (Krizhevsky et al. 2012, Sec. 4.1).

    `size` defaults to the model's input size; `from_logits=True` for a model without a softmax head.
    """
    crops = ten_crop(images, size or model.input_shape[1])
    probs = []
    for i in range(10):
        out = model.predict(crops[i], batch_size=batch_size, verbose=0)
        probs.append(ops.convert_to_numpy(ops.softmax(out)) if from_logits else out)
    return np.mean(probs, axis=0)
