"""The benchmark scripts run and report ratios (their numbers are never asserted: speed lives in benchmarks/)."""

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import script_module, shapes_only

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_throughput_reports_a_ratio_per_model_and_mode(tmp_path):
    out = tmp_path / "throughput.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/throughput.py"),
        "--models=VGG16",
        "--image_size=32",
        "--batch_size=2",
        "--steps=1",
        "--rounds=1",
        f"--output={out}",
    ]
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


@pytest.mark.slow
def test_vs_pytorch_compares_the_same_network_and_reports_ratios(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "vs.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/vs_pytorch.py"),
        "--models=resnet20:32:4",
        "--precisions=float32,bfloat16",
        "--steps=1",
        "--rounds=1",
        f"--output={out}",
    ]
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True, env=env)
    result = json.loads(out.read_text())
    # the kernels the figures come from: the package's oneDNN setting (x86-64) and the CPU by name
    assert result["TF_ENABLE_ONEDNN_OPTS"] == ("1" if platform.machine().lower() in ("x86_64", "amd64") else None)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if names := re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, flags=re.M):
        assert result["cpu"] == names[0].strip()
    flags = re.findall(r"^flags\s*:\s*(.+)$", cpuinfo, flags=re.M)
    expected = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    assert result["cpu_flags"] == [f for f in expected if flags and f in flags[0].split()]
    rows = result["rows"]
    assert [(r["precision"], r["mode"]) for r in rows] == [
        (p, mode) for p in ("float32", "bfloat16") for mode in ("train", "inference")
    ]
    for row in rows:  # the img/s figures are rounded to 0.1, the ratio is of the unrounded ones
        ours, theirs = row["keras_cnn_img_s"], row["pytorch_img_s"]
        assert (ours - 0.05) / (theirs + 0.05) - 1e-3 <= row["ratio"] <= (ours + 0.05) / (theirs - 0.05) + 1e-3
        assert (row["model"], row["trainable_params"]) == ("resnet20", 269_722)  # He et al.'s 0.27M on RGB


@pytest.mark.parametrize(("name", "size", "params"), [("densenet_bc", 32, 769_162), ("resnet50", 224, 25_557_032)])
def test_vs_pytorch_builds_the_same_network_in_both(name, size, params):
    """The benchmark's PyTorch peers count what the papers publish and what we build: Huang et al.'s
    DenseNet-BC-100-12 (0.8M; torchvision's DenseNet with a 3x3 stem of 2k filters) and torchvision's ResNet-50
    (25.6M, v1.5)."""
    pytest.importorskip("torch")
    from keras_cnn.complexity import trainable_params

    vs = script_module("benchmarks", "vs_pytorch")
    classes = 10 if size == 32 else 1000
    assert vs.trainable_torch(vs.torch_model(name, classes)) == params
    with shapes_only():
        assert trainable_params(vs.keras_model(name, size, classes)) == params


def test_the_benchmarks_and_the_examples_each_import_their_own_common():
    """benchmarks/ and examples/ both have a `common.py`: one loaded in a test process must not stand in for the
    other in the next test (CI failed so once, by test order)."""
    pytest.importorskip("torch")
    vs = script_module("benchmarks", "vs_pytorch")
    examples_common = script_module("examples", "common")
    benchmarks_common = script_module("benchmarks", "common")
    assert (
        Path(benchmarks_common.__file__).parent.name == "benchmarks"
        and vs.write_results is benchmarks_common.write_results
    )
    assert Path(examples_common.__file__).parent.name == "examples" and hasattr(examples_common, "DATASETS")
    assert "common" not in sys.modules


def test_input_pipeline_reports_input_and_train_rates(tmp_path):
    out = tmp_path / "input.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/input_pipeline.py"),
        "--model=lenet5",
        "--batches=2",
        "--rounds=1",
        f"--output={out}",
    ]
    subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.read_text())
    assert result["input"] > 0 and result["ratio"] == pytest.approx(result["input"] / result["train"], rel=0.02)


@pytest.mark.slow
def test_degradation_trains_plain_and_residual_nets_and_plots(tmp_path):
    from tests.test_data_sources import _write_jpeg_tree

    _write_jpeg_tree(
        tmp_path / "data",
        np.random.default_rng(0),
        {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}},
        size=(32, 32),
    )
    out = tmp_path / "degradation-test.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/degradation.py"),
        f"--data_dir={tmp_path / 'data'}",
        "--models=plain20,resnet20",
        "--epochs=2",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--output={out}",
    ]
    subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    results = json.loads(out.read_text())["results"]
    for name in ("plain20", "resnet20"):
        history = (tmp_path / "runs" / name / "history.csv").read_text().splitlines()
        assert len(results[name]["test_error"]) == 2 == len(history) - 1
        assert results[name]["test_error"][-1] == pytest.approx(1 - float(history[-1].split(",")[3]))
    assert (tmp_path / "degradation-test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_accuracy_vs_pytorch_trains_both_on_the_same_images(tmp_path):
    pytest.importorskip("torch")
    from tests.test_data_sources import _write_jpeg_tree

    _write_jpeg_tree(
        tmp_path / "data",
        np.random.default_rng(1),
        {"train": {"a": 6, "b": 6}, "test": {"a": 3, "b": 3}},
        size=(32, 32),
    )
    out = tmp_path / "accuracy.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/accuracy_vs_pytorch.py"),
        f"--data_dir={tmp_path / 'data'}",
        "--epochs=1",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--output={out}",
    ]
    subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    result = json.loads(out.read_text())
    assert sorted(row["framework"] for row in result["rows"]) == ["keras_cnn", "pytorch"]
    history = (tmp_path / "runs" / "keras_cnn-resnet20-1ep-float32" / "history.csv").read_text().splitlines()
    ours = next(row for row in result["rows"] if row["framework"] == "keras_cnn")
    assert ours["test_accuracy"] == pytest.approx(float(history[-1].split(",")[3]))
    theirs = next(row for row in result["rows"] if row["framework"] == "pytorch")
    assert theirs["test_accuracy"] * 6 == pytest.approx(round(theirs["test_accuracy"] * 6))  # whole images of 6
