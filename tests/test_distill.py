"""keras_cnn.distill: every loss against a hand computation, the frozen teacher, FitNets' stages, Rocket
Launching's gradient block, and the student that comes out alone."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import distill
from keras_cnn.training import TrainConfig
from tests.helpers import lenet5_run

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def tiny(name: str, width: int, classes: int = 3) -> keras.Model:
    """Two conv-BN-ReLU blocks (the second at half resolution), global pool, softmax `predictions`."""
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i, stride in ((1, 1), (2, 2)):
        x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{i}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def data(n: int = 16):
    return RNG.random((n, 8, 8, 1), dtype=np.float32), RNG.integers(0, 3, n)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def weights(model):
    return [w.copy() for w in model.get_weights()]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


t_logits, s_logits = RNG.normal(size=(4, 3)) * 3, RNG.normal(size=(4, 3))
labels = np.array([0, 2, 1, 2])


def hard_ce(z):
    return -log_softmax(z)[np.arange(len(labels)), labels]


def soft_ce(t, s, T):
    return -(softmax(t / T) * log_softmax(s / T)).sum(-1)


def test_kd_loss_is_alpha_hard_plus_t_squared_soft():
    for T, alpha in ((1.0, 0.5), (4.0, 0.1), (20.0, 0.0)):
        got = distill.kd_loss(labels, t_logits, s_logits, temperature=T, alpha=alpha)
        want = np.mean(alpha * hard_ce(s_logits) + (1 - alpha) * T**2 * soft_ce(t_logits, s_logits, T))
        np.testing.assert_allclose(float(got), want, rtol=1e-5)
    one_hot = np.eye(3)[labels]  # MixUp/CutMix labels give the same loss
    np.testing.assert_allclose(
        float(distill.kd_loss(one_hot, t_logits, s_logits, temperature=4.0, alpha=0.1)),
        float(distill.kd_loss(labels, t_logits, s_logits, temperature=4.0, alpha=0.1)),
        rtol=1e-6,
    )


def test_mimic_fitnets_and_rocket_losses_match_hand_computation():
    np.testing.assert_allclose(
        float(distill.mimic_loss(t_logits, s_logits)), np.mean(0.5 * ((s_logits - t_logits) ** 2).sum(-1)), rtol=1e-6
    )
    got = distill.fitnet_kd_loss(labels, t_logits, s_logits, temperature=3.0, lambda_=2.5)
    np.testing.assert_allclose(
        float(got), np.mean(hard_ce(s_logits) + 2.5 * soft_ce(t_logits, s_logits, 3.0)), rtol=1e-5
    )
    got = distill.rocket_loss(labels, s_logits, t_logits, hint_weight=0.03)
    want = np.mean(hard_ce(s_logits) + hard_ce(t_logits) + 0.03 * ((s_logits - t_logits) ** 2).sum(-1))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    hint, regressed = RNG.normal(size=(2, 3, 3, 4)), RNG.normal(size=(2, 3, 3, 4))
    np.testing.assert_allclose(
        float(distill.hint_loss(hint, regressed)), np.mean(0.5 * ((hint - regressed) ** 2).mean((1, 2, 3))), rtol=1e-6
    )


def test_logits_share_the_weights_and_give_the_softmax_back():
    model = tiny("m", 4)
    x, _ = data(4)
    logits = distill.logits_of(model)
    np.testing.assert_allclose(softmax(np.asarray(logits(x), np.float64)), model(x), atol=1e-6)
    assert {id(w) for w in logits.weights} == {id(w) for w in model.weights}
    lenet = keras_cnn.create_model("lenet5", input_shape=(32, 32, 1), classes=10)  # an Activation head
    x32 = RNG.random((2, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(softmax(np.asarray(distill.logits_of(lenet)(x32), np.float64)), lenet(x32), atol=1e-6)
    with pytest.raises(ValueError, match="no 'predictions' layer"):
        distill.logits_of(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_pre_activation_is_the_dense_heads_affine_part_with_or_without_bias():
    """logits = features @ W + b by hand, with a bias that is not zero (softmax cannot tell +b from -b when b is
    the same for every class, as a freshly built zero bias is), and features @ W for a head without bias."""
    x, _ = data(4)
    for use_bias in (True, False):
        inputs = keras.Input((8, 8, 1))
        features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(5, 3, name="conv")(inputs))
        head = keras.layers.Dense(3, activation="softmax", use_bias=use_bias, name="predictions")
        model = keras.Model(inputs, head(features))
        if use_bias:
            head.bias.assign(RNG.normal(size=3).astype("float32"))
        f = np.asarray(keras.Model(inputs, features)(x), np.float64)
        expected = f @ np.asarray(head.kernel, np.float64) + (np.asarray(head.bias) if use_bias else 0.0)
        np.testing.assert_allclose(distill.logits_of(model)(x), expected, atol=1e-5)


def test_rocket_launching_takes_logits_of_softmax_heads_and_weighs_both_accuracies():
    """A RocketLaunching put together by hand from heads that end in softmax `predictions`: `call` gives their
    logits; `accuracy` is the light net's (weighted by the sample weights when compiled as a weighted metric) and
    `booster_accuracy` the booster's (unweighted, as compile's `metrics` are), with sparse or one-hot labels."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)  # not the module's RNG: the data must not depend on the tests run before
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    shared = keras.Model(inputs, features, name="shared")

    def head(name):
        features = keras.Input(shared.output.shape[1:])
        flat = keras.layers.Flatten()(features)  # per-example logits that vary (pooled ones hardly do)
        dense = keras.layers.Dense(3, activation="softmax", name="predictions")
        outputs = dense(flat)
        dense.bias.assign(rng.normal(scale=0.1, size=3).astype("float32"))
        return keras.Model(features, outputs, name=name)

    light_head, booster_head = head("light_head"), head("booster_head")
    model = distill.RocketLaunching(shared, light_head, booster_head)
    x, y = rng.random((64, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 64)
    light, booster = (np.asarray(t, np.float64) for t in model(x))
    np.testing.assert_allclose(softmax(light), light_head(shared(x)), atol=1e-5)
    np.testing.assert_allclose(softmax(booster), booster_head(shared(x)), atol=1e-5)
    weight = rng.random(64).astype("float32")

    def accuracy(logits, w=None):
        w = np.ones(64) if w is None else w
        return np.sum(w * (logits.argmax(-1) == y)) / np.sum(w)

    assert accuracy(light) != accuracy(booster) and accuracy(light) != accuracy(light, weight)  # all told apart
    for labels in (y, np.eye(3, dtype="float32")[y]):
        model.compile(weighted_metrics=["accuracy"])  # "accuracy" resolves to sparse or categorical on first use
        got = model.evaluate(x, labels, sample_weight=weight, batch_size=64, verbose=0, return_dict=True)
        assert got["accuracy"] == pytest.approx(accuracy(light, weight), abs=1e-6)
        assert got["booster_accuracy"] == pytest.approx(accuracy(booster), abs=1e-6)
    assert not np.allclose(model(x, training=True)[0], light, atol=1e-3)  # called alone, it infers (BN's moving stats)


def test_a_teacher_with_dropout_is_read_in_inference_mode_for_its_logits_and_its_hint():
    """Dropout below the teacher's hint layer: KD's loss and FitNets' stage-1 loss read the teacher without it
    (in inference mode), so both are the same every time."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Dropout(0.5)(keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs))
    x = keras.layers.Activation("relu", name="hint_out")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.GlobalAveragePooling2D()(x))
    teacher, student = keras.Model(inputs, outputs), tiny("student", 4)
    images, labels = data(8)
    kd = distill.Distiller(teacher, student, temperature=4.0, alpha=0.1)
    logits = np.asarray(distill.logits_of(student)(images))
    want = float(distill.kd_loss(labels, distill.logits_of(teacher)(images), logits, temperature=4.0, alpha=0.1))
    hints = distill.FitNetDistiller(teacher, student, hint_layer="hint_out", guided_layer="block2_out").hints
    regressed = np.asarray(hints(images))
    hint = keras.Model(teacher.inputs, teacher.get_layer("hint_out").output)(images, training=False)
    want_hint = float(distill.hint_loss(np.asarray(hint), regressed))
    for _ in range(2):
        assert float(kd.compute_loss(images, labels, logits)) == pytest.approx(want, rel=1e-6)
        assert float(hints.compute_loss(images, None, regressed)) == pytest.approx(want_hint, rel=1e-6)


def test_a_distiller_called_without_training_infers():
    """`model(x)` on a distiller, as Keras' predict and evaluate call it, reads the student in inference mode
    (BN's moving statistics), like any Keras model; `training=True` is for fit."""
    teacher, student = tiny("teacher", 8), tiny("student", 4)
    for layer in student.layers:  # moving statistics far from the batch's, so the two modes differ
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.5))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 4.0))
    images, _ = data(8)
    kd = distill.Distiller(teacher, student)
    hints = distill.FitNetDistiller(teacher, student, hint_layer="block2_out", guided_layer="block1_out").hints
    guided = keras.Model(student.inputs, student.get_layer("block1_out").output)
    for model, inferred in (
        (kd, distill.logits_of(student)(images, training=False)),
        (hints, hints.regressor(guided(images, training=False))),
    ):
        np.testing.assert_allclose(model(images), inferred, atol=1e-5)
        assert not np.allclose(model(images, training=True), inferred, atol=1e-3)


