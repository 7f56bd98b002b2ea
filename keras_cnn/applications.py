"""The keras.applications contract in one place: input checks, head/pooling, weights, stage outputs.

Every builder is made by `builder`, which checks the contract's arguments and hands its body a `Contract`; the
body asks that for its input and closes with it, so no builder repeats these rules.
Deliberate differences from keras.applications: `pooling` values other than None/"avg"/"max" are an
error (keras ignores them silently), and every error names the allowed values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import numbers
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import keras

POOLINGS = (None, "avg", "max")
#: keras.applications' positional order; every builder takes these first, its architecture's arguments by keyword.
CONTRACT = (
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
)

#: Keras maps a functional graph recursively (building a model from tensors, loading a saved one), one Python
#: frame per layer along the longest path; ResNet-1202 and pre-act ResNet-1001 are ~5,000 layers deep, past
#: Python's default limit of 1,000.
RECURSION_LIMIT = 30_000


@contextlib.contextmanager
def deep_graph():
    """Python's recursion limit raised to `RECURSION_LIMIT` inside the block (or the decorated function) and
    restored after it, so that the deepest networks can be built, cut and loaded; importing the package leaves
    the limit alone. Load a saved ResNet-1202 with `keras_cnn.io.load_model`, or inside `with deep_graph():`."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


@dataclasses.dataclass(frozen=True)
class Contract:
    """One call's keras.applications arguments (`CONTRACT`), checked by `builder` before a layer is built.

    A builder's body asks it for the `input` to build on and closes the model with `finish`, so the rules of
    the contract (input sizes, pooling, classes, the head, weights) live here and nowhere else.
    """

    include_top: bool = True
    weights: str | os.PathLike | None = None
    input_tensor: Any = None
    input_shape: tuple | None = None
    pooling: str | None = None
    classes: int | None = 1000
    classifier_activation: Any = "softmax"
    name: str | None = None

    def arguments(self, **changes) -> dict:
        """The contract as builder keyword arguments, with `changes` applied."""
        return {**{arg: getattr(self, arg) for arg in CONTRACT}, **changes}

    def input(self, *, default_size: int, min_size: int, channels: int = 3, flatten_head: bool = False):
        """Check every contract argument and return the Input to build on: `default_size` square when no shape
        is given, at least `min_size` on each side. `flatten_head` marks heads that flatten spatial features
        (they need a static size with include_top)."""
        check_weights(self.weights)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; received pooling={self.pooling!r}.")
        classes = self.classes
        if self.include_top and (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1):
            raise ValueError(f"classes must be a positive integer when include_top=True; received classes={classes!r}.")
        if self.classifier_activation is not None:
            try:
                keras.activations.get(self.classifier_activation)
            except ValueError as err:
                raise ValueError(
                    f"Unknown classifier_activation={self.classifier_activation!r}: use None (logits), 'softmax', "
                    "or any keras activation name or callable."
                ) from err
        input_shape, input_tensor = self.input_shape, self.input_tensor
        if input_shape is None and input_tensor is not None:
            input_shape = tuple(input_tensor.shape[1:])
        shape = _check_size(
            input_shape,
            default_size=default_size,
            min_size=min_size,
            channels=channels,
            require_static=self.include_top and flatten_head,
        )
        if input_tensor is None:
            return keras.Input(shape=shape)
        if keras.backend.is_keras_tensor(input_tensor):
            return input_tensor
        return keras.Input(tensor=input_tensor, shape=shape)

    def finish(
        self,
        img_input,
        x,
        *,
        stages: Sequence,
        name: str | None = None,
        top: Callable | None = None,
        aux_outputs: Sequence = (),
        exits: Sequence = (),
    ) -> keras.Model:
        """Close a builder: the classifier `top(x, classes, classifier_activation)` (default `pooled_classifier`)
        or the pooled feature extractor, then the model and its weights. The model takes the caller's name, else
        `name` (the builder's default for this configuration, e.g. "resnet20").

        `stages` are the tensors of the feature pyramid, shallow to deep; their layer names are kept on the
        model as `model.stage_names` for `feature_extractor`. `aux_outputs` (auxiliary classifiers, named aux*)
        follow the main output; `exits` (the earlier classifiers of a multi-exit network, cheapest first)
        precede it.
        """
        from keras_cnn.weights import resolve

        top = top or pooled_classifier
        name = self.name or name
        x = top(x, self.classes, self.classifier_activation) if self.include_top else global_pool(x, self.pooling)
        inputs = keras.utils.get_source_inputs(self.input_tensor) if self.input_tensor is not None else img_input
        outputs = [*exits, x, *aux_outputs] if self.include_top else [x]
        model = keras.Model(inputs, outputs if len(outputs) > 1 else x, name=name)
        model.stage_names = [t._keras_history.operation.name for t in stages]
        if self.weights is not None:
            path = resolve(
                self.weights,
                model=name,
                include_top=self.include_top,
                classes=self.classes,
                input_shape=model.input_shape[1:],
            )
            try:
                model.load_weights(path)
            except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
                raise ValueError(
                    f"Weights file {path!r} does not fit {name!r} as built (include_top={self.include_top}, "
                    f"output shape {model.output_shape}), or is not a weights file: {err}"
                ) from err
        return model


