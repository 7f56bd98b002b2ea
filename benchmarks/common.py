"""What the benchmark scripts share: their --models entries and their one-measurement subprocesses."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

from absl import app


def model_entries(entries: list[str]) -> list[tuple[str, int, int]]:
    """`name:image_size:batch_size` strings as tuples; anything else is a usage error."""
    parsed = []
    for entry in entries:
        try:
            name, size, batch = entry.split(":")
            parsed.append((name, int(size), int(batch)))
        except ValueError as err:
            raise app.UsageError(f"--models entries are name:image_size:batch_size; received {entry!r}.") from err
    return parsed


def measure_in_child(script: str, child: str, steps: int, extra: list[str] = ()):
    """Run `script --_child=child` (and `extra` flags) in a fresh process (its own memory peak and dtype policy)
    and return the JSON value its last output line holds."""
    done = subprocess.run([sys.executable, script, f"--_child={child}", f"--steps={steps}", *extra],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"Measuring {child} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_results(path: str, rows: list[dict], **fields) -> None:
    """`rows` with the machine and the Keras version they were measured on, and `fields`, as JSON (atomic)."""
    import keras

    from keras_cnn.io import write_json_atomic

    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {"machine": machine, "keras": keras.__version__, "backend": keras.backend.backend(), **fields}
    write_json_atomic(path, {**result, "rows": rows})
    print(f"wrote {path}")
