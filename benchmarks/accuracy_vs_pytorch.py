"""Test accuracy of our CIFAR ResNet against the same network in PyTorch, trained the same way on the same images.

    python benchmarks/accuracy_vs_pytorch.py --data_dir CIFAR-10-images --epochs 15 --runs_dir /tmp/peer

Tells whether a CIFAR-10 figure below the paper's comes from this package or from the data and the schedule:
both networks see the same decoded images (`keras_cnn.data.folder`, Pillow, pixels / 255), pad-4 crop + flip
drawn per image and epoch, SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed to 0 per step, coupled weight
decay 5e-4 on every parameter, batch 128 (recipe `cifar_cosine`), He fan-out normal convolutions, one precision
(float32, or mixed bfloat16 against `torch.autocast`). Ours trains through `keras_cnn.training.train` (a normal
run folder under --runs_dir); PyTorch's loop is written here. Prints and writes both test accuracies per epoch.
"""

from __future__ import annotations

import json
import math
import os
import time

from absl import app, flags
from common import torch_cifar_resnet, trainable_torch, trained_run, usable_cpus, write_results

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Split image folders (train/, test/), e.g. CIFAR-10-images.", required=True)
flags.DEFINE_enum("model", "resnet20", ["resnet20", "resnet32", "resnet44", "resnet56"], "CIFAR ResNet.")
flags.DEFINE_integer("epochs", 15, "Epochs of the cosine schedule, for both.", lower_bound=1)
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Training precision, for both.")
flags.DEFINE_integer("seed", 0, "Seed of both runs.")
flags.DEFINE_multi_enum("frameworks", ["pytorch", "keras_cnn"], ["pytorch", "keras_cnn"], "Which of the two to train.")
flags.DEFINE_string("runs_dir", "runs/accuracy-vs-pytorch", "Where our run folder goes.")
flags.DEFINE_string(
    "output", None, "JSON results (default benchmarks/results/accuracy-vs-pytorch-<model>-<epochs>ep.json)."
)

LR, MOMENTUM, WEIGHT_DECAY, BATCH = 0.1, 0.9, 5e-4, 128  # recipe cifar_cosine


def arrays(data_dir: str):
    """(x_train, y_train, x_test, y_test) as uint8 NHWC and int64, decoded as our pipeline decodes them."""
    import numpy as np

    from keras_cnn.data.folder import load_image_folder

    train, test, names = load_image_folder(data_dir, 0.2, FLAGS.seed)
    out = []
    for ds in (train, test):
        pairs = list(ds.as_numpy_iterator())
        out += [np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs], dtype="int64")]
    return (*out, len(names))


def pad_crop_flip(images, rng):
    """Per image: zero-pad 4, a random window of the original size, a mirror with probability 1/2."""
    import numpy as np

    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    tops, lefts, flips = rng.integers(0, 9, n), rng.integers(0, 9, n), rng.random(n) < 0.5
    out = np.stack([padded[i, t : t + h, l : l + w] for i, (t, l) in enumerate(zip(tops, lefts, strict=True))])
    out[flips] = out[flips, :, ::-1]
    return out


def train_torch(x_train, y_train, x_test, y_test, classes: int) -> dict:
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(FLAGS.seed)
    torch.set_num_threads(usable_cpus())
    net = torch_cifar_resnet(int(FLAGS.model[len("resnet") :]), classes).to(memory_format=torch.channels_last)
    import keras_cnn

    ours, theirs = (
        keras_cnn.trainable_params(keras_cnn.create_model(FLAGS.model, classes=classes)),
        trainable_torch(net),
    )
    if ours != theirs:
        raise RuntimeError(f"Not the same network: {ours:,} trainable here, {theirs:,} in PyTorch.")
    for module in net.modules():  # our initialization: He fan-out normal convolutions, unit BN
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    steps = FLAGS.epochs * math.ceil(len(x_train) / BATCH)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    bf16 = FLAGS.precision == "bfloat16"
    rng = np.random.default_rng(FLAGS.seed)

    def tensor(images):
        x = torch.from_numpy(images.astype("float32") / 255.0).permute(0, 3, 1, 2)
        return x.contiguous(memory_format=torch.channels_last)

    history, start = [], time.perf_counter()
    for _ in range(FLAGS.epochs):
        net.train()
        order, correct = rng.permutation(len(x_train)), 0
        for i in range(0, len(order), BATCH):
            batch = order[i : i + BATCH]
            x, y = tensor(pad_crop_flip(x_train[batch], rng)), torch.from_numpy(y_train[batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == y).sum())
        net.eval()
        hits = 0
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(x_test), 500):
                hits += int((net(tensor(x_test[i : i + 500])).argmax(1) == torch.from_numpy(y_test[i : i + 500])).sum())
        history.append({"train_accuracy": correct / len(x_train), "test_accuracy": hits / len(x_test)})
        print(f"pytorch epoch {len(history)}: {history[-1]}", flush=True)
    return {"history": history, "wall_time_s": round(time.perf_counter() - start, 1)}


def train_ours() -> dict:
    import csv

    out = trained_run(
        model=FLAGS.model,
        dataset="folder",
        data_dir=FLAGS.data_dir,
        recipe="cifar_cosine",
        epochs=FLAGS.epochs,
        augment="cifar",
        precision="mixed_bfloat16" if FLAGS.precision == "bfloat16" else "float32",
        seed=FLAGS.seed,
        output_dir=os.path.join(FLAGS.runs_dir, f"keras_cnn-{FLAGS.model}-{FLAGS.epochs}ep-{FLAGS.precision}"),
    )
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "history.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    history = [{"train_accuracy": float(r["accuracy"]), "test_accuracy": float(r["val_accuracy"])} for r in rows]
    return {"history": history, "wall_time_s": metrics["wall_time_s"], "run_dir": out}


def main(argv: list[str]) -> None:
    del argv
    x_train, y_train, x_test, y_test, classes = arrays(FLAGS.data_dir)
    results = {}
    if "pytorch" in FLAGS.frameworks:
        results["pytorch"] = train_torch(x_train, y_train, x_test, y_test, classes)
    if "keras_cnn" in FLAGS.frameworks:
        results["keras_cnn"] = train_ours()
    final = {name: r["history"][-1]["test_accuracy"] for name, r in results.items()}
    print(json.dumps(final))
    output = FLAGS.output or f"benchmarks/results/accuracy-vs-pytorch-{FLAGS.model}-{FLAGS.epochs}ep.json"
    rows = [
        {"framework": name, "epoch": i + 1, **row} for name, r in results.items() for i, row in enumerate(r["history"])
    ]
    write_results(
        output,
        rows,
        model=FLAGS.model,
        epochs=FLAGS.epochs,
        precision=FLAGS.precision,
        data=os.path.abspath(FLAGS.data_dir),
        final_test_accuracy=final,
        wall_time_s={name: r["wall_time_s"] for name, r in results.items()},
    )


if __name__ == "__main__":
    app.run(main)
