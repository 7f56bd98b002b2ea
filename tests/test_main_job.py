"""The README's main job, end to end, on the embedded digits (real scans, no download)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import script_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("model, epochs, lr, floor", [("resnet20", 4, 0.05, 0.95), ("lenet5", 8, 0.005, 0.93)])
def test_train_cifar_learns_the_digits(model, epochs, lr, floor, tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "examples/train_cifar.py"),
        f"--model={model}",
        f"--epochs={epochs}",
        f"--lr={lr}",
        f"--output_dir={tmp_path}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["epochs"] == epochs
    assert metrics["best_val_accuracy"] >= floor, metrics
    assert (tmp_path / "history.csv").read_text().count("\n") == epochs + 1


def _run(*flags):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples/train_cifar.py"), *flags], capture_output=True, text=True, timeout=300
    )


def test_unknown_dataset_is_a_usage_error(tmp_path):
    result = _run("--dataset=imagenet", f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "value should be one of <digits|photos|cifar10|" in result.stderr


def test_missing_data_says_what_to_do_instead_of_downloading(tmp_path):
    result = _run("--dataset=cifar10", f"--data_dir={tmp_path}", f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "never downloaded" in result.stderr and "--dataset digits" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_trains_on_a_cifar_archive_with_augmentation(tmp_path):
    from tests.test_data_sources import _write_cifar10

    archive, _ = _write_cifar10(tmp_path, np.random.default_rng(0))
    result = _run(
        "--model=resnet20",
        "--dataset=cifar10_archive",
        f"--data_dir={archive}",
        "--augment=cifar_pca",
        "--epochs=1",
        "--batch_size=8",
        f"--output_dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "cifar10_archive" and metrics["augment"] == "cifar_pca" and metrics["epochs"] == 1


def test_the_examples_offer_exactly_the_packages_choices():
    common = script_module("examples", "common")
    from keras_cnn.augment import AUGMENTATIONS, MIXES
    from keras_cnn.data import DATASETS
    from keras_cnn.training import PRECISIONS, STRATEGIES, distill

    assert common.DATASETS == DATASETS and common.AUGMENTATIONS == AUGMENTATIONS and common.MIXES == MIXES
    assert common.PRECISIONS == PRECISIONS and common.STRATEGIES == STRATEGIES
    assert common.DISTILL_METHODS == distill.METHODS
    help_text = _run("--help").stdout.replace("\n", "").replace(" ", "")
    assert all(name in help_text for name in DATASETS)


def test_resume_and_overwrite_are_explicit(tmp_path):
    result = _run("--resume")
    assert result.returncode != 0 and "--resume needs the --output_dir" in result.stderr
    (tmp_path / "metrics.json").write_text("{}")
    result = _run("--epochs=1", f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "files a run would write (metrics.json)" in result.stderr
    assert (tmp_path / "metrics.json").read_text() == "{}"  # untouched
    assert len(result.stderr.split("Error")[-1].splitlines()) < 10  # the reason, not the whole --help


@pytest.mark.slow
def test_train_imagenet_on_an_image_folder_with_cutmix_and_ten_crop(tmp_path):
    from tests.test_data_sources import _write_folder

    _write_folder(tmp_path / "imgs", np.random.default_rng(1), {"cat": 6, "dog": 6})
    cmd = [
        sys.executable,
        str(ROOT / "examples/train_imagenet.py"),
        "--model=resnet20",
        "--dataset=folder",
        f"--data_dir={tmp_path / 'imgs'}",
        "--image_size=32",
        "--recipe=quick",
        "--epochs=1",
        "--batch_size=4",
        "--mix=cutmix",
        "--randaugment",
        "--ten_crop",
        f"--output_dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["augment"] == "imagenet" and metrics["mix"] == "cutmix" and metrics["randaugment"]
    assert 0.0 <= metrics["ten_crop_val_accuracy"] <= 1.0
