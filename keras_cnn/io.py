"""Files the package writes: atomically, so an interrupted write never leaves a half-written result."""

from __future__ import annotations

import json
import os
import tempfile


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON to `path` through a temporary file in the same folder and `os.replace`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as tmp:
        try:
            json.dump(obj, tmp, indent=2)
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
