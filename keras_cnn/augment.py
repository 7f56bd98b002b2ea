"""Augmentation and multi-crop evaluation as the classic papers ran them, on float images in [0, 1].

* `PCALighting`: AlexNet's lighting noise (Krizhevsky, Sutskever & Hinton 2012, Sec. 4.1), constants of
  fb.resnet.torch (github.com/facebookarchive/fb.resnet.torch, datasets/imagenet.lua). A Keras layer: use it
  in a model or in a tf.data map.
* `pad_crop_flip`: the CIFAR augmentation of He et al. 2016 (pad 4, random 32x32 crop, horizontal flip).
* `random_resized_crop`, `color_jitter`, `resize_center_crop`: the ImageNet training crop of Szegedy et al.
  2015 (8-100 % of the area, aspect 3/4-4/3) with fb.resnet.torch's colour jitter, and the usual evaluation
  crop (shorter side to size / 0.875, centre crop).
* `augmenter(name, ...)`: a per-image function `(image, seed) -> image` for the tf.data pipeline. Seeds are
  stateless pairs derived from (run seed, epoch, example), so a resumed run draws the same crops.
* `batch_augmenter(...)`: Keras core's RandAugment, MixUp and CutMix on batches.
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

    # Keras reads the signatures of __init__ and call, so mutation testing must not wrap them (docs/testing.md).
    def __init__(
        self,
        alphastd: float = 0.1,
        eigval=IMAGENET_EIGVAL,
        eigvec=IMAGENET_EIGVEC,
        value_range: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):  # pragma: no mutate block
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

    def offsets(self, batch: int, seed=None):
        """One RGB offset per image: (batch, 3). `seed`, a stateless pair, makes the draw a function of it."""
        if seed is None:
            alpha = keras.random.normal((batch, 3), stddev=self.alphastd, seed=self.seed_generator)
        else:
            alpha = tf.random.stateless_normal((batch, 3), seed, stddev=self.alphastd)
        return ops.matmul(alpha * self.eigval, ops.transpose(self.eigvec)) * self.value_range

    def call(self, images, training=None, seed=None):  # pragma: no mutate block
        if not training or self.alphastd == 0:
            return images
        unbatched = len(images.shape) == 3
        batch = images if not unbatched else images[None]
        rgb = ops.cast(self.offsets(ops.shape(batch)[0], seed), batch.dtype)
        out = batch + rgb[:, None, None, :]
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "alphastd": self.alphastd,
            "eigval": self.eigval.tolist(),
            "eigvec": self.eigvec.tolist(),
            "value_range": self.value_range,
            "seed": self.seed,
        }


def _pair(seed) -> tf.Tensor:
    """A stateless seed pair from an int or a pair."""
    seed = tf.convert_to_tensor(seed, tf.int64)
    return tf.stack([seed, tf.zeros_like(seed)]) if seed.shape.rank == 0 else seed


def pad_crop_flip(image, pad: int = 4, *, flip: bool = True, seed=0):
    """One image (H, W, C): zero-pad by `pad`, crop a random H x W window, mirror with probability 1/2.

    `seed` (an int or a stateless pair) fixes the draw: the same seed gives the same window."""
    height, width, channels = image.shape
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(_pair(seed), 2))
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(image, (height, width, channels), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed) if flip else image


def random_resized_crop(image, size: int, *, seed=0, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """A random crop covering `scale` of the area with aspect ratio in `ratio`, resized to size x size
    (Szegedy et al. 2015, "Going deeper with convolutions", Sec. 6; torchvision's RandomResizedCrop)."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        tf.zeros((1, 0, 4)),
        seed=_pair(seed),
        min_object_covered=0.0,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, extent)
    return tf.image.resize(crop, (size, size))


def color_jitter(image, *, seed=0, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4):
    """fb.resnet.torch's ColorJitter on an RGB image in [0, 1]: brightness, contrast and saturation each
    scaled by a factor in [1 - s, 1 + s] (applied in that order here; the Lua code shuffles the order)."""
    b, c, s = tf.unstack(tf.random.experimental.stateless_split(_pair(seed), 3))
    image = image * tf.random.stateless_uniform((), b, 1 - brightness, 1 + brightness)
    image = tf.image.stateless_random_contrast(image, 1 - contrast, 1 + contrast, seed=c)
    image = tf.image.stateless_random_saturation(image, 1 - saturation, 1 + saturation, seed=s)
    return tf.clip_by_value(image, 0.0, 1.0)


