"""The callbacks every run uses: checkpoints, the divergence guard, the resume check and the timer."""

from __future__ import annotations

import math
import os
import time

import keras

from keras_cnn.io import write_atomic
from keras_cnn.training.history import read_history


def save_model_atomic(model: keras.Model, path: str) -> None:
    write_atomic(path, model.save)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` after every epoch and `best.keras` when `monitor` improves, each atomically (a
    kill while saving leaves the previous file whole). The best so far is read back from `history` on resume."""

    def __init__(self, directory: str, *, monitor: str, history: str):
        super().__init__()
        self.directory, self.monitor = directory, monitor
        rows = read_history(history) if os.path.exists(history) else []
        self.best = max((float(r[monitor]) for r in rows), default=float("-inf"))

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        model = getattr(self.model, "student", self.model)  # a distiller's checkpoints hold its student
        save_model_atomic(model, os.path.join(self.directory, "last.keras"))
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = float(value)
            save_model_atomic(model, os.path.join(self.directory, "best.keras"))


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite, or exploded: training cannot recover at this learning rate."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops the fit with `DivergenceError` when the running loss is not finite, or exceeds `factor` times the
    first batch's loss plus `margin` (a cross-entropy that has exploded), naming the epoch, the step and `lr`."""

    def __init__(self, *, lr: float, factor: float = 10.0, margin: float = 10.0):
        super().__init__()
        self.lr, self.factor, self.margin = lr, factor, margin
        self.first, self.epoch = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if self.first is None and math.isfinite(loss):
            self.first = loss
        limit = None if self.first is None else self.factor * self.first + self.margin
        if not math.isfinite(loss) or (limit is not None and loss > limit):
            what = f"is {loss}" if not math.isfinite(loss) else f"reached {loss:.4g} (first batch {self.first:.4g})"
            raise DivergenceError(
                f"Training diverged in epoch {self.epoch + 1}, step {batch + 1}: the loss {what}. The learning rate "
                f"{self.lr:g} is too high for this model and data: pass a lower one (--lr, e.g. {self.lr / 10:g})."
            )


class ResumeCheck(keras.callbacks.Callback):
    """After BackupAndRestore has run, the optimizer must be at the step the data stream starts at."""

    def __init__(self, expected_step: int):
        super().__init__()
        self.expected_step = expected_step

    def on_train_begin(self, logs=None):
        step = int(self.model.optimizer.iterations.value.numpy())  # a MirroredVariable under tf.distribute
        if step != self.expected_step:
            raise RuntimeError(
                f"Restored optimizer is at step {step}, the data stream at {self.expected_step}: "
                "the backup does not belong to this configuration (batch size or data changed)."
            )


class TrainTimer(keras.callbacks.Callback):
    """Wall time of the fit and the part spent on training batches (validation excluded)."""

    def on_train_begin(self, logs=None):
        self.train_seconds, self._start = 0.0, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._counted = time.perf_counter(), False

    def on_test_begin(self, logs=None):
        self._count()

    def on_epoch_end(self, epoch, logs=None):
        self._count()

    def on_train_end(self, logs=None):
        self.wall = time.perf_counter() - self._start

    def _count(self):
        if not self._counted:
            self.train_seconds += time.perf_counter() - self._epoch_start
            self._counted = True
