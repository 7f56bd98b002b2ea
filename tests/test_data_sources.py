"""Every loader on small files the test writes in the real on-disk format (CIFAR python archive, TFDS mock
data, image folders), and the clear errors when data is missing or corrupt."""

import io
import os
import pickle
import re
import struct
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_cnn.data import load_cifar_archive, load_dataset


def _cifar_batch(rng, n: int, label_key: bytes, classes: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # the published layout: R plane, G plane, B plane
    batch = {b"batch_label": b"test", label_key: labels.tolist(), b"data": rows, b"filenames": [b"x.png"] * n}
    return pickle.dumps(batch, protocol=2), images, labels


def _write_cifar10(tmp_path, rng, n: int = 4):
    """cifar-10-python.tar.gz as published: cifar-10-batches-py/data_batch_1..5 and test_batch."""
    members, expected = {}, {"train": ([], []), "test": ([], [])}
    for member in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        raw, images, labels = _cifar_batch(rng, n, b"labels", 10)
        members[member] = raw
        split = "test" if member == "test_batch" else "train"
        expected[split][0].append(images)
        expected[split][1].append(labels)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return archive, {k: (np.concatenate(x), np.concatenate(y)) for k, (x, y) in expected.items()}


def test_cifar10_archive_and_its_extracted_folder_give_the_published_images(tmp_path):
    archive, expected = _write_cifar10(tmp_path, np.random.default_rng(0))
    splits = load_cifar_archive(archive)
    for split in ("train", "test"):
        np.testing.assert_array_equal(splits[split][0], expected[split][0])
        np.testing.assert_array_equal(splits[split][1], expected[split][1])
    assert splits["train"][0].shape == (20, 32, 32, 3)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    for folder in (tmp_path / "extracted", tmp_path / "extracted" / "cifar-10-batches-py"):
        np.testing.assert_array_equal(load_cifar_archive(folder)["test"][0], expected["test"][0])
    train, val, classes, _ = load_dataset("cifar10_archive", data_dir=archive, batch_size=8)
    x, _ = next(iter(val))
    assert classes == 10 and x.shape == (4, 32, 32, 3) and x.dtype == tf.float32
    np.testing.assert_allclose(x.numpy(), expected["test"][0] / 255.0, atol=1e-6)
    assert sum(int(b[0].shape[0]) for b in train) == 20


def test_cifar100_archive_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for member in ("train", "test"):
        raw, _, labels = _cifar_batch(rng, 3, b"fine_labels", 100)
        (folder / member).write_bytes(raw)
    assert load_cifar_archive(tmp_path, "cifar100")["test"][1].tolist() == labels.tolist()


def test_archive_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        load_cifar_archive(tmp_path / "nowhere")
    assert str(raised.value) == (
        f"No CIFAR archive at {str(tmp_path / 'nowhere')!r}: pass cifar-10-python.tar.gz / cifar-100-python.tar.gz "
        "(from https://www.cs.toronto.edu/~kriz/cifar.html) or the folder it extracts to."
    )
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        load_cifar_archive(tmp_path / "broken.tar.gz")
    with pytest.raises(FileNotFoundError, match="lacks the cifar10 batches"):
        load_cifar_archive(tmp_path)
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_cifar_archive(tmp_path, "cifar1000")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_tampered_batch_is_refused_without_running_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good, _, _ = _cifar_batch(np.random.default_rng(2), 2, b"labels", 10)
    for member in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / member).write_bytes(good)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"refusing posix\.system|refusing nt\.system"):
        load_cifar_archive(folder)


def _write_folder(root, rng, counts: dict[str, int], size=(20, 24)):
    images = {}
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            tf.io.write_file(str(root / cls / f"{i}.png"), tf.io.encode_png(image))
            images[(cls, i)] = image
    (root / "cat" / "notes.txt").write_text("not an image")
    return images


def test_image_folder_splits_per_class_and_decodes_losslessly(tmp_path):
    images = _write_folder(tmp_path, np.random.default_rng(3), {"cat": 5, "dog": 5})
    train, val, classes, _ = load_dataset(
        "folder", data_dir=tmp_path, image_size=None, batch_size=2, validation_fraction=0.4
    )
    assert classes == 2
    seen = [(x.numpy(), int(y)) for ds in (train, val) for xb, yb in ds for x, y in zip(xb, yb, strict=True)]
    assert len(seen) == 10 and sum(1 for xb, _ in val for _ in xb) == 4
    originals = {
        label: [img / 255.0 for (cls, _), img in images.items() if cls == ["cat", "dog"][label]] for label in (0, 1)
    }
    for x, label in seen:  # each decoded image is one of its class's files, pixel for pixel
        assert any(np.allclose(x, original, atol=1e-6) for original in originals[label])
    resized, _, _, _ = load_dataset("folder", data_dir=tmp_path, image_size=16, channels=1, batch_size=4)
    assert next(iter(resized))[0].shape[1:] == (16, 16, 1)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("folder", data_dir=tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="one subfolder per class"):
        load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        load_dataset("folder", data_dir=tmp_path)


