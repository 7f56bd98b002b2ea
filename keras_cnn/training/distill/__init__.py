"""Teacher-to-student distillation: train a complex network offline, serve a simple one online.

- `Distiller`: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015), soft targets at
  temperature T with the T² factor.
- `MimicDistiller`: Ba & Caruana, "Do Deep Nets Really Need to be Deep?" (NeurIPS 2014), L2 regression on the
  teacher's logits; needs no labels.
- `FitNetDistiller`: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015), hint training of the
  student up to its guided layer (stage 1), then KD with λ decaying linearly (stage 2).
- `RocketLaunching`: Zhou et al., "Rocket Launching" (AAAI 2018), a light and a booster net that share their
  lower layers and train together, with a gradient block on the logit hint.

Each is a `keras.Model` that is compiled and fitted as usual (with `metrics=["accuracy"]` for the student's
accuracy); its `student` attribute is the plain Keras model that comes out, and it saves, reloads and exports
without the teacher. The teacher is frozen and runs in inference mode. Losses follow the papers (Hinton et al.
2015, arXiv:1503.02531; Ba & Caruana 2014, arXiv:1312.6184; Romero et al. 2015, arXiv:1412.6550; Zhou et al.
2018, arXiv:1708.04106); labels may be sparse or one-hot (MixUp/CutMix).
"""

from keras_cnn.training.distill.losses import (
    fitnet_kd_loss,
    hard_cross_entropy,
    hint_loss,
    kd_loss,
    mimic_loss,
    rocket_loss,
    soft_cross_entropy,
)
from keras_cnn.training.distill.models import (
    Distiller,
    FitNetDistiller,
    HintTrainer,
    MimicDistiller,
    PreActivation,
    RocketLaunching,
    block_outputs,
    logits_of,
    middle_layer,
    rocket_from_models,
)
from keras_cnn.training.distill.runs import METHODS, DistillConfig, train_distilled

__all__ = [
    "METHODS",
    "DistillConfig",
    "Distiller",
    "FitNetDistiller",
    "HintTrainer",
    "MimicDistiller",
    "PreActivation",
    "RocketLaunching",
    "block_outputs",
    "fitnet_kd_loss",
    "hard_cross_entropy",
    "hint_loss",
    "kd_loss",
    "logits_of",
    "middle_layer",
    "mimic_loss",
    "rocket_from_models",
    "rocket_loss",
    "soft_cross_entropy",
    "train_distilled",
]
