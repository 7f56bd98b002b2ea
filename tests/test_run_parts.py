"""The parts of a training run on their own, without a fit: the callbacks, history.csv, the run folder's
stamp, lock and resume rules, and the checks of a TrainConfig. What the docstrings promise, by hand."""

import csv
import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_cnn import onednn
from keras_cnn.recipes import RECIPES
from keras_cnn.training import config, rundir
from keras_cnn.training.callbacks import (
    DivergenceError,
    DivergenceGuard,
    EpochCheckpoint,
    ResumeCheck,
    TrainTimer,
    save_model_atomic,
)
from keras_cnn.training.history import plot_history, read_history, truncate_history
from tests.helpers import lenet5_run


def _guard(losses, *, epoch: int = 0, lr: float = 0.1):
    guard = DivergenceGuard(lr=lr)
    guard.on_epoch_begin(epoch)
    for step, loss in enumerate(losses):
        guard.on_train_batch_end(step, {"loss": loss} if loss is not None else {})
    return guard


def test_divergence_guard_allows_ten_times_the_first_loss_plus_ten():
    _guard([2.0, None, 29.9, 30.0])  # 10 * 2 + 10 = 30 is still allowed; a step without a loss is skipped
    with pytest.raises(DivergenceError, match=r"epoch 3, step 3: the loss reached 30\.01 \(first batch 2\)"):
        _guard([2.0, 5.0, 30.01], epoch=2)
    with pytest.raises(DivergenceError, match=r"rate 0\.3 is too high .*--lr, e\.g\. 0\.03\)\."):
        _guard([1.0, 21.0], lr=0.3)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_divergence_guard_stops_at_the_first_non_finite_loss(bad):
    with pytest.raises(DivergenceError, match=rf"epoch 1, step 2: the loss is {bad}\. "):
        _guard([1.0, bad])
    with pytest.raises(DivergenceError, match=r"step 1: the loss is nan"):
        _guard([math.nan])  # before any finite loss: no first batch to compare with, still stopped


def _tiny_model() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


