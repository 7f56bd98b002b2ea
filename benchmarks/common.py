"""What the benchmark scripts share: their --models entries and their one-measurement subprocesses."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

# The scripts import this module before Keras, so TensorFlow loads with the package's oneDNN setting
# (keras_cnn.onednn) in them and in the subprocesses they start.
import keras_cnn
from keras_cnn import onednn


def model_entries(entries: list[str]) -> list[tuple[str, int, int]]:
    """`name:image_size:batch_size` strings as tuples; anything else is a usage error."""
    parsed = []
    for entry in entries:
        try:
            name, size, batch = entry.split(":")
            parsed.append((name, int(size), int(batch)))
        except ValueError as err:
            raise app.UsageError(f"--models entries are name:image_size:batch_size; received {entry!r}.") from err
    return parsed


def measure_in_child(script: str, child: str, steps: int, extra: list[str] = ()):
    """Run `script --_child=child` (and `extra` flags) in a fresh process (its own memory peak and dtype policy)
    and return the JSON value its last output line holds."""
    done = subprocess.run(
        [sys.executable, script, f"--_child={child}", f"--steps={steps}", *extra], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"Measuring {child} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def trained_run(**fields) -> str:
    """The run folder of `keras_cnn.training.train(TrainConfig(**fields, verbose=2))`: a finished run there (its
    metrics.json) is reused, an interrupted one (its backup) resumed, and an empty folder trained from the start."""
    from keras_cnn.training import TrainConfig, train

    out = fields["output_dir"]
    if not os.path.exists(os.path.join(out, "metrics.json")):
        resume = os.path.exists(os.path.join(out, "backup", "training_metadata.json"))
        train(TrainConfig(**fields, resume=resume, verbose=2))
    return out


def cpu_name() -> str:
    """The CPU's model name as Linux reports it (/proc/cpuinfo), else what `platform` knows."""
    return onednn.cpuinfo("model name") or platform.processor() or platform.machine()


#: The /proc/cpuinfo flags that decide which kernels oneDNN and PyTorch run (vector width, bf16 and AMX units).
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """Which of `KERNEL_FLAGS` the CPU has (Linux's /proc/cpuinfo; empty elsewhere)."""
    return [flag for flag in KERNEL_FLAGS if flag in onednn.cpu_flags()]


def write_results(path: str, rows: list[dict], **fields) -> None:
    """`rows` with the machine (CPU and its kernel flags, the oneDNN setting TensorFlow loaded with) and the Keras
    version they were measured on, and `fields`, as JSON (atomic)."""
    import keras

    from keras_cnn.io import write_json_atomic

    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {
        "machine": machine,
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        **fields,
    }
    write_json_atomic(path, {**result, "rows": rows})
    print(f"wrote {path}")


