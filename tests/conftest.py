import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The shared folder beside the checkout is canonical; the copy under tests/data keeps a bare clone testable.
_CANDIDATES = [os.environ.get("FLAMENCO_SAMPLES"), ROOT.parent / "shared" / "samples", ROOT / "tests" / "data" / "samples"]
SAMPLES = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), ROOT / "tests" / "data" / "samples")

# Prefect reads its settings at import: isolate Prefect and MLflow in a per-session home before any test
# imports them, so tests never touch the user's ~/.prefect or ./.flamenco.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="flamenco-tests-"))
os.environ["FLAMENCO_HOME"] = str(_SESSION_HOME)
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_HOME / 'mlflow.db'}"
os.environ.pop("PREFECT_API_URL", None)

# No deadline on property tests: a per-example time limit is a timed test, and on 2 loaded CI cores a
# pandas call over a generated Series can pass 200 ms (Hypothesis's default) for no fault of the code.
# CI replays the same examples each run (derandomize), so a failure there is reproducible, not a dice roll.
from hypothesis import settings  # noqa: E402

settings.register_profile("flamenco", deadline=None)
settings.register_profile("flamenco-ci", deadline=None, derandomize=True)
settings.load_profile("flamenco-ci" if os.environ.get("CI") == "true" else "flamenco")


def pytest_unconfigure(config):
    # the session's Prefect and MLflow home is scratch: leave no folder behind in /tmp per test run
    if not os.environ.get("FLAMENCO_KEEP_TEST_HOME"):
        import shutil

        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (starting one costs ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def mlflow_uri() -> str:
    return os.environ["MLFLOW_TRACKING_URI"]