def _write_history(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_epoch_checkpoint_keeps_last_always_and_best_on_improvement_over_the_history(tmp_path):
    _write_history(tmp_path / "history.csv", [{"epoch": 0, "val_accuracy": 0.5}, {"epoch": 1, "val_accuracy": 0.7}])
    model = _tiny_model()
    checkpoint = EpochCheckpoint(str(tmp_path / "ck"), monitor="val_accuracy", history=str(tmp_path / "history.csv"))
    checkpoint.set_model(model)
    assert checkpoint.best == 0.7  # resumed: the best so far comes from history.csv
    checkpoint.on_epoch_end(2, {"val_accuracy": 0.7})  # equal is no improvement
    assert os.listdir(tmp_path / "ck") == ["last.keras"]
    checkpoint.on_epoch_end(3, {"val_accuracy": 0.75})
    assert sorted(os.listdir(tmp_path / "ck")) == ["best.keras", "last.keras"] and checkpoint.best == 0.75
    model.get_layer("dense").kernel.assign(np.ones((3, 2)))
    checkpoint.on_epoch_end(4, {"val_accuracy": 0.6})
    checkpoint.on_epoch_end(5, {})
    last, best = (keras.saving.load_model(tmp_path / "ck" / f) for f in ("last.keras", "best.keras"))
    np.testing.assert_array_equal(last.get_layer("dense").kernel.numpy(), np.ones((3, 2)))
    assert not np.array_equal(best.get_layer("dense").kernel.numpy(), np.ones((3, 2)))
    fresh = EpochCheckpoint(str(tmp_path / "ck2"), monitor="val_accuracy", history=str(tmp_path / "none.csv"))
    assert fresh.best == -math.inf


def test_epoch_checkpoint_of_a_distiller_holds_its_student(tmp_path):
    student = _tiny_model()
    wrapper = keras.Model(student.input, keras.layers.Dense(5, name="other")(student.output))
    wrapper.student = student
    checkpoint = EpochCheckpoint(str(tmp_path), monitor="val_accuracy", history=str(tmp_path / "h.csv"))
    checkpoint.set_model(wrapper)
    checkpoint.on_epoch_end(0, {"val_accuracy": 0.1})
    for name in ("last.keras", "best.keras"):
        assert keras.saving.load_model(tmp_path / name).output_shape == (None, 2)


def test_save_model_atomic_leaves_only_the_archive(tmp_path):
    save_model_atomic(_tiny_model(), str(tmp_path / "model.keras"))
    assert os.listdir(tmp_path) == ["model.keras"]
    assert keras.saving.load_model(tmp_path / "model.keras").output_shape == (None, 2)


def test_resume_check_compares_the_optimizer_step_with_the_stream():
    model = _tiny_model()
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(6)
    check = ResumeCheck(6)
    check.set_model(model)
    check.on_train_begin()
    check = ResumeCheck(5)
    check.set_model(model)
    with pytest.raises(RuntimeError, match=r"optimizer is at step 6, the data stream at 5: the backup does not"):
        check.on_train_begin()


def test_train_timer_counts_training_until_validation_once_per_epoch(monkeypatch):
    clock = iter([100.0, 101.0, 104.0, 106.0, 107.0, 109.0, 110.0])  # perf_counter has an arbitrary origin
    monkeypatch.setattr("keras_cnn.training.callbacks.time.perf_counter", lambda: next(clock))
    timer = TrainTimer()
    timer.on_train_begin()  # 100
    timer.on_epoch_begin(0)  # 101
    timer.on_test_begin()  # 104: 3 s of training
    timer.on_epoch_end(0)  # not counted again (no clock read)
    timer.on_epoch_begin(1)  # 106
    timer.on_epoch_end(1)  # 107: no validation this epoch, 1 s
    timer.on_train_end()  # 109
    assert (timer.train_seconds, timer.wall) == (4.0, 9.0)


def test_history_is_cut_back_to_whole_epochs_and_plotted(tmp_path):
    path = tmp_path / "history.csv"
    rows = [{"epoch": e, "accuracy": 0.1 * e, "loss": 2 - e, "val_accuracy": 0.2, "val_loss": 1.5} for e in range(4)]
    _write_history(path, rows)
    truncate_history(str(path), 2)
    assert [r["epoch"] for r in read_history(str(path))] == ["0", "1"]
    assert path.read_text().splitlines()[0] == "epoch,accuracy,loss,val_accuracy,val_loss"
    truncate_history(str(tmp_path / "missing.csv"), 2)
    assert sorted(os.listdir(tmp_path)) == ["history.csv"]
    single = tmp_path / "single"
    single.mkdir()
    _write_history(single / "history.csv", rows[:1])
    truncate_history(str(single / "history.csv"), 2)  # a single epoch so far
    assert read_history(str(single / "history.csv")) == [{k: str(v) for k, v in rows[0].items()}]
    plot_history(read_history(str(path)), str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "history.csv", "single"]


def test_curves_plot_each_loss_and_accuracy_column_against_epochs_from_1(tmp_path, monkeypatch):
    from matplotlib import pyplot as plt
    from PIL import Image

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    rows = [
        {"epoch": str(e), "accuracy": str(0.1 * e), "loss": str(2 - e), "val_accuracy": "0.2", "val_loss": "1.5"}
        for e in range(3)
    ]
    monkeypatch.setitem(plt.rcParams, "figure.dpi", 72)  # a user's matplotlibrc does not change the file
    plot_history(rows, str(tmp_path / "curves.png"))
    assert Image.open(tmp_path / "curves.png").size == (1000, 400)  # 10 x 4 inches at 100 dpi
    (fig,) = figures
    loss, accuracy = fig.axes
    for ax, metric in ((loss, "loss"), (accuracy, "accuracy")):
        assert (ax.get_title(), ax.get_xlabel()) == (metric, "epoch")
        keys = [metric, f"val_{metric}"]
        assert [line.get_label() for line in ax.get_lines()] == keys
        assert [t.get_text() for t in ax.get_legend().get_texts()] == keys
        assert {t.get_fontsize() for t in ax.get_legend().get_texts()} == {7.0}
        grid = ax.xaxis.get_gridlines()[0], ax.yaxis.get_gridlines()[0]
        assert [(g.get_visible(), g.get_alpha()) for g in grid] == [(True, 0.3)] * 2
        for line, key in zip(ax.get_lines(), keys, strict=True):
            assert line.get_marker() == "."
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
            np.testing.assert_allclose(line.get_ydata(), [float(r[key]) for r in rows])
    assert loss.get_position().x1 < accuracy.get_position().x0  # side by side, loss on the left
    # tight_layout: the margins shrink from matplotlib's defaults (0.125 left, 0.9 right)
    assert loss.get_position().x0 < plt.rcParams["figure.subplot.left"]
    assert accuracy.get_position().x1 > plt.rcParams["figure.subplot.right"]


def test_a_new_run_folder_is_stamped_with_what_decides_its_results(tmp_path):
    assert rundir.prepare(str(tmp_path), lenet5_run(tmp_path, lr=0.01), resume=False, overwrite=False) == 0
    stamp = json.loads((tmp_path / rundir.STAMP).read_text())
    assert stamp["package"] == "keras_cnn"
    assert stamp["config"] == {
        "model": "lenet5",
        "dataset": "digits",
        "data_dir": None,
        "recipe": "quick",
        "epochs": 1,
        "batch_size": None,
        "lr": 0.01,
        "image_size": 32,
        "channels": None,
        "augment": "none",
        "randaugment": False,
        "mix": "none",
        "precision": "auto",
        "seed": 0,
        "model_kwargs": {},
        "weights": None,
    }


@pytest.mark.parametrize(
    "change",
    [{"model": "resnet20"}, {"epochs": 2}, {"batch_size": 8}, {"lr": 0.2}, {"seed": 1}, {"augment": "cifar"}],
)
def test_resume_continues_only_the_same_configuration(tmp_path, change):
    rundir.prepare(str(tmp_path), lenet5_run(tmp_path), resume=False, overwrite=False)
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    assert rundir.prepare(str(tmp_path), lenet5_run(tmp_path, verbose=0, jit=True), resume=True, overwrite=False) == 3
    ((field, value),) = change.items()
    with pytest.raises(
        ValueError, match=rf"belongs to model='lenet5'.*differs in {field} \(.* there, {value!r} here\)"
    ):
        rundir.prepare(str(tmp_path), lenet5_run(tmp_path, **change), resume=True, overwrite=False)


def test_resume_without_a_backup_says_why(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no interrupted run \(no backup/training_metadata\.json\)"):
        rundir.prepare(str(tmp_path), lenet5_run(tmp_path), resume=True, overwrite=False)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="finished"):
        rundir.prepare(str(tmp_path), lenet5_run(tmp_path), resume=True, overwrite=False)


def test_overwrite_removes_only_the_files_a_run_writes(tmp_path):
    mine = ["metrics.json", "history.csv", "curves.png", "model.keras", "checkpoints/last.keras"]
    mine += ["checkpoints/best.keras", "backup/x", "tensorboard/train/e", "tensorboard/validation/e"]
    theirs = ["checkpoints/other.keras", "tensorboard/other/e", "notes.txt"]
    for name in mine + theirs:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / rundir.STAMP).write_text('{"package": "keras_cnn", "config": {}}')
    with pytest.raises(FileExistsError, match=r"an interrupted run: pass resume=True"):
        (tmp_path / "backup" / "training_metadata.json").write_text("{}")
        rundir.prepare(str(tmp_path), lenet5_run(tmp_path), resume=False, overwrite=False)
    os.remove(tmp_path / "backup" / "training_metadata.json")
    with pytest.raises(FileExistsError, match=r"holds a finished run \(metrics\.json\): pass overwrite=True"):
        rundir.prepare(str(tmp_path), lenet5_run(tmp_path), resume=False, overwrite=False)
    rundir.prepare(str(tmp_path), lenet5_run(tmp_path), resume=False, overwrite=True)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted([*theirs, rundir.STAMP])


