"""Terminal output that copies (issue 15): with stdout not a terminal (CliRunner, a pipe), ``flamenco
compare`` fits 80 columns with the A/B/C legend one LF per line, and printed paths stay whole."""

from typer.testing import CliRunner

from tasks import tracking

LFS = ["src_port_le_6600_attack", "src_port_ge_9000_benign", "avg_packet_size_small_benign"]


def test_compare_fits_80_columns_with_the_legend(tmp_path):
    from flamenco.cli import app

    for i, (combo, f1) in enumerate([(LFS[:1], 0.9), (LFS[:2], 0.95), (LFS, 0.97), (LFS[1:], 0.5)]):
        rid = tracking.start_run("test-compare-width", f"run-{i}", metrics={"cls_f1": f1, "lf_f1": f1 - 0.1, "coverage": 0.5,
                                                                           "tree_f1": f1},
                                 tags=tracking.standard_tags(pipeline="flow_records", dataset="cicddos2019-ntp-long-name",
                                                             combination=" + ".join(combo)))
        tracking.end_run(rid)
    out = tmp_path / "a folder with a long name for the comparison outputs" / "compare"
    res = CliRunner().invoke(app, ["compare", "--experiment", "test-compare-width", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    table = [ln for ln in lines if ln[:1] in "┏┃┡│└━┌├╇┗" or "─" in ln or "━" in ln]
    assert table and max(map(len, table)) <= 80, "\n".join(table)
    assert any("A+B+C" in ln for ln in table) and any("0.970" in ln for ln in table)
    assert not any("…" in ln for ln in table), "\n".join(table)  # nothing cut: names and scores whole
    for letter, name in zip("ABC", LFS):
        assert f"  {letter} = {name}" in lines  # the legend: one whole line per LF
    assert f"wrote {out / 'compare.csv'}" in lines  # a path longer than 80 columns, on one line


def test_flamenco_ui_serves_the_projects_store(tmp_path):
    """``flamenco ui`` as the demo prints it: the MLflow UI answers on the store of FLAMENCO_HOME, and the
    experiments written there are listed."""
    import json
    import os
    import sys
    import urllib.request
    from pathlib import Path

    from flamenco.services import free_port, start_service, stop_all, wait_http

    from mlflow import MlflowClient

    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, FLAMENCO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")
    MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).create_experiment("test-ui-store")
    port = free_port()
    svc = start_service("flamenco-ui", [str(Path(sys.executable).with_name("flamenco")), "ui", "--port", str(port)],
                        env, tmp_path / "logs")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", svc, timeout=240)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                                     data=json.dumps({"max_results": 10}).encode(),
                                     headers={"Content-Type": "application/json"})
        names = [e["name"] for e in json.loads(urllib.request.urlopen(req, timeout=30).read())["experiments"]]
        assert "test-ui-store" in names  # this store, not another one
    finally:
        stop_all([svc])
    assert "MLflow UI on http://127.0.0.1:" in svc.tail()
