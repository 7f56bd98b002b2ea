"""MultiWorkerMirroredStrategy from TF_CONFIG: two worker processes on localhost (CPU) train one model."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_cnn.training import is_chief, make_strategy

_WORKER = textwrap.dedent(
    """
    import sys
    from keras_cnn.training import TrainConfig, train

    config = TrainConfig(model="lenet5", epochs=1, batch_size=32, lr=0.002, strategy=sys.argv[2], seed=3,
                         precision="float32", output_dir=sys.argv[1], verbose=0)  # float32: results compared
    metrics = train(config)
    print(metrics["strategy"], metrics["replicas"])
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_the_same_model_in_sync(tmp_path):
    workers = [f"localhost:{_free_port()}" for _ in range(2)]
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        }
        cmd = [sys.executable, "-c", _WORKER, str(tmp_path / "cluster"), "auto"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert all(out.split()[-2:] == ["CollectiveAllReduceStrategy", "2"] for out, _ in outs)
    chief = keras.saving.load_model(tmp_path / "cluster" / "model.keras").get_weights()
    other = keras.saving.load_model(tmp_path / "cluster" / "workers" / "worker1" / "model.keras").get_weights()
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    single = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tmp_path / "single"), "default"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    alone = keras.saving.load_model(tmp_path / "single" / "model.keras").get_weights()
    for a, b, c in zip(chief, other, alone, strict=True):
        np.testing.assert_array_equal(a, b)  # all-reduced updates: the workers never drift apart
        np.testing.assert_allclose(a, c, rtol=1e-3, atol=1e-4)  # half of every global batch each: same steps


def test_strategy_names_and_cluster_roles(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief() and type(make_strategy("auto")).__name__ == "_DefaultDistributionStrategy"
    with pytest.raises(ValueError) as refused:
        make_strategy("multi_worker")
    assert str(refused.value) == (
        "strategy 'multi_worker' reads the cluster from the TF_CONFIG environment variable; it is unset."
    )
    with pytest.raises(ValueError) as refused:
        make_strategy("tpu")
    assert (
        str(refused.value) == "Unknown strategy 'tpu'; choose one of ['auto', 'default', 'mirrored', 'multi_worker']."
    )
    cluster = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()


def test_auto_picks_multi_worker_from_tf_config_then_mirrored_for_two_gpus(monkeypatch):
    """Which strategy each name makes, with the strategies' constructors and the GPU list stood in for (a
    cluster or two GPUs cannot be had in this process)."""
    import tensorflow as tf

    from keras_cnn.training import distribute

    made = []
    for cls in ("MultiWorkerMirroredStrategy", "MirroredStrategy"):
        monkeypatch.setattr(tf.distribute, cls, lambda cls=cls: made.append(cls) or cls)
    patched = []
    monkeypatch.setattr(distribute, "_patch_keras_multi_worker_logs", lambda: patched.append(True))
    gpus = []
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: gpus if kind == "GPU" else [])
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy() is tf.distribute.get_strategy() and make_strategy("default") is tf.distribute.get_strategy()
    gpus[:] = ["gpu0"]
    assert make_strategy("auto") is tf.distribute.get_strategy()  # one GPU: no mirroring
    gpus[:] = ["gpu0", "gpu1"]
    assert (make_strategy("auto"), make_strategy("mirrored")) == ("MirroredStrategy", "MirroredStrategy")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}))
    assert make_strategy("auto") == "MultiWorkerMirroredStrategy" and patched == [True]
    assert make_strategy("multi_worker") == "MultiWorkerMirroredStrategy" and patched == [True, True]
    assert made == ["MirroredStrategy"] * 2 + ["MultiWorkerMirroredStrategy"] * 2


def test_cluster_roles_read_from_tf_config(monkeypatch):
    from keras_cnn.training.distribute import task

    def role(config):
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        return task(), is_chief()

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert (task(), is_chief()) == (("chief", 0), True)
    workers = {"worker": ["a:1", "b:2"]}
    assert role({"cluster": workers, "task": {"type": "worker", "index": "1"}}) == (("worker", 1), False)
    assert role({"cluster": workers, "task": {"type": "worker"}}) == (("worker", 0), True)
    assert role({"task": {"type": "worker", "index": 0}}) == (("worker", 0), True)  # no cluster named: no chief
    with_chief = {"chief": ["c:0"], **workers}
    assert role({"cluster": with_chief, "task": {"type": "worker", "index": 0}}) == (("worker", 0), False)
    assert role({"cluster": with_chief, "task": {"type": "chief", "index": 0}}) == (("chief", 0), True)
    assert role({"cluster": with_chief, "task": {"type": "evaluator", "index": 0}}) == (("evaluator", 0), False)


def test_multi_worker_logs_average_scalars_over_replicas_and_leave_the_rest_to_keras(monkeypatch):
    """The patch of keras-team/keras#20585: under a multi-worker strategy "auto"/"mean" logs are reduced with
    axis=None; other reductions and other strategies go to Keras' own function; patching twice wraps once."""
    from keras.src.backend.tensorflow import trainer

    from keras_cnn.training.distribute import _patch_keras_multi_worker_logs

    calls = []
    original = lambda values, strategy, reduction: calls.append(("keras", strategy, reduction)) or values  # noqa: E731
    monkeypatch.setattr(trainer, "reduce_per_replica", original)
    multi = set()
    monkeypatch.setattr(trainer, "_collective_all_reduce_multi_worker", lambda strategy: strategy in multi)

    class Strategy:
        def reduce(self, mode, value, axis):
            calls.append((mode, value, axis))
            return value / 2

    strategy = Strategy()
    multi.add(strategy)
    _patch_keras_multi_worker_logs()
    patched = trainer.reduce_per_replica
    _patch_keras_multi_worker_logs()
    assert trainer.reduce_per_replica is patched and patched is not original
    assert patched({"loss": 4.0, "accuracy": 1.0}, strategy, "auto") == {"loss": 2.0, "accuracy": 0.5}
    assert patched(6.0, strategy, "mean") == 3.0
    assert calls == [("MEAN", 1.0, None), ("MEAN", 4.0, None), ("MEAN", 6.0, None)]
    calls.clear()
    assert patched(6.0, strategy, "sum") == 6.0 and patched(6.0, "single", "mean") == 6.0
    assert calls == [("keras", strategy, "sum"), ("keras", "single", "mean")]


def test_a_multi_worker_fit_builds_its_metrics_from_one_local_batch():
    """keras-team/keras#20585: whatever the fit passes (a distributed iterator), the model builds from the first
    local batch of the training data."""
    import tensorflow as tf

    from keras_cnn.training.run import _build_from_a_local_batch

    x, y = np.arange(12, dtype="float32").reshape(6, 2), np.arange(6)
    model, built = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), []
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: built.append((iterator, data_batch))
    _build_from_a_local_batch(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4))
    model._maybe_symbolic_build(iterator="distributed iterator")
    ((iterator, (batch_x, batch_y)),) = built
    assert iterator is None
    np.testing.assert_array_equal(batch_x, x[:4])
    np.testing.assert_array_equal(batch_y, y[:4])