@pytest.mark.parametrize("method", ["kd", "mimic"])
def test_teacher_is_frozen_and_the_student_comes_out_alone(method, tmp_path):
    teacher, student = tiny("teacher", 8), tiny("student", 4)
    before, student_before = weights(teacher), weights(student)  # includes BN moving statistics
    cls = distill.Distiller if method == "kd" else distill.MimicDistiller
    model = cls(teacher, student)
    model.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"] if method == "kd" else None)
    x, y = data()
    history = model.fit(x, y if method == "kd" else None, epochs=2, batch_size=8, verbose=0)  # mimic: unlabeled
    assert np.isfinite(history.history["loss"]).all()
    assert same(before, teacher.get_weights())
    assert not same(student_before, student.get_weights())
    path = tmp_path / "student.keras"
    student.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert reloaded.count_params() == student.count_params()
    np.testing.assert_allclose(reloaded(x), student(x), atol=1e-6)


def test_fitnets_stage_one_trains_only_up_to_the_guided_layer_and_lambda_decays():
    teacher, student = tiny("teacher", 8), tiny("student", 4)
    model = distill.FitNetDistiller(teacher, student, hint_layer="block2_out", guided_layer="block1_out")
    assert model.hints.regressor.kernel.shape == (5, 5, 4, 8)  # N_g - N_h + 1 = 8 - 4 + 1, teacher's channels
    lower = [student.get_layer(n) for n in ("block1_conv", "block1_bn")]
    upper = [student.get_layer(n) for n in ("block2_conv", "block2_bn", "predictions")]
    before = [weights(layer) for layer in (*lower, *upper)] + [weights(teacher)]
    x, y = data()
    model.fit_hints(x, epochs=2, batch_size=8, verbose=0)
    after = [weights(layer) for layer in (*lower, *upper)] + [weights(teacher)]
    assert [same(b, a) for b, a in zip(before, after, strict=True)] == [False, False, True, True, True, True]

    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(float(model.lambda_.numpy())))
    model.compile(keras.optimizers.SGD(0.05), metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[record])
    np.testing.assert_allclose(seen, [4.0, 2.5, 1.0])
    seen.clear()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[record])
    np.testing.assert_allclose(seen, [4.0, 1.0])  # from start to end whatever the number of epochs
    assert same(before[-1], teacher.get_weights())
    with pytest.raises(ValueError, match="Need temperature > 0"):
        distill.FitNetDistiller(teacher, student, hint_layer="block2_out", guided_layer="block1_out", temperature=0)
    with pytest.raises(ValueError, match="smaller than the hint's"):
        distill.FitNetDistiller(teacher, student, hint_layer="block1_out", guided_layer="block2_out")
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*block1_out"):
        distill.FitNetDistiller(teacher, student, hint_layer="conv9", guided_layer="block1_out")


