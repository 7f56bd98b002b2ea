"""Train any registered model with model.fit. The default needs no download: scikit-learn's real digits.

    python examples/train_cifar.py --model resnet20 --epochs 15
    python examples/train_cifar.py --model densenet_bc --dataset cifar10 --data_dir ~/tfds --augment cifar
    python examples/train_cifar.py --dataset cifar10_archive --data_dir cifar-10-python.tar.gz
    python examples/train_cifar.py --dataset folder --data_dir my_images/ --image_size 64

Writes history.csv and metrics.json (final/best val_accuracy, epochs, wall time, images/s) to --output_dir.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "resnet20", "Registered model name (see keras_cnn.list_models()).")
DATASETS = (
    "digits",
    "cifar10",
    "cifar100",
    "mnist",
    "svhn_cropped",
    "imagenet2012",
    "cifar10_archive",
    "cifar100_archive",
    "folder",
)  # keras_cnn.data.DATASETS, listed here so --help works without TF
flags.DEFINE_enum("dataset", "digits", DATASETS, "Dataset; 'digits' is embedded and needs no download.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir, CIFAR python archive (or its folder), or image folder.")
flags.DEFINE_enum(
    "augment",
    "none",
    ["none", "cifar", "cifar_pca"],
    "'cifar': pad-4 random crop + horizontal flip; 'cifar_pca': that plus AlexNet PCA lighting.",
)
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
    from keras_cnn.augment import PCALighting, pad_crop_flip
    from keras_cnn.data import load_dataset
    from keras_cnn.io import write_json_atomic

    keras.utils.set_random_seed(FLAGS.seed)
    channels = 1 if FLAGS.dataset in ("digits", "mnist") else 3
    augment = None
    if FLAGS.augment != "none":
        lighting = PCALighting(seed=FLAGS.seed) if FLAGS.augment == "cifar_pca" and channels == 3 else None

        def augment(image, training=True):
            image = pad_crop_flip(image)
            return lighting(image, training=training) if lighting is not None else image

    try:
        train, val, classes = load_dataset(
            FLAGS.dataset, data_dir=FLAGS.data_dir, image_size=FLAGS.image_size, channels=channels,
            batch_size=FLAGS.batch_size, seed=FLAGS.seed, augment=augment,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        raise app.UsageError(str(err)) from err
    shape = (FLAGS.image_size, FLAGS.image_size, channels)
    model = keras_cnn.create_model(FLAGS.model, input_shape=shape, classes=classes)
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
        "augment": FLAGS.augment,
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
