"""What every pipeline's tasks share: the retry policy for I/O, the MLflow parent run's tasks, and
collecting the outcome of mapped tasks."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

from prefect import task

from tasks import tracking


def transient(task, task_run, state) -> bool:
    """Retry only I/O hiccups; a malformed input fails the same way every time."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


#: Task options of a step that reads or writes files: two retries, on ``OSError`` only.
IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 1, "retry_condition_fn": transient}


def collect_mapped(futures: Iterable[Any]) -> list[tuple[Any, Optional[BaseException]]]:
    """Wait for every mapped future; ``(result, None)`` for a task that completed, ``(None, error)`` for
    one that failed. Never raises for one task, so the other items' outcomes are kept."""
    out: list[tuple[Any, Optional[BaseException]]] = []
    for fut in futures:
        fut.wait()
        state = fut.state
        if state.is_completed():
            out.append((fut.result(), None))
        else:
            out.append((None, state.result(raise_on_failure=False)))
    return out


def error_text(err: Any) -> str:
    """``Type: message`` of a task's error, as outcomes record it."""
    return f"{type(err).__name__}: {err}"


@task(name="start-parent-run", retries=2, retry_delay_seconds=1)
def start_parent_run_task(experiment: str, run_name: str, params: dict, tags: dict, key: str | None = None) -> str:
    """Open the flow's parent MLflow run; ``key`` (``tracking.run_key``) makes reruns reuse it."""
    return tracking.start_run(experiment, run_name, params=params, tags=tags, key=key)


@task(name="fail-parent-run", retries=2, retry_delay_seconds=1)
def fail_parent_run_task(run_id: str, error: str) -> None:
    """End the parent run FAILED with the error as a tag, so MLflow shows why (the flow then re-raises)."""
    tracking.close_run(run_id, "FAILED", error=error)


def close_failed_parent_run(run_id: str, exc: BaseException) -> None:
    """End the parent run FAILED with ``exc`` as the reason, from an ``except`` block of a flow: a plain
    call (no task: the flow may be being cancelled or interrupted) that never hides the original error."""
    try:
        tracking.close_run(run_id, "FAILED", error=error_text(exc))
    except Exception:  # the tracking store itself may be what failed; the flow re-raises the cause
        logging.getLogger(__name__).warning("could not mark MLflow run %s FAILED", run_id, exc_info=True)


@task(name="finish-parent-run")
def finish_parent_run_task(run_id: str, summary: dict, metrics: dict, status: str, outcome: str | None = None) -> None:
    """Log the summary and metrics, end the parent run (``status`` FINISHED or FAILED) with its outcome."""
    tracking.log(run_id, metrics=metrics)
    tracking.log_json(run_id, summary, "summary.json")
    tracking.close_run(run_id, status, outcome=outcome, error=summary.get("error") if status == "FAILED" else None)
