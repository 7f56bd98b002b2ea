"""Multi-exit networks at inference (MSDNet: Huang et al., ICLR 2018, Sec. 4; gaohuang/MSDNet `dynamic_eval`).

* anytime prediction: the accuracy of every exit (`anytime_accuracy`);
* budgeted batch classification: per-exit confidence thresholds fitted on a validation split so that the
  fractions of samples leaving at exits 1..K follow q^k (`fit_thresholds`), then test accuracy against the
  average cost per image (`budgeted_evaluation`), for a range of q;
* `EarlyExit`: runs a batch exit by exit and stops each sample at the first exit whose top softmax probability
  reaches that exit's threshold, so later exits only see the samples still running.

Exits are a model's outputs in order, cheapest first, each a softmax (or logits, given a linear classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_cnn.applications import deep_graph
from keras_cnn.complexity import ExitCost, exit_costs, nodes_by_output

#: q = p / 20 for p = 1..39, the budget levels of the reference's `adaptive_inference.py`.
DEFAULT_Q = tuple(p / 20 for p in range(1, 40))


def _exit_activations(model: keras.Model) -> list[bool]:
    """For every output, whether it is already a softmax (True) or logits (False)."""
    softmax = []
    for output in model.outputs:
        operation = output._keras_history.operation
        activation = getattr(operation, "activation", None)
        if activation is keras.activations.softmax or isinstance(operation, keras.layers.Softmax):
            softmax.append(True)
        elif activation in (None, keras.activations.linear):
            softmax.append(False)
        else:
            raise ValueError(
                f"Output {operation.name!r} of {model.name!r} ends in {activation!r}; "
                "early exits need a softmax or a linear (logits) classifier."
            )
    return softmax


def exit_probabilities(model: keras.Model, data, batch_size: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """(softmax of every exit, each [N, classes]; the labels [N]) over `data`: a dataset of (images, labels)
    batches or an (images, labels) pair of arrays. Labels may be integers or one-hot."""
    softmax = _exit_activations(model)
    if isinstance(data, tuple):
        data = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    outputs, labels = [[] for _ in model.outputs], []
    for images, y in data:
        predictions = model(images, training=False)
        for k, p in enumerate(predictions if isinstance(predictions, (list, tuple)) else [predictions]):
            outputs[k].append(np.asarray(p if softmax[k] else keras.ops.softmax(p)))
        y = np.asarray(y)
        labels.append(y.argmax(-1) if y.ndim == 2 else y)
    if not labels:
        raise ValueError("data holds no batches.")
    return [np.concatenate(o) for o in outputs], np.concatenate(labels)


def _check_probabilities(probabilities: Sequence[np.ndarray], labels: np.ndarray | None = None) -> np.ndarray:
    """Stack K exits' [N, C] probabilities into [K, N, C], checking their shapes (and the labels')."""
    shapes = {np.shape(p) for p in probabilities}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"probabilities must be one [N, classes] array per exit, all alike; received shapes {shapes}.")
    stacked = np.stack(probabilities)
    if labels is not None and np.shape(labels) != stacked.shape[1:2]:
        raise ValueError(f"labels must have one entry per sample ({stacked.shape[1]}); received {np.shape(labels)}.")
    return stacked


@dataclass(frozen=True)
class Anytime:
    """Top-1 accuracy of every exit alone, and of the running mean of exits 1..k's softmax (the Lua code's
    "ensemble" column)."""

    accuracy: list[float]
    ensemble_accuracy: list[float]


def anytime_accuracy(probabilities: Sequence[np.ndarray], labels: np.ndarray) -> Anytime:
    """Anytime prediction: each exit's accuracy on every sample."""
    p = _check_probabilities(probabilities, labels)
    ensemble = np.cumsum(p, axis=0) / np.arange(1, len(p) + 1)[:, None, None]
    correct = lambda q: [float(np.mean(q_k.argmax(-1) == labels)) for q_k in q]  # noqa: E731
    return Anytime(accuracy=correct(p), ensemble_accuracy=correct(ensemble))


def exit_fractions(q: float, exits: int) -> np.ndarray:
    """The target share of samples leaving at exits 1..K: q^k normalized (q < 1 favours early exits)."""
    if not q > 0:
        raise ValueError(f"q must be positive; received q={q!r}.")
    if not isinstance(exits, int) or exits < 1:
        raise ValueError(f"exits must be a positive integer; received {exits!r}.")
    weights = np.power(float(q), np.arange(1, exits + 1))
    return weights / weights.sum()


