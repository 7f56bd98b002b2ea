"""Crop / flip / PCA-lighting maths and the 10-crop evaluation (Krizhevsky et al. 2012; fb.resnet.torch's
transforms.lua)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.augment import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    PCALighting,
    alexnet_view,
    augmenter,
    batch_augmenter,
    color_jitter,
    evaluate_ten_crop,
    pad_crop_flip,
    predict_ten_crop,
    random_resized_crop,
    resize_center_crop,
    ten_crop,
)


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
    np.testing.assert_array_equal(crops[1], images[:, :8, 4:])  # top-right
    np.testing.assert_array_equal(crops[2], images[:, 2:, :8])  # bottom-left
    np.testing.assert_array_equal(crops[3], images[:, 2:, 4:])  # bottom-right
    np.testing.assert_array_equal(crops[4], images[:, 1:9, 2:10])  # centre
    np.testing.assert_array_equal(crops[5:], crops[:5, :, :, ::-1])  # the mirrored five
    with pytest.raises(ValueError, match="at least 11x11"):
        ten_crop(images, 11)  # too short, wide enough
    np.testing.assert_array_equal(np.asarray(ten_crop(images[:, :, :10], 10))[0], images[:, :, :10])  # exactly
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    probs = predict_ten_crop(model, images, from_logits=True)
    expected = np.mean([keras.ops.convert_to_numpy(keras.ops.softmax(model(c))) for c in crops], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)
    logits = predict_ten_crop(model, images)  # a model without softmax: the plain average of its outputs
    np.testing.assert_allclose(logits, np.mean([np.asarray(model(c)) for c in crops], axis=0), atol=1e-5)


def test_stateless_seeds_make_every_draw_repeatable():
    image = tf.constant(np.random.default_rng(6).random((40, 60, 3)).astype("float32"))
    for fn in (
        lambda s: random_resized_crop(image, 24, seed=s),
        lambda s: color_jitter(image, seed=s),
        lambda s: pad_crop_flip(image, seed=s),
    ):
        a, b, c = fn((1, 2)), fn((1, 2)), fn((1, 3))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    offsets = PCALighting().offsets(2, seed=tf.constant([4, 5], tf.int64))
    np.testing.assert_array_equal(offsets, PCALighting().offsets(2, seed=tf.constant([4, 5], tf.int64)))


def test_imagenet_crops_and_colour_stay_in_range():
    image = tf.constant(np.random.default_rng(7).random((40, 60, 3)).astype("float32"))
    assert random_resized_crop(image, 24, seed=0).shape == (24, 24, 3)
    jittered = color_jitter(image, seed=0).numpy()
    assert jittered.min() >= 0.0 and jittered.max() <= 1.0
    ramp = tf.constant(np.tile(np.arange(60, dtype="float32")[None, :, None], (40, 1, 3)))
    centre = resize_center_crop(ramp, 28).numpy()  # 40x60 -> 32x48, then the middle 28x28
    assert centre.shape == (28, 28, 3) and abs(centre[:, :, 0].mean() - 29.5) < 1.0
    out = augmenter("imagenet", channels=3, image_size=24)(
        tf.cast(image * 255, tf.uint8), tf.constant([1, 2], tf.int64)
    )
    assert out.shape == (24, 24, 3) and out.dtype == tf.float32


def test_augmentation_choices_and_their_errors():
    assert augmenter("none", channels=1, image_size=32) is None
    grey = tf.constant(np.arange(32 * 32, dtype="float32").reshape(32, 32, 1))  # crops and flips suit grey images
    moved = [augmenter("cifar", channels=1, image_size=32)(grey, tf.constant([s, 0], tf.int64)) for s in range(4)]
    assert all(m.shape == (32, 32, 1) for m in moved) and any(not np.array_equal(m, grey) for m in moved)
    with pytest.raises(ValueError, match="needs RGB"):
        augmenter("cifar_pca", channels=1, image_size=32)
    with pytest.raises(ValueError, match="choose one of"):
        augmenter("autoaugment", channels=3, image_size=32)
    with pytest.raises(ValueError, match="needs RGB"):
        batch_augmenter(randaugment=True, mix="none", classes=10, channels=1)
    with pytest.raises(ValueError, match="Unknown mix"):
        batch_augmenter(randaugment=False, mix="cutout", classes=10, channels=3)
    assert batch_augmenter(randaugment=False, mix="none", classes=10, channels=3) is None


def test_mixup_and_randaugment_on_batches_keep_shapes_and_label_mass():
    images = tf.constant(np.random.default_rng(8).random((6, 16, 16, 3)).astype("float32"))
    labels = tf.one_hot(np.arange(6) % 3, 3)
    for mix in ("mixup", "cutmix"):
        out_images, out_labels = batch_augmenter(randaugment=True, mix=mix, classes=3, channels=3, seed=1)(
            images, labels
        )
        assert out_images.shape == images.shape
        np.testing.assert_allclose(np.sum(out_labels, axis=-1), 1.0, rtol=1e-5)
        assert not np.array_equal(out_labels, labels)  # labels were mixed


def _placement(out, view, size):
    """(top, left, mirrored) such that `out` is that window of `view` (mirrored or not) plus one RGB vector."""
    for top in range(view.shape[0] - size + 1):
        for left in range(view.shape[1] - size + 1):
            window = view[top : top + size, left : left + size]
            for mirrored, candidate in ((False, window), (True, window[:, ::-1])):
                shift = out - candidate
                if np.allclose(shift, shift[:1, :1], atol=1e-5):
                    return top, left, mirrored, shift[0, 0]
    raise AssertionError("the output is no window of the 256 view plus a colour shift")


def test_alexnet_augmentation_crops_the_256_view_flips_and_shifts_colour_by_pca():
    """Krizhevsky et al. 2012: random 224 crops of the 256x256 image and their mirrors (Sec. 4.1), plus
    eigvec @ (alpha * eigval) with alpha ~ N(0, 0.1^2) per image. Scaled down: 28 of 32 (= 224 of 256)."""
    rng = np.random.default_rng(7)
    image = rng.random((32, 32, 3)).astype("float32")  # already the 32x32 view: alexnet_view leaves it as is
    augment = augmenter("alexnet", channels=3, image_size=28)
    placements, alphas = [], []
    for seed in range(60):
        out = np.asarray(augment(tf.constant(image), tf.constant([seed, 0], tf.int64)))
        assert out.shape == (28, 28, 3)
        top, left, mirrored, shift = _placement(out, image, 28)
        placements.append((top, left, mirrored))
        alphas.append(np.linalg.solve(np.asarray(IMAGENET_EIGVEC), shift) / np.asarray(IMAGENET_EIGVAL))
    assert {m for _, _, m in placements} == {False, True}  # mirrored about half the time
    assert len({(t, l) for t, l, _ in placements}) > 10  # every position of the 5x5 grid is possible
    assert 0.06 < np.std(alphas) < 0.14  # sigma 0.1 (60 images x 3 eigenvalues)


def test_alexnet_view_is_the_central_square_of_the_image_scaled_to_256_on_its_shorter_side():
    image = np.random.default_rng(8).random((30, 45, 3)).astype("float32")
    view = np.asarray(alexnet_view(tf.constant(image), 16))
    scaled = np.asarray(tf.image.resize(image, (16, 24)))  # shorter side 30 -> 16, so 45 -> 24
    np.testing.assert_allclose(view, scaled[:, 4:20], atol=1e-6)  # the central 16 of 24 columns


def test_alexnet_is_the_augmentation_of_the_alexnet_recipes_only():
    from keras_cnn.training import recipe_augment

    assert recipe_augment("alexnet_v1", "paper") == "alexnet"  # the paper's network trains on the paper's recipe
    assert recipe_augment("alexnet", "alexnet") == "alexnet"
    assert recipe_augment("alexnet", "paper") is None  # torchvision's layout and recipe: RandomResizedCrop
    assert recipe_augment("resnet50", "paper") is None and recipe_augment("alexnet_v1", "quick") is None
    with pytest.raises(ValueError, match="needs RGB"):
        augmenter("alexnet", channels=1, image_size=224)


# --- behaviours pinned against their sources (each found unpinned by mutation testing, docs/testing.md) ---------


def _coordinates(height: int, width: int):
    """An image whose red channel is x / (W - 1) and green y / (H - 1): a window of it says where it came from."""
    ys, xs = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    return tf.constant(np.stack([xs, ys, np.zeros_like(xs)], -1), tf.float32)


def test_the_cifar_crop_pads_4_and_flips_half_the_images():
    """He et al. 2016, Sec. 4.2: 4 pixels padded on each side, a random 32x32 crop, a horizontal flip with
    probability 1/2; flip=False never mirrors; augmenter("cifar") is exactly this."""
    image = tf.constant(np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251 + 1, tf.float32)
    padded = np.pad(image.numpy(), ((4, 4), (4, 4), (0, 0)))
    cifar = augmenter("cifar", channels=3, image_size=32)
    offsets, flips = set(), 0
    for s in range(300):
        out = pad_crop_flip(image, seed=s).numpy()
        np.testing.assert_array_equal(out, cifar(image, tf.constant([s, 0], tf.int64)).numpy())
        found = [
            (t, l, f)
            for t in range(9)
            for l in range(9)
            for f in (0, 1)
            if np.array_equal(padded[t : t + 32, l : l + 32][:, :: -1 if f else 1], out)
        ]
        assert found, "not a 32x32 window of the 4-padded image"
        offsets.add(found[0][:2])
        flips += found[0][2]
        unflipped = pad_crop_flip(image, seed=s, flip=False).numpy()
        assert any(np.array_equal(padded[t : t + 32, l : l + 32], unflipped) for t in range(9) for l in range(9))
    assert {t for t, _ in offsets} == set(range(9)) == {l for _, l in offsets}
    assert 120 < flips < 180


def test_the_evaluation_crop_is_central():
    """resize_center_crop and alexnet_view (default 256) keep the centre: a centre-symmetric image stays so
    (40x60 scaled to 20x30, so that both margins are even)."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 60), indexing="ij")
    image = tf.constant(np.repeat((xs**2 + 2 * ys**2)[..., None], 3, -1), tf.float32)
    for out in (resize_center_crop(image, 16, crop_fraction=0.8).numpy(), alexnet_view(image, 20).numpy()):
        np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-5)
    assert tuple(alexnet_view(image).shape) == (256, 256, 3)


