"""Training and inference images/s of our models against the same networks in PyTorch eager, in one run.

    python benchmarks/vs_pytorch.py
    python benchmarks/vs_pytorch.py --models resnet20:32:64 --precisions bfloat16 --rounds 3

Each `name:image_size:batch_size` entry is built twice: with `keras_cnn.create_model` (logits out) and as the
same network in PyTorch (torchvision's where it has it: ResNet-50 v1.5 is our `ResNeXt(depth=50, C=1, d=64)`, and
DenseNet-BC-100-12 is torchvision's DenseNet with the CIFAR stem; the CIFAR ResNets with option-A shortcuts are
written below, as torchvision has none). Their trainable parameter counts must be equal. Both train with SGD
(momentum 0.9; ours the package's `keras_cnn.optimizers.SGD`, which `train()` uses) and cross-entropy on the same
random batch; "bfloat16" is Keras' `mixed_bfloat16` policy against
`torch.autocast(device, torch.bfloat16)`. PyTorch runs in its faster memory format (channels-last or not, picked
by alternating warm-up rounds and recorded). Each side runs in a worker process of its own, so that neither runs
beside the other's threads, allocations and caches; their measurements alternate over `--rounds` rounds and the
median is kept, so the machine's drift falls on both. Prints the ratios ours / PyTorch and writes them as JSON.
Our inference is `predict_on_batch`, as users call it: TensorFlow traces it with each batch norm that follows a
convolution folded into it (`keras_cnn.layers.norm.FOLD_IN_GRAPH`), PyTorch eager runs its batch norms as they are;
`--fold_bn` adds rows with both sides' weights folded beforehand. `--cpus N` pins both workers to N of the CPUs, where
each framework sizes its thread pools by its own defaults, as on a machine with N cores.

On a GPU both run there: PyTorch on CUDA (cuDNN autotuning on, float32 matrix products in TF32 as cuDNN's
convolutions already are), ours on whichever backend `KERAS_BACKEND` names (JAX on a machine without
TensorFlow), whose train step Keras compiles by default there. Timings end with the device synchronized.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags
from common import (
    alternate,
    classes_for,
    define_precisions,
    images_per_s,
    keras_model,
    keras_steps,
    peer_entries,
    pin_to_cpus,
    random_batch,
    torch_device,
    torch_model,
    torch_steps,
    trainable_torch,
    usable_cpus,
    write_results,
)

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "models",
    ["resnet20:32:64", "resnet56:32:64", "densenet_bc:32:64", "resnet50:224:16"],
    "name:image_size:batch_size entries (resnet20/32/44/56/110, densenet_bc, resnet50).",
)
define_precisions()
flags.DEFINE_bool("jit", False, "Compile our steps with XLA (jit_compile=True); else Keras' default ('auto').")
flags.DEFINE_bool(
    "fold_bn",
    False,
    "Also time inference with batch norms folded into the convolutions before them, on both sides (ours: "
    "keras_cnn.fold_batchnorm, as the SavedModel export does; PyTorch: torch.fx.experimental.optimization.fuse).",
)
flags.DEFINE_integer(
    "cpus",
    None,
    "Pin each side's worker to the first this many CPUs the script may run on (Linux's CPU affinity), where both "
    "frameworks size their thread pools by their own defaults, as on a smaller machine. Default: all of them.",
)
flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", lower_bound=1)
flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/vs-pytorch-cpu-2core.json", "JSON results file (written atomically).")
flags.DEFINE_string("_worker", None, "Internal: side:name:size:batch:precision of one side's worker process.")


@flags.validator("cpus")
def _cpus_usable(count: int | None) -> bool:
    if count is None:
        return True
    if not hasattr(os, "sched_setaffinity"):
        raise flags.ValidationError("--cpus pins the workers with Linux's CPU affinity, which this system lacks.")
    usable = usable_cpus()
    if not 1 <= count <= usable:
        raise flags.ValidationError(f"--cpus={count}: this script may run on {usable} CPUs; use 1 to {usable}.")
    return True


def compare(name: str, size: int, batch: int, precision: str, rounds: int, steps: int) -> tuple[list[dict], dict]:
    """Rows of `name` at `precision`, each side in its own `Worker` and their timings alternating over `rounds`,
    and what the PyTorch worker reported about itself."""
    spec, options = f"{name}:{size}:{batch}:{precision}", [f"--jit={FLAGS.jit}", f"--fold_bn={FLAGS.fold_bn}"]
    options += [f"--cpus={FLAGS.cpus}"] if FLAGS.cpus else []
    with Worker(WORKERS[0], spec, options) as ours, Worker(WORKERS[1], spec, options) as theirs:
        if ours.info["trainable_params"] != theirs.info["trainable_params"]:
            counts = f"{ours.info['trainable_params']:,} trainable here, {theirs.info['trainable_params']:,} in PyTorch"
            raise RuntimeError(f"{name} is not the same network in both: {counts}.")
        samples = {(mode, side): [] for mode in ours.info["modes"] for side in WORKERS}
        for _ in range(rounds):
            for mode in ours.info["modes"]:
                for worker in (ours, theirs):
                    samples[mode, worker.side].append(worker.time(mode, steps))
    rows = []
    for mode in ours.info["modes"]:
        k, t = (statistics.median(s["img_s"] for s in samples[mode, side]) for side in WORKERS)
        switches = {side: median_or_none([s["switches_per_step"] for s in samples[mode, side]]) for side in WORKERS}
        rows.append(
            {
                "model": name,
                "image_size": size,
                "batch_size": batch,
                "precision": precision,
                "mode": mode,
                "keras_cnn_img_s": round(k, 1),
                "pytorch_img_s": round(t, 1),
                "ratio": round(k / t, 3),
                "keras_cnn_switches_per_step": switches["keras_cnn"],
                "pytorch_switches_per_step": switches["pytorch"],
                "torch_channels_last": theirs.info["channels_last"],
                "trainable_params": ours.info["trainable_params"],
                "jit": ours.info["jit"],
            }
        )
    return rows, theirs.info


class Worker:
    """One side of a comparison in a process of its own (`--_worker`), which builds and warms up its steps and then
    times `steps` of a mode whenever asked, so that neither framework's threads, allocations or caches share a
    process with the other's. Sharing one slowed PyTorch: its float32 ResNet-20 training ran 551-576 images/s there
    against 651-675 in a process of its own, alternating in one session (benchmarks/README.md, "One process per
    side")."""

    def __init__(self, side: str, spec: str, options: list[str] = ()):
        self.side, self.spec, self.options = side, spec, list(options)

    def __enter__(self) -> Worker:
        self.log = tempfile.TemporaryFile("w+")
        command = [sys.executable, __file__, f"--_worker={self.side}:{self.spec}", *self.options]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.info = self._reply()
        return self

    def time(self, mode: str, steps: int) -> dict:
        """{"img_s", "switches_per_step"} of `steps` steps of `mode` after one untimed step, which absorbs the other
        side's last spinning (switches: the worker's threads' context switches, None off Linux)."""
        self.process.stdin.write(f"{mode} {steps}\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self):
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        self.process.wait()
        self.log.seek(0)
        raise RuntimeError(f"The {self.side} worker for {self.spec} failed:\n{self.log.read()[-3000:]}")

    def __exit__(self, *exc_info) -> None:
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


#: What starts a worker's reply on its standard output (anything else there is a library's print).
REPLY = "@reply "
WORKERS = ("keras_cnn", "pytorch")
#: Alternating rounds of two training steps in each memory format, of which PyTorch keeps the faster by median: one
#: round of two steps picked NCHW for ResNet-56 in bfloat16 once, whose steps then ran 354 images/s against 415-423
#: in channels-last in the runs around it (AMX-bf16 CPU).
LAYOUT_ROUNDS = 3


def serve(spec: str) -> None:
    """`--_worker=side:name:size:batch:precision`: build and warm up that side's steps, say what was built, then answer
    each `mode steps` line on standard input with the images/s of that many steps."""
    side, name, size, batch, precision = spec.split(":")
    size, batch = int(size), int(batch)
    if FLAGS.cpus:  # before either framework starts its thread pools, which size themselves by the CPUs at hand
        pin_to_cpus(FLAGS.cpus)
    build = keras_cnn_side if side == "keras_cnn" else pytorch_side
    steps, sync, info = build(name, size, batch, precision)
    for step in steps.values():
        step()
    print(REPLY + json.dumps({**info, "modes": list(steps), "pid": os.getpid(), "cpus": usable_cpus()}), flush=True)
    for line in sys.stdin:
        mode, count = line.split()
        steps[mode]()
        before = context_switches()
        rate = images_per_s(steps[mode], batch, int(count), sync)
        switches = None if before is None else (context_switches() - before) / int(count)
        print(REPLY + json.dumps({"img_s": rate, "switches_per_step": switches}), flush=True)


def context_switches() -> int | None:
    """Context switches, voluntary and not, of all this process's threads so far (Linux's /proc), else None."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    total = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/status") as status:
                total += sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)
        except OSError:  # a thread that ended meanwhile
            continue
    return total


def median_or_none(values: list) -> float | None:
    return None if None in values else round(statistics.median(values), 1)


def keras_cnn_side(name: str, size: int, batch: int, precision: str):
    """Our `name` under Keras' float32 or mixed_bfloat16 policy: its steps (train, inference and, with --fold_bn,
    inference with the batch norms folded beforehand), a no-op sync (they return host values) and what it is."""
    import keras

    from keras_cnn.complexity import trainable_params
    from keras_cnn.fold import fold_batchnorm

    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    x, y = random_batch(batch, size, classes_for(size))
    model = keras_model(name, size, classes_for(size))
    infer, train = keras_steps(model, x, y, jit=FLAGS.jit)
    steps = {"train": train, "inference": infer}
    if FLAGS.fold_bn:
        steps["inference_folded"] = keras_steps(fold_batchnorm(model), x, y)[0]
    return steps, lambda: None, {"trainable_params": trainable_params(model), "jit": bool(model.jit_compile)}


def pytorch_side(name: str, size: int, batch: int, precision: str):
    """The same network in PyTorch eager (bf16 under `torch.autocast`), in the memory format whose training step ran
    faster over `LAYOUT_ROUNDS` alternating warm-up rounds: its steps, the device sync and what it is."""
    import torch

    if torch_device() == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        sync = torch.cuda.synchronize
    else:
        torch.set_num_threads(usable_cpus())
        sync = lambda: None  # noqa: E731
    classes, bf16 = classes_for(size), precision == "bfloat16"
    x, y = random_batch(batch, size, classes)
    layouts = {}
    for channels_last in (False, True):  # each layout its own copy of the same seeded weights
        torch.manual_seed(0)
        net = torch_model(name, classes)
        layouts[channels_last] = torch_steps(net, x, y, bf16=bf16, channels_last=channels_last)
    trains = {layout: train for layout, (_, train) in layouts.items()}
    rates = alternate(trains, batch, 2, LAYOUT_ROUNDS, sync)  # one untimed step first in each round
    channels_last = max(rates, key=rates.get)
    steps = {"train": layouts[channels_last][1], "inference": layouts[channels_last][0]}
    if FLAGS.fold_bn:
        from torch.fx.experimental.optimization import fuse

        torch.manual_seed(0)
        folded = fuse(torch_model(name, classes).eval())
        steps["inference_folded"] = torch_steps(folded, x, y, bf16=bf16, channels_last=channels_last)[0]
    info = {
        "trainable_params": trainable_torch(net),
        "channels_last": channels_last,
        "torch": torch.__version__,
        "torch_device": torch_device(),
        "gpu": torch.cuda.get_device_name() if torch_device() == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
    }
    return steps, sync, info


def backend_version() -> dict[str, str]:
    """{name: version} of the library behind Keras (TensorFlow, JAX or PyTorch)."""
    import importlib

    import keras

    name = keras.backend.backend()
    return {name: importlib.import_module(name).__version__}


def main(argv: list[str]) -> None:
    del argv
    if FLAGS._worker:
        return serve(FLAGS._worker)
    rows = []
    for name, size, batch in peer_entries(FLAGS.models):
        for precision in FLAGS.precisions:
            new, peer = compare(name, size, batch, precision, FLAGS.rounds, FLAGS.steps)
            rows += new
            for r in new:
                print(
                    f"{r['model']:12s} {r['precision']:9s} {r['mode']:16s} keras_cnn {r['keras_cnn_img_s']:8.1f} "
                    f"pytorch {r['pytorch_img_s']:8.1f} img/s  ratio {r['ratio']:.3f}",
                    flush=True,
                )
            write_results(  # after every pair, so an interrupted run keeps what it measured
                FLAGS.output,
                rows,
                **backend_version(),
                **{key: peer[key] for key in ("torch", "torch_device", "gpu", "torch_threads")},
                processes="one per side",
                cpus=peer["cpus"],
                steps=FLAGS.steps,
                rounds=FLAGS.rounds,
            )


if __name__ == "__main__":
    app.run(main)