def builder(*, classes: int | None = 1000, name: str | None = None) -> Callable:
    """Make `body(contract, *, own arguments)` a builder with keras.applications' signature.

    The builder takes the contract's arguments (`CONTRACT`) first and positionally, as keras.applications
    does (`ResNet50(False)` means include_top=False), with `classes` and `name` defaulting as given here; the
    architecture's own arguments (depth, k, T, ...) follow, keyword-only. It checks include_top and refuses a
    weight set that cannot fit before a layer is built, raises the recursion limit while building
    (`deep_graph`), and hands the body a `Contract`. help() shows the whole signature. A model with a default
    `name` is built under it, where its weight sets are found, and takes the caller's name after.
    """

    def decorate(body: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        own = list(inspect.signature(body).parameters.values())[1:]
        defaults = Contract(classes=classes, name=name)
        annotations = inspect.get_annotations(Contract)
        contract_params = [
            inspect.Parameter(
                arg,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=getattr(defaults, arg),
                annotation=annotations[arg],
            )
            for arg in CONTRACT
        ]
        signature = inspect.Signature(
            contract_params + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own],
            return_annotation="keras.Model",
        )

        @functools.wraps(body)
        @deep_graph()
        def build(*args, **kwargs):
            if len(args) > len(CONTRACT):
                raise TypeError(
                    f"{body.__name__}() takes at most {len(CONTRACT)} positional arguments; received {len(args)}."
                )
            for arg, value in zip(CONTRACT, args, strict=False):
                if arg in kwargs:
                    raise TypeError(f"{body.__name__}() got multiple values for argument {arg!r}.")
                kwargs[arg] = value
            bound = signature.bind(**kwargs)
            bound.apply_defaults()
            contract = Contract(**{arg: bound.arguments.pop(arg) for arg in CONTRACT})
            wanted = contract.name
            if name is not None:  # built under the default name, where its weight sets are found, renamed after
                contract = dataclasses.replace(contract, name=name)
            if not isinstance(contract.include_top, bool):
                raise TypeError(
                    f"include_top must be True or False; received {contract.include_top!r}. Builders take "
                    f"keras.applications' positional order ({', '.join(CONTRACT)}) and the architecture's own "
                    f"arguments by keyword, e.g. {body.__name__}({own[0].name if own else 'include_top'}=...)."
                )
            _refuse_unfit_weights(contract)
            return renamed(body(contract, **bound.arguments), wanted)

        build.__signature__ = signature
        del build.__wrapped__
        return build

    return decorate


def renamed(model: keras.Model, name: str | None) -> keras.Model:
    """`model`, built under its default name (where its weight sets are found), renamed `name` when the caller
    gave one."""
    if name is not None and name != model.name:
        model.name = name
    return model


def _refuse_unfit_weights(contract: Contract) -> None:
    """A weight set that cannot fit the model asked for is refused before a layer is built (as
    keras.applications does), where the model's name is known before building."""
    from keras_cnn.weights import check_fit

    weights, shape = contract.weights, contract.input_shape
    if isinstance(weights, (str, os.PathLike)) and isinstance(contract.name, str):
        check_fit(
            weights,
            model=contract.name,
            include_top=bool(contract.include_top),
            classes=contract.classes,
            input_shape=None if shape is None or None in tuple(shape) else shape,
        )