def test_tfds_datasets_load_through_tfds_and_never_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not prepared under .* never downloaded .*tfds build cifar10"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"put the ImageNet tars in {tmp_path}/downloads/manual")):
        load_dataset("imagenet2012", data_dir=tmp_path)
    with tfds.testing.mock_data(num_examples=12):
        train, _, classes, _ = load_dataset("cifar10", data_dir=tmp_path, batch_size=4, image_size=24)
        x, y = next(iter(train))
        mnist_train, _, mnist_classes, _ = load_dataset("mnist", data_dir=tmp_path, batch_size=4, channels=3)
        mnist_x, _ = next(iter(mnist_train))
        from keras_cnn.augment import augmenter

        imagenet = load_dataset(
            "imagenet2012",
            data_dir=tmp_path,
            batch_size=3,
            image_size=32,
            epochs=(0, 1),
            augment=augmenter("imagenet", channels=3, image_size=32),
        )
        crops, val_crops = next(iter(imagenet.train))[0], next(iter(imagenet.validation))[0]
    assert imagenet.classes == 1000 and crops.shape == val_crops.shape == (3, 32, 32, 3)  # random and centre crops
    assert classes == 10 and x.shape == (4, 24, 24, 3) and 0.0 <= float(tf.reduce_min(x)) <= 1.0
    assert y.dtype == tf.int32 and mnist_classes == 10 and mnist_x.shape == (4, 32, 32, 3)


def test_unknown_dataset_and_missing_data_dir():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar'; choose one of \['digits'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="pass data_dir"):
        load_dataset("cifar10_archive")


def test_training_pipeline_is_deterministic_for_a_seed(tmp_path):
    archive, _ = _write_cifar10(tmp_path, np.random.default_rng(4))

    def order(seed):
        train = load_dataset("cifar10_archive", data_dir=archive, batch_size=5, seed=seed)[0]
        return np.concatenate([y.numpy() for _, y in train]).tolist()

    first, again, other = order(0), order(0), order(1)
    assert first == again and sorted(first) == sorted(other) and first != other


def test_training_stream_is_a_function_of_seed_epoch_and_example():
    from keras_cnn.augment import augmenter
    from keras_cnn.data import pipeline

    images = np.random.default_rng(9).random((10, 8, 8, 1)).astype("float32")
    source = tf.data.Dataset.from_tensor_slices((images, np.arange(10)))
    kwargs = {
        "image_size": None,
        "channels": 1,
        "batch_size": 4,
        "training": True,
        "seed": 5,
        "augment": augmenter("cifar", channels=1, image_size=8),
    }
    whole = list(pipeline(source, epochs=(0, 3), **kwargs))
    tail = list(pipeline(source, epochs=(2, 3), **kwargs))
    assert len(whole) == 9 and len(tail) == 3  # ceil(10 / 4) batches per epoch, never shared between epochs
    for (xa, ya), (xb, yb) in zip(whole[6:], tail, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)  # same crops and flips for a resumed epoch
    orders = [np.concatenate([y.numpy() for _, y in whole[3 * e : 3 * e + 3]]) for e in range(3)]
    assert all(sorted(o) == list(range(10)) for o in orders) and not np.array_equal(orders[0], orders[1])
    onehot = next(iter(pipeline(source, one_hot=10, epochs=(0, 1), **kwargs)))[1]
    assert onehot.shape == (4, 10) and np.allclose(np.sum(onehot, axis=-1), 1.0)


def _write_jpeg_tree(root, rng, splits: dict[str, dict[str, int]], size=(8, 8)) -> dict:
    """root/<split>/<class>/<i>.jpg as real JPEG files (Pillow); returns {path: (split, class)}."""
    from PIL import Image

    written = {}
    for split, counts in splits.items():
        for cls, n in counts.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                path = root / split / cls / f"{i}.jpg"
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, quality=90)
                written[str(path)] = (split, cls)
    return written


def _pil_pixels(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize(
    ("train_dir", "validation_dir"),
    [("train", "test"), ("train", "val"), ("train", "validation"), ("training", "testing")],  # last: MNIST PNGs
)
@pytest.mark.parametrize("budget", [None, 0])  # decoded once into memory, or by tf.data every pass
def test_split_folders_train_and_validate_on_their_own_images(tmp_path, train_dir, validation_dir, budget):
    from keras_cnn.data.folder import load_image_folder

    counts = {"airplane": 3, "bird": 2, "cat": 4}
    files = _write_jpeg_tree(tmp_path, np.random.default_rng(5), {train_dir: counts, validation_dir: counts})
    train, val, names = load_image_folder(tmp_path, 0.5, seed=0, budget=budget)
    assert names == ["airplane", "bird", "cat"]
    by_pixels = {path: _pil_pixels(path) for path in files}
    for split, ds in ((train_dir, train), (validation_dir, val)):
        seen = [(x.numpy(), int(y)) for x, y in ds]
        assert len(seen) == 9 and all(x.dtype == np.uint8 for x, _ in seen)
        matched = set()
        for x, label in seen:  # every image is one file of its split and class, pixel for pixel as Pillow reads it
            path = next(p for p, pixels in by_pixels.items() if pixels.shape == x.shape and (pixels == x).all())
            assert files[path] == (split, names[label])
            matched.add(path)
        assert len(matched) == 9
    labels = [int(y) for _, y in train]
    assert labels != sorted(labels)  # one seeded random order, not class by class


def test_split_folders_through_load_dataset_and_train(tmp_path):
    _write_jpeg_tree(tmp_path, np.random.default_rng(6), {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}})
    splits = load_dataset("folder", data_dir=tmp_path, image_size=8, batch_size=16)
    assert splits.classes == 2 and splits.train_examples == 8
    assert sum(int(x.shape[0]) for x, _ in splits.validation) == 4