def test_hints_train_the_regressor_with_rmsprop_at_5e_3_for_the_epochs_asked_then_freeze_it(capsys):
    """Stage 1 (FitNets section 2.2): the regressor learns with the student's lower layers, by default under
    RMSprop at the paper's 5e-3, for `epochs` with the caller's fit arguments; afterwards it is frozen again."""
    teacher, student = tiny("teacher", 8), tiny("student", 4)
    model = distill.FitNetDistiller(teacher, student, hint_layer="block2_out", guided_layer="block1_out")
    regressor = model.hints.regressor
    before, batches = weights(regressor), []
    count = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(batch))
    history = model.fit_hints(data()[0], epochs=2, batch_size=8, verbose=0, callbacks=[count])
    assert len(history.history["loss"]) == 2 and len(batches) == 4 and capsys.readouterr().out == ""
    assert not same(before, regressor.get_weights()) and regressor.trainable is False
    optimizer = model.hints.optimizer
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(5e-3)


def test_the_middle_layer_is_the_middle_block_output():
    """FitNets' default hint and guided layers: the middle of the block outputs (the 3rd of 5)."""
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for i in range(5):
        x = keras.layers.Activation("relu", name=f"block{i}_out")(keras.layers.Conv2D(2, 3, padding="same")(x))
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.Flatten()(x))
    assert distill.middle_layer(keras.Model(inputs, outputs)) == "block2_out"
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="predictions")], name="flat")
    with pytest.raises(ValueError, match=r"'flat' has no activation layer with a feature-map output to use as a hint"):
        distill.middle_layer(flat)


