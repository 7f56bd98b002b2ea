"""`train(TrainConfig(...))`: any registered model, any dataset, a paper recipe, on one device or many.

The run's output directory holds `history.csv` (one row per epoch), `tensorboard/`, `curves.png` (loss and
accuracy), `checkpoints/last.keras` (every epoch) and `checkpoints/best.keras`, the final `model.keras` and
`metrics.json`. While a run is under way, `backup/` holds Keras' `BackupAndRestore` state; a run that was
killed resumes from its last finished epoch with `resume=True` and ends with the weights an uninterrupted run
would have had (the data order and augmentation are functions of seed, epoch and example: see
`keras_cnn.data.pipeline`). Nothing finished is overwritten unless `overwrite=True`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from keras_cnn.applications import deep_graph
from keras_cnn.augment import AUGMENTATIONS, MIXES, augmenter, batch_augmenter
from keras_cnn.io import write_atomic, write_json_atomic
from keras_cnn.recipes import RECIPES, Recipe
from keras_cnn.training import distribute, optimizers, rundir

if TYPE_CHECKING:
    from keras_cnn.data import Splits

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
#: Inputs above this size are refused before anything is built: activations grow with its square, and no
#: registered network was published at more than 331 x 331.
MAX_IMAGE_SIZE = 1024


@dataclasses.dataclass
class TrainConfig:
    """One training run. `recipe` is a name in `keras_cnn.recipes.RECIPES` or "paper" (the model's own);
    `epochs`, `batch_size` (global, across replicas) and `lr` override it. `verbose` is `fit`'s ("auto": a
    progress bar; 2: one line per epoch; 0: silent). `channels` defaults to 1 for the
    grey datasets (digits, mnist) and 3 otherwise. `weights` starts from a weight set or file (the builder's
    `weights`: a warm restart continues a finished run from its `model.keras`). `precision` "auto" trains in
    mixed bfloat16 where the hardware has native bf16 units (`native_bf16`) and in float32 elsewhere;
    "float32" turns that off."""

    model: str = "resnet20"
    dataset: str = "digits"
    data_dir: str | None = None
    recipe: str = "quick"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    image_size: int = 32
    channels: int | None = None
    augment: str = "none"
    randaugment: bool = False
    mix: str = "none"
    strategy: str = "auto"
    precision: str = "auto"
    jit: bool = False
    deterministic: bool = False
    seed: int = 0
    output_dir: str = "runs/train"
    resume: bool = False
    overwrite: bool = False
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    verbose: int | str = "auto"


def native_bf16() -> bool:
    """Whether this machine computes bfloat16 matrix products natively: an NVIDIA GPU of compute capability 8.0
    or newer, or (without a GPU) a CPU with AMX-BF16 or AVX512-BF16 units (Linux's /proc/cpuinfo flags)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
        return tuple(capability) >= (8, 0)
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None


def resolve_precision(precision: str) -> str:
    """The dtype policy for `precision`: "auto" is "mixed_bfloat16" where `native_bf16()`, else "float32"."""
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if native_bf16() else "float32"


def recipe_augment(model: str, recipe: str) -> str | None:
    """The augmentation pipeline that is `recipe`'s own for `model` ("alexnet" for AlexNet's), or None."""
    try:
        return resolve_recipe(TrainConfig(model=model, recipe=recipe))[0].augment
    except ValueError:  # an unknown name: train() reports it with the other checks
        return None


def resolve_recipe(config: TrainConfig) -> tuple[Recipe, str]:
    """(recipe, its name) for the run: the named one, or the model's registry recipe for "paper"."""
    from keras_cnn.registry import model_info

    if config.recipe == "paper":
        recipe = model_info(config.model).recipe
        return recipe, next(name for name, r in RECIPES.items() if r is recipe)
    if config.recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {config.recipe!r}; choose 'paper' or one of {sorted(RECIPES)}.")
    return RECIPES[config.recipe], config.recipe


Wrap = Callable[[keras.Model, "Splits"], keras.Model]  # (student, its data) -> the model to fit


@deep_graph()
def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    wrap: Wrap | None = None,
    metadata: dict | None = None,
) -> dict:
    """Train as `config` says and return the metrics also written to `metrics.json` (plus `metadata`).

    `wrap(model, data)`, called under the strategy's scope, returns the model to fit in place of `model`: a
    `keras_cnn.distill` distiller whose `student` is `model` (its loss is its own; the checkpoints and
    `model.keras` hold the student alone)."""
    recipe, recipe_name = _check(config)
    strategy = distribute.make_strategy(config.strategy)
    out = config.output_dir
    if not distribute.is_chief():  # workers other than the chief keep their files apart
        kind, index = distribute.task()
        out = os.path.join(out, "workers", f"{kind}{index}")
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    try:
        with rundir.RunLock(out):
            start_epoch = rundir.prepare(out, config, resume=config.resume, overwrite=config.overwrite)
            if config.resume:
                _truncate_history(os.path.join(out, "history.csv"), start_epoch)
            metrics = _train_in(config, strategy, out, start_epoch, recipe, recipe_name, callbacks, wrap)
            metrics.update(metadata or {})
            write_json_atomic(os.path.join(out, "metrics.json"), metrics)
    except BaseException:
        if created and set(os.listdir(out)) <= {rundir.STAMP}:  # nothing of the run's was written: leave no trace
            rundir.remove_if_present(os.path.join(out, rundir.STAMP))
            os.rmdir(out)
        raise
    return metrics


