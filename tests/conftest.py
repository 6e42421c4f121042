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
