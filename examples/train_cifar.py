"""Train any registered model with model.fit. The default needs no download: scikit-learn's real digits.

    python examples/train_cifar.py --model resnet20 --epochs 15

Writes history.csv and metrics.json (final/best val_accuracy, epochs, wall time, images/s) to --output_dir.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet20", "Registered model name (see keras_cnn.list_models()).")
flags.DEFINE_string("dataset", "digits", "Dataset; 'digits' is embedded and needs no download.")
flags.DEFINE_integer("epochs", 15, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.", lower_bound=1)
flags.DEFINE_float("lr", 0.05, "Peak learning rate of SGD (momentum 0.9, Nesterov) with cosine decay.", lower_bound=0)
flags.DEFINE_integer("image_size", 32, "Input height and width the images are resized to.")
flags.DEFINE_string("output_dir", "runs/train_cifar", "Where history.csv and metrics.json are written.")
flags.DEFINE_integer("seed", 0, "Seed for the split, shuffling and initialization.")


def main(argv: list[str]) -> None:
    del argv
    import keras

    import keras_cnn
    from keras_cnn.data import load_digits
    from keras_cnn.io import write_json_atomic

    if FLAGS.dataset != "digits":
        raise app.UsageError(f"--dataset={FLAGS.dataset!r} is not available yet; allowed: 'digits'.")
    keras.utils.set_random_seed(FLAGS.seed)
    train, val, classes = load_digits(FLAGS.image_size, batch_size=FLAGS.batch_size, seed=FLAGS.seed)
    model = keras_cnn.create_model(FLAGS.model, input_shape=(FLAGS.image_size, FLAGS.image_size, 1), classes=classes)
    steps = FLAGS.epochs * int(train.cardinality())
    schedule = keras.optimizers.schedules.CosineDecay(FLAGS.lr, decay_steps=steps)
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    start = time.time()
    history = model.fit(
        train,
        validation_data=val,
        epochs=FLAGS.epochs,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(FLAGS.output_dir, "history.csv"))],
        verbose=2,
    )
    wall = time.time() - start
    seen = FLAGS.epochs * sum(int(y.shape[0]) for _, y in train)
    val_acc = history.history["val_accuracy"]
    metrics = {
        "model": FLAGS.model,
        "dataset": FLAGS.dataset,
        "epochs": FLAGS.epochs,
        "final_val_accuracy": val_acc[-1],
        "best_val_accuracy": max(val_acc),
        "wall_time_s": round(wall, 1),
        "images_per_s": round(seen / wall, 1),
        "trainable_params": keras_cnn.trainable_params(model),
    }
    write_json_atomic(os.path.join(FLAGS.output_dir, "metrics.json"), metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    app.run(main)
