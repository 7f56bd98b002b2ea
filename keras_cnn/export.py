"""Export for serving: a SavedModel in TF Serving's `<export_dir>/<version>/` layout, TFLite and ONNX.

The SavedModel's `serving_default` signature takes one named input, `image` (float32, or uint8 with
`input_dtype="uint8"`), optionally resized and preprocessed inside the graph, and returns `probabilities`
(and `top_k_classes` / `top_k_probabilities` with `top_k`). Batch norms that follow a convolution are folded
into it first (`keras_cnn.fold_batchnorm`: same outputs up to rounding, faster to serve). A multi-exit model
(MSDNet) is served through `keras_cnn.early_exit.EarlyExit`, stopping each image at its exit, and also returns
the `exits` taken. It is written with Keras' `ExportArchive` into a temporary folder beside the target and
renamed into place, so a failed export leaves nothing half-written, and an existing version is only replaced
with `overwrite=True`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.applications import without_aux
from keras_cnn.early_exit import EarlyExit
from keras_cnn.fold import fold_batchnorm as fold
from keras_cnn.io import write_atomic
from keras_cnn.layers import norm

PREPROCESSING = (None, "scale", "caffe", "tf", "torch")


def serving_fn(
    model: keras.Model,
    *,
    preprocessing: str | None = None,
    resize: bool = False,
    top_k: int | None = None,
    exit_thresholds=None,
):
    """image -> {"probabilities", ["exits"], ["top_k_classes", "top_k_probabilities"]} for `model`.

    Auxiliary heads (aux*) are left out. A model with several exits runs through `EarlyExit` with
    `exit_thresholds` (`keras_cnn.early_exit.fit_thresholds`; None sends every image to the last exit)."""
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"Unknown preprocessing {preprocessing!r}; choose one of {PREPROCESSING}.")
    model = without_aux(model)
    exits = len(model.outputs)
    if exit_thresholds is not None and exits == 1:
        raise ValueError(f"exit_thresholds are for multi-exit models; {model.name!r} has one output.")
    if exits > 1 and exit_thresholds is None:
        exit_thresholds = [np.inf] * (exits - 1) + [-np.inf]
    early = EarlyExit(model, exit_thresholds) if exits > 1 else None
    classes = int(model.outputs[-1].shape[-1])
    if top_k is not None and not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be between 1 and the model's {classes} classes; received {top_k!r}.")
    height, width = model.input_shape[1:3]

    def serve(image):
        x = tf.cast(image, tf.float32)
        if resize:
            x = tf.image.resize(x, (height, width), method="bilinear")
        if preprocessing == "scale":
            x = x / 255.0
        elif preprocessing:
            x = keras.applications.imagenet_utils.preprocess_input(x, mode=preprocessing)
        if early is None:
            outputs = {"probabilities": tf.cast(model(x, training=False), tf.float32)}
        else:
            result = early(x)
            outputs = {"probabilities": tf.cast(result["probabilities"], tf.float32), "exits": result["exits"]}
        probabilities = outputs["probabilities"]
        if top_k:
            values, indices = tf.math.top_k(probabilities, k=top_k)
            outputs.update(top_k_probabilities=values, top_k_classes=indices)
        return outputs

    return serve


def image_spec(model: keras.Model, dtype: str, *, resize: bool) -> tf.TensorSpec:
    """The `image` input of an export: the model's input shape, or any height and width with `resize`."""
    height, width, channels = model.input_shape[1:]
    return tf.TensorSpec(
        (None, None, None, channels) if resize else (None, height, width, channels), dtype, name="image"
    )


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    version: int = 1,
    *,
    input_dtype: str = "float32",
    resize: bool = False,
    preprocessing: str | None = None,
    top_k: int | None = None,
    exit_thresholds=None,
    fold_batchnorm: bool = True,
    overwrite: bool = False,
) -> str:
    """Write `model` to `<export_dir>/<version>/` for TF Serving and return that path.

    `input_dtype` "uint8" serves raw pixels; `resize` accepts any height and width and resizes to the model's
    input size; `preprocessing` ("scale", or keras.applications' "caffe" / "tf" / "torch") runs in the graph;
    `top_k` adds the k best classes; `exit_thresholds` are a multi-exit model's early-exit thresholds;
    `fold_batchnorm=False` keeps every batch norm as its own layer and op (`keras_cnn.layers.norm.FOLD_IN_GRAPH`
    off while the graph is traced)."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's folder name); received {version!r}.")
    if input_dtype not in ("float32", "uint8"):
        raise ValueError(f"input_dtype must be 'float32' or 'uint8'; received {input_dtype!r}.")
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise ValueError(f"Only single-image-input models export; {model.name!r} takes {model.input_shape}.")
    target = os.path.join(os.fspath(export_dir), str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"{target!r} already holds version {version}: pass overwrite=True (--overwrite) to "
            "replace it, or export another version."
        )
    if fold_batchnorm:
        model = fold(model)
    os.makedirs(os.fspath(export_dir), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.", dir=os.fspath(export_dir))
    folding, norm.FOLD_IN_GRAPH = norm.FOLD_IN_GRAPH, norm.FOLD_IN_GRAPH and fold_batchnorm  # while it traces
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serving_default",
            serving_fn(model, preprocessing=preprocessing, resize=resize, top_k=top_k, exit_thresholds=exit_thresholds),
            input_signature=[image_spec(model, input_dtype, resize=resize)],
        )
        archive.write_out(os.path.join(staging, "model"), verbose=False)
        _replace_dir(os.path.join(staging, "model"), target)
    finally:
        norm.FOLD_IN_GRAPH = folding
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_dir(source: str, target: str) -> None:
    """Move `source` to `target`; an existing `target` is moved aside first and removed only afterwards."""
    old = None
    if os.path.exists(target):
        old = f"{target}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(source, target)
    if old:
        shutil.rmtree(old)


def export_tflite(saved_model_dir: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Convert an `export_saved_model` folder (its `serving_default`) to a TFLite flatbuffer at `path`."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists: pass overwrite=True to replace it.")
    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(saved_model_dir), ["serving_default"])
    flatbuffer = converter.convert()
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(flatbuffer))
    return path


def export_onnx(
    model: keras.Model, path: str | os.PathLike, *, opset: int = 17, overwrite: bool = False, **serving
) -> str:
    """Write `model` as ONNX through tf2onnx (`pip install tf2onnx`): input `image` and the outputs of
    `export_saved_model`; `serving` takes its `preprocessing`, `resize` and `top_k`."""
    import tf2onnx

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists: pass overwrite=True to replace it.")
    spec = (image_spec(model, "float32", resize=serving.get("resize", False)),)
    function = tf.function(serving_fn(model, **serving), input_signature=spec, autograph=False)
    write_atomic(
        path,
        lambda tmp: tf2onnx.convert.from_function(function, input_signature=spec, opset=opset, output_path=tmp),
    )
    return path


def run_tflite(path: str | os.PathLike, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run a TFLite export's `serving_default` on one batch: {output name: array}."""
    try:  # LiteRT, TFLite's successor, when installed; TensorFlow's own (deprecated) interpreter otherwise
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=os.fspath(path))
    runner = interpreter.get_signature_runner("serving_default")
    return runner(image=image)
