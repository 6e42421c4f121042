"""Embedded defaults: a project-local home for Prefect and MLflow, analytics off.

Everything lives under ``FLAMENCO_HOME`` (default ``./.flamenco``): Prefect's home (its SQLite database
and local results) and MLflow's SQLite tracking store and artifacts. Environment variables the user set
win (``PREFECT_HOME``, ``PREFECT_API_URL``, ``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import os
from pathlib import Path


#: ``--debug`` sets it; ``FLAMENCO_DEBUG=1`` keeps tracebacks and Prefect's console logs.
DEBUG_ENV = "FLAMENCO_DEBUG"


def debug_enabled() -> bool:
    """Whether tracebacks are wanted (``--debug`` or ``FLAMENCO_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def home() -> Path:
    """The project-local home (``FLAMENCO_HOME``, default ``./.flamenco``)."""
    return Path(os.environ.get("FLAMENCO_HOME", Path.cwd() / ".flamenco")).resolve()


def setup_environment() -> Path:
    """Set the embedded defaults in ``os.environ`` (must run before Prefect is imported)."""
    h = home()
    h.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLAMENCO_HOME", str(h))
    os.environ.setdefault("PREFECT_HOME", str(h / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary local server needs ~20 s on 2 busy cores; Prefect's default wait is shorter.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(h / "prefect" / "storage"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{h / 'mlflow.db'}")
    os.environ.setdefault("FLAMENCO_ARTIFACT_ROOT", (h / "mlartifacts").as_uri())
    # mlflow >= 3 warns loudly about the file store; we never use it, and the sqlite store needs no server.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return h


def quiet_prefect_console() -> None:
    """Keep Prefect's log lines (and the tracebacks of failed tasks) and MLflow's INFO lines (database
    creation) off the console for a CLI run: the command prints the outcome itself, in one line when it
    failed, and every log still reaches Prefect's store. ``--debug`` (``FLAMENCO_DEBUG=1``) keeps them.
    Must run before Prefect and MLflow are imported; variables the user set win."""
    if not debug_enabled():
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
