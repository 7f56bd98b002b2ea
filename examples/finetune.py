"""Fine-tune a trained model on new classes: new head with the backbone frozen, then everything at a lower
rate, BatchNormalization kept in inference mode throughout (keras_cnn.training.finetune).

    python examples/finetune.py --saved_model runs/resnet20-digits/model.keras --dataset folder --data_dir imgs/
    python examples/finetune.py --model resnet50 --weights resnet50_weights.h5 --dataset folder --data_dir imgs/

Writes model.keras, history.csv and metrics.json (validation accuracy after each stage) to --output_dir.
"""

from __future__ import annotations

import csv
import json
import os
import time

from absl import app, flags
from common import DATASETS, run, user_errors

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "A .keras model to start from (loaded with safe_mode).")
flags.DEFINE_string("model", None, "Or a registered model name, built with --weights.")
flags.DEFINE_string("weights", None, "Weights file for --model (None: random initialization).")
flags.DEFINE_enum("dataset", "folder", DATASETS, "The new task's data.")
flags.DEFINE_string("data_dir", None, "Where --dataset lives (image folder: one subfolder per class).")
flags.DEFINE_integer("image_size", None, "Input size (default: the model's).", lower_bound=8)
flags.DEFINE_integer("head_epochs", 5, "Stage 1: epochs training the new head only.", lower_bound=0)
flags.DEFINE_integer("epochs", 5, "Stage 2: epochs training everything.", lower_bound=0)
flags.DEFINE_float("head_lr", 0.01, "Stage 1 learning rate (SGD, momentum 0.9).", lower_bound=0)
flags.DEFINE_float("lr", 0.001, "Stage 2 learning rate.", lower_bound=0)
flags.DEFINE_float("dropout", 0.0, "Dropout before the new head.", lower_bound=0, upper_bound=1)
flags.DEFINE_integer("batch_size", 32, "Mini-batch size.", lower_bound=1)
flags.DEFINE_enum("augment", "none", ("none", "cifar", "cifar_pca", "imagenet"), "Training augmentation.")
flags.DEFINE_string("output_dir", None, "Run directory (default: runs/finetune-<time>); must not hold a run.")
flags.DEFINE_integer("seed", 0, "Seed for the split, shuffling, augmentation and the head's initialization.")


def main(argv: list[str]) -> None:
    del argv
    if (FLAGS.saved_model is None) == (FLAGS.model is None):
        raise app.UsageError("Pass exactly one of --saved_model and --model.")
    import keras_cnn  # before Keras loads TensorFlow: the package's oneDNN setting (keras_cnn.onednn)

    # isort: split
    import keras

    from keras_cnn.augment import augmenter
    from keras_cnn.data import load_dataset
    from keras_cnn.io import load_model, write_json_atomic
    from keras_cnn.training.finetune import finetune, with_new_head

    keras.utils.set_random_seed(FLAGS.seed)
    output_dir = FLAGS.output_dir or f"runs/finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    if os.path.exists(os.path.join(output_dir, "metrics.json")):
        raise app.UsageError(f"{output_dir!r} already holds a fine-tuning run; choose another --output_dir.")
    with user_errors():
        if FLAGS.saved_model:
            if not os.path.isfile(FLAGS.saved_model):
                raise FileNotFoundError(f"--saved_model {FLAGS.saved_model!r} is not a file.")
            base = load_model(FLAGS.saved_model)
        else:
            shape = None if FLAGS.image_size is None else (FLAGS.image_size, FLAGS.image_size, 3)
            base = keras_cnn.create_model(FLAGS.model, weights=FLAGS.weights, input_shape=shape)
        size, channels = base.input_shape[1], base.input_shape[3]
        data = load_dataset(
            FLAGS.dataset,
            data_dir=FLAGS.data_dir,
            image_size=size,
            channels=channels,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
            augment=augmenter(FLAGS.augment, channels=channels, image_size=size),
        )
        model = with_new_head(base, data.classes, dropout_rate=FLAGS.dropout)
    history = finetune(
        model,
        data.train,
        data.validation,
        head_epochs=FLAGS.head_epochs,
        epochs=FLAGS.epochs,
        head_lr=FLAGS.head_lr,
        lr=FLAGS.lr,
    )
    os.makedirs(output_dir, exist_ok=True)
    model.save(os.path.join(output_dir, "model.keras"))
    with open(os.path.join(output_dir, "history.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *history])
        writer.writerows([i, *row] for i, row in enumerate(zip(*history.values(), strict=True)))
    val = history["val_accuracy"]
    stage = history["stage"]
    metrics = {
        "source": FLAGS.saved_model or FLAGS.model,
        "dataset": FLAGS.dataset,
        "classes": data.classes,
        "head_epochs": FLAGS.head_epochs,
        "epochs": FLAGS.epochs,
        "head_val_accuracy": next((v for v, s in zip(val[::-1], stage[::-1], strict=True) if s == 1), None),
        "final_val_accuracy": val[-1] if val else None,
    }
    write_json_atomic(os.path.join(output_dir, "metrics.json"), metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    run(main)
