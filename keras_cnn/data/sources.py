"""One entry point for every dataset: `load_dataset(name, ...)` -> Splits(train, validation, classes, train_examples).

Names: "digits" and "photos" (embedded: scikit-learn's digits and sample-photo patches; no download),
"cifar10"/"cifar100"/"mnist"/"svhn_cropped"/"imagenet2012" through tensorflow-datasets (prepared under
`data_dir`; never downloaded here), "cifar10_archive"/"cifar100_archive" for the published python archive at
`data_dir`, and "folder" for an image folder with one subfolder per class.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import tensorflow as tf

from keras_cnn.data.cifar import CLASSES as CIFAR_CLASSES
from keras_cnn.data.cifar import load_cifar_archive
from keras_cnn.data.digits import digits_arrays, photo_arrays
from keras_cnn.data.folder import load_image_folder

TFDS = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "mnist": ("train", "test"),
    "svhn_cropped": ("train", "test"),
    "imagenet2012": ("train", "validation"),
}
ARCHIVES = {"cifar10_archive": "cifar10", "cifar100_archive": "cifar100"}
DATASETS = ("digits", "photos", *TFDS, *ARCHIVES, "folder")
#: Shuffle buffer for sources read from disk; sources held in memory are shuffled whole (a uniform permutation).
SHUFFLE_BUFFER = 10_000


class Splits(NamedTuple):
    """What `load_dataset` returns: batched training and validation datasets, the class count, and the
    number of training examples (one epoch is ceil(train_examples / batch_size) steps)."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    classes: int
    train_examples: int