def fit_thresholds(probabilities: Sequence[np.ndarray], fractions: Sequence[float]) -> np.ndarray:
    """Thresholds T_1..T_K on the top softmax probability, fitted on validation outputs as the reference does:
    for k < K, among the samples that have not left yet, T_k is the confidence of the floor(N * pi_k)-th most
    confident one at exit k, and every sample at least that confident leaves; T_K = -inf takes the rest. An exit
    that gets no sample has T_k = +inf."""
    p = _check_probabilities(probabilities)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (len(p),) or np.any(fractions < 0):
        raise ValueError(f"fractions must be {len(p)} non-negative shares, one per exit; received {fractions}.")
    confidence = p.max(axis=-1)
    n = confidence.shape[1]
    left = np.zeros(n, dtype=bool)
    thresholds = np.full(len(p), np.inf)
    for k in range(len(p) - 1):
        quota = int(np.floor(n * fractions[k]))
        candidates = np.flatnonzero(~left)
        if 0 < quota <= len(candidates):
            ranked = candidates[np.argsort(-confidence[k, candidates], kind="stable")]
            thresholds[k] = confidence[k, ranked[quota - 1]]
        left |= confidence[k] >= thresholds[k]
    thresholds[-1] = -np.inf
    return thresholds


def assign_exits(probabilities: Sequence[np.ndarray], thresholds: Sequence[float]) -> np.ndarray:
    """The exit (0-based) each sample leaves at: the first k whose top probability reaches T_k."""
    p = _check_probabilities(probabilities)
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.shape != (len(p),):
        raise ValueError(f"thresholds must hold one value per exit ({len(p)}); received shape {thresholds.shape}.")
    confident = p.max(axis=-1) >= thresholds[:, None]
    confident[-1] = True
    return confident.argmax(axis=0)


@dataclass(frozen=True)
class BudgetPoint:
    """One budget level q: its thresholds, the exit fractions on the validation and test splits, and the test
    accuracy and average cost per image (in the units of the `costs` given)."""

    q: float
    thresholds: list[float]
    validation_fractions: list[float]
    test_fractions: list[float]
    accuracy: float
    cost: float


def budgeted_evaluation(
    validation: tuple[Sequence[np.ndarray], np.ndarray],
    test: tuple[Sequence[np.ndarray], np.ndarray],
    costs: Sequence[float],
    q: Sequence[float] = DEFAULT_Q,
) -> list[BudgetPoint]:
    """Budgeted batch classification: for each q, thresholds fitted on `validation` = (probabilities, labels)
    so the exit fractions follow q^k, then applied to `test`; cost is the mean of the cumulative exit costs
    over the test samples (e.g. `exit_costs` ops with `msdnet.block_outputs`, the reference's figures)."""
    val_p = _check_probabilities(validation[0], validation[1])
    test_p = _check_probabilities(test[0], test[1])
    costs = np.asarray(costs, dtype=float)
    if costs.shape != (len(val_p),) or len(test_p) != len(val_p):
        raise ValueError(f"validation, test and costs must cover the same {len(val_p)} exits; costs {costs.shape}.")
    points = []
    for level in q:
        thresholds = fit_thresholds(val_p, exit_fractions(level, len(val_p)))
        val_exit, test_exit = assign_exits(val_p, thresholds), assign_exits(test_p, thresholds)
        chosen = test_p[test_exit, np.arange(test_p.shape[1])]
        share = lambda exits: (np.bincount(exits, minlength=len(val_p)) / len(exits)).tolist()  # noqa: E731
        points.append(
            BudgetPoint(
                q=float(level),
                thresholds=thresholds.tolist(),
                validation_fractions=share(val_exit),
                test_fractions=share(test_exit),
                accuracy=float(np.mean(chosen.argmax(-1) == test[1])),
                cost=float(costs[test_exit].mean()),
            )
        )
    return points


def reference_costs(model: keras.Model) -> list[ExitCost]:
    """Per-exit costs as the reference counts them: for an MSDNet whole blocks run before their exit
    (`msdnet.block_outputs`); for any other multi-exit model, what each exit depends on."""
    from keras_cnn.models.msdnet import block_outputs

    try:
        return exit_costs(model, block_outputs(model))
    except ValueError:
        return exit_costs(model)


@dataclass(frozen=True)
class ExitReport:
    """What `evaluate` measured: anytime accuracy on the test samples, per-exit costs as the reference counts
    them and as `EarlyExit` runs (`lazy_costs`), the budgeted-batch curve (cost in reference ops), and which
    samples of the test data were measured."""

    anytime: Anytime
    costs: list[ExitCost]
    lazy_costs: list[ExitCost]
    budget: list[BudgetPoint]
    threshold_samples: int
    test_indices: list[int]


def evaluate(
    model: keras.Model,
    test,
    validation=None,
    *,
    threshold_fraction: float = 0.5,
    seed: int = 0,
    q: Sequence[float] = DEFAULT_Q,
) -> ExitReport:
    """Anytime and budgeted-batch evaluation of a multi-exit model (data as in `exit_probabilities`).

    Thresholds are fitted on `validation`, held-out images the model did not train on (the paper holds out
    5,000 CIFAR and 50,000 ImageNet training images); without it, on a seeded `threshold_fraction` of `test`,
    and the rest of `test` is what accuracy and cost are measured on.
    """
    probabilities, labels = exit_probabilities(model, test)
    part = lambda idx: ([p[idx] for p in probabilities], labels[idx])  # noqa: E731
    if validation is not None:
        fit, measured_indices = exit_probabilities(model, validation), np.arange(len(labels))
    else:
        if not 0.0 < threshold_fraction < 1.0:
            raise ValueError(f"threshold_fraction must be in (0, 1); received {threshold_fraction!r}.")
        order = np.random.default_rng(seed).permutation(len(labels))
        cut = round(threshold_fraction * len(labels))
        if not 0 < cut < len(labels):
            raise ValueError(f"{len(labels)} samples are too few to split at threshold_fraction={threshold_fraction}.")
        fit, measured_indices = part(order[:cut]), np.sort(order[cut:])
    measured, costs = part(measured_indices), reference_costs(model)
    return ExitReport(
        anytime=anytime_accuracy(*measured),
        costs=costs,
        lazy_costs=exit_costs(model),
        budget=budgeted_evaluation(fit, measured, [c.ops for c in costs], q=q),
        threshold_samples=len(fit[1]),
        test_indices=measured_indices.tolist(),
    )


