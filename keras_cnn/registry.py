"""Model registry: `register` on builders, `list_models` with shell wildcards, `create_model`, `model_info`."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from keras_cnn.applications import CONTRACT
from keras_cnn.recipes import RECIPES, Recipe


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    year: int


@dataclass(frozen=True)
class ModelInfo:
    """What `model_info(name)` returns; figures from the papers and reference code it cites.

    `params` is the trainable count of the default config (Keras totals add BN moving statistics);
    `macs` is the multiply-accumulate count of conv and dense layers at `input_size`, as published.
    `quick_lr` is the peak rate of the "quick" recipe for models that diverge at its default (None: 0.05).
    """

    name: str
    builder: str
    paper: Paper
    params: int
    macs: float
    input_size: tuple[int, int, int]
    classes: int
    reported: dict[str, float]
    source: str
    recipe: Recipe
    notes: str = ""
    defaults: dict = field(default_factory=dict)
    quick_lr: float | None = None


_REGISTRY: dict[str, tuple[Callable[..., keras.Model], ModelInfo]] = {}


def register(
    name: str,
    /,
    *,
    paper: Paper,
    params: int,
    macs: float,
    reported: dict[str, float],
    source: str,
    recipe: str,
    input_size: tuple[int, int, int] = (224, 224, 3),
    classes: int = 1000,
    notes: str = "",
    quick_lr: float | None = None,
    **defaults,
) -> Callable:
    """Register a builder under `name`; `defaults` are keyword arguments fixed for this name (e.g. depth=20)."""
    if name in _REGISTRY:
        raise ValueError(f"Model name {name!r} is registered twice.")
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r} for {name!r}; known recipes: {sorted(RECIPES)}.")

    def decorate(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        info = ModelInfo(
            name=name,
            builder=builder.__name__,
            paper=paper,
            params=params,
            macs=macs,
            input_size=input_size,
            classes=classes,
            reported=reported,
            source=source,
            recipe=RECIPES[recipe],
            notes=notes,
            defaults=dict(defaults),
            quick_lr=quick_lr,
        )
        if inspect.signature(builder).parameters["name"].default == name:
            builder = _built_under(name, builder)
        _REGISTRY[name] = (builder, info)
        return builder

    return decorate


def _built_under(registry_name: str, builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    """`builder` building under `registry_name`, where its weight sets are looked up, and taking the name the
    user gave it after, so that `ResNet20(weights="digits", name="mine")` loads the set."""

    @functools.wraps(builder)
    def build(*args, **kwargs):
        name_given_positionally = len(args) == len(CONTRACT)  # name is the contract's last positional argument
        name = args[-1] if name_given_positionally else kwargs.pop("name", registry_name)
        args = args[:-1] if name_given_positionally else args
        model = builder(*args, **kwargs, name=registry_name)
        if name is not None and name != model.name:
            model.name = name
        return model

    build.__signature__ = inspect.signature(builder)
    del build.__wrapped__
    return build


def variant(
    builder: Callable[..., keras.Model], builder_name: str, doc: str, fixed: dict, **defaults
) -> Callable[..., keras.Model]:
    """A named builder: `builder` with the `fixed` arguments bound (ResNet20 = CifarResNet(depth=20)) and
    new `defaults` for others (name="resnet20", p_L=0.5). Its signature, shown by help(), is the generic
    builder's minus the fixed arguments."""

    @functools.wraps(builder)
    def build(*args, **kwargs):
        clash = sorted(set(kwargs) & set(fixed))
        if clash:
            raise TypeError(f"{builder_name}() fixes {clash}; call {builder.__name__}() to choose them.")
        return builder(*args, **fixed, **{**defaults, **kwargs})

    build.__signature__ = inspect.Signature(
        [
            p.replace(default=defaults[p.name]) if p.name in defaults else p
            for p in inspect.signature(builder).parameters.values()
            if p.name not in fixed
        ]
    )
    build.__name__ = build.__qualname__ = builder_name
    build.__doc__ = doc
    del build.__wrapped__
    return build


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registry names matching a shell-style wildcard (`"resnet*"`, `"vgg1?_bn"`)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string such as 'resnet*'; received {pattern!r}.")
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def _lookup(name: str) -> tuple[Callable[..., keras.Model], ModelInfo]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(str(name).lower(), _REGISTRY, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} See keras_cnn.list_models() for all {len(_REGISTRY)} names.")


def create_model(name: str, /, *, features_only: bool = False, out_indices=None, **kwargs) -> keras.Model:
    """Build the registered model `name`; keyword arguments go to its builder.

    `features_only=True` returns the multi-output feature extractor over the model's stage outputs
    (see `keras_cnn.feature_extractor`), selecting `out_indices` if given.
    """
    builder, info = _lookup(name)
    model = builder(**{**info.defaults, **kwargs})
    if features_only:
        from keras_cnn.applications import feature_extractor

        return feature_extractor(model, out_indices=out_indices)
    if out_indices is not None:
        raise ValueError("out_indices is only used with features_only=True.")
    return model


def model_info(name: str, /) -> ModelInfo:
    """Paper, trainable parameters, MACs, reported metrics with source, and training recipe of `name`."""
    return _lookup(name)[1]