def torch_cifar_resnet(depth: int, classes: int):
    """He et al. 2016's CIFAR ResNet (Sec. 4.2) in PyTorch: 3x3 conv, three stages of (depth - 2) / 6 basic
    blocks of 16, 32, 64 filters, option-A shortcuts (subsample, zero channels appended after the identity's
    as fb.resnet.torch does), average pool, linear. Modules in our layer order, so weights copy one to one."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.pad = cout - cin

        def forward(self, x):
            y = self.bn2(self.conv2(functional.relu(self.bn1(self.conv1(x)))))
            if self.pad:
                x = functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.pad))
            return functional.relu(y + x)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.conv, self.bn = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for i in range(n):
                    blocks.append(Block(cin, cout, 2 if stage and not i else 1))
                    cin = cout
            self.blocks, self.fc = nn.Sequential(*blocks), nn.Linear(64, classes)

        def forward(self, x):
            return self.fc(torch.mean(self.blocks(functional.relu(self.bn(self.conv(x)))), dim=(2, 3)))

    return ResNet()


CIFAR_RESNET_DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56, "resnet110": 110}
#: The --models names `torch_model` writes in PyTorch.
TORCH_PEERS = (*CIFAR_RESNET_DEPTHS, "densenet_bc", "resnet50")


def no_peer(name: str) -> str:
    return f"--models: no PyTorch peer for {name!r}; use {', '.join(TORCH_PEERS)}."


def peer_entries(entries: list[str]) -> list[tuple[str, int, int]]:
    """`model_entries(entries)`, refused before anything is built unless each name is a registered model (else the
    registry's message, with close names) with a PyTorch peer."""
    from keras_cnn.registry import model_info

    parsed = model_entries(entries)
    for name, _, _ in parsed:
        try:
            model_info(name)
        except ValueError as err:
            raise app.UsageError(f"--models: {err}") from err
        if name not in TORCH_PEERS:
            raise app.UsageError(no_peer(name))
    return parsed


def classes_for(size: int) -> int:
    """The class count the scripts give a `size` x `size` input: 10 (CIFAR) up to 64 pixels, else 1000 (ImageNet)."""
    return 10 if size <= 64 else 1000


def torch_model(name: str, classes: int):
    """`name` written in PyTorch: torchvision's network where it has one, else `torch_cifar_resnet`."""
    from torch import nn

    from keras_cnn.convert import import_torchvision

    models = import_torchvision().models
    if name in CIFAR_RESNET_DEPTHS:
        return torch_cifar_resnet(CIFAR_RESNET_DEPTHS[name], classes)
    if name == "densenet_bc":  # Huang et al. 2017's CIFAR DenseNet-BC (L=100, k=12): a 3x3 stem of 2k filters
        net = models.DenseNet(growth_rate=12, block_config=(16, 16, 16), num_init_features=24, num_classes=classes)
        net.features.conv0 = nn.Conv2d(3, 24, 3, padding=1, bias=False)
        net.features.norm0 = net.features.relu0 = net.features.pool0 = nn.Identity()
        return net
    if name == "resnet50":
        return models.resnet50(num_classes=classes)
    raise app.UsageError(no_peer(name))


def keras_model(name: str, size: int, classes: int):
    """Our `name` with logits out, the same network as `torch_model(name)` (ResNet-50 as torchvision's v1.5)."""
    import keras_cnn
    from keras_cnn.models.resnext import ResNeXt

    kwargs = {"input_shape": (size, size, 3), "classes": classes, "classifier_activation": None}
    if name == "resnet50":  # torchvision's ResNet-50 is v1.5: the stride in the 3x3, no conv biases
        return ResNeXt(depth=50, C=1, d=64, **kwargs)
    return keras_cnn.create_model(name, **kwargs)


def torch_device() -> str:
    """Where PyTorch runs: "cuda" when it sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_steps(net, x, y, *, bf16: bool, channels_last: bool):
    """(inference, train) callables of the PyTorch network on fixed tensors, on `torch_device()`."""
    import torch

    device = torch_device()
    net = net.to(device)
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)
    y = torch.from_numpy(y.astype("int64")).to(device)
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def infer():
        net.eval()
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            return net(x)

    def train():
        net.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()

    return infer, train


def usable_cpus() -> int:
    """How many CPUs this process may run on: its affinity on Linux, else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pin_to_cpus(count: int) -> None:
    """Run this process's threads, and the threads they start later, on the first `count` CPUs it may use (Linux)."""
    cpus = set(sorted(os.sched_getaffinity(0))[:count])
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:  # a thread that ended meanwhile
            continue


def trainable_torch(net) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def images_per_s(step, batch: int, steps: int, sync=lambda: None) -> float:
    """`steps` calls of `step` in images per second, timed until `sync()` (the device's queue drained) returns."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch / (time.perf_counter() - start)


def alternate(steps: dict, per_call: int, n: int, rounds: int, sync=lambda: None) -> dict:
    """Median items/s of each step, measured in turn `rounds` times over `n` calls of `per_call` items (one
    untimed call first, each timing ended by `sync()`), so the machine's drift falls on all of them."""
    rates = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step()
            rates[name].append(images_per_s(step, per_call, n, sync))
    return {name: statistics.median(values) for name, values in rates.items()}


def traced_under(settings: dict, build):
    """`build()` -> a step function, called once (traced) while each `keras_cnn.layers.<module>.<name>` named
    "<module>.<name>" in `settings` has its value; they are restored afterwards, and the traced step keeps what it
    was traced with."""
    import importlib

    targets = {
        key: (importlib.import_module(f"keras_cnn.layers.{key.split('.')[0]}"), key.split(".")[1]) for key in settings
    }
    defaults = {key: getattr(module, name) for key, (module, name) in targets.items()}
    for key, (module, name) in targets.items():
        setattr(module, name, settings[key])
    try:
        step = build()
        step()
        return step
    finally:
        for key, (module, name) in targets.items():
            setattr(module, name, defaults[key])


def define_precisions() -> None:
    """The `--precisions` flag: float32 and/or bfloat16 (Keras' mixed_bfloat16), anything else refused by name."""
    flags.DEFINE_list("precisions", ["float32", "bfloat16"], "float32 and/or bfloat16 (mixed_bfloat16).")
    flags.register_validator(
        "precisions",
        lambda values: set(values) <= {"float32", "bfloat16"},
        message="--precisions takes float32 and/or bfloat16",
    )


def random_batch(batch: int, size: int, classes: int):
    """A fixed random batch (seed 0): float32 images in [0, 1) of `size` x `size` x 3, int32 labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((batch, size, size, 3), dtype=np.float32), rng.integers(0, classes, batch).astype("int32")


def keras_steps(model, x, y, *, optimizer=None, jit: bool = False):
    """(inference, train) callables of `model` compiled with `optimizer` (default: the package's SGD, momentum
    0.9, which `train()` uses) and cross-entropy on logits, on fixed tensors. Both return host values, so a step
    has finished on the device when its call returns."""
    import keras

    from keras_cnn.optimizers import SGD

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer or SGD(0.01, momentum=0.9), loss, jit_compile=True if jit else "auto")
    x, y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    return (lambda: model.predict_on_batch(x)), (lambda: model.train_on_batch(x, y))


def seeded_step(name: str, size: int, batch: int, mode: str, *, optimizer=None):
    """A fresh `name` model (weights seeded alike on every call, 10 classes, logits) compiled by `keras_steps` with
    `optimizer`: its `train_on_batch` (mode "train") or `predict_on_batch` (else) on a fixed random batch."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras_cnn.create_model(name, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    infer, train = keras_steps(model, *random_batch(batch, size, 10), optimizer=optimizer)
    return train if mode == "train" else infer


def paired_rows(
    entries: list[str],
    steps_for,
    ours: str,
    peer: str,
    *,
    steps: int,
    rounds: int,
    suffix: str = "_img_s",
    fields: dict | None = None,
):
    """One `pair_row` per `--precisions` value and `entries` model: `steps_for(name, size, batch)` gives the two
    sides' steps ({ours: step, peer: step}), built under that precision's policy and timed by `alternate`; each row
    also holds `fields`."""
    import keras

    rows = []
    for precision in flags.FLAGS.precisions:
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        for name, size, batch in model_entries(entries):
            rates = alternate(steps_for(name, size, batch), batch, steps, rounds)
            row = {"model": name, "image_size": size, "batch_size": batch, "precision": precision, **(fields or {})}
            rows.append(pair_row(row, rates, ours, peer, suffix=suffix))
    return rows


def pair_row(fields: dict, rates: dict, ours: str, peer: str, suffix: str = "_img_s") -> dict:
    """A results row, `fields`, each side's images/s (as `<side><suffix>`) and the ratio ours / peer, also printed
    as one line."""
    ratio = rates[ours] / rates[peer]
    sides = "  ".join(f"{side} {rate:7.1f}" for side, rate in rates.items())
    print(f"{' '.join(map(str, fields.values()))}  {sides} img/s  ratio {ratio:.3f}", flush=True)
    return fields | {f"{side}{suffix}": round(rate, 1) for side, rate in rates.items()} | {"ratio": round(ratio, 3)}
