"""CliqueNet against the paper and its reference code (Yang et al. 2018, arXiv:1802.10419; iboing/CliqueNet)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_cnn
from keras_cnn.models.cliquenet import CliqueConv
from tests.helpers import shapes_only

SMALL = {"input_shape": (16, 16, 3), "k": 6, "T": 12}


@pytest.mark.parametrize(
    ("kwargs", "trainable", "total"),
    [
        ({}, 935_994, 944_842),
        ({"classes": 100}, 1_006_644, None),
        ({"k": 64, "T": 15, "classes": 100}, 4_635_556, None),
        ({"k": 80, "T": 15, "classes": 100}, 7_123_396, None),
        ({"k": 80, "T": 18, "classes": 100}, 10_357_444, None),
        ({"k": 12, "T": 36}, 1_045_306, None),
        ({"k": 24, "T": 18}, 986_650, None),
        ({"attention": True}, 977_898, None),
        ({"compression": True}, 1_037_434, None),
        ({"attention": True, "compression": True}, 1_079_338, 1_088_970),
        ({"k": 150, "T": 30, "attention": True, "bottleneck": True, "compression": True}, 10_480_938, 10_547_020),
    ],
)
def test_cifar_configs_match_the_porting_notes_counts(kwargs, trainable, total):
    with shapes_only():
        model = keras_cnn.CliqueNet(input_shape=(32, 32, 3), **kwargs)
    assert keras_cnn.trainable_params(model) == trainable
    if total is not None:  # Keras totals add BN moving mean and variance
        assert model.count_params() == total


@pytest.mark.parametrize(
    ("size", "params"), [("s0", 5_703_728), ("s1", 7_956_776), ("s2", 10_003_756), ("s3", 13_170_904)]
)
def test_imagenet_configs_without_attention_are_the_starred_rows(size, params):
    with shapes_only():
        model = keras_cnn.create_model(f"cliquenet_{size}", attention=False)
    assert keras_cnn.trainable_params(model) == params


def test_paper_flops_are_twice_the_counted_macs():
    """CliqueNet's README reports FLOPs = 2 x MACs: 0.91 / 4.21 / 6.45 / 9.45 G for the plain configs."""
    for name, flops in [("k36_t12", 0.91), ("k64_t15", 4.21), ("k80_t15", 6.45), ("k80_t18", 9.45)]:
        with shapes_only():
            macs = keras_cnn.count_macs(keras_cnn.create_model(f"cliquenet_{name}"))
        assert round(2 * macs / 1e9, 2) == flops, name


@shapes_only()
def test_structure_follows_the_input_size_with_cifar_and_imagenet_defaults():
    cifar = keras_cnn.CliqueNet(input_shape=(32, 32, 3))
    assert cifar.output_shape == (None, 10) and "pool1" not in [layer.name for layer in cifar.layers]
    assert [cifar.get_layer(f"block{b}_head_relu").output.shape[-1] for b in (1, 2, 3)] == [208, 288, 288]
    imagenet = keras_cnn.CliqueNet(input_shape=(224, 224, 3))
    assert imagenet.output_shape == (None, 1000)
    assert imagenet.get_layer("pool1").output.shape[1:3] == (56, 56)
    widths = [imagenet.get_layer(f"block{b}_head_relu").output.shape[-1] for b in (1, 2, 3, 4)]
    assert widths == [152, 360, 720, 960]  # S3's compressed block features (iboing/CliqueNet-ImageNet)
    assert imagenet.get_layer("predictions").kernel.shape == (2192, 1000)
    forced = keras_cnn.CliqueNet(input_shape=(64, 64, 3), structure="imagenet", classes=7)
    assert forced.output_shape == (None, 7) and "pool1" in [layer.name for layer in forced.layers]


def _block_layers(model, b: int, kind):
    return [layer for layer in model.layers if layer.name.startswith(f"block{b}_") and isinstance(layer, kind)]


@pytest.mark.parametrize("bottleneck", [False, True])
@shapes_only()
def test_kernels_and_batch_norms_per_block(bottleneck):
    """n^2 clique kernels (+ n shared 3x3 with bottleneck); 2n BN (4n) + compress BN + head BN."""
    n = 4  # T / 3 layers per block, T / 6 with bottleneck
    model = keras_cnn.CliqueNet(
        input_shape=(16, 16, 3), k=6, T=6 * n if bottleneck else 3 * n, bottleneck=bottleneck, compression=True
    )
    for b in (1, 2, 3):
        clique = _block_layers(model, b, CliqueConv)
        assert sum(len(layer.kernels) for layer in clique) == n * n
        shape = (1, 1) if bottleneck else (3, 3)
        assert all(tuple(w.shape[:2]) == shape for layer in clique for w in layer.trainable_weights)
        plain_convs = [
            layer for layer in _block_layers(model, b, keras.layers.Conv2D) if not layer.name.endswith("compress_conv")
        ]
        assert len(plain_convs) == (n if bottleneck else 0)
        norms = _block_layers(model, b, keras.layers.BatchNormalization)
        assert len(norms) == (4 * n if bottleneck else 2 * n) + 2
        assert {f"block{b}_compress_bn", f"block{b}_head_bn"} <= {layer.name for layer in norms}
    names = {layer.name for layer in model.layers}
    assert {"transition1_bn", "transition2_bn"} <= names and "transition3_bn" not in names


