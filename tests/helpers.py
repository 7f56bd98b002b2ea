"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import pathlib
import sys
import types

import keras
import pytest

import keras_cnn

#: The ~1,000-layer models: 15-20 s to build each on 2 cores.
DEEP = {"resnet1202", "sd_resnet1202", "preact_resnet1001"}

#: Deeper or wider configurations of a builder whose smaller configuration (the value) trains one step in the
#: default suite: the same blocks, more or wider of them. Their counts, MACs and stages are still checked name by
#: name; `pytest --train-all` trains them too (about 4 minutes of the suite on 2 cores).
LARGER_SIBLINGS = {
    "resnet1202": "resnet110",
    "preact_resnet1001": "preact_resnet164",
    "resnet152": "resnet101",
    "resnet152_v2": "resnet101_v2",
    "resnext101_32x8d": "resnext50_32x4d",
    "resnext29_16x64d": "resnext29_8x64d",
    "densenet169": "densenet121",
    "densenet201": "densenet121",
    "densenet264": "densenet121",
    "densenet_bc_190_40": "densenet_bc_100_12",
    "densenet_bc_250_24": "densenet_bc_100_12",
    "msdnet_imagenet_k6": "msdnet_imagenet_k4",
    "msdnet_imagenet_k7": "msdnet_imagenet_k4",
}

#: The models that go through a full `model.save` / `keras.saving.load_model` round trip in the default suite:
#: per family file, the cheapest members that between them use every layer class of the family (the catalogue
#: checks that each registered model's classes are covered by one of its own file). Reloading rebuilds the graph
#: layer by layer (1-2x the build time), so the other ~55 names check instead that their whole config serializes.
ROUND_TRIP = (
    "alexnet",
    "alexnet_v1",
    "cliquenet_k36_t12_ac",
    "cliquenet_s2",
    "densenet40",
    "densenet121",
    "googlenet",
    "inception_resnet_v2",
    "lenet5",
    "mobilenet",
    "mobilenet_v2",
    "msdnet_cifar100_budget",
    "msdnet_imagenet_k4",
    "resnet20",
    "resnext50_32x4d",
    "shufflenet_v1",
    "vgg11_bn",
    "xception",
)


def model_params(names=None):
    """pytest params over registry names, with the deepest models marked slow."""
    names = keras_cnn.list_models() if names is None else names
    return [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in names]


def smallest_model_kwargs(name: str) -> dict:
    """create_model arguments for `name` at its smallest legal input with 5 classes. Stochastic depth may drop
    whole blocks in a training step, so all of its blocks survive (p_L=1)."""
    card = keras_cnn.model_info(name)
    size, channels = card.min_size, card.input_size[-1]
    gates = {"p_L": 1.0} if name.startswith("sd_") else {}
    return {"input_shape": (size, size, channels), "classes": 5, **gates}


def layer_classes(model: keras.Model) -> set[type]:
    """The classes of every layer in `model`, nested models included."""
    classes = set()
    for layer in model.layers:
        classes.add(type(layer))
        if isinstance(layer, keras.Model):
            classes |= layer_classes(layer)
    return classes


@contextlib.contextmanager
def shapes_only():
    """Builds inside create no weight values (Keras defers them), for tests that only read shapes: parameter
    and MAC counts, output and stage shapes. Three to four times faster than a full build; also a decorator."""
    with keras.StatelessScope(initialize_variables=False):
        yield


@functools.cache
def round_trip_classes(name: str) -> frozenset[type]:
    """The layer classes of `name` as the catalogue trains it."""
    with shapes_only():
        return frozenset(layer_classes(keras_cnn.create_model(name, **smallest_model_kwargs(name))))


def randomize_statistics(model: keras.Model, rng) -> None:
    """Batch-norm moving statistics and affine parameters far from their initial 0 / 1, so that a graph which
    drops or misapplies a batch norm gives other outputs."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.2, c))


def two_exit_model() -> keras.Model:
    """A tiny multi-exit network (not an MSDNet): two softmax exits over a 4x4 grey image."""
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    first = keras.layers.Dense(3, activation="softmax", name="exit1")(flat)
    last = keras.layers.Dense(3, activation="softmax", name="exit2")(keras.layers.Dense(5)(flat))
    return keras.Model(inputs, [first, last], name="two_exits")


def list_devices(monkeypatch, *kinds: str) -> None:
    """`tf.config.list_physical_devices` lists one device of each of `kinds` ("CPU", "GPU") for the rest of the test,
    answering per kind as TensorFlow does (Keras reads `device_type`)."""
    import tensorflow as tf

    devices = [types.SimpleNamespace(name=f"/physical_device:{kind}:0", device_type=kind) for kind in kinds]
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: [d for d in devices if kind in (None, d.device_type)]
    )


def lenet5_run(out, **kwargs):
    """A `TrainConfig` for LeNet-5 on the embedded digits for one quiet epoch into `out` (a few seconds)."""
    from keras_cnn.training import TrainConfig

    return TrainConfig(**{"model": "lenet5", "epochs": 1, "output_dir": str(out), "verbose": 0, **kwargs})


#: Modules of the scripts' folders, by folder: examples/ and benchmarks/ each have a `common`.
_SCRIPT_MODULES: dict[str, dict] = {}


def script_module(folder: str, name: str):
    """`folder/name.py` of the repository (examples/ or benchmarks/) as a module, loaded once per process (its
    absl flags are defined once), `main` not run. Its siblings (`common`) are imported from the same folder and
    kept out of `sys.modules`, so the two folders' `common` never stand in for each other."""
    path = pathlib.Path(__file__).resolve().parents[1] / folder
    loaded = _SCRIPT_MODULES.setdefault(folder, {})
    if name not in loaded:
        shadowed = {key: sys.modules.pop(key) for key in [*loaded, name] if key in sys.modules}
        sys.modules.update(loaded)
        sys.path.insert(0, str(path))
        try:
            spec = importlib.util.spec_from_file_location(name, path / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path))
            found = {
                key: sys.modules.pop(key)
                for key, value in list(sys.modules.items())
                if pathlib.Path(getattr(value, "__file__", None) or "/").parent == path
            }
            sys.modules.update(shadowed)
        loaded.update(found)  # only once the script ran to its end: a failed load is not cached half-made
    return loaded[name]


def live_ops(function, x) -> list:
    """The ops the traced `function(x)` computes its outputs from (ops nothing reads are pruned when it runs)."""
    graph = function.get_concrete_function(x).graph
    seen, stack = {}, [t.op for t in graph.outputs]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen[op.name] = op
            stack.extend([t.op for t in op.inputs] + list(op.control_inputs))
    return list(seen.values())
