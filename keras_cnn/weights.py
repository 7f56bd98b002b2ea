"""Named weight sets for `weights=`: where each file comes from, its hash, and what it was trained for.

A builder's `weights` is None (random), the path of a weights file, or the name of a set registered here for
that model ("imagenet", "digits"). A name resolves in this order: a file that `weights/` of this project ships,
then the cache (`$KERAS_HOME/models`, `~/.keras/models` by default, as keras.applications uses), then a
download from the set's URL that is hash-checked before it is moved into the cache (a failed or corrupt
download never leaves a file there). The "imagenet" sets are keras.applications' own files, URLs and hashes:
our builders keep its layer order, so they load as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np

from keras_cnn.io import load_model, write_atomic, write_json_atomic

SHIPPED = Path(__file__).resolve().parents[1] / "weights"  # the project's own trained sets
KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class WeightSet:
    """One weight file. `file_hash` is a sha256 (64 hex digits) or, for keras.applications' files, the md5
    (32) that Keras publishes for them. `preprocessing` is the `keras.applications.imagenet_utils` mode the
    set was trained with ("caffe", "tf", "torch"), "scale" (pixels / 255) or "digits" (scikit-learn's 8x8
    scans as keras_cnn.data prepares them). `accuracy` is on `data` as measured by `command`; `class_names`
    name the output units in order (empty: their indices); `training` records the run (recipe, epochs,
    precision, wall time, images/s)."""

    model: str
    name: str
    include_top: bool
    filename: str
    file_hash: str
    classes: int
    input_shape: tuple[int, int, int]
    preprocessing: str
    url: str | None = None
    data: str = ""
    accuracy: dict = dataclasses.field(default_factory=dict)
    command: str = ""
    class_names: tuple[str, ...] = ()
    training: dict = dataclasses.field(default_factory=dict)


WEIGHT_SETS: dict[tuple[str, str, bool], WeightSet] = {}


def register(weight_set: WeightSet) -> WeightSet:
    WEIGHT_SETS[(weight_set.model, weight_set.name, weight_set.include_top)] = weight_set
    return weight_set


def set_names() -> set[str]:
    return {name for _, name, _ in WEIGHT_SETS}


def _imagenet(
    model: str,
    folder: str,
    stem: str,
    top_hash: str,
    notop_hash: str,
    preprocessing: str,
    *,
    top1: float,
    top5: float,
    size: int = 224,
) -> None:
    """keras.applications' pair of files for `model` (with and without the classifier)."""
    for include_top, suffix, file_hash in ((True, "", top_hash), (False, "_notop", notop_hash)):
        filename = f"{stem}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
        register(
            WeightSet(
                model,
                "imagenet",
                include_top,
                filename,
                file_hash,
                1000,
                (size, size, 3),
                preprocessing,
                url=f"{KERAS_APPLICATIONS}{folder}/{filename}",
                data="ImageNet-1k val (keras.applications' figures)",
                accuracy={"top1": top1, "top5": top5},
                command="keras.applications' published weights",
            )
        )