def test_alexnet_augmentation_takes_its_crop_from_the_view_scaled_by_256_over_224():
    """augmenter("alexnet", image_size=s) crops s x s out of alexnet_view(image, round(s * 256 / 224)): for
    s = 28 the view is 32, so the crop's coordinates span 28/32 of the image and start on the 32-grid."""
    image = _coordinates(64, 64)
    alexnet = augmenter("alexnet", channels=3, image_size=28)
    view = alexnet_view(image, 32).numpy()
    for s in range(8):
        out = alexnet(image, tf.constant([s, 0], tf.int64)).numpy()
        windows = [
            view[t : t + 28, l : l + 28][:, :: -1 if f else 1] for t in range(5) for l in range(5) for f in (0, 1)
        ]
        # one of them, shifted by one RGB vector (the lighting)
        assert min(np.ptp(out - w, axis=(0, 1)).max() for w in windows) < 1e-4, s


def test_lit_augmentations_are_functions_of_their_seed():
    """The same stateless seed gives the same image, every time it is drawn (a resumed run sees the same
    images); another seed gives another crop and lighting. The lighting stays float32 under mixed precision."""
    image = tf.constant(np.random.default_rng(0).random((32, 32, 3)), tf.float32)
    seed, other = tf.constant([5, 0], tf.int64), tf.constant([6, 0], tf.int64)
    for name in ("cifar_pca", "alexnet", "imagenet"):
        augment = augmenter(name, channels=3, image_size=24)
        first = augment(image, seed).numpy()
        np.testing.assert_array_equal(augment(image, seed).numpy(), first, err_msg=name)
        assert not np.allclose(augment(image, other).numpy(), first), name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        augment = augmenter("cifar_pca", channels=3, image_size=32, pca_seed=7)
    finally:
        keras.config.set_dtype_policy("float32")
    lighting = next(c.cell_contents for c in augment.__closure__ if isinstance(c.cell_contents, PCALighting))
    assert lighting.compute_dtype == "float32" and augment(image, seed).dtype == tf.float32


