"""GoogLeNet: the paper's counts with and without the auxiliary classifiers, their training weight and the
inference model without them."""

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn.recipes import RECIPES
from keras_cnn.training import compile_model, output_heads
from tests.helpers import shapes_only


def test_auxiliary_heads_count_train_at_point_three_and_drop_for_inference():
    model = keras_cnn.GoogLeNet(aux_logits=True, input_shape=(96, 96, 3), classes=4)
    assert model.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    assert output_heads(model) == (model.output_names, "predictions")
    full = keras_cnn.GoogLeNet(aux_logits=True)
    assert (
        keras_cnn.trainable_params(full) == 13_378_280
    )  # 6,998,552 + 3,188,840 + 3,190,888 (torchvision's GoogLeNet with aux_logits)
    assert keras_cnn.trainable_params(keras_cnn.without_aux(full)) == 6_998_552

    compile_model(model, "sgd", recipe=RECIPES["quick"])
    x = np.random.default_rng(0).random((2, 96, 96, 3), dtype=np.float32)
    y = np.array([1, 3])
    logs = model.evaluate(x, (y, y, y), verbose=0, return_dict=True)
    parts = [logs[f"{name}_loss"] for name in model.output_names]
    assert logs["loss"] == pytest.approx(parts[0] + 0.3 * parts[1] + 0.3 * parts[2], rel=1e-5)

    inference = keras_cnn.without_aux(model)
    assert len(inference.outputs) == 1
    np.testing.assert_allclose(inference(x, training=False), model(x, training=False)[0], atol=1e-6)


def test_auxiliary_heads_need_a_classifier_and_room():
    with pytest.raises(ValueError, match="aux_logits=True needs include_top=True"):
        keras_cnn.GoogLeNet(aux_logits=True, include_top=False)
    with pytest.raises(ValueError, match="at least 80"):
        keras_cnn.GoogLeNet(aux_logits=True, input_shape=(64, 64, 3))
    assert keras_cnn.GoogLeNet(input_shape=(64, 64, 3), classes=3).output_shape == (None, 3)


@shapes_only()
def test_batch_norm_option_adds_bn_to_every_convolution_of_the_paper_layout():
    plain, bn = keras_cnn.GoogLeNet(), keras_cnn.GoogLeNet(batch_norm=True)
    convs = [layer for layer in bn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 57 and not any(layer.use_bias for layer in convs)
    assert {f"{layer.name}_bn" for layer in convs} <= {layer.name for layer in bn.layers}
    assert "lrn1" in {layer.name for layer in bn.layers}  # the rest of the paper layout stays
    # Each convolution trades its bias (filters) for BN's gamma and beta (2 * filters).
    assert keras_cnn.trainable_params(bn) == keras_cnn.trainable_params(plain) + sum(c.filters for c in convs)
    assert keras_cnn.trainable_params(bn) == 7_005_832
