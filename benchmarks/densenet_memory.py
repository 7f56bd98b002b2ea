"""Peak training memory and step time of DenseNet in normal vs memory-efficient mode, in one run.

    python benchmarks/densenet_memory.py

Each (model, mode) trains in a fresh subprocess so that its peak resident memory (VmHWM) is its own; the
figure reported is that peak minus the resident size after building and compiling, i.e. what training
adds. Step time is the median of the timed steps after one warm-up step. Prints the efficient/normal
ratios and writes JSON to --output. Target (issue 3): at most half the memory at most 1.3x the time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from absl import app, flags

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


def _measure(name: str, size: int, batch: int, efficient: bool, steps: int) -> dict:
    import keras
    import numpy as np

    import keras_cnn

    keras.utils.set_random_seed(0)
    model = keras_cnn.create_model(name, input_shape=(size, size, 3), memory_efficient=efficient)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    y = np.zeros((batch,), "int32")
    baseline = _status_kib("VmRSS")
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return {"peak_training_mib": (_status_kib("VmHWM") - baseline) / 1024, "step_s": statistics.median(times)}


def main(argv: list[str]) -> None:
    del argv
    if FLAGS._child:
        name, size, batch, mode = FLAGS._child.split(":")
        print(json.dumps(_measure(name, int(size), int(batch), mode == "efficient", FLAGS.steps)))
        return
    rows = []
    for entry in FLAGS.models:
        try:
            name, size, batch = entry.split(":")
            int(size), int(batch)
        except ValueError as err:
            raise app.UsageError(f"--models entries are name:image_size:batch_size; received {entry!r}.") from err
        result = {}
        for mode in ("normal", "efficient"):
            child = [sys.executable, __file__, f"--_child={name}:{size}:{batch}:{mode}", f"--steps={FLAGS.steps}"]
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({
            "model": name, "image_size": int(size), "batch_size": int(batch),
            "normal_mib": round(result["normal"]["peak_training_mib"]),
            "efficient_mib": round(result["efficient"]["peak_training_mib"]),
            "normal_step_s": round(result["normal"]["step_s"], 3),
            "efficient_step_s": round(result["efficient"]["step_s"], 3),
            "memory_ratio": round(result["efficient"]["peak_training_mib"] / result["normal"]["peak_training_mib"], 3),
            "time_ratio": round(result["efficient"]["step_s"] / result["normal"]["step_s"], 3),
        })  # fmt: skip
    print(f"{'model':20s} {'size':>4s} {'batch':>5s} {'normal MiB':>10s} {'efficient MiB':>13s} {'mem ratio':>9s}"
          f" {'normal s':>8s} {'efficient s':>11s} {'time ratio':>10s}")  # fmt: skip
    for r in rows:
        sizes = f"{r['model']:20s} {r['image_size']:4d} {r['batch_size']:5d}"
        memory = f"{r['normal_mib']:10d} {r['efficient_mib']:13d} {r['memory_ratio']:9.3f}"
        print(f"{sizes} {memory} {r['normal_step_s']:8.3f} {r['efficient_step_s']:11.3f} {r['time_ratio']:10.3f}")
    from keras_cnn.io import write_json_atomic  # here: the parent process needs no TensorFlow until now

    write_json_atomic(FLAGS.output, {"steps": FLAGS.steps, "rows": rows})
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
