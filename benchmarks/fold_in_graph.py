"""Inference images/s with each batch norm folded into its convolution in the traced graph, against the same
model traced with every batch norm as its own op, in one run.

    python benchmarks/fold_in_graph.py
    python benchmarks/fold_in_graph.py --models resnet56:32:64 --precisions bfloat16

In a traced inference graph (`predict`, `evaluate`), `keras_cnn.layers.BatchNormalization` computes a batch norm
that alone reads a convolution's output as that convolution with kernel W * a and a bias
(`norm.folded_into_conv`), so TensorFlow fuses convolution, bias and ReLU into one kernel; `norm.FOLD_IN_GRAPH =
False` keeps the batch norm as its own op. Each `--models` entry is built twice with the same seed, one traced
each way; their `predict_on_batch` calls alternate over `--rounds` rounds (median kept). Prints the ratio folded /
unfolded and writes it as JSON.
"""

from __future__ import annotations

from absl import app, flags
from common import define_precisions, keras_steps, paired_rows, random_batch, traced_under, write_results

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined when run as a script only, so tests can import the module beside vs_pytorch (same flag names)."""
    models = ["resnet20:32:64", "resnet56:32:64", "densenet_bc:32:64", "resnet50:224:16"]
    flags.DEFINE_list("models", models, "name:image_size:batch_size.")
    define_precisions()
    flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", lower_bound=1)
    flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
    flags.DEFINE_string("output", "benchmarks/results/fold-in-graph-cpu-2core.json", "JSON results file (atomic).")


def inference_step(name: str, size: int, batch: int, fold: bool):
    """The model's `predict_on_batch` on a fixed random batch, traced (on its first call, here) with
    `norm.FOLD_IN_GRAPH = fold`."""
    import keras

    import keras_cnn

    def build():
        keras.utils.set_random_seed(0)
        model = keras_cnn.create_model(name, input_shape=(size, size, 3), classes=10, classifier_activation=None)
        return keras_steps(model, *random_batch(batch, size, 10))[0]

    return traced_under({"FOLD_IN_GRAPH": fold}, build)


def main(argv):
    del argv

    def steps_for(name: str, size: int, batch: int) -> dict:
        return {side: inference_step(name, size, batch, side == "folded") for side in ("folded", "unfolded")}

    rows = paired_rows(FLAGS.models, steps_for, "folded", "unfolded", steps=FLAGS.steps, rounds=FLAGS.rounds)
    write_results(FLAGS.output, rows, steps=FLAGS.steps, rounds=FLAGS.rounds)


if __name__ == "__main__":
    define_flags()
    app.run(main)
