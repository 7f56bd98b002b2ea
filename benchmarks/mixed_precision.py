"""Training throughput under mixed precision against float32, for the same model in the same run.

    python benchmarks/mixed_precision.py --models resnet50:224:64 --policies mixed_bfloat16,mixed_float16

Each (model, policy) trains in a fresh subprocess (SGD momentum, `train_on_batch`, 2 warm-up steps, then
the median of --steps timed steps) and the script prints images/s and the ratio to float32. The classifier
stays float32 (keras_cnn builds `predictions` in float32 under any policy). Run on a GPU: on CPU, half
precision is emulated and slower. `KERAS_BACKEND=jax` runs it on Keras' JAX backend.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags
from common import measure_in_child, model_entries

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet50:224:64", "densenet121:224:64"], "name:image_size:batch_size entries.")
flags.DEFINE_list("policies", ["mixed_bfloat16", "mixed_float16"], "Policies compared with float32.")
flags.DEFINE_integer("steps", 10, "Timed training steps.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/mixed-precision.json", "JSON results (written atomically).")
flags.DEFINE_string("_child", None, "Internal: name:size:batch:policy of one measurement.")


def _measure(name: str, size: int, batch: int, policy: str, steps: int) -> float:
    import keras
    import numpy as np

    import keras_cnn

    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = keras_cnn.create_model(name, input_shape=(size, size, 3))
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    y = np.zeros((batch,), "int32")
    for _ in range(2):
        float(model.train_on_batch(x, y))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(model.train_on_batch(x, y))  # float(): wait for the device
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main(argv: list[str]) -> None:
    del argv
    if FLAGS._child:
        name, size, batch, policy = FLAGS._child.split(":")
        print(json.dumps(_measure(name, int(size), int(batch), policy, FLAGS.steps)))
        return
    rows = []
    for name, size, batch in model_entries(FLAGS.models):
        speed = {
            p: measure_in_child(__file__, f"{name}:{size}:{batch}:{p}", FLAGS.steps)
            for p in ["float32", *FLAGS.policies]
        }
        for policy in FLAGS.policies:
            rows.append(
                {
                    "model": name,
                    "image_size": size,
                    "batch_size": batch,
                    "policy": policy,
                    "float32_img_s": round(speed["float32"], 1),
                    "policy_img_s": round(speed[policy], 1),
                    "ratio": round(speed[policy] / speed["float32"], 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"{'model':14s} {'size':>4s} {'batch':>5s} {'policy':>15s} {'float32 img/s':>13s} {'img/s':>9s} {'ratio':>6s}"
    )
    for r in rows:
        print(
            f"{r['model']:14s} {r['image_size']:4d} {r['batch_size']:5d} {r['policy']:>15s} "
            f"{r['float32_img_s']:13.1f} {r['policy_img_s']:9.1f} {r['ratio']:6.3f}"
        )
    from keras_cnn.io import write_json_atomic

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    write_json_atomic(FLAGS.output, {"steps": FLAGS.steps, "backend": backend, "rows": rows})
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