def test_block_outputs_are_the_out_activations_else_every_activated_feature_map():
    """keras.applications' ResNets name their block outputs `*_out`; without such names every activated feature
    map counts (activation layers and convolutions with an activation), never a linear one or a flat vector."""
    inputs = keras.Input((8, 8, 1))
    relu_conv = keras.layers.Conv2D(2, 3, activation="relu", name="relu_conv")(inputs)
    linear_conv = keras.layers.Conv2D(2, 3, name="linear_conv")(relu_conv)
    x = keras.layers.Activation("relu", name="stage1_out")(linear_conv)
    x = keras.layers.Activation("relu", name="stage2_out")(keras.layers.Conv2D(2, 1, activation="relu", name="c")(x))
    head = keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.Flatten()(x))
    assert distill.block_outputs(keras.Model(inputs, head)) == ["stage1_out", "stage2_out"]
    y = keras.layers.Activation("relu", name="act")(linear_conv)
    plain = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.Flatten()(y))
    )
    assert distill.block_outputs(plain) == ["relu_conv", "act"]


def test_rocket_gradient_block_and_the_light_net_alone():
    light, booster = tiny("light", 4), tiny("booster", 4)
    model = distill.rocket_from_models(light, booster, split_layer="block1_out", hint_weight=0.03)
    x, y = data(8)
    model(x)
    shared = {id(v) for v in light.get_layer("block1_conv").trainable_weights}
    booster_only = {id(v) for v in booster.get_layer("block2_conv").trainable_weights}
    variables = model.trainable_variables
    assert shared <= {id(v) for v in variables} and booster_only <= {id(v) for v in variables}
    assert not {id(v) for v in booster.get_layer("block1_conv").weights} & {id(v) for v in variables}

    def gradients(hint_weight):
        model.hint_weight = hint_weight
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x, y, model(x, training=False))
        return {id(v): g for v, g in zip(variables, tape.gradient(loss, variables), strict=True)}

    with_hint, without = gradients(0.03), gradients(0.0)
    hint_part = {k: np.abs(np.asarray(with_hint[k]) - np.asarray(without[k])).max() for k in with_hint}
    assert max(hint_part[k] for k in booster_only) == 0.0  # the gradient block
    assert max(hint_part[k] for k in shared) > 0.0

    model.hint_weight = 0.03
    model.compile(keras.optimizers.SGD(0.05), metrics=["accuracy"])
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert set(history.history) >= {"accuracy", "booster_accuracy", "loss"}
    assert model.student is light and len(light.outputs) == 1
    with pytest.raises(ValueError, match="hint_weight must be >= 0"):
        distill.rocket_from_models(light, booster, split_layer="block1_out", hint_weight=-1.0)
    with pytest.raises(ValueError, match="booster head takes"):
        distill.rocket_from_models(tiny("a", 4), tiny("b", 6), split_layer="block1_out")


