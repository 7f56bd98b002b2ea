"""Batch norm off the 16-channel block: the grouped view against the rules it replaced, in one run.

    python benchmarks/batchnorm_groups.py
    python benchmarks/batchnorm_groups.py --precisions float32 --channels 204,132 --models densenet_bc:32:64

oneDNN's batch-norm kernels are fast on multiples of 16 channels (`keras_cnn.layers.norm.BLOCK`). A layer of other
widths runs the kernel on a view of g positions' channels side by side (`norm.groups`, the default). Before, a
bfloat16 layer ran the float32 kernel between two casts, and a float32 layer ran the kernel on its input as it is,
or at inference from 128 channels Keras' multiply-add (`norm.WIDE`, now kept for CPUs without AVX-512 only). Per
`--precisions` value this script times, under each rule of `rules()`:
1. one `BatchNormalization` per `--channels` entry followed by a ReLU (batch 64 at 32x32): training (forward and
   gradient) and inference;
2. each `--models` entry's training and inference step, the grouped view against the rule before.
A rule is the `norm` settings in force while the step is traced; the measurements alternate between the rules over
`--rounds` rounds and the median is kept. Prints the ratios grouped / rule before, writes JSON.
"""

from __future__ import annotations

from absl import app, flags
from common import (
    alternate,
    define_precisions,
    model_entries,
    pair_row,
    seeded_step,
    traced_under,
    write_results,
)

FLAGS = flags.FLAGS
MODES = ("train", "inference")


def define_flags() -> None:
    """Defined when run as a script only, so tests can import the module beside vs_pytorch (same flag names)."""
    flags.DEFINE_list("channels", ["204", "132", "36"], "Channel counts of the single-layer measurements.")
    flags.register_validator(
        "channels",
        lambda values: all(v.isdigit() and int(v) > 0 for v in values),
        message="--channels takes positive integers, e.g. 204,132,36",
    )
    flags.DEFINE_list("models", ["densenet_bc:32:64"], "name:image_size:batch_size entries timed whole.")
    define_precisions()
    flags.DEFINE_integer("steps", 4, "Timed steps per measurement.", lower_bound=1)
    flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
    flags.DEFINE_string("output", "benchmarks/results/batchnorm-groups-cpu-2core.json", "JSON results file (atomic).")


def rules(precision: str) -> tuple[dict, str]:
    """The `norm` settings of each rule by name, for `precision`, and the name of the rule before the grouped view."""
    from keras_cnn.layers import norm

    grouped = {"norm.groups": norm.groups, "norm.WIDE": None}
    as_is = {"norm.groups": lambda shape: 1, "norm.WIDE": None}
    if precision == "bfloat16":  # the float32 kernel with casts: `groups` None off the block
        in_float32 = {"norm.groups": lambda shape: 1 if shape[-1] % norm.BLOCK == 0 else None, "norm.WIDE": None}
        return {"grouped": grouped, "float32": in_float32, "bf16_as_is": as_is}, "float32"
    return {"grouped": grouped, "as_is": as_is, "as_is_wide128": {**as_is, "norm.WIDE": 128}}, "as_is_wide128"


def layer_step(channels: int, dtype: str, mode: str):
    """`build` for `traced_under`: a fresh BatchNormalization and ReLU on a batch of 64 at 32x32, as a training step
    (forward and gradient) or at inference."""
    import tensorflow as tf

    from keras_cnn.layers import BatchNormalization

    x = tf.cast(tf.random.normal((64, 32, 32, channels)), dtype)

    def build():
        layer = BatchNormalization()
        layer.build(x.shape)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.relu(layer(x, training=mode == "train"))
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            if mode == "train":  # the whole input gradient is computed; a corner of it comes back to the host
                dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
                return dx[:1, :1, :1], dgamma, dbeta
            return y[:1, :1, :1]

        return lambda: [t.numpy() for t in tf.nest.flatten(step())]

    return build


def main(argv):
    del argv
    import keras

    rows = []
    for precision in FLAGS.precisions:
        bf16 = precision == "bfloat16"
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
        all_rules, before = rules(precision)
        for channels in map(int, FLAGS.channels):
            for mode in MODES:
                build = layer_step(channels, "bfloat16" if bf16 else "float32", mode)
                steps = {rule: traced_under(settings, build) for rule, settings in all_rules.items()}
                ms = {rule: 1000 / rate for rule, rate in alternate(steps, 1, FLAGS.steps, FLAGS.rounds).items()}
                fields = {"precision": precision, "layer_channels": channels, "mode": mode}
                rows.append(fields | {f"{r}_ms": round(v, 2) for r, v in ms.items()})
                rows[-1]["ratio"] = round(ms[before] / ms["grouped"], 3)
                line = "  ".join(f"{r} {v:6.1f} ms" for r, v in ms.items())
                print(f"{precision} {channels:4d} channels {mode:9s} {line}", flush=True)
        for name, size, batch in model_entries(FLAGS.models):
            for mode in MODES:

                def build(name=name, size=size, batch=batch, mode=mode):  # a fresh Keras SGD for each model
                    return seeded_step(name, size, batch, mode, optimizer=keras.optimizers.SGD(0.01, momentum=0.9))

                steps = {rule: traced_under(all_rules[rule], build) for rule in ("grouped", before)}
                rates = alternate(steps, batch, FLAGS.steps, FLAGS.rounds)
                fields = {"precision": precision, "model": name, "image_size": size, "batch_size": batch, "mode": mode}
                rows.append(pair_row(fields, rates, "grouped", before))
    write_results(FLAGS.output, rows, steps=FLAGS.steps, rounds=FLAGS.rounds)


if __name__ == "__main__":
    define_flags()
    app.run(main)
