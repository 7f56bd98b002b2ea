"""TensorFlow's oneDNN CPU kernels on every x86-64 machine, not only on the newest.

TensorFlow turns its oneDNN kernels on by default only on x86 CPUs with AVX-512 VNNI/BF16 or AMX units. On the
others (AVX2 only, such as AMD EPYC Milan) it runs its Eigen kernels, which train the CIFAR networks about half as
fast (docs/training.md, "Speed defaults"). TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it loads, so importing
`keras_cnn` first sets it to 1 unless the environment already sets it; `TF_ENABLE_ONEDNN_OPTS=0` keeps Eigen.
"""

from __future__ import annotations

import functools
import os
import platform

X86_64 = ("x86_64", "amd64")


def request(machine: str | None = None) -> None:
    """Ask for oneDNN (`TF_ENABLE_ONEDNN_OPTS=1`) on an x86-64 `machine` (default: this one) unless it is set."""
    if (machine or platform.machine()).lower() in X86_64:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def cpuinfo(field: str) -> str | None:
    """The value of `field` in Linux's /proc/cpuinfo (its first processor), or None without that file or line."""
    try:
        with open("/proc/cpuinfo") as lines:
            pairs = (line.split(":", 1) for line in lines if ":" in line)
            return next((value.strip() for key, value in pairs if key.strip() == field), None)
    except OSError:
        return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's first CPU (Linux's /proc/cpuinfo; empty elsewhere)."""
    return frozenset((cpuinfo("flags") or "").split())


request()
