"""The run folder: what a run may write and delete there, its lock, and its record of the configuration.

A run marks its folder with `keras_cnn_run.json` (the settings that decide its results) and deletes nothing but
the files a run writes (`RUN_FILES`, `RUN_DIRS`), only when they belong to a finished run being replaced with
`overwrite=True`; anything else in the folder (another project's checkpoints, other TensorBoard runs) stays.
`keras_cnn_run.lock` holds the process that trains there: a second process refuses at once, naming it, and a
lock left by a killed process is taken over. `resume=True` continues only a run of the same configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import keras

from keras_cnn.io import write_atomic, write_json_atomic

STAMP = "keras_cnn_run.json"
LOCK = "keras_cnn_run.lock"
#: Files a run writes, relative to its folder (Keras' TensorBoard callback writes train/ and validation/).
RUN_FILES = (
    "metrics.json",
    "history.csv",
    "curves.png",
    "model.keras",
    "checkpoints/last.keras",
    "checkpoints/best.keras",
)
RUN_DIRS = ("backup", "tensorboard/train", "tensorboard/validation")
#: TrainConfig fields that decide what a run computes; a resumed run must agree on all of them.
IDENTITY = (
    "model",
    "dataset",
    "data_dir",
    "recipe",
    "epochs",
    "batch_size",
    "lr",
    "image_size",
    "channels",
    "augment",
    "randaugment",
    "mix",
    "precision",
    "seed",
    "model_kwargs",
    "weights",
)


def check_writable(out: str) -> None:
    """`out` must be a folder (or not exist yet) that this process can create and write."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"output_dir {out!r} is a file; a run writes a folder there: choose another path.")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"output_dir {out!r} cannot be created: {parent!r} is a file.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output_dir {out!r} is not writable: no write permission on {parent!r}.")


class RunFolderBusyError(RuntimeError):
    """Another live process trains in this run folder."""


class RunLock:
    """`with RunLock(folder):` holds the folder's lock file for the life of the run."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK)

    def __enter__(self) -> RunLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = _read_json(self.path)
                if holder is not None and _alive(holder):
                    raise RunFolderBusyError(
                        f"{os.path.dirname(self.path)!r} is in use by another run: process {holder['pid']} on "
                        f"{holder['host']}, started {holder['started']} (lock {self.path}). Wait for it to end or "
                        "choose another output directory."
                    ) from None
                remove_if_present(self.path)  # left by a process that is gone (or a half-written lock)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%c")}, f)
            return self
        raise RunFolderBusyError(f"Could not take the lock {self.path}: other processes keep taking it.")

    def __exit__(self, *exc) -> None:
        holder = _read_json(self.path)
        if holder and holder.get("pid") == os.getpid():
            remove_if_present(self.path)


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def remove_if_present(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def identity(config) -> dict:
    return {field: getattr(config, field) for field in IDENTITY}


def prepare(out: str, config, *, resume: bool, overwrite: bool) -> int:
    """The epoch to start at (0, or the backup's with `resume`), after checking what `out` holds: a resumed
    run must be of the same configuration; a finished or interrupted run, or files named like a run's that
    no run of this package wrote, are replaced only with `overwrite` (and then only the run's own files)."""
    backup = os.path.join(out, "backup", "training_metadata.json")
    stamp = _read_json(os.path.join(out, STAMP))
    present = [name for name in (*RUN_FILES, *RUN_DIRS) if os.path.exists(os.path.join(out, name))]
    wanted = json.loads(json.dumps(identity(config)))  # as it reads back from the stamp
    if resume:
        if not os.path.exists(backup):
            state = "finished" if os.path.exists(os.path.join(out, "metrics.json")) else "has no interrupted run"
            raise FileNotFoundError(f"Cannot resume: {out!r} {state} (no backup/training_metadata.json).")
        recorded = (stamp or {}).get("config")
        if recorded is not None and recorded != wanted:
            differ = {k: (recorded.get(k), wanted.get(k)) for k in wanted if recorded.get(k) != wanted.get(k)}
            raise ValueError(
                f"Cannot resume: the run in {out!r} belongs to "
                + ", ".join(f"{k}={recorded.get(k)!r}" for k in IDENTITY if recorded.get(k) is not None)
                + "; this call differs in "
                + ", ".join(f"{k} ({old!r} there, {new!r} here)" for k, (old, new) in differ.items())
                + ". Resume with the same settings, or train into another output directory."
            )
        return int(_read_json(backup)["epoch"])
    if present and not overwrite:
        if os.path.exists(backup):
            what = "an interrupted run: pass resume=True (--resume) to continue it,"
        elif stamp is not None:
            what = "a finished run (metrics.json):"
        else:
            what = f"files a run would write ({', '.join(present)}) that no keras_cnn run stamped:"
        raise FileExistsError(
            f"{out!r} holds {what} pass overwrite=True (--overwrite) to replace them, or choose another "
            "output directory."
        )
    for name in present:  # only the run's own files; the folder's other contents stay
        path = os.path.join(out, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    write_json_atomic(os.path.join(out, STAMP), {"package": "keras_cnn", "config": wanted})
    return 0


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore` whose every file is written beside its target and renamed into place, so a
    failed write (a full disk) leaves the previous backup whole and says which file failed and why."""

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        steps = [
            (self._weights_path, self.model.save_weights),  # to a new temporary file: no overwrite prompt
            (self._training_metadata_path, self._write_metadata),
        ]
        if self.double_checkpoint:
            steps = [
                (prev, lambda p, src=src: shutil.copyfile(src, p))
                for src, prev in (
                    (self._weights_path, self._prev_weights_path),
                    (self._training_metadata_path, self._prev_training_metadata_path),
                )
                if os.path.exists(src)
            ] + steps
        for path, write in steps:
            try:
                write_atomic(path, write)
            except OSError as err:
                raise OSError(
                    f"Could not write the backup file {path!r}: {err.strerror or err}. The previous backup is "
                    "unchanged; free disk space (or fix the folder) and continue with --resume."
                ) from err

    def _write_metadata(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
