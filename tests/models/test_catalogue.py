"""Every registered model against its published figures and the shared builder contract: built at its published
input (shapes only), trained one step at its smallest legal input, and saved and reloaded."""

import itertools
import json
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from tests.helpers import (
    LARGER_SIBLINGS,
    ROUND_TRIP,
    layer_classes,
    model_params,
    round_trip_classes,
    shapes_only,
    smallest_model_kwargs,
)


@pytest.mark.parametrize("name", model_params())
def test_published_parameter_count_macs_and_stage_pyramid(name):
    info = keras_cnn.model_info(name)
    with shapes_only():
        model = keras_cnn.create_model(name)
    assert tuple(model.input_shape[1:]) == info.input_size
    assert all(shape == (None, info.classes) for shape in _outputs(model.output_shape))
    assert keras_cnn.trainable_params(model) == info.params
    # The published MAC figures have two or three significant digits.
    assert keras_cnn.count_macs(model) == pytest.approx(info.macs, rel=0.02)
    shapes = [tuple(o.shape[1:]) for o in keras_cnn.feature_extractor(model).outputs]
    assert len(shapes) >= 3
    assert all(a[0] >= b[0] for a, b in itertools.pairwise(shapes)), shapes  # shallow to deep


# Trained with every block kept (p_L=1), sd_resnet1202 is resnet1202's network, which --train-all trains (each
# of the ~1,000-layer models takes about a minute); tests/conftest.py leaves the LARGER_SIBLINGS to that option.
@pytest.mark.parametrize("name", model_params([n for n in keras_cnn.list_models() if n != "sd_resnet1202"]))
def test_smallest_legal_input_trains_one_step_saves_and_reloads(name, tmp_path, request):
    kwargs = smallest_model_kwargs(name)
    size, _, channels = kwargs["input_shape"]
    model = keras_cnn.create_model(name, **kwargs)
    # At the smallest input the last maps are 1x1: with 2 images BN would output +-1 whatever its input and
    # pass no gradient back, so the batch has 4.
    x = np.random.rand(4, size, size, channels).astype("float32")
    # Untrained, BN moving statistics are the identity, so the ~1,000-layer nets overflow in inference mode;
    # batch statistics (training mode) are the meaningful check of the wiring.
    for y in _one_sgd_step(model, x, np.array([0, 3, 1, 4])):  # every exit of a multi-exit model
        assert y.shape == (4, 5) and np.all(np.isfinite(y))
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)
    if name in ROUND_TRIP or request.config.getoption("round_trip_all"):
        path = tmp_path / f"{name}.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
        assert [w.name for w in reloaded.weights] == [w.name for w in model.weights]
        outputs = _outputs(model(x, training=False))  # inference mode: moving statistics, no dropout
        assert all(y.shape == (4, 5) for y in outputs)
        for ours, theirs in zip(outputs, _outputs(reloaded(x, training=False)), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    else:  # the inference path of every layer class runs in its round-trip model
        json.dumps(keras.saving.serialize_keras_object(model))  # the whole config, every layer's included
        module = _family(name)
        family = [n for n in ROUND_TRIP if _family(n) == module]
        classes = layer_classes(model)
        assert any(classes <= round_trip_classes(n) for n in family), (
            f"{name} uses {sorted(c.__name__ for c in classes)}: no ROUND_TRIP model of {module} covers them"
        )
    with pytest.raises(ValueError, match=f"at least {size}"):
        keras_cnn.create_model(name, input_shape=(size - 1, size, channels))


def test_each_larger_sibling_is_a_bigger_configuration_of_a_model_that_trains():
    """The one-step training left to --train-all covers only builders that train here at a smaller size."""
    for name, smaller in LARGER_SIBLINGS.items():
        big, small = keras_cnn.model_info(name), keras_cnn.model_info(smaller)
        assert big.builder is small.builder and big.params > small.params, name
        assert smaller not in LARGER_SIBLINGS and smaller in keras_cnn.list_models()


def _family(name: str) -> str:
    """The module (family file) of a registered model's builder."""
    return keras_cnn.model_info(name).builder.__module__


def _outputs(value) -> list:
    """A model's outputs (or output shapes) as a list, one entry per exit."""
    return list(value) if isinstance(value, (list, tuple)) and not isinstance(value[0], (int, type(None))) else [value]


def _one_sgd_step(model, x, y) -> list[np.ndarray]:
    """One training step (the exits' losses summed): a finite loss, a finite gradient for every trainable weight,
    and every weight moves. Returns the training-mode outputs of the step."""
    with tf.GradientTape() as tape:
        outputs = _outputs(model(x, training=True))
        loss = sum(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, p)) for p in outputs)
    grads = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(float(loss))
    missing = [w.path for w, g in zip(model.trainable_weights, grads, strict=True) if g is None]
    assert not missing, missing
    assert all(np.all(np.isfinite(g)) for g in grads)
    old = [w.numpy() for w in model.trainable_weights]
    keras.optimizers.SGD(1e-3).apply(grads, model.trainable_weights)
    frozen = [w.path for w, o in zip(model.trainable_weights, old, strict=True) if np.array_equal(w.numpy(), o)]
    assert not frozen, frozen
    return [np.asarray(p) for p in outputs]


def test_every_builder_is_exported_and_cites_its_paper():
    for name in keras_cnn.list_models():
        info = keras_cnn.model_info(name)
        builder = getattr(keras_cnn, info.function)
        cited = (builder.__doc__ or "") + (sys.modules[builder.__module__].__doc__ or "")
        first_author = info.paper.authors.split(",")[0]
        assert str(info.paper.year) in cited and first_author in cited, name
        assert info.recipe.optimizer and info.recipe.lr > 0 and info.source, name


def test_round_trip_models_are_registered():
    assert set(ROUND_TRIP) <= set(keras_cnn.list_models())


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_feature_contract_pooled_extractor_without_the_classifier(name):
    channels = keras_cnn.model_info(name).input_size[-1]
    size = max(smallest_model_kwargs(name)["input_shape"][0], 32)
    with shapes_only():
        model = keras_cnn.create_model(name, include_top=False, pooling="avg", input_shape=(size, size, channels))
    assert len(model.output_shape) == 2 and "predictions" not in [layer.name for layer in model.layers]
    shapes = [tuple(o.shape[1:]) for o in keras_cnn.feature_extractor(model).outputs]
    assert model.output_shape[-1] == shapes[-1][-1]  # pooling pools the deepest stage (CliqueNet's too)
