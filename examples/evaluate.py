"""Top-1 accuracy of a weight set (or a saved model) on an image folder, decoded with Pillow as a user would.

    python examples/evaluate.py --model resnet20 --weights cifar10 --data_dir CIFAR-10-images/test
    python examples/evaluate.py --saved_model runs/x/model.keras --data_dir imgs/test

--data_dir holds one subfolder per class. With --weights, pixels go through
`keras_cnn.weights.preprocess_input` and the folders are matched to the set's class names (a folder the set
does not know is an error); a saved model gets pixels / 255 and the sorted folder names. Prints the accuracy
overall and per class, and writes them as JSON with --output.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
from common import run

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Registered model name, with --weights.")
flags.DEFINE_string("weights", None, "A weight set of --model (e.g. cifar10).")
flags.DEFINE_string("saved_model", None, "A .keras file instead of --model/--weights (pixels / 255).")
flags.DEFINE_string("data_dir", None, "Folder with one subfolder of images per class.", required=True)
flags.DEFINE_integer("batch_size", 250, "Images per prediction batch.", lower_bound=1)
flags.DEFINE_string("output", None, "Write the figures as JSON here (atomically).")


def main(argv: list[str]) -> None:
    del argv
    if bool(FLAGS.saved_model) == bool(FLAGS.model and FLAGS.weights):
        raise app.UsageError("Pass either --model and --weights, or --saved_model.")
    import numpy as np

    import keras_cnn
    from keras_cnn.data.folder import class_names, decode, image_files
    from keras_cnn.io import load_model, write_json_atomic

    folders = class_names(FLAGS.data_dir)
    if FLAGS.saved_model:
        model = load_model(FLAGS.saved_model)
        names = folders
        prepare = lambda x: x.astype("float32") / 255.0  # noqa: E731
    else:
        ws = next(
            (w for (m, n, _), w in keras_cnn.weights.WEIGHT_SETS.items() if m == FLAGS.model and n == FLAGS.weights),
            None,
        )
        if ws is None:
            raise app.UsageError(f"No weight set {FLAGS.weights!r} for {FLAGS.model!r}.")
        model = keras_cnn.create_model(
            FLAGS.model, weights=FLAGS.weights, input_shape=ws.input_shape, classes=ws.classes
        )
        names = list(ws.class_names) or [str(i) for i in range(ws.classes)]
        prepare = lambda x: keras_cnn.weights.preprocess_input(x, model=FLAGS.model, weights=FLAGS.weights)  # noqa: E731
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise app.UsageError(f"Class folders {unknown} are not classes of this model ({names}).")
    correct, total = {}, {}
    for folder in folders:
        files = image_files(os.path.join(FLAGS.data_dir, folder))
        label = names.index(folder)
        for start in range(0, len(files), FLAGS.batch_size):
            x = np.stack([decode(f) for f in files[start : start + FLAGS.batch_size]])
            predicted = np.argmax(np.asarray(model.predict_on_batch(prepare(x))), axis=-1)
            correct[folder] = correct.get(folder, 0) + int(np.sum(predicted == label))
        total[folder] = len(files)
    result = {
        "model": FLAGS.saved_model or f"{FLAGS.model} weights={FLAGS.weights}",
        "data_dir": os.path.abspath(FLAGS.data_dir),
        "images": sum(total.values()),
        "top1": sum(correct.values()) / sum(total.values()),
        "per_class": {c: correct[c] / total[c] for c in folders},
    }
    print(json.dumps(result, indent=2))
    if FLAGS.output:
        write_json_atomic(FLAGS.output, result)


if __name__ == "__main__":
    run(main)