def _stage_outputs(model, b: int, n: int):
    """A model returning stage-I and stage-II outputs of every layer of block b."""
    names = [f"block{b}_stage{s}_layer{i}_drop" for s in (1, 2) for i in range(1, n + 1)]
    return keras.Model(model.input, [model.get_layer(name).output for name in names])


def test_stage_two_uses_backward_kernels_and_never_reads_x0():
    """Stage II of layer i changes when a backward kernel W(j->i), j > i, changes; stage I does not."""
    n = 4
    model = keras_cnn.CliqueNet(**SMALL)
    probe = _stage_outputs(model, 1, n)
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    before = [np.asarray(t) for t in probe(x, training=False)]
    w_3_to_1 = model.get_layer("block1_w_1").kernels[3]
    w_3_to_1.assign(w_3_to_1 + 0.5)
    after = [np.asarray(t) for t in probe(x, training=False)]
    for i in range(n):  # stage I never uses a backward kernel
        np.testing.assert_array_equal(after[i], before[i])
    assert not np.allclose(after[n], before[n])  # stage II of layer 1 reads W(3->1)
    # The stage-II updates read the latest version of every other layer, and never the block input X0.
    x0 = model.get_layer("conv1_conv").output
    for i in range(1, n + 1):
        node = model.get_layer(f"block1_stage2_layer{i}_concat")._inbound_nodes[0]
        sources = [t._keras_history.operation.name for t in node.input_tensors]
        expected = [f"block1_stage{2 if j < i else 1}_layer{j}_drop" for j in range(1, n + 1) if j != i]
        assert sources == expected
        assert all(t is not x0 for t in node.input_tensors)
        stage_two_call = model.get_layer(f"block1_w_{i}")._inbound_nodes[1]
        assert stage_two_call.arguments.kwargs["sources"] == tuple(j for j in range(1, n + 1) if j != i)


def test_stage_one_kernels_are_shared_with_stage_two():
    model = keras_cnn.CliqueNet(**SMALL)
    layer = model.get_layer("block2_w_2")
    assert len(layer._inbound_nodes) == 2  # one layer object, called in both stages
    assert [w.name for w in layer.trainable_weights] == ["w0_2", "w1_2", "w3_2", "w4_2"]
    bottleneck = keras_cnn.CliqueNet(**SMALL | {"T": 24}, bottleneck=True)
    assert len(bottleneck.get_layer("block1_layer3_3x3")._inbound_nodes) == 2


def test_per_edge_sum_equals_the_concatenated_kernel_convolution():
    """One conv with concatenated kernels == sum of per-edge convolutions."""
    layer = CliqueConv(5, 3, layer=2, n=4, c0=7)
    layer.build((None, 8, 8, 7))
    sources = (0, 1, 3, 4)
    widths = [7, 5, 5, 5]
    x = np.random.default_rng(1).standard_normal((2, 8, 8, sum(widths))).astype("float32")
    chunks = np.split(x, np.cumsum(widths)[:-1], axis=-1)
    per_edge = sum(ops.conv(c, layer.kernels[j], padding="same") for c, j in zip(chunks, sources, strict=True))
    np.testing.assert_allclose(layer(x, sources=sources), per_edge, atol=1e-5)
    with pytest.raises(ValueError, match=r"must be distinct members of \(0, 1, 3, 4\)"):
        layer(x, sources=(0, 1, 2, 4))
    with pytest.raises(ValueError, match="have 15 channels; the input has 22"):
        layer(x, sources=(1, 3, 4))


def test_each_edge_kernel_is_initialized_on_its_own_fan_in():
    """Porting notes 1.6-3: He init per edge, not on the concatenated kernel (std sqrt(2 / (9 c_j)))."""
    model = keras_cnn.CliqueNet(input_shape=(32, 32, 3), k=36, T=12)
    layer = model.get_layer("block1_w_4")
    for j, c in [(0, 64), (1, 36), (2, 36)]:
        std = float(np.std(layer.kernels[j].numpy()))
        assert std == pytest.approx(math.sqrt(2 / (9 * c)), rel=0.1), j


