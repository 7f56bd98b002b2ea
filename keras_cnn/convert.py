"""torchvision ImageNet weights into our builders: the way to ImageNet weights for architectures that
keras.applications never shipped (AlexNet, VGG with BN, ResNet-18/34, ResNeXt, ShuffleNet V2).

    model = keras_cnn.convert.from_torchvision("densenet121-a639ec97.pth", "densenet121")

State dicts are read with `torch.load(..., weights_only=True)` (no pickled code runs). Every tensor of the file
must find its layer and every weight of the model its tensor, with the same shape, or the conversion stops with
a ValueError that lists what did not match. Convolution kernels go from (out, in, kh, kw) to (kh, kw, in, out),
dense kernels are transposed, and the first dense layer after a flatten has its rows reordered from PyTorch's
channels-first flatten to Keras' channels-last one. torchvision's ResNet-50/101/152 are "v1.5" (stride in the
3x3 convolution, no convolution biases) while our `resnet50` keeps keras.applications' v1, so they convert into
`ResNeXt(depth=depth, C=1, d=64)`, which is exactly that network, and torchvision's GoogLeNet (BN, 3x3 where the
paper has 5x5) into `GoogLeNet(layout="torchvision")`; its pretrained weights expect inputs in [-1, 1] (its
`transform_input`), `keras_cnn.weights` "tf" preprocessing. MobileNetV2 converts into
`MobileNetV2(layout="torchvision")` (symmetric padding, PyTorch's BN epsilon).
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Callable

import keras
import numpy as np

BN = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, moving mean, moving variance


def import_torchvision():
    """torchvision, also where its wheel's custom operators (nms, ...: a CUDA build) fail to register against a
    CPU-only torch. The models and their state dicts do not use those operators, so that registration is
    skipped when it fails."""
    try:
        import torchvision
    except RuntimeError:
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    return torchvision


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A PyTorch state dict file as NumPy arrays, loaded with `weights_only=True`."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"State dict file not found: {path!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for a bad file
        raise ValueError(
            f"{path!r} is not a readable PyTorch state dict (truncated, or another format): {err}"
        ) from err
    for key in ("state_dict", "model"):  # checkpoints that wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(hasattr(v, "numpy") for v in state.values()):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state dict of tensors.")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _rules(*rules: tuple[str, Callable[[re.Match], tuple[str, str]]]) -> Callable[[str], tuple[str, str] | None]:
    """A key mapping from (regular expression, match -> (our layer, tensor name)) rules, the first that matches."""

    def mapping(key: str) -> tuple[str, str] | None:
        for pattern, target in rules:
            if m := re.fullmatch(pattern, key):
                return target(m)
        return None

    return mapping


def _stage(m: re.Match) -> str:
    """torchvision's layer<i> / denseblock<i> is our conv<i+1> (conv1 is the stem in both)."""
    return f"conv{int(m[1]) + 1}"


_resnet = _rules(
    (r"(conv1|bn1)\.(\w+)", lambda m: ({"conv1": "conv1_conv", "bn1": "conv1_bn"}[m[1]], m[2])),
    (r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(\w+)", lambda m: (f"{_stage(m)}_block{int(m[2]) + 1}_{m[4]}_{m[3]}", m[5])),
    (
        r"layer(\d)\.(\d+)\.downsample\.([01])\.(\w+)",
        lambda m: (f"{_stage(m)}_block{int(m[2]) + 1}_0_{('conv', 'bn')[int(m[3])]}", m[4]),
    ),
    (r"fc\.(\w+)", lambda m: ("predictions", m[1])),
)
_DENSE_LAYER = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}
_DENSE_ENDS = {"conv0": "conv1_conv", "norm0": "conv1_bn", "norm5": "bn"}
_densenet = _rules(
    (r"features\.(conv0|norm0|norm5)\.(\w+)", lambda m: (_DENSE_ENDS[m[1]], m[2])),
    (
        r"features\.denseblock(\d)\.denselayer(\d+)\.(\w+[12])\.(\w+)",
        lambda m: (f"{_stage(m)}_block{m[2]}_{_DENSE_LAYER[m[3]]}", m[4]),
    ),
    (
        r"features\.transition(\d)\.(norm|conv)\.(\w+)",
        lambda m: (f"pool{int(m[1]) + 1}_{m[2].replace('norm', 'bn')}", m[3]),
    ),
    (r"classifier\.(\w+)", lambda m: ("predictions", m[1])),
)


#: ShuffleNet V2's Sequential positions -> our layer suffixes (ReLUs hold no tensors).
_SHUFFLE_PARTS = {
    "branch1.0": "branch1_dw_conv",
    "branch1.1": "branch1_dw_bn",
    "branch1.2": "branch1_pw_conv",
    "branch1.3": "branch1_pw_bn",
    "branch2.0": "branch2_pw1_conv",
    "branch2.1": "branch2_pw1_bn",
    "branch2.3": "branch2_dw_conv",
    "branch2.4": "branch2_dw_bn",
    "branch2.5": "branch2_pw2_conv",
    "branch2.6": "branch2_pw2_bn",
}