def pipeline(
    ds: tf.data.Dataset,
    *,
    image_size: int | None,
    channels: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    deterministic: bool = True,
    augment=None,
    batch_augment=None,
    one_hot: int | None = None,
    crop: bool = False,
    cache: bool = True,
    epochs: tuple[int, int] | None = None,
    crop_fraction: float = 0.875,
) -> tf.data.Dataset:
    """(image, label) pairs -> batches of float32 images in [0, 1] with `channels`, and int32 labels (one-hot
    float32 over `one_hot` classes when given, as MixUp/CutMix need).

    Images are resized to `image_size` in a parallel map and cached (`cache`) unless the source already holds
    them in memory at that size (then they stay as they are, uint8 included); with `crop` (ImageNet) they
    keep their size and training images go through `augment` (which must crop to `image_size`), validation
    images through `resize_center_crop` (shorter side to image_size / crop_fraction, then the centre; 1.0 gives
    AlexNet's 256x256 view for its ten crops). Training data is shuffled and augmented per image by
    `augment(image, seed)` with a stateless seed, then per batch by `batch_augment(images, labels)`.

    `epochs=(start, stop)` makes the training stream exactly those epochs, each a full pass whose order and
    augmentation are functions of (seed, epoch, example) alone, so a run resumed at epoch `start` sees the
    data an uninterrupted run would (pass `steps_per_epoch` to `fit`). Without it the dataset is one pass,
    reshuffled and re-augmented every time it is iterated. `deterministic` keeps the element order fixed.
    """
    from keras_cnn.augment import resize_center_crop

    image_spec = ds.element_spec[0]
    sized = image_size is None or tuple(image_spec.shape[:2]) == (image_size, image_size)
    in_memory = sized and image_spec.shape.is_fully_defined()  # a tensor source: nothing to decode or resize

    def prepare(image, label):
        image = tf.image.convert_image_dtype(image, tf.float32)  # uint8 -> [0, 1]; floats pass through
        if not sized and not crop:
            image = tf.image.resize(image, (image_size, image_size))
        if channels == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        elif channels == 1 and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        return image, tf.cast(label, tf.int32)

    options = tf.data.Options()
    options.deterministic = deterministic
    ds = ds.with_options(options).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if cache and not in_memory:  # decoded and resized once; in-memory sources stay uint8 and are converted per use
        ds = ds.cache()
    if training and augment is None:
        augment = (lambda image, _: resize_center_crop(image, image_size)) if crop else (lambda image, _: image)

    def augment_and_batch(seeded: tf.data.Dataset) -> tf.data.Dataset:
        """(seed pair, (image, label)) elements -> augmented batches."""
        seeded = seeded.map(lambda pair, xy: (augment(xy[0], pair), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
        return seeded.batch(batch_size)

    examples = int(ds.cardinality())
    # A 10,000-image window over a fixed file order would keep every image near its place in every epoch.
    buffer = examples if in_memory and examples > 0 else SHUFFLE_BUFFER
    if training and epochs is not None:

        def one_epoch(epoch):  # batched within the epoch, so epochs never share a batch
            # This function's own graph seed, so the shuffle's seed is the tensor below whatever the global
            # seed is (TF compares a seed pair to (0, 0) in Python, which a tensor op seed cannot take part in).
            tf.random.set_seed(1)
            shuffled = ds.shuffle(buffer, seed=seed * 100_003 + epoch, reshuffle_each_iteration=False)
            pairs = lambda i, xy: (tf.stack([tf.cast(seed, tf.int64), epoch * 2**32 + i]), xy)  # noqa: E731
            return augment_and_batch(shuffled.enumerate().map(pairs))

        ds = tf.data.Dataset.range(*epochs).flat_map(one_epoch)
        if examples >= 0:  # lets Keras see where the stream ends
            ds = ds.apply(tf.data.experimental.assert_cardinality((epochs[1] - epochs[0]) * -(-examples // batch_size)))
    elif training:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        ds = augment_and_batch(
            tf.data.Dataset.zip(tf.data.Dataset.random(seed, rerandomize_each_iteration=True).batch(2), ds)
        )
    else:
        if crop:
            ds = ds.map(
                lambda x, y: (resize_center_crop(x, image_size, crop_fraction), y), num_parallel_calls=tf.data.AUTOTUNE
            )
        ds = ds.batch(batch_size)
    if one_hot is not None:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, one_hot)))
    if training and batch_augment is not None:
        ds = ds.map(batch_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


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
    batch_augment=None,
    one_hot: bool = False,
    epochs: tuple[int, int] | None = None,
    crop: bool | None = None,
    crop_fraction: float = 0.875,
) -> Splits:
    """`Splits(train, validation, classes, train_examples)`: batched datasets of float32 images in [0, 1].

    The validation set is the published test/validation split (TFDS, archive), a stratified held-out
    fraction (digits), or a seeded `validation_fraction` of the files (folder). `augment`, `batch_augment`
    and `epochs` are as in `pipeline`; `one_hot=True` gives one-hot labels. With `crop` (default: ImageNet,
    `imagenet2012`, only) images are cropped rather than resized (see `pipeline`, with `crop_fraction`) and
    not cached.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {list(DATASETS)}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; received {channels!r}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); received {validation_fraction!r}.")
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1] (1.0: AlexNet's full square); received {crop_fraction!r}.")
    if name == "digits":
        train, val, classes = digits_arrays(
            image_size or 32, channels, validation_fraction=validation_fraction, seed=seed
        )
        train, val = tf.data.Dataset.from_tensor_slices(train), tf.data.Dataset.from_tensor_slices(val)
    elif name == "photos":
        train, val, classes = photo_arrays(image_size or 32, validation_fraction=validation_fraction, seed=seed)
        train, val = tf.data.Dataset.from_tensor_slices(train), tf.data.Dataset.from_tensor_slices(val)
    elif data_dir is None:
        raise ValueError(f"Dataset {name!r} is read from disk: pass data_dir (see keras_cnn.data.load_dataset).")
    elif name in ARCHIVES:
        splits = load_cifar_archive(data_dir, ARCHIVES[name])
        (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
        classes = CIFAR_CLASSES[ARCHIVES[name]]  # not the highest label seen: a subset may lack the last classes
        train = tf.data.Dataset.from_tensor_slices((x_train, y_train))
        val = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    elif name == "folder":
        train, val, names = load_image_folder(data_dir, validation_fraction, seed)
        classes = len(names)
    else:
        train, val, classes = _tfds(name, data_dir)
    examples = int(train.cardinality())
    if examples < 0:
        examples = int(train.reduce(0, lambda n, _: n + 1))
    crop = name == "imagenet2012" if crop is None else crop
    common = {
        "image_size": image_size,
        "channels": channels,
        "batch_size": batch_size,
        "seed": seed,
        "deterministic": deterministic,
        "one_hot": classes if one_hot else None,
        "crop": crop,
        "cache": not crop,
        "crop_fraction": crop_fraction,
    }
    return Splits(
        pipeline(train, training=True, augment=augment, batch_augment=batch_augment, epochs=epochs, **common),
        pipeline(val, training=False, **common),
        classes,
        examples,
    )


def _tfds(name: str, data_dir) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    import tensorflow_datasets as tfds

    train_split, val_split = TFDS[name]
    try:
        (train, val), info = tfds.load(
            name,
            split=[train_split, val_split],
            data_dir=os.fspath(data_dir),
            download=False,
            as_supervised=True,
            with_info=True,
        )
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
