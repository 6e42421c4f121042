"""Federation end to end, with real parts only: a Prefect server and an MLflow server (SQLite stores,
free loopback ports, their own homes under tmp), two sites each started with ``flamenco site serve``
(its own work pool, deployment and process worker, its own data folder: site-a with ground truth, site-b
without and with noise), and the coordinator as the ``flamenco federate`` CLI, which only ever sees
aggregates. Cases: both sites answer; one site refuses a pack (its policy); probe packs against planted
canaries; one site's worker killed mid-run; no usable site. Finally every byte that came back (reports,
CLI output, MLflow params/metrics/tags/artifacts, Prefect artifacts, logs and state messages) is searched
for the canaries.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKS = ROOT / "conf" / "lf_packs"
pytestmark = pytest.mark.slow

#: Planted at the sites. Bytes: an address and a 9-digit value; the port as a number token (a 5-digit
#: string can occur inside a long float by chance, a number 31337 cannot).
CANARY_ADDR = "203.0.113.77"
CANARY_VALUE = "987654321"
CANARY_PORT = 31337


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _make_data(tmp: Path) -> dict:
    """CIC-like flows (ground truth), ingested, split across the sites; canaries planted at both."""
    import pandas as pd

    from flamenco_core.ingest.pipeline import ingest
    from flamenco_core.synth import GENERATORS

    res = GENERATORS["cic"](tmp / "synth", scale=0.02, seed=3)
    ingest(res.data_paths, "cicflowmeter", tmp / "ingest")
    df = pd.read_parquet(tmp / "ingest" / "data.parquet")
    paths = {}
    for i, site in enumerate(("site-a", "site-b")):
        part = df.iloc[i::2].copy().reset_index(drop=True)
        part.loc[:2, "src"] = CANARY_ADDR
        part.loc[3:5, "src_port"] = CANARY_PORT
        part.loc[7:9, "dst_port"] = CANARY_PORT
        part.loc[6, "total_length_of_fwd_packets"] = float(CANARY_VALUE)
        if site == "site-b":
            part = part.drop(columns=["label"])
        folder = tmp / site / "data"
        folder.mkdir(parents=True)
        part.to_parquet(folder / "cic.parquet")
        paths[site] = folder / "cic.parquet"
    return paths


def _site_config(tmp: Path, site: str, data: Path) -> Path:
    import yaml

    cfg = {"site": site, "datasets": {"cic": {"path": str(data)}}, "policy": {"min_group_size": 20}}
    if site == "site-a":
        cfg["datasets"]["cic"]["ground_truth"] = {"column": "label", "classes": {"BENIGN": "benign", "DrDoS_NTP": "attack"}}
        # site-a accepts the literal threshold of `long_duration_literal`; site-b's default policy does not
        cfg["policy"]["allow_findings"] = ["long_duration_literal"]
    else:
        cfg["policy"]["noise"] = {"epsilon": 2.0, "seed": 5}
    path = tmp / site / "site.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / "packs" / name
    p.parent.mkdir(exist_ok=True)
    p.write_text(text)
    return p


LITERAL_PACK = """\
pack: literal-durations
classes: [benign, attack]
lfs:
  - name: long_duration_literal
    label: benign
    when: [{feature: flow_duration, op: ">", value: 5000}]
"""

#: Each LF would tell something about one value if its count were released as it is: one port, the one
#: row at a feature's maximum, every row but the one at another feature's maximum.
PROBE_PACK = """\
pack: probe-k
classes: [benign, attack]
universal_features: [dst_port]
lfs:
  - {name: the_port, label: attack, when: [{feature: dst_port, op: "==", value: 31337}]}
  - {name: at_the_max, label: attack, when: [{feature: total_length_of_fwd_packets, op: ">=", value: max}]}
  - {name: below_the_max, label: benign, when: [{feature: bwd_iat_max, op: "<", value: max}]}
"""

#: Two LFs whose difference isolates one port (a small cell); a window of 0.1% below the median.
PROBE_DIFF_PACK = """\
pack: probe-diff
classes: [benign, attack]
universal_features: [src_port]
lfs:
  - {name: port_from, label: attack, when: [{feature: src_port, op: ">=", value: 31337}]}
  - {name: port_above, label: attack, when: [{feature: src_port, op: ">", value: 31337}]}