def test_each_refusal_of_prepare_says_in_full_what_the_folder_holds_and_what_to_do(tmp_path):
    out = str(tmp_path)
    tail = "pass overwrite=True (--overwrite) to replace them, or choose another output directory."
    for name in ("model.keras", "history.csv"):
        (tmp_path / name).write_text("x")  # named like a run's files, but no stamp
    with pytest.raises(FileExistsError) as refused:
        rundir.prepare(out, lenet5_run(out), resume=False, overwrite=False)
    assert str(refused.value) == (
        f"{out!r} holds files a run would write (history.csv, model.keras) that no keras_cnn run stamped: {tail}"
    )
    rundir.prepare(out, lenet5_run(out), resume=False, overwrite=True)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError) as refused:
        rundir.prepare(out, lenet5_run(out), resume=False, overwrite=False)
    assert str(refused.value) == f"{out!r} holds a finished run (metrics.json): {tail}"
    with pytest.raises(FileNotFoundError) as refused:
        rundir.prepare(out, lenet5_run(out), resume=True, overwrite=False)
    assert str(refused.value) == f"Cannot resume: {out!r} finished (no backup/training_metadata.json)."
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 7}')
    with pytest.raises(FileExistsError) as refused:
        rundir.prepare(out, lenet5_run(out), resume=False, overwrite=False)
    assert str(refused.value) == f"{out!r} holds an interrupted run: pass resume=True (--resume) to continue it, {tail}"
    with pytest.raises(ValueError) as refused:
        rundir.prepare(out, lenet5_run(out, epochs=2, lr=0.2), resume=True, overwrite=False)
    assert str(refused.value) == (
        f"Cannot resume: the run in {out!r} belongs to model='lenet5', dataset='digits', recipe='quick', epochs=1, "
        "image_size=32, augment='none', randaugment=False, mix='none', precision='auto', seed=0, model_kwargs={}; "
        "this call differs in epochs (1 there, 2 here), lr (None there, 0.2 here). Resume with the same settings, "
        "or train into another output directory."
    )
    assert rundir.prepare(out, lenet5_run(out), resume=True, overwrite=False) == 2