def test_val_is_preferred_over_test_and_split_errors_name_the_problem(tmp_path):
    from keras_cnn.data.folder import load_image_folder

    rng = np.random.default_rng(7)
    _write_jpeg_tree(tmp_path, rng, {"train": {"a": 1, "b": 1}, "val": {"a": 1, "b": 1}, "test": {"a": 2, "b": 2}})
    assert sum(1 for _ in load_image_folder(tmp_path, 0.2, 0)[1]) == 2  # val/, not test/
    lone = tmp_path / "lone"
    _write_jpeg_tree(lone, rng, {"train": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match=r"train/ folder but no validation split.*val/, validation/, test/"):
        load_image_folder(lone, 0.2, 0)
    odd = tmp_path / "odd"
    _write_jpeg_tree(odd, rng, {"train": {"a": 1, "b": 1, "c": 1}, "test": {"a": 1, "b": 1, "d": 1}})
    with pytest.raises(ValueError, match=r"same classes: \['c'\] only in train/, \['d'\] only in test/"):
        load_image_folder(odd, 0.2, 0)


def test_a_file_that_is_not_an_image_is_named_before_training(tmp_path):
    from keras_cnn.data.folder import load_image_folder

    _write_jpeg_tree(tmp_path, np.random.default_rng(8), {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    broken = tmp_path / "train" / "b" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"broken\.jpg.* is not a readable image"):
        load_image_folder(tmp_path, 0.2, 0)


def test_ten_crop_views_are_alexnets_central_squares_of_the_decoded_images(tmp_path):
    """examples/train_imagenet.py --ten_crop validates on `crop=True, crop_fraction=1.0`: each image's shorter
    side scaled to the view size and its central square (Krizhevsky et al. 2012, Sec. 2), not a squashed
    resize nor a centre crop of a larger rescale."""
    from keras_cnn.augment import alexnet_view

    written = _write_jpeg_tree(
        tmp_path, np.random.default_rng(9), {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}}, size=(12, 20)
    )
    val = load_dataset("folder", data_dir=tmp_path, image_size=8, batch_size=2, crop=True, crop_fraction=1.0).validation
    images = np.concatenate([np.asarray(x) for x, _ in val])
    assert images.shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match=r"crop_fraction must be in \(0, 1\].*received 1\.5"):
        load_dataset("folder", data_dir=tmp_path, image_size=8, crop=True, crop_fraction=1.5)
    for path in (p for p, (split, _) in written.items() if split == "val"):  # the split's order is seeded
        expected = np.asarray(alexnet_view(_pil_pixels(path).astype("float32") / 255.0, 8))
        assert min(np.abs(image - expected).max() for image in images) < 1e-5
    scaled = np.asarray(tf.image.resize(_pil_pixels(sorted(written)[0]) / 255.0, (8, 13)))
    np.testing.assert_allclose(
        np.asarray(alexnet_view(_pil_pixels(sorted(written)[0]) / 255.0, 8)), scaled[:, 2:10], atol=1e-5
    )


