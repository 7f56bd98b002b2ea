import numpy as np
import pytest

from keras_cnn.data import load_digits


def test_digits_are_real_split_and_scaled():
    train, val, classes = load_digits(32, batch_size=4096)
    (x_train, _), (x_val, y_val) = next(iter(train)), next(iter(val))
    assert classes == 10 and x_train.shape == (1437, 32, 32, 1) and x_val.shape == (360, 32, 32, 1)
    assert 0.0 <= float(np.min(x_train)) and float(np.max(x_train)) <= 1.0
    assert np.bincount(y_val.numpy()).min() >= 35  # stratified: every digit held out


def test_digits_colour_and_seeded_split():
    _, a, _ = load_digits(16, channels=3, seed=1, batch_size=512)
    _, b, _ = load_digits(16, channels=3, seed=1, batch_size=512)
    xa, xb = next(iter(a))[0].numpy(), next(iter(b))[0].numpy()
    assert xa.shape[-1] == 3 and np.array_equal(xa, xb)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 4}, "image_size must be an integer >= 8"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_digits(**kwargs)


def test_photo_patches_are_real_colour_images_split_per_photo():
    from keras_cnn.data import load_dataset, photo_arrays

    (x_train, y_train), (x_val, y_val), classes = photo_arrays(24, seed=2)
    assert classes == 2 and x_train.shape[1:] == (24, 24, 3) and len(y_train) + len(y_val) == 456
    assert sorted(np.bincount(y_val)) == [46, 46]  # stratified 20 %
    assert np.ptp(x_train[..., 0] - x_train[..., 2]) > 0.3  # colour, not grey repeated to RGB
    np.testing.assert_array_equal(photo_arrays(24, seed=2)[1][0], x_val)
    splits = load_dataset("photos", image_size=24, channels=3, batch_size=16)
    assert splits.classes == 2 and splits.train_examples == len(y_train)


def _rows(images: np.ndarray) -> dict[bytes, int]:
    """Each image's bytes -> how often it occurs (a multiset of images, whatever their order)."""
    counts: dict[bytes, int] = {}
    for image in images:
        counts[image.tobytes()] = counts.get(image.tobytes(), 0) + 1
    return counts


def test_digits_are_sklearns_scans_over_16_split_stratified_and_resized_bilinearly():
    from sklearn.datasets import load_digits as sklearn_digits

    from keras_cnn.data import digits_arrays

    scans = sklearn_digits()  # 16 grey levels per pixel (0..16)
    (x_train, y_train), (x_val, y_val), classes = digits_arrays(8, validation_fraction=0.25, seed=3)
    assert classes == 10 and x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.shape == (1347, 8, 8, 1) and x_val.shape == (450, 8, 8, 1)  # 25 % of 1,797 held out
    # At 8x8 nothing is resized: every image is one of the scans / 16, with its own label, each used once.
    want = {}
    for image, label in zip(scans.images, scans.target, strict=True):
        key = (image.astype("float32") / 16.0)[..., None].tobytes()
        want.setdefault(key, []).append(label)
    got = list(zip(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), strict=True))
    assert _rows(np.stack([x for x, _ in got])) == {k: len(v) for k, v in want.items()}
    assert all(label in want[x.tobytes()] for x, label in got)
    # Stratified: each digit's held-out share is a quarter of its scans, to within one.
    per_class, held_out = np.bincount(scans.target), np.bincount(y_val, minlength=10)
    assert np.all(np.abs(held_out - 0.25 * per_class) <= 1), (held_out, per_class)
    # Another seed holds out other scans; the same seed the same ones.
    assert _rows(digits_arrays(8, validation_fraction=0.25, seed=4)[1][0]) != _rows(x_val)
    # Larger sizes are the same split, resized bilinearly (TensorFlow's), then repeated to 3 channels.
    (_, _), (x32, y32), _ = digits_arrays(32, 3, validation_fraction=0.25, seed=3)
    np.testing.assert_array_equal(y32, y_val)
    grey = tf_resize(x_val, 32)
    np.testing.assert_allclose(x32, np.repeat(grey, 3, axis=-1), atol=1e-6)


