"""Our training step's oneDNN calls against PyTorch's on the same network, timed by oneDNN itself, in one run.

    python benchmarks/onednn_calls.py
    python benchmarks/onednn_calls.py --models resnet56:32:64 --precisions float32

Where `vs_pytorch.py` says how far apart the two whole steps are, this says in which kernels. Both frameworks run
their convolutions in oneDNN (TensorFlow its batch norms and pooling too), and oneDNN logs the wall time of every
call it executes when `ONEDNN_VERBOSE=1` (https://uxlfoundation.github.io/oneDNN/dev_guide_verbose.html). Each
side's training step (the networks, batch and precisions of `vs_pytorch.py`) runs in its own process under that
setting: warm-up steps first, then `--steps` logged steps, of which the one with the median oneDNN time is kept.
Its calls are summed per primitive kind and direction (convolution backward_weights, reorder, ...) and printed for
both sides, with the ratio ours / PyTorch and each side's oneDNN version and threading runtime. TensorFlow runs
with `--inter_op` inter-op threads (default 1: one op at a time, as PyTorch eager runs them, so that concurrent ops
do not lengthen each other's calls).
"""

from __future__ import annotations

import collections
import ctypes
import os
import subprocess
import sys

from absl import app, flags
from common import (
    classes_for,
    define_precisions,
    keras_model,
    keras_steps,
    peer_entries,
    random_batch,
    torch_model,
    torch_steps,
    usable_cpus,
    write_results,
)

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet20:32:64"], "name:image_size:batch_size entries, as in vs_pytorch.py.")
define_precisions()
flags.DEFINE_integer(
    "steps", 5, "Logged training steps per side (after 3 warm-up steps); the median is kept.", lower_bound=1
)
flags.DEFINE_integer("inter_op", 1, "TensorFlow's inter-op threads (0: TensorFlow's default).", lower_bound=0)
flags.DEFINE_string("output", "benchmarks/results/onednn-calls-cpu-2core.json", "JSON results file (atomic).")
flags.DEFINE_string("_child", None, "Internal: side:name:size:batch:precision of a logging subprocess.")

#: Written to standard output, past every buffered oneDNN line, before and after each logged step.
STEP = "==== logged step"


def mark(line: str) -> None:
    """`line` on standard output after everything C and Python have buffered there, so it falls between the right
    oneDNN lines."""
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)
    os.write(1, f"{line}\n".encode())


def child(spec: str) -> None:
    """One side's warm-up and logged training steps (oneDNN logging is on in this process's environment)."""
    side, name, size, batch, precision = spec.split(":")
    size, batch = int(size), int(batch)
    classes = classes_for(size)
    x, y = random_batch(batch, size, classes)
    if side == "keras_cnn":
        import keras
        import tensorflow as tf

        if FLAGS.inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op)
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        keras.utils.set_random_seed(0)
        _, train = keras_steps(keras_model(name, size, classes), x, y)
    else:
        import torch

        torch.set_num_threads(usable_cpus())
        torch.manual_seed(0)
        _, train = torch_steps(torch_model(name, classes), x, y, bf16=precision == "bfloat16", channels_last=True)
    for _ in range(3):
        train()
    for _ in range(FLAGS.steps):
        mark(STEP)
        train()
    mark(STEP)


def step_calls(log: str) -> dict:
    """{(kind, direction): [calls, ms, implementations]} of the oneDNN calls in `log`, lines of the form
    onednn_verbose,[v1,]primitive,exec,cpu,<kind>,<implementation>,<direction>,...,<ms>."""
    groups = collections.defaultdict(lambda: [0, 0.0, []])
    for line in log.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields:
            kind, impl, direction = fields[fields.index("exec") + 2 : fields.index("exec") + 5]
            group = groups[kind, direction]
            group[0] += 1
            group[1] += float(fields[-1])
            group[2] = sorted({*group[2], impl})
    return dict(groups)


