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


def _small_base() -> keras.Model:
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="predictions")(x))


class _StageRecorder(keras.callbacks.Callback):
    """Each fit's optimizer rate and momentum, whether the backbone trains, and its epochs."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def on_train_begin(self, logs=None):
        optimizer, backbone = self.model.optimizer, self.model.layers[1]
        rate = float(np.asarray(optimizer.learning_rate))
        self.fits.append({"rate": rate, "momentum": optimizer.momentum, "backbone": backbone.trainable, "epochs": 0})

    def on_epoch_end(self, epoch, logs=None):
        self.fits[-1]["epochs"] += 1


def test_finetune_defaults_a_rate_per_stage_and_joins_both_histories(capsys):
    """Stage 1 at head_lr 0.01, stage 2 at lr 0.001, SGD with momentum 0.9, each validated and with the
    caller's callbacks; one line per epoch by default (fit's verbose=2); the histories joined with a stage each."""
    keras.utils.set_random_seed(0)
    model, data, recorder = with_new_head(_small_base(), 3), _toy_data(), _StageRecorder()
    history = finetune(model, data, data, head_epochs=2, epochs=1, callbacks=[recorder])
    assert recorder.fits == [
        {"rate": pytest.approx(0.01), "momentum": 0.9, "backbone": False, "epochs": 2},
        {"rate": pytest.approx(0.001), "momentum": 0.9, "backbone": True, "epochs": 1},
    ]
    assert history["stage"] == [1, 1, 2]
    assert sorted(history) == ["accuracy", "loss", "stage", "val_accuracy", "val_loss"]
    assert all(len(values) == 3 for values in history.values())
    assert model.get_layer(index=1).get_layer("bn").trainable is False  # frozen in both stages
    printed = capsys.readouterr().out
    assert printed.count("/step - accuracy: ") == 3 and printed.count(" - val_loss: ") == 3 and "━" not in printed
    finetune(model, data, data, head_epochs=1, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
