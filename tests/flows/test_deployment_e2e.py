"""End to end through real services: a Prefect server and an MLflow server (SQLite stores, loopback
ports), the ``flamenco-process`` work pool, the ``ingest`` deployment from ``prefect.yaml``, a triggered
deployment run executed by a process worker, and assertions through both servers' APIs. Everything is
torn down in ``finally`` clauses, process groups included.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_deployment_run_completes_and_logs_to_mlflow(tmp_path, samples):
    from mlflow import MlflowClient
    from prefect.client.orchestration import SyncPrefectClient

    from flamenco.services import free_port, serve_stack

    sample = samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl"
    out_dir = tmp_path / "out"
    params = {"sources": [str(sample)], "fmt": "atlas", "out_dir": str(out_dir), "min_points": 5,
              "experiment": "e2e-ingest", "run_name": "e2e-sagan"}
    pgids: list[int] = []
    with serve_stack(tmp_path / "home", prefect_port=free_port(), mlflow_port=free_port(), project_dir=ROOT,
                     deploy=["ingest"], worker=False) as stack:
        pgids = [s.proc.pid for s in stack.services]
        assert stack.deployed == ["ingest"]
        res = stack.prefect("deployment", "run", "flamenco-ingest/ingest", "--params", json.dumps(params))
        m = re.search(r"UUID:\s*([0-9a-f-]{36})", res.stdout)
        assert m, res.stdout
        flow_run_id = m.group(1)

        worker = None
        with SyncPrefectClient(stack.api_url) as client:
            deadline = time.time() + 300
            state = client.read_flow_run(flow_run_id).state
            while not state.is_final() and time.time() < deadline:
                # One polling pass; --limit makes --run-once wait for the run it picked up to finish.
                worker = stack.start_worker("--run-once", "--limit", "1")
                pgids.append(worker.proc.pid)
                worker.proc.wait(timeout=max(10, deadline - time.time()))
                state = client.read_flow_run(flow_run_id).state
            assert state.is_completed(), f"{state.type}: {state.message}\n{worker.tail(60) if worker else ''}"
            assert client.read_flow_run(flow_run_id).parameters["min_points"] == 5

        ml = MlflowClient(tracking_uri=stack.mlflow_url)
        exp = ml.get_experiment_by_name("e2e-ingest")
        assert exp is not None
        runs = ml.search_runs([exp.experiment_id])
        parents = [r for r in runs if r.info.run_name == "e2e-sagan"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        parent = parents[0]
        assert parent.data.metrics["items_ok"] == 2 and parent.data.metrics["items_failed"] == 0
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in children) == ["194.85.27.7__62.2.16.12", "62.195.143.53__62.2.16.12"]
        assert all(r.data.tags.get("flamenco.run_key") for r in [parent, *children])
        assert (out_dir / "data.parquet").is_file() and len(list((out_dir / "profiles").glob("*.csv"))) == 2
    # Every service's process group (servers, their uvicorn children, workers, flow-run processes) is gone.
    deadline = time.time() + 20
    while not all(_group_gone(g) for g in pgids) and time.time() < deadline:
        time.sleep(0.5)
    assert all(_group_gone(g) for g in pgids)
