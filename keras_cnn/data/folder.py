"""Image folders with one subfolder per class (torchvision's ImageFolder layout), in either of two shapes:

* split folders: `root/train/<class>/...` (or `training/`) and `root/val/` (or `validation/`, `test/`,
  `testing/`) with the same classes, used as the training and validation sets as they are (ImageNet's, the
  CIFAR-10 JPEG trees' and the MNIST PNG trees' layouts); with `train/`, `val/` and `test/` all present,
  `val/` validates and `test/` stays untouched;
* one tree, `root/<class>/...`, split per class into a seeded `validation_fraction` held out.

Classes are the sorted subfolder names, and the files of each split are put in one seeded random order (a
class-sorted list would fill the pipeline's shuffle buffer with one or two classes at a time). Every file's
header is read while listing, so a file that is not an image is named before any training starts. When all
images of a split have one size and fit the memory budget (a quarter of the machine's memory by default), they
are decoded once (Pillow, libjpeg's accurate integer DCT) and kept as one uint8 array: H x W x 3 bytes per
image, 154 MB for CIFAR-10's 50,000 training images. Otherwise each epoch decodes the files in the tf.data map.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

TRAIN_DIRS = ("train", "training")
VALIDATION_DIRS = ("val", "validation", "test", "testing")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def split_layout(root: str) -> tuple[str, str] | None:
    """(training folder, validation folder) when `root` holds one of `TRAIN_DIRS` and one of `VALIDATION_DIRS`."""
    train = next((os.path.join(root, d) for d in TRAIN_DIRS if os.path.isdir(os.path.join(root, d))), None)
    if train is None:
        return None
    for name in VALIDATION_DIRS:
        if os.path.isdir(os.path.join(root, name)):
            return train, os.path.join(root, name)
    raise ValueError(
        f"{root!r} has a {os.path.basename(train)}/ folder but no validation split next to it: add one of "
        f"{', '.join(d + '/' for d in VALIDATION_DIRS)} (one subfolder per class), or put the class folders "
        "directly under the root to hold out validation_fraction of each class."
    )


def class_names(root: str) -> list[str]:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist.")
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(names) < 2:
        raise ValueError(f"{root!r} needs one subfolder per class (at least 2); found {names}.")
    return names


def image_files(folder: str) -> list[str]:
    """The sorted image files of one class folder; an error when it has none."""
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"Class folder {folder!r} has no images {IMAGE_SUFFIXES}.")
    return files


def image_size_of(path: str) -> tuple[int, int]:
    """(height, width) from the file's header; a clear error naming a file that is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path!r} is not a readable image ({err}).") from None
    return height, width


def decode(path: str) -> np.ndarray:
    """One file as an RGB uint8 array (grey, palette and RGBA images converted)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"Cannot decode {path!r}: {err}.") from None


def image_tree(data_dir) -> list[str]:
    """Every image file of an image folder, in either layout."""
    root = os.fspath(data_dir)
    split = split_layout(root)
    tops = list(split) if split is not None else [root]
    return [f for top in tops for c in class_names(top) for f in image_files(os.path.join(top, c))]


def undecodable(files: list[str]) -> list[str]:
    """The files that cannot be decoded whole: a readable header in front of a truncated or corrupt body
    (what the streaming path meets only when tf.data decodes it, in an error that does not name it)."""

    def broken(path: str) -> bool:
        try:
            decode(path)
        except ValueError:
            return True
        return False

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return [path for path, bad in zip(files, pool.map(broken, files, chunksize=64), strict=True) if bad]


def memory_budget() -> int:
    """Bytes of decoded images kept in memory by default: a quarter of the machine's physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 2**30


def to_dataset(files: list[str], labels: list[int], budget: int) -> tf.data.Dataset:
    """(uint8 image, int32 label) pairs: decoded once into one array when the images share a size and fit
    `budget` bytes, else decoded by tf.data on every pass."""
    labels = np.asarray(labels, "int32")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        sizes = set(pool.map(image_size_of, files))
        if len(sizes) == 1:
            ((height, width),) = sizes
            if len(files) * height * width * 3 <= budget:
                images = np.stack(list(pool.map(decode, files, chunksize=256)))
                return tf.data.Dataset.from_tensor_slices((images, labels))

    def read(path, label):
        data = tf.io.read_file(path)
        image = tf.cond(
            tf.io.is_jpeg(data),  # the accurate DCT, as Pillow decodes: the same pixels as the in-memory path
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
        )
        return image, label

    return tf.data.Dataset.from_tensor_slices((files, labels)).map(read, num_parallel_calls=tf.data.AUTOTUNE)


def load_image_folder(
    data_dir, validation_fraction: float, seed: int, *, budget: int | None = None
) -> tuple[tf.data.Dataset, tf.data.Dataset, list[str]]:
    """(training pairs, validation pairs, class names) of an image folder in either layout (module docstring)."""
    root = os.fspath(data_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist.")
    budget = memory_budget() if budget is None else budget
    split = split_layout(root)
    if split is not None:
        train_dir, val_dir = split
        names = class_names(train_dir)
        val_names = class_names(val_dir)
        if names != val_names:
            only_train, only_val = sorted(set(names) - set(val_names)), sorted(set(val_names) - set(names))
            raise ValueError(
                f"The splits of {root!r} must have the same classes: {only_train or 'none'} only in "
                f"{os.path.basename(train_dir)}/, {only_val or 'none'} only in {os.path.basename(val_dir)}/."
            )
        splits = []
        for folder in (train_dir, val_dir):
            files = [image_files(os.path.join(folder, c)) for c in names]
            splits.append(([f for fs in files for f in fs], [i for i, fs in enumerate(files) for _ in fs]))
    else:
        if not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1); received {validation_fraction!r}.")
        names = class_names(root)
        rng = np.random.default_rng(seed)
        train_files, train_labels, val_files, val_labels, too_small = [], [], [], [], []
        for label, cls in enumerate(names):
            files = image_files(os.path.join(root, cls))
            files = [files[i] for i in rng.permutation(len(files))]
            n_val = min(round(len(files) * validation_fraction), len(files) - 1)  # keep one to train on
            too_small += [f"{cls} ({len(files)})"] if n_val == 0 else []
            val_files += files[:n_val]
            val_labels += [label] * n_val
            train_files += files[n_val:]
            train_labels += [label] * (len(files) - n_val)
        if not val_files:
            raise ValueError(
                f"validation_fraction={validation_fraction} of {root!r} holds out no image: every class has too "
                f"few images ({', '.join(too_small)}); raise the fraction or add images."
            )
        splits = [(train_files, train_labels), (val_files, val_labels)]
    rng = np.random.default_rng(seed)  # mixed once, so that a shuffle buffer smaller than a class sees them all
    order = [rng.permutation(len(files)) for files, _ in splits]
    train, val = (
        to_dataset([files[i] for i in o], [labels[i] for i in o], budget)
        for (files, labels), o in zip(splits, order, strict=True)
    )
    return train, val, names
