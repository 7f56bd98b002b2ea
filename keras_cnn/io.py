"""Files the package writes: atomically, so an interrupted write never leaves a half-written result."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable


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
    os.chmod(tmp.name, _mode_of(path))  # a temporary file is private (0600); the result is not
    os.replace(tmp.name, path)


def _mode_of(path: str | os.PathLike) -> int:
    """The permission bits `path` has, or those a plain `open(path, "w")` would give it (0666 less the umask)."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call `write(tmp)` on a temporary path beside `path`, then `os.replace` it onto `path`. The temporary name
    ends as `path` does, for writers that read the extension (".keras", ".weights.h5", ".png"). A failed write
    removes the temporary file and leaves `path` as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.path.basename(path)}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_model(path: str | os.PathLike):
    """`keras.saving.load_model` in safe mode (no pickled code runs), deep graphs included (`deep_graph`), with
    errors that name the file: a missing file, and one that is not a Keras archive (truncated, corrupt, another
    format)."""
    import zipfile

    import keras

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file {path!r} does not exist.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a valid Keras archive (a .keras file is a zip archive; this one is "
            "truncated, corrupt or of another format)."
        )
    from keras_cnn.applications import deep_graph

    try:
        with deep_graph():
            return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, KeyError, OSError, TypeError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path!r} is not a valid Keras model archive: {err}") from err
