"""Peak training memory and step time of DenseNet in normal vs memory-efficient mode, in one run.

    python benchmarks/densenet_memory.py

Each (model, mode) trains in a fresh subprocess so that its peak memory is its own: the GPU allocator's peak
when a GPU trains (JAX or TensorFlow backend), else the process's peak resident set (VmHWM). The figure
reported is that peak minus the memory in use after building and compiling, i.e. what training adds. Step
time is the median of the timed steps after one warm-up step. Prints the efficient/normal ratios and writes
JSON to --output. `KERAS_BACKEND=jax` runs it on Keras' JAX backend (used for the GPU figures).
Target (issue 3): at most half the memory at most 1.3x the time.
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
flags.DEFINE_string("output", "benchmarks/results/densenet-memory-cpu-2core.json", "JSON results (written atomically).")
flags.DEFINE_string("_child", None, "Internal: name:size:batch:mode of one measurement.")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only).")


def _memory_probe():
    """(what is measured, bytes in use now, peak bytes so far) for the device that trains: the GPU's allocator
    under JAX or TensorFlow when a GPU is visible, else this process's resident set."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return (
                f"gpu:{device.device_kind}",
                lambda: device.memory_stats()["bytes_in_use"],
                lambda: device.memory_stats()["peak_bytes_in_use"],
            )
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            info = lambda key: tf.config.experimental.get_memory_info(gpus[0].name)[key]  # noqa: E731
            return f"gpu:{gpus[0].name}", lambda: info("current"), lambda: info("peak")
    return "cpu:resident-set", lambda: _status_kib("VmRSS") * 1024, lambda: _status_kib("VmHWM") * 1024


def _measure(name: str, size: int, batch: int, efficient: bool, steps: int) -> dict:
    import keras
    import numpy as np

    import keras_cnn

    keras.utils.set_random_seed(0)
    model = keras_cnn.create_model(name, input_shape=(size, size, 3), memory_efficient=efficient)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    y = np.zeros((batch,), "int32")
    device, current, peak = _memory_probe()
    baseline = current()
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(model.train_on_batch(x, y))  # float(): wait for the device to finish the step
        times.append(time.perf_counter() - start)
    return {"peak_training_mib": (peak() - baseline) / 2**20, "step_s": statistics.median(times), "device": device}


def main(argv: list[str]) -> None:
    del argv
    if FLAGS._child:
        name, size, batch, mode = FLAGS._child.split(":")
        print(json.dumps(_measure(name, int(size), int(batch), mode == "efficient", FLAGS.steps)))
        return
    rows = []
    for name, size, batch in model_entries(FLAGS.models):
        result = {}
        for mode in ("normal", "efficient"):
            began = time.perf_counter()
            result[mode] = measure_in_child(__file__, f"{name}:{size}:{batch}:{mode}", FLAGS.steps)
            print(f"{name} {mode}: {time.perf_counter() - began:.0f} s in all (build, compile, steps)", flush=True)
        rows.append({
            "model": name, "image_size": size, "batch_size": batch,
            "normal_mib": round(result["normal"]["peak_training_mib"]),
            "efficient_mib": round(result["efficient"]["peak_training_mib"]),
            "normal_step_s": round(result["normal"]["step_s"], 3),
            "efficient_step_s": round(result["efficient"]["step_s"], 3),
            "memory_ratio": round(result["efficient"]["peak_training_mib"] / result["normal"]["peak_training_mib"], 3),
            "time_ratio": round(result["efficient"]["step_s"] / result["normal"]["step_s"], 3),
            "device": result["normal"]["device"],
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)  # each row as soon as it is measured
    print(f"{'model':20s} {'size':>4s} {'batch':>5s} {'normal MiB':>10s} {'efficient MiB':>13s} {'mem ratio':>9s}"
          f" {'normal s':>8s} {'efficient s':>11s} {'time ratio':>10s}")  # fmt: skip
    for r in rows:
        sizes = f"{r['model']:20s} {r['image_size']:4d} {r['batch_size']:5d}"
        memory = f"{r['normal_mib']:10d} {r['efficient_mib']:13d} {r['memory_ratio']:9.3f}"
        print(f"{sizes} {memory} {r['normal_step_s']:8.3f} {r['efficient_step_s']:11.3f} {r['time_ratio']:10.3f}")
    from keras_cnn.io import write_json_atomic  # here: the parent process needs no backend until now

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    write_json_atomic(FLAGS.output, {"steps": FLAGS.steps, "backend": backend, "rows": rows})
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
