"""Every constant and default the package takes from a paper or a reference implementation, written here from
that source (never read from the module under test), so a changed digit fails a test that names the source."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_cnn
from keras_cnn import augment, optimizers, recipes
from keras_cnn.training import distill

# fb.resnet.torch, datasets/imagenet.lua `pca` (AlexNet's lighting noise, Krizhevsky et al. 2012, Sec. 4.1)
FB_EIGVAL = [0.2175, 0.0188, 0.0045]
FB_EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


def test_pca_lighting_uses_fb_resnet_torch_imagenet_constants_and_alphastd_0_1():
    np.testing.assert_array_equal(np.asarray(augment.IMAGENET_EIGVAL), FB_EIGVAL)
    np.testing.assert_array_equal(np.asarray(augment.IMAGENET_EIGVEC), FB_EIGVEC)
    layer = augment.PCALighting()
    assert layer.alphastd == 0.1  # fb.resnet.torch Lighting(0.1, ...), AlexNet's "standard deviation 0.1"
    np.testing.assert_allclose(np.asarray(layer.eigval), FB_EIGVAL, rtol=1e-7)  # held in float32


def test_pca_lighting_adds_one_rgb_offset_per_image_along_the_eigenvectors():
    """The offset is eigvec @ (alpha * eigval), the same at every pixel of an image: on a constant image the
    output is constant per channel, and the offset lies in the span the eigenvalues weigh."""
    images = np.full((64, 8, 8, 3), 0.5, "float32")
    out = np.asarray(augment.PCALighting(seed=3)(images, training=True))
    offsets = out - images
    assert np.ptp(offsets, axis=(1, 2)).max() < 1e-6  # one offset per image
    per_image = offsets[:, 0, 0, :]
    alphas = per_image @ np.linalg.inv(np.asarray(FB_EIGVEC).T) / np.asarray(FB_EIGVAL)
    assert 0.05 < alphas.std() < 0.2  # alpha ~ N(0, 0.1^2), 192 draws
    assert np.abs(per_image).max() < 0.2175 * 0.6  # nowhere near a 10x eigenvalue


def test_the_cifar_pca_augmenter_lights_what_it_crops():
    """cifar_pca is pad-4 crop + flip (its first seed) plus one PCA-lighting RGB offset per image (its second)."""
    import tensorflow as tf

    image = tf.constant(np.random.default_rng(0).random((32, 32, 3)), tf.float32)
    seed = tf.constant([7, 0], tf.int64)
    crop_seed, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    cropped = augment.pad_crop_flip(image, seed=crop_seed).numpy()
    lit = augment.augmenter("cifar_pca", channels=3, image_size=32)(image, seed).numpy()
    offset = (lit - cropped).reshape(-1, 3)
    assert np.abs(offset).max() > 1e-4, "no lighting"
    assert np.ptp(offset, axis=0).max() < 1e-5, "the offset must be one RGB vector per image"


# (optimizer, lr, momentum, nesterov, weight decay, batch, epochs, milestones in epochs, warm-up lr, steps)
PAPER_RECIPES = {
    # He et al. 2016, Sec. 4.2: 0.1, /10 at 32k and 48k of 64k iterations (182 epochs of 45k/128), wd 1e-4
    "resnet_cifar": ("sgd", 0.1, 0.9, False, 1e-4, 128, 182, (91, 136.5), None, 0),
    # ... and for ResNet-110 0.01 until training error is below 80 % (about 400 iterations)
    "resnet_cifar_warmup": ("sgd", 0.1, 0.9, False, 1e-4, 128, 182, (91, 136.5), 0.01, 400),
    "preact_cifar": ("sgd", 0.1, 0.9, False, 1e-4, 128, 182, (91, 136.5), 0.01, 400),
    # Huang et al. 2016 (stochastic depth): 500 epochs, /10 at 250 and 375, Nesterov, batch 128
    "stochastic_depth": ("sgd", 0.1, 0.9, True, 1e-4, 128, 500, (250, 375), None, 0),
    # Huang et al. 2017 (DenseNet): CIFAR 300 epochs batch 64, /10 at 50 % and 75 %; ImageNet 90 epochs, 30 / 60
    "densenet_cifar": ("sgd", 0.1, 0.9, True, 1e-4, 64, 300, (150, 225), None, 0),
    "densenet_imagenet": ("sgd", 0.1, 0.9, True, 1e-4, 256, 90, (30, 60), None, 0),
    # Xie et al. 2017 (ResNeXt): CIFAR 300 epochs, /10 at 150 and 225, wd 5e-4; ImageNet 0.1, batch 256
    "resnext_cifar": ("sgd", 0.1, 0.9, False, 5e-4, 128, 300, (150, 225), None, 0),
    "resnext_imagenet": ("sgd", 0.1, 0.9, False, 1e-4, 256, 90, (30, 60), None, 0),
    # Yang et al. 2018 (CliqueNet): CIFAR 300 epochs batch 64; ImageNet 100 epochs batch 160, /10 at 30, 60, 90
    "cliquenet_cifar": ("sgd", 0.1, 0.9, True, 1e-4, 64, 300, (150, 225), None, 0),
    "cliquenet_imagenet": ("sgd", 0.1, 0.9, False, 1e-4, 160, 100, (30, 60, 90), None, 0),
    # Huang et al. 2018 (MSDNet): CIFAR 300 epochs batch 64, /10 at 150 and 225; ImageNet 90 epochs, 30 / 60
    "msdnet_cifar": ("sgd", 0.1, 0.9, True, 1e-4, 64, 300, (150, 225), None, 0),
    "msdnet_imagenet": ("sgd", 0.1, 0.9, True, 1e-4, 256, 90, (30, 60), None, 0),
    # torchvision's reference recipe for AlexNet/VGG: lr 0.01, step 30 epochs (gamma 0.1), wd 1e-4, batch 256
    "torchvision_imagenet": ("sgd", 0.01, 0.9, False, 1e-4, 256, 90, (30, 60), None, 0),
}


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_recipes_carry_the_published_schedule(name):
    optimizer, lr, momentum, nesterov, wd, batch, epochs, milestones, warmup_lr, warmup_steps = PAPER_RECIPES[name]
    recipe = recipes.RECIPES[name]
    assert (recipe.optimizer, recipe.lr, recipe.momentum, recipe.nesterov) == (optimizer, lr, momentum, nesterov)
    assert (recipe.weight_decay, recipe.weight_decay_mode, recipe.batch_size, recipe.epochs) == (
        wd,
        "l2",
        batch,
        epochs,
    )
    assert recipe.decay == "step" and recipe.gamma == 0.1
    np.testing.assert_allclose([m * epochs for m in recipe.milestones], milestones)
    assert (recipe.warmup_lr, recipe.warmup_steps) == (warmup_lr, warmup_steps)


def test_plateau_recipes_of_alexnet_vgg_and_imagenet_resnet():
    """AlexNet (Krizhevsky et al. 2012): lr 0.01, batch 128, wd 5e-4, /10 on plateaus, ~90 epochs. VGG
    (Simonyan & Zisserman 2015): lr 0.01, batch 256, wd 5e-4, 74 epochs. ResNet ImageNet (He et al. 2016,
    Sec. 3.4): lr 0.1, batch 256, wd 1e-4, /10 on plateaus, 60e4 iterations."""
    for name, lr, batch, wd, epochs in [
        ("alexnet", 0.01, 128, 5e-4, 90),
        ("vgg", 0.01, 256, 5e-4, 74),
        ("resnet_imagenet", 0.1, 256, 1e-4, 120),
    ]:
        recipe = recipes.RECIPES[name]
        assert (recipe.decay, recipe.gamma, recipe.momentum) == ("plateau", 0.1, 0.9), name
        assert (recipe.lr, recipe.batch_size, recipe.weight_decay, recipe.epochs) == (lr, batch, wd, epochs), name


def test_rmsprop_has_tf_slim_constants():
    """TF-slim's Inception/MobileNet training: RMSProp decay 0.9, momentum 0.9, epsilon 1.0."""
    recipe = recipes.Recipe(
        optimizer="rmsprop",
        lr=0.045,
        schedule="",
        epochs=1,
        batch_size=32,
        weight_decay=4e-5,
        augmentation="",
        source="",
    )
    opt = optimizers.optimizer(recipe, 0.045)
    assert (opt.rho, opt.momentum, opt.epsilon, opt.l2) == (0.9, 0.9, 1.0, 4e-5)
    assert float(opt.learning_rate) == pytest.approx(0.045)


