"""A run's `history.csv` (one row per epoch): reading it, cutting it back on resume, and its curves."""

from __future__ import annotations

import csv
import os

from keras_cnn.io import write_atomic


def truncate_history(path: str, epochs: int) -> None:
    """Keep the first `epochs` rows: a kill between the backup and the CSV row must not duplicate epochs."""
    if not os.path.exists(path):
        return
    rows = read_history(path)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(r for r in rows if int(r["epoch"]) < epochs)

    write_atomic(path, write)


def read_history(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_history(rows: list[dict], path: str) -> None:
    """Loss and accuracy per epoch (training and validation) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key in sorted(k for k in rows[0] if k.endswith(metric)):
            ax.plot(epochs, [float(r[key]) for r in rows], label=key, marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
