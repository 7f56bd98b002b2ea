"""The builder contract every model shares: argument checks, heads, weights paths, stage outputs."""

import inspect

import keras
import numpy as np
import pytest

import keras_cnn

SMALL = {"input_shape": (32, 32, 3)}


@pytest.mark.parametrize("pooling", ["mean", "AVG", "global", 0])
def test_bad_pooling_names_the_allowed_values(pooling):
    with pytest.raises(ValueError, match=r"pooling must be one of \(None, 'avg', 'max'\)"):
        keras_cnn.ResNet20(include_top=False, pooling=pooling)


@pytest.mark.parametrize("classes", [0, -3, 2.5, "10", True])
def test_bad_class_counts_are_refused(classes):
    with pytest.raises(ValueError, match="classes must be a positive integer"):
        keras_cnn.VGG11(classes=classes, **SMALL)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((32, 32), "tuple of three values"),
        ("32x32", "tuple of three values"),
        ((16, 32, 3), "at least 32"),
        ((32, 31, 3), "minimum 32x32"),
        ((32, 32, 0), "channels must be a positive integer"),
        ((32.0, 32, 3), "must be an integer"),
    ],
)
def test_impossible_input_shapes_are_refused(shape, message):
    with pytest.raises(ValueError, match=message):
        keras_cnn.ResNet50(input_shape=shape)


def test_flattening_heads_need_a_static_size_but_pooled_heads_do_not():
    with pytest.raises(ValueError, match="include_top=True needs a static input_shape"):
        keras_cnn.VGG16(input_shape=(None, None, 3))
    model = keras_cnn.VGG16(input_shape=(None, None, 3), include_top=False, pooling="max")
    assert model(np.zeros((1, 64, 48, 3), "float32")).shape == (1, 512)
    model = keras_cnn.ResNet20(input_shape=(None, None, 3))
    assert model(np.zeros((1, 40, 24, 3), "float32")).shape == (1, 10)


def test_unknown_classifier_activation_is_refused_and_none_gives_logits():
    with pytest.raises(ValueError, match="Unknown classifier_activation='softmaxx'"):
        keras_cnn.ResNet20(classifier_activation="softmaxx")
    logits = keras_cnn.ResNet20(classifier_activation=None)(np.random.rand(2, 32, 32, 3).astype("float32"))
    assert not np.allclose(np.sum(logits, axis=-1), 1.0)


@pytest.mark.parametrize("pooling, shape", [(None, (None, 8, 8, 64)), ("avg", (None, 64)), ("max", (None, 64))])
def test_include_top_false_gives_the_feature_extractor(pooling, shape):
    model = keras_cnn.ResNet20(include_top=False, pooling=pooling)
    assert model.output_shape == shape
    assert "predictions" not in [layer.name for layer in model.layers]


def test_input_tensor_is_built_upon():
    inputs = keras.Input((40, 40, 4))
    x = keras.layers.Conv2D(3, 9)(inputs)
    model = keras_cnn.ResNet20(input_tensor=x, classes=3)
    assert model.input_shape == (None, 40, 40, 4) and model.output_shape == (None, 3)


def test_weights_paths_missing_or_wrong_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Weights file not found: '.*nope\.weights\.h5'"):
        keras_cnn.ResNet20(weights=str(tmp_path / "nope.weights.h5"))
    with pytest.raises(ValueError, match=r"No weight set 'imagenet' for 'resnet20' with include_top=True"):
        keras_cnn.ResNet20(weights="imagenet")
    with pytest.raises(ValueError, match=r"No weight set named 'imagenett': pass None .*'imagenet'"):
        keras_cnn.ResNet20(weights="imagenett")
    with pytest.raises(ValueError, match=r"weights must be None .* or the path"):
        keras_cnn.ResNet20(weights=3)
    other = tmp_path / "resnet32.weights.h5"
    keras_cnn.ResNet32().save_weights(other)
    with pytest.raises(ValueError, match=r"does not fit 'resnet20' as built \(include_top=True"):
        keras_cnn.ResNet20(weights=other)


def test_weights_path_round_trip_restores_outputs(tmp_path):
    source = keras_cnn.ResNet20(classes=4)
    path = tmp_path / "r20.weights.h5"
    source.save_weights(path)
    x = np.random.rand(3, 32, 32, 3).astype("float32")
    restored = keras_cnn.ResNet20(classes=4, weights=path)
    np.testing.assert_array_equal(np.asarray(source(x, training=False)), np.asarray(restored(x, training=False)))


def test_feature_extractor_outputs_match_the_named_layers():
    model = keras_cnn.VGG11(include_top=False, **SMALL)
    features = keras_cnn.feature_extractor(model)
    assert features.stage_names == [f"block{b}_conv{c}" for b, c in zip(range(1, 6), (1, 1, 2, 2, 2), strict=True)]
    outs = features(np.ones((1, 32, 32, 3), "float32"))
    assert [o.shape[1] for o in outs] == [32, 16, 8, 4, 2]
    with pytest.raises(ValueError, match="out of range"):
        keras_cnn.feature_extractor(model, out_indices=(5,))


def test_reloaded_models_need_layer_names_for_features(tmp_path):
    model = keras_cnn.ResNet20()
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="pass layer_names"):
        keras_cnn.feature_extractor(reloaded)
    features = keras_cnn.feature_extractor(reloaded, layer_names=model.stage_names)
    assert len(features.outputs) == 4


CONTRACT = (
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
)