def test_the_lock_says_in_full_who_holds_it_and_gives_up_after_three_tries(tmp_path, monkeypatch):
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": "Thu Dec  3 10:00:00 2026"}
    (tmp_path / rundir.LOCK).write_text(json.dumps(holder))
    with pytest.raises(rundir.RunFolderBusyError) as refused:
        rundir.RunLock(str(tmp_path)).__enter__()
    lock = os.path.join(str(tmp_path), rundir.LOCK)
    assert str(refused.value) == (
        f"{str(tmp_path)!r} is in use by another run: process {os.getpid()} on {socket.gethostname()}, started "
        f"Thu Dec  3 10:00:00 2026 (lock {lock}). Wait for it to end or choose another output directory."
    )
    os.remove(lock)
    tries = []

    def always_taken(path, flags):  # another process takes the lock each time a stale one is removed
        tries.append(flags)
        raise FileExistsError(path)

    monkeypatch.setattr(rundir.os, "open", always_taken)
    with pytest.raises(rundir.RunFolderBusyError) as refused:
        rundir.RunLock(str(tmp_path)).__enter__()
    assert str(refused.value) == f"Could not take the lock {lock}: other processes keep taking it."
    assert tries == [os.O_CREAT | os.O_EXCL | os.O_WRONLY] * 3