def test_distill_example_trains_the_teacher_then_the_student(tmp_path):
    """Teacher and student LeNet-5 on the digits: the teacher is trained into <output_dir>/teacher, then
    FitNets (hints, then KD) trains the student; a missing teacher file is a clear error before any training.
    (The reuse of a finished teacher is the in-process test's below.)"""
    run = [
        sys.executable,
        str(ROOT / "examples/distill.py"),
        "--teacher=lenet5",
        "--student=lenet5",
        "--epochs=5",  # LeNet-5's own criterion needs about 5 epochs on the digits to make a teacher worth copying
        "--lr=0.002",
        "--hint_epochs=1",
        f"--output_dir={tmp_path}",
    ]
    done = subprocess.run([*run, "--method=fitnets"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    teacher = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    assert metrics["method"] == "fitnets" and metrics["teacher"] == "lenet5"
    assert metrics["teacher_val_accuracy"] == teacher["final_val_accuracy"] > 0.5
    assert metrics["final_val_accuracy"] > 0.3 and metrics["epochs"] == 5
    student = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert student.name == "lenet5" and len(student.outputs) == 1
    bad = distill.DistillConfig(method="kd", teacher="lenet5", teacher_weights="/nonexistent.keras")
    with pytest.raises(FileNotFoundError, match=r"Teacher weights '/nonexistent\.keras' do not exist"):
        distill.train_distilled(TrainConfig(model="lenet5", output_dir=str(tmp_path / "bad")), bad)


def test_train_distilled_in_process_trains_reuses_and_checks_the_teacher(tmp_path):
    """The library path of the distill example: the teacher is trained into <output_dir>/teacher and its
    accuracy recorded; a finished teacher is reused; a teacher folder of another model or dataset, a teacher
    file of another shape, and more hint epochs than epochs are refused."""
    config = lenet5_run(tmp_path / "kd", epochs=5)  # a teacher worth copying (its criterion starts slowly)
    metrics = distill.train_distilled(config, distill.DistillConfig(method="kd", teacher="lenet5"))
    teacher_metrics = json.loads((tmp_path / "kd" / "teacher" / "metrics.json").read_text())
    assert teacher_metrics["model"] == "lenet5" and teacher_metrics["dataset"] == "digits"
    assert (metrics["method"], metrics["teacher"]) == ("kd", "lenet5")
    assert metrics["teacher_val_accuracy"] == teacher_metrics["final_val_accuracy"]
    assert json.loads((tmp_path / "kd" / "metrics.json").read_text()) == metrics
    student = keras.saving.load_model(tmp_path / "kd" / "model.keras", safe_mode=True)
    assert student.name == "lenet5" and len(student.outputs) == 1
    stamp = (tmp_path / "kd" / "teacher" / "model.keras").stat().st_mtime_ns
    again = distill.train_distilled(
        # mimic regresses the teacher's logits, the negated RBF penalties (tens to hundreds): a paper-variant
        # student, whose own logits are such penalties, diverged at 0.002 and 0.0002; the modern one's are affine
        lenet5_run(tmp_path / "kd", epochs=5, overwrite=True, model_kwargs={"variant": "modern"}),
        distill.DistillConfig(method="mimic", teacher="lenet5"),
    )
    assert again["method"] == "mimic" and again["teacher_val_accuracy"] == teacher_metrics["final_val_accuracy"]
    assert (tmp_path / "kd" / "teacher" / "model.keras").stat().st_mtime_ns == stamp  # reused, not retrained

    other = tmp_path / "other" / "teacher"
    other.mkdir(parents=True)
    (other / "metrics.json").write_text(json.dumps({"model": "resnet20", "dataset": "digits"}))
    with pytest.raises(FileExistsError, match=r"holds a resnet20 teacher trained on digits; choose another"):
        distill.train_distilled(lenet5_run(tmp_path / "other"), distill.DistillConfig(teacher="lenet5"))
    (other / "metrics.json").write_text(json.dumps({"model": "lenet5", "dataset": "photos"}))
    with pytest.raises(FileExistsError, match=r"holds a lenet5 teacher trained on photos"):
        distill.train_distilled(lenet5_run(tmp_path / "other"), distill.DistillConfig(teacher="lenet5"))

    five = tmp_path / "five.keras"
    keras_cnn.create_model("lenet5", input_shape=(32, 32, 1), classes=5).save(five)
    with pytest.raises(ValueError, match=r"The teacher takes \(32, 32, 1\) and gives 5 classes; the student"):
        distill.train_distilled(
            lenet5_run(tmp_path / "five"), distill.DistillConfig(teacher="lenet5", teacher_weights=str(five))
        )
    given = tmp_path / "given.keras"
    keras.saving.load_model(tmp_path / "kd" / "teacher" / "model.keras", safe_mode=True).save(given)
    fitnets = distill.DistillConfig(method="fitnets", teacher="lenet5", teacher_weights=str(given), hint_epochs=2)
    with pytest.raises(ValueError, match=r"hint_epochs \(2\) cannot exceed the run's epochs"):
        distill.train_distilled(lenet5_run(tmp_path / "hints"), fitnets)
    done = distill.train_distilled(lenet5_run(tmp_path / "hints", epochs=2), fitnets)
    assert done["teacher_val_accuracy"] is None and done["method"] == "fitnets" and done["epochs"] == 2
    assert not (tmp_path / "hints" / "teacher").exists()  # a given teacher file is not retrained
    with pytest.raises(ValueError, match=r"Unknown distillation method 'hinton'; choose one of \['kd', 'mimic'"):
        distill.train_distilled(lenet5_run(tmp_path / "x"), distill.DistillConfig(method="hinton"))


def test_the_teacher_is_trained_with_the_students_settings_but_its_own_model(tmp_path, monkeypatch):
    """The teacher run is the student's config with the teacher's name, into <output_dir>/teacher, from scratch
    (no weights) and without the student's builder arguments; a teacher file that is not there is named."""
    from keras_cnn.training.distill import runs

    calls = []
    monkeypatch.setattr(runs, "train", lambda config: calls.append(config) or {"final_val_accuracy": 0.5})
    student = lenet5_run(tmp_path, lr=0.003, seed=4, model_kwargs={"variant": "modern"}, weights="lenet5.keras")
    path, accuracy = runs._teacher(student, distill.DistillConfig(teacher="resnet20"))
    out = str(tmp_path / "teacher")
    assert (path, accuracy) == (str(tmp_path / "teacher" / "model.keras"), 0.5)
    expected = {**vars(student), "model": "resnet20", "output_dir": out, "model_kwargs": {}, "weights": None}
    assert calls == [TrainConfig(**expected)]
    missing = str(tmp_path / "nowhere.keras")
    message = rf"Teacher weights '{missing}' do not exist; give a \.keras file written by train_cifar\.py"
    with pytest.raises(FileNotFoundError, match=message + r" \(model\.keras\) or model\.save\(\)\."):
        runs._teacher(student, distill.DistillConfig(teacher="resnet20", teacher_weights=missing))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"temperature must be a finite number > 0; received {bad!r}"):
            distill.train_distilled(student, distill.DistillConfig(temperature=bad, teacher_weights=missing))
    with pytest.raises(FileNotFoundError, match="Teacher weights"):  # a temperature below 1 is allowed
        distill.train_distilled(student, distill.DistillConfig(temperature=0.5, teacher_weights=missing))


def test_each_method_gets_the_distill_configs_settings(tmp_path, capsys):
    """`train_distilled`'s wrap: KD at T=4 and FitNets at T=3 unless told, alpha, FitNets' hint stage over the
    run's steps per epoch and quietly when the run is, Rocket Launching's booster built for the student's input
    and classes and split at the student's first block output, and a teacher of another shape named exactly."""
    from types import SimpleNamespace

    from keras_cnn.training.distill import runs

    keras.utils.set_random_seed(0)
    teacher, student, path = tiny("teacher", 8), tiny("student", 4), str(tmp_path / "teacher.keras")
    teacher.save(path)
    x, y = data(16)
    data_ = SimpleNamespace(classes=3, train=tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
    config = lenet5_run(tmp_path)

    def build(**settings):
        return runs._distiller(distill.DistillConfig(**settings), student, data_, 1, path, config)

    kd = build(method="kd")
    assert isinstance(kd, distill.Distiller) and (kd.temperature, kd.alpha) == (4.0, 0.1)
    kd = build(method="kd", temperature=2.0, alpha=0.3)
    assert (kd.temperature, kd.alpha) == (2.0, 0.3)
    assert isinstance(build(method="mimic"), distill.MimicDistiller)
    assert build(method="fitnets", hint_epochs=0).temperature == 3.0
    fitnets = build(method="fitnets", temperature=2.0, hint_epochs=2)
    assert fitnets.temperature == 2.0 and int(fitnets.hints.optimizer.iterations.numpy()) == 2  # 1 step x 2 epochs
    assert capsys.readouterr().out == ""
    chatty = lenet5_run(tmp_path, verbose=2)
    runs._distiller(distill.DistillConfig(method="fitnets", hint_epochs=1), student, data_, 1, path, chatty)
    assert capsys.readouterr().out.count("1/1 - ") == 1  # one line per hint epoch, as the run's fit prints

    light = keras_cnn.create_model("lenet5", input_shape=(40, 40, 1), classes=7)
    rocket = runs._distiller(
        distill.DistillConfig(method="rocket", teacher="lenet5", hint_weight=0.05),
        light,
        SimpleNamespace(classes=7),
        1,
        None,
        config,
    )
    light_logits, booster_logits = rocket(np.zeros((2, 40, 40, 1), "float32"))
    assert light_logits.shape == booster_logits.shape == (2, 7) and rocket.hint_weight == 0.05
    assert rocket.shared.layers[-1].name == distill.block_outputs(light)[0]
    five = tmp_path / "five.keras"
    tiny("five", 8, classes=5).save(five)
    with pytest.raises(ValueError) as raised:
        runs._distiller(distill.DistillConfig(), student, data_, 1, str(five), config)
    assert str(raised.value) == "The teacher takes (8, 8, 1) and gives 5 classes; the student (8, 8, 1) and 3."


def test_train_distilled_rocket_trains_light_and_booster_from_scratch(tmp_path):
    """LeNet-5's RBF head (an `Activation` named predictions, no Dense) as both light net and booster; the
    caller's callbacks reach the fit."""
    epochs = []
    count = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    rocket = distill.DistillConfig(method="rocket", teacher="lenet5")
    metrics = distill.train_distilled(lenet5_run(tmp_path), rocket, callbacks=[count])
    assert epochs == [0]
    assert (metrics["method"], metrics["teacher"]) == ("rocket", "lenet5") and "teacher_val_accuracy" not in metrics
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert history[0].split(",") == [
        "epoch", "accuracy", "booster_accuracy", "loss", "val_accuracy", "val_booster_accuracy", "val_loss"
    ]  # fmt: skip
    assert metrics["final_val_booster_accuracy"] == float(history[1].split(",")[5])
    assert not (tmp_path / "teacher").exists()
    student = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert student.name == "lenet5" and len(student.outputs) == 1