@pytest.mark.parametrize("builder", sorted(keras_cnn.models.__all__))
def test_every_builder_takes_keras_applications_positional_order(builder):
    """keras.applications' order (include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, name) first, the architecture's own arguments keyword-only."""
    params = list(inspect.signature(getattr(keras_cnn, builder)).parameters.values())
    assert [p.name for p in params[: len(CONTRACT)]] == list(CONTRACT)
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params[: len(CONTRACT)])
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[len(CONTRACT) :])


def test_positional_arguments_mean_what_they_mean_in_keras_applications():
    model = keras_cnn.ResNet20(False, None, None, (16, 16, 3), "max", 10, None, "mine")
    assert model.name == "mine" and model.output_shape == (None, 64)
    assert isinstance(model.get_layer("max_pool"), keras.layers.GlobalMaxPooling2D)
    model = keras_cnn.CifarResNet(True, None, None, (16, 16, 3), None, 3, None, depth=8)
    assert model.output_shape == (None, 3) and model.name == "resnet8"
    assert keras_cnn.VGG11(False, input_shape=(32, 32, 3)).output_shape == (None, 1, 1, 512)


@pytest.mark.parametrize("call", [lambda: keras_cnn.DenseNetBC(40, 12), lambda: keras_cnn.ResNet20(20)])
def test_paper_arguments_given_positionally_get_a_clear_error(call):
    with pytest.raises(TypeError, match=r"include_top must be True or False; received \d+.*by keyword"):
        call()


def test_a_weight_set_that_cannot_fit_is_refused_before_anything_is_built(monkeypatch):
    def no_building(*args, **kwargs):
        raise AssertionError("a layer was built before the weights were refused")

    monkeypatch.setattr(keras, "Input", no_building)
    with pytest.raises(ValueError, match="classify 10 classes; received classes=7"):
        keras_cnn.ResNet20(weights="digits", classes=7)
    with pytest.raises(ValueError, match=r"need input_shape=\(32, 32, 1\); received \(32, 32, 3\)"):
        keras_cnn.ResNet20(True, "digits", None, (32, 32, 3))


def test_a_model_named_by_the_user_still_finds_its_weight_set():
    named = keras_cnn.ResNet20(weights="digits", input_shape=(32, 32, 1), name="my_digits")
    assert named.name == "my_digits"
    for ours, shipped in zip(
        named.weights, keras_cnn.ResNet20(weights="digits", input_shape=(32, 32, 1)).weights, strict=True
    ):
        np.testing.assert_array_equal(ours.numpy(), shipped.numpy())


#: One member of every family file (the cheapest that is not a special case of another family's builder).
FAMILIES = (
    "lenet5",
    "alexnet",
    "alexnet_v1",
    "vgg11",
    "resnet20",
    "resnet18",
    "resnet50_v2",
    "preact_resnet164",
    "resnext29_8x64d",
    "resnext50_32x4d",
    "googlenet",
    "inception_v3",
    "inception_resnet_v2",
    "xception",
    "mobilenet",
    "mobilenet_v2",
    "shufflenet_v1",
    "shufflenet_v2_x0_5",
    "densenet_bc",
    "densenet121",
    "cliquenet_k36_t12",
    "cliquenet_s0",
    "msdnet_cifar10_anytime",
    "msdnet_imagenet_k4",
)


@pytest.mark.parametrize("name", FAMILIES)
def test_keras_applications_contract_holds_for_every_family(name):
    """keras.applications' own contract: without the top, any spatial size (None) and 1 or 4 channels; pooled
    widths equal the map's channels; a new class count with logits; a user's input tensor is built upon."""
    from tests.helpers import shapes_only

    size = max(keras_cnn.model_info(name).min_size, 32)
    with shapes_only():
        width = keras_cnn.create_model(name, include_top=False, input_shape=(size, size, 3)).output_shape[-1]
        for channels in (1, 4):
            model = keras_cnn.create_model(name, include_top=False, input_shape=(None, None, channels))
            assert model.input_shape == (None, None, None, channels) and model.output_shape[-1] == width
        for pooling in ("avg", "max"):
            pooled = keras_cnn.create_model(name, include_top=False, pooling=pooling, input_shape=(size, size, 3))
            assert pooled.output_shape == (None, width)
        top = keras_cnn.create_model(name, classes=7, classifier_activation=None, input_shape=(size, size, 3))
        outputs = top.outputs if isinstance(top.output, list) else [top.output]
        assert all(tuple(o.shape) == (None, 7) for o in outputs)
        assert top.get_layer(top.output_names[-1]).get_config().get("activation") in ("linear", None)
        tensor = keras.Input((size, size, 3))
        assert keras_cnn.create_model(name, include_top=False, input_tensor=tensor).inputs[0] is tensor


@pytest.mark.parametrize(
    ("policy", "head"), [("mixed_bfloat16", "float32"), ("float64", "float64"), ("float32", "float32")]
)
def test_the_classifier_is_float32_under_mixed_precision_and_follows_full_precision_policies(policy, head):
    """Mixed precision keeps the softmax and the loss in float32; float64 must not be cut to float32 there."""

    keras.config.set_dtype_policy(policy)
    try:
        for name in ("resnet20", "lenet5", "vgg11", "mobilenet", "googlenet", "msdnet_cifar10_anytime"):
            size = max(32, keras_cnn.model_info(name).min_size)
            model = keras_cnn.create_model(name, input_shape=(size, size, 3), classes=4)
            heads = [layer for layer in model.layers if layer.name.endswith("predictions")]
            assert heads and all(layer.compute_dtype == head for layer in heads), name
    finally:
        keras.config.set_dtype_policy("float32")
