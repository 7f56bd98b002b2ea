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
