"""The distillers as Keras models: a frozen teacher (or a jointly trained booster) beside the student."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_cnn.applications import deep_graph
from keras_cnn.layers.conv import Conv2D
from keras_cnn.training.distill.losses import (
    _one_hot,
    _regularized,
    fitnet_kd_loss,
    hint_loss,
    kd_loss,
    mimic_loss,
    rocket_loss,
)


class PreActivation(keras.layers.Layer):
    """The logits of a softmax `Dense` classifier: its affine part, computed with its own weights."""

    def __init__(self, dense: keras.layers.Dense, **kwargs):  # pragma: no mutate block
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


def _frozen(teacher: keras.Model) -> keras.Model:
    teacher.trainable = False
    return teacher


class _TeacherStudent(keras.Model):
    """A frozen teacher and a student; `call` gives the student's logits, `compute_loss` is the method's."""

    def __init__(self, teacher: keras.Model, student: keras.Model, **kwargs):  # pragma: no mutate block
        if teacher.output_shape[-1] != student.output_shape[-1]:
            raise ValueError(
                f"The teacher {teacher.name!r} predicts {teacher.output_shape[-1]} classes and the "
                f"student {student.name!r} {student.output_shape[-1]}: they must agree."
            )
        if tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
            raise ValueError(
                f"The teacher {teacher.name!r} takes {teacher.input_shape[1:]} and the student "
                f"{student.name!r} {student.input_shape[1:]}: both must see the same images."
            )
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

    def __init__(
        self, teacher: keras.Model, student: keras.Model, *, temperature: float = 4.0, alpha: float = 0.1, **kwargs
    ):  # pragma: no mutate block
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

    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        *,
        hint_layer: str,
        guided_layer: str,
        temperature: float = 3.0,
        lambda_start: float = 4.0,
        lambda_end: float = 1.0,
        regressor_activation: str = "relu",
        **kwargs,
    ):  # pragma: no mutate block
        if temperature <= 0 or min(lambda_start, lambda_end) < 0:
            raise ValueError(
                f"Need temperature > 0 and lambda >= 0; received temperature={temperature!r}, "
                f"lambda_start={lambda_start!r}, lambda_end={lambda_end!r}."
            )
        super().__init__(teacher, student, **kwargs)
        self.temperature, self.lambda_start, self.lambda_end = temperature, lambda_start, lambda_end
        self.lambda_ = keras.Variable(lambda_start, trainable=False, name="lambda", dtype="float32")
        self.hints = HintTrainer(
            teacher,
            student,
            hint_layer=hint_layer,
            guided_layer=guided_layer,
            regressor_activation=regressor_activation,
        )
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
        return fitnet_kd_loss(
            labels, teacher_logits, student_logits, temperature=self.temperature, lambda_=self.lambda_
        )


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
    def __init__(
        self,
        teacher: keras.Model,
        student: keras.Model,
        *,
        hint_layer: str,
        guided_layer: str,
        regressor_activation: str = "relu",
        **kwargs,
    ):  # pragma: no mutate block
        super().__init__(**kwargs)
        self.hint = keras.Model(teacher.inputs, _output_of(teacher, hint_layer), name="hint")
        self.guided = keras.Model(student.inputs, _output_of(student, guided_layer), name="guided")
        hint_shape, guided_shape = self.hint.output.shape[1:], self.guided.output.shape[1:]
        if len(hint_shape) != 3 or len(guided_shape) != 3:
            raise ValueError(f"Hint {hint_shape} and guided {guided_shape} layers must both be feature maps.")
        kernel = (guided_shape[0] - hint_shape[0] + 1, guided_shape[1] - hint_shape[1] + 1)
        if min(kernel) < 1:
            raise ValueError(
                f"The guided layer's grid {guided_shape[:2]} is smaller than the hint's {hint_shape[:2]}; "
                "choose a deeper hint layer or an earlier guided layer."
            )
        self.regressor = Conv2D(hint_shape[-1], kernel, activation=regressor_activation, name="regressor")
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
    too. `student` is the light network alone. Each head ends in a softmax (or linear) `predictions` layer,
    whose logits are taken, or gives logits. `rocket_from_models` builds one from two registered models."""

    def __init__(
        self,
        shared: keras.Model,
        light_head: keras.Model,
        booster_head: keras.Model,
        *,
        hint_weight: float = 0.03,
        light: keras.Model | None = None,
        **kwargs,
    ):  # pragma: no mutate block
        super().__init__(**kwargs)
        if hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0 (the paper's 0.03); received {hint_weight!r}.")
        if tuple(booster_head.input.shape[1:]) != tuple(shared.output.shape[1:]):
            raise ValueError(
                f"The booster head takes {tuple(booster_head.input.shape[1:])} but the shared layers "
                f"give {tuple(shared.output.shape[1:])}."
            )
        self.shared, self.hint_weight = shared, hint_weight
        self.light_logits, self.booster_logits = _head_logits(light_head), _head_logits(booster_head)
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


def _head_logits(head: keras.Model) -> keras.Model:
    """`logits_of(head)` for a head that ends in its `predictions` layer; a head without one gives logits already
    (`rocket_from_models` cuts its heads from `logits_of` models, where LeNet-5's RBF head ends in no
    `PreActivation`)."""
    names = {layer.name for layer in head.layers}
    return logits_of(head) if "predictions" in names else head


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
    maps = [
        layer
        for layer in model.layers
        if getattr(layer, "activation", linear) is not linear and len(layer.output.shape) == 4
    ]
    blocks = [layer.name for layer in maps if layer.name.endswith("_out")]
    return blocks or [layer.name for layer in maps]


def middle_layer(model: keras.Model) -> str:
    """FitNets' default hint / guided layer: the middle one of `block_outputs(model)`."""
    names = block_outputs(model)
    if not names:
        raise ValueError(f"{model.name!r} has no activation layer with a feature-map output to use as a hint.")
    return names[len(names) // 2]
