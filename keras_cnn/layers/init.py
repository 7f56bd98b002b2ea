"""Initializers shared by the families ported from Torch and PyTorch code."""

import keras

#: N(0, sqrt(2 / (k_h k_w C_out))) for convolutions, as fb.resnet.torch, resnet-1k-layers and
#: liuzhuang13/DenseNet initialize them.
HE_FAN_OUT = {"kernel_initializer": keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")}
#: torch.nn.Linear's default weight init U(+-1/sqrt(fan_in)) (CliqueNet-ImageNet and MSDNet zero the biases,
#: as Keras' Dense does).
TORCH_LINEAR = {"kernel_initializer": keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")}