_imagenet(
    "resnet50",
    "resnet",
    "resnet50",
    "2cb95161c43110f7111970584f804107",
    "4d473c1dd8becc155b73f8504c6f6626",
    "caffe",
    top1=0.749,
    top5=0.921,
)
_imagenet(
    "resnet101",
    "resnet",
    "resnet101",
    "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    "88cf7a10940856eca736dc7b7e228a21",
    "caffe",
    top1=0.764,
    top5=0.928,
)
_imagenet(
    "resnet152",
    "resnet",
    "resnet152",
    "100835be76be38e30d865e96f2aaae62",
    "ee4c566cf9a93f14d82f913c2dc6dd0c",
    "caffe",
    top1=0.766,
    top5=0.931,
)
_imagenet(
    "resnet50_v2",
    "resnet",
    "resnet50v2",
    "3ef43a0b657b3be2300d5770ece849e0",
    "fac2f116257151a9d068a22e544a4917",
    "tf",
    top1=0.760,
    top5=0.930,
)
_imagenet(
    "resnet101_v2",
    "resnet",
    "resnet101v2",
    "6343647c601c52e1368623803854d971",
    "c0ed64b8031c3730f411d2eb4eea35b5",
    "tf",
    top1=0.772,
    top5=0.938,
)
_imagenet(
    "resnet152_v2",
    "resnet",
    "resnet152v2",
    "a49b44d1979771252814e80f8ec446f9",
    "ed17cf2e0169df9d443503ef94b23b33",
    "tf",
    top1=0.780,
    top5=0.942,
)
_imagenet(
    "vgg16",
    "vgg16",
    "vgg16",
    "64373286793e3c8b2b4e3219cbf3544b",
    "6d6bbae143d832006294945121d1f1fc",
    "caffe",
    top1=0.713,
    top5=0.901,
)
_imagenet(
    "vgg19",
    "vgg19",
    "vgg19",
    "cbe5617147190e668d6c5d5026f83318",
    "253f8cb515780f3b799900260a226db6",
    "caffe",
    top1=0.713,
    top5=0.900,
)
_imagenet(
    "densenet121",
    "densenet",
    "densenet121",
    "9d60b8095a5708f2dcce2bca79d332c7",
    "30ee3e1110167f948a6b9946edeeb738",
    "torch",
    top1=0.750,
    top5=0.923,
)
_imagenet(
    "densenet169",
    "densenet",
    "densenet169",
    "d699b8f76981ab1b30698df4c175e90b",
    "b8c4d4c20dd625c148057b9ff1c1176b",
    "torch",
    top1=0.762,
    top5=0.932,
)
_imagenet(
    "densenet201",
    "densenet",
    "densenet201",
    "1ceb130c1ea1b78c3bf6114dbdfd8807",
    "c13680b51ded0fb44dff2d8f86ac8bb1",
    "torch",
    top1=0.773,
    top5=0.936,
)
_imagenet(
    "inception_v3",
    "inception_v3",
    "inception_v3",
    "9a0d58056eeedaa3f26cb7ebd46da564",
    "bcbd6486424b2319ff4ef7d526e38f63",
    "tf",
    top1=0.779,
    top5=0.937,
    size=299,
)
_imagenet(
    "inception_resnet_v2",
    "inception_resnet_v2",
    "inception_resnet_v2",
    "e693bd0210a403b3192acc6073ad2e96",
    "d19885ff4a710c122648d3b5c3b684e4",
    "tf",
    top1=0.803,
    top5=0.953,
    size=299,
)
_imagenet(
    "xception",
    "xception",
    "xception",
    "0a58e3b7378bc2990ea3b43d5981f1f6",
    "b0042744bf5b25fce3cb969f33bebb97",
    "tf",
    top1=0.790,
    top5=0.945,
    size=299,
)


MANIFEST = SHIPPED / "manifest.json"


def _register_shipped() -> None:
    """The sets listed in `weights/manifest.json` (trained by this project, files in `weights/`)."""
    if not MANIFEST.is_file():
        return
    with open(MANIFEST) as f:
        for entry in json.load(f):
            entry = {**entry, "input_shape": tuple(entry["input_shape"])}
            register(WeightSet(**{**entry, "class_names": tuple(entry.get("class_names", ()))}))


_register_shipped()


#: What a published set records of its training run (from the run's metrics.json).
RUN_FIGURES = ("recipe", "augment", "epochs", "batch_size", "precision", "wall_time_s", "images_per_s", "seed")


