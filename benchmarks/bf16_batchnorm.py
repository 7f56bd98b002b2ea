"""bfloat16 batch norm off the 16-channel block: the grouped view against the rules it replaced, in one run.

    python benchmarks/bf16_batchnorm.py
    python benchmarks/bf16_batchnorm.py --channels 204,120 --models densenet_bc:32:64 --rounds 5

oneDNN's bfloat16 batch-norm kernel is fast on multiples of 16 channels (`keras_cnn.layers.norm.BF16_BLOCK`). A
layer of other widths runs it on a view of g positions' channels side by side (`norm.bf16_groups`, the default);
before, it ran the float32 kernel between two casts. Under mixed_bfloat16 this script times
1. one `BatchNormalization` per `--channels` entry (batch 64 at 32x32, training: forward, ReLU and gradient)
   under three rules: the grouped view, the float32 kernel with casts, and the bf16 kernel on the input as it is;
2. each `--models` entry's training and inference step under the grouped view and the float32 rule.
A rule is the `norm.bf16_groups` in force while the step is traced; the measurements alternate between the
rules over `--rounds` rounds and the median is kept. Prints the ratios grouped / float32 rule, writes JSON.
"""

from __future__ import annotations

from absl import app, flags
from common import alternate, keras_steps, model_entries, pair_row, random_batch, traced_under, write_results

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined when run as a script only, so tests can import the module beside vs_pytorch (same flag names)."""
    flags.DEFINE_list("channels", ["204", "120", "36"], "Channel counts of the single-layer measurements.")
    flags.register_validator(
        "channels",
        lambda values: all(v.isdigit() and int(v) > 0 for v in values),
        message="--channels takes positive integers, e.g. 204,120,36",
    )
    flags.DEFINE_list("models", ["densenet_bc:32:64"], "name:image_size:batch_size entries timed whole.")
    flags.DEFINE_integer("steps", 4, "Timed steps per measurement.", lower_bound=1)
    flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
    flags.DEFINE_string("output", "benchmarks/results/bf16-batchnorm-cpu-2core.json", "JSON results file (atomic).")


def rules() -> dict:
    """`norm.bf16_groups` replacements by name: shape -> g (1: the input as it is; None: float32 with casts)."""
    from keras_cnn.layers import norm

    return {
        "grouped": norm.bf16_groups,
        "float32": lambda shape: 1 if shape[-1] % norm.BF16_BLOCK == 0 else None,
        "bf16_as_is": lambda shape: 1,
    }


def layer_step(channels: int):
    """A fresh bf16 BatchNormalization's training step (forward, ReLU, gradient) on a batch of 64 at 32x32."""
    import tensorflow as tf

    from keras_cnn.layers import BatchNormalization

    x = tf.cast(tf.random.normal((64, 32, 32, channels)), tf.bfloat16)

    def build():
        layer = BatchNormalization()
        layer.build(x.shape)

        @tf.function
        def gradients():
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.cast(tf.nn.relu(layer(x, training=True)), tf.float32))
            return tape.gradient(loss, [x, layer.gamma, layer.beta])

        return lambda: gradients()[0].numpy()

    return build


def model_steps(name: str, size: int, batch: int, mode: str):
    """`build` for `traced_under`: a fresh model's inference or train step (Keras' SGD) on a fixed random batch."""
    import keras

    import keras_cnn

    x, y = random_batch(batch, size, 10)

    def build():
        model = keras_cnn.create_model(name, input_shape=(size, size, 3), classes=10, classifier_activation=None)
        infer, train = keras_steps(model, x, y, optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        return train if mode == "train" else infer

    return build


def main(argv):
    del argv
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    all_rules, rows = rules(), []
    for channels in map(int, FLAGS.channels):
        build = layer_step(channels)
        steps = {rule: traced_under("bf16_groups", fn, build) for rule, fn in all_rules.items()}
        rates = alternate(steps, 1, FLAGS.steps, FLAGS.rounds)
        ms = {rule: 1000 / rate for rule, rate in rates.items()}
        rows.append({"layer_channels": channels, **{f"{r}_ms": round(v, 2) for r, v in ms.items()}})
        rows[-1]["ratio"] = round(ms["float32"] / ms["grouped"], 3)
        print(f"{channels:4d} channels  " + "  ".join(f"{r} {v:6.1f} ms" for r, v in ms.items()), flush=True)
    for name, size, batch in model_entries(FLAGS.models):
        for mode in ("train", "inference"):
            build = model_steps(name, size, batch, mode)
            steps = {rule: traced_under("bf16_groups", all_rules[rule], build) for rule in ("grouped", "float32")}
            rates = alternate(steps, batch, FLAGS.steps, FLAGS.rounds)
            fields = {"model": name, "image_size": size, "batch_size": batch, "mode": mode}
            rows.append(pair_row(fields, rates, "grouped", "float32"))
    write_results(FLAGS.output, rows, steps=FLAGS.steps, rounds=FLAGS.rounds)


if __name__ == "__main__":
    define_flags()
    app.run(main)
