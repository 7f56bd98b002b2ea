import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# With one pytest-xdist worker per core, TensorFlow's thread pools (one thread per core each) would make the
# workers, and the training processes that tests start (they inherit this), fight over the cores: about a tenth
# of the suite's time. Each worker gets its share of the cores instead (before TensorFlow loads).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    for _variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_variable, str(max(1, (os.cpu_count() or 1) // _workers)))

# The package, before any test module imports Keras: TensorFlow then loads with the kernels users get
# (`keras_cnn.onednn`), and the processes that tests start inherit the same setting.
import keras_cnn  # noqa: E402, F401


@pytest.fixture(scope="session")
def _libraries_frozen():
    """TensorFlow, Keras and the package imported once, and their objects moved out of the garbage collector's
    sight (`gc.freeze`): they live as long as the process anyway, and a full collection over them took about
    0.7 s per test (a fifth of the suite)."""
    import gc

    import keras  # here, not at the top: TensorFlow must load after the thread settings above

    import keras_cnn.models
    import keras_cnn.training  # noqa: F401

    gc.collect()
    gc.freeze()
    return keras


@pytest.fixture(autouse=True)
def _fresh_keras_state(_libraries_frozen):
    """Each test starts from the same seed with an empty Keras name/graph state (the previous tests' garbage is
    left to the collector's own schedule)."""
    keras = _libraries_frozen
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


def pytest_addoption(parser):
    parser.addoption(
        "--train-all",
        action="store_true",
        help="train one step of every registered model in the catalogue (default: all but the LARGER_SIBLINGS of "
        "tests/helpers.py, deeper or wider configurations of a builder whose smaller one trains).",
    )
    parser.addoption(
        "--round-trip-all",
        action="store_true",
        help="save and reload every registered model in the catalogue (default: the ROUND_TRIP models of "
        "tests/helpers.py; the others serialize their config and are covered layer class by layer class).",
    )


def pytest_collection_modifyitems(config, items):
    """The catalogue's one-step training of the LARGER_SIBLINGS of tests/helpers.py is deselected (and counted as
    such) unless --train-all. Under pytest-xdist, tests marked slow run first, so that the workers finish together
    instead of one waiting on a long test that started last. A single process keeps the order it was given (mutmut
    gives the fastest tests first, so that a mutant is caught by the quickest test that can)."""
    from tests.helpers import LARGER_SIBLINGS

    if not config.getoption("train_all"):
        larger = [
            item
            for item in items
            if item.originalname == "test_smallest_legal_input_trains_one_step_saves_and_reloads"
            and item.callspec.params["name"] in LARGER_SIBLINGS
        ]
        if larger:
            config.hook.pytest_deselected(items=larger)
            items[:] = [item for item in items if item not in larger]
    if _workers > 1:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _missing_dependency(report) -> str | None:
    """The reason of a skip for an optional dependency that is not installed, else None."""
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason if ("could not import" in reason or "is not installed" in reason) else None


def _fail_missing_dependencies_under_ci(report) -> None:
    """Under CI=true the test extra is installed, so a skip for a missing dependency is a failure."""
    reason = os.environ.get("CI") == "true" and report.skipped and _missing_dependency(report)
    if reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true: the optional dependency is missing, so this test cannot run ({reason})."


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_dependencies_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_dependencies_under_ci(outcome.get_result())


def pytest_terminal_summary(terminalreporter, config):
    """Says what the default run leaves out (under pytest-xdist the workers' deselections are not counted here)."""
    if not config.getoption("train_all"):
        from tests.helpers import LARGER_SIBLINGS

        terminalreporter.write_line(
            f"one SGD step of {len(LARGER_SIBLINGS)} larger configurations (LARGER_SIBLINGS of tests/helpers.py) "
            "is left to --train-all"
        )
