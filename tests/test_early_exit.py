"""Early-exit inference and evaluation (Huang et al. 2018, Sec. 4; gaohuang/MSDNet): anytime accuracy, thresholds that
give the q^k exit fractions on the validation split, the budgeted-batch cost and accuracy, and EarlyExit against the
full model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn import early_exit
from keras_cnn.early_exit import EarlyExit, anytime_accuracy, assign_exits, budgeted_evaluation, fit_thresholds
from tests.helpers import two_exit_model


def _random_exits(rng, exits=4, n=1000, classes=10):
    """Softmax outputs whose confidence grows with depth, and labels."""
    logits = rng.normal(size=(exits, n, classes)) * np.arange(1, exits + 1)[:, None, None]
    return list(keras.ops.convert_to_numpy(keras.ops.softmax(logits))), rng.integers(0, classes, n)


@pytest.mark.parametrize("q", [0.5, 1.0, 1.9])
def test_fitted_thresholds_reproduce_the_requested_exit_fractions_on_validation(q):
    probabilities, _ = _random_exits(np.random.default_rng(0))
    fractions = early_exit.exit_fractions(q, 4)
    np.testing.assert_allclose(fractions, q ** np.arange(1, 5) / (q ** np.arange(1, 5)).sum())
    thresholds = fit_thresholds(probabilities, fractions)
    counts = np.bincount(assign_exits(probabilities, thresholds), minlength=4)
    quotas = np.floor(1000 * fractions[:3]).astype(int)
    np.testing.assert_array_equal(counts[:3], quotas)  # no ties among random confidences
    assert counts[3] == 1000 - quotas.sum() and thresholds[-1] == -np.inf


def test_threshold_fitting_follows_the_reference_walk_by_hand():
    # Top probabilities of 5 samples at 3 exits (two classes, class 0 the likelier); fractions 0.4 / 0.4 / 0.2.
    conf = np.array([[0.9, 0.8, 0.55, 0.7, 0.6], [0.5, 0.5, 0.6, 0.95, 0.75], [0.6, 0.6, 0.6, 0.6, 0.6]])
    probabilities = [np.stack([c, 1 - c], -1) for c in conf]
    thresholds = fit_thresholds(probabilities, [0.4, 0.4, 0.2])
    # Exit 1: the 2nd most confident of all five sets T_1 = 0.8, so samples 0 and 1 leave. Exit 2: the 2nd most
    # confident of samples 2-4 sets T_2 = 0.75, so samples 3 and 4 leave; sample 2 goes to the last exit.
    np.testing.assert_array_equal(thresholds, [0.8, 0.75, -np.inf])
    np.testing.assert_array_equal(assign_exits(probabilities, thresholds), [0, 0, 2, 1, 1])
    # A quota of zero samples (the reference's 1e8 threshold) lets nobody leave at that exit.
    assert fit_thresholds(probabilities, [0.0, 0.9, 0.1])[0] == np.inf


def test_budgeted_evaluation_costs_and_accuracy_by_hand():
    rng = np.random.default_rng(1)
    val, test = _random_exits(rng, exits=3, n=400), _random_exits(rng, exits=3, n=300)
    costs = [10.0, 25.0, 45.0]
    points = budgeted_evaluation(val, test, costs, q=(0.5, 2.0))
    for point in points:
        exits = assign_exits(test[0], point.thresholds)
        chosen = np.stack(test[0])[exits, np.arange(300)].argmax(-1)
        assert point.accuracy == pytest.approx(np.mean(chosen == test[1]))
        assert point.cost == pytest.approx(np.mean(np.asarray(costs)[exits]))
        assert point.test_fractions == pytest.approx(np.bincount(exits, minlength=3) / 300)
        assert sum(point.validation_fractions) == pytest.approx(1.0)
    assert points[0].cost < points[1].cost  # q < 1 sends more samples out early
    with pytest.raises(ValueError, match="same 3 exits"):
        budgeted_evaluation(val, test, costs[:2])


def test_anytime_accuracy_of_each_exit_and_of_the_running_ensemble():
    labels = np.array([0, 1, 1])
    p1 = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])  # right, wrong, right
    p2 = np.array([[0.4, 0.6], [0.1, 0.9], [0.45, 0.55]])  # wrong, right, right
    result = anytime_accuracy([p1, p2], labels)
    assert result.accuracy == pytest.approx([2 / 3, 2 / 3])
    # mean of exits 1-2: [0.65, 0.35] right, [0.35, 0.65] right, [0.325, 0.675] right
    assert result.ensemble_accuracy == pytest.approx([2 / 3, 1.0])
    with pytest.raises(ValueError, match="one entry per sample"):
        anytime_accuracy([p1, p2], labels[:2])


@pytest.fixture(scope="module")
def small_msdnet():
    keras.utils.set_random_seed(0)
    return keras_cnn.MSDNet(
        blocks=3, step=1, base=1, structure="cifar", channels=8, growth_rate=4, input_shape=(20, 20, 3), classes=5
    )


def _away_from_ties(full, thresholds):
    """Fitted thresholds equal some sample's top probability; the early-exit run computes later segments on
    fewer samples, which changes float32 round-off, so each threshold moves halfway down to the next lower
    top probability: the same assignment, with a margin no round-off crosses."""
    moved = []
    for p, t in zip(full, thresholds, strict=True):
        below = p.max(axis=-1)[p.max(axis=-1) < t]
        moved.append((t + below.max()) / 2 if np.isfinite(t) and below.size else t)
    return moved


def test_early_exit_equals_the_full_model_at_the_exit_each_sample_takes(small_msdnet):
    model = small_msdnet
    x = np.random.default_rng(2).random((24, 20, 20, 3)).astype("float32")
    full = [np.asarray(p) for p in model(x, training=False)]
    for thresholds, expected in (([-np.inf] * 3, 0), ([np.inf] * 3, 2)):
        result = EarlyExit(model, thresholds)(x)
        assert set(np.asarray(result["exits"])) == {expected}
        np.testing.assert_allclose(result["probabilities"], full[expected], atol=1e-6)
    thresholds = _away_from_ties(full, fit_thresholds(full, early_exit.exit_fractions(1.0, 3)))
    runner = EarlyExit(model, thresholds)
    result = runner(x)
    exits = np.asarray(result["exits"])
    np.testing.assert_array_equal(exits, assign_exits(full, thresholds))
    assert len(set(exits)) == 3  # every exit is used
    chosen = np.stack(full)[exits, np.arange(len(x))]
    np.testing.assert_allclose(result["probabilities"], chosen, atol=1e-6)
    np.testing.assert_array_equal(result["classes"], chosen.argmax(-1))
    # As a serving function: a traced graph with a free batch dimension gives the same answer.
    serve = tf.function(runner.__call__, input_signature=[tf.TensorSpec([None, 20, 20, 3], tf.float32)])
    np.testing.assert_array_equal(serve(x)["exits"], exits)


def test_later_segments_only_compute_the_samples_still_running(small_msdnet):
    model = small_msdnet
    x = np.random.default_rng(3).random((24, 20, 20, 3)).astype("float32")
    full = [np.asarray(p) for p in model(x, training=False)]
    runner = EarlyExit(model, fit_thresholds(full, early_exit.exit_fractions(0.5, 3)))
    seen = []
    for segment in runner.segments:
        segment.call = (
            lambda call: lambda inputs, *a, **k: seen.append(int(inputs[0].shape[0])) or call(inputs, *a, **k)
        )(segment.call)
    exits = np.asarray(runner(x)["exits"])
    assert seen == [24, int((exits >= 1).sum()), int((exits >= 2).sum())]
    assert seen[1] < 24
    # Segment k computes what exit k needs beyond exit k - 1: their MACs add up to the whole model's.
    costs = keras_cnn.exit_costs(model)
    assert [keras_cnn.count_macs(s) for s in runner.segments] == [
        costs[0].macs,
        costs[1].macs - costs[0].macs,
        costs[2].macs - costs[1].macs,
    ]
    assert costs[-1].macs == keras_cnn.count_macs(model)


def test_logit_exits_and_bad_input():
    model = keras_cnn.MSDNet(
        blocks=2,
        step=1,
        base=1,
        structure="cifar",
        channels=8,
        growth_rate=4,
        input_shape=(17, 17, 3),
        classes=3,
        classifier_activation=None,
    )
    x = np.random.default_rng(4).random((6, 17, 17, 3)).astype("float32")
    result = EarlyExit(model, [np.inf, -np.inf])(x)
    np.testing.assert_allclose(result["probabilities"], keras.ops.softmax(model(x)[1]), atol=1e-6)
    probabilities, labels = early_exit.exit_probabilities(model, (x, np.arange(6) % 3))
    np.testing.assert_allclose(probabilities[1], result["probabilities"], atol=1e-6)
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="one value per exit"):
        EarlyExit(model, [0.5])
    with pytest.raises(ValueError, match=r"softmax or a linear \(logits\) classifier\.$"):
        inputs = keras.Input((4,))
        EarlyExit(keras.Model(inputs, [keras.layers.Dense(2, activation="sigmoid")(inputs)] * 2), [0.5, 0.5])
    with pytest.raises(ValueError, match="q must be positive"):
        early_exit.exit_fractions(0.0, 3)
    with pytest.raises(ValueError, match=r"one list of tensors per output \(2\); received 1"):
        keras_cnn.exit_costs(model, [[]])


def test_a_saved_model_export_serves_early_exits(small_msdnet, tmp_path):
    from keras_cnn.export import export_saved_model

    model = small_msdnet
    x = np.random.default_rng(5).random((16, 20, 20, 3)).astype("float32")
    full = [np.asarray(p) for p in model(x)]
    thresholds = _away_from_ties(full, fit_thresholds(full, early_exit.exit_fractions(1.0, 3)))
    path = export_saved_model(model, tmp_path / "msdnet", exit_thresholds=thresholds, top_k=2)
    served = tf.saved_model.load(path).signatures["serving_default"](image=tf.constant(x))
    expected = EarlyExit(model, thresholds)(x)
    np.testing.assert_array_equal(served["exits"], expected["exits"])
    np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(served["top_k_classes"][:, 0], expected["classes"])
    with pytest.raises(ValueError, match="exit_thresholds are for multi-exit models"):
        export_saved_model(keras_cnn.LeNet5(), tmp_path / "lenet", exit_thresholds=[0.5])


def test_evaluate_exits_example_reports_anytime_budget_and_served_figures(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    model = keras_cnn.MSDNet(
        blocks=3, step=1, base=1, structure="cifar", channels=8, growth_rate=4, input_shape=(32, 32, 1), classes=10
    )
    model.save(tmp_path / "model.keras")
    cmd = [
        sys.executable,
        str(root / "examples/evaluate_exits.py"),
        f"--saved_model={tmp_path / 'model.keras'}",
        "--serve_q=0.5",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "exits.json").read_text())
    assert len(report["anytime"]["accuracy"]) == 3 and len(report["costs"]) == 3
    assert report["threshold_samples"] == 180 and len(report["test_indices"]) == 180  # half of the 360 held out
    point = next(p for p in report["budget"] if p["q"] == 0.5)
    assert report["served"]["accuracy"] == pytest.approx(point["accuracy"])  # EarlyExit = the budget table
    counts = report["served"]["exit_counts"]
    assert sum(counts) == 180 and counts == [round(f * 180) for f in point["test_fractions"]]
    assert "EarlyExit at q=0.5" in result.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_anytime_ensemble_is_the_running_mean_over_three_exits_by_hand():
    labels = np.array([0, 1])
    p1 = np.array([[0.9, 0.1], [0.9, 0.1]])  # right, wrong
    p2 = np.array([[0.2, 0.8], [0.3, 0.7]])  # wrong, right
    p3 = np.array([[0.7, 0.3], [0.1, 0.9]])  # right, right
    result = anytime_accuracy([p1, p2, p3], labels)
    assert result.accuracy == [0.5, 0.5, 1.0]
    # means: exits 1-2 [0.55, 0.45] right, [0.6, 0.4] wrong; exits 1-3 [0.6, 0.4] right, [0.433, 0.567] right
    assert result.ensemble_accuracy == [0.5, 0.5, 1.0]


def test_exit_probabilities_from_arrays_or_batches_with_integer_or_one_hot_labels(small_msdnet):
    rng = np.random.default_rng(6)
    x, y = rng.random((10, 20, 20, 3), dtype=np.float32), rng.integers(0, 5, 10)
    full = [np.asarray(p) for p in small_msdnet(x, training=False)]
    batches = tf.data.Dataset.from_tensor_slices((x, np.eye(5, dtype="float32")[y])).batch(3)
    for data in ((x, y), batches):
        probabilities, labels = early_exit.exit_probabilities(small_msdnet, data)
        np.testing.assert_array_equal(labels, y)
        assert len(probabilities) == 3
        for ours, theirs in zip(probabilities, full, strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-6)  # softmax exits are taken as they are
    logits = keras.Model(inp := keras.Input((4, 4, 1)), keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    x4 = rng.random((5, 4, 4, 1), dtype=np.float32)
    probabilities, _ = early_exit.exit_probabilities(logits, (x4, np.zeros(5)))
    assert len(probabilities) == 1
    np.testing.assert_allclose(probabilities[0], keras.ops.softmax(logits(x4)), atol=1e-6)
    empty = tf.data.Dataset.from_tensor_slices((x4[:0], np.zeros(0))).batch(2)
    with pytest.raises(ValueError, match=r"^data holds no batches\.$"):
        early_exit.exit_probabilities(logits, empty)


def test_budgeted_evaluation_checks_labels_and_keeps_one_share_per_exit():
    rng = np.random.default_rng(7)
    val, test = _random_exits(rng, exits=3, n=50), _random_exits(rng, exits=3, n=20)
    sure = [np.eye(10)[test[1]], *test[0][1:]]  # every test sample is certain at exit 1
    points = budgeted_evaluation(val, (sure, test[1]), [1.0, 2.0, 3.0], q=(0.5, 2.0))
    assert [p.q for p in points] == [0.5, 2.0]
    assert all(p.test_fractions == [1.0, 0.0, 0.0] and p.cost == 1.0 and p.accuracy == 1.0 for p in points)
    with pytest.raises(ValueError, match=r"thresholds must hold one value per exit \(3\); received shape \(2,\)"):
        assign_exits(val[0], [0.5, -np.inf])
    for bad_val, bad_test in (((val[0], val[1][:-1]), test), (val, (test[0], test[1][:-1]))):
        with pytest.raises(ValueError, match="labels must have one entry per sample"):
            budgeted_evaluation(bad_val, bad_test, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"one entry per sample \(50\); received \(49,\)\.$"):
        anytime_accuracy(val[0], val[1][:-1])


def test_evaluate_fits_on_a_seeded_part_or_on_validation_and_measures_the_rest(small_msdnet):
    from keras_cnn.complexity import exit_costs
    from keras_cnn.models.msdnet import block_outputs

    rng = np.random.default_rng(5)
    x, y = rng.random((12, 20, 20, 3), dtype=np.float32), rng.integers(0, 5, 12)
    probabilities, _ = early_exit.exit_probabilities(small_msdnet, (x, y))
    part = lambda idx: ([p[idx] for p in probabilities], y[idx])  # noqa: E731
    order = np.random.default_rng(0).permutation(12)  # seed 0, half of the samples fit the thresholds
    report = early_exit.evaluate(small_msdnet, (x, y), q=(0.5, 1.0))
    assert report.threshold_samples == 6 and report.test_indices == sorted(order[6:].tolist())
    costs = exit_costs(small_msdnet, block_outputs(small_msdnet))
    assert report.costs == costs and report.lazy_costs == exit_costs(small_msdnet) and costs != report.lazy_costs
    measured = part(np.array(report.test_indices))
    assert report.anytime == anytime_accuracy(*measured)
    assert report.budget == budgeted_evaluation(part(order[:6]), measured, [c.ops for c in costs], q=(0.5, 1.0))
    given = early_exit.evaluate(small_msdnet, (x, y), validation=(x[:5], y[:5]))
    assert given.threshold_samples == 5 and given.test_indices == list(range(12))
    assert [p.q for p in given.budget] == [p / 20 for p in range(1, 40)]
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"threshold_fraction must be in \(0, 1\); received {fraction}"):
            early_exit.evaluate(small_msdnet, (x, y), threshold_fraction=fraction)
    for n, fraction in ((2, 0.1), (2, 0.9)):  # no sample, or every sample, would fit the thresholds
        with pytest.raises(ValueError, match=rf"{n} samples are too few to split at threshold_fraction={fraction}"):
            early_exit.evaluate(small_msdnet, (x[:n], y[:n]), threshold_fraction=fraction)
    assert early_exit.evaluate(small_msdnet, (x[:3], y[:3]), threshold_fraction=0.34, q=(1.0,)).threshold_samples == 1
    two = two_exit_model()
    assert early_exit.reference_costs(two) == exit_costs(two)  # not an MSDNet: each exit's own dependencies


def test_exit_fractions_thresholds_and_exits_check_their_input():
    assert early_exit.exit_fractions(0.5, 1).tolist() == [1.0]
    for exits in (0, 2.0):
        with pytest.raises(ValueError, match=rf"^exits must be a positive integer; received {exits!r}\.$"):
            early_exit.exit_fractions(0.5, exits)
    conf = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.6] * 5])
    probabilities = [np.stack([c, 1 - c], -1) for c in conf]
    assert fit_thresholds(probabilities, [0.2, 0.8])[0] == 0.9  # a quota of one: the most confident sample
    assert fit_thresholds(probabilities, [1.0, 0.0])[0] == 0.5  # a quota of all: the least confident one
    for fractions in ([0.5, 0.3, 0.2], [1.2, -0.2]):
        with pytest.raises(ValueError, match=r"^fractions must be 2 non-negative shares, one per exit; received"):
            fit_thresholds(probabilities, fractions)
    with pytest.raises(ValueError, match=r"^probabilities must be one \[N, classes\] array per exit, all alike"):
        anytime_accuracy([p[..., None] for p in probabilities], np.zeros(5))
    two_inputs = keras.Model([a := keras.Input((2,)), b := keras.Input((2,))], keras.layers.Add()([a, b]), name="ab")
    with pytest.raises(ValueError, match=r"^EarlyExit needs a model with one input; 'ab' has 2\.$"):
        EarlyExit(two_inputs, [0.5])


def test_a_sample_exactly_as_confident_as_the_threshold_leaves(small_msdnet):
    x = np.random.default_rng(8).random((8, 20, 20, 3)).astype("float32")
    early = EarlyExit(small_msdnet, [np.inf, np.inf, -np.inf])
    first = np.asarray(early.segments[0](x, training=False)[0]).max(axis=-1)
    early = EarlyExit(small_msdnet, [first[3], np.inf, -np.inf])
    exits = np.asarray(early(x)["exits"])
    np.testing.assert_array_equal(exits == 0, first >= first[3])


def test_softmax_layer_and_reshaped_outputs():
    """A Softmax layer's output is taken as probabilities; an output without an activation as logits."""
    inputs = keras.Input((4, 4, 1))
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, [keras.layers.Softmax()(logits), keras.layers.Reshape((3,))(logits)])
    x = np.random.default_rng(9).random((5, 4, 4, 1), dtype=np.float32)
    probabilities, _ = early_exit.exit_probabilities(model, (x, np.zeros(5)))
    expected = keras.ops.softmax(model(x)[1])
    for p in probabilities:
        np.testing.assert_allclose(p, expected, atol=1e-6)
