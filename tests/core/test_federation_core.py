"""The federation's pure core: what the disclosure rules release, what the site refuses and why, what the
coordinator derives from suppressed counts, and that docs/federation.md shows the current schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flamenco_core.federation.combine import combine, interval
from flamenco_core.federation.config import GroundTruth, SitePolicy, load_site_config
from flamenco_core.federation.disclosure import Discloser
from flamenco_core.federation.models import Count, SiteAggregate, SiteOutcome, aggregate_schema
from flamenco_core.federation.site import answer, small_cells

ROOT = Path(__file__).resolve().parents[2]
PACK = (ROOT / "conf" / "lf_packs" / "cic_ntp.yaml").read_text()


def test_counts_below_k_or_within_k_of_the_total_are_suppressed():
    d = Discloser(20)
    assert d.count(0, 1000) == Count(suppressed="fewer_than_k")  # zero too: else "0" and "3" differ
    assert d.count(19, 1000) == Count(suppressed="fewer_than_k")
    assert d.count(20, 1000) == Count(value=20)
    assert d.count(985, 1000) == Count(suppressed="complement_fewer_than_k")
    assert d.count(500, 1000, total_released=False) == Count(suppressed="total_suppressed")
    assert d.total(19) == Count(suppressed="fewer_than_k")


def test_one_suppressed_cell_in_a_sum_takes_its_smallest_neighbour_with_it():
    cells = Discloser(20).group([5, 300, 695], 1000)
    assert [c.suppressed for c in cells] == ["fewer_than_k", "secondary", None]
    assert cells[2].value == 695
    # two suppressed already: no recovery by subtraction, nothing more hidden
    assert [c.suppressed for c in Discloser(20).group([5, 7, 988], 1000)] == ["fewer_than_k", "fewer_than_k", "complement_fewer_than_k"]


def test_noise_is_fixed_per_quantity_and_stays_within_the_total():
    d = Discloser(20, 0.5, 7, "cic")
    # the same quantity (an LF's votes, by its content hash) gets the same noise whenever it is asked for:
    # repeating a request or renaming the LF gives nothing to average
    assert len({d.count(500, 1000, key="lfhash:votes").value for _ in range(5)}) == 1
    vals = [d.count(500, 1000, key=f"lf{i}:votes").value for i in range(200)]
    assert len(set(vals)) > 5 and all(0 <= v <= 1000 for v in vals)
    assert abs(sum(vals) / len(vals) - 500) < 2  # unbiased: Laplace(0, 2)
    assert Discloser(20, 0.5, 8, "cic").count(500, 1000, key="lf0:votes").value != vals[0] or \
        Discloser(20, 0.5, 9, "cic").count(500, 1000, key="lf0:votes").value != vals[0]


def test_noisy_answers_repeat_the_same_count_for_the_same_lf():
    df = _flows()
    pol = SitePolicy(noise={"epsilon": 0.5, "seed": 3})
    two = PACK.replace("pack: cic-ntp", "pack: renamed")
    agg = answer([PACK, two.replace("src_port_le_6600_attack", "renamed_lf")], "cic", df, pol, site="s",
                 label_model="majority")
    assert agg.outcome == "ok", agg.reasons
    a, b = agg.packs[0].lfs[0].votes, agg.packs[1].lfs[0].votes
    assert a.value is not None and a == b


def _flows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < 0.7
    return pd.DataFrame({
        "src_port": np.where(attack, 123, rng.integers(10000, 60000, n)),
        "dst_port": rng.integers(1000, 60000, n),
        "average_packet_size": np.where(attack, rng.normal(460, 20, n), rng.normal(90, 30, n)),
        "flow_iat_min": np.where(attack, rng.exponential(1, n), rng.exponential(50, n)),
        "label": np.where(attack, "DrDoS_NTP", "BENIGN"),
    })


TRUTH = GroundTruth(column="label", classes={"BENIGN": "benign", "DrDoS_NTP": "attack"})


def test_answer_holds_counts_only_and_fits_the_schema():
    df = _flows()
    agg = answer([PACK], "cic", df, SitePolicy(), site="s", truth=TRUTH, label_model="majority")
    assert agg.outcome == "ok", agg.reasons
    text = agg.model_dump_json()
    SiteAggregate.model_validate_json(text)
    # no statistic, threshold or raw value: the mean packet size of the data is nowhere in the answer
    mean = df["average_packet_size"].mean()
    assert f"{mean:.3f}"[:6] not in text
    lf = agg.packs[0].lfs[0]
    assert lf.votes.value is not None and {r.true_class for r in lf.confusion} == {"benign", "attack"}
    assert set(lf.confusion[0].decided) == {lf.label, "abstain"}  # an LF decides its label or abstains


@pytest.mark.parametrize("policy,pack,code", [
    (SitePolicy(allowed_statistics=["median"]), PACK, "statistic_not_allowed"),
    (SitePolicy(max_pack_bytes=100), PACK, "pack_too_large"),
    (SitePolicy(min_rows=10_000), PACK, "too_few_rows"),
    (SitePolicy(label_models=["snorkel"]), PACK, "label_model_not_allowed"),
    (SitePolicy(), PACK.replace("label: attack", "label: attak", 1), "invalid_pack"),
    (SitePolicy(), "pack: x\nclasses: [benign, attack]\nlfs:\n - {name: a, label: attack, when: [{feature: average_packet_size, op: '>', value: 400}]}\n",
     "audit_literal_threshold"),
    (SitePolicy(), "pack: x\nclasses: [benign, attack]\nlfs:\n - {name: a, label: attack, when: [{feature: src, op: '>', value: mean}]}\n",
     "audit_identifier_feature"),
    (SitePolicy(), "pack: x\nclasses: [benign, attack]\nlfs:\n - {name: a, label: attack, when: [{feature: nope, op: '>', value: mean}]}\n",
     "unknown_feature"),
    (SitePolicy(), "!!python/object/apply:os.system ['true']\n", "invalid_pack"),
])
def test_refusals_name_a_code(policy, pack, code):
    agg = answer([pack], "cic", _flows(), policy, site="s", label_model="majority")
    assert agg.outcome == "refused" and code in {r.code for r in agg.reasons}, agg.reasons
    assert agg.packs == []


def test_an_unknown_dataset_is_refused_and_an_error_names_its_type_only():
    assert answer([PACK], "other", None, SitePolicy(), site="s").reasons[0].code == "unknown_dataset"
    df = _flows()
    df.loc[0, "label"] = "attack-from-203.0.113.9"  # a value the class map does not name
    seen = []
    agg = answer([PACK], "cic", df, SitePolicy(), site="s", truth=TRUTH, label_model="majority", on_error=seen.append)
    assert agg.outcome == "failed" and agg.reasons[0].message == "ValueError"
    assert "203.0.113.9" not in agg.model_dump_json()
    # the whole exception goes to the site's own hook (its operator's log), not into the answer
    assert len(seen) == 1 and isinstance(seen[0], ValueError)
    assert answer([PACK], "cic", _flows(), SitePolicy(), site="s", label_model="majority", on_error=seen.append).outcome == "ok"
    assert len(seen) == 1


def test_a_refused_request_is_a_usage_error():
    from flamenco_core.errors import EXIT_USAGE, FlamencoError
    from flamenco_core.federation.site import Refused

    assert issubclass(Refused, FlamencoError) and Refused.exit_code == EXIT_USAGE


def test_small_cells_refuse_differencing_on_one_value_not_wide_gaps():
    df = _flows()
    df.loc[:2, "src_port"] = 31337
    from flamenco_core.labeling.spec import LFPack

    def pack(conds):
        return LFPack.from_dict({"pack": "p", "classes": ["benign", "attack"], "universal_features": ["src_port"],
                                 "lfs": [{"name": f"l{i}", "label": "attack", "when": [c]} for i, c in enumerate(conds)]})

    probe = pack([{"feature": "src_port", "op": ">=", "value": 31337}, {"feature": "src_port", "op": ">", "value": 31337}])
    assert small_cells([probe], df, 20, 0.01) == [("src_port", ["l0", "l1"])]
    # the paper's two port rules leave a few flows between 6600 and 9000: a wide cell, not a probe
    df.loc[3:5, "src_port"] = 7000
    paper = pack([{"feature": "src_port", "op": "<=", "value": 6600}, {"feature": "src_port", "op": ">=", "value": 9000}])
    assert small_cells([paper], df, 20, 0.01) == []


def test_combine_reports_ranges_for_suppressed_cells_and_pools_sites(tmp_path):
    assert interval(Count(suppressed="fewer_than_k"), (100.0, 100.0), 20) == (0.0, 19.0)
    assert interval(Count(suppressed="complement_fewer_than_k"), (100.0, 100.0), 20) == (81.0, 100.0)
    a = answer([PACK], "cic", _flows(seed=1), SitePolicy(), site="a", truth=TRUTH, label_model="majority")
    b = answer([PACK], "cic", _flows(seed=2).drop(columns=["label"]), SitePolicy(noise={"epsilon": 1.0}), site="b",
               label_model="majority")
    rep = combine([SiteOutcome(site="a", status="ok", aggregate=a), SiteOutcome(site="b", status="ok", aggregate=b),
                   SiteOutcome(site="c", status="down", reason="no worker online")], dataset="cic", packs=[])
    assert rep["usable_sites"] == ["a", "b"] and [s["status"] for s in rep["sites"]] == ["ok", "ok", "down"]
    pooled = rep["pooled"]["cic-ntp"]
    assert pooled["rows"]["value"] == 800 or pooled["rows"].get("range")  # b's rows carry noise
    lf = next(r for r in rep["per_site"]["a"]["cic-ntp"]["lfs"] if r["lf"] == "src_port_le_6600_attack")
    f1 = lf["f1"]
    lo, hi = (f1["value"], f1["value"]) if f1["value"] is not None else f1["range"]
    assert 0.9 < lo <= hi <= 1.0
    verdict = {g["lf"]: g["verdict"] for g in rep["generalisation"]}
    assert verdict["src_port_le_6600_attack"] == "generalises"
    json.dumps(rep, allow_nan=False)


    # the page of that report: every site with its status and reason, the pooled and per-site LF tables
    from flamenco_core.report import kind_of, render_index

    out = tmp_path / "fed"
    out.mkdir()
    (out / "report.json").write_text(json.dumps(rep, allow_nan=False))
    assert kind_of(out)[0] == "federation"
    html = render_index(out)
    assert ">ok 2</span>" in html and ">down 1</span>" in html and "no worker online" in html
    assert "cic-ntp (sites: a, b)" in html and "a: cic-ntp" in html and "b: cic-ntp" in html
    assert html.count("src_port_le_6600_attack") >= 4  # pooled, a, b, the verdicts


def test_site_config_errors_name_the_file_and_field(tmp_path):
    from flamenco_core.errors import UsageError

    p = tmp_path / "site.yaml"
    p.write_text("site: Site A\ndatasets: {cic: {path: x.parquet}}\n")
    with pytest.raises(UsageError, match=r"site.yaml: site: String should match"):
        load_site_config(p)
    p.write_text("site: a\ndatasets: {cic: {path: x.parquet}}\npolicy: {allowed_statistics: [nonsense]}\n")
    with pytest.raises(UsageError, match=r"policy.allowed_statistics"):
        load_site_config(p)
    for f in ("site.yaml", "site_b.yaml"):
        assert load_site_config(ROOT / "conf" / f).site.startswith("site-")


def test_docs_show_the_current_schema():
    doc = (ROOT / "docs" / "federation.md").read_text()
    m = re.search(r"<!-- schema:begin -->\n```json\n(.*?)\n```\n<!-- schema:end -->", doc, re.S)
    assert m, "docs/federation.md lost its schema block"
    assert json.loads(m.group(1)) == aggregate_schema(), "regenerate: python -m flamenco_core.federation.models"
