"""The README's main job, end to end, on the embedded digits (real scans, no download)."""

import json
import subprocess
import sys
from pathlib import Path

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


def test_unknown_dataset_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/train_cifar.py"), "--dataset=imagenet", f"--output_dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "allowed: 'digits'" in result.stderr
