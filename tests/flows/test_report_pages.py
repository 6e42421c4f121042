"""Report pages and MLflow views of real (small) runs, issue 15: the latency and flow-records flows on
generated data, then

- every ``index.html`` opened in Debian's headless Chromium (selenium + chromedriver): no console error,
  tables present, every image loaded (``naturalWidth > 0``); a full-page screenshot is kept under
  ``tests/artifacts/`` (``FLAMENCO_TEST_ARTIFACTS`` overrides) and its path printed;
- every JSON file the runs wrote parsed strictly (no bare NaN), report paths relative to the output folder;
- MLflow read back through ``MlflowClient``: child runs named by the A/B/C legend with the full
  combination in a tag and the description, the comparison table and chart on the parent run, the
  latency headline keys the same on parent and children.

Chromium is a Debian package (``setup.sh`` installs ``chromium`` and ``chromium-driver``); without it the
browser test is skipped on a workstation and fails under CI (``CI=true``), where it must run.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FLAMENCO_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
LATENCY_FAST = {"model": {"forest": {"n_iter": 2, "n_splits": 2}, "lstm": {"epochs": 3}}, "snuba": {"budget": 3},
                "min_points": 40}
FLOWS_FAST = {"model": {"kind": "random_forest",
                        "random_forest": {"n_iter": 1, "n_splits": 2, "param_distributions": {
                            "n_estimators": [20], "max_depth": [None], "bootstrap": [True]}}},
              "importance": {"n_estimators": 20}, "label_model": {"params": {"n_epochs": 50}}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, prefect_harness):
    """One small latency run (Ark-like, 35% labeled, truth for the rest) and one LF-combination run
    (CIC-like NTP, the paper's pack): about a minute on two cores."""
    from flamenco_core.synth import GENERATORS, hold_out_labels
    from flows.flow_records import flow_records_flow
    from flows.latency import latency_flow

    d = tmp_path_factory.mktemp("report-runs")
    ark = GENERATORS["ark"](d / "raw" / "ark", scale=0.02, seed=1)
    (d / "latency.yaml").write_text(yaml.safe_dump(LATENCY_FAST))
    partial, _ = hold_out_labels(pd.read_parquet(ark.labels_path), share=0.35)
    partial.to_parquet(d / "partial.parquet")
    latency = latency_flow([str(ark.data_paths[0])], "scamper", str(d / "latency_ark"), labels=str(d / "partial.parquet"),
                           config=str(d / "latency.yaml"), experiment="test-report-latency", truth=str(ark.labels_path))
    cic = GENERATORS["cic"](d / "raw" / "cic", scale=0.02, seed=0)
    (d / "flows.yaml").write_text(yaml.safe_dump(FLOWS_FAST))
    flows = flow_records_flow(str(cic.data_paths[0]), "cicflowmeter", [str(ROOT / "conf" / "lf_packs" / "cic_ntp.yaml")],
                              str(d / "flows_cic"), config=str(d / "flows.yaml"), experiment="test-report-flows")
    return {"root": d, "latency": latency, "flows": flows}


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory, samples):
    """``flamenco lf compare-models`` on the 13 real CIC-DDoS2019 files (two label models, no end model,
    no MLflow: about ten seconds)."""
    from typer.testing import CliRunner

    from flamenco.cli import app

    out = tmp_path_factory.mktemp("report-compare") / "label_models_cic"
    res = CliRunner().invoke(app, ["lf", "compare-models", str(ROOT / "conf" / "lf_packs" / "cic2019_multiclass.yaml"),
                                   "--data", str(samples / "cicddos2019"), "--class-map",
                                   str(ROOT / "conf" / "class_maps" / "cic2019.yaml"), "--out", str(out),
                                   "--label-model", "majority", "--label-model", "mmsr", "--no-end-model", "--no-mlflow"])
    assert res.exit_code == 0, res.output
    return out