def test_imagenet_augmentation_lights_what_colour_jitter_leaves_grey():
    """Colour jitter keeps a grey image grey; the PCA lighting after it does not (its eigenvectors are not
    grey), so a grey input comes out coloured."""
    grey, augment = tf.fill((40, 40, 3), 0.5), augmenter("imagenet", channels=3, image_size=24)
    outs = [augment(grey, tf.constant([s, 0], tf.int64)).numpy() for s in range(5)]
    assert max(np.abs(out[..., 0] - out[..., 2]).max() for out in outs) > 5e-4  # 0 without lighting
    with pytest.raises(ValueError, match="needs RGB"):
        augmenter("imagenet", channels=1, image_size=24)


def test_alexnet_view_size_is_256_over_224_of_the_crop():
    """At image_size 224 the view is 256: the crop spans 224 of its 256 columns (of a square 64-pixel image
    whose red channel is its x coordinate: 223 * 64 / 256 / 63 of the red range, whatever the flip and light)."""
    out = augmenter("alexnet", channels=3, image_size=224)(_coordinates(64, 64), tf.constant([1, 0], tf.int64))
    span = abs(float(out[0, -1, 0] - out[0, 0, 0]))
    np.testing.assert_allclose(span, 223 * 64 / 256 / 63, atol=5e-4)


