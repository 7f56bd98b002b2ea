"""GoogLeNet: the paper's counts with and without the auxiliary classifiers, their training weight and the
inference model without them."""

import numpy as np
import pytest

import keras_cnn
from keras_cnn.recipes import RECIPES
from keras_cnn.training import compile_model, output_heads


def test_auxiliary_heads_count_train_at_point_three_and_drop_for_inference():
    model = keras_cnn.GoogLeNet(aux_logits=True, input_shape=(96, 96, 3), classes=4)
    assert model.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    assert output_heads(model) == (model.output_names, "predictions")
    full = keras_cnn.GoogLeNet(aux_logits=True)
    assert keras_cnn.trainable_params(full) == 13_378_280  # 6,998,552 + 3,188,840 + 3,190,888 (reference §1)
    assert keras_cnn.trainable_params(keras_cnn.without_aux(full)) == 6_998_552

    compile_model(model, "sgd", recipe=RECIPES["quick"])
    x = np.random.default_rng(0).random((2, 96, 96, 3), dtype=np.float32)
    y = np.array([1, 3])
    logs = model.evaluate(x, (y, y, y), verbose=0, return_dict=True)
    parts = [logs[f"{name}_loss"] for name in model.output_names]
    assert logs["loss"] == pytest.approx(parts[0] + 0.3 * parts[1] + 0.3 * parts[2], rel=1e-5)

    inference = keras_cnn.without_aux(model)
    assert len(inference.outputs) == 1
    np.testing.assert_allclose(inference.predict(x, verbose=0), model.predict(x, verbose=0)[0], atol=1e-6)


def test_auxiliary_heads_need_a_classifier_and_room():
    with pytest.raises(ValueError, match="aux_logits=True needs include_top=True"):
        keras_cnn.GoogLeNet(aux_logits=True, include_top=False)
    with pytest.raises(ValueError, match="at least 80"):
        keras_cnn.GoogLeNet(aux_logits=True, input_shape=(64, 64, 3))
    assert keras_cnn.GoogLeNet(input_shape=(64, 64, 3), classes=3).output_shape == (None, 3)
