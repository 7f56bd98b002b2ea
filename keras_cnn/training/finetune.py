"""Fine-tuning a trained model on new classes: a new head on the old features, trained first with the
backbone frozen, then together with it at a lower rate (Yosinski et al. 2014; the Keras transfer-learning
guide). The backbone's BatchNormalization layers stay frozen in both stages (`trainable=False`, which in Keras 3
also means inference mode): they normalize with the moving statistics learnt on the original data, and a small
new dataset never overwrites them. (The guide's `backbone(x, training=False)` alone does not do this inside a
Functional model in Keras 3.15: the outer fit's `training=True` replaces it.)
"""

from __future__ import annotations

import keras

from keras_cnn import applications
from keras_cnn.optimizers import SGD


@applications.deep_graph()
def backbone_of(model: keras.Model) -> keras.Model:
    """`model` up to the input of its `predictions` layer: the features its classifier reads."""
    try:
        head = model.get_layer("predictions")
    except ValueError as err:
        raise ValueError(f"Model {model.name!r} has no layer named 'predictions' to replace.") from err
    return keras.Model(model.inputs, head.input, name=f"{model.name}_backbone")


@applications.deep_graph()
def with_new_head(model: keras.Model, classes: int, *, dropout_rate: float = 0.0) -> keras.Model:
    """A model whose backbone is `model`'s (shared weights, called with training=False) and whose head is a
    new `predictions` layer for `classes` classes (float32, softmax)."""
    if not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2; received {classes!r}.")
    backbone = backbone_of(model)
    inputs = keras.Input(model.input_shape[1:], name="image")
    x = backbone(inputs, training=False)
    if len(x.shape) > 2:  # a backbone that ends in feature maps
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate:
        x = keras.layers.Dropout(dropout_rate, name="head_dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions", dtype=applications.head_dtype())(x)
    return keras.Model(inputs, outputs, name=f"{model.name}_finetuned")


def finetune(
    model: keras.Model,
    train,
    validation,
    *,
    head_epochs: int,
    epochs: int,
    head_lr: float = 0.01,
    lr: float = 0.001,
    callbacks=(),
    verbose: int = 2,
) -> dict[str, list[float]]:
    """Stage 1: `head_epochs` with the backbone frozen (SGD momentum at `head_lr`). Stage 2: `epochs` with
    everything but the backbone's BatchNormalization layers trainable at `lr`. `model` comes from
    `with_new_head`. Returns the two histories joined, with a "stage" entry per epoch."""
    backbone = model.layers[1]
    history: dict[str, list[float]] = {"stage": []}
    for stage, (trainable, n, rate) in enumerate(((False, head_epochs, head_lr), (True, epochs, lr)), start=1):
        if not n:
            continue
        backbone.trainable = trainable  # changing it needs a new compile
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        model.compile(SGD(rate, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
        fitted = model.fit(
            train, validation_data=validation, epochs=n, callbacks=list(callbacks), verbose=verbose, shuffle=False
        )
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(values)
        history["stage"] += [stage] * n
    return history