_shufflenet = _rules(
    (r"(conv1|conv5)\.([01])\.(\w+)", lambda m: (f"{m[1]}_{('conv', 'bn')[int(m[2])]}", m[3])),
    (
        r"stage(\d)\.(\d+)\.(branch[12]\.\d)\.(\w+)",
        lambda m: (f"stage{m[1]}_block{int(m[2]) + 1}_{_SHUFFLE_PARTS[m[3]]}", m[4]),
    ),
    (r"fc\.(\w+)", lambda m: ("predictions", m[1])),
)


_BN = {"conv": "", "bn": "_bn"}  # GoogLeNet's BasicConv2d: our conv layer and its "_bn"
_GOOGLENET_STEM = {"conv1": "conv1", "conv2": "conv2_reduce", "conv3": "conv2"}
_GOOGLENET_BRANCH = {
    "branch1": "1x1",
    "branch2.0": "3x3_reduce",
    "branch2.1": "3x3",
    "branch3.0": "5x5_reduce",
    "branch3.1": "5x5",
    "branch4.1": "pool_proj",
}
_googlenet = _rules(
    (r"(conv[123])\.(conv|bn)\.(\w+)", lambda m: (_GOOGLENET_STEM[m[1]] + _BN[m[2]], m[3])),
    (
        r"inception(\d[a-e])\.(branch\d(?:\.\d)?)\.(conv|bn)\.(\w+)",
        lambda m: (f"inception_{m[1]}_{_GOOGLENET_BRANCH[m[2]]}{_BN[m[3]]}", m[4]),
    ),
    (r"(aux[12])\.conv\.(conv|bn)\.(\w+)", lambda m: (f"{m[1]}_conv{_BN[m[2]]}", m[3])),
    (r"(aux[12])\.fc([12])\.(\w+)", lambda m: (f"{m[1]}_{('fc', 'predictions')[int(m[2]) - 1]}", m[3])),
    (r"fc\.(\w+)", lambda m: ("predictions", m[1])),
)


def _mobilenet_v2_block(m: re.Match) -> tuple[str, str]:
    """features.<i>.conv.<part> -> keras.applications' names: features.1 is `expanded_conv_` (no expansion),
    features.<i> is `block_<i-1>_`."""
    i, part, tensor = int(m[1]), m[2], m[3]
    if i == 1:
        suffix = {"0.0": "depthwise", "0.1": "depthwise_BN", "1": "project", "2": "project_BN"}[part]
        return f"expanded_conv_{suffix}", tensor
    suffix = {
        "0.0": "expand",
        "0.1": "expand_BN",
        "1.0": "depthwise",
        "1.1": "depthwise_BN",
        "2": "project",
        "3": "project_BN",
    }[part]
    return f"block_{i - 1}_{suffix}", tensor


_mobilenet_v2 = _rules(
    (r"features\.0\.([01])\.(\w+)", lambda m: (("Conv1", "bn_Conv1")[int(m[1])], m[2])),
    (r"features\.18\.([01])\.(\w+)", lambda m: (("Conv_1", "Conv_1_bn")[int(m[1])], m[2])),
    (r"features\.(\d+)\.conv\.(\d(?:\.\d)?)\.(\w+)", _mobilenet_v2_block),
    (r"classifier\.1\.(\w+)", lambda m: ("predictions", m[1])),
)


