"""Training and inference images/s of our models against the same networks in PyTorch eager, in one run.

    python benchmarks/vs_pytorch.py
    python benchmarks/vs_pytorch.py --models resnet20:32:64 --precisions bfloat16 --rounds 3

Each `name:image_size:batch_size` entry is built twice: with `keras_cnn.create_model` (logits out) and as the
same network in PyTorch (torchvision's where it has it: ResNet-50 v1.5 is our `ResNeXt(depth=50, C=1, d=64)`, and
DenseNet-BC-100-12 is torchvision's DenseNet with the CIFAR stem; the CIFAR ResNets with option-A shortcuts are
written below, as torchvision has none). Their trainable parameter counts must be equal. Both train with SGD
(momentum 0.9; ours the package's `keras_cnn.optimizers.SGD`, which `train()` uses) and cross-entropy on the same
random batch; "bfloat16" is Keras' `mixed_bfloat16` policy against
`torch.autocast(device, torch.bfloat16)`. PyTorch runs in its faster memory format (channels-last or not, picked
by a warm-up measurement and recorded). Measurements alternate between the two over `--rounds` rounds and the
median is kept, so the machine's drift falls on both. Prints the ratios ours / PyTorch and writes them as JSON.
Our inference is `predict_on_batch`, as users call it: TensorFlow traces it with each batch norm that follows a
convolution folded into it (`keras_cnn.layers.norm.FOLD_IN_GRAPH`), PyTorch eager runs its batch norms as they are;
`--fold_bn` adds rows with both sides' weights folded beforehand.

On a GPU both run there: PyTorch on CUDA (cuDNN autotuning on, float32 matrix products in TF32 as cuDNN's
convolutions already are), ours on whichever backend `KERAS_BACKEND` names (JAX on a machine without
TensorFlow), whose train step Keras compiles by default there. Timings end with the device synchronized.
"""

from __future__ import annotations

import os
import statistics

from absl import app, flags
from common import (
    images_per_s,
    keras_model,
    keras_steps,
    model_entries,
    random_batch,
    torch_device,
    torch_model,
    torch_steps,
    trainable_torch,
    write_results,
)

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "models",
    ["resnet20:32:64", "resnet56:32:64", "densenet_bc:32:64", "resnet50:224:16"],
    "name:image_size:batch_size entries (resnet20/32/44/56/110, densenet_bc, resnet50).",
)
flags.DEFINE_list("precisions", ["float32", "bfloat16"], "float32 and/or bfloat16.")
flags.DEFINE_bool("jit", False, "Compile our steps with XLA (jit_compile=True); else Keras' default ('auto').")
flags.DEFINE_bool(
    "fold_bn",
    False,
    "Also time inference with batch norms folded into the convolutions before them, on both sides (ours: "
    "keras_cnn.fold_batchnorm, as the SavedModel export does; PyTorch: torch.fx.experimental.optimization.fuse).",
)
flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", lower_bound=1)
flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median is reported.", lower_bound=1)
flags.DEFINE_string("output", "benchmarks/results/vs-pytorch-cpu-2core.json", "JSON results file (written atomically).")


def compare(name: str, size: int, batch: int, precision: str, rounds: int, steps: int) -> list[dict]:
    import keras
    import torch

    from keras_cnn.complexity import trainable_params

    classes = 10 if size <= 64 else 1000
    x, y = random_batch(batch, size, classes)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        ours = keras_model(name, size, classes)
    finally:
        keras.config.set_dtype_policy(previous)
    torch.manual_seed(0)
    theirs = torch_model(name, classes)
    if trainable_params(ours) != trainable_torch(theirs):
        counts = f"{trainable_params(ours):,} trainable here, {trainable_torch(theirs):,} in PyTorch"
        raise RuntimeError(f"{name} is not the same network in both: {counts}.")
    bf16 = precision == "bfloat16"
    sync = torch.cuda.synchronize if torch_device() == "cuda" else lambda: None
    keras_infer, keras_train = keras_steps(ours, x, y, jit=FLAGS.jit)
    layouts = {}
    for channels_last in (False, True):  # warm up both layouts (each its own copy), keep the faster for training
        torch.manual_seed(0)
        net = torch_model(name, classes) if channels_last else theirs
        infer, train = torch_steps(net, x, y, bf16=bf16, channels_last=channels_last)
        infer(), train()
        layouts[channels_last] = (images_per_s(train, batch, 2, sync), infer, train)
    channels_last = max(layouts, key=lambda k: layouts[k][0])
    _, torch_infer, torch_train = layouts[channels_last]
    keras_infer(), keras_train()  # trace and compile
    steps_of = {"train": (keras_train, torch_train), "inference": (keras_infer, torch_infer)}
    if FLAGS.fold_bn:
        from torch.fx.experimental.optimization import fuse

        from keras_cnn.fold import fold_batchnorm

        torch.manual_seed(0)
        folded = torch_steps(fuse(torch_model(name, classes).eval()), x, y, bf16=bf16, channels_last=channels_last)
        steps_of["inference_folded"] = (keras_steps(fold_batchnorm(ours), x, y)[0], folded[0])
        for step in steps_of["inference_folded"]:
            step()
    samples = {(mode, side): [] for mode in steps_of for side in ("keras", "torch")}
    for _ in range(rounds):
        for mode, (keras_step, torch_step) in steps_of.items():
            samples[mode, "keras"].append(images_per_s(keras_step, batch, steps))
            samples[mode, "torch"].append(images_per_s(torch_step, batch, steps, sync))
    rows = []
    for mode in steps_of:
        k, t = statistics.median(samples[mode, "keras"]), statistics.median(samples[mode, "torch"])
        rows.append(
            {
                "model": name,
                "image_size": size,
                "batch_size": batch,
                "precision": precision,
                "mode": mode,
                "keras_cnn_img_s": round(k, 1),
                "pytorch_img_s": round(t, 1),
                "ratio": round(k / t, 3),
                "torch_channels_last": channels_last,
                "trainable_params": trainable_params(ours),
                "jit": bool(ours.jit_compile),
            }
        )
    return rows


def backend_version() -> dict[str, str]:
    """{name: version} of the library behind Keras (TensorFlow, JAX or PyTorch)."""
    import importlib

    import keras

    name = keras.backend.backend()
    return {name: importlib.import_module(name).__version__}


def main(argv: list[str]) -> None:
    del argv
    import torch

    for precision in FLAGS.precisions:
        if precision not in ("float32", "bfloat16"):
            raise app.UsageError(f"--precisions: {precision!r}; choose float32 and/or bfloat16.")
    if torch_device() == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        gpu = torch.cuda.get_device_name()
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        gpu = None
    rows = []
    for name, size, batch in model_entries(FLAGS.models):
        for precision in FLAGS.precisions:
            new = compare(name, size, batch, precision, FLAGS.rounds, FLAGS.steps)
            rows += new
            for r in new:
                print(
                    f"{r['model']:12s} {r['precision']:9s} {r['mode']:16s} keras_cnn {r['keras_cnn_img_s']:8.1f} "
                    f"pytorch {r['pytorch_img_s']:8.1f} img/s  ratio {r['ratio']:.3f}",
                    flush=True,
                )
            write_results(  # after every pair, so an interrupted run keeps what it measured
                FLAGS.output,
                rows,
                **backend_version(),
                torch=torch.__version__,
                torch_device=torch_device(),
                gpu=gpu,
                torch_threads=torch.get_num_threads(),
                steps=FLAGS.steps,
                rounds=FLAGS.rounds,
            )


if __name__ == "__main__":
    app.run(main)