def _train_in(config, strategy, out, start_epoch, recipe, recipe_name, callbacks, wrap) -> dict:
    """The run itself, in its prepared and locked folder."""
    epochs = config.epochs or recipe.epochs
    batch_size = config.batch_size or recipe.batch_size
    if start_epoch >= epochs:
        raise ValueError(f"The backup in {out!r} is at epoch {start_epoch}, past the {epochs} epochs asked for.")
    channels = config.channels or (1 if config.dataset in ("digits", "mnist") else 3)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(config.precision))
    try:
        return _fit(config, strategy, out, start_epoch, recipe, recipe_name, epochs, batch_size, channels,
                    callbacks, wrap)  # fmt: skip
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _check(config: TrainConfig) -> tuple[Recipe, str]:
    """Everything about `config` that can be checked before the output folder is touched: names, numbers,
    the data's location and write access. Returns the recipe and its name."""
    from keras_cnn.data import DATASETS
    from keras_cnn.registry import model_info

    choices = {"dataset": DATASETS, "augment": AUGMENTATIONS, "mix": MIXES, "precision": PRECISIONS,
               "strategy": distribute.STRATEGIES}  # fmt: skip
    for field, allowed in choices.items():
        if getattr(config, field) not in allowed:
            raise ValueError(f"Unknown {field} {getattr(config, field)!r}; choose one of {list(allowed)}.")
    for field in ("epochs", "batch_size", "lr"):
        value = getattr(config, field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{field} must be a finite positive number; received {value!r}.")
        if field != "lr" and value != int(value):
            raise ValueError(f"{field} must be a whole number; received {value!r}.")
    if not isinstance(config.image_size, int) or not 8 <= config.image_size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be an integer from 8 to {MAX_IMAGE_SIZE} (activations grow with its square; no "
            f"registered network was published above 331); received {config.image_size!r}."
        )
    if config.channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3; received {config.channels!r}.")
    info = model_info(config.model)  # an unknown name is an error with suggestions
    recipe, recipe_name = resolve_recipe(config)
    if recipe_name == "quick" and info.quick_lr is not None:
        recipe = dataclasses.replace(recipe, lr=info.quick_lr)
    if config.data_dir is not None and not os.path.exists(config.data_dir):
        raise FileNotFoundError(f"data_dir {config.data_dir!r} does not exist.")
    if config.weights is not None:
        from keras_cnn.applications import check_weights

        check_weights(config.weights)
    if config.resume and config.overwrite:
        raise ValueError("resume=True continues the run in output_dir and overwrite=True replaces it: pass one.")
    if not (config.epochs or recipe.epochs) or not (config.batch_size or recipe.batch_size):
        raise ValueError(f"Recipe {recipe_name!r} states no epochs or batch size; pass them.")
    rundir.check_writable(config.output_dir)
    return recipe, recipe_name


def _truncate_history(path: str, epochs: int) -> None:
    """Keep the first `epochs` rows: a kill between the backup and the CSV row must not duplicate epochs."""
    if not os.path.exists(path):
        return
    rows = _read_history(path)
    with open(path + ".tmp", "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["epoch"]) < epochs)
    os.replace(path + ".tmp", path)


def _read_history(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fit(config, strategy, out, start_epoch, recipe, recipe_name, epochs, batch_size, channels, callbacks,
         wrap) -> dict:  # fmt: skip
    from keras_cnn.complexity import trainable_params
    from keras_cnn.data import load_dataset
    from keras_cnn.registry import create_model

    one_hot = config.mix != "none"
    data = load_dataset(
        config.dataset, data_dir=config.data_dir, image_size=config.image_size, channels=channels,
        batch_size=batch_size, seed=config.seed, deterministic=True, one_hot=one_hot, epochs=(start_epoch, epochs),
        augment=augmenter(config.augment, channels=channels, image_size=config.image_size, pca_seed=config.seed),
    )  # fmt: skip
    if one_hot or config.randaugment:  # needs the class count, known once the data is found
        batch_fn = batch_augmenter(randaugment=config.randaugment, mix=config.mix, classes=data.classes,
                                   channels=channels, seed=config.seed)  # fmt: skip
        data = data._replace(train=data.train.map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE))
    steps = optimizers.steps_per_epoch(data.train_examples, batch_size)
    with strategy.scope():
        model = create_model(config.model, input_shape=(config.image_size, config.image_size, channels),
                             classes=data.classes, weights=config.weights, **config.model_kwargs)  # fmt: skip
        schedule = optimizers.learning_rate(recipe, steps_per_epoch=steps, epochs=epochs, lr=config.lr)
        carries_l2 = any(getattr(layer, "kernel_regularizer", None) is not None for layer in model.layers)
        optimizer = optimizers.optimizer(recipe, schedule, l2=0.0 if carries_l2 else None)
        if wrap is None:
            fitted = model
            outputs, main = compile_model(model, optimizer, recipe=recipe, one_hot=one_hot, jit=config.jit)
        else:
            fitted, outputs, main = wrap(model, data), ["predictions"], "predictions"
            fitted(keras.ops.zeros((1, *model.input_shape[1:])))  # built before BackupAndRestore restores it
            fitted.compile(optimizer=optimizer, metrics=["accuracy"], jit_compile=config.jit)
    train, val = label_every_output(data.train, len(outputs)), label_every_output(data.validation, len(outputs))
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _build_from_a_local_batch(fitted, train)
    monitor = "val_accuracy" if len(outputs) == 1 else f"val_{main}_accuracy"
    timer = _TrainTimer()
    fit_callbacks = [
        rundir.AtomicBackupAndRestore(os.path.join(out, "backup"), double_checkpoint=True),
        DivergenceGuard(lr=config.lr if config.lr is not None else recipe.lr),
        _ResumeCheck(start_epoch * steps),
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"), profile_batch=0),
        EpochCheckpoint(os.path.join(out, "checkpoints"), monitor=monitor, history=os.path.join(out, "history.csv")),
        timer,
    ]
    if recipe.decay == "plateau":
        fit_callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=recipe.gamma, patience=5))
    try:
        fitted.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps, shuffle=False,
                   callbacks=[*fit_callbacks, *callbacks], verbose=config.verbose)  # fmt: skip
    except tf.errors.InvalidArgumentError as err:
        _name_undecodable_images(config, err)
        raise

    history = _read_history(os.path.join(out, "history.csv"))
    val_acc = [float(r[monitor]) for r in history]
    others = {f"final_{key}": float(history[-1][key]) for key in history[-1]
              if key.startswith("val_") and key.endswith("accuracy") and key != monitor}  # fmt: skip
    _save_model_atomic(model, os.path.join(out, "model.keras"))
    plot_history(history, os.path.join(out, "curves.png"))
    metrics = {
        "model": config.model,
        "dataset": config.dataset,
        "recipe": recipe_name,
        "augment": config.augment,
        "randaugment": config.randaugment,
        "mix": config.mix,
        "epochs": epochs,
        "batch_size": batch_size,
        "final_val_accuracy": val_acc[-1],
        "best_val_accuracy": max(val_acc),
        "resumed_from_epoch": start_epoch,
        "wall_time_s": round(timer.wall, 1),
        "images_per_s": round(data.train_examples * (epochs - start_epoch) / timer.train_seconds, 1),
        "trainable_params": trainable_params(model),
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "precision": resolve_precision(config.precision),
        "jit": config.jit,
        "seed": config.seed,
        **others,
    }
    return metrics


