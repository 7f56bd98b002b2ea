"""keras_cnn.training: recipes as schedules and optimizers, multi-output compilation, and train() runs."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_cnn.models.lenet import MAPCriterion
from keras_cnn.recipes import RECIPES, Recipe
from keras_cnn.registry import model_info
from keras_cnn.training import (
    SGD,
    RMSprop,
    TrainConfig,
    compile_model,
    label_every_output,
    learning_rate,
    optimizer,
    resolve_recipe,
    train,
)
from tests.helpers import lenet5_run, list_devices

ROOT = Path(__file__).resolve().parents[1]


def _lr(schedule, step):
    return float(schedule(step)) if callable(schedule) else schedule


def test_resnet_cifar_steps_at_32k_and_48k_of_64k_iterations():
    schedule = learning_rate(RECIPES["resnet_cifar"], steps_per_epoch=400, epochs=160)  # 64k iterations
    assert [_lr(schedule, s) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


def test_warm_up_then_steps_for_resnet110():
    schedule = learning_rate(RECIPES["resnet_cifar_warmup"], steps_per_epoch=400, epochs=160)
    assert [_lr(schedule, s) for s in (0, 399, 400, 32_000)] == pytest.approx([0.01, 0.01, 0.1, 0.01])


def test_densenet_halves_and_three_quarters_in_epochs_and_lr_override():
    schedule = learning_rate(RECIPES["densenet_cifar"], steps_per_epoch=782, epochs=300, lr=0.2)
    assert _lr(schedule, 150 * 782 - 1) == pytest.approx(0.2)
    assert _lr(schedule, 150 * 782) == pytest.approx(0.02)
    assert _lr(schedule, 225 * 782) == pytest.approx(0.002)


def test_cosine_plateau_and_too_short_runs():
    cosine = learning_rate(RECIPES["quick"], steps_per_epoch=10, epochs=10)
    assert _lr(cosine, 0) == pytest.approx(0.05) and _lr(cosine, 50) == pytest.approx(0.025, rel=1e-3)
    assert _lr(cosine, 100) == pytest.approx(0.0, abs=1e-7)
    assert learning_rate(RECIPES["vgg"], steps_per_epoch=10, epochs=5) == 0.01  # ReduceLROnPlateau lowers it
    with pytest.raises(ValueError, match="too short"):
        learning_rate(RECIPES["resnet_cifar_warmup"], steps_per_epoch=10, epochs=20)  # 400 warm-up > 100


def test_coupled_l2_goes_through_momentum_unlike_keras_weight_decay():
    w0, g = np.array([1.0, -2.0], "float32"), np.array([0.5, 0.25], "float32")
    lr, mu, wd = 0.1, 0.9, 0.01

    def run(opt):
        var = keras.Variable(w0)
        for _ in range(3):
            opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
        return np.asarray(var)

    w, v = w0.astype("float64"), np.zeros(2)
    for _ in range(3):  # Torch SGD: d = g + wd * w; v = mu * v + d; w -= lr * v
        v = mu * v + g + wd * w
        w = w - lr * v
    np.testing.assert_allclose(run(SGD(lr, momentum=mu, l2=wd)), w, rtol=1e-6)
    decoupled = run(keras.optimizers.SGD(lr, momentum=mu, weight_decay=wd))
    assert not np.allclose(decoupled, w, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("strategy", [None, "mirrored"])
def test_sgd_momentum_is_one_fused_kernel_per_variable_with_keras_sgd_results(nesterov, strategy, monkeypatch):
    """Keras' formula (m = mu m - lr g; w += m, or w += mu m - lr g with Nesterov) through TensorFlow's fused kernel,
    in `fit`, also under a one-device MirroredStrategy (whose per-replica variables the update is handed)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (32, 3)).astype("float32"), rng.normal(0, 1, (32, 2)).astype("float32")
    distribute = tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy else tf.distribute.get_strategy()
    fused_calls = []
    kernel = tf.raw_ops.ResourceApplyKerasMomentum
    monkeypatch.setattr(tf.raw_ops, "ResourceApplyKerasMomentum", lambda **kw: fused_calls.append(1) or kernel(**kw))

    def fit(make_optimizer):
        with distribute.scope():
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="ones")])
            model.compile(make_optimizer(), "mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    peer = fit(lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov))
    assert not fused_calls
    fused = fit(lambda: SGD(0.1, momentum=0.9, nesterov=nesterov))
    assert fused_calls and len(fused_calls) % 2 == 0  # one call per variable (kernel and bias) in each trace
    for ours, theirs in zip(fused, peer, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    traced = len(fused_calls)
    fit(lambda: SGD(0.1))
    assert len(fused_calls) == traced  # without momentum: Keras' own w -= lr g


def test_recipe_optimizers_and_their_errors():
    sgd = optimizer(RECIPES["densenet_cifar"], 0.1)
    assert isinstance(sgd, SGD) and sgd.nesterov and sgd.l2 == pytest.approx(1e-4)
    assert optimizer(RECIPES["quick"], 0.1).l2 == 0.0
    assert optimizer(RECIPES["densenet_cifar"], 0.1, l2=0.0).l2 == 0.0
    rms = optimizer(Recipe("rmsprop", 0.045, "x", 1, 32, 4e-5, "x", "x"), 0.045)
    assert isinstance(rms, RMSprop) and rms.l2 == pytest.approx(4e-5)
    assert isinstance(keras.optimizers.deserialize(keras.optimizers.serialize(sgd)), SGD)
    with pytest.raises(ValueError, match="no Keras implementation"):
        optimizer(RECIPES["lenet"], 0.1)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        SGD(0.1, l2=-1.0)


def test_paper_recipe_is_the_models_own():
    recipe, name = resolve_recipe(TrainConfig(model="densenet_bc", recipe="paper"))
    assert name == "densenet_cifar" and recipe is RECIPES["densenet_cifar"]
    with pytest.raises(ValueError, match="Unknown recipe 'fast'"):
        resolve_recipe(TrainConfig(recipe="fast"))


def test_auxiliary_heads_are_weighted_by_the_recipe():
    inputs = keras.Input((4,))
    aux = keras.layers.Dense(3, activation="softmax", name="aux1")(inputs)
    main = keras.layers.Dense(3, activation="softmax", name="predictions")(inputs)
    model = keras.Model(inputs, [aux, main])
    outputs, head = compile_model(model, "sgd", recipe=RECIPES["quick"])
    assert outputs == ["aux1", "predictions"] and head == "predictions"
    import tensorflow as tf

    x = np.random.default_rng(0).random((8, 4)).astype("float32")
    y = np.arange(8) % 3
    ds = label_every_output(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), len(outputs))
    total = model.evaluate(ds, verbose=0, return_dict=True)["loss"]
    p_aux, p_main = model.predict(x, verbose=0)
    ce = [float(-np.mean(np.log(p[np.arange(8), y]))) for p in (p_aux, p_main)]
    assert total == pytest.approx(0.3 * ce[0] + ce[1], rel=1e-5)


def test_the_main_output_is_the_last_that_is_not_auxiliary_wherever_the_heads_stand():
    from keras_cnn.training.run import output_heads

    inputs = keras.Input((4,))

    def heads(*names):
        return keras.Model(inputs, [keras.layers.Dense(3, name=name)(inputs) for name in names], name="heads")

    assert output_heads(heads("exit1", "predictions", "aux1", "aux2")) == (
        ["exit1", "predictions", "aux1", "aux2"],
        "predictions",
    )
    with pytest.raises(ValueError) as refused:
        output_heads(heads("aux1", "aux2"))
    assert str(refused.value) == "Model 'heads' has only auxiliary outputs ['aux1', 'aux2']."


def test_compile_model_uses_xla_only_when_asked_even_where_keras_would(monkeypatch):
    """Keras' own default ("auto") turns XLA on where it sees a GPU; `compile_model` follows TrainConfig.jit."""
    list_devices(monkeypatch, "CPU", "GPU")
    for asked, expected in [({}, False), ({"jit": False}, False), ({"jit": True}, True)]:
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
        compile_model(model, "sgd", recipe=RECIPES["quick"], **asked)
        assert model.jit_compile is expected, asked
    model.compile("sgd")  # the control: Keras' default under these devices
    assert model.jit_compile is True


@pytest.mark.slow
def test_train_writes_every_artifact_and_refuses_to_overwrite(tmp_path):
    config = TrainConfig(model="lenet5", epochs=2, lr=0.002, output_dir=str(tmp_path), verbose=0)
    metrics = train(config)
    assert metrics["epochs"] == 2 and metrics["resumed_from_epoch"] == 0 and metrics["images_per_s"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert (tmp_path / "history.csv").read_text().count("\n") == 3
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("tfevents" in f for _, _, files in os.walk(tmp_path / "tensorboard") for f in files)
    best = keras.saving.load_model(tmp_path / "checkpoints" / "best.keras", safe_mode=True)
    assert best.count_params() == keras.saving.load_model(tmp_path / "model.keras").count_params()
    assert not (tmp_path / "backup").exists()  # removed once the run finished
    with pytest.raises(FileExistsError, match="finished run"):
        train(config)
    with pytest.raises(FileNotFoundError, match="Cannot resume"):
        train(TrainConfig(**{**config.__dict__, "resume": True}))


def test_metrics_report_the_run_as_configured_and_as_its_history_recorded(tmp_path):
    """metrics.json against its sources: the config, the quick recipe and LeNet-5's card, the paper's 60,000
    trainable parameters, Keras' history.csv; the saved model's optimizer took one step per batch of both epochs
    on the recipe's cosine schedule, minimizing the paper's criterion (Eq. 9), with MixUp's one-hot labels too."""
    from keras_cnn.data import load_dataset

    config = TrainConfig(
        model="lenet5", epochs=2, augment="cifar", seed=3, precision="float32", output_dir=str(tmp_path), verbose=0
    )
    metrics = train(config)
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    val = [float(row["val_accuracy"]) for row in rows]
    assert [row["epoch"] for row in rows] == ["0", "1"]
    batch = RECIPES["quick"].batch_size
    assert {k: v for k, v in metrics.items() if k not in ("wall_time_s", "images_per_s")} == {
        "model": "lenet5",
        "dataset": "digits",
        "recipe": "quick",
        "augment": "cifar",
        "randaugment": False,
        "mix": "none",
        "epochs": 2,
        "batch_size": batch,
        "final_val_accuracy": val[-1],
        "best_val_accuracy": max(val),
        "resumed_from_epoch": 0,
        "trainable_params": 60_000,
        "strategy": "_DefaultDistributionStrategy",
        "replicas": 1,
        "precision": "float32",
        "jit": False,
        "seed": 3,
    }
    examples = load_dataset("digits", channels=1, batch_size=batch).train_examples
    assert metrics["images_per_s"] * metrics["wall_time_s"] >= 0.95 * 2 * examples  # timed over both epochs at most
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    steps = 2 * -(-examples // batch)
    schedule = model.optimizer.get_config()["learning_rate"]
    assert int(model.optimizer.iterations.numpy()) == steps and schedule["class_name"] == "CosineDecay"
    assert (schedule["config"]["initial_learning_rate"], schedule["config"]["decay_steps"]) == (
        model_info("lenet5").quick["lr"],
        steps,
    )
    [loss] = model.loss
    assert isinstance(loss, MAPCriterion) and loss.j == 10.0  # the paper's criterion on the logits
    assert model.get_layer("predictions").get_config()["activation"] == "linear"
    mixed = train(TrainConfig(model="lenet5", epochs=1, mix="mixup", output_dir=str(tmp_path / "mixup"), verbose=0))
    assert mixed["mix"] == "mixup"
    [loss] = keras.saving.load_model(tmp_path / "mixup" / "model.keras").loss
    assert isinstance(loss, MAPCriterion)  # one-hot labels go through the same criterion


class _FitReachedError(Exception):
    """Raised by the spied `fit`: the test needs what train() hands to it, not the training."""


def _spy_on_train(monkeypatch, config: TrainConfig, extra_callbacks=(), wrap=None) -> dict:
    """Runs `train(config)` up to `fit`, recording the arguments each part of the run received and the model fit
    was called on."""
    import keras_cnn.data
    import keras_cnn.optimizers
    import keras_cnn.registry
    from keras_cnn.training import run

    calls = {}

    def spy(owner, name):
        real = getattr(owner, name)

        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            result = real(*args, **kwargs)
            calls[name + " returned"] = result
            return result

        monkeypatch.setattr(owner, name, record)

    for owner, name in [
        (run, "resolve_precision"),
        (run.keras.utils, "set_random_seed"),
        (run, "augmenter"),
        (run, "batch_augmenter"),
        (run, "compile_model"),
        (keras_cnn.data, "load_dataset"),
        (keras_cnn.registry, "create_model"),
        (keras_cnn.optimizers, "learning_rate"),
        (keras_cnn.optimizers, "optimizer"),
    ]:
        spy(owner, name)

    # recorded, not applied: op determinism would stay on for the rest of the test process
    monkeypatch.setattr(run.tf.config.experimental, "enable_op_determinism", lambda: calls.setdefault("determinism", 1))

    def fit(model, *args, **kwargs):
        calls["fit"], calls["fitted"] = (args, kwargs), model
        raise _FitReachedError

    monkeypatch.setattr(keras.Model, "fit", fit)
    with pytest.raises(_FitReachedError):
        train(config, callbacks=extra_callbacks, wrap=wrap)
    return calls


def test_train_hands_each_setting_to_the_part_that_uses_it(tmp_path, monkeypatch):
    """The data, the model, the schedule, the optimizer, the compilation and fit each get the run's settings:
    LeNet-5 on the digits at 36 x 36, batch 32, rate 0.003, MixUp (one-hot labels), seed 5."""
    from keras_cnn.training import callbacks, rundir

    mine = keras.callbacks.Callback()
    config = lenet5_run(
        tmp_path, image_size=36, batch_size=32, lr=0.003, augment="cifar", mix="mixup", seed=5, precision="float32"
    )
    calls = _spy_on_train(monkeypatch, config, [mine])
    assert calls["resolve_precision"][0] == ("float32",)
    assert calls["set_random_seed"][0] == (5,) and "determinism" not in calls
    assert calls["augmenter"] == (("cifar",), {"channels": 1, "image_size": 36, "pca_seed": 5})
    assert calls["load_dataset"] == (
        ("digits",),
        {
            "data_dir": None,
            "image_size": 36,
            "channels": 1,
            "batch_size": 32,
            "seed": 5,
            "deterministic": True,
            "one_hot": True,
            "epochs": (0, 1),
            "augment": calls["augmenter returned"],
        },
    )
    data = calls["load_dataset returned"]
    assert calls["batch_augmenter"] == (
        (),
        {"randaugment": False, "mix": "mixup", "classes": 10, "channels": 1, "seed": 5},
    )
    assert calls["create_model"] == (  # logits for the paper's criterion (LeCun et al. 1998, Eq. 9)
        ("lenet5",),
        {"input_shape": (36, 36, 1), "classes": 10, "weights": None, "classifier_activation": None},
    )
    steps = -(-data.train_examples // 32)
    (recipe,), schedule_kwargs = calls["learning_rate"]
    assert schedule_kwargs == {"steps_per_epoch": steps, "epochs": 1, "lr": 0.003}
    assert recipe == dataclasses.replace(RECIPES["quick"], **model_info("lenet5").quick)
    assert calls["optimizer"] == ((recipe, calls["learning_rate returned"]), {"l2": None})  # LeNet-5 carries no L2
    model, optimizer_ = calls["compile_model"][0]
    assert model is calls["create_model returned"] and optimizer_ is calls["optimizer returned"]
    compile_kwargs = calls["compile_model"][1]
    assert isinstance(compile_kwargs.pop("criterion"), MAPCriterion) and compile_kwargs["one_hot"]
    assert compile_kwargs == {"recipe": recipe, "one_hot": True, "jit": False}
    (train_data,), fit = calls["fit"]
    assert train_data.element_spec[1].shape.as_list() == [None, 10]  # MixUp's one-hot labels
    assert {k: v for k, v in fit.items() if k not in ("validation_data", "callbacks")} == {
        "epochs": 1,
        "steps_per_epoch": steps,
        "shuffle": False,
        "verbose": 0,
    }
    assert fit["validation_data"].element_spec[0].shape.as_list() == [None, 36, 36, 1]
    backup, guard, check, logger, board, checkpoint, timer, last = fit["callbacks"]
    assert isinstance(backup, rundir.AtomicBackupAndRestore) and backup.double_checkpoint
    assert backup.backup_dir == str(tmp_path / "backup")
    assert isinstance(guard, callbacks.DivergenceGuard) and (guard.lr, guard.factor, guard.margin) == (0.003, 10, 10)
    assert isinstance(check, callbacks.ResumeCheck) and check.expected_step == 0
    assert isinstance(logger, keras.callbacks.CSVLogger) and logger.append
    assert logger.filename == str(tmp_path / "history.csv")
    assert isinstance(board, keras.callbacks.TensorBoard) and board.log_dir == str(tmp_path / "tensorboard")
    assert isinstance(checkpoint, callbacks.EpochCheckpoint) and checkpoint.monitor == "val_accuracy"
    assert checkpoint.directory == str(tmp_path / "checkpoints")
    assert isinstance(timer, callbacks.TrainTimer) and last is mine


def test_a_plateau_recipe_divides_the_rate_by_ten_after_five_epochs_without_progress(tmp_path, monkeypatch):
    """VGG's recipe (Simonyan & Zisserman 2015: rate 0.01, divided by 10 when validation stops improving): a
    ReduceLROnPlateau on the validation loss after the run's own callbacks; the guard names the recipe's rate."""
    calls = _spy_on_train(monkeypatch, lenet5_run(tmp_path, recipe="vgg", batch_size=32, deterministic=True))
    *_, plateau = calls["fit"][1]["callbacks"]
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    assert (plateau.monitor, plateau.factor, plateau.patience) == ("val_loss", 0.1, 5)
    assert calls["fit"][1]["callbacks"][1].lr == 0.01
    assert calls["learning_rate"][1]["lr"] is None  # the recipe's own
    assert calls["determinism"] == 1 and calls["set_random_seed"][0] == (0,)  # deterministic=True, the default seed
    # a user's plateau recipe that halves the rate: the factor is the recipe's gamma, not Keras' default of 0.1
    monkeypatch.setitem(RECIPES, "halving", dataclasses.replace(RECIPES["vgg"], gamma=0.5))
    calls = _spy_on_train(monkeypatch, lenet5_run(tmp_path / "halving", recipe="halving", batch_size=32))
    assert calls["fit"][1]["callbacks"][-1].factor == 0.5


def test_a_model_that_carries_its_own_l2_gets_no_coupled_l2_and_its_builder_arguments(tmp_path, monkeypatch):
    """CliqueNet's reference code puts weight decay on its variables (kernel regularizers), so the recipe's
    coupled L2 is turned off (0.0) rather than added twice; `model_kwargs` reach the builder."""
    settings = lenet5_run(tmp_path, model="cliquenet_k36_t12", model_kwargs={"dropout_rate": 0.1}, batch_size=32)
    calls = _spy_on_train(monkeypatch, settings)
    assert calls["create_model"][1] == {"input_shape": (32, 32, 1), "classes": 10, "weights": None, "dropout_rate": 0.1}
    assert calls["optimizer"][1] == {"l2": 0.0}


def test_a_run_starts_from_the_weight_set_it_names(tmp_path, monkeypatch):
    """`weights` reaches the builder: with LeNet-5's shipped "digits" set, the model compiled for the run holds the
    weights of weights/lenet5_digits.weights.h5."""
    from keras_cnn.registry import create_model

    calls = _spy_on_train(monkeypatch, lenet5_run(tmp_path, weights="digits", precision="float32"))
    assert calls["create_model"][1]["weights"] == "digits"
    expected = create_model("lenet5", input_shape=(32, 32, 1), classes=10)
    expected.load_weights(ROOT / "weights" / "lenet5_digits.weights.h5")
    for got, want in zip(calls["compile_model"][0][0].get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_worker_other_than_the_chief_writes_into_its_own_folder(tmp_path, monkeypatch):
    """In a cluster (TF_CONFIG) only the chief writes the run folder; worker 1 keeps its files under
    workers/worker1 so that the two never write the same file."""
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    calls = _spy_on_train(monkeypatch, lenet5_run(tmp_path, strategy="default", deterministic=True))
    assert calls["fit"][1]["callbacks"][0].backup_dir == str(tmp_path / "workers" / "worker1" / "backup")


def test_a_multi_worker_run_builds_the_fitted_model_from_a_batch_of_the_data_it_fits(tmp_path, monkeypatch):
    """Under MultiWorkerMirroredStrategy (the default strategy stands in for it here) the model fit is built from a
    local batch of the very dataset fit gets (keras-team/keras#20585); under any other strategy it is not."""
    from keras_cnn.training import run

    built = []
    monkeypatch.setattr(run, "_build_from_a_local_batch", lambda *args: built.append(args))
    _spy_on_train(monkeypatch, lenet5_run(tmp_path / "default", precision="float32"))
    assert built == []
    monkeypatch.setattr(run.tf.distribute, "MultiWorkerMirroredStrategy", type(run.tf.distribute.get_strategy()))
    calls = _spy_on_train(monkeypatch, lenet5_run(tmp_path / "multi_worker", precision="float32"))
    [(model, data)] = built
    assert model is calls["fitted"] and data is calls["fit"][0][0]


def test_a_model_with_an_auxiliary_head_reports_the_main_heads_accuracy_and_the_others_last(tmp_path, monkeypatch):
    """A model with an auxiliary head (GoogLeNet's kind) trains on labels for both; the run's accuracy, its best
    checkpoint and metrics.json follow the main head ("predictions"), and the auxiliary head's last validation
    accuracy is reported beside it. Here the auxiliary head sees one number per image (its mean) and the main
    head 64, so the two accuracies differ."""
    import keras_cnn.registry

    def two_heads(name, input_shape, classes, weights=None, variant=None):
        inputs = keras.Input(input_shape)
        aux = keras.layers.Dense(classes, activation="softmax", name="aux1")(
            keras.layers.GlobalAveragePooling2D()(inputs)
        )
        pooled = keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(inputs))
        main = keras.layers.Dense(classes, activation="softmax", name="predictions")(pooled)
        return keras.Model(inputs, [aux, main], name=name)

    monkeypatch.setattr(keras_cnn.registry, "create_model", two_heads)
    modern = {"variant": "modern"}  # cross-entropy on both heads: the paper variant has its own criterion
    metrics = train(lenet5_run(tmp_path, lr=0.05, precision="float32", model_kwargs=modern))
    with open(tmp_path / "history.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    main, aux = float(row["val_predictions_accuracy"]), float(row["val_aux1_accuracy"])
    assert main > aux + 0.2
    assert (metrics["final_val_accuracy"], metrics["best_val_accuracy"]) == (main, main)
    assert {k: v for k, v in metrics.items() if k.startswith("final_") and k != "final_val_accuracy"} == {
        "final_val_aux1_accuracy": aux
    }


class _Wrapper(keras.Model):
    """What a `wrap` returns in place of the student: a model of its own, built on its first call."""

    def __init__(self, student):
        super().__init__()
        self.student = student

    def call(self, x, training=None):
        return self.student(x, training=training)


def test_a_wrapped_model_is_built_and_compiled_with_the_runs_optimizer_and_xla_setting(tmp_path, monkeypatch):
    """`wrap(model, data, steps)` gets the built student, the run's data and its steps per epoch. What it returns
    is fit in the student's place: built before fit (a backup restores into built variables), compiled with the
    run's optimizer and accuracy as its metric, with XLA only when asked, though a GPU is listed here (where
    Keras' own default would turn XLA on)."""
    from keras_cnn.training import run

    list_devices(monkeypatch, "CPU", "GPU")
    for jit in (False, True):
        seen = []

        def wrap(model, data, steps, seen=seen):
            seen.append((model, data, steps))
            return _Wrapper(model)

        calls = _spy_on_train(monkeypatch, lenet5_run(tmp_path / str(jit), precision="float32", jit=jit), wrap=wrap)
        data = calls["load_dataset returned"]
        [(model, wrapped_data, steps)] = seen
        assert model is calls["create_model returned"] and wrapped_data is data
        assert steps == -(-data.train_examples // RECIPES["quick"].batch_size)
        fitted = calls["fitted"]
        assert isinstance(fitted, _Wrapper) and fitted.student is model and fitted.built
        assert "compile_model" not in calls  # the wrapper's loss is its own
        assert fitted.optimizer is calls["optimizer returned"] and fitted.jit_compile is jit
        assert fitted.get_compile_config()["metrics"] == ["accuracy"]
        [checkpoint] = [c for c in calls["fit"][1]["callbacks"] if isinstance(c, run.EpochCheckpoint)]
        assert checkpoint.monitor == "val_accuracy"  # one output


@pytest.mark.slow
def test_mixed_precision_and_xla_keep_a_float32_head_and_restore_the_policy(tmp_path):
    config = TrainConfig(
        model="lenet5", epochs=1, lr=0.002, output_dir=str(tmp_path), precision="mixed_bfloat16", jit=True, verbose=0
    )
    metrics = train(config)
    assert metrics["precision"] == "mixed_bfloat16" and metrics["jit"]
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.get_layer("c1").compute_dtype == "bfloat16" and model.output.dtype == "float32"


_KILLABLE = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from keras_cnn.training import TrainConfig, train

    class KillAt(keras.callbacks.Callback):  # kill -9: no cleanup, no flush
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 5:
                os.kill(os.getpid(), signal.SIGKILL)

    out, kill, resume = sys.argv[1], sys.argv[2] == "kill", sys.argv[3] == "resume"
    config = TrainConfig(model="lenet5", epochs=2, lr=0.002, augment="cifar", deterministic=True, seed=7,
                         output_dir=out, resume=resume, verbose=0)
    print(train(config, callbacks=[KillAt()] if kill else [])["resumed_from_epoch"])
    """
)


class _InterruptedError(Exception):
    """Raised after a run's first epoch: the run stops there, as a killed one would."""


class _StopAfterTheFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _InterruptedError


def test_an_interrupted_run_resumes_in_process_and_reports_only_what_it_trained(tmp_path, monkeypatch):
    """A run stopped after the first of its two epochs keeps its backup; resumed, it starts at epoch 1 (the
    optimizer's restored step must match the stream's, or ResumeCheck stops it), history.csv holds each epoch
    once, the best checkpoint starts from epoch 0's accuracy (read back from history.csv), the optimizer took one
    step per batch of both epochs, and the speed counts the resumed epoch's images only, both rounded to a tenth:
    the timer here says 0.7 s of training in a fit of 10.06 s."""
    from keras_cnn.data import load_dataset
    from keras_cnn.training import callbacks, run

    class ClockedTimer(callbacks.TrainTimer):
        def on_train_end(self, logs=None):
            self.train_seconds, self.wall = 0.7, 10.06

    config = lenet5_run(tmp_path, epochs=2, precision="float32")
    with pytest.raises(_InterruptedError):
        train(config, callbacks=[_StopAfterTheFirstEpoch()])
    assert (tmp_path / "backup").is_dir() and not (tmp_path / "metrics.json").exists()
    monkeypatch.setattr(run, "TrainTimer", ClockedTimer)
    best_so_far = []

    class RecordedCheckpoint(callbacks.EpochCheckpoint):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            best_so_far.append(self.best)

    monkeypatch.setattr(run, "EpochCheckpoint", RecordedCheckpoint)
    metrics = train(dataclasses.replace(config, resume=True))
    batch = RECIPES["quick"].batch_size
    examples = load_dataset("digits", channels=1, batch_size=batch).train_examples
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    reported = "model dataset recipe augment randaugment mix epochs batch_size final_val_accuracy best_val_accuracy"
    reported += " resumed_from_epoch wall_time_s images_per_s trainable_params strategy replicas precision jit seed"
    assert sorted(metrics) == sorted(reported.split())
    assert (metrics["resumed_from_epoch"], metrics["epochs"]) == (1, 2)
    assert (metrics["wall_time_s"], metrics["images_per_s"]) == (10.1, round(examples / 0.7, 1))
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    val = [float(row["val_accuracy"]) for row in rows]
    assert (metrics["final_val_accuracy"], metrics["best_val_accuracy"]) == (val[1], max(val))
    assert best_so_far == [val[0]]  # the resumed run's best checkpoint competes with epoch 0's, read back
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert int(model.optimizer.iterations.numpy()) == 2 * -(-examples // batch)


def _killable(*args):
    return subprocess.run([sys.executable, "-c", _KILLABLE, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    whole = _killable(str(tmp_path / "whole"), "no", "fresh")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = _killable(str(tmp_path / "cut"), "kill", "fresh")
    assert killed.returncode == -9 and (tmp_path / "cut" / "backup").exists()
    with pytest.raises(FileExistsError, match="interrupted run"):
        train(TrainConfig(model="lenet5", output_dir=str(tmp_path / "cut")))
    resumed = _killable(str(tmp_path / "cut"), "no", "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.split()[-1] == "1"  # epoch 0 finished before the kill in epoch 1
    a = keras.saving.load_model(tmp_path / "whole" / "model.keras").get_weights()
    b = keras.saving.load_model(tmp_path / "cut" / "model.keras").get_weights()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    rows = (tmp_path / "cut" / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


def test_auto_precision_is_bf16_on_native_hardware(monkeypatch):
    """Without native bf16 "auto" is float32, and explicit policies pass through."""
    from keras_cnn.training import config

    monkeypatch.setattr(config, "native_bf16", lambda: True)
    assert config.resolve_precision("auto") == "mixed_bfloat16"
    assert config.resolve_precision("float32") == "float32"
    monkeypatch.setattr(config, "native_bf16", lambda: False)
    assert config.resolve_precision("auto") == "float32"
    assert config.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