def test_reference_constants_and_coupled_weight_decay():
    model = keras_cnn.CliqueNet(**SMALL)
    bn = model.get_layer("block1_stage1_layer1_bn")
    assert (bn.momentum, bn.epsilon) == (0.999, 1e-3)  # tf.contrib.layers.batch_norm
    assert model.get_layer("block1_stage1_layer1_drop").rate == pytest.approx(0.2)  # keep_prob 0.8
    # The loss gains 1e-4 * 1/2 ||v||^2 over every trainable variable: kernels, biases, gamma and beta (all
    # drawn non-zero here: biases and beta start at 0, where a missing regularizer would not show).
    attentive = keras_cnn.CliqueNet(**SMALL, attention=True)
    rng = np.random.default_rng(0)
    for w in attentive.trainable_weights:
        w.assign(rng.normal(0, 1, w.shape))
    assert {"transition1_att_fc1", "transition1_att_fc2", "predictions"} <= {layer.name for layer in attentive.layers}
    for layer in attentive.trainable_weights:
        alone = 1e-4 / 2 * float(np.sum(np.square(layer.numpy())))
        assert any(float(loss) == pytest.approx(alone, rel=1e-4) for loss in attentive.losses), layer.path
    expected = 1e-4 / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in attentive.trainable_weights)
    assert float(sum(attentive.losses)) == pytest.approx(expected, rel=1e-4)
    imagenet = keras_cnn.CliqueNet(input_shape=(64, 64, 3), structure="imagenet", k=4, T=(2, 2, 2, 2))
    torch_bn = imagenet.get_layer("block1_stage1_layer1_bn")
    assert (torch_bn.momentum, torch_bn.epsilon) == (0.9, 1e-5)
    assert not [layer for layer in imagenet.layers if isinstance(layer, keras.layers.Dropout)]
    kernel = imagenet.get_layer("predictions").kernel.numpy()  # PyTorch Linear's U(+-1/sqrt(fan_in)), not Glorot
    bound = 1 / np.sqrt(kernel.shape[0])
    assert np.abs(kernel).max() <= bound and float(np.std(kernel)) == pytest.approx(bound / np.sqrt(3), rel=0.05)
    keras_style = keras_cnn.CliqueNet(**SMALL, constants="keras")
    keras_bn = keras_style.get_layer("block1_stage1_layer1_bn")
    assert (keras_bn.momentum, keras_bn.epsilon) == (0.99, 1e-3) and not keras_style.losses
    assert not keras_cnn.CliqueNet(**SMALL, weight_decay=0).losses


def test_multiscale_head_pools_every_block():
    model = keras_cnn.CliqueNet(**SMALL, include_top=False, pooling="max", multiscale=True)
    widths = [model.get_layer(f"block{b}_head_relu").output.shape[-1] for b in (1, 2, 3)]
    assert model.output_shape == (None, sum(widths))
    assert isinstance(model.get_layer("block1_max_pool"), keras.layers.GlobalMaxPooling2D)
    assert keras_cnn.CliqueNet(**SMALL, include_top=False).output_shape == (None, 4, 4, widths[-1])
    top = keras_cnn.CliqueNet(**SMALL, classes=3)
    assert top.get_layer("predictions").input.shape[-1] == sum(widths)
    assert isinstance(top.get_layer("block1_avg_pool"), keras.layers.GlobalAveragePooling2D)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooled_features_are_as_wide_as_the_map_as_the_contract_says(pooling):
    """keras.applications: pooling=avg/max gives a vector as wide as the include_top=False map."""
    no_top = keras_cnn.CliqueNet(**SMALL, include_top=False)
    pooled = keras_cnn.CliqueNet(**SMALL, include_top=False, pooling=pooling)
    assert pooled.output_shape == (None, no_top.output_shape[-1])
    assert isinstance(
        pooled.layers[-1], keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    )


def test_fit_lowers_the_loss():
    model = keras_cnn.CliqueNet(**SMALL, classes=3)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 16, 16, 3), dtype=np.float32), rng.integers(0, 3, 16)
    x[y == 1] += 0.5
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"T": 13}, "T must be a multiple of 3"),
        ({"T": 15, "bottleneck": True}, "T must be a multiple of 6 with at least 2"),
        ({"T": (4, 1, 4)}, "at least 2 layers"),
        ({"k": (6, 6)}, "k must be a positive integer or 3 of them"),
        ({"structure": "svhn"}, "structure must be 'auto', 'cifar' or 'imagenet'"),
        ({"constants": "torch"}, "constants must be 'reference' or 'keras'"),
        ({"dropout_rate": 1.0}, r"dropout_rate must be in \[0, 1\)"),
        ({"input_shape": (3, 3, 3)}, "minimum 4x4"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_cnn.CliqueNet(**{"input_shape": (16, 16, 3)} | kwargs)


def test_one_training_step_differs_from_inference_only_by_dropout_and_bn():
    """tf.GradientTape through both stages reaches every kernel, including the stage-I-only W(0->i)."""
    model = keras_cnn.CliqueNet(**SMALL, classes=4)
    x = np.random.default_rng(2).random((4, 16, 16, 3), dtype=np.float32)
    with tf.GradientTape() as tape:
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(np.array([0, 1, 2, 3]), model(x, training=True)))
    grads = dict(
        zip([w.path for w in model.trainable_weights], tape.gradient(loss, model.trainable_weights), strict=True)
    )
    for path in ("block1_w_1/w0_1", "block1_w_1/w4_1", "block3_w_4/w3_4"):
        assert grads[path] is not None and float(ops.max(ops.abs(grads[path]))) > 0, path
