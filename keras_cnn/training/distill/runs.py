"""`train_distilled`: a student trained by one of the methods through `keras_cnn.training.train`."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import keras

from keras_cnn.io import load_model
from keras_cnn.training.config import TrainConfig
from keras_cnn.training.distill.models import (
    Distiller,
    FitNetDistiller,
    MimicDistiller,
    block_outputs,
    middle_layer,
    rocket_from_models,
)
from keras_cnn.training.run import train

METHODS = ("kd", "mimic", "fitnets", "rocket")


@dataclasses.dataclass
class DistillConfig:
    """How `train_distilled` teaches the student (`TrainConfig.model`). `teacher` is a registered name; its
    weights come from `teacher_weights` (a `.keras` file) or from training it first with the same config into
    `<output_dir>/teacher` (reused when that run has finished). For "rocket", `teacher` is the booster, trained
    together with the student from scratch. Layer names default to `middle_layer` (FitNets) and the student's
    first block output (Rocket Launching's bottom sharing); `temperature` to 4 (KD) and 3 (FitNets)."""

    method: str = "kd"
    teacher: str = "resnet56"
    teacher_weights: str | None = None
    temperature: float | None = None
    alpha: float = 0.1
    hint_layer: str | None = None
    guided_layer: str | None = None
    hint_epochs: int = 5
    split_layer: str | None = None
    hint_weight: float = 0.03


def train_distilled(config: TrainConfig, distill: DistillConfig, **train_kwargs) -> dict:
    """Train `config.model` as a student by `distill.method` with `keras_cnn.training.train`; the run
    directory is a normal one (its `model.keras` is the student alone) and `metrics.json` also names the
    method and the teacher, with the teacher's validation accuracy."""
    if distill.method not in METHODS:
        raise ValueError(f"Unknown distillation method {distill.method!r}; choose one of {list(METHODS)}.")
    if distill.temperature is not None and not (math.isfinite(distill.temperature) and distill.temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; received {distill.temperature!r}.")
    metadata = {"method": distill.method, "teacher": distill.teacher}
    teacher_path = None
    if distill.method != "rocket":
        teacher_path, metadata["teacher_val_accuracy"] = _teacher(config, distill)

    def wrap(student: keras.Model, data, steps: int) -> keras.Model:
        return _distiller(distill, student, data, steps, teacher_path, config)

    return train(config, wrap=wrap, metadata=metadata, **train_kwargs)


def _teacher(config: TrainConfig, distill: DistillConfig) -> tuple[str, float | None]:
    """(the teacher's .keras file, its validation accuracy when this project measured it)."""
    if distill.teacher_weights:
        if not os.path.isfile(distill.teacher_weights):
            raise FileNotFoundError(
                f"Teacher weights {distill.teacher_weights!r} do not exist; give a .keras file "
                "written by train_cifar.py (model.keras) or model.save()."
            )
        return distill.teacher_weights, None
    out = os.path.join(config.output_dir, "teacher")
    finished = os.path.join(out, "metrics.json")
    if os.path.exists(finished):
        with open(finished) as f:
            metrics = json.load(f)
        if metrics["model"] != distill.teacher or metrics["dataset"] != config.dataset:
            raise FileExistsError(
                f"{out!r} holds a {metrics['model']} teacher trained on {metrics['dataset']}; "
                "choose another output directory."
            )
    else:
        teacher = dataclasses.replace(config, model=distill.teacher, output_dir=out, model_kwargs={}, weights=None)
        metrics = train(teacher)
    return os.path.join(out, "model.keras"), metrics["final_val_accuracy"]


def _distiller(
    distill: DistillConfig, student: keras.Model, data, steps: int, teacher_path: str | None, config
) -> keras.Model:
    if distill.method == "rocket":
        from keras_cnn.registry import create_model

        booster = create_model(distill.teacher, input_shape=student.input_shape[1:], classes=data.classes)
        split = distill.split_layer or block_outputs(student)[0]
        return rocket_from_models(student, booster, split_layer=split, hint_weight=distill.hint_weight)
    teacher = load_model(teacher_path)
    if teacher.input_shape[1:] != student.input_shape[1:] or teacher.output_shape[-1] != student.output_shape[-1]:
        raise ValueError(
            f"The teacher takes {teacher.input_shape[1:]} and gives {teacher.output_shape[-1]} classes; "
            f"the student {student.input_shape[1:]} and {student.output_shape[-1]}."
        )
    if distill.method == "mimic":
        return MimicDistiller(teacher, student)
    if distill.method == "kd":
        temperature = 4.0 if distill.temperature is None else distill.temperature
        return Distiller(teacher, student, temperature=temperature, alpha=distill.alpha)
    fitnet = FitNetDistiller(
        teacher,
        student,
        hint_layer=distill.hint_layer or middle_layer(teacher),
        guided_layer=distill.guided_layer or middle_layer(student),
        temperature=3.0 if distill.temperature is None else distill.temperature,
    )
    if distill.hint_epochs and not config.resume:  # a resumed run restores stage 2's weights from its backup
        if int(data.train.cardinality()) < distill.hint_epochs * steps:
            raise ValueError(f"hint_epochs ({distill.hint_epochs}) cannot exceed the run's epochs.")
        fitnet.fit_hints(data.train, epochs=distill.hint_epochs, steps_per_epoch=steps, verbose=config.verbose)
    return fitnet
