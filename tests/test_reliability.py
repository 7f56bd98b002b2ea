"""Bad input and faults: every error names the bad value or file, and nothing a user had is changed (each
folder is hashed before and after)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_cnn.training import rundir, train
from keras_cnn.training.callbacks import DivergenceError
from tests.helpers import lenet5_run

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _users_folder(root: Path, *, with_model: bool = True) -> dict[str, str]:
    """A folder holding a user's own checkpoints, TensorBoard runs and (`with_model`) model.keras."""
    files = {
        "checkpoints/other_project_best.keras": b"theirs",
        "tensorboard/other_experiment/events": b"runs",
        "notes.txt": b"keep",
        **({"model.keras": b"my model"} if with_model else {}),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return _digest(root)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"recipe": "quikc"}, "quikc"),
        ({"model": "resnet21"}, "resnet21"),
        ({"dataset": "cifar"}, "'cifar'"),
        ({"lr": float("nan")}, "nan"),
        ({"lr": float("inf")}, "inf"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "2.5"),
        ({"image_size": 100_000}, "100000"),
        ({"dataset": "folder", "data_dir": "/no/such/folder"}, "/no/such/folder"),
    ],
)
def test_bad_settings_are_refused_before_the_folder_is_touched(tmp_path, change, named):
    before = _users_folder(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=named.replace(".", r"\.")):
        train(lenet5_run(tmp_path, **change))
    assert _digest(tmp_path) == before
    fresh = tmp_path / "new-run"
    with pytest.raises((ValueError, FileNotFoundError)):
        train(lenet5_run(fresh, **change))
    assert not fresh.exists()  # no empty run folder left behind


def test_a_run_keeps_everything_it_did_not_write(tmp_path):
    before = _users_folder(tmp_path, with_model=False)
    metrics = train(lenet5_run(tmp_path))
    after = _digest(tmp_path)
    assert {k: after[k] for k in before} == before  # the user's files are byte-identical
    assert metrics["epochs"] == 1 and "checkpoints/last.keras" in after and rundir.STAMP in after
    with pytest.raises(FileExistsError, match="finished run"):
        train(lenet5_run(tmp_path))
    train(lenet5_run(tmp_path, overwrite=True))
    assert {k: _digest(tmp_path)[k] for k in before} == before


def test_files_named_like_a_run_but_not_stamped_are_not_replaced(tmp_path):
    before = _users_folder(tmp_path)
    with pytest.raises(FileExistsError, match=r"model\.keras\) that no keras_cnn run stamped"):
        train(lenet5_run(tmp_path))
    assert _digest(tmp_path) == before


def test_a_second_process_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": sleeper.pid, "host": __import__("socket").gethostname(), "started": "earlier"}
        (tmp_path / rundir.LOCK).write_text(json.dumps(lock))
        with pytest.raises(rundir.RunFolderBusyError, match=f"in use by another run: process {sleeper.pid}"):
            train(lenet5_run(tmp_path))
        assert sorted(os.listdir(tmp_path)) == [rundir.LOCK]
    finally:
        sleeper.kill()
        sleeper.wait()
    train(lenet5_run(tmp_path))  # the holder is gone: its lock is stale
    assert not (tmp_path / rundir.LOCK).exists() and (tmp_path / "metrics.json").exists()


def test_resume_refuses_a_run_of_another_configuration(tmp_path):
    rundir.prepare(str(tmp_path), lenet5_run(tmp_path, model="resnet20"), resume=False, overwrite=False)
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    before = _digest(tmp_path)
    with pytest.raises(ValueError, match=r"belongs to model='resnet20'.*model \('resnet20' there, 'resnet56' here\)"):
        train(lenet5_run(tmp_path, model="resnet56", resume=True))
    assert _digest(tmp_path) == before


