"""keras_cnn.onednn: TensorFlow's oneDNN kernels on every x86-64 CPU, and the user's own setting kept."""

import os
import platform
import subprocess
import sys

import pytest

from keras_cnn import onednn

# What a fresh process reports: the variable as TensorFlow saw it, and whether TensorFlow runs oneDNN kernels.
PROBE = (
    "import os, keras_cnn, tensorflow\n"
    "from tensorflow.python.util import _pywrap_util_port as port\n"
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())"
)


@pytest.mark.parametrize(
    ("machine", "before", "after"),
    [("x86_64", None, "1"), ("AMD64", None, "1"), ("x86_64", "0", "0"), ("aarch64", None, None), ("arm64", None, None)],
)
def test_onednn_is_requested_on_x86_64_only_and_never_over_the_users_setting(monkeypatch, machine, before, after):
    if before is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", before)
    onednn.request(machine)
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == after


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="TensorFlow's oneDNN: x86-64")
@pytest.mark.parametrize(("setting", "expected"), [(None, "1 True"), ("0", "0 False")])
def test_a_process_that_imports_the_package_first_trains_with_onednn_unless_told_not_to(setting, expected):
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == expected
