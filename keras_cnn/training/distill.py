"""Teacher-to-student distillation: train a complex network offline, serve a simple one online.

- `Distiller`: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015), soft targets at
  temperature T with the T² factor.
- `MimicDistiller`: Ba & Caruana, "Do Deep Nets Really Need to be Deep?" (NeurIPS 2014), L2 regression on the
  teacher's logits; needs no labels.
- `FitNetDistiller`: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015), hint training of the
  student up to its guided layer (stage 1), then KD with λ decaying linearly (stage 2).
- `RocketLaunching`: Zhou et al., "Rocket Launching" (AAAI 2018), a light and a booster net that share their
  lower layers and train together, with a gradient block on the logit hint.

Each is a `keras.Model` that is compiled and fitted as usual (with `metrics=["accuracy"]` for the student's
accuracy); its `student` attribute is the plain Keras model that comes out, and it saves, reloads and exports
without the teacher. The teacher is frozen and runs in inference mode. Losses follow the papers (Hinton et al.
2015, arXiv:1503.02531; Ba & Caruana 2014, arXiv:1312.6184; Romero et al. 2015, arXiv:1412.6550; Zhou et al.
2018, arXiv:1708.04106); labels may be sparse or one-hot (MixUp/CutMix).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import keras
from keras import ops

from keras_cnn.applications import deep_graph
from keras_cnn.io import load_model
from keras_cnn.training.optimizers import steps_per_epoch
from keras_cnn.training.run import TrainConfig, resolve_recipe, train


class PreActivation(keras.layers.Layer):
    """The logits of a softmax `Dense` classifier: its affine part, computed with its own weights."""

    def __init__(self, dense: keras.layers.Dense, **kwargs):
        super().__init__(name=f"{dense.name}_logits", dtype="float32", **kwargs)
        self.dense = dense

    def call(self, x):
        logits = ops.matmul(ops.cast(x, self.dense.kernel.dtype), self.dense.kernel)
        return logits + self.dense.bias if self.dense.use_bias else logits


@deep_graph()
def logits_of(model: keras.Model) -> keras.Model:
    """A model with `model`'s weights (shared, not copied) whose output is the input of the softmax of its
    `predictions` layer: a softmax `Dense` head (every builder's) or an `Activation` (LeNet-5's RBF head).
    A model that already ends in `PreActivation` is returned as it is. `model` must start at `keras.Input`."""
    if isinstance(model.layers[-1], PreActivation):
        return model
    try:
        head = model.get_layer("predictions")
    except ValueError as err:
        raise ValueError(f"Model {model.name!r} has no 'predictions' layer to take logits from.") from err
    activation = getattr(head.activation, "__name__", str(head.activation))
    if activation not in ("softmax", "linear"):
        raise ValueError(f"{model.name!r}'s predictions use {activation!r}; distillation needs softmax or linear.")
    if isinstance(head, keras.layers.Dense):
        logits = PreActivation(head)(head.input)
    elif isinstance(head, keras.layers.Activation):
        logits = head.input
    else:
        raise ValueError(f"{model.name!r}'s predictions layer is a {type(head).__name__}, not Dense or Activation.")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, logits, name=f"{model.name}_logits")


def soft_cross_entropy(teacher_logits, student_logits, temperature: float):
    """H(softmax(t/T), softmax(s/T)) per example: Hinton's soft-target loss (KL plus the teacher's entropy,
    which has no gradient)."""
    targets = ops.softmax(teacher_logits / temperature, axis=-1)
    return -ops.sum(targets * ops.log_softmax(student_logits / temperature, axis=-1), axis=-1)


def _one_hot(labels, logits) -> bool:
    """Whether `labels` are one-hot (MixUp/CutMix) rather than class indices for these logits."""
    return len(labels.shape) == len(logits.shape)


def _regularized(loss, model: keras.Model):
    """`loss` plus the regularization losses `model` carries (CliqueNet's reference L2)."""
    return loss + ops.sum(model.losses) if model.losses else loss


def hard_cross_entropy(labels, logits):
    """Cross-entropy with the true labels per example; sparse or one-hot labels."""
    if _one_hot(labels, logits):
        return keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def kd_loss(labels, teacher_logits, student_logits, *, temperature: float, alpha: float):
    """Hinton's loss, batch mean: alpha·H(y, softmax(s)) + (1 - alpha)·T²·H(softmax(t/T), softmax(s/T)). The
    T² keeps the soft gradients' scale as T changes."""
    soft = soft_cross_entropy(teacher_logits, student_logits, temperature) * temperature**2
    return ops.mean(alpha * hard_cross_entropy(labels, student_logits) + (1.0 - alpha) * soft)


def mimic_loss(teacher_logits, student_logits):
    """Ba & Caruana's logit regression, batch mean: ½‖s - t‖² summed over the classes."""
    return ops.mean(0.5 * ops.sum(ops.square(student_logits - teacher_logits), axis=-1))


def hint_loss(hint, regressed):
    """FitNets stage 1, batch mean of ½‖u_h - r(v_g)‖² averaged over the hint's elements (the paper sums them;
    the mean keeps the learning rate independent of the hint layer's size)."""
    per_example = ops.mean(ops.reshape(ops.square(hint - regressed), (ops.shape(hint)[0], -1)), axis=-1)
    return ops.mean(0.5 * per_example)


def fitnet_kd_loss(labels, teacher_logits, student_logits, *, temperature: float, lambda_):
    """FitNets stage 2 (eq. 2), batch mean: H(y, P_S) + λ·H(P_T^τ, P_S^τ), without Hinton's τ² factor."""
    soft = soft_cross_entropy(teacher_logits, student_logits, temperature)
    return ops.mean(hard_cross_entropy(labels, student_logits) + lambda_ * soft)


def rocket_loss(labels, light_logits, booster_logits, *, hint_weight: float):
    """Rocket Launching: H(y, p) + H(y, q) + λ‖l - z‖² on logits, summed over classes and averaged over the
    batch (the reference code's). The booster's logits z are a constant in the hint term (gradient block)."""
    hint = ops.sum(ops.square(light_logits - ops.stop_gradient(booster_logits)), axis=-1)
    ce = hard_cross_entropy(labels, light_logits) + hard_cross_entropy(labels, booster_logits)
    return ops.mean(ce + hint_weight * hint)


def _frozen(teacher: keras.Model) -> keras.Model:
    teacher.trainable = False
    return teacher


class _TeacherStudent(keras.Model):
    """A frozen teacher and a student; `call` gives the student's logits, `compute_loss` is the method's."""

    def __init__(self, teacher: keras.Model, student: keras.Model, **kwargs):
        if teacher.output_shape[-1] != student.output_shape[-1]:
            raise ValueError(f"The teacher {teacher.name!r} predicts {teacher.output_shape[-1]} classes and the "
                             f"student {student.name!r} {student.output_shape[-1]}: they must agree.")  # fmt: skip
        if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
            raise ValueError(f"The teacher {teacher.name!r} takes {teacher.input_shape[1:]} and the student "
                             f"{student.name!r} {student.input_shape[1:]}: both must see the same images.")  # fmt: skip
        super().__init__(**kwargs)
        self.teacher, self.student = _frozen(teacher), student
        self.teacher_logits, self.student_logits = logits_of(teacher), logits_of(student)

    def call(self, x, training=False):
        return self.student_logits(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        teacher = ops.cast(self.teacher_logits(x, training=False), "float32")
        loss = self.loss_from_logits(y, teacher, ops.cast(y_pred, "float32"))
        return _regularized(loss, self.student)

    def loss_from_logits(self, labels, teacher_logits, student_logits):
        raise NotImplementedError


class Distiller(_TeacherStudent):
    """Hinton KD: `alpha` weighs the hard-label loss, 1 - alpha the soft loss at `temperature` (scaled by T²).
    Hinton et al. found a considerably lower weight on the hard term best, hence alpha=0.1."""

    def __init__(self, teacher: keras.Model, student: keras.Model, *, temperature: float = 4.0, alpha: float = 0.1,
                 **kwargs):  # fmt: skip
        if not (math.isfinite(temperature) and temperature > 0) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Need temperature > 0 and 0 <= alpha <= 1; received {temperature!r}, {alpha!r}.")
        super().__init__(teacher, student, **kwargs)
        self.temperature, self.alpha = temperature, alpha

    def loss_from_logits(self, labels, teacher_logits, student_logits):
        return kd_loss(labels, teacher_logits, student_logits, temperature=self.temperature, alpha=self.alpha)


class MimicDistiller(_TeacherStudent):
    """SNN-MIMIC: the student regresses the teacher's logits. Labels are not used by the loss, so `fit` also
    takes unlabeled transfer data (images only; compile without metrics then, as accuracy needs labels)."""

    def loss_from_logits(self, labels, teacher_logits, student_logits):
        return mimic_loss(teacher_logits, student_logits)


class FitNetDistiller(_TeacherStudent):
    """FitNets. Stage 1, `fit_hints`: the student up to `guided_layer` plus a convolutional regressor learn to
    predict the teacher's `hint_layer` output. Stage 2, `fit`: KD at τ=`temperature` with λ going linearly from
    `lambda_start` to `lambda_end` over the epochs of the fit (paper: τ=3, λ 4 → 1)."""

    def __init__(self, teacher: keras.Model, student: keras.Model, *, hint_layer: str, guided_layer: str,
                 temperature: float = 3.0, lambda_start: float = 4.0, lambda_end: float = 1.0,
                 regressor_activation: str = "relu", **kwargs):  # fmt: skip
        if temperature <= 0 or min(lambda_start, lambda_end) < 0:
            raise ValueError(f"Need temperature > 0 and lambda >= 0; received temperature={temperature!r}, "
                             f"lambda_start={lambda_start!r}, lambda_end={lambda_end!r}.")  # fmt: skip
        super().__init__(teacher, student, **kwargs)
        self.temperature, self.lambda_start, self.lambda_end = temperature, lambda_start, lambda_end
        self.lambda_ = keras.Variable(lambda_start, trainable=False, name="lambda", dtype="float32")
        self.hints = HintTrainer(teacher, student, hint_layer=hint_layer, guided_layer=guided_layer,
                                 regressor_activation=regressor_activation)  # fmt: skip
        self.hints.regressor.trainable = False  # trained in stage 1 only

    def fit_hints(self, x, *, epochs: int, optimizer=None, **fit_kwargs) -> keras.callbacks.History:
        """Stage 1 (default optimizer: the paper's RMSprop at 5e-3). Updates only the student's layers up to
        the guided layer and the regressor."""
        self.hints.regressor.trainable = True
        try:
            self.hints.compile(optimizer or keras.optimizers.RMSprop(5e-3))
            return self.hints.fit(x, epochs=epochs, **fit_kwargs)
        finally:
            self.hints.regressor.trainable = False

    def fit(self, *args, callbacks=None, **kwargs):
        return super().fit(*args, callbacks=[*(callbacks or []), _LinearLambda(self)], **kwargs)

    def loss_from_logits(self, labels, teacher_logits, student_logits):
        return fitnet_kd_loss(labels, teacher_logits, student_logits, temperature=self.temperature,
                              lambda_=self.lambda_)  # fmt: skip


class _LinearLambda(keras.callbacks.Callback):
    """λ at epoch e of E: lambda_start + (lambda_end - lambda_start)·e/(E - 1), a function of the epoch alone,
    so a resumed fit continues the same schedule."""

    def __init__(self, distiller: FitNetDistiller):
        super().__init__()
        self.distiller = distiller

    def on_epoch_begin(self, epoch, logs=None):
        d, last = self.distiller, max(self.params["epochs"] - 1, 1)
        d.lambda_.assign(d.lambda_start + (d.lambda_end - d.lambda_start) * min(epoch, last) / last)


class HintTrainer(keras.Model):
    """FitNets stage 1: the student up to `guided_layer` and a regressor convolution r whose kernel size
    N_g - N_h + 1 ('valid') maps the guided layer's N_gxN_g grid onto the hint's N_hxN_h grid and its channels
    onto the hint's. The teacher is frozen; the student's later layers are not part of this model."""

    @deep_graph()
    def __init__(self, teacher: keras.Model, student: keras.Model, *, hint_layer: str, guided_layer: str,
                 regressor_activation: str = "relu", **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.hint = keras.Model(teacher.inputs, _output_of(teacher, hint_layer), name="hint")
        self.guided = keras.Model(student.inputs, _output_of(student, guided_layer), name="guided")
        hint_shape, guided_shape = self.hint.output.shape[1:], self.guided.output.shape[1:]
        if len(hint_shape) != 3 or len(guided_shape) != 3:
            raise ValueError(f"Hint {hint_shape} and guided {guided_shape} layers must both be feature maps.")
        kernel = (guided_shape[0] - hint_shape[0] + 1, guided_shape[1] - hint_shape[1] + 1)
        if min(kernel) < 1:
            raise ValueError(f"The guided layer's grid {guided_shape[:2]} is smaller than the hint's {hint_shape[:2]}; "
                             "choose a deeper hint layer or an earlier guided layer.")  # fmt: skip
        self.regressor = keras.layers.Conv2D(hint_shape[-1], kernel, activation=regressor_activation,
                                             name="regressor")  # fmt: skip
        self.regressor.build((None, *guided_shape))

    def call(self, x, training=False):
        return self.regressor(self.guided(x, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hint = ops.cast(self.hint(x, training=False), "float32")
        return hint_loss(hint, ops.cast(y_pred, "float32"))


def _output_of(model: keras.Model, layer: str):
    try:
        return model.get_layer(layer).output
    except ValueError as err:
        names = block_outputs(model)
        raise ValueError(f"{model.name!r} has no layer {layer!r}; its block outputs are {names}.") from err


class RocketLaunching(keras.Model):
    """Light net = `shared` + `light_head`, booster = `shared` + `booster_head`, trained together with
    CE(light) + CE(booster) + `hint_weight`·‖l - z‖² on logits (the paper's λ = 0.03). `call` returns
    (light logits, booster logits); compiled metrics see the light net's, and `booster_accuracy` is tracked
    too. `student` is the light network alone. `rocket_from_models` builds one from two registered models."""

    def __init__(self, shared: keras.Model, light_head: keras.Model, booster_head: keras.Model, *,
                 hint_weight: float = 0.03, light: keras.Model | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0 (the paper's 0.03); received {hint_weight!r}.")
        if tuple(booster_head.input.shape[1:]) != tuple(shared.output.shape[1:]):
            raise ValueError(f"The booster head takes {tuple(booster_head.input.shape[1:])} but the shared layers "
                             f"give {tuple(shared.output.shape[1:])}.")  # fmt: skip
        self.shared, self.hint_weight = shared, hint_weight
        self.light_logits, self.booster_logits = logits_of(light_head), logits_of(booster_head)
        self.student = light or _stacked(shared, light_head)
        self.booster_accuracy = keras.metrics.Accuracy(name="booster_accuracy")

    def call(self, x, training=False):
        features = self.shared(x, training=training)
        return self.light_logits(features, training=training), self.booster_logits(features, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        light, booster = (ops.cast(t, "float32") for t in y_pred)
        loss = rocket_loss(y, light, booster, hint_weight=self.hint_weight)
        return _regularized(loss, self.student)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = ops.argmax(y, axis=-1) if _one_hot(y, y_pred[1]) else y
        self.booster_accuracy.update_state(ops.reshape(labels, (-1,)), ops.argmax(y_pred[1], axis=-1))
        return super().compute_metrics(x, y, y_pred[0], sample_weight)


@deep_graph()
def _stacked(shared: keras.Model, head: keras.Model) -> keras.Model:
    inputs = keras.Input(shared.input.shape[1:])
    return keras.Model(inputs, head(shared(inputs)), name="light")


@deep_graph()
def rocket_from_models(
    light: keras.Model,
    booster: keras.Model,
    *,
    split_layer: str,
    booster_split_layer: str | None = None,
    hint_weight: float = 0.03,
) -> RocketLaunching:
    """Bottom sharing ("(a)" in the paper): the light model's layers up to `split_layer` are shared, and the
    booster's layers after `booster_split_layer` (default: the same name) run on them. The booster's own lower
    layers are dropped. `student` is `light` itself, a plain model."""
    light_logits, booster_logits = logits_of(light), logits_of(booster)
    cut = _output_of(light_logits, split_layer)
    booster_cut = _output_of(booster_logits, booster_split_layer or split_layer)
    return RocketLaunching(
        keras.Model(light.inputs, cut, name="shared"),
        keras.Model(cut, light_logits.output, name="light_head"),
        keras.Model(booster_cut, booster_logits.output, name="booster_head"),
        hint_weight=hint_weight,
        light=light,
    )


def block_outputs(model: keras.Model) -> list[str]:
    """The names of `model`'s block outputs (`*_out` activations, as in keras.applications' ResNets), or of
    its activated feature maps (activation layers and convolutions with an activation) when it names none."""
    linear = keras.activations.linear
    maps = [layer for layer in model.layers
            if getattr(layer, "activation", linear) is not linear and len(layer.output.shape) == 4]  # fmt: skip
    blocks = [layer.name for layer in maps if layer.name.endswith("_out")]
    return blocks or [layer.name for layer in maps]


def middle_layer(model: keras.Model) -> str:
    """FitNets' default hint / guided layer: the middle one of `block_outputs(model)`."""
    names = block_outputs(model)
    if not names:
        raise ValueError(f"{model.name!r} has no activation layer with a feature-map output to use as a hint.")
    return names[len(names) // 2]


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

    def wrap(student: keras.Model, data) -> keras.Model:
        return _distiller(distill, student, data, teacher_path, config)

    return train(config, wrap=wrap, metadata=metadata, **train_kwargs)


def _teacher(config: TrainConfig, distill: DistillConfig) -> tuple[str, float | None]:
    """(the teacher's .keras file, its validation accuracy when this project measured it)."""
    if distill.teacher_weights:
        if not os.path.isfile(distill.teacher_weights):
            raise FileNotFoundError(f"Teacher weights {distill.teacher_weights!r} do not exist; give a .keras file "
                                    "written by train_cifar.py (model.keras) or model.save().")  # fmt: skip
        return distill.teacher_weights, None
    out = os.path.join(config.output_dir, "teacher")
    finished = os.path.join(out, "metrics.json")
    if os.path.exists(finished):
        with open(finished) as f:
            metrics = json.load(f)
        if metrics["model"] != distill.teacher or metrics["dataset"] != config.dataset:
            raise FileExistsError(f"{out!r} holds a {metrics['model']} teacher trained on {metrics['dataset']}; "
                                  "choose another output directory.")  # fmt: skip
    else:
        teacher = dataclasses.replace(config, model=distill.teacher, output_dir=out, model_kwargs={}, weights=None)
        metrics = train(teacher)
    return os.path.join(out, "model.keras"), metrics["final_val_accuracy"]


def _distiller(distill: DistillConfig, student: keras.Model, data, teacher_path: str | None, config) -> keras.Model:
    if distill.method == "rocket":
        from keras_cnn.registry import create_model

        booster = create_model(distill.teacher, input_shape=student.input_shape[1:], classes=data.classes)
        split = distill.split_layer or block_outputs(student)[0]
        return rocket_from_models(student, booster, split_layer=split, hint_weight=distill.hint_weight)
    teacher = load_model(teacher_path)
    if teacher.input_shape[1:] != student.input_shape[1:] or teacher.output_shape[-1] != student.output_shape[-1]:
        raise ValueError(f"The teacher takes {teacher.input_shape[1:]} and gives {teacher.output_shape[-1]} classes; "
                         f"the student {student.input_shape[1:]} and {student.output_shape[-1]}.")  # fmt: skip
    if distill.method == "mimic":
        return MimicDistiller(teacher, student)
    if distill.method == "kd":
        temperature = 4.0 if distill.temperature is None else distill.temperature
        return Distiller(teacher, student, temperature=temperature, alpha=distill.alpha)
    fitnet = FitNetDistiller(teacher, student, hint_layer=distill.hint_layer or middle_layer(teacher),
                             guided_layer=distill.guided_layer or middle_layer(student),
                             temperature=3.0 if distill.temperature is None else distill.temperature)  # fmt: skip
    if distill.hint_epochs and not config.resume:  # a resumed run restores stage 2's weights from its backup
        steps = steps_per_epoch(data.train_examples, config.batch_size or resolve_recipe(config)[0].batch_size)
        if int(data.train.cardinality()) < distill.hint_epochs * steps:
            raise ValueError(f"hint_epochs ({distill.hint_epochs}) cannot exceed the run's epochs.")
        fitnet.fit_hints(data.train, epochs=distill.hint_epochs, steps_per_epoch=steps, verbose=config.verbose)
    return fitnet
