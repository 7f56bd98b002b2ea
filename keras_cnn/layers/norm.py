"""Normalization factory: one place that decides batch norm vs group norm for every family."""

from __future__ import annotations

import math
from typing import Literal

import keras

Norm = Literal["batch", "group"]
NORMS = ("batch", "group")

#: Torch-style constants (momentum 0.1 there = 0.9 here): used by the families ported from Torch/PyTorch code.
TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}
#: keras.applications constants: used by the families that must load keras.applications weight files.
KERAS_BN = {"momentum": 0.99, "epsilon": 1.001e-5}


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"Unknown norm={norm!r}; allowed values are {NORMS}.")


def norm_layer(norm: Norm, name: str, channels: int, *, groups: int = 32, **bn_kwargs) -> keras.layers.Layer:
    """A BatchNormalization (keyword constants passed through) or a GroupNormalization (Wu & He, ECCV 2018).

    Group norm uses G = `groups` (the paper's default 32), reduced to the largest divisor of `channels` when a
    layer has fewer channels than that (e.g. 16 groups for the 16-channel CIFAR stages).
    """
    check_norm(norm)
    if norm == "batch":
        return keras.layers.BatchNormalization(name=name, **bn_kwargs)
    regularizers = {key: bn_kwargs[key] for key in ("gamma_regularizer", "beta_regularizer") if key in bn_kwargs}
    return keras.layers.GroupNormalization(
        groups=math.gcd(groups, channels), epsilon=bn_kwargs.get("epsilon", 1e-5), name=name, **regularizers
    )
