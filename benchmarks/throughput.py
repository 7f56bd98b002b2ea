"""Train and inference images/s of our ResNet50 and VGG16 against keras.applications' in the same run.

    python benchmarks/throughput.py --image_size 128 --batch_size 8

Both models of a pair get the same input, optimizer (Keras' SGD with momentum) and compiled step (cross-entropy on
logits, `common.keras_steps`); measurements alternate between them over --rounds rounds and the median is kept, so
machine drift hits both alike. Prints a table with the ratio ours / keras.applications and writes it as JSON to
--output.
"""

from __future__ import annotations

import statistics

from absl import app, flags
from common import images_per_s, keras_steps, write_results

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["ResNet50", "VGG16"], "Builders present in both keras_cnn and keras.applications.")
flags.DEFINE_integer("image_size", 128, "Input height and width.", lower_bound=32)
flags.DEFINE_integer("batch_size", 8, "Images per step.", lower_bound=1)
flags.DEFINE_integer("steps", 6, "Timed steps per measurement.", lower_bound=1)
flags.DEFINE_integer("rounds", 5, "Alternating rounds per pair; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/throughput-cpu-2core.json", "JSON results file (written atomically).")


def main(argv: list[str]) -> None:
    del argv
    import keras
    import numpy as np

    import keras_cnn

    rng = np.random.default_rng(0)
    size, batch = FLAGS.image_size, FLAGS.batch_size
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, batch)
    rows = []
    for name in FLAGS.models:
        if not hasattr(keras_cnn, name) or not hasattr(keras.applications, name):
            raise app.UsageError(f"--models: {name!r} must name a builder of both keras_cnn and keras.applications.")
        pair = {
            "keras_cnn": getattr(keras_cnn, name)(input_shape=(size, size, 3), classifier_activation=None),
            "keras.applications": getattr(keras.applications, name)(
                weights=None, input_shape=(size, size, 3), classifier_activation=None
            ),
        }
        sgd = lambda: keras.optimizers.SGD(0.01, momentum=0.9)  # noqa: E731 (Keras' own on both sides)
        steps = {who: keras_steps(model, x, y, optimizer=sgd()) for who, model in pair.items()}
        for infer, train in steps.values():  # warm-up: trace and compile both steps
            infer(), train()
        samples = {(who, mode): [] for who in pair for mode in ("inference", "train")}
        for _ in range(FLAGS.rounds):
            for who, (infer, train) in steps.items():
                samples[(who, "inference")].append(images_per_s(infer, batch, FLAGS.steps))
                samples[(who, "train")].append(images_per_s(train, batch, FLAGS.steps))
        for mode in ("inference", "train"):
            ours = statistics.median(samples[("keras_cnn", mode)])
            theirs = statistics.median(samples[("keras.applications", mode)])
            rows.append(
                {
                    "model": name,
                    "mode": mode,
                    "keras_cnn_img_s": round(ours, 2),
                    "keras_applications_img_s": round(theirs, 2),
                    "ratio": round(ours / theirs, 3),
                }
            )
    print(f"{'model':10s} {'mode':10s} {'keras_cnn img/s':>16s} {'keras.applications img/s':>25s} {'ratio':>7s}")
    for r in rows:
        print(
            f"{r['model']:10s} {r['mode']:10s} {r['keras_cnn_img_s']:16.2f} {r['keras_applications_img_s']:25.2f}"
            f" {r['ratio']:7.3f}"
        )
    write_results(FLAGS.output, rows, image_size=size, batch_size=batch, steps=FLAGS.steps, rounds=FLAGS.rounds)


if __name__ == "__main__":
    app.run(main)
