"""keras_cnn.export: a TF Serving SavedModel checked in a fresh process, TFLite, and no silent overwrite."""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import export
from keras_cnn.layers import norm
from tests.helpers import randomize_statistics, two_exit_model

ROOT = Path(__file__).resolve().parents[1]
LOAD_AND_SERVE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    outputs = serve(image=tf.constant(np.load(sys.argv[2])))
    np.savez(sys.argv[3], **{name: value.numpy() for name, value in outputs.items()})
""")


@pytest.fixture(scope="module")
def model():
    return keras_cnn.create_model("lenet5", input_shape=(32, 32, 1), classes=10)


def test_saved_model_serves_the_same_outputs_in_a_fresh_process(model, tmp_path):
    path = export.export_saved_model(
        model, tmp_path / "lenet", 3, input_dtype="uint8", resize=True, preprocessing="scale", top_k=3
    )
    assert path == str(tmp_path / "lenet" / "3") and (Path(path) / "saved_model.pb").is_file()
    image = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 1)).astype(np.uint8)  # any size: resized
    np.save(tmp_path / "image.npy", image)
    subprocess.run(
        [sys.executable, "-c", LOAD_AND_SERVE, path, str(tmp_path / "image.npy"), str(tmp_path / "out.npz")],
        check=True,
        timeout=300,
    )
    served = np.load(tmp_path / "out.npz")
    expected = model.predict(tf.image.resize(image.astype("float32"), (32, 32)) / 255.0, verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    np.testing.assert_array_equal(served["top_k_classes"], np.argsort(-expected, axis=-1)[:, :3])
    np.testing.assert_allclose(served["top_k_probabilities"], np.sort(expected, axis=-1)[:, ::-1][:, :3], atol=1e-5)
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run([str(cli), "show", "--all", "--dir", path], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for text in (
        "signature_def['serving_default']",
        "inputs['image']",
        "DT_UINT8",
        "outputs['probabilities']",
        "outputs['top_k_classes']",
    ):
        assert text in shown.stdout


def test_an_existing_version_is_kept_unless_overwrite(model, tmp_path):
    first = export.export_saved_model(model, tmp_path, 1)
    before = (Path(first) / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds version 1.*overwrite=True.*export another version\.$"):
        export.export_saved_model(model, tmp_path, 1, top_k=2)
    assert (Path(first) / "saved_model.pb").read_bytes() == before
    export.export_saved_model(model, tmp_path, 1, top_k=2, overwrite=True)
    assert (Path(first) / "saved_model.pb").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]  # no staging or .old folder left behind
    bad_arguments = (
        ({"version": 0}, "positive integer"),
        ({"top_k": 11}, "between 1 and the model's 10"),
        ({"preprocessing": "imagenet"}, "Unknown preprocessing"),
        ({"input_dtype": "int8"}, "uint8"),
    )
    for bad, match in bad_arguments:
        with pytest.raises(ValueError, match=match):
            export.export_saved_model(model, tmp_path / "bad", **{"version": 2, **bad})


def test_saved_model_signature_defaults_staging_and_bad_models(model, tmp_path, monkeypatch, capsys):
    """Version 1 by default; the image spec is the model's size, or any size with resize; the export is
    written in a staging folder inside export_dir (same file system: the rename is atomic) and prints nothing;
    a stale `<version>.old` of an interrupted replacement does not block the next one."""
    staged, mkdtemp = [], tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: staged.append(mkdtemp(**kw)) or staged[-1])
    path = export.export_saved_model(model, tmp_path / "plain")
    assert path == str(tmp_path / "plain" / "1") and capsys.readouterr().out == ""
    assert [os.path.dirname(s) for s in staged] == [str(tmp_path / "plain")] and os.listdir(tmp_path / "plain") == ["1"]
    spec = lambda p: tf.saved_model.load(p).signatures["serving_default"].structured_input_signature[1]["image"]  # noqa: E731
    assert (spec(path).shape.as_list(), spec(path).dtype) == ([None, 32, 32, 1], tf.float32)
    (tmp_path / "plain" / "1.old").mkdir()
    (tmp_path / "plain" / "1.old" / "stale").write_text("left by an interrupted export")
    again = export.export_saved_model(model, tmp_path / "plain", resize=True, input_dtype="uint8", overwrite=True)
    assert (spec(again).shape.as_list(), spec(again).dtype) == ([None, None, None, 1], tf.uint8)
    assert os.listdir(tmp_path / "plain") == ["1"]
    for version in (True, 1.5, "2"):
        with pytest.raises(ValueError, match=f"positive integer .*; received {version!r}"):
            export.export_saved_model(model, tmp_path / "bad", version)
    sequence = keras.Model(inputs := keras.Input((10,)), keras.layers.Dense(3)(inputs), name="seq")
    with pytest.raises(ValueError, match=r"single-image-input models export; 'seq' takes \(None, 10\)"):
        export.export_saved_model(sequence, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_the_saved_model_serves_batch_norms_folded_into_their_convolutions(tmp_path):
    """The export folds each batch norm into the convolution before it (keras_cnn.fold_batchnorm): the served
    graph has no batch-norm op left and serves the model's own outputs; fold_batchnorm=False keeps them."""
    rng = np.random.default_rng(44)
    model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3), classes=10)
    randomize_statistics(model, rng)
    image = rng.random((3, 32, 32, 3), dtype=np.float32)
    expected = model(image, training=False).numpy()  # eager: each batch norm as its own op

    def served_ops(path: str) -> tuple[set[str], np.ndarray]:
        serve = tf.saved_model.load(path).signatures["serving_default"]
        graph = serve.graph.as_graph_def()
        ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        return ops, serve(image=tf.constant(image))["probabilities"].numpy()

    ops, served = served_ops(export.export_saved_model(model, tmp_path / "folded"))
    assert not {op for op in ops if "BatchNorm" in op} and "Conv2D" in ops
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-6)
    ops, served = served_ops(export.export_saved_model(model, tmp_path / "kept", fold_batchnorm=False))
    assert "FusedBatchNormV3" in ops and norm.FOLD_IN_GRAPH  # not folded in the graph either, and reset after
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def test_tflite_matches_keras(model, tmp_path):
    saved = export.export_saved_model(model, tmp_path, 1)
    path = export.export_tflite(saved, tmp_path / "lenet.tflite")
    x = np.random.default_rng(1).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(export.run_tflite(path, x)["probabilities"], model(x, training=False), atol=1e-5)
    with pytest.raises(FileExistsError, match="exists"):
        export.export_tflite(saved, path)


