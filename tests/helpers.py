"""Small helpers shared by the tests."""

from __future__ import annotations

import re

import pytest

import keras_cnn

#: The ~1,000-layer models: 15-20 s to build each on 2 cores.
DEEP = {"resnet1202", "sd_resnet1202", "preact_resnet1001"}


def model_params(names=None):
    """pytest params over registry names, with the deepest models marked slow."""
    names = keras_cnn.list_models() if names is None else names
    return [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in names]


def minimum_size(name: str) -> int:
    """The minimum input size a builder states in its error for a 1x1 input."""
    channels = keras_cnn.model_info(name).input_size[-1]
    with pytest.raises(ValueError, match=r"minimum \d+x\d+") as err:
        keras_cnn.create_model(name, input_shape=(1, 1, channels))
    return int(re.search(r"minimum (\d+)x", str(err.value)).group(1))