class EarlyExit:
    """Run `model` exit by exit: a sample leaves at the first exit k whose top softmax probability is at least
    `thresholds[k]` (the last exit takes every sample left), and later exits only compute the samples still
    running. Calling it returns a dict of `classes` [N], `exits` [N] (0-based) and the `probabilities` [N, C]
    of the exit taken. Works eagerly and inside `tf.function` (a serving signature).

    The model is cut into one segment per exit: segment k computes what exit k needs and was not computed for an
    earlier exit, so a sample leaving at k costs `exit_costs(model)[k]` (each exit's own dependencies only).
    """

    def __init__(self, model: keras.Model, thresholds: Sequence[float]):
        if len(model.inputs) != 1:
            raise ValueError(f"EarlyExit needs a model with one input; {model.name!r} has {len(model.inputs)}.")
        thresholds = np.asarray(thresholds, dtype="float32")
        if thresholds.shape != (len(model.outputs),):
            raise ValueError(
                f"thresholds must hold one value per exit ({len(model.outputs)} for {model.name!r}); "
                f"received shape {thresholds.shape}."
            )
        self.model, self.thresholds = model, thresholds
        self._softmax = _exit_activations(model)
        self.segments, self._segment_inputs, self._segment_outputs = self._cut(model)
        #: what must be carried past segment k: the keys later segments read
        self._carried = [{key for r in self._segment_inputs[k + 1 :] for key in r} for k in range(len(self.segments))]

    @staticmethod
    @deep_graph()
    def _cut(model: keras.Model):
        """Segments as Keras models from intermediate tensors, with the keys (ids) of the tensors each reads and
        writes: its exit first, then what later segments read of its own."""
        source = model.inputs[0]
        nodes_of = [
            [node for node in added if not isinstance(node.operation, keras.layers.InputLayer)]
            for added in nodes_by_output(model)
        ]
        made_in, tensors = {id(source): -1}, {id(source): source}
        for k, nodes in enumerate(nodes_of):
            for tensor in (t for node in nodes for t in node.output_tensors):
                made_in[id(tensor)], tensors[id(tensor)] = k, tensor
        reads = [
            list(dict.fromkeys(id(t) for node in nodes for t in node.input_tensors if made_in[id(t)] != k))
            for k, nodes in enumerate(nodes_of)
        ]
        segments, writes = [], []
        for k, output in enumerate(model.outputs):
            later = list(dict.fromkeys(key for r in reads[k + 1 :] for key in r if made_in[key] == k))
            segments.append(
                keras.Model(
                    [tensors[key] for key in reads[k]],
                    [output, *(tensors[key] for key in later)],
                    name=f"{model.name}_segment{k + 1}",
                )
            )
            writes.append([id(output), *later])
        return segments, reads, writes

    def __call__(self, images) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images, dtype=self.model.inputs[0].dtype)
        n = tf.shape(images)[0]
        running = tf.range(n)
        state = {id(self.model.inputs[0]): images}
        classes = exits = probabilities = None
        for k, segment in enumerate(self.segments):
            values = segment([state[key] for key in self._segment_inputs[k]], training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            p = values[0] if self._softmax[k] else tf.nn.softmax(values[0])
            if probabilities is None:
                classes, exits = tf.zeros([n], tf.int32), tf.zeros([n], tf.int32)
                probabilities = tf.zeros([n, p.shape[-1]], p.dtype)
            state.update(zip(self._segment_outputs[k], values, strict=True))
            last = k == len(self.segments) - 1
            leave = tf.ones_like(running, tf.bool) if last else tf.reduce_max(p, -1) >= self.thresholds[k]
            where = tf.boolean_mask(running, leave)[:, None]
            classes = tf.tensor_scatter_nd_update(classes, where, tf.argmax(tf.boolean_mask(p, leave), -1, tf.int32))
            exits = tf.tensor_scatter_nd_update(exits, where, tf.fill(tf.shape(where)[:1], k))
            probabilities = tf.tensor_scatter_nd_update(probabilities, where, tf.boolean_mask(p, leave))
            stay = tf.logical_not(leave)
            running = tf.boolean_mask(running, stay)
            state = {key: tf.boolean_mask(value, stay) for key, value in state.items() if key in self._carried[k]}
            if tf.executing_eagerly() and int(tf.size(running)) == 0:
                break
        return {"classes": classes, "exits": exits, "probabilities": probabilities}
