"""Train any registered model with model.fit. The default needs no download: scikit-learn's real digits.

    python examples/train_cifar.py --model resnet20
    python examples/train_cifar.py --model densenet_bc --recipe paper --dataset cifar10 --data_dir ~/tfds
    python examples/train_cifar.py --dataset cifar10_archive --data_dir cifar-10-python.tar.gz --mix cutmix
    python examples/train_cifar.py --output_dir runs/x --resume      # continue a run that was killed

Writes history.csv, curves.png, tensorboard/, checkpoints/, model.keras and metrics.json (final/best
val_accuracy, epochs, wall time, images/s) to --output_dir (see keras_cnn.training.run).
"""

from __future__ import annotations

import json

import common
from absl import flags
from common import define_training_flags, run, run_training

define_training_flags(model="resnet20", dataset="digits", image_size=32, augment="none", recipe="quick")
flags.adopt_module_key_flags(common)  # --help lists the shared flags


def main(argv: list[str]) -> None:
    del argv
    metrics, output_dir = run_training(flags.FLAGS)
    print(json.dumps(metrics, indent=2))
    print(f"run directory: {output_dir}")


if __name__ == "__main__":
    run(main)
