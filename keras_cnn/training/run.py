"""`train(TrainConfig(...))`: any registered model, any dataset, a paper recipe, on one device or many.

The run's output directory holds `history.csv` (one row per epoch), `tensorboard/`, `curves.png` (loss and
accuracy), `checkpoints/last.keras` (every epoch) and `checkpoints/best.keras`, the final `model.keras` and
`metrics.json`. While a run is under way, `backup/` holds Keras' `BackupAndRestore` state; a run that was
killed resumes from its last finished epoch with `resume=True` and ends with the weights an uninterrupted run
would have had (the data order and augmentation are functions of seed, epoch and example: see
`keras_cnn.data.pipeline`). Nothing finished is overwritten unless `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from keras_cnn import optimizers
from keras_cnn.applications import deep_graph
from keras_cnn.augment import augmenter, batch_augmenter
from keras_cnn.io import write_json_atomic
from keras_cnn.recipes import Recipe
from keras_cnn.training import distribute, rundir
from keras_cnn.training.callbacks import (
    DivergenceGuard,
    EpochCheckpoint,
    ResumeCheck,
    TrainTimer,
    save_model_atomic,
)
from keras_cnn.training.config import TrainConfig, resolve_precision, validate
from keras_cnn.training.history import plot_history, read_history, truncate_history

if TYPE_CHECKING:
    from keras_cnn.data import Splits


Wrap = Callable[[keras.Model, "Splits", int], keras.Model]  # (student, its data, steps per epoch) -> the model to fit


@deep_graph()
def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    wrap: Wrap | None = None,
    metadata: dict | None = None,
) -> dict:
    """Train as `config` says and return the metrics also written to `metrics.json` (plus `metadata`).

    `wrap(model, data, steps_per_epoch)`, called under the strategy's scope, returns the model to fit in place
    of `model`: a `keras_cnn.distill` distiller whose `student` is `model` (its loss is its own; the checkpoints
    and `model.keras` hold the student alone)."""
    recipe, recipe_name = validate(config)
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
                truncate_history(os.path.join(out, "history.csv"), start_epoch)
            run = _Run(config, strategy, out, start_epoch, recipe, recipe_name)
            metrics = _train_in(run, callbacks, wrap)
            metrics.update(metadata or {})
            write_json_atomic(os.path.join(out, "metrics.json"), metrics)
    except BaseException:
        if created and set(os.listdir(out)) <= {rundir.STAMP}:  # nothing of the run's was written: leave no trace
            rundir.remove_if_present(os.path.join(out, rundir.STAMP))
            os.rmdir(out)
        raise
    return metrics


@dataclasses.dataclass(frozen=True)
class _Run:
    """A validated run in its prepared, locked folder `out`, starting at `start_epoch`."""

    config: TrainConfig
    strategy: tf.distribute.Strategy
    out: str
    start_epoch: int
    recipe: Recipe
    recipe_name: str

    @property
    def epochs(self) -> int:
        return self.config.epochs or self.recipe.epochs

    @property
    def batch_size(self) -> int:
        return self.config.batch_size or self.recipe.batch_size

    @property
    def channels(self) -> int:
        """`config.channels`, by default 1 for the grey datasets (digits, mnist) and 3 otherwise."""
        return self.config.channels or (1 if self.config.dataset in ("digits", "mnist") else 3)


def _train_in(run: _Run, callbacks, wrap) -> dict:
    """The run itself, in its prepared and locked folder."""
    if run.start_epoch >= run.epochs:
        raise ValueError(
            f"The backup in {run.out!r} is at epoch {run.start_epoch}: the {run.epochs} epochs asked for are done, "
            "so there is nothing to resume."
        )
    keras.utils.set_random_seed(run.config.seed)
    if run.config.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(run.config.precision))
    try:
        return _fit(run, callbacks, wrap)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _fit(run: _Run, callbacks, wrap) -> dict:
    from keras_cnn.complexity import trainable_params
    from keras_cnn.data import load_dataset
    from keras_cnn.registry import create_model, model_info

    config = run.config

    one_hot = config.mix != "none"
    augment = augmenter(config.augment, channels=run.channels, image_size=config.image_size, pca_seed=config.seed)
    data = load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        image_size=config.image_size,
        channels=run.channels,
        batch_size=run.batch_size,
        seed=config.seed,
        deterministic=True,
        one_hot=one_hot,
        epochs=(run.start_epoch, run.epochs),
        augment=augment,
    )
    if one_hot or config.randaugment:  # needs the class count, known once the data is found
        batch_fn = batch_augmenter(
            randaugment=config.randaugment,
            mix=config.mix,
            classes=data.classes,
            channels=run.channels,
            seed=config.seed,
        )
        data = data._replace(train=data.train.map(batch_fn, num_parallel_calls=tf.data.AUTOTUNE))
    steps = optimizers.steps_per_epoch(data.train_examples, run.batch_size)
    card = model_info(config.model)
    criterion = card.criterion(**config.model_kwargs) if card.criterion and wrap is None else None
    logits = {"classifier_activation": None} if criterion else {}
    with run.strategy.scope():
        model = create_model(
            config.model,
            input_shape=(config.image_size, config.image_size, run.channels),
            classes=data.classes,
            weights=config.weights,
            **{**config.model_kwargs, **logits},
        )
        schedule = optimizers.learning_rate(run.recipe, steps_per_epoch=steps, epochs=run.epochs, lr=config.lr)
        carries_l2 = any(getattr(layer, "kernel_regularizer", None) is not None for layer in model.layers)
        optimizer = optimizers.optimizer(run.recipe, schedule, l2=0.0 if carries_l2 else None)
        if wrap is None:
            fitted = model
            outputs, main = compile_model(
                model, optimizer, recipe=run.recipe, one_hot=one_hot, jit=config.jit, criterion=criterion
            )
        else:
            fitted, outputs, main = wrap(model, data, steps), ["predictions"], "predictions"
            fitted(keras.ops.zeros((1, *model.input_shape[1:])))  # built before BackupAndRestore restores it
            fitted.compile(optimizer=optimizer, metrics=["accuracy"], jit_compile=config.jit)
    train, val = label_every_output(data.train, len(outputs)), label_every_output(data.validation, len(outputs))
    if isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _build_from_a_local_batch(fitted, train)
    monitor = "val_accuracy" if len(outputs) == 1 else f"val_{main}_accuracy"
    timer = TrainTimer()
    fit_callbacks = [
        rundir.AtomicBackupAndRestore(os.path.join(run.out, "backup"), double_checkpoint=True),
        DivergenceGuard(lr=config.lr if config.lr is not None else run.recipe.lr),
        ResumeCheck(run.start_epoch * steps),
        keras.callbacks.CSVLogger(os.path.join(run.out, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(run.out, "tensorboard")),
        EpochCheckpoint(
            os.path.join(run.out, "checkpoints"), monitor=monitor, history=os.path.join(run.out, "history.csv")
        ),
        timer,
    ]
    if run.recipe.decay == "plateau":
        fit_callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=run.recipe.gamma, patience=5))
    try:
        fitted.fit(
            train,
            validation_data=val,
            epochs=run.epochs,
            steps_per_epoch=steps,
            shuffle=False,
            callbacks=[*fit_callbacks, *callbacks],
            verbose=config.verbose,
        )
    except tf.errors.InvalidArgumentError as err:
        _name_undecodable_images(config, err)
        raise

    history = read_history(os.path.join(run.out, "history.csv"))
    val_acc = [float(r[monitor]) for r in history]
    others = {
        f"final_{key}": float(history[-1][key])
        for key in history[-1]
        if key.startswith("val_") and key.endswith("accuracy") and key != monitor
    }
    save_model_atomic(model, os.path.join(run.out, "model.keras"))
    plot_history(history, os.path.join(run.out, "curves.png"))
    metrics = {
        "model": config.model,
        "dataset": config.dataset,
        "recipe": run.recipe_name,
        "augment": config.augment,
        "randaugment": config.randaugment,
        "mix": config.mix,
        "epochs": run.epochs,
        "batch_size": run.batch_size,
        "final_val_accuracy": val_acc[-1],
        "best_val_accuracy": max(val_acc),
        "resumed_from_epoch": run.start_epoch,
        "wall_time_s": round(timer.wall, 1),
        "images_per_s": round(data.train_examples * (run.epochs - run.start_epoch) / timer.train_seconds, 1),
        "trainable_params": trainable_params(model),
        "strategy": type(run.strategy).__name__,
        "replicas": run.strategy.num_replicas_in_sync,
        "precision": keras.config.dtype_policy().name,  # the policy _train_in resolved and set
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
    model: keras.Model,
    optimizer,
    *,
    recipe: Recipe,
    one_hot: bool = False,
    jit: bool = False,
    criterion: keras.losses.Loss | None = None,
) -> tuple[list[str], str]:
    """Compile with cross-entropy on every output (`criterion` instead on the main one, given the model's
    logits), auxiliary heads weighted by `recipe.aux_weight` and the others by 1 (MSDNet's exits), accuracy per
    output. Returns `output_heads(model)`."""
    outputs, main = output_heads(model)
    loss = "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=optimizer,
        loss=[criterion if criterion is not None and name == main else loss for name in outputs],
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