def _check_size(input_shape, *, default_size: int, min_size: int, channels: int, require_static: bool):
    if input_shape is None:
        return (default_size, default_size, channels)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be a tuple of three values (height, width, channels); received {input_shape!r}."
        )
    height, width, chans = input_shape
    for label, value in (("height", height), ("width", width)):
        if value is None:
            if require_static:
                raise ValueError(
                    f"include_top=True needs a static input_shape (the classifier flattens the features); "
                    f"received input_shape={tuple(input_shape)}. Give both sizes or use include_top=False."
                )
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < min_size:
            raise ValueError(
                f"Input {label} must be an integer of at least {min_size} for this architecture "
                f"(minimum {min_size}x{min_size}); received input_shape={tuple(input_shape)}."
            )
    if not isinstance(chans, numbers.Integral) or isinstance(chans, bool) or chans < 1:
        raise ValueError(f"Input channels must be a positive integer; received input_shape={tuple(input_shape)}.")
    return tuple(None if d is None else int(d) for d in input_shape)


def global_pool(x, pooling: str | None):
    """Global average or max pooling named as keras.applications names it."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def head_dtype() -> str | None:
    """The classifier's dtype: float32 under a mixed-precision policy, so the softmax and the loss stay in full
    precision; otherwise None (the policy's, so float64 stays float64)."""
    return "float32" if keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16") else None


def pooled_classifier(x, classes: int, classifier_activation):
    """The ResNet-style head: global average pool, then one dense layer named `predictions` (`head_dtype`)."""
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.layers.Dense(classes, activation=classifier_activation, name="predictions", dtype=head_dtype())(x)


def mlp_classifier(x, classes: int, classifier_activation, *, widths: Sequence[int], dropout_rate: float):
    """The AlexNet/VGG head: flatten, hidden layers fc1, fc2, ... (ReLU, dropout after each), `predictions`
    (`head_dtype`)."""
    x = keras.layers.Flatten(name="flatten")(x)
    for i, width in enumerate(widths, start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"fc{i}")(x)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=f"fc{i}_dropout")(x)
    return keras.layers.Dense(classes, activation=classifier_activation, name="predictions", dtype=head_dtype())(x)


def check_weights(weights) -> None:
    """`weights` must be None (random initialization), a registered weight-set name (`keras_cnn.weights`) or
    the path of an existing weights file."""
    from keras_cnn.weights import set_names

    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "weights must be None (random initialization), a weight-set name or the path to a weights file; "
            f"received {weights!r}."
        )
    path = os.fspath(weights)
    if os.path.isfile(path) or path in set_names():
        return
    if os.sep in path or path.endswith((".h5", ".hdf5", ".keras")):
        raise FileNotFoundError(f"Weights file not found: {path!r}. Pass an existing .weights.h5, .h5 or .keras file.")
    raise ValueError(
        f"No weight set named {path!r}: pass None (random initialization), one of {sorted(set_names())}, or the "
        "path to a weights file."
    )


@deep_graph()
def without_aux(model: keras.Model) -> keras.Model:
    """The inference model of a network trained with auxiliary classifiers (outputs named aux*): the same
    layers and weights, the main output only."""
    names = getattr(model, "output_names", None)  # a Sequential model has one unnamed output
    if names is None:
        return model
    outputs = [t for t, n in zip(model.outputs, names, strict=True) if not n.startswith("aux")]
    if len(outputs) == len(model.outputs):
        return model
    return keras.Model(model.inputs, outputs[0] if len(outputs) == 1 else outputs, name=model.name)


@deep_graph()
def feature_extractor(
    model: keras.Model, out_indices: Sequence[int] | None = None, layer_names: Sequence[str] | None = None
) -> keras.Model:
    """A model with one output per stage (shallow to deep) for detection/segmentation necks.

    Built models know their stages (`model.stage_names`); for a model reloaded from disk, pass `layer_names`.
    """
    names = list(layer_names) if layer_names is not None else getattr(model, "stage_names", None)
    if not names:
        raise ValueError(
            f"{model.name!r} carries no stage names (models reloaded from disk lose them): pass "
            "layer_names=[...], or rebuild it with keras_cnn.create_model."
        )
    if out_indices is not None:
        bad = [i for i in out_indices if not -len(names) <= i < len(names)]
        if bad:
            raise ValueError(f"out_indices {bad} out of range: {model.name!r} has {len(names)} stages {names}.")
        names = [names[i] for i in out_indices]
    outputs = [model.get_layer(n).output for n in names]
    features = keras.Model(model.inputs, outputs, name=f"{model.name}_features")
    features.stage_names = names
    return features
