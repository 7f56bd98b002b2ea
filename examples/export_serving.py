"""Export a model for TF Serving (SavedModel, `<export_dir>/<version>/`) and optionally TFLite.

    python examples/export_serving.py --model resnet20 --weights digits --export_dir exports/resnet20
    python examples/export_serving.py --saved_model runs/x/model.keras --export_dir exports/x --version 2 \\
        --input_dtype uint8 --resize --preprocessing scale --top_k 5 --tflite --onnx

Then serve it: docker run -p 8501:8501 -v "$PWD/exports/resnet20:/models/resnet20" -e MODEL_NAME=resnet20
tensorflow/serving (the README shows a request).
"""

from __future__ import annotations

import json

from absl import app, flags
from common import run, user_errors

flags.DEFINE_string("model", None, "Registered model name to build (with --weights).")
flags.DEFINE_string("weights", None, "Weight-set name (e.g. digits, imagenet) or weights file for --model.")
flags.DEFINE_string("saved_model", None, "A .keras file to export instead of --model.")
flags.DEFINE_integer("image_size", 32, "--model: input height and width.", lower_bound=8)
flags.DEFINE_integer("channels", 1, "--model: input channels.", lower_bound=1)
flags.DEFINE_integer("classes", 10, "--model: classes.", lower_bound=1)
flags.DEFINE_string("export_dir", None, "TF Serving model folder; the export goes to <export_dir>/<version>.")
flags.DEFINE_integer("version", 1, "Version folder.", lower_bound=1)
flags.DEFINE_enum("input_dtype", "float32", ("float32", "uint8"), "Dtype of the `image` input.")
flags.DEFINE_bool("resize", False, "Accept any image size and resize to the model's in the graph.")
flags.DEFINE_enum("preprocessing", None, ("scale", "caffe", "tf", "torch"), "In-graph preprocessing.")
flags.DEFINE_integer("top_k", None, "Also return the k best classes.", lower_bound=1)
flags.DEFINE_bool("tflite", False, "Also write <export_dir>/<version>.tflite.")
flags.DEFINE_bool("onnx", False, "Also write <export_dir>/<version>.onnx (tf2onnx).")
flags.DEFINE_bool("fold_batchnorm", True, "Fold batch norms into the convolutions before them (--nofold_batchnorm).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.mark_flag_as_required("export_dir")


def main(argv: list[str]) -> None:
    del argv

    import keras_cnn
    from keras_cnn import export
    from keras_cnn.io import load_model

    F = flags.FLAGS
    if bool(F.model) == bool(F.saved_model):
        raise app.UsageError("Pass exactly one of --model (with --weights) or --saved_model.")
    with user_errors():
        if F.saved_model:
            model = load_model(F.saved_model)
        else:
            model = keras_cnn.create_model(
                F.model, weights=F.weights, classes=F.classes, input_shape=(F.image_size, F.image_size, F.channels)
            )
        path = export.export_saved_model(
            model,
            F.export_dir,
            F.version,
            input_dtype=F.input_dtype,
            resize=F.resize,
            preprocessing=F.preprocessing,
            top_k=F.top_k,
            fold_batchnorm=F.fold_batchnorm,
            overwrite=F.overwrite,
        )
        written = {"saved_model": path}
        if F.tflite:
            written["tflite"] = export.export_tflite(path, f"{path}.tflite", overwrite=F.overwrite)
        if F.onnx:
            written["onnx"] = export.export_onnx(
                model,
                f"{path}.onnx",
                overwrite=F.overwrite,
                resize=F.resize,
                preprocessing=F.preprocessing,
                top_k=F.top_k,
            )
    print(json.dumps(written, indent=2))


if __name__ == "__main__":
    run(main)
