"""Model registry: `register` on builders, `list_models` with shell wildcards, `create_model`, `model_info`."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras

from keras_cnn.applications import CONTRACT, renamed
from keras_cnn.recipes import RECIPES, Recipe, recipe_name


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    year: int


@dataclass(frozen=True, kw_only=True)
class Card:
    """One registered name and what is published about it, in one shape for every family.

    `builder` is the family's builder and `arguments` those this name fixes (depth=20); `defaults` are changed
    defaults a caller may still override (p_L=0.5). `label` names the Python builder made for the name
    (`keras_cnn.ResNet20`, documented by `title`); without a label the name builds with `builder` itself.
    `params` is the trainable count (Keras totals add BN moving statistics); `macs` the multiply-accumulates of
    conv and dense layers at `input_size`, as published; `min_size` the smallest input side the builder takes.
    `reported` holds published results, `source` where they and the counts come from. `recipe` names the
    training recipe (`keras_cnn.recipes`); `quick` changes fields of the "quick" recipe (lr, batch_size,
    epochs) for models it does not train as it stands (LeNet-5 diverges at its lr 0.05). `criterion`, called
    with the model's keyword arguments, returns the paper's training loss where it is not cross-entropy (LeNet-5's
    Eq. 9), or None: `train` then builds the model with logits (`classifier_activation=None`) and minimizes it.
    """

    name: str
    builder: Callable[..., keras.Model]
    paper: Paper
    params: int
    macs: float
    min_size: int
    reported: dict[str, float]
    source: str
    recipe: Recipe
    input_size: tuple[int, int, int] = (224, 224, 3)
    classes: int = 1000
    arguments: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    label: str | None = None
    title: str = ""
    notes: str = ""
    quick: dict = field(default_factory=dict)
    criterion: Callable[..., keras.losses.Loss | None] | None = None

    def __post_init__(self):
        if isinstance(self.recipe, str):
            if self.recipe not in RECIPES:
                raise ValueError(f"Unknown recipe {self.recipe!r} for {self.name!r}; known: {sorted(RECIPES)}.")
            object.__setattr__(self, "recipe", RECIPES[self.recipe])
        if unknown := set(self.quick) - {"lr", "batch_size", "epochs"}:
            raise ValueError(f"{self.name!r}: quick changes lr, batch_size or epochs, not {sorted(unknown)}.")

    @property
    def function(self) -> str:
        """The name of the Python builder for this name: `label`, else the family builder's."""
        return self.label or self.builder.__name__

    @property
    def weight_sets(self) -> list[str]:
        """The weight sets registered for this name (`keras_cnn.weights`)."""
        from keras_cnn.weights import WEIGHT_SETS

        return sorted({weights for model, weights, _ in WEIGHT_SETS if model == self.name})


_REGISTRY: dict[str, tuple[Callable[..., keras.Model], Card]] = {}


def register_all(cards: Sequence[Card]) -> dict[str, Callable[..., keras.Model]]:
    """Register every card; returns the Python builders made for the labelled ones (`variant`), by label."""
    named = {}
    for card in cards:
        if card.name in _REGISTRY:
            raise ValueError(f"Model name {card.name!r} is registered twice.")
        if card.label:
            builder = named[card.label] = variant(card)
        else:
            builder = card.builder
        _REGISTRY[card.name] = (builder, card)
    return named


