"""The Torch-ported families' initializers (keras_cnn.layers.init): He et al. 2015 (https://arxiv.org/abs/1502.01852)
draw every layer's weights independently, and `keras.utils.set_random_seed` fixes them."""

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn.layers import HE_FAN_OUT, TORCH_LINEAR


def kernels(seed: int) -> list[np.ndarray]:
    """ResNet-20's 3x3 kernels of stage 1 (He et al. 2016, Sec. 4.2: six 16 -> 16 convolutions) and its head."""
    keras.utils.set_random_seed(seed)
    model = keras_cnn.create_model("resnet20", input_shape=(32, 32, 3), classes=10)
    convs = [layer.kernel.numpy() for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return [k for k in convs if k.shape == (3, 3, 16, 16)] + [model.layers[-1].kernel.numpy()]


def test_same_shaped_convolutions_start_from_their_own_weights():
    stage = kernels(0)[:-1]
    assert len(stage) == 6
    for i, a in enumerate(stage):
        for b in stage[i + 1 :]:
            assert not np.array_equal(a, b)


def test_set_random_seed_decides_the_weights():
    first, again, other = kernels(0), kernels(0), kernels(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(("init", "mode", "scale"), [(HE_FAN_OUT, "fan_out", 2.0), (TORCH_LINEAR, "fan_in", 1 / 3)])
def test_each_layer_gets_a_new_initializer_of_the_papers_kind(init, mode, scale):
    a, b = (keras.layers.Conv2D(4, 3, **init) for _ in range(2))
    assert a.kernel_initializer is not b.kernel_initializer
    config = a.kernel_initializer.get_config()
    assert (type(a.kernel_initializer).__name__, config["mode"], config["scale"]) == ("VarianceScaling", mode, scale)
