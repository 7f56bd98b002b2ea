"""The README's main job, end to end, on the embedded digits (real scans, no download)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("model, epochs, lr, floor", [("resnet20", 8, 0.05, 0.95), ("lenet5", 15, 0.002, 0.93)])
def test_train_cifar_learns_the_digits(model, epochs, lr, floor, tmp_path):
    cmd = [sys.executable, str(ROOT / "examples/train_cifar.py"), f"--model={model}", f"--epochs={epochs}",
           f"--lr={lr}", f"--output_dir={tmp_path}"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["epochs"] == epochs
    assert metrics["best_val_accuracy"] >= floor, metrics
    assert (tmp_path / "history.csv").read_text().count("\n") == epochs + 1


def _run(*flags):
    return subprocess.run([sys.executable, str(ROOT / "examples/train_cifar.py"), *flags],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_unknown_dataset_is_a_usage_error(tmp_path):
    result = _run("--dataset=imagenet", f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "value should be one of <digits|cifar10|" in result.stderr


def test_missing_data_says_what_to_do_instead_of_downloading(tmp_path):
    result = _run("--dataset=cifar10", f"--data_dir={tmp_path}", f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "never downloaded" in result.stderr and "--dataset digits" in result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_trains_on_a_cifar_archive_with_augmentation(tmp_path):
    from tests.test_data_sources import _write_cifar10

    archive, _ = _write_cifar10(tmp_path, np.random.default_rng(0))
    result = _run("--model=resnet20", "--dataset=cifar10_archive", f"--data_dir={archive}", "--augment=cifar_pca",
                  "--epochs=1", "--batch_size=8", f"--output_dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "cifar10_archive" and metrics["augment"] == "cifar_pca" and metrics["epochs"] == 1


def test_every_dataset_is_offered_by_the_example():
    from keras_cnn.data import DATASETS

    help_text = _run("--help").stdout.replace("\n", "").replace(" ", "")
    assert all(name in help_text for name in DATASETS)
