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


def test_latency_summary_fits_80_columns_with_every_score_whole():
    import io

    from rich.console import Console

    from flamenco.cli_latency import print_latency_summary

    scores = {"f1_good": 0.991, "f1_noise": 0.802, "f1_macro": 0.896}
    methods = ("elliptic_envelope", "isolation_forest", "lof", "robust_covariance", "rolling_mad")
    summary = {
        "label_source_of_pool": "heuristic",
        "outcomes": {"pairs": {"ok": 5, "partial": 0, "fallback": 18, "skipped": 2, "failed": 0},
                     "subsets_by_level": {"envelope": 19, "subset": 5}},
        "average": {"pairs_scored": 23, **scores, "f1_unlabeled": scores,
                    "baselines": {m: {**scores, "f1_macro": 0.123} for m in methods},
                    "baselines_unlabeled": {m: {**scores, "f1_macro": 0.456} for m in methods},
                    "f1_unlabeled_pooled": {m: {"f1_macro": 0.789} for m in ("flamenco", *methods)}},
    }
    out = io.StringIO()
    print_latency_summary(Console(file=out, width=80, soft_wrap=True), summary)
    lines = out.getvalue().splitlines()
    table = [ln for ln in lines if ln[:1] in "┏┃┡│└"]
    assert max(map(len, table)) <= 80 and not any("…" in ln for ln in table), "\n".join(table)
    for m in ("flamenco", *methods):
        row = next(ln for ln in table if ln.startswith(f"│ {m} "))
        assert row.count("0.") == 7, row  # three test, three unlabeled and the pooled score
    assert any(ln.startswith("pairs: ok 5, partial 0, fallback 18, skipped 2") for ln in lines)