def logged_calls(side: str, name: str, size: int, batch: int, precision: str) -> tuple[dict, dict]:
    """(`step_calls` of one side's logged step with the median oneDNN time, {"version", "runtime"} of its oneDNN)."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    spec = f"--_child={side}:{name}:{size}:{batch}:{precision}"
    command = [sys.executable, __file__, spec, f"--steps={FLAGS.steps}", f"--inter_op={FLAGS.inter_op}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    sections = done.stdout.split(STEP)
    if done.returncode or len(sections) != FLAGS.steps + 2:
        raise RuntimeError(f"Logging {side}'s {name} step failed:\n{done.stderr[-3000:]}")
    info = {}
    for line in sections[0].splitlines():  # ...,info,oneDNN v3.7.3 (commit ...) and ...,info,cpu,runtime:OpenMP,...
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "info" in fields:
            text = ",".join(fields[fields.index("info") + 1 :])
            if text.startswith("oneDNN v"):
                info["version"] = text.split()[1]
            elif text.startswith("cpu,runtime:"):
                info["runtime"] = text.split(",")[1].removeprefix("runtime:")
    steps = sorted((step_calls(section) for section in sections[1:-1]), key=lambda s: sum(g[1] for g in s.values()))
    return steps[len(steps) // 2], info


def compare(name: str, size: int, batch: int, precision: str) -> list[dict]:
    ours, ours_info = logged_calls("keras_cnn", name, size, batch, precision)
    theirs, their_info = logged_calls("pytorch", name, size, batch, precision)
    print(
        f"{name} {precision}: keras_cnn oneDNN {ours_info.get('version')} ({ours_info.get('runtime')}), "
        f"PyTorch oneDNN {their_info.get('version')} ({their_info.get('runtime')}); per training step:"
    )
    rows = []
    for kind, direction in sorted(ours.keys() | theirs.keys(), key=lambda k: -ours.get(k, [0, 0.0])[1]):
        ours_calls, ours_ms, ours_impls = ours.get((kind, direction), [0, 0.0, []])
        their_calls, their_ms, their_impls = theirs.get((kind, direction), [0, 0.0, []])
        row = {
            "model": name,
            "image_size": size,
            "batch_size": batch,
            "precision": precision,
            "primitive": kind,
            "direction": direction,
            "keras_cnn_calls": ours_calls,
            "keras_cnn_ms": round(ours_ms, 3),
            "pytorch_calls": their_calls,
            "pytorch_ms": round(their_ms, 3),
            "ratio": round(ours_ms / their_ms, 3) if their_ms else None,
            "keras_cnn_implementations": ours_impls,
            "pytorch_implementations": their_impls,
            "keras_cnn_onednn": ours_info,
            "pytorch_onednn": their_info,
        }
        rows.append(row)
        ratio = f"{row['ratio']:.3f}" if row["ratio"] else "  -  "
        print(
            f"  {kind:20s} {direction:17s} keras_cnn {ours_calls:5.0f} calls {ours_ms:7.2f} ms   "
            f"pytorch {their_calls:5.0f} calls {their_ms:7.2f} ms   ratio {ratio}",
            flush=True,
        )
    for side, steps in (("keras_cnn", ours), ("pytorch", theirs)):
        calls, ms = sum(v[0] for v in steps.values()), sum(v[1] for v in steps.values())
        print(f"  {side}: {calls:.0f} oneDNN calls, {ms:.2f} ms per step")
    return rows


def main(argv: list[str]) -> None:
    del argv
    if FLAGS._child:
        return child(FLAGS._child)
    import torch

    rows = []
    for name, size, batch in peer_entries(FLAGS.models):
        for precision in FLAGS.precisions:
            rows += compare(name, size, batch, precision)
    write_results(
        FLAGS.output,
        rows,
        torch=torch.__version__,
        steps=FLAGS.steps,
        tensorflow_inter_op_threads=FLAGS.inter_op or "default",
    )


if __name__ == "__main__":
    app.run(main)