def publish(
    run_dir: str | os.PathLike,
    name: str,
    *,
    command: str,
    overwrite: bool = False,
    data: str | None = None,
    accuracy: dict | None = None,
    class_names: tuple[str, ...] = (),
) -> WeightSet:
    """Ship the final weights of a `train()` run directory as set `name` of its model: the file
    `weights/<model>_<name>.weights.h5` and an entry in `weights/manifest.json` (sha256, data, accuracy, the
    class names, the run's recipe, epochs, precision and wall time, and `command`, the command that made it).
    `data` and `accuracy` default to the run's held-out split and final val accuracy. Pixels are prepared as
    the run's pipeline did: the digits' 0-16 scans for "digits", 0-255 images divided by 255 for every other
    dataset. Refuses to replace a set unless `overwrite`."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    model = load_model(os.path.join(run_dir, "model.keras"))
    classes = int(model.output_shape[-1])
    if class_names and len(class_names) != classes:
        raise ValueError(f"class_names has {len(class_names)} names for a model of {classes} classes.")
    filename = f"{metrics['model']}_{name}.weights.h5"
    target = SHIPPED / filename
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists: pass overwrite=True to replace the shipped {name!r} set.")
    write_atomic(target, model.save_weights)
    ws = register(
        WeightSet(
            metrics["model"],
            name,
            True,
            filename,
            file_hash(target, "sha256"),
            classes,
            tuple(model.input_shape[1:]),
            "digits" if metrics["dataset"] == "digits" else "scale",
            data=data or f"{metrics['dataset']}: held-out split of keras_cnn.data (seed {metrics['seed']})",
            accuracy=accuracy or {"val_accuracy": metrics["final_val_accuracy"]},
            command=command,
            class_names=tuple(class_names),
            training={key: metrics[key] for key in RUN_FIGURES if key in metrics},
        )
    )
    write_json_atomic(MANIFEST, [dataclasses.asdict(w) for w in WEIGHT_SETS.values() if w.url is None])
    return ws


def weight_set(model: str, name: str, *, include_top: bool) -> WeightSet:
    """The registered set, or a ValueError that lists what `model` has."""
    try:
        return WEIGHT_SETS[(model, name, include_top)]
    except KeyError:
        available = sorted({f"{n!r} (include_top={top})" for m, n, top in WEIGHT_SETS if m == model})
        raise ValueError(
            f"No weight set {name!r} for {model!r} with include_top={include_top}; available: "
            f"{', '.join(available) or 'none (pass None or the path of a weights file)'}."
        ) from None


def cache_dir() -> str:
    """Where downloaded sets live: `$KERAS_HOME/models` (`~/.keras/models` without KERAS_HOME), read at
    each call."""
    return os.path.join(os.environ.get("KERAS_HOME") or keras.config.keras_home(), "models")


def file_hash(path: str | os.PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: str, ws: WeightSet) -> None:
    algorithm = "sha256" if len(ws.file_hash) == 64 else "md5"
    actual = file_hash(path, algorithm)
    if actual != ws.file_hash:
        raise ValueError(
            f"{path!r} is not the {ws.model} {ws.name!r} weight file: its {algorithm} is {actual}, expected "
            f"{ws.file_hash} (a truncated or corrupt download, or another file). "
            + (f"Delete it to download again from {ws.url}." if ws.url else f"Restore the file shipped in {SHIPPED}.")
        )


def fetch(ws: WeightSet) -> str:
    """The local path of `ws`'s file, hash-checked: shipped in `weights/`, cached, or downloaded now."""
    shipped = SHIPPED / ws.filename
    if shipped.is_file():
        _check_hash(str(shipped), ws)
        return str(shipped)
    cached = os.path.join(cache_dir(), ws.filename)
    if os.path.isfile(cached):
        _check_hash(cached, ws)
        return cached
    if ws.url is None:
        raise FileNotFoundError(
            f"The {ws.model} {ws.name!r} weights ({ws.filename}) are not in {SHIPPED} or "
            f"{cache_dir()}, and the set has no download URL."
        )
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=cache_dir(), suffix=".part")
    except OSError as err:
        raise PermissionError(
            f"Cannot write to the weights cache {cache_dir()!r} ({err}); set KERAS_HOME to a "
            f"writable folder or download {ws.url} yourself and pass its path."
        ) from err
    os.close(handle)
    try:
        try:
            urllib.request.urlretrieve(ws.url, tmp)
        except (urllib.error.URLError, OSError) as err:
            raise FileNotFoundError(
                f"The {ws.model} {ws.name!r} weights are not cached and could not be downloaded ({err}). Put "
                f"{ws.filename} from {ws.url} into {cache_dir()} (or pass the file's path as weights=)."
            ) from err
        _check_hash(tmp, ws)
        os.replace(tmp, cached)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return cached


