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