def variant(card: Card) -> Callable[..., keras.Model]:
    """The Python builder of a labelled card: its family builder with the card's `arguments` bound
    (ResNet20 = CifarResNet(depth=20)) and its `defaults` and name as new defaults. help() shows the family
    builder's signature less the bound arguments. The model is built under the card's name, where its weight
    sets are found, and takes the caller's `name` after, so `ResNet20(weights="digits", name="mine")` loads."""
    family, fixed = card.builder, card.arguments
    defaults = {**card.defaults, "name": card.name}

    @functools.wraps(family)
    def build(*args, **kwargs):
        clash = sorted(set(kwargs) & set(fixed))
        if clash:
            raise TypeError(f"{card.label}() fixes {clash}; call {family.__name__}() to choose them.")
        named_positionally = len(args) == len(CONTRACT)  # name is the contract's last positional argument
        name = args[-1] if named_positionally else kwargs.pop("name", card.name)
        return renamed(family(*(args[:-1] if named_positionally else args), **fixed, **{**defaults, **kwargs}), name)

    build.__signature__ = inspect.Signature(
        [
            p.replace(default=defaults[p.name]) if p.name in defaults else p
            for p in inspect.signature(family).parameters.values()
            if p.name not in fixed
        ],
        return_annotation="keras.Model",
    )
    build.__name__ = build.__qualname__ = card.label
    build.__doc__ = _doc(card)
    del build.__wrapped__
    return build


def _doc(card: Card) -> str:
    paper = card.paper
    fixed = ", ".join(f"{k}={v!r}" for k, v in card.arguments.items())
    return (
        f'{card.title} ({paper.authors}, {paper.venue} {paper.year}: "{paper.title}").\n\n'
        f"{card.params:,} trainable parameters at {card.classes} classes, {card.macs / 1e6:,.1f} M MACs at "
        f"{card.input_size[0]}x{card.input_size[1]}. {card.builder.__name__}({fixed}) under another name; "
        f"keras_cnn.model_info({card.name!r}) has the figures and their sources."
    )


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registry names matching a shell-style wildcard (`"resnet*"`, `"vgg1?_bn"`)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string such as 'resnet*'; received {pattern!r}.")
    return sorted(fnmatch.filter(_REGISTRY, pattern))


def _lookup(name: str) -> tuple[Callable[..., keras.Model], Card]:
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
    builder, card = _lookup(name)
    fixed = {} if card.label else card.arguments  # a labelled builder has them bound
    model = builder(**{**fixed, **kwargs})
    if features_only:
        from keras_cnn.applications import feature_extractor

        return feature_extractor(model, out_indices=out_indices)
    if out_indices is not None:
        raise ValueError("out_indices is only used with features_only=True.")
    return model


def model_info(name: str, /) -> Card:
    """Paper, trainable parameters, MACs, reported metrics with source, and training recipe of `name`."""
    return _lookup(name)[1]


def catalogue() -> str:
    """The registry as a Markdown page with one table row per card: `docs/catalogue.md`, regenerated with
    `python -c "import keras_cnn; print(keras_cnn.registry.catalogue(), end='')" > docs/catalogue.md`."""
    rows = [
        "# Catalogue",
        "",
        "Every registered name with the figures on its card (`keras_cnn.model_info(name)`), generated from the "
        "cards by `keras_cnn.registry.catalogue()`; `tests/test_registry.py` fails when this page and the cards "
        "disagree. Trainable parameters are at the card's class count (Keras totals add BN moving statistics); "
        "MACs are multiply-accumulates of convolutions and dense layers at the default input; the input's "
        "minimum is the smallest side the builder accepts. Source tags are explained in [Models](models.md). "
        "Back to the [README](../README.md).",
        "",
        "| name | builder | paper | trainable params | MACs | input (min) | reported | source | recipe | weights |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in list_models():
        card = model_info(name)
        arguments = ", ".join(f"{k}={v!r}" for k, v in {**card.arguments, **card.defaults}.items())
        builder = card.function if card.label else f"{card.builder.__name__}({arguments})"
        size = "x".join(map(str, card.input_size))
        reported = ", ".join(f"{k} {v}" for k, v in card.reported.items()) or "-"
        paper = f"{card.paper.authors}, {card.paper.venue} {card.paper.year}"
        macs = f"{card.macs / 1e9:.2f} G" if card.macs >= 1e9 else f"{card.macs / 1e6:.1f} M"
        weights = ", ".join(card.weight_sets) or "-"
        rows.append(
            f"| `{name}` | `{builder}` | {paper} | {card.params:,} | {macs} | {size} "
            f"({card.min_size}) | {reported} | {card.source} | `{recipe_name(card.recipe)}` | {weights} |"
        )
    return "\n".join(rows) + "\n"