def test_the_lock_names_a_live_holder_and_is_taken_from_a_dead_one(tmp_path):
    with rundir.RunLock(str(tmp_path)):
        holder = json.loads((tmp_path / rundir.LOCK).read_text())
        assert sorted(holder) == ["host", "pid", "started"]
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        # when the lock was taken, in the locale's date and time (%c)
        assert abs(time.mktime(time.strptime(holder["started"], "%c")) - time.time()) < 120
        with pytest.raises(rundir.RunFolderBusyError, match=rf"process {os.getpid()} on {socket.gethostname()}"):
            rundir.RunLock(str(tmp_path)).__enter__()
    assert not (tmp_path / rundir.LOCK).exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for stale in (json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "started": "x"}), "{half"):
        (tmp_path / rundir.LOCK).write_text(stale)
        with rundir.RunLock(str(tmp_path)):
            assert json.loads((tmp_path / rundir.LOCK).read_text())["pid"] == os.getpid()
    elsewhere = {"pid": int(gone.stdout), "host": "another-machine", "started": "x"}
    (tmp_path / rundir.LOCK).write_text(json.dumps(elsewhere))  # cannot be checked from here: assumed alive
    with pytest.raises(rundir.RunFolderBusyError, match="another-machine"):
        rundir.RunLock(str(tmp_path)).__enter__()


def test_a_lock_holder_is_checked_without_a_signal_and_one_not_ours_counts_as_alive(tmp_path, monkeypatch):
    """Liveness is probed with signal 0, which delivers nothing: a holder that dies of SIGHUP is still there
    afterwards. A process this user may not signal (PermissionError) exists, so its lock stands."""
    code = "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); print(flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()  # its SIGHUP handler is the default (terminate) from here on
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "x"}
        (tmp_path / rundir.LOCK).write_text(json.dumps(lock))
        with pytest.raises(rundir.RunFolderBusyError, match=rf"process {holder.pid} on"):
            rundir.RunLock(str(tmp_path)).__enter__()
        with pytest.raises(subprocess.TimeoutExpired):  # still running a second later
            holder.wait(timeout=1)
    finally:
        holder.kill()
        holder.wait()

    def forbidden(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(rundir.os, "kill", forbidden)
    with pytest.raises(rundir.RunFolderBusyError, match=rf"process {holder.pid} on"):
        rundir.RunLock(str(tmp_path)).__enter__()


def test_leaving_a_lock_taken_over_by_another_process_keeps_it(tmp_path):
    lock = rundir.RunLock(str(tmp_path))
    lock.__enter__()
    (tmp_path / rundir.LOCK).write_text(json.dumps({"pid": 1, "host": "h", "started": "x"}))
    lock.__exit__(None, None, None)
    assert (tmp_path / rundir.LOCK).exists()


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        ("flags : fpu avx512f amx_bf16 amx_tile", True),
        ("flags : avx512_bf16 sse", True),
        ("flags : avx512f", False),
        (None, False),  # no /proc/cpuinfo (not Linux): no claim of bf16 units
    ],
)
def test_native_bf16_reads_the_cpu_flags_or_the_gpu_capability(monkeypatch, tmp_path, cpuinfo, native):
    import builtins

    import tensorflow as tf

    real_open = builtins.open
    if cpuinfo is not None:
        (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(
        builtins, "open", lambda path, *a, **k: real_open(tmp_path / "cpuinfo" if path == "/proc/cpuinfo" else path)
    )
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    onednn.cpu_flags.cache_clear()  # read once per process: this machine's flags are read again afterwards
    try:
        assert config.native_bf16() is native
    finally:
        onednn.cpu_flags.cache_clear()
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu0"] if kind == "GPU" else [])
    for capability, expected in [((8, 0), True), ((9, 0), True), ((7, 5), False), (None, False)]:
        details = {"compute_capability": capability}
        monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu, d=details: {"gpu0": d}[gpu])
        assert config.native_bf16() is expected


