"""keras_cnn.convert: torchvision models with random weights (and random BN statistics), converted into our
builders, give the same logits. Skipped only when torch or torchvision is not installed."""

import types

import numpy as np
import pytest

from keras_cnn import convert

torch = pytest.importorskip("torch")


def _torchvision():
    try:
        return convert.import_torchvision()
    except ImportError:
        pytest.skip("torchvision is not installed", allow_module_level=True)


torchvision = _torchvision()


def _random_torchvision(arch: str, classes: int = 7, **kwargs):
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(num_classes=classes, **kwargs)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics, so their mapping is tested
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net.eval()


ARCHITECTURES = [
    ("resnet18", 64),
    ("resnet50", 64),
    ("googlenet", 96),
    ("mobilenet_v2", 64),
    ("resnext50_32x4d", 64),
    ("shufflenet_v2_x1_0", 64),
    ("densenet121", 64),
    ("vgg11_bn", 224),
    ("alexnet", 224),
]


@pytest.mark.parametrize("arch, size", ARCHITECTURES)
def test_converted_model_gives_torchvisions_logits(arch, size, tmp_path):
    net = _random_torchvision(arch, **({"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}))
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    ours = convert.from_torchvision(path, arch, input_shape=(size, size, 3), classifier_activation=None)
    assert ours.output_shape == (None, 7)
    x = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), expected, atol=1e-4)


def test_bad_files_and_mismatches_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="State dict file not found"):
        convert.from_torchvision(tmp_path / "none.pth", "resnet18")
    state = _random_torchvision("resnet18").state_dict()
    torch.save(state, tmp_path / "r18.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((tmp_path / "r18.pth").read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        convert.from_torchvision(truncated, "resnet18")
    torch.save({"optimizer": types.SimpleNamespace(lr=0.1)}, tmp_path / "pickled.pth")  # needs pickle: refused
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        convert.from_torchvision(tmp_path / "pickled.pth", "resnet18")
    with pytest.raises(ValueError, match=r"does not fit 'resnet34'.*layers without tensors \['conv2_block3_1_bn'"):
        convert.from_torchvision(tmp_path / "r18.pth", "resnet34", input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"No torchvision converter for 'mobilenet'; available: \['alexnet'"):
        convert.from_torchvision(tmp_path / "r18.pth", "mobilenet")


def test_googlenet_auxiliary_heads_convert_too():
    net = _random_torchvision("googlenet", aux_logits=True, init_weights=True)
    ours = convert.from_torchvision(net.state_dict(), "googlenet", classifier_activation=None)
    assert ours.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    net.train()  # torchvision returns the auxiliary logits in training mode only; BN and dropout must not act
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.Dropout)):
            module.eval()
    x = np.random.default_rng(1).random((1, 224, 224, 3), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    got = np.asarray(ours(x, training=False))
    for ours_out, theirs in zip(got, (expected.logits, expected.aux_logits1, expected.aux_logits2), strict=True):
        np.testing.assert_allclose(ours_out, theirs.numpy(), atol=1e-4)