def _sequential(classifier: dict[int, str]):
    """AlexNet / VGG: `features.<i>` in order onto our convolutions and BNs in order (4-D weights are
    convolutions, tensors with running statistics BNs), `classifier.<i>` by index onto fc1, fc2, predictions."""

    def mapping_for(model: keras.Model, state: dict[str, np.ndarray]) -> Callable[[str], tuple[str, str] | None]:
        convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        norms = [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.")})
        conv_idx = [i for i in indices if state.get(f"features.{i}.weight", np.zeros(0)).ndim == 4]
        norm_idx = [i for i in indices if f"features.{i}.running_mean" in state]
        if len(conv_idx) != len(convs) or len(norm_idx) != len(norms):
            raise ValueError(
                f"The state dict has {len(conv_idx)} convolutions and {len(norm_idx)} BNs in "
                f"`features`; {model.name!r} has {len(convs)} and {len(norms)}."
            )
        order = {**dict(zip(conv_idx, convs, strict=True)), **dict(zip(norm_idx, norms, strict=True))}

        def mapping(key: str) -> tuple[str, str] | None:
            if m := re.fullmatch(r"classifier\.(\d+)\.(\w+)", key):
                return (classifier[int(m[1])], m[2]) if int(m[1]) in classifier else None
            m = re.fullmatch(r"features\.(\d+)\.(\w+)", key)
            return (order[int(m[1])], m[2]) if m and int(m[1]) in order else None

        return mapping

    return mapping_for


def _fixed(mapping):
    return lambda model, state: mapping


V1_5_RESNETS = {"resnet50": 50, "resnet101": 101, "resnet152": 152}
ARCHITECTURES: dict[str, Callable] = {
    **{name: _fixed(_resnet) for name in ("resnet18", "resnet34", "resnext50_32x4d", "resnext101_32x8d")},
    **{name: _fixed(_resnet) for name in ("resnet50", "resnet101", "resnet152")},
    **{name: _fixed(_densenet) for name in ("densenet121", "densenet169", "densenet201")},
    **{f"shufflenet_v2_x{w}": _fixed(_shufflenet) for w in ("0_5", "1_0", "1_5", "2_0")},
    "googlenet": _fixed(_googlenet),
    "mobilenet_v2": _fixed(_mobilenet_v2),
    **{
        f"vgg{d}{bn}": _sequential({0: "fc1", 3: "fc2", 6: "predictions"})
        for d in (11, 13, 16, 19)
        for bn in ("", "_bn")
    },
    "alexnet": _sequential({1: "fc1", 4: "fc2", 6: "predictions"}),
}


def from_torchvision(
    state_dict: str | os.PathLike | dict,
    architecture: str,
    *,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """Build `architecture` (a registry name in `ARCHITECTURES`) for the state dict's class count and load a
    torchvision state dict (a file path, or a dict of arrays) into it. "resnet50", "resnet101" and "resnet152"
    give torchvision's v1.5 network (`ResNeXt(depth=depth, C=1, d=64)`, named `resnet50_v1_5`, ...), "googlenet"
    `GoogLeNet(layout="torchvision")` (with its auxiliary outputs when the state dict has them), "mobilenet_v2"
    `MobileNetV2(layout="torchvision")`."""
    from keras_cnn.registry import create_model

    if architecture not in ARCHITECTURES:
        raise ValueError(f"No torchvision converter for {architecture!r}; available: {sorted(ARCHITECTURES)}.")
    state = state_dict if isinstance(state_dict, dict) else load_state_dict(state_dict)
    state = {k: np.asarray(v) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    heads = [v for k, v in state.items() if re.fullmatch(r"(fc|classifier(\.\d+)?)\.bias", k)]
    head = heads[-1] if heads else None  # the last classifier layer gives the class count
    if head is None:
        raise ValueError(f"The state dict has no classifier bias (fc.bias / classifier.bias); keys: {list(state)[:5]}")
    kwargs = {
        "input_shape": input_shape,
        "classes": int(head.shape[-1]),
        "classifier_activation": classifier_activation,
    }
    if architecture in V1_5_RESNETS:  # torchvision's ResNet-50/101/152: a ResNeXt of cardinality 1
        from keras_cnn.models.resnext import ResNeXt

        model = ResNeXt(depth=V1_5_RESNETS[architecture], C=1, d=64, name=f"{architecture}_v1_5", **kwargs)
    elif architecture == "mobilenet_v2":
        from keras_cnn.models.mobilenet import MobileNetV2

        model = MobileNetV2(layout="torchvision", name="mobilenet_v2_torchvision", **kwargs)
    elif architecture == "googlenet":  # torchvision's variant; its auxiliary heads come along when the file has them
        from keras_cnn.models.googlenet import GoogLeNet

        aux = any(k.startswith("aux") for k in state)
        model = GoogLeNet(layout="torchvision", aux_logits=aux, name="googlenet_torchvision", **kwargs)
    else:
        model = create_model(architecture, **kwargs)
    _assign(model, state, ARCHITECTURES[architecture](model, state))
    return model


def _assign(model: keras.Model, state: dict[str, np.ndarray], mapping) -> None:
    grouped: dict[str, dict[str, np.ndarray]] = {}
    unmatched = []
    for key, value in state.items():
        target = mapping(key)
        if target is None:
            unmatched.append(key)
        else:
            grouped.setdefault(target[0], {})[target[1]] = value
    names = {layer.name for layer in model.layers if layer.weights}
    unmatched += [f"{name}.*" for name in grouped if name not in names]
    missing = sorted(names - set(grouped))
    if unmatched or missing:
        raise ValueError(
            f"The state dict does not fit {model.name!r}: tensors without a layer {unmatched[:8]}, "
            f"layers without tensors {missing[:8]}."
        )
    flatten = next((layer for layer in model.layers if isinstance(layer, keras.layers.Flatten)), None)
    flat_shape = tuple(flatten.input.shape[1:]) if flatten is not None else None
    for name, tensors in grouped.items():
        layer = model.get_layer(name)
        values = _keras_weights(layer, tensors, flat_shape)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{name}: torchvision gives {[v.shape for v in values]}, the model has {expected}.")
        layer.set_weights(values)


def _keras_weights(layer, tensors: dict[str, np.ndarray], flat_shape) -> list[np.ndarray]:
    """Our layer's weights from its torchvision tensors; `flat_shape` is the (h, w, c) that Flatten reads."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [tensors[k] for k in BN]
    kernel = tensors["weight"]
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        kernel = kernel.transpose(2, 3, 0, 1)
    elif kernel.ndim == 4:
        kernel = kernel.transpose(2, 3, 1, 0)
    elif flat_shape is not None and kernel.shape[1] == np.prod(flat_shape):  # the dense layer after Flatten
        h, w, c = flat_shape
        kernel = kernel.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
    else:
        kernel = kernel.T
    return [kernel, tensors["bias"]] if "bias" in tensors else [kernel]