def resize_center_crop(image, size: int, crop_fraction: float = 0.875):
    """Evaluation view: shorter side resized to size / crop_fraction (256 for 224), then the centre crop."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scaled = tf.cast(tf.round(shape * (size / crop_fraction) / tf.reduce_min(shape)), tf.int32)
    image = tf.image.resize(image, scaled)
    top, left = (scaled[0] - size) // 2, (scaled[1] - size) // 2
    return image[top : top + size, left : left + size]


def alexnet_view(image, size: int = 256):
    """AlexNet's fixed-resolution image (Krizhevsky et al. 2012, Sec. 2,
    https://papers.nips.cc/paper/4824): the shorter side rescaled to `size`, then the central size x size
    patch. Its random 224 crops train the network; its ten 224 crops (`ten_crop`) test it."""
    return resize_center_crop(image, size, crop_fraction=1.0)


AUGMENTATIONS = ("none", "cifar", "cifar_pca", "imagenet", "alexnet")
MIXES = ("none", "mixup", "cutmix")


def augmenter(name: str, *, channels: int, image_size: int, pca_seed: int = 0):
    """The per-image training augmentation `name` as `(image, seed) -> image`, or None for "none".

    "cifar": pad-4 crop + flip. "cifar_pca": that plus PCA lighting (ImageNet constants). "imagenet": random
    resized crop to `image_size`, flip, colour jitter and PCA lighting (fb.resnet.torch). "alexnet" (Krizhevsky
    et al. 2012, Secs. 2 and 4.1): `alexnet_view` at image_size * 256 / 224 (256 for 224), a random
    image_size crop of it, flip, PCA lighting with sigma 0.1. The last two take images of any size, so
    pipelines using them skip the fixed resize. PCA and colour need RGB (`channels=3`)."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {name!r}; choose one of {list(AUGMENTATIONS)}.")
    if name in ("cifar_pca", "imagenet", "alexnet") and channels != 3:
        raise ValueError(f"Augmentation {name!r} changes colours and needs RGB images; received {channels} channel(s).")
    if name == "none":
        return None
    if name == "cifar":
        return lambda image, seed: pad_crop_flip(image, seed=seed)
    lighting = PCALighting(seed=pca_seed, dtype="float32")  # data, whatever the model's dtype policy
    if name == "cifar_pca":

        def cifar_pca(image, seed):
            crop, light = tf.unstack(tf.random.experimental.stateless_split(_pair(seed), 2))
            return lighting(pad_crop_flip(image, seed=crop), training=True, seed=light)

        return cifar_pca

    if name == "alexnet":
        view = round(image_size * 256 / 224)

        def alexnet(image, seed):
            crop, flip, light = tf.unstack(tf.random.experimental.stateless_split(_pair(seed), 3))
            image = alexnet_view(tf.image.convert_image_dtype(image, tf.float32), view)
            image = tf.image.stateless_random_crop(image, (image_size, image_size, 3), seed=crop)
            image = tf.image.stateless_random_flip_left_right(image, seed=flip)
            return lighting(image, training=True, seed=light)

        return alexnet

    def imagenet(image, seed):
        crop, flip, jitter, light = tf.unstack(tf.random.experimental.stateless_split(_pair(seed), 4))
        image = random_resized_crop(tf.image.convert_image_dtype(image, tf.float32), image_size, seed=crop)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip)
        return lighting(color_jitter(image, seed=jitter), training=True, seed=light)

    return imagenet


def batch_augmenter(*, randaugment: bool, mix: str, classes: int, channels: int, seed: int = 0):
    """Keras core's RandAugment (per image, on batches) and MixUp / CutMix (on batch pairs, one-hot labels) as
    `(images, labels) -> (images, labels)`, or None when neither is asked for. Labels come in one-hot."""
    if mix not in MIXES:
        raise ValueError(f"Unknown mix {mix!r}; choose one of {list(MIXES)}.")
    if randaugment and channels != 3:
        raise ValueError(f"RandAugment changes colours and needs RGB images; received {channels} channel(s).")
    if not randaugment and mix == "none":
        return None
    rand = keras.layers.RandAugment(value_range=(0, 1), seed=seed, dtype="float32") if randaugment else None
    mixer = {"mixup": keras.layers.MixUp, "cutmix": keras.layers.CutMix}.get(mix)
    mixer = mixer(seed=seed, dtype="float32") if mixer is not None else None  # data: float32 under any policy

    def apply(images, labels):
        if rand is not None:
            images = rand(images, training=True)
        if mixer is not None:
            mixed = mixer({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels

    return apply


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


def evaluate_ten_crop(model: keras.Model, dataset, size: int | None = None, *, from_logits: bool = False) -> float:
    """Top-1 accuracy of `predict_ten_crop` over a dataset of (images, integer labels) batches whose images
    are larger than the crop `size` (e.g. 256 for 224)."""
    correct = total = 0
    for images, labels in dataset:
        probs = predict_ten_crop(model, images, size, from_logits=from_logits, batch_size=int(images.shape[0]))
        correct += int(np.sum(np.argmax(probs, axis=-1) == np.asarray(labels)))
        total += int(labels.shape[0])
    if not total:
        raise ValueError("evaluate_ten_crop received an empty dataset.")
    return correct / total
