"""Distil a teacher into a student with any registered pair of models (keras_cnn.distill). The default needs
no download: the embedded digits. Without --teacher_weights, the teacher is trained first with the same flags
into <output_dir>/teacher (and reused from there by later runs).

    python examples/distill.py --teacher resnet56 --student resnet20 --method kd
    python examples/distill.py --method fitnets --hint_epochs 5 --teacher_weights runs/r56/model.keras
    python examples/distill.py --method rocket --split_layer conv2_block1_out   # light + booster, jointly

Writes the student's run directory like train_cifar.py (model.keras is the student alone); metrics.json also
names the method and the teacher, with the teacher's val_accuracy.
"""

from __future__ import annotations

import json
import time

import common
from absl import flags
from common import DISTILL_METHODS, define_training_flags, run, training_config, user_errors

define_training_flags(model="resnet20", dataset="digits", image_size=32, augment="none", recipe="quick")
flags.adopt_module_key_flags(common)
flags.DEFINE_alias("student", "model")
flags.DEFINE_enum(
    "method",
    "kd",
    DISTILL_METHODS,
    "kd: Hinton; mimic: Ba & Caruana's logit regression; fitnets: hints, then KD; rocket: Rocket "
    "Launching (light and booster trained together).",
)
flags.DEFINE_string("teacher", "resnet56", "Registered teacher (rocket: the booster, trained jointly).")
flags.DEFINE_string("teacher_weights", None, "The teacher's .keras file (default: train it first).")
flags.DEFINE_float("temperature", None, "Softmax temperature (default: kd 4, fitnets 3).", lower_bound=0)
flags.DEFINE_float("alpha", 0.1, "kd: weight of the hard-label loss (the soft loss gets 1 - alpha).")
flags.DEFINE_string("hint_layer", None, "fitnets: the teacher's hint layer (default: its middle block output).")
flags.DEFINE_string("guided_layer", None, "fitnets: the student's guided layer (default: its middle block output).")
flags.DEFINE_integer("hint_epochs", 5, "fitnets: epochs of stage 1 (hint training).", lower_bound=0)
flags.DEFINE_string("split_layer", None, "rocket: last shared layer (default: the student's first block output).")
flags.DEFINE_float("hint_weight", 0.03, "rocket: weight of the logit hint (the paper's lambda).")


def main(argv: list[str]) -> None:
    del argv
    from keras_cnn.training.distill import DistillConfig, train_distilled

    F = flags.FLAGS
    output_dir = F.output_dir or f"runs/{F.model}-{F.method}-{F.teacher}-{F.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    distill = DistillConfig(
        method=F.method,
        teacher=F.teacher,
        teacher_weights=F.teacher_weights,
        temperature=F.temperature,
        alpha=F.alpha,
        hint_layer=F.hint_layer,
        guided_layer=F.guided_layer,
        hint_epochs=F.hint_epochs,
        split_layer=F.split_layer,
        hint_weight=F.hint_weight,
    )
    with user_errors():
        metrics = train_distilled(training_config(F, output_dir), distill)
    print(json.dumps(metrics, indent=2))
    print(f"run directory: {output_dir}")


if __name__ == "__main__":
    run(main)