def test_output_paths_that_cannot_be_a_run_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"output_dir .*file' is a file; a run writes a folder"):
        train(lenet5_run(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="cannot be created"):
        train(lenet5_run(tmp_path / "file" / "run"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only folder (the tests run as root)
    with pytest.raises(PermissionError, match=f"no write permission on '{tmp_path}'"):
        train(lenet5_run(tmp_path / "run"))
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_divergence_stops_the_run_naming_epoch_step_and_rate(tmp_path):
    with pytest.raises(DivergenceError, match=r"diverged in epoch 1, step \d+: .* rate 1e\+06 .*\(--lr, e\.g\. 100000"):
        train(lenet5_run(tmp_path, model="resnet20", lr=1e6))
    assert not (tmp_path / "metrics.json").exists()


def test_lenet5_gets_a_quick_recipe_that_the_paper_network_survives():
    from keras_cnn.training.config import validate

    recipe, name = validate(lenet5_run("unused"))
    assert name == "quick" and recipe.lr <= 2e-3  # LeCun et al. 1998 train at most at 2e-3 (0.05 diverges)
    assert (recipe.batch_size, recipe.epochs) == (64, 15)
    assert recipe.momentum == 0.9 and recipe.decay == "cosine"  # the rest is the quick recipe's
    resnet = validate(lenet5_run("unused", model="resnet20"))[0]
    assert (resnet.lr, resnet.batch_size, resnet.epochs) == (0.05, 64, 15)


def test_a_full_disk_while_backing_up_keeps_the_previous_backup(tmp_path, tmp_path_factory, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    backup = rundir.AtomicBackupAndRestore(str(tmp_path), double_checkpoint=True)
    backup.set_model(model)
    backup.on_epoch_end(0)
    before = _digest(tmp_path)
    keras_folder = tmp_path_factory.mktemp("keras_backup")  # Keras' own callback: the format its restore reads
    keras_backup = keras.callbacks.BackupAndRestore(str(keras_folder), double_checkpoint=True)
    keras_backup.set_model(model)
    keras_backup.on_epoch_end(0)
    assert sorted(os.listdir(keras_folder)) == sorted(os.listdir(tmp_path))
    metadata = [json.loads((folder / "training_metadata.json").read_text()) for folder in (tmp_path, keras_folder)]
    assert metadata[0] == metadata[1]

    def full_disk(path, overwrite=True):
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save_weights", full_disk)
    with pytest.raises(
        OSError,
        match=r"latest\.weights\.h5': No space left on device\. The previous backup is unchanged; free disk space "
        r"\(or fix the folder\) and continue with --resume\.$",
    ):
        backup.on_epoch_end(1)
    after = _digest(tmp_path)
    assert after["latest.weights.h5"] == before["latest.weights.h5"]
    assert json.loads((tmp_path / "training_metadata.json").read_text())["epoch"] == 1
    assert not [name for name in after if ".tmp" in name]  # the half-written file is gone


def test_corrupt_keras_files_are_named(tmp_path):
    import keras_cnn
    from keras_cnn.io import load_model

    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"broken\.keras' is not a valid Keras archive"):
        load_model(bad)
    with pytest.raises(ValueError, match=r"broken\.keras"):
        keras_cnn.create_model("lenet5", weights=str(bad))
    with pytest.raises(FileNotFoundError, match=r"missing\.keras' does not exist"):
        load_model(tmp_path / "missing.keras")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/export_serving.py"),
            f"--saved_model={bad}",
            f"--export_dir={tmp_path / 'export'}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "is not a valid Keras archive" in result.stderr
    assert "See --helpshort" in result.stderr and "--export_dir:" not in result.stderr  # no flag list


def test_distiller_checks_teacher_and_student_agree():
    import keras_cnn
    from keras_cnn import distill

    student = keras_cnn.create_model("lenet5", variant="modern")
    teacher = keras_cnn.create_model("lenet5", variant="modern", classes=5)
    with pytest.raises(ValueError, match=r"predicts 5 classes and the student .* 10"):
        distill.Distiller(teacher, student)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0; received 0"):
        distill.train_distilled(lenet5_run("unused"), distill.DistillConfig(temperature=0.0))


def test_bad_data_is_named(tmp_path):
    from keras_cnn.data import load_cifar_archive, load_dataset
    from tests.test_data_sources import _cifar_batch

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for member in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / member).write_bytes(_cifar_batch(rng, 3, b"labels", 10)[0])
    import pickle

    batch = pickle.loads((folder / "data_batch_3").read_bytes(), encoding="bytes")
    batch[b"labels"][1] = -1
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: label -1 at row 1 is outside 0\.\.9"):
        load_cifar_archive(folder)
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\); received 1\.5"):
        load_dataset("digits", validation_fraction=1.5)
    images = tmp_path / "images"
    for cls, n in (("cat", 1), ("dog", 2)):
        (images / cls).mkdir(parents=True)
        for i in range(n):
            keras.utils.save_img(images / cls / f"{i}.png", np.zeros((4, 4, 3)))
    with pytest.raises(
        ValueError, match=r"holds out no image: every class has too few images \(cat \(1\), dog \(2\)\)"
    ):
        load_dataset("folder", data_dir=images)


def test_ci_turns_skips_for_missing_dependencies_into_failures(tmp_path):
    """Under CI=true (.ci/run) the optional test dependencies are installed, so an importorskip that skips means
    a broken environment: it fails. Other skips, and every skip outside CI, stay skips."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "test_optional.py").write_text(
        "import pytest\n"
        "def test_needs_it():\n    pytest.importorskip('no_such_package_for_keras_cnn')\n"
        "def test_other_reason():\n    pytest.skip('not today')\n"
    )
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", str(tmp_path)]
    for ci, expected in (("true", "1 failed, 1 skipped"), ("", "2 skipped")):
        env = {**os.environ, "CI": ci, "PYTHONPATH": str(root)}
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert expected in done.stdout, done.stdout[-2000:]
