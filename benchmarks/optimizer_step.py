"""Training images/s with the package's SGD against `keras.optimizers.SGD`, same model and batch, in one run.

    python benchmarks/optimizer_step.py
    python benchmarks/optimizer_step.py --models resnet20:32:16,resnet56:32:64 --precisions bfloat16

`keras_cnn.optimizers.SGD` (what `train()` uses) applies Keras' momentum formula as one TensorFlow kernel per
variable (`ResourceApplyKerasMomentum`) instead of Keras' six ops, so its steps cost less fixed time per
variable. Both optimizers get the same learning rate and momentum (0.9, Nesterov as the quick recipe); each
`--models` entry is built twice with the same seed, and the steps alternate over `--rounds` rounds (median
kept). Prints the ratio package / Keras and writes it as JSON.
"""

from __future__ import annotations

from absl import app, flags
from common import define_precisions, paired_rows, seeded_step, write_results

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet20:32:16", "resnet20:32:64", "resnet56:32:64"], "name:image_size:batch_size.")
define_precisions()
flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", lower_bound=1)
flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/optimizer-step-cpu-2core.json", "JSON results file (atomic).")


def main(argv):
    del argv
    import keras

    from keras_cnn.optimizers import SGD

    settings = {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}

    def steps_for(name: str, size: int, batch: int) -> dict:
        return {
            "package": seeded_step(name, size, batch, "train", optimizer=SGD(**settings)),
            "keras": seeded_step(name, size, batch, "train", optimizer=keras.optimizers.SGD(**settings)),
        }

    rows = paired_rows(
        FLAGS.models, steps_for, "package", "keras", steps=FLAGS.steps, rounds=FLAGS.rounds, suffix="_sgd_img_s"
    )
    write_results(FLAGS.output, rows, steps=FLAGS.steps, rounds=FLAGS.rounds)


if __name__ == "__main__":
    app.run(main)
