"""The benchmark scripts run and report ratios (their numbers are never asserted: speed lives in benchmarks/)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_throughput_reports_a_ratio_per_model_and_mode(tmp_path):
    out = tmp_path / "throughput.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/throughput.py"), "--models=VGG16", "--image_size=32",
           "--batch_size=2", "--steps=1", "--rounds=1", f"--output={out}"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [("VGG16", "inference"), ("VGG16", "train")]
    for row in rows:
        assert row["ratio"] == pytest.approx(row["keras_cnn_img_s"] / row["keras_applications_img_s"], rel=0.01)
    assert "ratio" in result.stdout and str(out) in result.stdout


def test_throughput_refuses_models_without_a_peer(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/throughput.py"), "--models=ResNet20", f"--output={tmp_path}/x.json"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "must name a builder of both" in result.stderr