"""
PROBE_NARROW_PACK = """\
pack: probe-narrow
classes: [benign, attack]
lfs:
  - {name: narrow, label: attack, when: [{feature: total_length_of_fwd_packets, op: between, value: ["0.999*median", median]}]}
"""


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from prefect.client.orchestration import SyncPrefectClient

    from flamenco.services import free_port, serve_stack, start_service

    tmp = tmp_path_factory.mktemp("federation")
    data = _make_data(tmp)
    with serve_stack(tmp / "coordinator", prefect_port=free_port(), mlflow_port=free_port(), project_dir=ROOT,
                     deploy=[], worker=False) as stack:
        sites = {}
        for site, path in data.items():
            cfg = _site_config(tmp, site, path)
            env = {**stack.env, "FLAMENCO_HOME": str(tmp / site / "home"), "PREFECT_HOME": str(tmp / site / "home" / "prefect")}
            env.pop("MLFLOW_TRACKING_URI", None)  # a site has no business with the coordinator's MLflow
            svc = start_service(f"site-{site}", [_bin("flamenco"), "site", "serve", "--config", str(cfg),
                                                 "--heartbeat", "2", "--poll", "1"], env, tmp / "logs", cwd=tmp / site)
            stack.services.append(svc)
            sites[site] = svc
        with SyncPrefectClient(stack.api_url) as client:
            deadline = time.time() + 150
            for site, svc in sites.items():
                while True:
                    assert svc.alive(), svc.tail(60)
                    assert time.time() < deadline, svc.tail(60)
                    try:
                        client.read_deployment_by_name(f"flamenco-site/{site}")
                        workers = client.read_workers_for_work_pool(f"flamenco-site-{site}")
                        if any(w.status.value == "ONLINE" for w in workers):
                            break
                    except Exception:  # pool or deployment not registered yet: the deadline's assert reports a hang
                        pass
                    time.sleep(1)
        coord_env = {**stack.env, "FLAMENCO_HOME": str(tmp / "coordinator" / "client")}
        yield {"stack": stack, "sites": sites, "tmp": tmp, "env": coord_env, "outputs": []}


def _federate(fed, name: str, packs: list[Path], sites: str, *, timeout: float = 120, label_model: str = "majority",
              background: bool = False):
    out = fed["tmp"] / "out" / name
    cmd = [_bin("flamenco"), "federate", *[a for p in packs for a in ("--pack", str(p))], "--sites", sites,
           "--dataset", "cic", "--out", str(out), "--timeout", str(timeout), "--label-model", label_model,
           "--experiment", "e2e-federate"]
    fed["outputs"].append(out)
    if background:
        log = fed["tmp"] / "logs" / f"federate-{name}.log"
        fh = open(log, "w")
        return subprocess.Popen(cmd, env=fed["env"], cwd=fed["tmp"], stdout=fh, stderr=subprocess.STDOUT, text=True), out, log
    res = subprocess.run(cmd, env=fed["env"], cwd=fed["tmp"], capture_output=True, text=True, timeout=timeout + 120)
    (out.parent / f"{name}.stdout").write_text(res.stdout + res.stderr)
    return res, out


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _status(report: dict) -> dict:
    return {s["site"]: s["status"] for s in report["sites"]}


def test_federation(federation):
    fed = federation
    tmp = fed["tmp"]
    from mlflow import MlflowClient

    from flamenco_core.federation.models import SiteAggregate

    # 1. both sites answer: the paper's pack and group B's, the label model fitted at each site
    res, out = _federate(fed, "both", [PACKS / "cic_ntp.yaml", PACKS / "cic_ntp_group_b.yaml",
                                        _write(tmp, "probe_k.yaml", PROBE_PACK)], "site-a,site-b", label_model="snorkel")
    assert res.returncode == 0, res.stdout + res.stderr
    rep = _report(out)
    assert _status(rep) == {"site-a": "ok", "site-b": "ok"}
    assert rep["usable_sites"] == ["site-a", "site-b"]
    aggs = [SiteAggregate.model_validate(a) for a in rep["aggregates"]]  # what came back fits the schema
    page = (out / "index.html").read_text()  # the same report as a page (searched for canaries at the end)
    assert "site-a" in page and "site-b" in page and "Which LFs generalise" in page
    assert {a.site: a.has_ground_truth for a in aggs} == {"site-a": True, "site-b": False}
    assert aggs[1].policy.noise_epsilon == 2.0
    pooled = rep["pooled"]["cic-ntp"]
    assert pooled["sites"] == ["site-a", "site-b"]
    port_lf = next(r for r in pooled["lfs"] if r["lf"] == "src_port_le_6600_attack")
    assert port_lf["coverage"]["value"] is not None and port_lf["coverage"]["value"] > 0.8
    a_port = next(r for r in rep["per_site"]["site-a"]["cic-ntp"]["lfs"] if r["lf"] == "src_port_le_6600_attack")
    f1 = a_port["f1"]["value"] if a_port["f1"]["value"] is not None else a_port["f1"]["range"][0]
    assert f1 > 0.9  # the paper's port rule holds at the site with ground truth
    assert "f1" not in rep["per_site"]["site-b"]["cic-ntp"]["lfs"][0]  # no ground truth, no F1
    assert "cic-ntp+cic-ntp-group-b+probe-k" in rep["pooled"]  # the combination of the two packs
    verdicts = {(g["pack"], g["lf"]): g["verdict"] for g in rep["generalisation"]}
    assert verdicts[("cic-ntp", "src_port_le_6600_attack")] == "generalises"
    assert rep["per_site"]["site-a"]["cic-ntp"]["label_model"]["name"]
    # the probe pack rode along: counts that would describe the canaries came back suppressed
    for agg in rep["aggregates"]:
        lfs = {lf["lf"]: lf for lf in next(p for p in agg["packs"] if p["pack"] == "probe-k")["lfs"]}
        assert lfs["the_port"]["votes"] == {"value": None, "suppressed": "fewer_than_k"}
        assert lfs["at_the_max"]["votes"] == {"value": None, "suppressed": "fewer_than_k"}
        assert lfs["below_the_max"]["votes"] == {"value": None, "suppressed": "complement_fewer_than_k"}
    ml = MlflowClient(tracking_uri=fed["stack"].mlflow_url)
    exp = ml.get_experiment_by_name("e2e-federate")
    runs = ml.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.info.run_name == "federate-cic-cic-ntp+cic-ntp-group-b+probe-k"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["site-a", "site-b"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert parent.data.metrics["sites_usable"] == 2

    # a request cannot point the worker at another catalog or command: the site's pool refuses the variables
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.exceptions import PrefectHTTPStatusError

    with SyncPrefectClient(fed["stack"].api_url) as client:
        dep = client.read_deployment_by_name("flamenco-site/site-a")
        for jv in ({"env": {"FLAMENCO_SITE_CONFIG": "/etc/other.yaml"}}, {"command": "cat /etc/passwd"}):
            with pytest.raises(PrefectHTTPStatusError, match="422"):
                client.create_flow_run_from_deployment(dep.id, parameters={"packs": [], "dataset": "cic"}, job_variables=jv)

    # 2. one site refuses: site-b's policy does not accept a literal threshold; site-a allows that LF
    res, out = _federate(fed, "refusal", [PACKS / "cic_ntp.yaml", _write(tmp, "literal.yaml", LITERAL_PACK)], "site-a,site-b")
    assert res.returncode == 0, res.stdout + res.stderr
    rep = _report(out)
    assert _status(rep) == {"site-a": "ok", "site-b": "refused"}
    refusal = next(s for s in rep["sites"] if s["site"] == "site-b")["refusals"]
    assert [r["code"] for r in refusal] == ["audit_literal_threshold"] and refusal[0]["lf"] == "long_duration_literal"
    assert rep["pooled"]["literal-durations"]["sites"] == ["site-a"]

    # 3. site-b's worker is killed while it runs the request: reported down, site-a still counts
    proc, out, log = _federate(fed, "stopped", [PACKS / "cic_ntp.yaml"], "site-a,site-b", timeout=90,
                               label_model="snorkel", background=True)
    svc = fed["sites"]["site-b"]
    with SyncPrefectClient(fed["stack"].api_url) as client:
        dep = client.read_deployment_by_name("flamenco-site/site-b")
        deadline = time.time() + 120
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

        while time.time() < deadline:
            running = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING"]))))
            if running:
                break
            time.sleep(0.3)
        assert running, log.read_text()
    # the site goes down: its worker and the flow run it started, which Prefect puts in a session of its own
    # (killing the worker's group alone leaves the run to finish, answer or fail on its own)
    svc.kill()
    svc.proc.wait(10)
    assert proc.wait(240) == 0, log.read_text()
    rep = _report(out)
    st = _status(rep)
    assert st["site-a"] == "ok" and st["site-b"] in ("down", "timeout"), rep["sites"]
    assert rep["usable_sites"] == ["site-a"]
    with SyncPrefectClient(fed["stack"].api_url) as client:
        run_b = next(s for s in rep["sites"] if s["site"] == "site-b")["flow_run_id"]
        assert client.read_flow_run(run_b).state.is_final()  # cancelled: a returning worker will not run it

    # 4. nothing usable: probes that difference two LFs or test a narrow window are refused by site-a,
    # site-b is down (its worker was killed), "nowhere" has no deployment: exit 1, each reported as such
    res, out = _federate(fed, "probes", [_write(tmp, "probe_diff.yaml", PROBE_DIFF_PACK),
                                         _write(tmp, "probe_narrow.yaml", PROBE_NARROW_PACK)], "site-a,site-b,nowhere")
    assert res.returncode == 1, res.stdout + res.stderr
    rep = _report(out)
    assert _status(rep) == {"site-a": "refused", "site-b": "down", "nowhere": "down"}
    codes = {(r["code"], r["feature"]) for r in rep["sites"][0]["refusals"]}
    assert codes == {("small_cell", "src_port"), ("narrow_window", "total_length_of_fwd_packets")}, codes

    _assert_no_canary(fed)


def _assert_no_canary(fed) -> None:
    """Every byte the coordinator got: reports, CLI output, MLflow, Prefect's artifacts, logs, states."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import SyncPrefectClient

    blobs: dict[str, bytes] = {}
    for out in fed["outputs"]:
        for f in out.parent.glob("*.stdout"):
            blobs[str(f)] = f.read_bytes()
        for f in out.glob("*"):
            blobs[str(f)] = f.read_bytes()
    ml = MlflowClient(tracking_uri=fed["stack"].mlflow_url)
    exp = ml.get_experiment_by_name("e2e-federate")
    dl = fed["tmp"] / "mlflow-download"
    for run in ml.search_runs([exp.experiment_id]):
        blobs[f"mlflow:{run.info.run_id}:data"] = json.dumps(
            {"params": run.data.params, "metrics": run.data.metrics, "tags": run.data.tags}).encode()
        target = dl / run.info.run_id
        target.mkdir(parents=True)
        ml.download_artifacts(run.info.run_id, "", str(target))
        for f in target.rglob("*"):
            if f.is_file():
                blobs[f"mlflow:{f}"] = f.read_bytes()
    assert any(k.startswith("mlflow:") and k.endswith(".json") for k in blobs)
    with SyncPrefectClient(fed["stack"].api_url) as client:
        from prefect.client.schemas.filters import LogFilter

        for a in client.read_artifacts():
            blobs[f"prefect-artifact:{a.id}"] = json.dumps({"data": a.data, "description": a.description}).encode()
        for r in client.read_flow_runs():
            if r.name and r.state:
                blobs[f"prefect-state:{r.id}"] = (r.state.message or "").encode()
        for log in client.read_logs(LogFilter()):
            blobs[f"prefect-log:{log.id}"] = log.message.encode()
    assert any(k.startswith("prefect-artifact:") for k in blobs)
    port = re.compile(rb"(?<![\d.])" + str(CANARY_PORT).encode() + rb"(?![\d])")
    for where, data in blobs.items():
        assert CANARY_ADDR.encode() not in data, where
        assert CANARY_VALUE.encode() not in data, where
        assert not port.search(data), where