def test_optimizer_wiring_defaults_and_errors():
    """Weight decay reaches the optimizer only as coupled L2 ("none": not at all); SGD's own default is no
    decay; an epoch is ceil(examples / batch) steps, at least one; unknown decays and optimizers are named."""
    import dataclasses

    base = recipes.RECIPES["resnet_cifar"]
    assert optimizers.optimizer(base, 0.1).l2 == 1e-4
    assert optimizers.optimizer(dataclasses.replace(base, weight_decay_mode="none"), 0.1).l2 == 0.0
    assert optimizers.SGD(0.1).l2 == 0.0
    assert [optimizers.steps_per_epoch(n, 128) for n in (50_000, 128, 129, 1, 0)] == [391, 1, 2, 1, 1]
    with pytest.raises(ValueError, match=r"Unknown decay 'bogus'.*'step', 'cosine', 'plateau'"):
        optimizers.learning_rate(dataclasses.replace(base, decay="bogus"), steps_per_epoch=10, epochs=2)
    with pytest.raises(
        ValueError, match=r"no Keras implementation; train with another recipe \(e\.g\. recipe='quick'\)"
    ):
        optimizers.optimizer(dataclasses.replace(base, optimizer="sdlm"), 0.1)


def test_distillation_defaults_are_the_papers():
    """Hinton et al. 2015: T 4 as in the examples of the KD literature, alpha 0.1 on the hard loss; FitNets
    (Romero et al. 2015): tau 3, lambda 4 -> 1; Rocket Launching (Zhou et al. 2018): hint weight 0.03."""
    student = keras_cnn.create_model("lenet5", classes=10)
    teacher = keras_cnn.create_model("lenet5", classes=10, name="teacher")
    kd = distill.Distiller(teacher, student)
    assert (kd.temperature, kd.alpha) == (4.0, 0.1)
    fitnet = distill.FitNetDistiller(
        teacher, student, hint_layer=distill.middle_layer(teacher), guided_layer=distill.middle_layer(student)
    )
    assert (fitnet.temperature, fitnet.lambda_start, fitnet.lambda_end) == (3.0, 4.0, 1.0)
    config = distill.DistillConfig()
    assert (config.method, config.temperature, config.alpha, config.hint_weight) == ("kd", None, 0.1, 0.03)


