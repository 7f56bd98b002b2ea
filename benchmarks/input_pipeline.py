"""Is tf.data the bottleneck? Input-only images/s of the training stream against the train step's, in one run.

    python benchmarks/input_pipeline.py                                     # embedded digits, resnet20
    python benchmarks/input_pipeline.py --dataset folder --data_dir CIFAR-10-images --augment cifar \
        --batch_size 128 --precision mixed_bfloat16

Iterates the training stream of `keras_cnn.data.load_dataset` (decoding, augmentation, batching; nothing
else) for --batches batches, then times `train_on_batch` of --model on one of its batches, alternating the two
for --rounds rounds. A ratio input / train well above 1 means the pipeline keeps the step fed (it also shares
the cores with the step: the ratio says how much of the machine the pipeline takes, 1 / ratio).
"""

from __future__ import annotations

import itertools
import statistics
import time

from absl import app, flags

from keras_cnn.io import write_json_atomic

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "digits", "A keras_cnn.data dataset name.")
flags.DEFINE_string("data_dir", None, "Its data_dir, when it is read from disk.")
flags.DEFINE_string("augment", "none", "Per-image augmentation (keras_cnn.augment.AUGMENTATIONS).")
flags.DEFINE_string("model", "resnet20", "Model whose train step is the peer.")
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_integer("image_size", 32, "Input size.", lower_bound=8)
flags.DEFINE_string("precision", "float32", "Dtype policy of the train step.")
flags.DEFINE_integer("batches", 20, "Batches per measurement.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Alternating rounds; medians are reported.", lower_bound=1)
flags.DEFINE_string("output", None, "Write the figures as JSON here.")


def main(argv: list[str]) -> None:
    del argv
    import keras

    import keras_cnn
    from keras_cnn.augment import augmenter
    from keras_cnn.data import load_dataset

    channels = 1 if FLAGS.dataset in ("digits", "mnist") else 3
    start = time.perf_counter()
    data = load_dataset(
        FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        image_size=FLAGS.image_size,
        channels=channels,
        batch_size=FLAGS.batch_size,
        epochs=(0, 1000),
        augment=augmenter(FLAGS.augment, channels=channels, image_size=FLAGS.image_size),
    )
    load_s = time.perf_counter() - start
    stream = iter(data.train)
    x, y = next(stream)
    keras.config.set_dtype_policy(FLAGS.precision)
    model = keras_cnn.create_model(FLAGS.model, input_shape=tuple(x.shape[1:]), classes=data.classes)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    samples = {"input": [], "train": []}
    for _ in range(FLAGS.rounds):
        begin = time.perf_counter()
        images = sum(int(b[0].shape[0]) for b in itertools.islice(stream, FLAGS.batches))
        samples["input"].append(images / (time.perf_counter() - begin))
        begin = time.perf_counter()
        for _ in range(FLAGS.batches):
            model.train_on_batch(x, y)
        samples["train"].append(FLAGS.batches * int(x.shape[0]) / (time.perf_counter() - begin))
    result = {key: round(statistics.median(values), 1) for key, values in samples.items()}
    result.update(
        ratio=round(result["input"] / result["train"], 2),
        load_s=round(load_s, 1),
        dataset=FLAGS.dataset,
        augment=FLAGS.augment,
        model=FLAGS.model,
        batch_size=FLAGS.batch_size,
        precision=FLAGS.precision,
    )
    print(
        f"input {result['input']:.0f} img/s, train step {result['train']:.0f} img/s, ratio {result['ratio']}, "
        f"data loaded in {result['load_s']} s"
    )
    if FLAGS.output:
        write_json_atomic(FLAGS.output, result)


if __name__ == "__main__":
    app.run(main)
