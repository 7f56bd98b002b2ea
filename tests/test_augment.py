"""Crop / flip / PCA-lighting maths and the 10-crop evaluation (reference-figures.md §5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.augment import IMAGENET_EIGVAL, IMAGENET_EIGVEC, PCALighting, pad_crop_flip, predict_ten_crop, ten_crop


def test_pca_lighting_shifts_every_pixel_by_one_rgb_vector_per_image():
    layer = PCALighting(seed=0)
    images = np.random.default_rng(0).random((6, 5, 7, 3)).astype("float32")
    shift = np.asarray(layer(images, training=True)) - images
    per_image = shift[:, :1, :1, :]
    np.testing.assert_allclose(shift, np.broadcast_to(per_image, shift.shape), atol=1e-6)
    assert np.all(np.abs(per_image.reshape(6, 3)).sum(axis=1) > 0)  # each image draws its own alpha
    assert len({tuple(np.round(v, 6)) for v in per_image.reshape(6, 3)}) == 6
    np.testing.assert_array_equal(layer(images, training=False), images)


def test_pca_lighting_offsets_are_eigvec_alpha_eigval_with_zero_mean():
    layer = PCALighting(alphastd=0.1, seed=1)
    offsets = np.asarray(layer.offsets(20_000))
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=2e-3)
    # alpha ~ N(0, 0.1^2) => cov(offset) = V diag((0.1 * lambda)^2) V^T
    eigvec, eigval = np.asarray(IMAGENET_EIGVEC), np.asarray(IMAGENET_EIGVAL)
    expected = eigvec @ np.diag((0.1 * eigval) ** 2) @ eigvec.T
    np.testing.assert_allclose(np.cov(offsets, rowvar=False), expected, atol=2e-5)
    scaled = np.asarray(PCALighting(seed=1, value_range=255.0).offsets(4))
    np.testing.assert_allclose(scaled, np.asarray(PCALighting(seed=1).offsets(4)) * 255.0, rtol=1e-5)


def test_pca_lighting_from_images_decomposes_their_covariance():
    rng = np.random.default_rng(2)
    mix = np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.0, 0.0, 0.4]])
    images = (rng.standard_normal((50, 8, 8, 3)) @ mix).astype("float32")
    layer = PCALighting.from_images(images)
    cov = np.cov(images.reshape(-1, 3), rowvar=False)
    np.testing.assert_allclose(layer.eigvec @ np.diag(layer.eigval) @ layer.eigvec.T, cov, rtol=1e-4, atol=1e-5)
    assert list(layer.eigval) == sorted(layer.eigval, reverse=True)
    with pytest.raises(ValueError, match=r"needs RGB images \(\.\.\., 3\), .* received \(4, 4, 1\)"):
        PCALighting.from_images(np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="eigval must have 3 values and eigvec 3x3"):
        PCALighting(eigval=(1.0, 2.0))


def test_pca_lighting_runs_in_a_tf_data_map_and_serializes(tmp_path):
    layer = PCALighting(seed=3)
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 6, 6, 3), "float32")).map(lambda x: layer(x, training=True))
    shifted = np.stack(list(ds.as_numpy_iterator()))
    assert shifted.shape == (4, 6, 6, 3) and np.all(np.abs(shifted[:, 0, 0]).sum(axis=-1) > 0)
    model = keras.Sequential([keras.Input((6, 6, 3)), layer])
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.layers[0].eigvec, layer.eigvec)


def test_pad_crop_flip_returns_a_window_of_the_padded_image_or_its_mirror():
    image = np.random.default_rng(4).random((8, 8, 3)).astype("float32")
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)))
    windows = [padded[y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
    flips = set()
    for i in range(40):
        out = pad_crop_flip(tf.constant(image), pad=2, seed=i).numpy()
        plain = any(np.array_equal(out, w) for w in windows)
        mirrored = any(np.array_equal(out, w[:, ::-1]) for w in windows)
        assert plain or mirrored
        flips.add(mirrored and not plain)
    assert flips == {True, False}  # both orientations occur


def test_ten_crop_views_and_their_average():
    images = np.random.default_rng(5).random((2, 10, 12, 3)).astype("float32")
    crops = np.asarray(ten_crop(images, 8))
    assert crops.shape == (10, 2, 8, 8, 3)
    np.testing.assert_array_equal(crops[0], images[:, :8, :8])  # top-left
    np.testing.assert_array_equal(crops[3], images[:, 2:, 4:])  # bottom-right
    np.testing.assert_array_equal(crops[4], images[:, 1:9, 2:10])  # centre
    np.testing.assert_array_equal(crops[5:], crops[:5, :, :, ::-1])  # the mirrored five
    with pytest.raises(ValueError, match="at least 16x16"):
        ten_crop(images, 16)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    probs = predict_ten_crop(model, images, from_logits=True)
    expected = np.mean([keras.ops.convert_to_numpy(keras.ops.softmax(model(c))) for c in crops], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)
