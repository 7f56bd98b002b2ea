import inspect
from pathlib import Path

import keras
import pytest

import keras_cnn
from keras_cnn.registry import Card, catalogue, register_all
from tests.helpers import shapes_only

ISSUE_NAMES = [
    "lenet5",
    "alexnet",
    "alexnet_v1",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "plain20",
    "plain56",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "preact_resnet164",
    "preact_resnet1001",
    "resnet50_v2",
    "resnet101_v2",
    "resnet152_v2",
    "sd_resnet110",
    "sd_resnet1202",
]


def test_every_name_of_the_foundation_issue_is_registered():
    assert set(ISSUE_NAMES) <= set(keras_cnn.list_models())


def test_list_models_is_sorted_and_takes_shell_wildcards():
    assert keras_cnn.list_models() == sorted(keras_cnn.list_models())
    assert keras_cnn.list_models("vgg1?_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert keras_cnn.list_models("resnet*_v2") == ["resnet101_v2", "resnet152_v2", "resnet50_v2"]
    assert "sd_resnet110" not in keras_cnn.list_models("resnet*")
    assert keras_cnn.list_models("nothing*") == []
    with pytest.raises(TypeError, match="pattern must be a string"):
        keras_cnn.list_models(3)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet21'.*Did you mean.*'resnet20'"):
        keras_cnn.create_model("resnet21")
    with pytest.raises(ValueError, match=r"Unknown model 'VGG16'.*'vgg16'"):
        keras_cnn.model_info("VGG16")
    with pytest.raises(
        ValueError, match=r"^Unknown model 'zzzz'\. See keras_cnn\.list_models\(\) for all \d+ names\.$"
    ):
        keras_cnn.create_model("zzzz")  # nothing close: no suggestion
    with pytest.raises(ValueError, match=r"^Unknown model 'resnet1'\. Did you mean ('[a-z0-9_]+', ){4}'[a-z0-9_]+'\? "):
        keras_cnn.create_model("resnet1")  # at most five suggestions


def test_create_model_passes_arguments_and_fixed_ones_are_refused():
    model = keras_cnn.create_model("resnet20", classes=7, shortcut="B", name="mine")
    assert model.name == "mine" and model.output_shape == (None, 7)
    assert keras_cnn.trainable_params(model) == 272_474 - 650 + 7 * 65  # option B, 7-way head
    with pytest.raises(TypeError, match=r"ResNet20\(\) fixes \['depth'\]"):
        keras_cnn.ResNet20(depth=32)


def test_named_builders_show_the_keras_applications_signature():
    for builder in (keras_cnn.ResNet20, keras_cnn.VGG16, keras_cnn.ResNet50, keras_cnn.LeNet5, keras_cnn.AlexNet):
        params = inspect.signature(builder).parameters
        for arg in (
            "include_top",
            "weights",
            "input_tensor",
            "input_shape",
            "pooling",
            "classes",
            "classifier_activation",
            "name",
        ):
            assert arg in params, (builder.__name__, arg)
    assert "depth" not in inspect.signature(keras_cnn.ResNet20).parameters
    assert inspect.signature(keras_cnn.ResNet20).parameters["name"].default == "resnet20"
    assert inspect.signature(keras_cnn.StochasticDepthResNet110).parameters["p_L"].default == 0.5


def test_model_info_carries_paper_counts_metrics_and_recipe():
    info = keras_cnn.model_info("resnet20")
    assert info.paper.title == "Deep Residual Learning for Image Recognition" and info.paper.year == 2016
    assert info.params == 269_722 and info.macs == pytest.approx(40.6e6)
    assert info.reported == {"cifar10+_test_error": 8.75} and "Table 6" in info.source
    assert info.recipe.lr == 0.1 and info.recipe.batch_size == 128 and info.recipe.weight_decay == 1e-4
    assert "32k and 48k" in info.recipe.schedule
    assert keras_cnn.model_info("resnet110").recipe.warmup_lr == 0.01
    assert keras_cnn.model_info("sd_resnet110").recipe.nesterov


@shapes_only()
def test_features_only_returns_the_stage_pyramid():
    features = keras_cnn.create_model("resnet20", features_only=True)
    assert [tuple(o.shape[1:]) for o in features.outputs] == [(32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)]
    last_two = keras_cnn.create_model("resnet50", features_only=True, out_indices=(-2, -1), input_shape=(64, 64, 3))
    assert [tuple(o.shape[1:]) for o in last_two.outputs] == [(4, 4, 1024), (2, 2, 2048)]
    with pytest.raises(ValueError, match=r"^out_indices is only used with features_only=True\.$"):
        keras_cnn.create_model("resnet20", out_indices=(1,))


@shapes_only()
def test_model_names_default_to_the_registry_name():
    for name in ("vgg16_bn", "plain20", "sd_resnet110", "resnet50_v2"):
        model = keras_cnn.create_model(name, input_shape=(32, 32, 3), include_top=False)
        assert isinstance(model, keras.Model) and model.name == name
    assert keras_cnn.ResNetV2(depth=101, input_shape=(32, 32, 3), include_top=False).name == "resnet101_v2"
    assert keras_cnn.CifarResNet(depth=8, residual=False).name == "plain8"


def test_densenet_bc_is_an_alias_of_densenet_bc_100_12():
    alias, full = keras_cnn.model_info("densenet_bc"), keras_cnn.model_info("densenet_bc_100_12")
    assert (alias.params, alias.macs, alias.reported) == (full.params, full.macs, full.reported)
    assert alias.builder is full.builder is keras_cnn.DenseNetBC and alias.arguments == full.arguments == {}
    assert keras_cnn.create_model("densenet_bc").name == "densenet_bc_100_12"
    assert keras_cnn.list_models("densenet_bc*") == [
        "densenet_bc",
        "densenet_bc_100_12",
        "densenet_bc_190_40",
        "densenet_bc_250_24",
    ]


def test_importing_the_package_is_light_and_leaves_the_recursion_limit_alone():
    """Training, distillation, early-exit and weight-set code load on first use; the recursion limit is raised
    only while a deep graph is built or loaded."""
    _python_at_the_default_recursion_limit(
        "import keras_cnn\n"
        "assert sys.getrecursionlimit() == 1000, sys.getrecursionlimit()\n"
        "heavy = {'keras_cnn.training', 'keras_cnn.training.distill', 'keras_cnn.early_exit'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert keras_cnn.distill.Distiller and keras_cnn.early_exit.EarlyExit and keras_cnn.training.train\n"
        "assert keras_cnn.weights.preprocess_input and keras_cnn.weights.publish  # as the docs call them\n"
        "assert sys.getrecursionlimit() == 1000\n"
    )


@pytest.mark.slow
def test_the_deepest_networks_build_and_load_under_the_default_recursion_limit(tmp_path):
    """ResNet-1202 (about 5,000 layers on its longest path) builds and reloads with Python's default limit of
    1,000 in place, which is restored afterwards."""
    _python_at_the_default_recursion_limit(
        "import keras_cnn, keras_cnn.io\n"
        "model = keras_cnn.create_model('resnet1202')\n"
        "assert sys.getrecursionlimit() == 1000\n"
        f"path = {str(tmp_path / 'deep.keras')!r}\n"
        "model.save(path)\n"
        "again = keras_cnn.io.load_model(path)\n"
        "assert sys.getrecursionlimit() == 1000 and len(again.layers) == len(model.layers)\n"
        "assert keras_cnn.trainable_params(again) == keras_cnn.trainable_params(model)\n"
    )


def _python_at_the_default_recursion_limit(script: str) -> None:
    """Run `script` in a fresh Python whose recursion limit is the default 1,000; it must succeed."""
    import subprocess
    import sys

    prelude = "import sys; sys.setrecursionlimit(1000)\n"
    done = subprocess.run([sys.executable, "-c", prelude + script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_catalogue_page_is_the_cards():
    page = (Path(__file__).resolve().parents[1] / "docs" / "catalogue.md").read_text()
    assert page == catalogue(), "docs/catalogue.md is stale: regenerate it as keras_cnn.registry.catalogue says"
    assert page.count("\n| `") == len(keras_cnn.list_models())


def test_every_card_has_one_shape_and_its_builder_lives_in_its_family_file():
    for name in keras_cnn.list_models():
        card = keras_cnn.model_info(name)
        assert card.name == name and card.builder.__module__.startswith("keras_cnn.models."), name
        assert set(card.arguments) <= set(inspect.signature(card.builder).parameters), name
        assert 1 <= card.min_size <= card.input_size[0] and card.params > 0 and card.macs > 0, name
        if card.label:  # the Python builder made for the name is exported and binds the card's arguments
            named = getattr(keras_cnn, card.label)
            assert named.__name__ == card.label and card.title and card.title in named.__doc__, name
            assert not set(card.arguments) & set(inspect.signature(named).parameters), name


def test_cards_refuse_unknown_recipes_quick_fields_and_names_registered_twice():
    figures = dict(paper=keras_cnn.model_info("resnet20").paper, params=1, macs=1.0, min_size=1, reported={})
    with pytest.raises(ValueError, match="Unknown recipe 'quikc' for 'x'"):
        Card(name="x", builder=keras_cnn.CifarResNet, source="", recipe="quikc", **figures)
    with pytest.raises(ValueError, match=r"'x': quick changes lr, batch_size or epochs, not \['momentum'\]"):
        Card(name="x", builder=keras_cnn.CifarResNet, source="", recipe="quick", quick={"momentum": 0.5}, **figures)
    card = Card(name="resnet20", builder=keras_cnn.CifarResNet, source="", recipe="quick", **figures)
    with pytest.raises(ValueError, match="'resnet20' is registered twice"):
        register_all([card])


def test_a_labelled_builder_documents_its_paper_figures_and_family_call():
    """The docstring written for ResNet20: He et al. 2016's title, 269,722 trainable parameters and 40.6 M MACs
    at 32x32 (Table 6 of the paper and its CIFAR ResNet-20), and the family call it stands for."""
    assert keras_cnn.ResNet20.__doc__ == (
        'ResNet-20 for CIFAR (He, Zhang, Ren, Sun, CVPR 2016: "Deep Residual Learning for Image Recognition").\n\n'
        "269,722 trainable parameters at 10 classes, 40.6 M MACs at 32x32. CifarResNet(depth=20) under another "
        "name; keras_cnn.model_info('resnet20') has the figures and their sources."
    )
    assert inspect.signature(keras_cnn.ResNet20).return_annotation == "keras.Model"
    figures = dict(paper=keras_cnn.model_info("resnet20").paper, params=1, macs=1.0, min_size=1, reported={})
    card = Card(name="x", builder=keras_cnn.CifarResNet, source="", recipe="quick", **figures, quick={"epochs": 3})
    assert card.quick == {"epochs": 3} and card.recipe.lr == 0.05
    assert Card(name="y", builder=keras_cnn.CifarResNet, source="", recipe="quick", **figures, quick={"batch_size": 8})


def test_a_labelled_builder_refuses_to_rebind_its_fixed_arguments():
    with pytest.raises(TypeError, match=r"ResNet20\(\) fixes \['depth'\]; call CifarResNet\(\)"):
        keras_cnn.ResNet20(depth=32)


def test_a_trained_model_reloads_with_its_optimizer_after_a_plain_import(tmp_path):
    """A run saves model.keras with the package's coupled-L2 SGD; `import keras_cnn` alone (training stays
    unloaded) must register it, so keras.saving.load_model and keras_cnn.io.load_model both reload the file."""
    import numpy as np

    model = keras_cnn.create_model("lenet5", variant="modern")
    model.compile(
        keras_cnn.optimizers.SGD(0.01, momentum=0.9, nesterov=True, l2=5e-4), "sparse_categorical_crossentropy"
    )
    model.fit(np.zeros((4, 32, 32, 1), "float32"), np.arange(4), verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    _python_at_the_default_recursion_limit(
        f"import keras, keras_cnn, keras_cnn.io\npath = {str(path)!r}\n"
        "for model in (keras.saving.load_model(path, safe_mode=True), keras_cnn.io.load_model(path)):\n"
        "    opt = model.optimizer\n"
        "    assert type(opt) is keras_cnn.optimizers.SGD and abs(opt.l2 - 5e-4) < 1e-12 and opt.nesterov, opt\n"
        "assert 'keras_cnn.training' not in sys.modules\n"
    )
