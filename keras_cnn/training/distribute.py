"""One code path for one device, several GPUs and several machines (`tf.distribute`)."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """ "auto": MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster, MirroredStrategy when more than
    one GPU is visible, else the default (one device). Create it before any other TensorFlow work."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {list(STRATEGIES)}.")
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "strategy 'multi_worker' reads the cluster from the TF_CONFIG environment variable; it is unset."
            )
        _patch_keras_multi_worker_logs()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def task() -> tuple[str, int]:
    """(task type, index) of this process in `TF_CONFIG`; ("chief", 0) when there is no cluster."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    return config.get("type", "chief"), int(config.get("index", 0))


def is_chief() -> bool:
    """The process that writes the run's files: the chief, or worker 0 of a cluster without one."""
    kind, index = task()
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


def _patch_keras_multi_worker_logs() -> None:
    """Keras 3 (through 3.15) averages each step's logs across workers with `strategy.reduce("MEAN", v,
    axis=0)`, which fails for the scalar loss and metrics under MultiWorkerMirroredStrategy ("Invalid
    reduction dimension 0 for input with 0 dimensions"; keras-team/keras#20585). Scalars are averaged over
    replicas instead (axis=None); everything else goes to Keras unchanged."""
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "keras_cnn_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.keras_cnn_patch = True
    trainer.reduce_per_replica = reduce_per_replica
