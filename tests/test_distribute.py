"""MultiWorkerMirroredStrategy from TF_CONFIG: two worker processes on localhost (CPU) train one model."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_cnn.training import STRATEGIES, is_chief, make_strategy

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
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multi_worker")
    with pytest.raises(ValueError, match=re.escape(f"choose one of {list(STRATEGIES)}")):
        make_strategy("tpu")
    cluster = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
