"""Every registered model against its published figures and the shared builder contract."""

import itertools
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from tests.helpers import minimum_size, model_params


@pytest.mark.parametrize("name", model_params())
def test_published_parameter_count_and_macs(name):
    info = keras_cnn.model_info(name)
    model = keras_cnn.create_model(name)
    assert tuple(model.input_shape[1:]) == info.input_size
    assert model.output_shape == (None, info.classes)
    assert keras_cnn.trainable_params(model) == info.params
    # The published MAC figures have two or three significant digits.
    assert keras_cnn.count_macs(model) == pytest.approx(info.macs, rel=0.02)


@pytest.mark.parametrize("name", model_params())
def test_smallest_legal_input_runs_trains_one_step_and_one_less_is_refused(name):
    channels = keras_cnn.model_info(name).input_size[-1]
    size = minimum_size(name)
    # Stochastic depth may drop whole blocks in the training step below; all blocks survive here.
    gates = {"p_L": 1.0} if name.startswith("sd_") else {}
    model = keras_cnn.create_model(name, input_shape=(size, size, channels), classes=5, **gates)
    # At the smallest input the last maps are 1x1: with 2 images BN would output +-1 whatever its input and
    # pass no gradient back, so the batch has 4.
    x = np.random.rand(4, size, size, channels).astype("float32")
    # Untrained, BN moving statistics are the identity, so the ~1,000-layer nets overflow in inference mode;
    # batch statistics (training mode) are the meaningful check of the wiring.
    y = np.asarray(model(x, training=True))
    assert y.shape == (4, 5) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.asarray(model(x, training=False)).shape == (4, 5)
    _one_sgd_step(model, x, np.array([0, 3, 1, 4]))
    with pytest.raises(ValueError, match=f"at least {size}"):
        keras_cnn.create_model(name, input_shape=(size - 1, size, channels))


def _one_sgd_step(model, x, y):
    """One training step: a finite loss, a finite gradient for every trainable weight, and every weight moves."""
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(float(loss))
    missing = [w.path for w, g in zip(model.trainable_weights, grads, strict=True) if g is None]
    assert not missing, missing
    assert all(np.all(np.isfinite(g)) for g in grads)
    old = [w.numpy() for w in model.trainable_weights]
    keras.optimizers.SGD(1e-3).apply(grads, model.trainable_weights)
    frozen = [w.path for w, o in zip(model.trainable_weights, old, strict=True) if np.array_equal(w.numpy(), o)]
    assert not frozen, frozen


def test_every_builder_is_exported_and_cites_its_paper():
    for name in keras_cnn.list_models():
        info = keras_cnn.model_info(name)
        builder = getattr(keras_cnn, info.builder)
        cited = (builder.__doc__ or "") + (sys.modules[builder.__module__].__doc__ or "")
        first_author = info.paper.authors.split(",")[0]
        assert str(info.paper.year) in cited and first_author in cited, name
        assert info.recipe.optimizer and info.recipe.lr > 0 and info.source, name


@pytest.mark.parametrize("name", model_params())
def test_feature_contract_pooled_extractor_and_stage_pyramid(name):
    channels = keras_cnn.model_info(name).input_size[-1]
    size = max(minimum_size(name), 32)
    model = keras_cnn.create_model(name, include_top=False, pooling="avg", input_shape=(size, size, channels))
    assert len(model.output_shape) == 2 and "predictions" not in [layer.name for layer in model.layers]
    pyramid = keras_cnn.feature_extractor(model)
    shapes = [tuple(o.shape[1:]) for o in pyramid.outputs]
    assert len(shapes) >= 3
    assert all(a[0] >= b[0] for a, b in itertools.pairwise(shapes)), shapes  # shallow to deep
    # The head pools the deepest stage; CliqueNet's multi-scale head pools every block and concatenates them.
    pooled = sum(s[-1] for s in shapes) if name.startswith("cliquenet") else shapes[-1][-1]
    assert model.output_shape[-1] == pooled
