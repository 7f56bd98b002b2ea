"""Every registered model against its published figures and the shared builder contract."""

import itertools
import sys

import numpy as np
import pytest

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
def test_smallest_legal_input_runs_and_one_less_is_refused(name):
    channels = keras_cnn.model_info(name).input_size[-1]
    size = minimum_size(name)
    model = keras_cnn.create_model(name, input_shape=(size, size, channels), classes=5)
    x = np.random.rand(2, size, size, channels).astype("float32")
    # Untrained, BN moving statistics are the identity, so the ~1,000-layer nets overflow in inference mode;
    # batch statistics (training mode) are the meaningful check of the wiring.
    y = np.asarray(model(x, training=True))
    assert y.shape == (2, 5) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.asarray(model(x, training=False)).shape == (2, 5)
    with pytest.raises(ValueError, match=f"at least {size}"):
        keras_cnn.create_model(name, input_shape=(size - 1, size, channels))


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
    assert shapes[-1][-1] == model.output_shape[-1]  # the deepest stage is what the head pools
