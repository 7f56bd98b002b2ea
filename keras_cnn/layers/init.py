"""Initializers shared by the families ported from He et al.'s Torch code."""

import keras

#: N(0, sqrt(2 / (k_h k_w C_out))) for convolutions, as fb.resnet.torch, resnet-1k-layers and
#: liuzhuang13/DenseNet initialize them.
HE_FAN_OUT = {"kernel_initializer": keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")}
