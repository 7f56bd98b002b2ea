"""The conv / norm-ReLU / dropout rooms every family builds from, with the constants of one reference code."""

from __future__ import annotations

import keras

from keras_cnn.layers.conv import Conv2D
from keras_cnn.layers.norm import Norm, check_norm, norm_layer


class Style:
    """How one network builds its layers: `norm` kind, BN constants `bn`, conv initializer kwargs `init`,
    `dropout_rate` after convolutions, and coupled weight decay.

    weight_decay wd adds wd * 1/2 ||v||^2 to the loss for every kernel, bias, gamma and beta (an L2(wd / 2)
    regularizer, whose gradient wd * v goes through momentum as in Torch, PyTorch and TF `l2_loss` code);
    0 adds none, leaving decay to the optimizer.
    """

    def __init__(
        self, *, bn: dict, init: dict, norm: Norm = "batch", dropout_rate: float = 0.0, weight_decay: float = 0.0
    ):
        check_norm(norm)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; received {weight_decay!r}.")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1); received {dropout_rate!r}.")
        self.norm, self.bn, self.init, self.dropout_rate = norm, dict(bn), dict(init), dropout_rate
        self.regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None

    def conv(self, x, filters: int, kernel: int, stride: int, name: str, use_bias: bool = False, groups: int = 1):
        """`{name}_conv`, padded like PyTorch/Torch (symmetric (k-1)/2, `{name}_pad` when strided); `groups`
        splits it into grouped convolutions (ResNeXt's cardinality)."""
        pad = (kernel - 1) // 2
        if pad and stride > 1:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        return self.conv_layer(filters, kernel, f"{name}_conv", stride=stride, use_bias=use_bias, groups=groups)(x)

    def conv_layer(
        self, filters: int, kernel: int, name: str, *, stride: int = 1, use_bias: bool = False, groups: int = 1
    ):
        """The Conv2D of `conv` without calling it, for a kernel shared by several calls (CliqueNet)."""
        padding = "valid" if stride > 1 or kernel == 1 else "same"
        return Conv2D(
            filters,
            kernel,
            strides=stride,
            padding=padding,
            use_bias=use_bias,
            name=name,
            groups=groups,
            kernel_regularizer=self.regularizer,
            bias_regularizer=self.regularizer if use_bias else None,
            **self.init,
        )

    def norm_act(self, x, name: str, act: bool = True):
        """`{name}_bn` then `{name}_relu`; an empty name gives keras.applications' head names `bn`, `relu`."""
        prefix = f"{name}_" if name else ""
        x = norm_layer(self.norm, f"{prefix}bn", x.shape[-1], **self.bn, **self.norm_regularizers)(x)
        return keras.layers.Activation("relu", name=f"{prefix}relu")(x) if act else x

    def dropout(self, x, name: str):
        """`{name}_drop` when the network uses dropout."""
        return keras.layers.Dropout(self.dropout_rate, name=f"{name}_drop")(x) if self.dropout_rate else x

    def dense(self, x, units: int, name: str, activation=None, **kwargs):
        return keras.layers.Dense(
            units,
            activation=activation,
            name=name,
            kernel_regularizer=self.regularizer,
            bias_regularizer=self.regularizer,
            **kwargs,
        )(x)

    @property
    def norm_regularizers(self) -> dict:
        if self.regularizer is None:
            return {}
        return {"gamma_regularizer": self.regularizer, "beta_regularizer": self.regularizer}

    def imagenet_stem(self, x, filters: int = 64, *, use_bias: bool = False, preact: bool = False, pool_name: str):
        """7x7/2 conv (+ BN-ReLU unless pre-activation), then 3x3/2 max pooling padded by 1: the ImageNet stem
        of ResNet, DenseNet and CliqueNet. Returns the stride-2 map and the pooled stride-4 map."""
        stem = self.conv(x, filters, 7, 2, "conv1", use_bias=use_bias)
        if not preact:
            stem = self.norm_act(stem, "conv1")
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(stem)
        return stem, keras.layers.MaxPooling2D(3, strides=2, name=pool_name)(x)
