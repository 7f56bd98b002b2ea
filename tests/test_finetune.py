"""Fine-tuning: a new head on a trained backbone, BN statistics kept, and examples/finetune.py end to end."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.training.finetune import backbone_of, finetune, with_new_head

ROOT = Path(__file__).resolve().parents[1]


def _toy_data(classes=3, n=24, size=16):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = (rng.random((n, size, size, 1)) * 0.2 + y[:, None, None, None] / classes).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _bn_statistics(model):
    return [
        np.asarray(v)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    ]


def test_new_head_frozen_then_full_keeps_bn_statistics():
    keras.utils.set_random_seed(0)
    base = keras_cnn.create_model("resnet20", input_shape=(16, 16, 1), classes=10)
    model = with_new_head(base, 3)
    assert model.output_shape == (None, 3) and model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    variables = list(base.trainable_weights)  # the same objects whatever `trainable` says later
    kernels = [np.asarray(v) for v in variables]
    stats = _bn_statistics(base)
    data = _toy_data()
    history = finetune(model, data, data, head_epochs=1, epochs=0, verbose=0)
    assert history["stage"] == [1]
    for before, after in zip(kernels, variables, strict=True):
        np.testing.assert_array_equal(before, after)  # stage 1 trains the head alone
    history = finetune(model, data, data, head_epochs=0, epochs=1, verbose=0)
    assert history["stage"] == [2]
    assert any(not np.array_equal(b, a) for b, a in zip(kernels, variables, strict=True))
    for before, after in zip(stats, _bn_statistics(base), strict=True):
        np.testing.assert_array_equal(before, after)  # BN runs in inference mode in both stages


def test_new_head_errors():
    base = keras_cnn.create_model("lenet5")
    with pytest.raises(ValueError, match="classes must be an integer >= 2"):
        with_new_head(base, 1)
    headless = keras_cnn.create_model("resnet20", include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="no layer named 'predictions'"):
        backbone_of(headless)


@pytest.mark.slow
def test_finetune_example_from_a_saved_model_to_an_image_folder(tmp_path):
    from tests.test_data_sources import _write_folder

    _write_folder(tmp_path / "imgs", np.random.default_rng(0), {"cat": 4, "dog": 4, "eel": 4})
    keras_cnn.create_model("resnet20", input_shape=(16, 16, 3), classes=10).save(tmp_path / "base.keras")
    cmd = [
        sys.executable,
        str(ROOT / "examples/finetune.py"),
        f"--saved_model={tmp_path / 'base.keras'}",
        "--dataset=folder",
        f"--data_dir={tmp_path / 'imgs'}",
        "--head_epochs=1",
        "--epochs=1",
        "--batch_size=4",
        f"--output_dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classes"] == 3 and 0 <= metrics["final_val_accuracy"] <= 1
    tuned = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert tuned.output_shape == (None, 3)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "already holds a fine-tuning run" in again.stderr
