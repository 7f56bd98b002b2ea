"""Same weights, same outputs: our keras.applications-compatible builders against keras.applications."""

import re

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils.naming import to_snake_case

import keras_cnn
from tests.helpers import randomize_statistics, shapes_only

PEERS = [
    (keras_cnn.ResNet50, keras.applications.ResNet50, 64),
    (keras_cnn.ResNet50V2, keras.applications.ResNet50V2, 64),
    (keras_cnn.VGG16, keras.applications.VGG16, 32),
    (keras_cnn.DenseNet121, keras.applications.DenseNet121, 64),
    (keras_cnn.MobileNet, keras.applications.MobileNet, 64),
    (keras_cnn.MobileNetV2, keras.applications.MobileNetV2, 65),  # odd: the other stride-2 padding
    (keras_cnn.Xception, keras.applications.Xception, 71),
    (keras_cnn.InceptionV3, keras.applications.InceptionV3, 75),
    (keras_cnn.InceptionResNetV2, keras.applications.InceptionResNetV2, 75),
]


def _write_legacy_h5(model, path) -> None:
    """Weights in the legacy HDF5 layout of the published keras.applications files."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _weighted_layers(model):
    return [layer.name for layer in model.layers if layer.weights]


# The published files are legacy HDF5, with and without the top, for every peer; Keras 3's own .weights.h5
# matches layers by the same names (asserted for every peer below), so two peers with the top suffice for it.
@pytest.mark.parametrize(
    "ours, theirs, size, file_format, include_top",
    [(*peer, "legacy_h5", top) for peer in PEERS for top in (True, False)]
    + [(*peer, "weights_h5", True) for peer in PEERS if peer[0] in (keras_cnn.ResNet50, keras_cnn.MobileNetV2)],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_weights_written_by_keras_applications_load_and_outputs_match(
    ours, theirs, size, file_format, include_top, tmp_path
):
    rng = np.random.default_rng(0)
    kwargs = {"include_top": include_top, "input_shape": (size, size, 3)}
    if include_top:
        kwargs |= {"classes": 7, "classifier_activation": None}  # logits: far more sensitive than softmax
    reference = theirs(weights=None, **kwargs)
    randomize_statistics(reference, rng)
    if file_format == "legacy_h5":  # the format of the published keras.applications files
        path = tmp_path / "peer.h5"
        _write_legacy_h5(reference, path)
    else:
        path = tmp_path / "peer.weights.h5"
        reference.save_weights(path)
    keras.backend.clear_session()  # ours in a fresh session too: the layers Keras names are named alike
    model = ours(weights=str(path), **kwargs)
    assert _weighted_layers(model) == _weighted_layers(reference)
    x = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
    _assert_same_outputs(model, reference, x)


def _assert_same_outputs(model, reference, x) -> None:
    """Inference-mode outputs within 1e-4 of the larger magnitude (eager calls: no graph to trace)."""
    expected = np.asarray(reference(x, training=False))
    np.testing.assert_allclose(model(x, training=False), expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (keras_cnn.ResNet101, keras.applications.ResNet101),
        (keras_cnn.ResNet152, keras.applications.ResNet152),
        (keras_cnn.ResNet101V2, keras.applications.ResNet101V2),
        (keras_cnn.ResNet152V2, keras.applications.ResNet152V2),
        (keras_cnn.VGG19, keras.applications.VGG19),
        (keras_cnn.DenseNet169, keras.applications.DenseNet169),
        (keras_cnn.DenseNet201, keras.applications.DenseNet201),
    ],
    ids=lambda v: v.__name__,
)
def test_deeper_peers_have_the_same_weighted_layers_and_shapes(ours, theirs):
    with shapes_only():
        reference, model = theirs(weights=None), ours()
    assert _weighted_layers(model) == _weighted_layers(reference)
    assert [tuple(w.shape) for w in model.weights] == [tuple(w.shape) for w in reference.weights]
    assert model.count_params() == reference.count_params()


def _named_by_hand(model) -> list[tuple[str, str]]:
    """(name, kind) of the layers whose names the builder chose, not Keras' own `conv2d_3`-style names."""
    auto = [to_snake_case(type(layer).__name__) for layer in model.layers]
    return [
        (layer.name, type(layer).__name__)
        for layer, kind in zip(model.layers, auto, strict=True)
        if not re.fullmatch(rf"{kind}(_\d+)?|input_layer(_\d+)?", layer.name)
    ]


@pytest.mark.parametrize("ours, theirs, size", PEERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_peers_name_keras_applications_layers_alike_in_order(ours, theirs, size):
    """Every layer keras.applications names, weighted or not (pads, pools, activations), is ours under that
    name, of that kind, in that order: what `get_layer("pool1_pad")` or a feature extractor by name relies on.
    Ours may add layers (VGG's dropout) and names where keras.applications leaves Keras' defaults."""
    with shapes_only():
        reference, model = theirs(weights=None, input_shape=(size, size, 3)), ours(input_shape=(size, size, 3))
    expected = _named_by_hand(reference)
    assert len(expected) >= 10
    names = {name for name, _ in expected}
    assert [(layer.name, type(layer).__name__) for layer in model.layers if layer.name in names] == expected


def test_memory_efficient_densenet121_loads_keras_applications_files(tmp_path):
    rng = np.random.default_rng(0)
    reference = keras.applications.DenseNet121(weights=None, include_top=False, input_shape=(32, 32, 3))
    randomize_statistics(reference, rng)
    path = tmp_path / "densenet121_notop.h5"
    _write_legacy_h5(reference, path)
    model = keras_cnn.DenseNet121(weights=str(path), include_top=False, input_shape=(32, 32, 3), memory_efficient=True)
    _assert_same_outputs(model, reference, rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32"))


@pytest.mark.parametrize("builder", [keras_cnn.InceptionV3, keras_cnn.InceptionResNetV2, keras_cnn.Xception])
def test_a_users_unnamed_layers_never_collide_with_the_builders_layers(builder):
    """keras.applications leaves these networks' convolutions unnamed; so do we (ours once carried the names
    Keras would give them, "conv2d", ..., and clashed with a user's unnamed Conv2D in the same graph)."""
    inputs = keras.Input((75, 75, 3))
    features = keras.layers.Conv2D(3, 1)(inputs)  # named "conv2d" in this fresh session
    model = builder(include_top=False, input_tensor=features, pooling="avg")
    assert model.get_layer("conv2d").kernel.shape == (1, 1, 3, 3)  # the user's layer kept its name
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    keras_cnn.ResNet20()  # other models built in between
    again = builder(include_top=False, input_tensor=keras.layers.Conv2D(3, 1)(inputs), pooling="avg")
    assert again.output_shape == model.output_shape