def tf_resize(images: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf

    return tf.image.resize(images, (size, size), method="bilinear").numpy()


def test_load_digits_batches_the_same_split_and_shuffles_training_only():
    from keras_cnn.data import digits_arrays

    (x_train, _), (x_val, y_val), _ = digits_arrays(16, validation_fraction=0.2, seed=5)
    train, val, classes = load_digits(16, batch_size=100, validation_fraction=0.2, seed=5)
    assert classes == 10
    val_x = np.concatenate([x.numpy() for x, _ in val])
    np.testing.assert_array_equal(val_x, x_val)  # validation in its order, every image once
    assert [len(y) for _, y in val] == [100, 100, 100, 60]
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in val]), y_val)
    first, second = (np.concatenate([x.numpy() for x, _ in train]) for _ in range(2))
    assert _rows(first) == _rows(x_train) == _rows(second)  # every training image once per pass
    assert not np.array_equal(first, x_train) and not np.array_equal(first, second)  # shuffled, anew each pass
    again = load_digits(16, batch_size=100, validation_fraction=0.2, seed=5)[0]
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in again]), first)  # the seed fixes the order


def test_defaults_are_32_pixels_one_channel_a_fifth_held_out_seed_0():
    from keras_cnn.data import digits_arrays, photo_arrays

    (x_train, y_train), (x_val, _), _ = digits_arrays()
    (want_train, want_labels), (want_val, _), _ = digits_arrays(32, 1, validation_fraction=0.2, seed=0)
    assert x_train.shape == (1437, 32, 32, 1) and x_val.shape == (360, 32, 32, 1)
    np.testing.assert_array_equal(x_train, want_train)
    np.testing.assert_array_equal(y_train, want_labels)
    np.testing.assert_array_equal(x_val, want_val)
    photos = photo_arrays()
    np.testing.assert_array_equal(photos[1][0], photo_arrays(32, validation_fraction=0.2, seed=0)[1][0])
    assert photos[1][0].shape == (92, 32, 32, 3)
    train, val, _ = load_digits()
    assert next(iter(train))[0].shape == next(iter(val))[0].shape == (64, 32, 32, 1)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in val]), x_val)


@pytest.mark.parametrize("size", [8, 9])
def test_the_smallest_sizes_and_fractions_allowed(size):
    from keras_cnn.data import digits_arrays, photo_arrays

    assert digits_arrays(size, validation_fraction=0.01)[1][0].shape == (18, size, size, 1)
    assert photo_arrays(size, validation_fraction=0.99)[0][0].shape == (4, size, size, 3)  # 456 - ceil(451.44)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 7}, "image_size must be an integer >= 8 (the digits are 8x8 scans); received 7."),
        ({"image_size": 16.0}, "image_size must be an integer >= 8 (the digits are 8x8 scans); received 16.0."),
        ({"validation_fraction": 0.0}, "validation_fraction must be in (0, 1); received 0.0."),
        ({"validation_fraction": 1.5}, "validation_fraction must be in (0, 1); received 1.5."),
        ({"channels": 2}, "channels must be 1 or 3; received 2."),
    ],
)
def test_bad_arguments_are_named_exactly(kwargs, message):
    from keras_cnn.data import digits_arrays, photo_arrays

    with pytest.raises(ValueError) as raised:
        digits_arrays(**kwargs)
    assert str(raised.value) == message
    if "channels" not in kwargs:  # the photos say the same, without the digits' remark
        with pytest.raises(ValueError) as raised:
            photo_arrays(**kwargs)
        assert str(raised.value) == message.replace(" (the digits are 8x8 scans)", "")


def test_photo_patches_are_64_pixel_windows_at_stride_32_over_255():
    from sklearn.datasets import load_sample_images

    from keras_cnn.data import photo_arrays

    photos = load_sample_images().images
    (x_train, y_train), (x_val, y_val), _ = photo_arrays(64, validation_fraction=0.5, seed=0)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    want = {}
    for label, photo in enumerate(photos):  # 427x640: 12 rows x 19 columns of windows
        for top in range(0, 427 - 64 + 1, 32):
            for left in range(0, 640 - 64 + 1, 32):
                want[(photo[top : top + 64, left : left + 64].astype("float32") / 255.0).tobytes()] = label
    assert len(want) == 2 * 12 * 19
    images, labels = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    assert _rows(images) == dict.fromkeys(want, 1)
    assert all(want[x.tobytes()] == y for x, y in zip(images, labels, strict=True))
    assert sorted(np.bincount(y_val)) == [114, 114]  # half of each photo's 228 windows
