"""Report pages (issue 15), pure: the A/B/C legend, escaping of everything taken from data and config,
relative links and images, the outcome counts and tables of each kind of output folder."""

import json
import re
from pathlib import Path

import pandas as pd

from flamenco_core.evaluation.plots import f1_bar_chart
from flamenco_core.report import kind_of, letter, lf_legend, render_index, short_name, write_demo_index, write_index

EVIL = '<script>alert("x")</script>&'


def test_legend_letters_follow_first_appearance_and_short_names_stay_short():
    assert [letter(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]
    combos = [{"lfs": ["p"]}, {"lfs": ["q"]}, {"lfs": ["q", "r"]}, {"refs": ["s"]}]
    legend = lf_legend(combos)
    assert legend == {"p": "A", "q": "B", "r": "C", "s": "D"}
    assert short_name(["q", "r"], legend) == "B+C"
    assert short_name(["q"], legend, label="sizes") == "sizes"  # an experiment file's display name wins
    many = [f"lf{i}" for i in range(40)]
    long = short_name(many, lf_legend([many]))
    assert len(long) <= 30 and long.endswith("(40 LFs)"), long


def _png(path: Path, title: str) -> Path:
    table = pd.DataFrame({"f1_good": [0.9], "f1_noise": [0.5], "f1_macro": [0.7]}, index=["flamenco"])
    return f1_bar_chart(table, path, title=title)


def _flows_folder(root: Path) -> Path:
    out = root / "flows"
    (out / "trees").mkdir(parents=True)
    (out / "tables").mkdir()
    tree = _png(out / "trees" / "c000.png", "tree")
    pd.DataFrame({"lf": [EVIL], "lf_f1": [0.5]}).to_csv(out / "tables" / "single_lf.csv", index=False)
    records = [
        {"combination": EVIL, "lfs": [EVIL], "outcome": "ok", "lf_f1": 0.5, "cls_f1": None, "tree_f1": 0.25,
         "coverage": 1.0, "tree_vs_lf_difference": 0.0, "artifacts": {"tree_png": str(tree)}},
        {"combination": f"{EVIL} + other", "lfs": [EVIL, "other"], "outcome": "failed", "error": "boom <b>",
         "lf_f1": None},
    ]
    report = {"pipeline": "flow_records", "dataset": "d<1>", "experiment": "default", "classes": ["benign", "attack"],
              "combinations": records, "preparation": {"outcome": "ok", "rows": {"test": 10}},
              "summary": {"ok": 1, "skipped": 0, "failed": 1, "failures": [{"combination": EVIL, "error": "boom <b>"}]},
              "tables": {"single_lf": {"csv": "tables/single_lf.csv"}}}
    (out / "report.json").write_text(json.dumps(report))
    return out


def test_flows_page_escapes_data_and_links_relatively(tmp_path):
    out = _flows_folder(tmp_path)
    page = write_index(out, commands=[("MLflow UI", "mlflow ui --backend-store-uri 'sqlite:///a b/mlflow.db'")])
    html = page.read_text()
    assert kind_of(out)[0] == "flows"
    assert "<script>" not in html and "&lt;script&gt;" in html and "boom &lt;b&gt;" in html
    assert "A+B" in html and "A = &lt;script&gt;" in html  # the short name and its legend
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs == ["trees/c000.png"], srcs  # relative to the page, whatever the record held
    assert "/tmp" not in html.split('id="files"')[0] and str(tmp_path) not in html
    assert 'class="badge ok">ok 1' in html and 'class="badge failed">failed 1' in html
    assert "n/a" in html  # an undefined classifier F1 is shown as such, not 0
    assert "mlflow ui --backend-store-uri &#x27;sqlite:///a b/mlflow.db&#x27;" in html


def test_latency_page_has_counts_comparison_plots_and_trees(tmp_path):
    out = tmp_path / "latency_ark"
    pair = out / "per_pair" / "10.0.0.1__10.0.0.2"
    pair.mkdir(parents=True)
    _png(pair / "10.0.0.1__10.0.0.2_kde.png", "kde")
    _png(pair / "subset0_tree.png", "tree")
    _png(out / "comparison.png", "comparison")
    pd.DataFrame({"method": ["flamenco", "lof"], "f1_macro": [0.9, float("nan")]}).to_csv(out / "comparison.csv", index=False)
    rep = {"pairs": [{"src": "10.0.0.1", "dst": "10.0.0.2", "rows": 50, "outcome": "partial", "f1_macro": 0.9,
                      "reason": EVIL, "baselines": {"rolling_mad": {"f1_macro": 0.5}}}],
           "average": {"f1_macro": 0.9, "pairs_scored": 1},
           "outcomes": {"pairs": {"ok": 0, "partial": 1, "fallback": 0, "skipped": 2, "failed": 0},
                        "subsets_by_level": {"pair": 1}},
           "experiment": "e", "parent_run_id": "r"}
    (out / "report.json").write_text(json.dumps(rep))
    html = render_index(out)
    assert "partial 1" in html and "skipped 2" in html and "pair 1" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert set(srcs) == {"comparison.png", "per_pair/10.0.0.1__10.0.0.2/10.0.0.1__10.0.0.2_kde.png",
                         "per_pair/10.0.0.1__10.0.0.2/subset0_tree.png"}
    assert all((out / s).is_file() for s in srcs)
    assert html.count("<table") >= 2  # the comparison and the per-pair table


def test_demo_page_links_its_parts_and_says_what_is_missing(tmp_path):
    _flows_folder(tmp_path)
    page = write_demo_index(tmp_path, {"flow records": "flows", "latency": "latency_ark"},
                            commands=[("MLflow UI", "flamenco ui")])
    html = page.read_text()
    assert 'href="flows/index.html"' in html and (tmp_path / "flows" / "index.html").is_file()
    assert "latency_ark/ was not written" in html
    assert "flamenco ui" in html


def test_watch_page_lists_dumps_and_links_their_pages(tmp_path):
    (tmp_path / "dumps" / "a-1234").mkdir(parents=True)
    (tmp_path / "dumps" / "a-1234" / "index.html").write_text("<html></html>")
    rep = {"directory": "/in", "pipeline": "latency", "processed": ["a.warts"], "skipped": ["b.txt"],
           "failed": [{"file": "c.json", "error": "bad <record>"}], "skipped_reasons": {"b.txt": "not a dump"},
           "counts": {"done": 1, "failed": 1}}
    (tmp_path / "watch_report.json").write_text(json.dumps(rep))
    html = render_index(tmp_path)
    assert kind_of(tmp_path)[0] == "watch"
    assert "processed 1" in html and "failed 1" in html and "skipped 1" in html
    assert "bad &lt;record&gt;" in html and 'href="dumps/a-1234/index.html"' in html


def test_label_model_page_shows_fallbacks_failures_and_escapes(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    _png(out / "confusion_mmsr.png", "mmsr on test")
    pd.DataFrame({"benign": [0.9, 0.1], EVIL: [0.5, 0.0]}, index=["mmsr", "snorkel"]).to_csv(out / "per_class_f1.csv")
    report = {"pipeline": "label_model_comparison", "classes": ["benign", EVIL], "covered_classes": ["benign"],
              "uncovered_classes": [EVIL], "best_label_model": "mmsr", "best_label_model_chosen_on": "validation split",
              "models": [{"model_key": "mmsr", "kind": "label_model", "f1_macro_covered": 0.9, "fallback": "", "error": ""},
                         {"model_key": "snorkel", "kind": "label_model", "fallback": "fewer than 3 LFs: majority vote", "error": ""},
                         {"model_key": "dawid_skene", "kind": "label_model", "fallback": "", "error": "ValueError: " + EVIL}],
              "preparation": {"pack": {"pack": "p"}, "rows": {"test": 10}},
              "artifacts": {"confusion_mmsr_png": "confusion_mmsr.png", "per_class_csv": "per_class_f1.csv"}}
    (out / "report.json").write_text(json.dumps(report))
    assert kind_of(out)[0] == "label_models"
    html = render_index(out)
    assert EVIL not in html and "&lt;script&gt;" in html
    assert '>ok 1</span>' in html and '>fallback 1</span>' in html and '>failed 1</span>' in html
    assert "fewer than 3 LFs: majority vote" in html
    assert 'src="confusion_mmsr.png"' in html and "confusion of mmsr, test split" in html
    assert "best label model mmsr" in html
