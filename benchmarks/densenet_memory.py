"""Peak training memory and step time of DenseNet in normal vs memory-efficient mode, in one run.

    python benchmarks/densenet_memory.py

Memory: each (model, mode) trains in a fresh subprocess so that its peak is its own, read from the allocator
that holds the tensors: the GPU allocator when a GPU trains (JAX or TensorFlow backend), TensorFlow's CPU
allocator otherwise (its BFC allocator, switched on with TF_CPU_ALLOCATOR_USE_BFC, reports peaks), and the
process's peak resident set (VmHWM) only where neither reports. The peak is taken over the timed steps, after
one warm-up step whose tracing, graph optimization and XLA compilation would otherwise count (GBs of host
memory for DenseNet-264, and not training memory); the figure is that peak minus the memory in use after
building the model, i.e. what training adds (gradients, optimizer slots, activations).

Time: the median step. On the CPU the BFC allocator changes the speed (it sped up the normal mode's
DenseNet-264 step by a fifth and not the efficient one's), so one more subprocess, with TensorFlow's default
allocator, builds both modes and times them in alternating rounds (--rounds of --steps steps each), so that
the machine's drift between processes does not enter the ratio.

`--jit` compiles the step with XLA, as `train(..., jit=True)` does (off by default, as in `train`). Prints the
efficient/normal ratios and writes JSON to --output. `KERAS_BACKEND=jax` runs it on Keras' JAX backend (used for
the GPU figures). Target (issue 3): at most half the memory at no more than 1.3x the time.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags
from common import measure_in_child, model_entries

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["densenet_bc_190_40:32:8", "densenet264:224:4"], "name:image_size:batch_size entries.")
flags.DEFINE_integer("steps", 3, "Timed training steps after one warm-up step.", lower_bound=1)
flags.DEFINE_bool("jit", False, "Compile the training step with XLA (the peak excludes the compilation).")
flags.DEFINE_string("output", "benchmarks/results/densenet-memory-cpu-2core.json", "JSON results (written atomically).")
flags.DEFINE_integer("rounds", 3, "CPU timing: alternating rounds of --steps steps per mode.", lower_bound=1)
flags.DEFINE_string("_child", None, "Internal: name:size:batch:normal|efficient|time, one measurement.")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only).")


def _memory_probe():
    """(what is measured, bytes in use now, peak bytes since the last reset, reset) for the device that trains:
    the GPU's allocator under JAX or TensorFlow when a GPU is visible, TensorFlow's CPU allocator, else this
    process's resident set."""
    import keras

    def clear_resident_peak():  # Linux: writing 5 resets VmHWM to the current resident set
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            # JAX cannot reset its peak; the warm-up step's is that of the same computation.
            return (
                f"gpu:{device.device_kind}",
                lambda: device.memory_stats()["bytes_in_use"],
                lambda: device.memory_stats()["peak_bytes_in_use"],
                lambda: None,
            )
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        name = gpus[0].name if gpus else "CPU:0"
        try:
            tf.config.experimental.get_memory_info(name)
        except ValueError:  # no allocator statistics (a CPU without the BFC allocator)
            pass
        else:
            info = lambda key: tf.config.experimental.get_memory_info(name)[key]  # noqa: E731
            return (
                f"{'gpu' if gpus else 'cpu'}:tf-allocator",
                lambda: info("current"),
                lambda: info("peak"),
                lambda: tf.config.experimental.reset_memory_stats(name),
            )
    return (
        "cpu:resident-set",
        lambda: _status_kib("VmRSS") * 1024,
        lambda: _status_kib("VmHWM") * 1024,
        clear_resident_peak,
    )


def _compiled(name: str, size: int, batch: int, efficient: bool, jit: bool):
    """(model, x, y): the model built and compiled as every measurement trains it, and one batch."""
    import keras
    import numpy as np

    import keras_cnn

    keras.utils.set_random_seed(0)
    model = keras_cnn.create_model(name, input_shape=(size, size, 3), memory_efficient=efficient)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy", jit_compile=jit)
    x = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    return model, x, np.zeros((batch,), "int32")


def _step(model, x, y) -> float:
    start = time.perf_counter()
    float(model.train_on_batch(x, y))  # float(): wait for the device to finish the step
    return time.perf_counter() - start


