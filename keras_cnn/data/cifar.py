"""CIFAR-10/100 from the published python archive (Krizhevsky 2009): `cifar-10-python.tar.gz`,
`cifar-100-python.tar.gz`, or their extracted folders, for users who already have them on disk.

The batches are Python pickles. They are read with an unpickler that admits only the few numpy globals
a CIFAR batch contains, so a tampered file raises instead of running code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np

_LAYOUT = {  # dataset -> (folder inside the archive, train members, test member, label key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels"),
    "cifar100": ("cifar-100-python", ["train"], "test", b"fine_labels"),
}
CLASSES = {"cifar10": 10, "cifar100": 100}  #: class count per dataset (CIFAR-100: the fine labels)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("_codecs", "encode"),  # bytes as protocol-2 pickles written by Python 3 spell them
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batches hold only arrays, lists and bytes; refusing {module}.{name}.")


def _read_batch(raw: bytes, source: str, label_key: bytes, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int32)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source} is not a CIFAR python batch ({err}).") from err
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{source}: expected N x 3072 uint8 rows and N labels; found {data.shape}, {labels.shape}.")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise ValueError(
            f"{source}: label {labels[bad[0]]} at row {bad[0]} is outside 0..{classes - 1} ({bad.size} such rows)."
        )
    # Rows are channel-major 32x32 planes (R, G, B); return NHWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar_archive(path: str | os.PathLike, dataset: str = "cifar10") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (images, labels)} as uint8 NHWC images and int32 labels.

    `path` is the `.tar.gz` as published, its extracted folder (`cifar-10-batches-py`), or the folder that
    contains that folder.
    """
    if dataset not in _LAYOUT:
        raise ValueError(f"dataset must be one of {sorted(_LAYOUT)}; received {dataset!r}.")
    folder, train_members, test_member, label_key = _LAYOUT[dataset]
    path = os.fspath(path)
    members = [*train_members, test_member]
    if os.path.isfile(path):
        raw = _read_tar(path, folder, members)
    elif os.path.isdir(path):
        base = path if os.path.isfile(os.path.join(path, test_member)) else os.path.join(path, folder)
        missing = [m for m in members if not os.path.isfile(os.path.join(base, m))]
        if missing:
            raise FileNotFoundError(
                f"{base!r} lacks the {dataset} batches {missing}; expected the extracted "
                f"{folder}/ folder of the python archive."
            )
        raw = {}
        for m in members:
            with open(os.path.join(base, m), "rb") as f:
                raw[m] = f.read()
    else:
        raise FileNotFoundError(
            f"No CIFAR archive at {path!r}: pass cifar-10-python.tar.gz / cifar-100-python.tar.gz (from "
            "https://www.cs.toronto.edu/~kriz/cifar.html) or the folder it extracts to."
        )
    classes = CLASSES[dataset]
    train = [_read_batch(raw[m], f"{path}:{m}", label_key, classes) for m in train_members]
    return {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": _read_batch(raw[test_member], f"{path}:{test_member}", label_key, classes),
    }


def _read_tar(path: str, folder: str, members: list[str]) -> dict[str, bytes]:
    try:
        with tarfile.open(path, "r:*") as tar:
            raw = {}
            for m in members:
                try:
                    raw[m] = tar.extractfile(f"{folder}/{m}").read()
                except KeyError as err:
                    raise ValueError(f"{path!r} has no member {folder}/{m}: not the python CIFAR archive.") from err
            return raw
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{path!r} is not a readable tar archive ({err}).") from err
