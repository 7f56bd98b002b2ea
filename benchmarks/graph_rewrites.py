"""Images/s with one of the package's traced-graph rewrites on, against the same model traced without it, in one
run.

    python benchmarks/graph_rewrites.py
    python benchmarks/graph_rewrites.py --rewrite pool_first --models densenet_bc:32:64 --modes inference,train

`--rewrite` names one:
- fold: in a traced inference graph (`predict`, `evaluate`) `keras_cnn.layers.BatchNormalization` computes a batch
  norm that alone reads a convolution's output as that convolution with kernel W * a and a bias
  (`norm.folded_into_conv`), so TensorFlow fuses convolution, bias and ReLU into one kernel; off:
  `norm.FOLD_IN_GRAPH = False`, each batch norm its own op. Inference only.
- pool_first: in any traced graph `keras_cnn.layers.AveragePooling2D` pools the input of the 1x1 convolution that
  feeds it and convolves the pooled maps (`pooling.pooled_first`; DenseNet's transitions); off:
  `pooling.POOL_FIRST = False`, the convolution on the full maps.
- matmul_grad: in a traced training step in bfloat16 `keras_cnn.layers.Conv2D` takes a 1x1 stride-1 kernel's
  gradient as one matrix product (`conv.pointwise_conv`); off: `conv.MATMUL_KERNEL_GRADIENT = False`, TensorFlow's
  Conv2DBackpropFilter. Training only.
Each `--models` entry is built twice with the same seed, one traced each way; their `predict_on_batch` (or
`train_on_batch`) calls alternate over `--rounds` rounds (median kept). Prints the ratio rewritten / as built and
writes it as JSON.
"""

from __future__ import annotations

from absl import app, flags
from common import define_precisions, paired_rows, seeded_step, traced_under, write_results

FLAGS = flags.FLAGS
SIDES = ("rewritten", "as_built")
#: Each rewrite's switch, and the modes it applies to.
REWRITES = {
    "fold": ("norm.FOLD_IN_GRAPH", ("inference",)),
    "pool_first": ("pooling.POOL_FIRST", ("inference", "train")),
    "matmul_grad": ("conv.MATMUL_KERNEL_GRADIENT", ("train",)),
}


def define_flags() -> None:
    """Defined when run as a script only, so tests can import the module beside vs_pytorch (same flag names)."""
    models = ["resnet20:32:64", "resnet56:32:64", "densenet_bc:32:64", "resnet50:224:16"]
    flags.DEFINE_enum("rewrite", "fold", list(REWRITES), "The rewrite timed on against off.")
    flags.DEFINE_list("models", models, "name:image_size:batch_size.")
    flags.DEFINE_list("modes", ["inference"], "inference and/or train, as the rewrite applies.")
    flags.register_multi_flags_validator(
        ["rewrite", "modes"],
        lambda f: set(f["modes"]) <= set(REWRITES[f["rewrite"]][1]),
        message="--modes: fold rewrites inference only; pool_first inference and/or train; matmul_grad train only",
    )
    define_precisions()
    flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", lower_bound=1)
    flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
    flags.DEFINE_string("output", "benchmarks/results/graph-rewrites-cpu-2core.json", "JSON results file (atomic).")


def model_step(name: str, size: int, batch: int, mode: str, setting: str, on: bool):
    """The model's `predict_on_batch` (mode inference) or `train_on_batch` (train) on a fixed random batch, traced
    (on its first call, here) with the switch `setting` ("<module>.<name>" in keras_cnn.layers) set to `on`."""
    return traced_under({setting: on}, lambda: seeded_step(name, size, batch, mode))


def main(argv):
    del argv
    setting, rows = REWRITES[FLAGS.rewrite][0], []
    for mode in FLAGS.modes:

        def steps_for(name: str, size: int, batch: int, mode=mode) -> dict:
            return {side: model_step(name, size, batch, mode, setting, side == "rewritten") for side in SIDES}

        fields = {"rewrite": FLAGS.rewrite, "mode": mode}
        rows += paired_rows(FLAGS.models, steps_for, *SIDES, steps=FLAGS.steps, rounds=FLAGS.rounds, fields=fields)
    write_results(FLAGS.output, rows, steps=FLAGS.steps, rounds=FLAGS.rounds)


if __name__ == "__main__":
    define_flags()
    app.run(main)