def _memory(name: str, size: int, batch: int, efficient: bool, steps: int, jit: bool) -> dict:
    """One mode's peak over `steps` steps after a warm-up (tracing, graph optimization, XLA compilation), with
    TensorFlow's CPU allocator switched to BFC, whose peaks it reports, and the median step."""
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow loads
    model, x, y = _compiled(name, size, batch, efficient, jit)
    device, current, peak, reset = _memory_probe()
    baseline = current()
    model.train_on_batch(x, y)
    reset()
    times = [_step(model, x, y) for _ in range(steps)]
    return {"peak_training_mib": (peak() - baseline) / 2**20, "step_s": statistics.median(times), "device": device}


def _timing(name: str, size: int, batch: int, steps: int, rounds: int, jit: bool) -> dict:
    """Median step of both modes with TensorFlow's default allocator, in one process that alternates `rounds`
    rounds of `steps` steps per mode, so that the machine's drift falls on both alike."""
    modes = {mode: _compiled(name, size, batch, mode == "efficient", jit) for mode in ("normal", "efficient")}
    times = {mode: [] for mode in modes}
    for model, x, y in modes.values():
        model.train_on_batch(x, y)
    for _ in range(rounds):
        for mode, (model, x, y) in modes.items():
            times[mode] += [_step(model, x, y) for _ in range(steps)]
    return {mode: statistics.median(t) for mode, t in times.items()}


def main(argv: list[str]) -> None:
    del argv
    if FLAGS._child:
        name, size, batch, probe = FLAGS._child.split(":")
        if probe == "time":
            print(json.dumps(_timing(name, int(size), int(batch), FLAGS.steps, FLAGS.rounds, FLAGS.jit)))
        else:
            print(json.dumps(_memory(name, int(size), int(batch), probe == "efficient", FLAGS.steps, FLAGS.jit)))
        return
    rows = []
    for name, size, batch in model_entries(FLAGS.models):
        began, child, jit = time.perf_counter(), f"{name}:{size}:{batch}", [f"--jit={FLAGS.jit}"]
        memory = {
            mode: measure_in_child(__file__, f"{child}:{mode}", FLAGS.steps, extra=jit)
            for mode in ("normal", "efficient")
        }
        if memory["normal"]["device"].startswith("cpu"):
            step_s = measure_in_child(__file__, f"{child}:time", FLAGS.steps, extra=[*jit, f"--rounds={FLAGS.rounds}"])
        else:  # a GPU allocator's statistics do not change its speed
            step_s = {mode: memory[mode]["step_s"] for mode in memory}
        print(f"{name}: {time.perf_counter() - began:.0f} s in all (builds, compiles, steps)", flush=True)
        normal_mib, efficient_mib = (memory[mode]["peak_training_mib"] for mode in ("normal", "efficient"))
        rows.append(
            {
                "model": name,
                "image_size": size,
                "batch_size": batch,
                "normal_mib": round(normal_mib),
                "efficient_mib": round(efficient_mib),
                "normal_step_s": round(step_s["normal"], 3),
                "efficient_step_s": round(step_s["efficient"], 3),
                "memory_ratio": round(efficient_mib / normal_mib, 3),
                "time_ratio": round(step_s["efficient"] / step_s["normal"], 3),
                "device": memory["normal"]["device"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)  # each row as soon as it is measured
    print(
        f"{'model':20s} {'size':>4s} {'batch':>5s} {'normal MiB':>10s} {'efficient MiB':>13s} {'mem ratio':>9s}"
        f" {'normal s':>8s} {'efficient s':>11s} {'time ratio':>10s}"
    )
    for r in rows:
        sizes = f"{r['model']:20s} {r['image_size']:4d} {r['batch_size']:5d}"
        memory = f"{r['normal_mib']:10d} {r['efficient_mib']:13d} {r['memory_ratio']:9.3f}"
        print(f"{sizes} {memory} {r['normal_step_s']:8.3f} {r['efficient_step_s']:11.3f} {r['time_ratio']:10.3f}")
    from keras_cnn.io import write_json_atomic

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    write_json_atomic(FLAGS.output, {"steps": FLAGS.steps, "backend": backend, "jit": FLAGS.jit, "rows": rows})
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
