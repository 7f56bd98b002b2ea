"""fold_batchnorm: an inference copy with each batch norm after a convolution folded into it (Ioffe & Szegedy
2015, Alg. 2: in inference y = gamma * (x - mean) / sqrt(var + eps) + beta, an affine map per channel)."""

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn.io import load_model
from tests.helpers import randomize_statistics


def norms(model: keras.Model) -> int:
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


# (name, input shape, batch norms left after folding): which batch norms follow a convolution is the paper's.
CASES = [
    ("resnet20", (32, 32, 3), 0),  # He et al. 2016: every convolution is followed by its batch norm (Conv2D)
    ("mobilenet", (32, 32, 3), 0),  # Howard et al. 2017, Fig. 3: depthwise and pointwise each then BN (Depthwise)
    ("inception_v3", (75, 75, 3), 0),  # every conv_bn; keras.applications' BN has no gamma (scale=False)
    ("xception", (71, 71, 3), 0),  # Chollet 2017: separable convolutions, each then BN (SeparableConv2D)
    # Huang et al. 2017, DenseNet-BC-100 (k=12): BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3) in 3 blocks of 16 layers;
    # only the BN after each 1x1 follows a convolution: 3 x 16 + 2 transitions + the final BN stay.
    ("densenet_bc", (32, 32, 3), 3 * 16 + 2 + 1),
]


@pytest.mark.parametrize(("name", "shape", "left"), CASES, ids=[case[0] for case in CASES])
def test_a_folded_model_computes_what_the_built_one_does_in_inference(name, shape, left):
    rng = np.random.default_rng(40)
    model = keras_cnn.create_model(name, input_shape=shape, classes=10)
    randomize_statistics(model, rng)
    folded = keras_cnn.fold_batchnorm(model)
    assert norms(folded) == left and norms(model) > left
    x = rng.random((3, *shape), dtype=np.float32)
    np.testing.assert_allclose(folded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-4, atol=1e-6)
    assert folded.count_params() < model.count_params()  # 4 statistics per channel out, at most 1 bias in
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]


def test_a_folded_mixed_bfloat16_model_keeps_its_policy():
    rng = np.random.default_rng(41)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy(previous)
    randomize_statistics(model, rng)
    folded = keras_cnn.fold_batchnorm(model)
    conv = folded.get_layer(next(layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)))
    assert (conv.compute_dtype, conv.variable_dtype, conv.use_bias) == ("bfloat16", "float32", True)
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    built, served = model.predict_on_batch(x).astype("float32"), folded.predict_on_batch(x).astype("float32")
    assert np.abs(served - built).max() <= 0.05 * np.abs(built).max()  # bfloat16 keeps 8 bits of mantissa


def test_only_a_convolution_read_by_its_batch_norm_alone_is_folded():
    rng = np.random.default_rng(42)
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, name="shared")(inputs)  # read by a batch norm and by the second output
    alone = keras.layers.Conv2D(4, 3, name="alone")(inputs)
    activated = keras.layers.Conv2D(4, 3, activation="relu", name="activated")(inputs)  # BN(relu(conv))
    outputs = [
        keras.layers.BatchNormalization(name="bn_shared")(shared),
        keras.layers.Flatten()(shared),
        keras.layers.BatchNormalization(name="bn_alone")(alone),
        keras.layers.BatchNormalization(name="bn_activated")(activated),
    ]
    model = keras.Model(inputs, outputs)
    randomize_statistics(model, rng)
    assert keras_cnn.fold.foldable_pairs(model) == {"alone": "bn_alone"}
    folded = keras_cnn.fold_batchnorm(model)
    x = rng.random((2, 8, 8, 3), dtype=np.float32)
    for ours, theirs in zip(folded.predict_on_batch(x), model.predict_on_batch(x), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for kept in ("bn_shared", "bn_activated"):
        assert isinstance(folded.get_layer(kept), keras.layers.BatchNormalization)
    assert not isinstance(folded.get_layer("bn_alone"), keras.layers.BatchNormalization)


def test_a_folded_model_saves_and_loads_safely(tmp_path):
    rng = np.random.default_rng(43)
    model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3), classes=10)
    randomize_statistics(model, rng)
    folded = keras_cnn.fold_batchnorm(model)
    folded.save(tmp_path / "folded.keras")
    loaded = load_model(tmp_path / "folded.keras")  # safe_mode: no code is deserialized
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), folded.predict_on_batch(x))


def test_a_sequential_model_folds_and_a_subclassed_one_is_refused_by_name():
    rng = np.random.default_rng(44)
    layers = [
        keras.Input((8, 8, 3)),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        keras.layers.BatchNormalization(),
    ]
    sequential = keras.Sequential([*layers, keras.layers.ReLU()])
    randomize_statistics(sequential, rng)
    folded = keras_cnn.fold_batchnorm(sequential)
    assert [type(layer).__name__ for layer in folded.layers] == ["DepthwiseConv2D", "Folded", "ReLU"]
    x = rng.random((2, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(folded.predict_on_batch(x), sequential.predict_on_batch(x), rtol=1e-5, atol=1e-6)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.conv, self.norm = keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()

        def call(self, inputs):
            return self.norm(self.conv(inputs))

    model = Subclassed()
    model(x)
    with pytest.raises(TypeError, match="functional or Sequential model; 'sub' is a subclassed Subclassed"):
        keras_cnn.fold_batchnorm(model)
    with pytest.raises(TypeError, match=r"takes a keras\.Model; received a Conv2D"):
        keras_cnn.fold_batchnorm(keras.layers.Conv2D(4, 3))
