"""One entry point for every dataset: `load_dataset(name, ...)` -> (train, validation, num_classes).

Names: "digits" (embedded, no download), "cifar10"/"cifar100"/"mnist"/"svhn_cropped"/"imagenet2012" through
tensorflow-datasets (prepared under `data_dir`; never downloaded here), "cifar10_archive"/"cifar100_archive"
for the published python archive at `data_dir`, and "folder" for an image folder with one subfolder per class.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_cnn.data.cifar import load_cifar_archive
from keras_cnn.data.digits import load_digits

TFDS = {"cifar10": ("train", "test"), "cifar100": ("train", "test"), "mnist": ("train", "test"),
        "svhn_cropped": ("train", "test"), "imagenet2012": ("train", "validation")}  # fmt: skip
ARCHIVES = {"cifar10_archive": "cifar10", "cifar100_archive": "cifar100"}
DATASETS = ("digits", *TFDS, *ARCHIVES, "folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def pipeline(
    ds: tf.data.Dataset,
    *,
    image_size: int | None,
    channels: int,
    batch_size: int,
    training: bool,
    seed: int,
    deterministic: bool = True,
    augment=None,
    cache: bool = True,
) -> tf.data.Dataset:
    """(image, label) pairs -> float32 images in [0, 1] at `image_size` with `channels`, shuffled (training),
    augmented per image by `augment` (a callable or Keras layer, training only), batched and prefetched.

    Decoding and resizing run as a parallel map and are cached when `cache`; augmentation runs after the
    cache so every epoch draws new crops. `deterministic` keeps the element order fixed for a given seed.
    """

    def prepare(image, label):
        image = tf.image.convert_image_dtype(image, tf.float32)  # uint8 -> [0, 1]; floats pass through
        if image_size is not None:
            image = tf.image.resize(image, (image_size, image_size))
        if channels == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        elif channels == 1 and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        return image, tf.cast(label, tf.int32)

    options = tf.data.Options()
    options.deterministic = deterministic
    ds = ds.with_options(options).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if augment is not None:
            ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = 32,
    channels: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    validation_fraction: float = 0.2,
    deterministic: bool = True,
    augment=None,
) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """(train, validation, num_classes) batched datasets of float32 images in [0, 1] and int32 labels.

    The validation set is the published test/validation split (TFDS, archive), a stratified held-out
    fraction (digits), or a seeded `validation_fraction` of the files (folder).
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {list(DATASETS)}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; received {channels!r}.")
    common = {"image_size": image_size, "channels": channels, "batch_size": batch_size, "seed": seed,
              "deterministic": deterministic}  # fmt: skip
    if name == "digits":
        train, val, classes = load_digits(image_size or 32, channels, batch_size=batch_size,
                                          validation_fraction=validation_fraction, seed=seed)  # fmt: skip
        if augment is not None:
            train = train.unbatch().map(lambda x, y: (augment(x, training=True), y)).batch(batch_size)
        return train, val, classes
    if data_dir is None:
        raise ValueError(f"Dataset {name!r} is read from disk: pass data_dir (see keras_cnn.data.load_dataset).")
    if name in ARCHIVES:
        splits = load_cifar_archive(data_dir, ARCHIVES[name])
        (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
        classes = int(max(y_train.max(), y_test.max())) + 1
        train = tf.data.Dataset.from_tensor_slices((x_train, y_train))
        val = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    elif name == "folder":
        train, val, classes = _image_folder(data_dir, validation_fraction, seed)
    else:
        train, val, classes = _tfds(name, data_dir)
    return (
        pipeline(train, training=True, augment=augment, **common),
        pipeline(val, training=False, **common),
        classes,
    )


def _tfds(name: str, data_dir) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    import tensorflow_datasets as tfds

    train_split, val_split = TFDS[name]
    try:
        (train, val), info = tfds.load(name, split=[train_split, val_split], data_dir=os.fspath(data_dir),
                                       download=False, as_supervised=True, with_info=True)  # fmt: skip
    except AssertionError as err:  # tfds reports missing prepared data this way
        build = f"`tfds build {name} --data_dir {data_dir}`"
        if name == "imagenet2012":
            manual = os.path.join(os.fspath(data_dir), "downloads", "manual")
            hint = f"put the ImageNet tars in {manual}, then run {build}"
        else:
            hint = f"run {build} on a machine with internet access and copy {os.fspath(data_dir)!r} here"
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared under {os.fspath(data_dir)!r} and is never downloaded at run "
            f"time: {hint}. Without it, use --dataset digits (embedded) or --dataset folder."
        ) from err
    return train, val, info.features["label"].num_classes


def _image_folder(data_dir, validation_fraction: float, seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """Class-per-subfolder images: files are listed, split per class with `seed`, and decoded in the map."""
    root = os.fspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist.")
    class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(class_names) < 2:
        raise ValueError(f"{root!r} needs one subfolder per class (at least 2); found {class_names}.")
    rng = np.random.default_rng(seed)
    train_files, train_labels, val_files, val_labels = [], [], [], []
    for label, cls in enumerate(class_names):
        files = sorted(os.path.join(root, cls, f) for f in os.listdir(os.path.join(root, cls))
                       if f.lower().endswith(IMAGE_SUFFIXES))  # fmt: skip
        if not files:
            raise ValueError(f"Class folder {os.path.join(root, cls)!r} has no images {IMAGE_SUFFIXES}.")
        files = [files[i] for i in rng.permutation(len(files))]
        n_val = round(len(files) * validation_fraction) if len(files) > 1 else 0
        val_files += files[:n_val]
        val_labels += [label] * n_val
        train_files += files[n_val:]
        train_labels += [label] * (len(files) - n_val)

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return image, label

    def files_to_dataset(files, labels):
        return tf.data.Dataset.from_tensor_slices((files, np.asarray(labels, "int32"))).map(
            decode, num_parallel_calls=tf.data.AUTOTUNE
        )

    return files_to_dataset(train_files, train_labels), files_to_dataset(val_files, val_labels), len(class_names)
