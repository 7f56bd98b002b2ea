"""The distillation table: a student trained alone vs each keras_cnn.distill method, with the teacher for
reference, over several seeds, on the embedded digits (no download). Every run is the example scripts' own
command (printed), so any row can be reproduced alone.

    .venv/bin/python benchmarks/distillation.py          # resnet56 -> resnet20, 15 teacher / 8 student epochs

Writes results/distillation-<dataset>-<student>-lr<lr>-e<epochs>.json and prints a markdown table
(mean ± sd of the final val accuracy).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

flags.DEFINE_string("teacher", "resnet56", "Registered teacher (and Rocket Launching's booster).")
flags.DEFINE_string("student", "resnet20", "Registered student.")
flags.DEFINE_string("dataset", "digits", "Any dataset the training examples know.")
flags.DEFINE_integer("teacher_epochs", 15, "Epochs of the teacher's own training.")
flags.DEFINE_float("teacher_lr", 0.01, "The teacher's peak rate (ResNet-56 diverges at the quick recipe's 0.05).")
flags.DEFINE_integer("epochs", 8, "Epochs of every student run (a short budget, where teachers help most).")
flags.DEFINE_float("lr", 0.01, "Peak rate of every student run (Rocket Launching trains the ResNet-56 booster too).")
flags.DEFINE_integer("hint_epochs", 2, "FitNets stage-1 epochs (on top of --epochs).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each seed trains its own teacher.")
flags.DEFINE_list("methods", ["kd", "mimic", "fitnets", "rocket"], "Methods to compare with the student alone.")
flags.DEFINE_string("output_dir", "runs/distillation", "Where the runs go (finished runs are reused).")
FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script: str, out: str, *args: str) -> dict:
    """One example run (reused when `out` already holds a finished one); its metrics.json."""
    if not os.path.exists(os.path.join(out, "metrics.json")):
        cmd = [
            sys.executable,
            os.path.join(ROOT, "examples", script),
            f"--dataset={FLAGS.dataset}",
            f"--output_dir={out}",
            "--overwrite",
            *args,
        ]
        print("$", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def main(argv: list[str]) -> None:
    del argv
    rows: dict[str, list[dict]] = {}
    for seed in FLAGS.seeds:
        base = os.path.join(FLAGS.output_dir, f"seed{seed}")
        teacher = _run(
            "train_cifar.py",
            os.path.join(base, "teacher"),
            f"--model={FLAGS.teacher}",
            f"--epochs={FLAGS.teacher_epochs}",
            f"--lr={FLAGS.teacher_lr}",
            f"--seed={seed}",
        )
        rows.setdefault(f"teacher {FLAGS.teacher} ({FLAGS.teacher_epochs} epochs)", []).append(teacher)
        common = (f"--epochs={FLAGS.epochs}", f"--lr={FLAGS.lr}", f"--seed={seed}")
        students = os.path.join(base, f"{FLAGS.student}-lr{FLAGS.lr}-e{FLAGS.epochs}")
        alone = _run("train_cifar.py", os.path.join(students, "alone"), f"--model={FLAGS.student}", *common)
        rows.setdefault(f"student {FLAGS.student} alone", []).append(alone)
        for method in FLAGS.methods:
            extra = [f"--hint_epochs={FLAGS.hint_epochs}"] if method == "fitnets" else []
            if method != "rocket":
                extra.append(f"--teacher_weights={os.path.join(base, 'teacher', 'model.keras')}")
            metrics = _run(
                "distill.py",
                os.path.join(students, method),
                f"--student={FLAGS.student}",
                f"--teacher={FLAGS.teacher}",
                f"--method={method}",
                *common,
                *extra,
            )
            rows.setdefault(f"student {FLAGS.student} + {method}", []).append(metrics)
    table = {}
    print(f"\n| run | final val accuracy, mean ± sd over {len(FLAGS.seeds)} seeds | per seed | wall time (s) |")
    print("|---|---|---|---|")
    for name, runs in rows.items():
        acc = [r["final_val_accuracy"] for r in runs]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        table[name] = {
            "final_val_accuracy": acc,
            "wall_time_s": [r["wall_time_s"] for r in runs],
            "booster": [r.get("final_val_booster_accuracy") for r in runs],
        }
        per_seed = ", ".join(f"{a:.2%}" for a in acc)
        wall = statistics.mean(r["wall_time_s"] for r in runs)
        print(f"| {name} | {statistics.mean(acc):.2%} ± {sd:.2%} | {per_seed} | {wall:.0f} |")
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    settings = {
        k: FLAGS[k].value
        for k in (
            "teacher",
            "student",
            "dataset",
            "teacher_epochs",
            "teacher_lr",
            "epochs",
            "lr",
            "hint_epochs",
            "seeds",
        )
    }
    name = f"distillation-{FLAGS.dataset}-{FLAGS.student}-lr{FLAGS.lr}-e{FLAGS.epochs}.json"
    path = os.path.join(ROOT, "benchmarks", "results", name)
    with open(path + ".tmp", "w") as f:
        json.dump({"settings": settings, "runs": table}, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
