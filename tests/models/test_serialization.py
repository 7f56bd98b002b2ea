"""Every model round-trips through model.save / keras.saving.load_model (safe mode, custom layers registered)."""

import keras
import numpy as np
import pytest

import keras_cnn
from tests.helpers import DEEP, minimum_size

# The ~1,000-layer models take 30-130 s each to save and reload on 2 cores; they use no layer that the
# shallower members of their families do not, so those stand for them here.
NAMES = [n for n in keras_cnn.list_models() if n not in DEEP]


@pytest.mark.parametrize("name", NAMES)
def test_save_and_reload_gives_identical_outputs(name, tmp_path):
    channels = keras_cnn.model_info(name).input_size[-1]
    size = max(minimum_size(name), 8)
    model = keras_cnn.create_model(name, input_shape=(size, size, channels), classes=10)
    x = np.random.rand(2, size, size, channels).astype("float32")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
    assert [w.name for w in model.weights] == [w.name for w in reloaded.weights]
