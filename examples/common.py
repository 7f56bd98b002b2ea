"""Flags shared by the training examples (absl). Kept free of TensorFlow so --help answers at once."""

from __future__ import annotations

import contextlib
import os
import sys
import time

from absl import app, flags

# The package's choices, listed here so --help works before TensorFlow loads (a test checks they agree).
DATASETS = (
    "digits",
    "photos",
    "cifar10",
    "cifar100",
    "mnist",
    "svhn_cropped",
    "imagenet2012",
    "cifar10_archive",
    "cifar100_archive",
    "folder",
)
AUGMENTATIONS = ("none", "cifar", "cifar_pca", "imagenet", "alexnet")
MIXES = ("none", "mixup", "cutmix")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
DISTILL_METHODS = ("kd", "mimic", "fitnets", "rocket")


def run(main) -> None:
    """`absl.app.run(main)`, except that a usage error prints its one-line reason and a pointer to
    --helpshort, not the whole flag list."""

    def wrapped(argv):
        try:
            main(argv)
        except app.UsageError as err:
            sys.stderr.write(f"{os.path.basename(sys.argv[0])}: error: {err}\nSee --helpshort for the flags.\n")
            sys.exit(err.exitcode)

    app.run(wrapped)


def define_training_flags(
    *, model: str, dataset: str, datasets=DATASETS, image_size: int, augment: str, recipe: str
) -> None:
    """The flags of keras_cnn.training.TrainConfig, with this example's defaults."""
    flags.DEFINE_string("model", model, "Registered model name (see keras_cnn.list_models()).")
    flags.DEFINE_enum(
        "dataset", dataset, datasets, "Dataset; 'digits' and 'photos' (colour) are embedded, no download."
    )
    flags.DEFINE_string("weights", None, "Start from a weight set of --model or a weights / .keras file.")
    flags.DEFINE_string("data_dir", None, "TFDS data_dir, CIFAR python archive (or its folder), or image folder.")
    flags.DEFINE_string("recipe", recipe, "'quick' (SGD Nesterov, cosine), 'paper' (the model's), or a recipe name.")
    flags.DEFINE_integer("epochs", None, "Training epochs (default: the recipe's; quick: 15).", lower_bound=1)
    flags.DEFINE_integer("batch_size", None, "Global mini-batch size (default: the recipe's).", lower_bound=1)
    flags.DEFINE_float("lr", None, "Peak learning rate (default: the recipe's).", lower_bound=0)
    flags.DEFINE_integer("image_size", image_size, "Input height and width.", lower_bound=8)
    flags.DEFINE_enum(
        "channels", None, ["1", "3"], "Input channels: 1 (grey) or 3 (RGB); default 1 for digits and mnist, else 3."
    )
    flags.DEFINE_enum(
        "augment",
        augment,
        AUGMENTATIONS,
        "cifar: pad-4 crop + flip; cifar_pca: + PCA lighting; imagenet: random resized crop, flip, "
        "colour jitter, PCA lighting; alexnet: random crops of the 256 view, flip, PCA lighting. "
        "Not given: the recipe's own where it has one (alexnet's), else this default.",
    )
    flags.DEFINE_bool("randaugment", False, "Keras RandAugment on every training batch (RGB only).")
    flags.DEFINE_enum("mix", "none", MIXES, "Keras MixUp or CutMix on training batches (labels become one-hot).")
    flags.DEFINE_enum("strategy", "auto", STRATEGIES, "auto: multi_worker if TF_CONFIG is set, mirrored on >1 GPU.")
    flags.DEFINE_enum(
        "mixed_precision",
        "auto",
        PRECISIONS,
        "Dtype policy (the classifier stays float32); auto: mixed_bfloat16 on hardware with native "
        "bf16 (AMX/AVX512-BF16 CPUs, GPUs of compute capability 8+), else float32.",
    )
    flags.DEFINE_bool("jit", False, "Compile the train step with XLA.")
    flags.DEFINE_bool("deterministic", False, "Deterministic TensorFlow ops (bit-identical reruns, slower on GPU).")
    flags.DEFINE_string("output_dir", None, "Run directory (default: runs/<model>-<dataset>-<time>).")
    flags.DEFINE_bool("resume", False, "Continue the interrupted run in --output_dir from its last finished epoch.")
    flags.DEFINE_bool("overwrite", False, "Replace a finished or interrupted run in --output_dir.")
    flags.DEFINE_integer("seed", 0, "Seed for the split, shuffling, augmentation and initialization.")
    flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "fit output: progress bar, none, one line per epoch.")


def run_training(FLAGS) -> tuple[dict, str]:
    """Train as the flags say; returns (metrics, output directory). Bad input becomes a usage error."""
    output_dir = FLAGS.output_dir or f"runs/{FLAGS.model}-{FLAGS.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = training_config(FLAGS, output_dir)
    from keras_cnn.training import train

    with user_errors():
        return train(config), output_dir


@contextlib.contextmanager
def user_errors():
    """Turns the errors that name a bad input or a stopped run (an unknown name, a missing, corrupt or busy
    file or folder, a diverged loss) into one-line usage errors; anything else keeps its traceback."""
    from keras_cnn.training.callbacks import DivergenceError
    from keras_cnn.training.rundir import RunFolderBusyError

    try:
        yield
    except (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ValueError) as err:
        raise app.UsageError(str(err)) from err
    except (DivergenceError, RunFolderBusyError) as err:
        raise app.UsageError(str(err), exitcode=1) from err


def training_config(FLAGS, output_dir: str):
    """keras_cnn.training.TrainConfig from the shared flags."""
    if FLAGS.resume and not FLAGS.output_dir:  # before TensorFlow loads: a usage error answers at once
        raise app.UsageError("--resume needs the --output_dir of the run to continue.")
    from keras_cnn.training import TrainConfig, recipe_augment

    augment = FLAGS.augment if FLAGS["augment"].present else recipe_augment(FLAGS.model, FLAGS.recipe) or FLAGS.augment
    return TrainConfig(
        model=FLAGS.model,
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        recipe=FLAGS.recipe,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        lr=FLAGS.lr,
        image_size=FLAGS.image_size,
        augment=augment,
        randaugment=FLAGS.randaugment,
        mix=FLAGS.mix,
        strategy=FLAGS.strategy,
        precision=FLAGS.mixed_precision,
        jit=FLAGS.jit,
        deterministic=FLAGS.deterministic,
        seed=FLAGS.seed,
        output_dir=output_dir,
        resume=FLAGS.resume,
        overwrite=FLAGS.overwrite,
        weights=FLAGS.weights,
        channels=None if FLAGS.channels is None else int(FLAGS.channels),
        verbose=FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose),
    )
