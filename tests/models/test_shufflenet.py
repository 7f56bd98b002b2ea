"""ShuffleNet V1 against the authors' published sizes (ShuffleNet-Series README: params in M, MFLOPs)."""

import pytest

import keras_cnn
from tests.helpers import shapes_only


@pytest.mark.parametrize(
    "g, s, params_m, mflops",
    [(3, 0.5, 0.7, 38), (3, 1.0, 1.9, 138), (8, 1.0, 2.4, 138), (3, 2.0, 5.4, 524), (8, 2.0, 6.5, 522)],
)
@shapes_only()
def test_shufflenet_v1_sizes_match_the_authors_code(g, s, params_m, mflops):
    model = keras_cnn.ShuffleNet(g=g, s=s, input_shape=(224, 224, 3))
    params = keras_cnn.trainable_params(model) - 1000  # the authors' classifier has no bias
    assert round(params / 1e6, 1) == params_m
    assert keras_cnn.count_macs(model) == pytest.approx(mflops * 1e6, rel=0.02)


def test_groups_that_do_not_split_the_widths_are_refused():
    with pytest.raises(ValueError, match="g=8 groups cannot split"):
        keras_cnn.ShuffleNet(g=8, s=0.5)
    with pytest.raises(ValueError, match=r"groups g must be one of \(1, 2, 3, 4, 8\)"):
        keras_cnn.ShuffleNet(g=5)
