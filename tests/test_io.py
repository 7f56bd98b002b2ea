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