def test_a_corrupt_image_body_in_the_streaming_path_is_named(tmp_path):
    """Images of mixed sizes stream through tf.data; one whose header reads but whose body is truncated fails
    there mid-run, and the run names it instead of TensorFlow's bare decode error."""
    from keras_cnn.training import TrainConfig, train

    rng = np.random.default_rng(10)
    _write_jpeg_tree(tmp_path / "data", rng, {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}}, size=(8, 8))
    from PIL import Image

    victim = tmp_path / "data" / "train" / "b" / "big.jpg"  # another size: decoded by tf.data, not in memory
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(victim, quality=90)
    whole = victim.read_bytes()
    victim.write_bytes(whole[: len(whole) * 2 // 3])  # header intact, scan data cut
    with pytest.raises(ValueError, match=rf"1 image\(s\) .* cannot be decoded .*{victim.name}") as named:
        train(
            TrainConfig(
                model="lenet5",
                dataset="folder",
                data_dir=str(tmp_path / "data"),
                epochs=1,
                batch_size=2,
                output_dir=str(tmp_path / "run"),
                channels=3,
            )
        )
    assert isinstance(named.value.__cause__, tf.errors.InvalidArgumentError)  # TensorFlow's error stays as the cause


def test_a_cifar100_archive_has_100_classes_whatever_labels_its_batches_hold(tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for member in ("train", "test"):
        raw, _, _ = _cifar_batch(rng, 3, b"fine_labels", 5)  # labels 0-4 only
        (folder / member).write_bytes(raw)
    assert load_dataset("cifar100_archive", data_dir=tmp_path, batch_size=2).classes == 100


def test_every_example_of_every_epoch_draws_its_own_augmentation_seed():
    """An augmenter that returns its stateless seed pair: (seed, one number per epoch and position), never reused
    across epochs, or the same crops and flips would come back whenever two draws share a seed."""
    from keras_cnn.data import pipeline

    n = 100
    source = _source(np.zeros((n, 1, 1, 1), "uint8"), np.arange(n))
    seed_of = lambda image, pair: tf.reshape(tf.cast(pair, tf.float64), (1, 1, 2))  # noqa: E731  exact below 2**53
    stream = pipeline(
        source, image_size=None, channels=1, batch_size=10, training=True, seed=7, augment=seed_of, epochs=(0, 3)
    )
    pairs = np.concatenate([x.numpy().reshape(-1, 2) for x, _ in stream])
    assert pairs.shape == (3 * n, 2) and set(pairs[:, 0]) == {7.0}
    assert len(set(pairs[:, 1])) == 3 * n


def _source(images, labels) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, labels))


def test_grey_and_colour_sources_convert_to_the_channels_asked_for():
    """Grey to RGB repeats the plane; RGB to grey weighs R, G, B by ITU-R BT.601 (0.2989, 0.5870, 0.1140)."""
    from keras_cnn.data import pipeline

    rng = np.random.default_rng(12)
    grey, colour = rng.random((3, 4, 4, 1)).astype("float32"), rng.random((3, 4, 4, 3)).astype("float32")

    def first_batch(images, channels: int, image_size=None) -> np.ndarray:
        ds = pipeline(
            _source(images, [0, 1, 2]), image_size=image_size, channels=channels, batch_size=3, training=False
        )
        return next(iter(ds))[0].numpy()

    np.testing.assert_array_equal(first_batch(grey, 3), np.repeat(grey, 3, axis=-1))
    luma = first_batch(colour, 1)
    np.testing.assert_allclose(luma[..., 0], colour @ np.array([0.2989, 0.5870, 0.1140]), atol=1e-4)
    np.testing.assert_array_equal(first_batch(colour, 3), colour)
    pixels = (colour * 255).astype("uint8")
    np.testing.assert_allclose(first_batch(pixels, 3), pixels / 255.0, atol=1e-6)  # uint8 -> [0, 1]
    np.testing.assert_allclose(first_batch(colour, 3, image_size=8), tf.image.resize(colour, (8, 8)), atol=1e-6)


@pytest.mark.parametrize("epochs", [None, (0, 1)])
def test_a_source_in_memory_is_shuffled_whole_not_through_a_window(epochs):
    """25,000 examples: a 10,000-example shuffle buffer could only put the first ~10,064 in the first batch."""
    from keras_cnn.data import pipeline
    from keras_cnn.data.sources import SHUFFLE_BUFFER

    n = 25_000
    source = _source(np.zeros((n, 1, 1, 1), "uint8"), np.arange(n))
    ds = pipeline(source, image_size=None, channels=1, batch_size=64, training=True, epochs=epochs)
    first = next(iter(ds))[1].numpy()
    assert SHUFFLE_BUFFER == 10_000 and first.max() > SHUFFLE_BUFFER + 64


def test_batch_augmentation_changes_training_batches_only():
    from keras_cnn.data import pipeline

    images = np.random.default_rng(13).random((4, 4, 4, 1)).astype("float32")
    kwargs = {"image_size": None, "channels": 1, "batch_size": 4, "batch_augment": lambda x, y: (x + 1.0, y)}
    train = next(iter(pipeline(_source(images, np.arange(4)), training=True, **kwargs)))
    val = next(iter(pipeline(_source(images, np.arange(4)), training=False, **kwargs)))
    np.testing.assert_allclose(np.sort(train[0].numpy().ravel()), np.sort(images.ravel() + 1.0), atol=1e-6)
    np.testing.assert_array_equal(val[0].numpy(), images)


def _cifar10_folder(tmp_path, test_batch: bytes):
    """An extracted cifar-10-batches-py/ whose five training batches are good and whose test batch is given."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    good, _, _ = _cifar_batch(np.random.default_rng(6), 2, b"labels", 10)
    for member in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / member).write_bytes(good)
    (folder / "test_batch").write_bytes(test_batch)
    return folder


def _batch(data, labels, key=b"labels") -> bytes:
    return pickle.dumps({b"data": np.asarray(data, np.uint8), key: list(labels)}, protocol=2)


def test_a_batch_holds_labels_0_to_9_and_n_rows_of_3072_bytes(tmp_path):
    rows = np.arange(4 * 3072).reshape(4, 3072) % 256
    edges = load_cifar_archive(_cifar10_folder(tmp_path, _batch(rows, [0, 9, 0, 9])))["test"]
    assert edges[1].tolist() == [0, 9, 0, 9] and edges[1].dtype == np.int32 and edges[0].dtype == np.uint8
    # Row k is the R plane, then G, then B, each 32 rows of 32: pixel (i, j) of channel c is row[c*1024 + 32*i + j].
    np.testing.assert_array_equal(edges[0][2, 5, 7], [rows[2, c * 1024 + 32 * 5 + 7] for c in range(3)])
    bad = {
        "label 10 at row 1 is outside 0..9 (2 such rows)": _batch(rows, [0, 10, 3, 12]),
        "label -1 at row 0 is outside 0..9 (1 such rows)": _batch(rows, [-1, 0, 0, 0]),
        "expected N x 3072 uint8 rows and N labels; found (4, 3071), (4,)": _batch(rows[:, :-1], [0] * 4),
        "found (4, 3072), (3,)": _batch(rows, [0] * 3),
        "found (3072,), (1,)": _batch(rows[0], [0]),
        "test_batch is not a CIFAR python batch": pickle.dumps({b"data": rows}, protocol=2)[:-5],  # truncated
        "test_batch is not a CIFAR python batch (b'labels')": _batch(rows, [0] * 4, key=b"fine_labels"),
    }
    for message, raw in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            load_cifar_archive(_cifar10_folder(tmp_path, raw))


def test_an_archive_without_a_batch_names_the_member(tmp_path):
    raw, _, _ = _cifar_batch(np.random.default_rng(7), 2, b"labels", 10)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member in [f"data_batch_{i}" for i in range(1, 6)]:  # no test_batch
            info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(ValueError, match=r"has no member cifar-10-batches-py/test_batch: not the python CIFAR"):
        load_cifar_archive(archive)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(raw)
    with pytest.raises(FileNotFoundError, match=r"lacks the cifar100 batches \['test'\]; expected the extracted"):
        load_cifar_archive(tmp_path, "cifar100")


def test_the_memory_budget_is_a_quarter_of_physical_memory_and_decides_in_memory(tmp_path, monkeypatch):
    from keras_cnn.data import folder

    budget = folder.memory_budget()
    assert budget == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4 and isinstance(budget, int)

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    assert folder.memory_budget() == 2**30  # where the machine does not say: 1 GiB
    monkeypatch.undo()
    files = sorted(_write_jpeg_tree(tmp_path, np.random.default_rng(12), {"a": {"x": 3}}, size=(6, 10)))
    need = 3 * 6 * 10 * 3  # files x H x W x RGB bytes
    held = folder.to_dataset(files, [0, 1, 2], budget=need)
    assert held.element_spec[0].shape == (6, 10, 3)  # one uint8 array in memory
    streamed = folder.to_dataset(files, [0, 1, 2], budget=need - 1)
    assert streamed.element_spec[0].shape.as_list() == [None, None, 3]  # decoded by tf.data on every pass
    for ds in (held, streamed):
        got = list(ds)
        assert [int(y) for _, y in got] == [0, 1, 2] and all(y.dtype == tf.int32 for _, y in got)
        for (x, _), path in zip(got, files, strict=True):
            np.testing.assert_array_equal(x, _pil_pixels(path))


def test_grey_palette_and_rgba_files_and_capital_suffixes_are_read_as_rgb(tmp_path):
    from PIL import Image

    from keras_cnn.data import folder

    rng = np.random.default_rng(13)
    (tmp_path / "a").mkdir()
    rgba = rng.integers(0, 256, (5, 5, 4), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a" / "RGBA.PNG")
    Image.fromarray(grey, "L").save(tmp_path / "a" / "grey.Png")
    Image.fromarray(grey, "L").convert("P").save(tmp_path / "a" / "palette.GIF")
    (tmp_path / "a" / "README.md").write_text("not an image")
    files = folder.image_files(str(tmp_path / "a"))
    assert [os.path.basename(f) for f in files] == ["RGBA.PNG", "grey.Png", "palette.GIF"]
    assert folder.image_size_of(files[0]) == (5, 5)
    np.testing.assert_array_equal(folder.decode(files[0]), rgba[..., :3])
    np.testing.assert_array_equal(folder.decode(files[1]), np.repeat(grey[..., None], 3, axis=-1))
    assert folder.decode(files[2]).shape == (5, 5, 3)
    for suffix in (".jpg", ".jpeg", ".png", ".bmp", ".gif"):
        (tmp_path / "b").mkdir(exist_ok=True)
        Image.fromarray(grey).save(tmp_path / "b" / f"x{suffix}")
    assert len(folder.image_files(str(tmp_path / "b"))) == 5
    with pytest.raises(ValueError, match=r"README\.md' is not a readable image"):
        folder.image_size_of(str(tmp_path / "a" / "README.md"))
    with pytest.raises(ValueError, match=r"Cannot decode .*README\.md'"):
        folder.decode(str(tmp_path / "a" / "README.md"))


def test_a_tall_image_reports_height_then_width(tmp_path):
    from PIL import Image

    from keras_cnn.data import folder

    Image.fromarray(np.zeros((7, 3, 3), np.uint8)).save(tmp_path / "tall.png")
    assert folder.image_size_of(str(tmp_path / "tall.png")) == (7, 3)


def test_one_tree_holds_out_a_seeded_fraction_per_class_keeping_one_to_train(tmp_path):
    from keras_cnn.data.folder import load_image_folder

    written = _write_jpeg_tree(tmp_path, np.random.default_rng(14), {"": {"a": 10, "b": 3}})
    train, val, names = load_image_folder(tmp_path, 0.3, seed=1)
    assert names == ["a", "b"]
    val_labels = sorted(int(y) for _, y in val)
    assert val_labels == [0, 0, 0, 1]  # round(10 x 0.3) = 3 of a, round(3 x 0.3) = 1 of b
    assert sorted(int(y) for _, y in train) == [0] * 7 + [1] * 2
    seen = {tuple(np.asarray(x).ravel()) for ds in (train, val) for x, _ in ds}
    assert seen == {tuple(_pil_pixels(p).ravel()) for p in written}  # every file once, in one split
    _, most, _ = load_image_folder(tmp_path, 0.99, seed=1)  # 0.99 of 3 would be all of b: one stays to train on
    assert sorted(int(y) for _, y in most) == [0] * 9 + [1] * 2
    other = {tuple(np.asarray(x).ravel()) for x, _ in load_image_folder(tmp_path, 0.3, seed=2)[1]}
    assert other != {tuple(np.asarray(x).ravel()) for x, _ in val}  # another seed, other held-out files
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\); received 1\.0"):
        load_image_folder(tmp_path, 1.0, seed=1)
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\); received 0\.0"):
        load_image_folder(tmp_path, 0.0, seed=1)
    with pytest.raises(ValueError, match=r"holds out no image: every class has too few images \(a \(10\), b \(3\)\)"):
        load_image_folder(tmp_path, 0.04, seed=1)


def test_tfds_is_asked_for_the_prepared_data_under_data_dir_and_never_to_download(tmp_path, monkeypatch):
    calls = []

    def load(name, **kwargs):
        calls.append((name, kwargs))
        raise AssertionError("not prepared")  # what tfds raises for data that is not there

    monkeypatch.setattr(tfds, "load", load)
    for name, splits in (("svhn_cropped", ["train", "test"]), ("imagenet2012", ["train", "validation"])):
        with pytest.raises(FileNotFoundError, match=f"TFDS dataset '{name}' is not prepared under '{tmp_path}'"):
            load_dataset(name, data_dir=tmp_path)
        assert calls.pop() == (
            name,
            {"split": splits, "data_dir": str(tmp_path), "download": False, "as_supervised": True, "with_info": True},
        )


def test_the_image_tree_lists_every_file_of_either_layout(tmp_path):
    from keras_cnn.data.folder import image_tree

    one = _write_jpeg_tree(tmp_path / "one", np.random.default_rng(15), {"": {"a": 2, "b": 1}})
    assert image_tree(tmp_path / "one") == sorted(one)
    split = _write_jpeg_tree(
        tmp_path / "split", np.random.default_rng(16), {"train": {"a": 1, "b": 2}, "val": {"a": 1, "b": 1}}
    )
    assert sorted(image_tree(str(tmp_path / "split"))) == sorted(split)


def test_split_folders_name_the_classes_missing_from_one_side_and_honour_the_budget(tmp_path):
    from keras_cnn.data.folder import load_image_folder

    rng = np.random.default_rng(17)
    _write_jpeg_tree(tmp_path / "extra", rng, {"train": {"a": 1, "b": 1, "c": 1}, "val": {"a": 1, "b": 1}})
    with pytest.raises(ValueError, match=re.escape("same classes: ['c'] only in train/, none only in val/.")):
        load_image_folder(tmp_path / "extra", 0.2, 0)
    _write_jpeg_tree(tmp_path / "fewer", rng, {"training": {"a": 1, "b": 1}, "testing": {"a": 1, "b": 1, "z": 1}})
    with pytest.raises(ValueError, match=re.escape("same classes: none only in training/, ['z'] only in testing/.")):
        load_image_folder(tmp_path / "fewer", 0.2, 0)
    _write_jpeg_tree(tmp_path / "ok", rng, {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    for budget, shape in ((None, [8, 8, 3]), (0, [None, None, 3]), (4 * 8 * 8 * 3, [8, 8, 3])):
        train, val, _ = load_image_folder(tmp_path / "ok", 0.2, 0, budget=budget)
        assert train.element_spec[0].shape.as_list() == val.element_spec[0].shape.as_list() == shape, budget
    train, val, _ = load_image_folder(tmp_path / "ok", 0.2, 0, budget=4 * 8 * 8 * 3 - 1)  # per split: 4 and 2 images
    assert train.element_spec[0].shape[0] is None and val.element_spec[0].shape[0] == 8


def test_classes_are_the_subfolders_only_and_a_seed_repeats_split_and_order(tmp_path):
    from keras_cnn.data.folder import class_names, load_image_folder, split_layout

    with pytest.raises(FileNotFoundError, match=re.escape(f"Image folder '{tmp_path / 'none'}' does not exist.")):
        class_names(str(tmp_path / "none"))
    _write_jpeg_tree(tmp_path, np.random.default_rng(18), {"": {"a": 6, "b": 6}})
    (tmp_path / "labels.csv").write_text("a file beside the class folders is not a class")
    assert class_names(str(tmp_path)) == ["a", "b"]
    (tmp_path / "b2").mkdir()
    (tmp_path / "b2" / "x.png").write_bytes((tmp_path / "a" / "0.jpg").read_bytes())  # a JPEG named .png: fine
    first, again = (load_image_folder(tmp_path, 0.5, seed=3) for _ in range(2))
    for ds_a, ds_b in zip(first[:2], again[:2], strict=True):  # the same files held out, in the same order
        pairs_a, pairs_b = list(ds_a), list(ds_b)
        assert [int(y) for _, y in pairs_a] == [int(y) for _, y in pairs_b]
        assert all(np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(pairs_a, pairs_b, strict=True))
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError) as raised:
        split_layout(str(tmp_path))
    assert str(raised.value) == (
        f"{str(tmp_path)!r} has a train/ folder but no validation split next to it: add one of val/, validation/, "
        "test/, testing/ (one subfolder per class), or put the class folders directly under the root to hold out "
        "validation_fraction of each class."
    )


def test_load_dataset_defaults_are_32_pixel_rgb_batches_of_64_over_the_seed_0_split():
    from keras_cnn.data import digits_arrays

    splits = load_dataset("digits")
    (_, y_train), (x_val, y_val), _ = digits_arrays(32, 3, validation_fraction=0.2, seed=0)
    x, y = next(iter(splits.train))
    assert x.shape == (64, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert splits.classes == 10 and splits.train_examples == len(y_train) == 1437
    val = list(splits.validation)
    assert [len(y) for _, y in val] == [64] * 5 + [40]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in val]), x_val)
    np.testing.assert_array_equal(np.concatenate([y for _, y in val]), y_val)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 2}, "channels must be 1 or 3; received 2."),
        ({"validation_fraction": 0.0}, "validation_fraction must be in (0, 1); received 0.0."),
        ({"validation_fraction": 1.0}, "validation_fraction must be in (0, 1); received 1.0."),
        ({"validation_fraction": 1.5}, "validation_fraction must be in (0, 1); received 1.5."),
        ({"crop_fraction": 0.0}, "crop_fraction must be in (0, 1] (1.0: AlexNet's full square); received 0.0."),
        ({"crop_fraction": 1.01}, "crop_fraction must be in (0, 1] (1.0: AlexNet's full square); received 1.01."),
    ],
)
def test_load_dataset_names_each_bad_argument_exactly(kwargs, message):
    with pytest.raises(ValueError) as raised:
        load_dataset("digits", **kwargs)
    assert str(raised.value) == message


def test_load_dataset_takes_the_edges_of_its_ranges_and_passes_the_digits_settings_on():
    from keras_cnn.data import digits_arrays, photo_arrays

    splits = load_dataset("digits", image_size=None, channels=1, validation_fraction=0.5, seed=7, crop_fraction=1.0)
    (_, _), (x_val, y_val), _ = digits_arrays(32, 1, validation_fraction=0.5, seed=7)  # None: the digits' 32
    np.testing.assert_array_equal(np.concatenate([x for x, _ in splits.validation]), x_val)
    np.testing.assert_array_equal(np.concatenate([y for _, y in splits.validation]), y_val)
    assert splits.train_examples == 1797 - len(y_val)
    photos = load_dataset("photos", image_size=None, validation_fraction=0.5, seed=7)
    (_, _), (x_val, y_val), _ = photo_arrays(32, validation_fraction=0.5, seed=7)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in photos.validation]), x_val)
    np.testing.assert_array_equal(np.concatenate([y for _, y in photos.validation]), y_val)
    assert photos.classes == 2 and photos.train_examples == 456 - len(y_val)


def _counting_source(n: int, size: int, counter: list):
    """(image, label) pairs of size x size x 1 whose production is counted in `counter` (as a decode would be)."""

    def make(i):
        counter.append(int(i))
        return np.full((size, size, 1), int(i) / n, np.float32)

    def element(i):
        image = tf.numpy_function(make, [i], tf.float32)
        return tf.ensure_shape(image, (size, size, 1)), i

    return tf.data.Dataset.range(n).map(element)


@pytest.mark.parametrize("epochs", [None, (0, 3)])
def test_decoded_and_resized_images_are_cached_after_the_first_pass(epochs):
    from keras_cnn.data import pipeline

    common = {"image_size": 8, "channels": 1, "batch_size": 4, "seed": 0}
    made = []
    train = pipeline(_counting_source(6, 12, made), training=True, epochs=epochs, **common)
    val = pipeline(_counting_source(6, 12, made), training=False, **common)
    for _ in range(2):
        for ds in (train, val):
            batches = list(ds)
            assert batches[0][0].shape[1:] == (8, 8, 1)  # resized from 12 to 8
    assert sorted(made) == sorted(list(range(6)) * 2)  # each image made once per dataset, not once per pass
    made.clear()
    uncached = pipeline(_counting_source(6, 12, made), training=False, cache=False, **common)
    list(uncached), list(uncached)
    assert len(made) == 12


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 wrote its `str` (BINSTRING opcodes), as in the published CIFAR batches, which
    cPickle wrote: they load as bytes only with encoding="bytes"."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def test_batches_pickled_by_python_2_load(tmp_path):
    rng = np.random.default_rng(19)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [3, 0, 9],
        b"data": images.transpose(0, 3, 1, 2).reshape(3, 3072),
    }
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(batch)
    raw = out.getvalue()
    assert pickle.SHORT_BINSTRING in raw and b"_codecs" not in raw  # str as Python 2 wrote it, no Python 3 bytes
    test = load_cifar_archive(_cifar10_folder(tmp_path, raw))["test"]
    np.testing.assert_array_equal(test[0], images)
    assert test[1].tolist() == [3, 0, 9]


def test_a_bad_fraction_is_refused_even_where_the_published_split_is_used(tmp_path):
    archive, _ = _write_cifar10(tmp_path, np.random.default_rng(20))
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=re.escape(f"validation_fraction must be in (0, 1); received {fraction}")):
            load_dataset("cifar10_archive", data_dir=archive, validation_fraction=fraction)
    with pytest.raises(ValueError, match="validation_fraction must be in"):  # before looking for the folder
        load_dataset("folder", data_dir=tmp_path / "missing", validation_fraction=1.0)


def test_photos_are_cut_at_the_size_asked_for_and_folders_split_by_the_seed(tmp_path):
    from keras_cnn.data import photo_arrays

    photos = load_dataset("photos", image_size=16, batch_size=512)
    np.testing.assert_array_equal(next(iter(photos.validation))[0], photo_arrays(16)[1][0])
    _write_jpeg_tree(tmp_path, np.random.default_rng(21), {"": {"a": 8, "b": 8}})

    def held_out(seed):
        return np.concatenate([x for x, _ in load_dataset("folder", data_dir=tmp_path, image_size=8, seed=seed)[1]])

    np.testing.assert_array_equal(held_out(4), held_out(4))
    assert not np.array_equal(held_out(4), held_out(5))


def test_a_source_of_unknown_size_is_counted_once(monkeypatch):
    from keras_cnn.data import sources

    images = np.zeros((7, 8, 8, 3), np.float32)
    unknown = _source(images, np.arange(7)).filter(lambda x, y: True)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    monkeypatch.setattr(sources, "_tfds", lambda name, data_dir: (unknown, unknown, 10))
    assert load_dataset("svhn_cropped", data_dir="unused", image_size=8).train_examples == 7


def _cached(ds: tf.data.Dataset) -> bool:
    """Whether a `Dataset.cache()` is among the transformations that make `ds`."""
    stack, seen = [ds], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if "Cache" in type(node).__name__:
            return True
        stack.extend(node._inputs())
    return False


def test_load_dataset_caches_resized_images_but_not_crops_and_one_hots_on_request(tmp_path):
    _write_jpeg_tree(tmp_path, np.random.default_rng(22), {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    resized = load_dataset("folder", data_dir=tmp_path, image_size=6, batch_size=2)
    assert _cached(resized.train) and _cached(resized.validation)
    cropped = load_dataset("folder", data_dir=tmp_path, image_size=6, batch_size=2, crop=True)
    assert not _cached(cropped.train) and not _cached(cropped.validation)
    hot = load_dataset("digits", one_hot=True, batch_size=8)
    for ds in (hot.train, hot.validation):
        _, y = next(iter(ds))
        assert y.shape == (8, 10) and y.dtype == tf.float32 and np.array_equal(np.sum(y, axis=-1), np.ones(8))


def test_imagenet_validation_images_are_centre_crops_by_default(monkeypatch):
    from keras_cnn.augment import resize_center_crop
    from keras_cnn.data import sources

    image = np.linspace(0, 255, 40 * 60 * 3).reshape(40, 60, 3).astype(np.uint8)  # not square: crops show
    source = _source(image[None], [3])
    monkeypatch.setattr(sources, "_tfds", lambda name, data_dir: (source, source, 1000))
    got = next(iter(load_dataset("imagenet2012", data_dir="unused", image_size=16).validation))[0][0]
    np.testing.assert_allclose(got, resize_center_crop(image / 255.0, 16, 0.875), atol=1e-5)
    squashed = next(iter(load_dataset("imagenet2012", data_dir="unused", image_size=16, crop=False).validation))
    assert np.abs(squashed[0][0] - got).max() > 0.05  # a squashed resize is another image
    other = next(iter(load_dataset("svhn_cropped", data_dir="unused", image_size=16).validation))[0][0]
    np.testing.assert_allclose(other, squashed[0][0], atol=1e-6)  # other datasets are resized, not cropped


def test_load_dataset_hands_augmentation_and_epochs_to_the_training_stream_only():
    splits = load_dataset(
        "digits",
        batch_size=64,
        augment=lambda image, seed: tf.zeros_like(image) + 0.5,
        batch_augment=lambda x, y: (x, tf.fill(tf.shape(y), 7)),
        epochs=(0, 2),
    )
    assert int(splits.train.cardinality()) == 2 * 23  # two epochs of ceil(1437 / 64) batches
    x, y = next(iter(splits.train))
    assert np.all(x.numpy() == 0.5) and np.all(y.numpy() == 7)
    x, y = next(iter(splits.validation))
    assert len(np.unique(x.numpy())) > 2 and len(np.unique(y.numpy())) > 1  # the images and labels as they are


def _wide_crops(*, training: bool):
    """Two 12x20 uint8 images and the first batch `pipeline(crop=True)` makes of them at 8x8."""
    from keras_cnn.data import pipeline

    wide = np.random.default_rng(24).integers(0, 256, (2, 12, 20, 3), dtype=np.uint8)
    source = _source(wide, [0, 1])
    return wide, next(iter(pipeline(source, image_size=8, channels=3, batch_size=2, training=training, crop=True)))


def test_pipeline_defaults_seed_0_and_the_875_centre_crop_and_keeps_sized_memory_sources_uncached():
    from keras_cnn.augment import resize_center_crop
    from keras_cnn.data import pipeline

    images = np.random.default_rng(23).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    source = _source(images, np.arange(12))
    common = {"image_size": 8, "channels": 3, "batch_size": 12, "training": True, "epochs": (0, 1)}
    default, zero = (np.asarray(next(iter(pipeline(source, **kw)))[1]) for kw in (common, {**common, "seed": 0}))
    np.testing.assert_array_equal(default, zero)
    val = {"channels": 3, "batch_size": 12, "training": False}
    assert pipeline(source, image_size=8, **val).options().deterministic is True  # parallel maps keep the order
    assert not _cached(pipeline(source, image_size=8, **val))  # already in memory at its size: nothing to cache
    assert _cached(pipeline(source, image_size=6, **val))
    wide, (crops, labels) = _wide_crops(training=False)
    for crop, label in zip(crops, labels, strict=True):
        np.testing.assert_allclose(crop, resize_center_crop(wide[int(label)] / 255.0, 8, 0.875), atol=1e-5)


def test_sources_read_from_disk_shuffle_through_a_10000_window_and_crops_train_on_the_centre():
    from keras_cnn.augment import resize_center_crop
    from keras_cnn.data import pipeline

    n = 12_000  # more than the window; images of unknown shape, as decoded files are

    def image(i):
        pixel = tf.numpy_function(lambda k: np.full((1, 1, 1), k, np.float32), [i], tf.float32)
        return tf.ensure_shape(pixel, [None, None, 1]), i

    source = tf.data.Dataset.range(n).map(image)
    first = next(iter(pipeline(source, image_size=None, channels=1, batch_size=64, training=True)))[1]
    assert np.asarray(first).max() < 10_000 + 64  # the k-th image comes from the first 10,000 + k
    wide, (crops, labels) = _wide_crops(training=True)
    for crop, label in zip(crops, labels, strict=True):  # without an augmenter, training images are centre crops too
        np.testing.assert_allclose(crop, resize_center_crop(wide[int(label)] / 255.0, 8), atol=1e-5)
