import json

import pytest

from keras_cnn.io import write_json_atomic


def test_write_json_atomic_replaces_whole_and_leaves_nothing_behind_on_failure(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 2}  # the earlier file survives a failed write
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_write_json_atomic_gives_the_permissions_a_plain_write_gives(tmp_path):
    """The temporary file behind an atomic write is private (0600); the JSON it becomes must not be."""
    import os

    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    written = tmp_path / "written.json"
    write_json_atomic(written, {})
    assert os.stat(written).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    os.chmod(written, 0o640)  # a file that exists keeps its own mode
    write_json_atomic(written, {"a": 1})
    assert os.stat(written).st_mode & 0o777 == 0o640
