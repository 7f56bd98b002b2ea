import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from the same seed with an empty Keras name/graph state."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    yield