_SIZES = "(activations grow with its square; no registered network was published above 331)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"augment": "cutout"},
            "Unknown augment 'cutout'; choose one of ['none', 'cifar', 'cifar_pca', 'imagenet', 'alexnet'].",
        ),
        ({"mix": "mixup2"}, "Unknown mix 'mixup2'; choose one of ['none', 'mixup', 'cutmix']."),
        (
            {"precision": "float16"},
            "Unknown precision 'float16'; choose one of ['auto', 'float32', 'mixed_float16', 'mixed_bfloat16'].",
        ),
        ({"strategy": "tpu"}, "Unknown strategy 'tpu'; choose one of ['auto', 'default', 'mirrored', 'multi_worker']."),
        ({"recipe": "fast"}, "Unknown recipe 'fast'; choose 'paper' or one of " + str(sorted(RECIPES)) + "."),
        ({"batch_size": True}, "batch_size must be a finite positive number; received True."),
        ({"batch_size": 2.5}, "batch_size must be a whole number; received 2.5."),
        ({"epochs": "3"}, "epochs must be a finite positive number; received '3'."),
        ({"epochs": 1.5}, "epochs must be a whole number; received 1.5."),
        ({"lr": -0.1}, "lr must be a finite positive number; received -0.1."),
        ({"lr": 0}, "lr must be a finite positive number; received 0."),
        ({"lr": math.nan}, "lr must be a finite positive number; received nan."),
        ({"image_size": 7}, f"image_size must be an integer from 8 to 1024 {_SIZES}; received 7."),
        ({"image_size": 1025}, f"image_size must be an integer from 8 to 1024 {_SIZES}; received 1025."),
        ({"image_size": 32.0}, f"image_size must be an integer from 8 to 1024 {_SIZES}; received 32.0."),
        ({"channels": 2}, "channels must be 1 or 3; received 2."),
        ({"channels": 4}, "channels must be 1 or 3; received 4."),
        ({"data_dir": "/no/such/folder"}, "data_dir '/no/such/folder' does not exist."),
        (
            {"resume": True, "overwrite": True},
            "resume=True continues the run in output_dir and overwrite=True replaces it: pass one.",
        ),
        (
            {"weights": "/no/such.weights.h5"},
            "Weights file not found: '/no/such.weights.h5'. Pass an existing .weights.h5, .h5 or .keras file.",
        ),
    ],
)
def test_validate_says_in_full_what_is_wrong_and_what_is_allowed(tmp_path, change, message):
    missing = "data_dir" in change or "weights" in change
    with pytest.raises(FileNotFoundError if missing else ValueError) as refused:
        config.validate(lenet5_run(tmp_path / "run", **change))
    assert str(refused.value) == message


def test_validate_applies_the_models_quick_settings_and_whole_float_sizes(tmp_path):
    from keras_cnn.registry import model_info

    recipe, name = config.validate(lenet5_run(tmp_path, epochs=2.0, batch_size=16.0))
    assert name == "quick" and recipe.lr == model_info("lenet5").quick["lr"] == 0.002
    recipe, name = config.validate(lenet5_run(tmp_path, recipe="cifar_cosine"))
    assert (name, recipe.lr) == ("cifar_cosine", 0.1)
    assert config.validate(lenet5_run(tmp_path, recipe="densenet_imagenet", epochs=None))[1] == "densenet_imagenet"
    for size in (8, 1024):  # the bounds of the allowed sizes are allowed
        assert config.validate(lenet5_run(tmp_path, image_size=size))[1] == "quick"


def test_a_recipe_that_states_no_epochs_or_no_batch_size_needs_them_passed(tmp_path, monkeypatch):
    """`Recipe.epochs` and `Recipe.batch_size` may be None (a user's recipe added to RECIPES): then the run must
    name them; either one missing is refused on its own."""
    for missing in ("epochs", "batch_size"):
        monkeypatch.setitem(RECIPES, "mine", dataclasses.replace(RECIPES["cifar_cosine"], **{missing: None}))
        with pytest.raises(ValueError) as refused:
            config.validate(lenet5_run(tmp_path, recipe="mine", epochs=None, batch_size=None))
        assert str(refused.value) == "Recipe 'mine' states no epochs or batch size; pass them."
        assert config.validate(lenet5_run(tmp_path, recipe="mine", epochs=3, batch_size=8))[1] == "mine"


