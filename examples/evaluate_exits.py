"""Evaluate a multi-exit model (MSDNet) as the paper does: anytime accuracy of every exit and the budgeted-batch
curve (thresholds fitted so the exit fractions follow q^k, then accuracy against average cost), then serve one
budget with keras_cnn.early_exit.EarlyExit in a tf.function (as a SavedModel serves it), which stops each
image at its exit, and time it against the whole model on the same images.

    python examples/train_cifar.py --model msdnet_cifar10_anytime --output_dir runs/msdnet
    python examples/evaluate_exits.py --saved_model runs/msdnet/model.keras --dataset digits

Without held-out training images, a seeded --threshold_fraction of the evaluation split fits the thresholds and
the rest is measured. Writes the report as JSON to --output (default: exits.json beside the model).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from absl import app, flags
from common import DATASETS, run, user_errors

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "The trained multi-exit .keras model (loaded with safe_mode).")
flags.DEFINE_enum("dataset", "digits", DATASETS, "Evaluation data: its validation/test split.")
flags.DEFINE_string("data_dir", None, "Where --dataset lives (TFDS data_dir, CIFAR archive, image folder).")
flags.DEFINE_float("threshold_fraction", 0.5, "Share of the split that fits the thresholds.", lower_bound=0)
flags.DEFINE_float("serve_q", 1.0, "The budget level q that EarlyExit serves (q < 1 favours early exits).")
flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the data split and of the threshold/test split.")
flags.DEFINE_string("output", None, "Report path (default: exits.json beside --saved_model).")
flags.DEFINE_bool("overwrite", False, "Replace an existing report.")
flags.mark_flag_as_required("saved_model")


def main(argv: list[str]) -> None:
    del argv
    output = FLAGS.output or os.path.join(os.path.dirname(os.path.abspath(FLAGS.saved_model)), "exits.json")
    if os.path.exists(output) and not FLAGS.overwrite:
        raise app.UsageError(f"{output!r} exists: pass --overwrite or another --output.")
    if not os.path.isfile(FLAGS.saved_model):
        raise app.UsageError(f"--saved_model {FLAGS.saved_model!r} is not a file.")
    from keras_cnn import early_exit  # before TensorFlow loads: the package's oneDNN setting (keras_cnn.onednn)

    # isort: split
    import numpy as np
    import tensorflow as tf

    from keras_cnn.data import load_dataset
    from keras_cnn.io import load_model, write_json_atomic

    model = load_model(FLAGS.saved_model)
    if len(model.outputs) < 2:
        raise app.UsageError(f"{FLAGS.saved_model!r} has one output; early exits need a multi-exit model (MSDNet).")
    with user_errors():
        data = load_dataset(
            FLAGS.dataset,
            data_dir=FLAGS.data_dir,
            image_size=model.input_shape[1],
            channels=model.input_shape[3],
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
        )
        levels = sorted({*early_exit.DEFAULT_Q, FLAGS.serve_q})
        report = early_exit.evaluate(
            model, data.validation, threshold_fraction=FLAGS.threshold_fraction, seed=FLAGS.seed, q=levels
        )

    print(f"{len(report.test_indices)} test images, thresholds fitted on {report.threshold_samples}")
    print("exit  cost (M ops, reference)  EarlyExit cost  accuracy  ensemble")
    columns = report.costs, report.lazy_costs, report.anytime.accuracy, report.anytime.ensemble_accuracy
    for k, (cost, lazy, acc, ens) in enumerate(zip(*columns, strict=True), start=1):
        print(f"{k:>4}  {cost.ops / 1e6:>23.2f}  {lazy.ops / 1e6:>14.2f}  {acc:>8.2%}  {ens:>8.2%}")
    print("budgeted batch:     q  cost (M ops)  accuracy  exit fractions")
    for point in report.budget[:: max(1, len(report.budget) // 10)]:
        shares = " ".join(f"{f:.2f}" for f in point.test_fractions)
        print(f"{point.q:>20.2f}  {point.cost / 1e6:>12.2f}  {point.accuracy:>8.2%}  {shares}")

    # Serve that budget: EarlyExit on the measured images, against the full model on the same images.
    point = next(p for p in report.budget if p.q == FLAGS.serve_q)
    runner = early_exit.EarlyExit(model, point.thresholds)
    serve = tf.function(runner.__call__, input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    images = np.concatenate([x for x, _ in data.validation])
    labels = np.concatenate([y for _, y in data.validation])
    test = np.asarray(report.test_indices)
    serve(images[test])  # run both graphs once on the timed batch (tracing, first-call costs) before timing
    model.predict(images[test], batch_size=len(test), verbose=0)
    start = time.perf_counter()
    served = serve(images[test])
    early_s = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(images[test], batch_size=len(test), verbose=0)
    full_s = time.perf_counter() - start
    exits = np.asarray(served["exits"])
    served_accuracy = float(np.mean(np.asarray(served["classes"]) == labels[test]))
    exit_counts = np.bincount(exits, minlength=len(model.outputs)).tolist()
    lazy_ops = float(np.mean([report.lazy_costs[k].ops for k in exits]))
    print(
        f"EarlyExit at q={FLAGS.serve_q}: accuracy {served_accuracy:.2%} (budget table: {point.accuracy:.2%}), "
        f"exits {exit_counts}, "
        f"mean {lazy_ops / 1e6:.2f} M ops (all exits: {report.lazy_costs[-1].ops / 1e6:.2f}), "
        f"time {early_s:.3f} s vs {full_s:.3f} s for the full model ({early_s / full_s:.2f}x)"
    )

    report = json.loads(json.dumps(dataclasses.asdict(report)), parse_constant=str)  # +-Infinity -> strings
    write_json_atomic(
        output,
        {
            "model": model.name,
            "saved_model": FLAGS.saved_model,
            "dataset": FLAGS.dataset,
            **report,
            "served": {
                "q": FLAGS.serve_q,
                "thresholds": [str(t) for t in point.thresholds],
                "accuracy": served_accuracy,
                "exit_counts": exit_counts,
                "mean_ops": lazy_ops,
                "seconds": early_s,
                "full_model_seconds": full_s,
            },
        },
    )
    print(f"report: {output}")


if __name__ == "__main__":
    run(main)
