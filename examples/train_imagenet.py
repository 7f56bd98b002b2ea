"""Train on ImageNet (TFDS imagenet2012 with the manual tars) or any class-per-folder image set, with the
ImageNet pipeline: random resized crop, flip, colour jitter and PCA lighting for training, resize-256 and
centre-224 crop for validation, and the paper's recipe of the model unless told otherwise (AlexNet's recipe
brings its own augmentation, `--augment alexnet`: random 224 crops of the 256x256 view, flip, PCA lighting).

    python examples/train_imagenet.py --model resnet50 --dataset imagenet2012 --data_dir ~/tensorflow_datasets
    python examples/train_imagenet.py --model densenet121 --dataset folder --data_dir my_images/ --epochs 30
    python examples/train_imagenet.py ... --ten_crop     # also report the AlexNet 10-crop accuracy at the end
                                                         # (the ten 224 crops of each 256x256 view)

Writes the same run directory as train_cifar.py (metrics.json, history.csv, curves.png, checkpoints, ...).
"""

from __future__ import annotations

import json
import os

import common
from absl import flags
from common import define_training_flags, run, run_training

define_training_flags(
    model="resnet50",
    dataset="imagenet2012",
    datasets=("imagenet2012", "folder"),
    image_size=224,
    augment="imagenet",
    recipe="paper",
)
flags.adopt_module_key_flags(common)  # --help lists the shared flags
flags.DEFINE_bool(
    "ten_crop",
    False,
    "After training, evaluate the 10 crops (corners, centre, mirrored) of each "
    "image's 256x256 view (shorter side 256, centre crop) as AlexNet did.",
)


def main(argv: list[str]) -> None:
    del argv
    FLAGS = flags.FLAGS
    metrics, output_dir = run_training(FLAGS)
    if FLAGS.ten_crop:
        from keras_cnn.augment import evaluate_ten_crop
        from keras_cnn.data import load_dataset
        from keras_cnn.io import load_model

        model = load_model(os.path.join(output_dir, "model.keras"))
        view = round(FLAGS.image_size * 256 / 224)  # AlexNet's 256x256 view (shorter side 256, centre crop)
        val = load_dataset(
            FLAGS.dataset, data_dir=FLAGS.data_dir, image_size=view, seed=FLAGS.seed, crop=True, crop_fraction=1.0
        ).validation
        metrics["ten_crop_val_accuracy"] = evaluate_ten_crop(model, val, FLAGS.image_size)
        from keras_cnn.io import write_json_atomic

        write_json_atomic(os.path.join(output_dir, "metrics.json"), metrics)
    print(json.dumps(metrics, indent=2))
    print(f"run directory: {output_dir}")


if __name__ == "__main__":
    run(main)