# ------------------------------------------------------------------------------------------------ browser


def _driver():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        missing = "chromium" if not chromium else "chromedriver (Debian's chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{missing} not found: CI must run the browser test (setup.sh installs it with apt-get)")
        pytest.skip(f"{missing} not found (setup.sh installs it with apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def open_page(page: Path, screenshot: Path) -> dict:
    """Load ``page`` in headless Chromium, open every ``<details>``, wait for the images, take a full-page
    screenshot; returns the console messages, the tables and the images' load state."""
    d = _driver()
    try:
        d.get(page.resolve().as_uri())
        d.execute_script("document.querySelectorAll('details').forEach(e => e.open = true)")
        deadline = time.time() + 30
        while time.time() < deadline and not d.execute_script(
                "return Array.from(document.images).every(i => i.complete)"):
            time.sleep(0.2)
        state = d.execute_script("""return {
            tables: document.querySelectorAll('table').length,
            rows: document.querySelectorAll('table tbody tr').length,
            images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth})),
            sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent),
            height: document.body.scrollHeight}""")
        state["console"] = d.get_log("browser")
        d.set_window_size(1400, min(int(state["height"]) + 40, 12000))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
        return state
    finally:
        d.quit()


@pytest.mark.parametrize("part, sections", [
    ("latency_ark", {"Summary", "Outcomes", "Comparison with the baselines", "Per SD pair", "Plots: RTT per SD pair",
                     "Trees", "Files"}),
    ("flows_cic", {"Summary", "Outcomes", "LF combinations", "Tables", "Plots: confusion matrices", "Trees", "Files"}),
])
def test_report_page_renders_in_chromium(runs, part, sections):
    page = runs["root"] / part / "index.html"
    assert page.is_file()
    state = open_page(page, ARTIFACTS / f"report_{part}.png")
    errors = [m for m in state["console"] if m.get("level") in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert sections <= set(state["sections"]), state["sections"]
    assert state["tables"] >= 2 and state["rows"] >= 5
    broken = [i["src"] for i in state["images"] if not i["w"]]
    assert state["images"] and not broken, broken
    assert all(not i["src"].startswith(("/", "file:", "http")) for i in state["images"])  # relative: the folder moves
    assert (ARTIFACTS / f"report_{part}.png").stat().st_size > 10_000


def test_the_label_model_comparison_page_renders_in_chromium(compare_run):
    page = compare_run / "index.html"
    assert page.is_file()
    state = open_page(page, ARTIFACTS / "report_label_models_cic.png")
    errors = [m for m in state["console"] if m.get("level") in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert {"Summary", "Outcomes", "Label models and baselines", "Plots: confusion matrices", "Files"} <= set(state["sections"])
    report = json.loads((compare_run / "report.json").read_text())
    # one row per model in the comparison, one per class in the per-class table
    assert state["rows"] >= len(report["models"]) + len(report["classes"])
    broken = [i["src"] for i in state["images"] if not i["w"]]
    assert state["images"] and not broken, broken
    assert all(not i["src"].startswith(("/", "file:", "http")) for i in state["images"])
    html = page.read_text()
    assert f"best label model {report['best_label_model']}" in html and "not covered" in html


def test_the_pages_summary_counts_match_the_report(runs):
    html = (runs["root"] / "latency_ark" / "index.html").read_text()
    for outcome, n in runs["latency"]["outcomes"]["pairs"].items():
        assert f">{outcome} {n}</span>" in html
    html = (runs["root"] / "flows_cic" / "index.html").read_text()
    s = runs["flows"]["summary"]
    assert f">ok {s['ok']}</span>" in html and f">failed {s['failed']}</span>" in html
    assert runs["flows"]["page"] == str(runs["root"] / "flows_cic" / "index.html")


# ---------------------------------------------------------------------------------------------- strict JSON


def test_every_json_file_is_strict_and_reports_use_relative_paths(runs, compare_run):
    def no_constant(name):
        raise ValueError(f"bare {name}")

    checked = 0
    for part in ("latency_ark", "flows_cic"):
        root = runs["root"] / part
        for path in root.rglob("*.json"):
            json.loads(path.read_text(), parse_constant=no_constant)  # NaN, Infinity: rejected
            checked += 1
        for report in [root / "report.json", *root.glob("combinations/*/record.json")]:
            text = report.read_text()
            assert str(root) not in text, f"{report}: an absolute path into its output folder"
    assert checked > 10
    compare = json.loads((compare_run / "report.json").read_text(), parse_constant=no_constant)
    assert str(compare_run) not in json.dumps(compare)
    assert compare["artifacts"] and all((compare_run / p).is_file() for p in compare["artifacts"].values())
    rec = json.loads(next((runs["root"] / "flows_cic").glob("combinations/*/record.json")).read_text())
    assert all(not str(p).startswith("/") for p in rec["artifacts"].values())
    assert all((runs["root"] / "flows_cic" / p).is_file() for p in rec["artifacts"].values())


# --------------------------------------------------------------------------------------------------- MLflow


def test_mlflow_names_descriptions_and_comparison_read_back(runs, mlflow_uri, tmp_path):
    from mlflow import MlflowClient

    from tasks import tracking

    c = MlflowClient(tracking_uri=mlflow_uri)
    parent_id = runs["flows"]["parent_run_id"]
    parent = c.get_run(parent_id)
    exp = c.get_experiment(parent.info.experiment_id)
    assert "A/B/C" in exp.tags[tracking.TAG_DESCRIPTION]
    legend = dict(part.split(" = ") for part in parent.data.tags[tracking.TAG_LEGEND].split("; "))
    assert legend["A"] == "src_port_le_6600_attack"
    assert "Best classifier F1" in parent.data.tags[tracking.TAG_DESCRIPTION]
    assert {a.path for a in c.list_artifacts(parent_id, "charts")} == {"charts/comparison.png"}
    table = c.load_table(exp.experiment_id, "tables/comparison.json", run_ids=[parent_id])
    assert len(table) == len(runs["flows"]["combinations"]) and {"short_name", "cls_f1", "combination"} <= set(table)

    children = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    by_name = {r.info.run_name: r for r in children}
    assert {"A", "B", "A+B", "A+B+C+D"} <= set(by_name), sorted(by_name)
    ab = by_name["A+B"]
    full = f"{legend['A']} + {legend['B']}"
    assert ab.data.tags["flamenco.combination"] == full and full in ab.data.tags[tracking.TAG_DESCRIPTION]
    assert set(tracking.FLOW_HEADLINE) <= set(ab.data.metrics)
    assert ab.data.params["classifier_features"].endswith("params/classifier_features.json")
    feats = json.loads(open(c.download_artifacts(ab.info.run_id, "params/classifier_features.json", str(tmp_path))).read())
    assert len(feats) > tracking.PARAM_MAX_ITEMS

    lat = c.get_run(runs["latency"]["parent_run_id"])
    kids = c.search_runs([lat.info.experiment_id], f"tags.`mlflow.parentRunId` = '{lat.info.run_id}'")
    headline = {"f1_macro", "f1_noise", "f1_unlabeled_macro", "rolling_mad.f1_macro", "unlabeled.rolling_mad.f1_macro"}
    assert headline <= set(lat.data.metrics)
    pairs = [k for k in kids if k.data.tags.get("flamenco.kind") != "trial"]
    # the parent's keys on the pairs (an undefined score, e.g. F1 noise of a pair without noise, is absent)
    assert pairs and all("f1_macro" in k.data.metrics for k in pairs)
    assert headline <= set().union(*(k.data.metrics for k in pairs))
    assert lat.data.metrics["f1_unlabeled_macro"] == pytest.approx(runs["latency"]["average"]["f1_unlabeled"]["f1_macro"])