def test_batch_augmentation_is_seeded_float32_in_range_and_mixup_is_a_convex_pair():
    """The same seed gives the same batch; under mixed precision the data stay float32; RandAugment keeps [0, 1];
    MixUp alone (Zhang et al. 2018) makes each image the same convex mix of two images as its label."""
    images = tf.constant(np.random.default_rng(8).random((6, 16, 16, 3)).astype("float32"))
    labels = tf.one_hot(np.arange(6) % 3, 3)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        first, again = (
            batch_augmenter(randaugment=True, mix="mixup", classes=3, channels=3, seed=4)(images, labels)
            for _ in range(2)
        )
    finally:
        keras.config.set_dtype_policy("float32")
    np.testing.assert_array_equal(first[0], again[0])
    assert first[0].dtype == tf.float32 and float(tf.reduce_min(first[0])) >= 0 and float(tf.reduce_max(first[0])) <= 1
    mixed, mixed_labels = batch_augmenter(randaugment=False, mix="mixup", classes=3, channels=3, seed=2)(images, labels)
    x, y = np.asarray(images).reshape(6, -1), np.asarray(labels)
    for out, label in zip(np.asarray(mixed).reshape(6, -1), np.asarray(mixed_labels), strict=True):
        assert any(_mixes(out, label, x[i], x[j], y[i], y[j]) for i in range(6) for j in range(6) if i != j), label


def _mixes(out, label, xi, xj, yi, yj) -> bool:
    """Whether out = w xi + (1 - w) xj and label = w yi + (1 - w) yj for one w (fitted on the images)."""
    w = float(np.dot(out - xj, xi - xj) / np.dot(xi - xj, xi - xj))
    return np.allclose(out, w * xi + (1 - w) * xj, atol=2e-3) and np.allclose(label, w * yi + (1 - w) * yj, atol=2e-3)


def test_randaugment_changes_the_images_of_a_batch_and_not_its_labels():
    images = tf.constant(np.random.default_rng(8).random((6, 16, 16, 3)).astype("float32"))
    labels = tf.constant(np.arange(6) % 3)
    changed = batch_augmenter(randaugment=True, mix="none", classes=3, channels=3, seed=1)(images, labels)
    assert not np.allclose(changed[0], images) and np.array_equal(changed[1], labels)
    assert batch_augmenter(randaugment=False, mix="none", classes=3, channels=3) is None  # nothing to do