def _build_from_a_local_batch(model: keras.Model, train: tf.data.Dataset) -> None:
    """Keras 3's fit builds metrics from the first distributed batch by `strategy.reduce`, which fails under
    MultiWorkerMirroredStrategy (keras-team/keras#20585: "unsupported type PerReplica"). Only the batch's
    shapes and dtypes matter there, so the fit is given one local batch to build from instead."""
    sample = next(iter(train.take(1)))
    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=sample)


def _name_undecodable_images(config: TrainConfig, err: Exception) -> None:
    """An image folder whose file tf.data could not decode mid-run: find and name the file(s)."""
    if config.dataset != "folder":
        return
    from keras_cnn.data import folder

    bad = folder.undecodable(folder.image_tree(config.data_dir))
    if bad:
        listed = ", ".join(repr(path) for path in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ValueError(
            f"{len(bad)} image(s) under {config.data_dir!r} cannot be decoded (truncated or corrupt behind a "
            f"readable header): {listed}. Remove or replace them."
        ) from err


def compile_model(
    model: keras.Model, optimizer, *, recipe: Recipe, one_hot: bool = False, jit: bool = False
) -> tuple[list[str], str]:
    """Compile with cross-entropy on every output, auxiliary heads weighted by `recipe.aux_weight` and the
    others by 1 (MSDNet's exits), accuracy per output. Returns `output_heads(model)`."""
    outputs, main = output_heads(model)
    loss = "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=optimizer,
        loss=[loss] * len(outputs),
        loss_weights=[recipe.aux_weight if name.startswith("aux") else 1.0 for name in outputs],
        metrics=[["accuracy"]] * len(outputs),
        jit_compile=jit,
    )
    return outputs, main


