"""Initializers shared by the families ported from Torch and PyTorch code.

Each is kept as a config, not an instance: Keras deserializes a new initializer for every layer, seeded from
Python's `random` (which `keras.utils.set_random_seed` sets), so every layer draws its own weights. One shared
unseeded instance would fix its seed once, at import, and give every kernel of the same shape the same values.
"""

#: N(0, sqrt(2 / (k_h k_w C_out))) for convolutions, as fb.resnet.torch, resnet-1k-layers and
#: liuzhuang13/DenseNet initialize them.
HE_FAN_OUT = {
    "kernel_initializer": {
        "class_name": "VarianceScaling",
        "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
    }
}
#: torch.nn.Linear's default weight init U(+-1/sqrt(fan_in)) (CliqueNet-ImageNet and MSDNet zero the biases,
#: as Keras' Dense does).
TORCH_LINEAR = {
    "kernel_initializer": {
        "class_name": "VarianceScaling",
        "config": {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"},
    }
}
