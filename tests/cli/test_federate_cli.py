"""``flamenco federate`` and ``flamenco site serve`` refuse what cannot work with one line and exit 2,
before any Prefect or MLflow is started (the end-to-end runs are in tests/flows/test_federation_e2e.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flamenco.cli import app

ROOT = Path(__file__).resolve().parents[2]
PACK = str(ROOT / "conf" / "lf_packs" / "cic_ntp.yaml")


def test_federate_needs_a_prefect_server(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    res = CliRunner().invoke(app, ["federate", "--pack", PACK, "--sites", "a,b", "--dataset", "cic", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "PREFECT_API_URL is not set" in res.output


def test_federate_usage_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    res = CliRunner().invoke(app, ["federate", "--pack", PACK, "--sites", "a,a", "--dataset", "cic"])
    assert res.exit_code == 2 and "twice" in res.output
    res = CliRunner().invoke(app, ["federate", "--pack", str(tmp_path / "none.yaml"), "--sites", "a", "--dataset", "cic"])
    assert res.exit_code == 2 and "none.yaml: no such pack file" in res.output


def test_site_serve_names_the_config_and_field(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    # the command sets these for its worker; monkeypatch puts them back for the other tests
    monkeypatch.setenv("PREFECT_LOGGING_TO_API_ENABLED", "true")
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "10")
    cfg = tmp_path / "site.yaml"
    cfg.write_text("site: a\ndatasets: {cic: {path: x.parquet}}\npolicy: {min_group_size: 0}\n")
    res = CliRunner().invoke(app, ["site", "serve", "--config", str(cfg)])
    assert res.exit_code == 2, res.output
    assert "site.yaml: policy.min_group_size" in res.output
