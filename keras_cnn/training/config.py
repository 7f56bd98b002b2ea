"""`TrainConfig`, one training run's settings, and everything about them that is checked before a run touches
its output folder: names, numbers, the data's location, write access, the recipe and the precision."""

from __future__ import annotations

import dataclasses
import math
import os

import tensorflow as tf

from keras_cnn import onednn
from keras_cnn.augment import AUGMENTATIONS, MIXES
from keras_cnn.recipes import RECIPES, Recipe, recipe_name
from keras_cnn.training import distribute, rundir

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
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        return capability is not None and tuple(capability) >= (8, 0)
    return bool({"amx_bf16", "avx512_bf16"} & onednn.cpu_flags())


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
        return recipe, recipe_name(recipe)
    if config.recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {config.recipe!r}; choose 'paper' or one of {sorted(RECIPES)}.")
    return RECIPES[config.recipe], config.recipe


def validate(config: TrainConfig) -> tuple[Recipe, str]:
    """Everything about `config` that can be checked before the output folder is touched: names, numbers,
    the data's location and write access. Returns the recipe and its name."""
    from keras_cnn.data import DATASETS
    from keras_cnn.registry import model_info

    choices = {
        "dataset": DATASETS,
        "augment": AUGMENTATIONS,
        "mix": MIXES,
        "precision": PRECISIONS,
        "strategy": distribute.STRATEGIES,
    }
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
    if recipe_name == "quick":
        recipe = dataclasses.replace(recipe, **info.quick)
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