def label_every_output(ds: tf.data.Dataset, outputs: int) -> tf.data.Dataset:
    """(x, y) -> (x, (y, y, ...)): every output of a multi-output model learns the same label."""
    return ds if outputs == 1 else ds.map(lambda x, y: (x, (y,) * outputs))


def output_heads(model: keras.Model) -> tuple[list[str], str]:
    """(names of the model's outputs, the main one): outputs named aux* are auxiliary heads (GoogLeNet's,
    weighted by the recipe's `aux_weight`); the main output is the last other one (MSDNet's last exit)."""
    names = list(model.output_names)
    main = [name for name in names if not name.startswith("aux")]
    if not main:
        raise ValueError(f"Model {model.name!r} has only auxiliary outputs {names}.")
    return names, main[-1]


def plot_history(rows: list[dict], path: str) -> None:
    """Loss and accuracy per epoch (training and validation) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key in sorted(k for k in rows[0] if k.endswith(metric) and k != "epoch"):
            ax.plot(epochs, [float(r[key]) for r in rows], label=key, marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _save_model_atomic(model: keras.Model, path: str) -> None:
    write_atomic(path, model.save, suffix=".keras")


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` after every epoch and `best.keras` when `monitor` improves, each atomically (a
    kill while saving leaves the previous file whole). The best so far is read back from `history` on resume."""

    def __init__(self, directory: str, *, monitor: str, history: str):
        super().__init__()
        self.directory, self.monitor = directory, monitor
        rows = _read_history(history) if os.path.exists(history) else []
        self.best = max((float(r[monitor]) for r in rows), default=float("-inf"))

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        model = getattr(self.model, "student", self.model)  # a distiller's checkpoints hold its student
        _save_model_atomic(model, os.path.join(self.directory, "last.keras"))
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = float(value)
            _save_model_atomic(model, os.path.join(self.directory, "best.keras"))


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


class _ResumeCheck(keras.callbacks.Callback):
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


class _TrainTimer(keras.callbacks.Callback):
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
