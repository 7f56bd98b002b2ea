"""Training recipes as the papers (or their reference code) ran them (each recipe's `source` cites them).

Pure data: `keras_cnn.training` turns a recipe into an optimizer and learning-rate schedule. `schedule` is the
paper's wording; `decay`, `milestones` and `warmup_*` are the same schedule in machine form: "step" multiplies
the rate by `gamma` at each milestone (a fraction of the whole run, so 32k/64k iterations is 0.5), "cosine"
anneals it to zero, "plateau" divides it by 10 when validation loss stops improving (the papers did this by
hand). `augment` names the `keras_cnn.augment` pipeline that is the recipe's own where the package has it
(the examples use it when --augment is not given). `weight_decay_mode` says how the decay was applied: "l2" is
coupled L2 added to the gradient before momentum (SGD weight decay in Torch/Caffe), "none" where the paper
used none.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    optimizer: str
    lr: float
    schedule: str
    epochs: int | None
    batch_size: int | None
    weight_decay: float
    augmentation: str
    source: str
    decay: str = "step"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup_lr: float | None = None
    warmup_steps: int = 0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay_mode: str = "l2"
    aux_weight: float = 0.3
    augment: str | None = None


RECIPES: dict[str, Recipe] = {
    "quick": Recipe(
        optimizer="sgd",
        lr=0.05,
        nesterov=True,
        schedule="cosine decay to zero over the run (no paper: the embedded-data default of examples/)",
        decay="cosine",
        epochs=15,
        batch_size=64,
        weight_decay=0.0,
        weight_decay_mode="none",
        augmentation="none",
        source="keras_cnn default for small data",
    ),
    "lenet": Recipe(
        optimizer="sdlm",
        lr=5e-4,
        schedule="global eta 5e-4 (passes 1-2), 2e-4 (3-5), 1e-4 (6-8), 5e-5 (9-12), 1e-5 (13-20); mu = 0.02",
        epochs=20,
        batch_size=1,
        weight_decay=0.0,
        weight_decay_mode="none",
        momentum=0.0,
        augmentation="none (0.8 % result with affine distortions)",
        source="LeCun et al. 1998 [M]",
    ),
    "alexnet": Recipe(
        optimizer="sgd",
        lr=0.01,
        schedule="divide by 10 when validation error plateaus (3 times)",
        epochs=90,
        batch_size=128,
        weight_decay=5e-4,
        augmentation="random 224 crops of 256x256 + flip, PCA lighting (alpha ~ N(0, 0.1)); 10-crop test",
        source="Krizhevsky et al. 2012 [M][P*]",
        decay="plateau",
        augment="alexnet",
    ),
    "torchvision_imagenet": Recipe(
        optimizer="sgd",
        lr=0.01,
        schedule="divide by 10 every 30 epochs",
        epochs=90,
        batch_size=256,
        weight_decay=1e-4,
        augmentation="RandomResizedCrop 224 + flip; eval resize 256, centre 224",
        source="torchvision references/classification [R] (lr 0.1 for *_bn and ResNets)",
        milestones=(30 / 90, 60 / 90),
    ),
    "vgg": Recipe(
        optimizer="sgd",
        lr=0.01,
        schedule="divide by 10 on validation plateau, 3 times (370k iterations)",
        epochs=74,
        batch_size=256,
        weight_decay=5e-4,
        augmentation="scale jitter S in [256, 512] + 224 crop + flip + RGB shift; dropout 0.5 on fc1/fc2",
        source="Simonyan & Zisserman 2015 [M]",
        decay="plateau",
    ),
    "resnet_imagenet": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="divide by 10 on plateau (600k iterations, ~120 epochs)",
        epochs=120,
        batch_size=256,
        weight_decay=1e-4,
        augmentation="shorter side in [256, 480], 224 crop + flip, per-pixel mean, AlexNet colour augmentation",
        source="He et al. 2016 [M][R:fb.resnet.torch]",
        decay="plateau",
    ),
    "resnext_imagenet": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="divide by 10 three times over ~90 epochs (fb.resnet.torch)",
        epochs=90,
        batch_size=256,
        weight_decay=1e-4,
        augmentation="fb.resnet.torch: scale + aspect-ratio crops, flip, colour and lighting noise",
        source="Xie et al. 2017 Sec. 4 [M][R:facebookresearch/ResNeXt]",
        milestones=(1 / 3, 2 / 3),
    ),
    "resnext_cifar": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="divide by 10 at epochs 150 and 225 of 300",
        epochs=300,
        batch_size=128,
        weight_decay=5e-4,
        augmentation="pad 4, random 32x32 crop, horizontal flip",
        source="Xie et al. 2017 Sec. 5.3 [M][R:facebookresearch/ResNeXt]",
        milestones=(0.5, 0.75),
    ),
    "resnet_cifar": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="divide by 10 at 32k and 48k iterations, stop at 64k (45k/5k split)",
        epochs=182,
        batch_size=128,
        weight_decay=1e-4,
        augmentation="pad 4, random 32x32 crop, horizontal flip",
        source="He et al. 2016, Sec. 4.2 [P*][R:akamaster]",
        milestones=(32 / 64, 48 / 64),
    ),
    "cifar_cosine": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="cosine decay to zero over 70 epochs (no paper: a short CIFAR schedule for small machines)",
        decay="cosine",
        epochs=70,
        batch_size=128,
        weight_decay=5e-4,
        augmentation="pad 4, random 32x32 crop, horizontal flip",
        source="keras_cnn: He et al. 2016's data and batch, cosine annealing (Loshchilov & Hutter 2017) and "
        "weight decay 5e-4 to fit 70 epochs instead of 182",
    ),
    "resnet_cifar_warmup": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="lr 0.01 until training error < 80 % (~400 iterations), then 0.1; /10 at 32k and 48k, stop at 64k",
        epochs=182,
        batch_size=128,
        weight_decay=1e-4,
        augmentation="pad 4, random 32x32 crop, horizontal flip",
        source="He et al. 2016, Sec. 4.2 (ResNet-110/1202) [P*]",
        milestones=(32 / 64, 48 / 64),
        warmup_lr=0.01,
        warmup_steps=400,
    ),
    "preact_cifar": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="0.01 warm-up for 400 iterations; /10 at 32k and 48k, stop at 64k (ResNet-1001: 200 epochs)",
        epochs=182,
        batch_size=128,
        weight_decay=1e-4,
        augmentation="pad 4, random 32x32 crop, horizontal flip",
        source="He et al. ECCV 2016 [M][R:KaimingHe/resnet-1k-layers]",
        milestones=(32 / 64, 48 / 64),
        warmup_lr=0.01,
        warmup_steps=400,
    ),
    "stochastic_depth": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="divide by 10 at epochs 250 and 375",
        epochs=500,
        batch_size=128,
        weight_decay=1e-4,
        augmentation="pad 4, random 32x32 crop, horizontal flip; per-pixel mean, global std",
        source="Huang et al. 2016 [M][R:yueatsprograms/Stochastic_Depth]",
        milestones=(250 / 500, 375 / 500),
    ),
    "densenet_cifar": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="divide by 10 at 50 % and 75 % of training",
        epochs=300,
        batch_size=64,
        weight_decay=1e-4,
        augmentation="pad 4, random crop, flip; channel mean/std; dropout 0.2 when trained without augmentation",
        source="Huang et al. 2017 [R:liuzhuang13/DenseNet] (SVHN: 40 epochs)",
        milestones=(0.5, 0.75),
    ),
    "densenet_imagenet": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="divide by 10 at epochs 30 and 60",
        epochs=90,
        batch_size=256,
        weight_decay=1e-4,
        augmentation="fb.resnet.torch pipeline (scale + aspect augmentation, colour jitter, PCA lighting)",
        source="Huang et al. 2017 [R:liuzhuang13/DenseNet]",
        milestones=(30 / 90, 60 / 90),
    ),
    "cliquenet_cifar": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="divide by 10 at the start of epochs E/2 and 3E/4 (150 and 225 of 300; SVHN 20 and 30 of 40)",
        epochs=300,
        batch_size=64,
        weight_decay=1e-4,
        augmentation="none; per-channel mean/std; dropout 0.2 after every conv but the stem",
        source="Yang et al. 2018 [R:iboing/CliqueNet train.py]",
        milestones=(0.5, 0.75),
    ),
    "cliquenet_imagenet": Recipe(
        optimizer="sgd",
        lr=0.1,
        schedule="divide by 10 every 30 epochs",
        epochs=100,
        batch_size=160,
        weight_decay=1e-4,
        augmentation="RandomResizedCrop 224 + flip; eval resize 256, centre 224; ImageNet mean/std",
        source="Yang et al. 2018 [R:iboing/CliqueNet train_imagenet.py]",
        milestones=(30 / 100, 60 / 100, 90 / 100),
    ),
    "msdnet_cifar": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="divide by 10 at 50 % and 75 % of training (epochs 150 and 225 of 300)",
        epochs=300,
        batch_size=64,
        weight_decay=1e-4,
        augmentation="pad 4, random crop, flip; channel mean/std before padding; 5,000 training images held out "
        "to fit the budgeted-batch thresholds",
        source="Huang et al. 2018 [R:gaohuang/MSDNet train_joint.lua]; loss = sum of the "
        "exits' cross-entropies, all weighted 1",
        milestones=(0.5, 0.75),
    ),
    "msdnet_imagenet": Recipe(
        optimizer="sgd",
        lr=0.1,
        nesterov=True,
        schedule="divide by 10 at epochs 30 and 60",
        epochs=90,
        batch_size=256,
        weight_decay=1e-4,
        augmentation="fb.resnet.torch pipeline (random resized crop, colour jitter 0.4, PCA lighting 0.1, flip); "
        "50,000 training images held out for the budgeted-batch thresholds",
        source="Huang et al. 2018 [R:gaohuang/MSDNet]",
        milestones=(30 / 90, 60 / 90),
    ),
}


def recipe_name(recipe: Recipe) -> str:
    """The name `recipe` is registered under in `RECIPES`."""
    for name, known in RECIPES.items():
        if known is recipe:
            return name
    raise ValueError(f"{recipe!r} is not registered in keras_cnn.recipes.RECIPES (names: {sorted(RECIPES)}).")