def test_color_jitter_scales_by_factors_in_1_plus_minus_0_4_and_clips():
    """fb.resnet.torch ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)."""
    flat = tf.fill((4, 4, 3), 0.5)
    brightness = [float(color_jitter(flat, seed=s, contrast=1e-6, saturation=1e-6)[0, 0, 0]) / 0.5 for s in range(200)]
    assert 0.6 <= min(brightness) < 0.65 and 1.35 < max(brightness) <= 1.4
    two = tf.constant(np.array([0.4, 0.6])[:, None, None] * np.ones((2, 2, 3)), tf.float32)
    contrast = [
        float(color_jitter(two, seed=s, brightness=1e-6, saturation=1e-6)[1, 0, 0] - 0.5) / 0.1 for s in range(200)
    ]
    assert 0.6 <= min(contrast) < 0.65 and 1.35 < max(contrast) <= 1.4
    grey = tf.constant([[[0.5, 0.45, 0.45]]], tf.float32)  # saturation 0.1: scaled without clipping
    sat = [
        float(tf.image.rgb_to_hsv(color_jitter(grey, seed=s, brightness=1e-6, contrast=1e-6))[0, 0, 1]) / 0.1
        for s in range(200)
    ]
    assert 0.6 <= min(sat) < 0.65 and 1.35 < max(sat) <= 1.4
    bright = [float(tf.reduce_max(color_jitter(tf.fill((4, 4, 3), 0.9), seed=s, brightness=0.9))) for s in range(20)]
    assert max(bright) == 1.0  # clipped at 1


def test_random_resized_crop_covers_8_to_100_percent_with_aspect_3_4_to_4_3():
    """Szegedy et al. 2015 / torchvision RandomResizedCrop: area fraction in [0.08, 1], ratio in [3/4, 4/3]."""
    image = _coordinates(200, 200)
    areas, ratios = [], []
    for s in range(400):
        out = random_resized_crop(image, 16, seed=s).numpy()
        width = (out[0, -1, 0] - out[0, 0, 0]) * 200 / 199 * 16 / 15
        height = (out[-1, 0, 1] - out[0, 0, 1]) * 200 / 199 * 16 / 15
        areas.append(width * height)
        ratios.append(width / height)
    assert 0.075 < min(areas) < 0.1 and max(areas) > 0.9 and max(areas) < 1.02
    assert 0.72 < min(ratios) < 0.8 and 1.25 < max(ratios) < 1.36


def test_pca_lighting_from_images_recovers_a_known_covariance():
    """Eigenvalues in decreasing order and their eigenvectors (up to sign), from (N, 3) pixels or image stacks;
    keyword arguments reach the layer; two pixels are enough, one is not."""
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    pixels = np.random.default_rng(2).normal(size=(200_000, 3)) * np.sqrt([4.0, 1.0, 0.25]) @ rotation.T
    layer = PCALighting.from_images(pixels, value_range=255.0, seed=3)
    assert layer.alphastd == 0.1
    np.testing.assert_allclose(np.asarray(layer.eigval), [4.0, 1.0, 0.25], rtol=0.02)
    np.testing.assert_allclose(np.abs(np.asarray(layer.eigvec)), np.abs(rotation), atol=0.02)
    assert layer.value_range == 255.0
    PCALighting.from_images(np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="two pixels or more"):
        PCALighting.from_images(np.array([[1.0, 2.0, 3.0]]))


def test_evaluate_ten_crop_counts_top1_over_batches():
    """A model that answers "bright" (class 1) for a mean pixel over 0.5: four images of 12x12 in two batches,
    one of them labelled wrongly, give 3/4, with logits (from_logits=True) as with probabilities."""
    inputs = keras.Input((8, 8, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="zeros")(mean)
    model = keras.Model(inputs, logits)
    model.layers[-1].set_weights([np.array([[-10.0, 10.0]] * 3), np.array([7.5, -7.5])])  # 20 * mean - 15
    images = np.stack([np.full((12, 12, 3), v, "float32") for v in (0.1, 0.9, 0.2, 0.8)])
    labels = np.array([0, 1, 1, 1])  # the third is dark but labelled bright
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    assert evaluate_ten_crop(model, batches, 8, from_logits=True) == 0.75
    probabilities = keras.Model(inputs, keras.layers.Softmax()(logits))
    assert evaluate_ten_crop(probabilities, batches, 8) == 0.75
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate_ten_crop(model, batches.take(0), 8)