def test_check_writable_says_in_full_why_a_path_cannot_hold_a_run(tmp_path, monkeypatch):
    """A file, a path below a file and a folder without write permission are refused; the permission is asked
    of the nearest existing folder (for a relative path too), for writing and entering; nothing is created."""
    (tmp_path / "file").write_text("x")
    refusals = [
        (tmp_path / "file", NotADirectoryError, "is a file; a run writes a folder there: choose another path."),
        (
            tmp_path / "file" / "run" / "deeper",
            NotADirectoryError,
            f"cannot be created: {str(tmp_path / 'file')!r} is a file.",
        ),
    ]
    for out, error, tail in refusals:
        with pytest.raises(error) as refused:
            rundir.check_writable(str(out))
        assert str(refused.value) == f"output_dir {str(out)!r} {tail}"
    asked = []
    monkeypatch.setattr(os, "access", lambda path, mode: asked.append((path, mode)) or False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PermissionError) as refused:
        rundir.check_writable("new/run")
    assert str(refused.value) == f"output_dir 'new/run' is not writable: no write permission on {str(tmp_path)!r}."
    assert asked == [(str(tmp_path), os.W_OK | os.X_OK)]
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    for out in ("new/run", str(tmp_path)):
        assert rundir.check_writable(out) is None
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_a_backup_at_the_last_epoch_leaves_nothing_to_resume(tmp_path):
    import tensorflow as tf

    from keras_cnn.training.run import _Run, _train_in

    settings = lenet5_run(tmp_path, epochs=2)
    recipe, name = config.validate(settings)
    run = _Run(settings, tf.distribute.get_strategy(), str(tmp_path), 2, recipe, name)
    with pytest.raises(ValueError) as refused:
        _train_in(run, (), None)
    assert str(refused.value) == (
        f"The backup in {str(tmp_path)!r} is at epoch 2: the 2 epochs asked for are done, so there is nothing to "
        "resume."
    )


@pytest.mark.parametrize(("dataset", "channels"), [("digits", 1), ("mnist", 1), ("cifar10", 3), ("folder", 3)])
def test_grey_datasets_default_to_one_channel_and_the_others_to_three(dataset, channels):
    from keras_cnn.training.run import _Run

    def run(**settings):
        return _Run(lenet5_run("unused", dataset=dataset, **settings), None, "unused", 0, RECIPES["quick"], "quick")

    assert (run().channels, run(channels=3).channels, run(channels=1).channels) == (channels, 3, 1)
    assert (run().epochs, run(epochs=None).epochs) == (1, RECIPES["quick"].epochs)
    assert (run().batch_size, run(batch_size=8).batch_size) == (RECIPES["quick"].batch_size, 8)


def test_undecodable_images_are_named_ten_at_most_with_the_count_of_the_rest(tmp_path, monkeypatch):
    from keras_cnn.data import folder
    from keras_cnn.training.run import _name_undecodable_images

    monkeypatch.setattr(folder, "image_tree", lambda root: {"root": root})
    error = ValueError("tf.data: cannot decode")
    for n, rest in ((2, ""), (10, ""), (11, " and 1 more")):
        paths = [f"/data/{i}.jpg" for i in range(n)]
        monkeypatch.setattr(folder, "undecodable", lambda tree, paths=paths: paths)
        with pytest.raises(ValueError) as raised:
            _name_undecodable_images(lenet5_run(tmp_path, dataset="folder", data_dir=str(tmp_path)), error)
        listed = ", ".join(repr(path) for path in paths[:10]) + rest
        assert str(raised.value) == (
            f"{n} image(s) under {str(tmp_path)!r} cannot be decoded (truncated or corrupt behind a readable "
            f"header): {listed}. Remove or replace them."
        )
        assert raised.value.__cause__ is error
    assert _name_undecodable_images(lenet5_run(tmp_path, dataset="digits"), error) is None  # not a folder: no search