@pytest.mark.parametrize(("method", "temperature"), [("kd", 4.0), ("fitnets", 3.0)])
def test_train_distilled_defaults_the_temperature_per_method(tmp_path, method, temperature):
    teacher = keras_cnn.create_model("lenet5", classes=10, name="teacher")
    teacher.save(tmp_path / "teacher.keras")
    student = keras_cnn.create_model("lenet5", classes=10)
    from keras_cnn.training.distill.runs import _distiller

    made = _distiller(
        distill.DistillConfig(method=method, hint_epochs=0), student, None, 1, str(tmp_path / "teacher.keras"), None
    )
    assert made.temperature == temperature


# (epsilon, momentum, scale) of every BN layer, from each family's reference: Torch/PyTorch (eps 1e-5,
# momentum 0.1 = Keras 0.9), keras.applications' own layers, TF's tf.contrib batch_norm (CliqueNet's TF code).
BN = {
    "resnet20": (1e-5, 0.9, True),  # fb.resnet.torch
    "preact_resnet164": (1e-5, 0.9, True),  # KaimingHe/resnet-1k-layers
    "sd_resnet110": (1e-5, 0.9, True),  # yueatsprograms/Stochastic_Depth
    "densenet_bc": (1e-5, 0.9, True),  # liuzhuang13/DenseNet
    "resnext29_8x64d": (1e-5, 0.9, True),  # facebookresearch/ResNeXt
    "resnext50_32x4d": (1e-5, 0.9, True),  # torchvision
    "shufflenet_v2_x1_0": (1e-5, 0.9, True),  # torchvision
    "vgg11_bn": (1e-5, 0.9, True),  # torchvision
    "msdnet_cifar10_anytime": (1e-5, 0.9, True),  # kalviny/MSDNet-PyTorch
    "cliquenet_s0": (1e-5, 0.9, True),  # iboing/CliqueNet (PyTorch ImageNet code)
    "cliquenet_k36_t12": (1e-3, 0.999, True),  # iboing/CliqueNet (TF CIFAR code: tf.contrib batch_norm defaults)
    "resnet50": (1.001e-5, 0.99, True),  # keras.applications
    "resnet50_v2": (1.001e-5, 0.99, True),
    "densenet121": (1.001e-5, 0.99, True),
    "mobilenet": (1e-3, 0.99, True),
    "mobilenet_v2": (1e-3, 0.999, True),
    "xception": (1e-3, 0.99, True),
    "inception_v3": (1e-3, 0.99, False),
}


@pytest.mark.parametrize("name", sorted(BN))
def test_batch_norm_constants_per_family(name):

    size = max(32, keras_cnn.model_info(name).min_size)
    with keras.StatelessScope():
        model = keras_cnn.create_model(name, input_shape=(size, size, 3))
    found = {(l.epsilon, l.momentum, l.scale) for l in model.layers if isinstance(l, keras.layers.BatchNormalization)}
    assert found == {BN[name]}


def test_cliquenet_classifier_pools_by_average():
    """Yang et al. 2018, Sec. 3.3: global average pooling of every block's features (multi-scale), then linear."""
    model = keras_cnn.create_model("cliquenet_k36_t12")
    pools = [
        l for l in model.layers if isinstance(l, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))
    ]
    assert len(pools) == 3 and all(isinstance(l, keras.layers.GlobalAveragePooling2D) for l in pools)


def test_preact_cifar_bottleneck_strides_its_first_1x1():
    """KaimingHe/resnet-1k-layers (resnet-pre-act.lua): the bottleneck's first 1x1 carries the stride, and the
    projection shortcut too; every 3x3 has stride 1."""
    with keras.StatelessScope():
        model = keras_cnn.create_model("preact_resnet164")
    strided = [l for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.strides != (1, 1)]
    assert len(strided) == 4  # stages 3 and 4: the first block's 1x1 and its projection
    assert all(l.kernel_size == (1, 1) for l in strided), [l.name for l in strided]


def test_a_recipe_is_named_by_its_registry_entry_and_an_unregistered_one_is_refused():
    assert recipes.recipe_name(recipes.RECIPES["cifar_cosine"]) == "cifar_cosine"
    copy = dataclasses.replace(recipes.RECIPES["quick"], lr=0.5)
    with pytest.raises(ValueError, match=r"is not registered in keras_cnn\.recipes\.RECIPES"):
        recipes.recipe_name(copy)
