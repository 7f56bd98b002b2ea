"""The distillation losses of the four papers, batch means, on logits; labels sparse or one-hot."""

from __future__ import annotations

import keras
from keras import ops


def soft_cross_entropy(teacher_logits, student_logits, temperature: float):
    """H(softmax(t/T), softmax(s/T)) per example: Hinton's soft-target loss (KL plus the teacher's entropy,
    which has no gradient)."""
    targets = ops.softmax(teacher_logits / temperature, axis=-1)
    return -ops.sum(targets * ops.log_softmax(student_logits / temperature, axis=-1), axis=-1)


def _one_hot(labels, logits) -> bool:
    """Whether `labels` are one-hot (MixUp/CutMix) rather than class indices for these logits."""
    return len(labels.shape) == len(logits.shape)


def _regularized(loss, model: keras.Model):
    """`loss` plus the regularization losses `model` carries (CliqueNet's reference L2)."""
    return loss + ops.sum(model.losses) if model.losses else loss


def hard_cross_entropy(labels, logits):
    """Cross-entropy with the true labels per example; sparse or one-hot labels."""
    if _one_hot(labels, logits):
        return keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def kd_loss(labels, teacher_logits, student_logits, *, temperature: float, alpha: float):
    """Hinton's loss, batch mean: alpha·H(y, softmax(s)) + (1 - alpha)·T²·H(softmax(t/T), softmax(s/T)). The
    T² keeps the soft gradients' scale as T changes."""
    soft = soft_cross_entropy(teacher_logits, student_logits, temperature) * temperature**2
    return ops.mean(alpha * hard_cross_entropy(labels, student_logits) + (1.0 - alpha) * soft)


def mimic_loss(teacher_logits, student_logits):
    """Ba & Caruana's logit regression, batch mean: ½‖s - t‖² summed over the classes."""
    return ops.mean(0.5 * ops.sum(ops.square(student_logits - teacher_logits), axis=-1))


def hint_loss(hint, regressed):
    """FitNets stage 1, batch mean of ½‖u_h - r(v_g)‖² averaged over the hint's elements (the paper sums them;
    the mean keeps the learning rate independent of the hint layer's size). Every example has as many elements,
    so that is half the mean over all of them."""
    return 0.5 * ops.mean(ops.square(hint - regressed))


def fitnet_kd_loss(labels, teacher_logits, student_logits, *, temperature: float, lambda_):
    """FitNets stage 2 (eq. 2), batch mean: H(y, P_S) + λ·H(P_T^τ, P_S^τ), without Hinton's τ² factor."""
    soft = soft_cross_entropy(teacher_logits, student_logits, temperature)
    return ops.mean(hard_cross_entropy(labels, student_logits) + lambda_ * soft)


def rocket_loss(labels, light_logits, booster_logits, *, hint_weight: float):
    """Rocket Launching: H(y, p) + H(y, q) + λ‖l - z‖² on logits, summed over classes and averaged over the
    batch (the reference code's). The booster's logits z are a constant in the hint term (gradient block)."""
    hint = ops.sum(ops.square(light_logits - ops.stop_gradient(booster_logits)), axis=-1)
    ce = hard_cross_entropy(labels, light_logits) + hard_cross_entropy(labels, booster_logits)
    return ops.mean(ce + hint_weight * hint)