def resolve(weights, *, model: str, include_top: bool, classes: int | None, input_shape) -> str:
    """The file to load for a builder's `weights` argument (a set name or a path), after checking that the
    set fits the model as built (class count, input size with the classifier)."""
    ws = check_fit(weights, model=model, include_top=include_top, classes=classes, input_shape=input_shape)
    return os.fspath(weights) if ws is None else fetch(ws)


def check_fit(weights, *, model: str, include_top: bool, classes: int | None, input_shape) -> WeightSet | None:
    """The registered set `weights` names for `model` (None for a path), refused when it cannot fit a model
    built with these arguments: `classes` and `input_shape` (None: not known yet) are checked with the
    classifier, the channel count without it. Builders call it before building anything."""
    path = os.fspath(weights)
    if os.path.isfile(path) or weights not in set_names():
        return None
    ws = weight_set(model, weights, include_top=include_top)
    if include_top and classes is not None and classes != ws.classes:
        raise ValueError(
            f"weights={weights!r} for {model!r} classify {ws.classes} classes; received classes={classes}. Build "
            f"with include_top=False for the backbone, or keep classes={ws.classes} and give the model a new head "
            "with keras_cnn.training.with_new_head(model, classes)."
        )
    if input_shape is None:
        return ws
    if include_top and tuple(input_shape) != ws.input_shape:
        raise ValueError(
            f"weights={weights!r} with include_top=True need input_shape={ws.input_shape}; received "
            f"{tuple(input_shape)} (include_top=False takes other sizes)."
        )
    if not include_top and input_shape[-1] != ws.input_shape[-1]:
        raise ValueError(
            f"weights={weights!r} need {ws.input_shape[-1]} input channels; received input_shape={tuple(input_shape)}."
        )
    return ws


def _any_set(model: str, weights: str) -> WeightSet:
    ws = next((w for (m, n, _), w in WEIGHT_SETS.items() if m == model and n == weights), None)
    if ws is None:
        raise ValueError(f"No weight set {weights!r} for {model!r}; the sets are {sorted(set_names())}.")
    return ws


def preprocess_input(x, *, model: str, weights: str = "imagenet"):
    """Prepare pixels for `model` with `weights` as that set was trained: 0-255 images, or for "digits" sets
    scikit-learn's 0-16 digit scans. A NumPy input is copied (keras.applications scales NumPy arrays in place)."""
    ws = _any_set(model, weights)
    if isinstance(x, np.ndarray):
        x = x.astype("float32")
    if ws.preprocessing == "scale":
        return keras.ops.cast(x, "float32") / 255.0
    if ws.preprocessing == "digits":  # keras_cnn.data.digits_arrays: 8x8 scans of 0-16, /16, bilinear resize
        x = keras.ops.cast(x, "float32") / 16.0
        x = x if x.shape[-1] == 1 else x[..., None]
        return keras.ops.image.resize(x, ws.input_shape[:2], interpolation="bilinear")
    return keras.applications.imagenet_utils.preprocess_input(x, mode=ws.preprocessing)


def decode_predictions(predictions, *, model: str, weights: str = "imagenet", top: int = 5) -> list[list[tuple]]:
    """The `top` classes of each prediction as (class name, probability), best first: the set's class names
    ("airplane" ... "truck" for "cifar10"), or the class index for sets without names. "imagenet" sets use
    keras.applications' decoder (WordNet id, name, probability; its class index file is downloaded once)."""
    ws = _any_set(model, weights)
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] != ws.classes:
        raise ValueError(f"Expected predictions of shape (batch, {ws.classes}); received {predictions.shape}.")
    if ws.name == "imagenet":
        return keras.applications.imagenet_utils.decode_predictions(predictions, top=top)
    names = ws.class_names or [str(i) for i in range(ws.classes)]
    return [[(names[i], float(p[i])) for i in np.argsort(-p)[:top]] for p in predictions]
