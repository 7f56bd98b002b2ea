"""Stochastic depth (Huang et al. 2016) as the reference Torch code runs it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.layers import StochasticDepth, survival_probabilities
from tests.helpers import shapes_only


def _layer(p, seed=1):
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(3, 3, padding="same")(inputs)
    branch = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.5)(x))
    return StochasticDepth(branch, p, seed=seed)


def _data():
    rng = np.random.default_rng(0)
    return rng.random((2, 4, 4, 3), dtype=np.float32), rng.random((2, 4, 4, 3), dtype=np.float32)


def test_linear_schedule_matches_the_paper():
    p = survival_probabilities(54, 0.5)
    assert p[0] == pytest.approx(1 - 1 / 108) and p[-1] == 0.5
    assert sum(p) == pytest.approx(
        40.25
    )  # expected active blocks of ResNet-110, Huang et al. 2016, Sec. 3 (linear decay to p_L = 0.5)
    assert survival_probabilities(3, 0.8, "uniform") == [0.8, 0.8, 0.8]
    for p_L in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"p_L must be in \(0, 1\]"):
            survival_probabilities(3, p_L)
    with pytest.raises(ValueError, match="Unknown survival schedule 'cosine'"):
        survival_probabilities(3, 0.5, "cosine")


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_residual_join_names_the_join_and_its_branch_and_keeps_the_dtype(p):
    from keras_cnn.layers import residual_join

    x = keras.Input((4, 4, 3), dtype="float64")
    y = residual_join(x, x, lambda t: keras.layers.Conv2D(3, 1, dtype="float64")(t), block="b1", survival_probability=p)
    join = keras.Model(x, y).get_layer("b1_add")
    if p == 1.0:
        assert isinstance(join, keras.layers.Add)
    else:
        assert isinstance(join, StochasticDepth) and join.branch.name == "b1_branch"
        assert join.branch.inputs[0].dtype == "float64"


def test_inference_is_shortcut_plus_p_times_branch():
    layer, (x, shortcut) = _layer(0.7), _data()
    expected = shortcut + 0.7 * np.asarray(layer.branch(x, training=False))
    np.testing.assert_allclose(layer([x, shortcut], training=False), expected, rtol=1e-6)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_closed_gate_is_the_identity_and_skips_the_branch(graph):
    layer, (_, shortcut) = _layer(0.5), _data()
    rng = np.random.default_rng(1)

    def call(a, b):
        return layer([a, b], training=True)

    call = tf.function(call) if graph else call
    bn = layer.branch.layers[-1]
    seen = set()
    for _ in range(60):
        before = bn.moving_mean.numpy().copy()
        x = rng.random((2, 4, 4, 3), dtype=np.float32)  # fresh data, so an open gate always moves the statistics
        y = np.asarray(call(x, shortcut))
        closed = np.array_equal(y, shortcut)
        moved = not np.array_equal(before, bn.moving_mean.numpy())
        assert closed != moved  # a closed gate neither adds the branch nor updates its BN statistics
        assert y.shape == shortcut.shape
        seen.add(closed)
    assert seen == {True, False}


def test_closed_gate_gives_the_branch_no_gradient():
    layer, (x, shortcut) = _layer(0.5), _data()
    grads = {}
    for _ in range(40):
        with tf.GradientTape() as tape:
            y = layer([x, shortcut], training=True)
            loss = tf.reduce_sum(y * y)
        g = tape.gradient(loss, layer.branch.trainable_weights[0])
        closed = np.array_equal(np.asarray(y), shortcut)
        grads.setdefault(closed, []).append(0.0 if g is None else float(tf.reduce_max(tf.abs(g))))
    assert max(grads[True]) == 0.0 and min(grads[False]) > 0.0


def test_open_gate_adds_the_training_mode_branch_and_seeded_layers_draw_the_same_gates():
    (x, shortcut), gates = _data(), []
    for _ in range(2):
        layer = _layer(0.5, seed=3)
        outputs = [np.asarray(layer([x, shortcut], training=True)) for _ in range(24)]
        gates.append([not np.array_equal(y, shortcut) for y in outputs])
    assert gates[0] == gates[1] and set(gates[0]) == {True, False}
    branch = np.asarray(layer.branch(x, training=True))  # BN on the batch's statistics: the same every call
    for y in (y for y, opened in zip(outputs, gates[1], strict=True) if opened):
        np.testing.assert_allclose(y, shortcut + branch, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block", [0, 26, 53])
def test_open_rate_of_block_l_is_p_l(block):
    p_l = survival_probabilities(54, 0.5)[block]
    layer, (x, shortcut) = _layer(p_l, seed=block), _data()
    call = tf.function(lambda a, b: layer([a, b], training=True))
    n = 1500
    opened = sum(not np.array_equal(np.asarray(call(x, shortcut)), shortcut) for _ in range(n))
    tolerance = 4 * np.sqrt(p_l * (1 - p_l) / n) + 1e-9
    assert abs(opened / n - p_l) <= tolerance, (opened / n, p_l)


@shapes_only()
def test_resnet_builders_place_the_schedule_on_their_blocks():
    model = keras_cnn.create_model("sd_resnet110")
    gates = [layer for layer in model.layers if isinstance(layer, StochasticDepth)]
    assert [g.survival_probability for g in gates] == pytest.approx(survival_probabilities(54, 0.5))
    assert len({g.name for g in gates}) == 54 and gates[0].name == "conv2_block1_add"
    uniform = keras_cnn.ResNet18(p_L=0.8, schedule="uniform", input_shape=(32, 32, 3))
    assert {g.survival_probability for g in uniform.layers if isinstance(g, StochasticDepth)} == {0.8}
    assert not any(isinstance(g, StochasticDepth) for g in keras_cnn.ResNet20().layers)


@pytest.mark.parametrize("builder", [keras_cnn.ResNet50, keras_cnn.ResNet50V2, keras_cnn.PreActResNet164])
@shapes_only()
def test_every_resnet_family_takes_a_survival_schedule(builder):
    model = builder(p_L=0.5, input_shape=(32, 32, 3), classes=3)
    gates = [layer for layer in model.layers if isinstance(layer, StochasticDepth)]
    assert gates and gates[-1].survival_probability == 0.5
    assert keras_cnn.trainable_params(model) == keras_cnn.trainable_params(builder(input_shape=(32, 32, 3), classes=3))


def test_stochastic_depth_model_trains_and_round_trips(tmp_path):
    model = keras_cnn.CifarResNet(depth=20, p_L=0.5, input_shape=(16, 16, 3), classes=3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 16, 16, 3), dtype=np.float32), rng.integers(0, 3, 16)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    model.save(tmp_path / "sd.keras")
    reloaded = keras.saving.load_model(tmp_path / "sd.keras")
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(reloaded(x, training=False)))
    gate = reloaded.get_layer("conv4_block3_add")
    assert isinstance(gate, StochasticDepth) and gate.survival_probability == 0.5


def test_survival_probability_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"survival_probability must be in \(0, 1\]"):
        _layer(1.5)
