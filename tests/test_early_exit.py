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
    with pytest.raises(ValueError, match="softmax or a linear"):
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