def test_onnx_matches_keras(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    path = export.export_onnx(model, tmp_path / "lenet.onnx", top_k=2)
    session = ort.InferenceSession(path)
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = np.random.default_rng(2).random((3, 32, 32, 1), dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"image": x}), strict=True))
    np.testing.assert_allclose(outputs["probabilities"], model(x, training=False), atol=1e-5)
    assert outputs["top_k_classes"].shape == (3, 2)
    with pytest.raises(FileExistsError, match="exists"):
        export.export_onnx(model, path)


def test_onnx_is_opset_17_with_the_models_size_or_any_size_with_resize(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    fixed = onnx.load(export.export_onnx(model, tmp_path / "fixed.onnx"))
    assert {o.domain: o.version for o in fixed.opset_import}[""] == 17
    assert [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim][1:] == [32, 32, 1]
    path = export.export_onnx(model, tmp_path / "any.onnx", resize=True)
    x = np.random.default_rng(3).random((2, 45, 40, 1), dtype=np.float32)
    served = ort.InferenceSession(path).run(["probabilities"], {"image": x})[0]
    expected = model(tf.image.resize(x, (32, 32), method="bilinear"), training=False)
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_export_serving_example_with_shipped_weights(tmp_path):
    run = [
        sys.executable,
        str(ROOT / "examples/export_serving.py"),
        "--model=lenet5",
        "--weights=digits",
        f"--export_dir={tmp_path}",
        "--top_k=3",
        "--tflite",
        "--onnx",
    ]
    done = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "1" / "saved_model.pb").is_file() and (tmp_path / "1.tflite").is_file()
    assert (tmp_path / "1.onnx").is_file()
    again = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already holds version 1" in again.stderr


# keras.applications' definitions (imagenet_utils): caffe = RGB->BGR minus the BGR means; tf = [-1, 1]; torch =
# [0, 1] minus ImageNet mean over std; scale (this package's own sets) = [0, 1].
PREPROCESS = {
    "caffe": lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68], "float32"),
    "tf": lambda x: x / 127.5 - 1.0,
    "torch": lambda x: (
        (x / 255.0 - np.array([0.485, 0.456, 0.406], "float32")) / np.array([0.229, 0.224, 0.225], "float32")
    ),
    "scale": lambda x: x / 255.0,
}


@pytest.mark.parametrize("mode", sorted(PREPROCESS))
def test_exported_preprocessing_equals_the_published_definition(mode):
    """The serving function is the model applied to `mode`'s preprocessing of 0-255 RGB images."""
    rgb = keras_cnn.create_model("lenet5", input_shape=(32, 32, 3), classes=5, classifier_activation=None)
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    served = export.serving_fn(rgb, preprocessing=mode)(tf.constant(x))["probabilities"].numpy()  # logits here
    expected = rgb(PREPROCESS[mode](x), training=False).numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(rgb(x, training=False).numpy() - expected).max() > 1e-2  # the raw pixels give other outputs


@pytest.mark.parametrize("mode", sorted(PREPROCESS))
def test_the_served_input_is_exactly_the_preprocessed_image_in_inference_mode(mode):
    """Through a probe that returns its input (and would drop half of it in training mode)."""
    probe = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dropout(0.5), keras.layers.Flatten()])
    x = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    served = export.serving_fn(probe, preprocessing=mode)(tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(served, PREPROCESS[mode](x).reshape(2, -1), rtol=1e-6, atol=1e-4)


def test_serving_fn_resizes_only_when_asked_and_checks_top_k():
    probe = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])
    x = np.random.default_rng(3).uniform(0, 255, (2, 11, 13, 3)).astype("float32")
    assert export.serving_fn(probe)(tf.constant(x))["probabilities"].shape == (2, 11 * 13 * 3)  # as it came
    served = export.serving_fn(probe, resize=True)(tf.constant(x))["probabilities"]
    np.testing.assert_allclose(served, tf.reshape(tf.image.resize(x, (8, 8), method="bilinear"), (2, -1)), atol=1e-4)
    for k in (1, 192):
        assert export.serving_fn(probe, top_k=k)(tf.constant(x[:, :8, :8]))["top_k_classes"].shape == (2, k)
    for k in (0, 193):
        with pytest.raises(ValueError, match=f"between 1 and the model's 192 classes; received {k}"):
            export.serving_fn(probe, top_k=k)


def test_a_multi_exit_model_without_thresholds_serves_its_last_exit():
    two_exits = two_exit_model()
    x = np.random.default_rng(4).random((6, 4, 4, 1), dtype=np.float32)
    served = export.serving_fn(two_exits)(tf.constant(x))
    np.testing.assert_array_equal(served["exits"], np.ones(6))
    np.testing.assert_allclose(served["probabilities"], two_exits(x)[1], atol=1e-6)
