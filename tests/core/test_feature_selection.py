"""Feature selection (correlations, importances, selection by config, profile CSV) and ground truth
(label column, alert windows)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flamenco_core.preprocess.feature_selection import (
    FeatureSelectionConfig,
    correlation_matrix,
    correlation_of,
    correlations,
    extended_profile,
    feature_importance,
    select_features,
    write_profile_csv,
)
from flamenco_core.preprocess.ground_truth import (
    AlertWindowError,
    ground_truth,
    labels_from_alerts,
    labels_from_column,
    load_alert_windows,
)


@pytest.fixture(scope="module")
def flows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    informative = y * 2.0 + rng.normal(0, 0.5, n)
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2020-01-01", periods=n, freq="s", tz="UTC"),
            "src": "1.1.1.1",
            "noise_a": rng.normal(size=n),
            "informative": informative,
            "copy": informative * 3 + 1 + rng.normal(0, 1e-3, n),
            "noise_b": rng.exponential(size=n),
            "constant": 7.0,
            "ints": rng.integers(0, 100, n),
            "label": np.where(y == 1, "attack", "benign"),
        }
    )
    df.loc[5, "noise_b"] = np.inf
    df.loc[6, "noise_a"] = np.nan
    return df


# ---------------------------------------------------------------------------------------------- corr


def test_correlation_equals_pandas(flows):
    feats = ["noise_a", "informative", "copy", "noise_b", "ints"]
    clean = flows[feats].astype(float).replace([np.inf, -np.inf], np.nan)
    for method in ("pearson", "spearman"):
        ours = correlation_matrix(flows, feats, method)
        pd.testing.assert_frame_equal(ours, clean.corr(method=method))
    both = correlations(flows)
    assert set(both) == {"pearson", "spearman"}
    assert "label" not in both["pearson"].columns and "timestamp" not in both["pearson"].columns
    assert both["pearson"]["constant"].isna().all()
    with pytest.raises(ValueError):
        correlation_matrix(flows, feats, "kendalls")


def test_correlation_of(flows):
    corr = correlation_matrix(flows, ["noise_a", "informative", "copy"])
    assert math.isnan(correlation_of(["informative"], corr))
    assert math.isnan(correlation_of(["informative", "informative"], corr))
    assert correlation_of(["informative", "copy"], corr) == pytest.approx(abs(corr.loc["informative", "copy"]))
    three = np.mean(np.abs([corr.loc["noise_a", "informative"], corr.loc["noise_a", "copy"], corr.loc["informative", "copy"]]))
    assert correlation_of(["noise_a", "informative", "copy"], corr) == pytest.approx(three)
    with pytest.raises(KeyError, match="missing_feature"):
        correlation_of(["informative", "missing_feature"], corr)


# ---------------------------------------------------------------------------------------- importance


def test_importance_ranks_informative_first_and_is_seeded(flows):
    feats = ["noise_a", "informative", "noise_b", "ints"]
    imp = feature_importance(flows, "label", feats, seed=1, n_estimators=25)
    assert imp.index[0] == "informative"
    assert list(imp["rank"]) == [1, 2, 3, 4]
    assert imp["permutation"].idxmax() == "informative"
    assert imp.attrs["holdout"] is True
    again = feature_importance(flows, "label", feats, seed=1, n_estimators=25)
    pd.testing.assert_frame_equal(imp, again)
    perm = feature_importance(flows, flows["label"].to_numpy(), feats, methods=("permutation",), seed=1, n_estimators=25)
    assert perm.index[0] == "informative" and "impurity" not in perm.columns
    with pytest.raises(ValueError, match="2 classes"):
        feature_importance(flows.assign(label="benign"), "label", feats)


# ------------------------------------------------------------------------------------------ selection


def test_select_features_by_config(flows):
    sel = select_features(flows, {"label": None})
    assert sel.selected == ["noise_a", "informative", "copy", "noise_b", "ints"]
    assert sel.dropped == {"constant": "constant: every finite value is 7"}
    assert sel.importance is None

    explicit = select_features(flows, {"features": ["ints", "noise_a", "constant"], "exclude": ["noise_a"],
                                       "n_estimators": 10})
    assert explicit.selected == ["ints"]
    assert list(explicit.importance.index) == ["ints"]  # ranked for the report since labels exist
    assert select_features(flows, {"rank": False}).importance is None
    assert explicit.dropped["noise_a"] == "excluded by config"
    assert explicit.dropped["constant"].startswith("constant")

    corr = select_features(flows, {"corr_threshold": 0.95, "seed": 0, "n_estimators": 30})
    kept = {"informative", "copy"} & set(corr.selected)
    assert len(kept) == 1
    (gone,) = {"informative", "copy"} - kept
    assert "with" in corr.dropped[gone] and "> 0.95" in corr.dropped[gone]
    assert corr.importance.loc[next(iter(kept)), "rank"] < corr.importance.loc[gone, "rank"]

    no_labels_corr = select_features(flows, FeatureSelectionConfig(label=None, corr_threshold=0.95))
    assert "informative" in no_labels_corr.selected and "copy" in no_labels_corr.dropped  # earlier column kept

    top = select_features(flows, {"top_k": 2, "corr_threshold": 0.95, "n_estimators": 30})
    assert len(top.selected) == 2 and ("informative" in top.selected or "copy" in top.selected)
    assert any("not in top 2" in r for r in top.dropped.values())
    rec = top.to_dict()
    assert rec["selected"] == top.selected and rec["config"]["top_k"] == 2

    with pytest.raises(ValueError, match="needs labels"):
        select_features(flows, {"top_k": 2, "label": None})
    with pytest.raises(ValueError, match="unknown feature-selection keys"):
        select_features(flows, {"topk": 2})
    with pytest.raises(KeyError, match="nope"):
        select_features(flows, {"features": ["nope"]})


# -------------------------------------------------------------------------------------------- profile


def test_profile_csv_loads_and_matches_describe(flows, tmp_path):
    from flamenco_core.labeling.stats import load_profile

    feats = ["noise_a", "informative", "noise_b", "ints"]
    path = write_profile_csv(flows, tmp_path / "profile.csv", feats)
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["feature", "count", "mean", "std", "min", "p1", "p5", "q1", "median", "q3", "p95", "p99", "max"]
    stats = load_profile(path)
    clean = flows[feats].astype(float).replace([np.inf, -np.inf], np.nan)
    desc = clean.describe()
    names = {"count": "count", "mean": "mean", "std": "std", "min": "min", "25%": "q1", "50%": "median",
             "75%": "q3", "max": "max"}
    for f in feats:
        for d, s in names.items():
            assert stats.get(f, s) == pytest.approx(desc.loc[d, f], rel=1e-12)
        assert stats.get(f, "p99") == pytest.approx(clean[f].quantile(0.99), rel=1e-12)
        assert stats.get(f, "p1") == pytest.approx(clean[f].quantile(0.01), rel=1e-12)
        assert stats.get(f, "iqr") == pytest.approx(desc.loc["75%", f] - desc.loc["25%", f])
    prof = extended_profile(flows, feats, percentiles=(10, 90))
    assert list(prof.columns) == ["count", "mean", "std", "min", "p10", "q1", "median", "q3", "p90", "max"]


# ---------------------------------------------------------------------------------------- ground truth


def test_cic_label_column(samples):
    df = pd.read_csv(samples / "cicddos2019" / "DrDoS_NTP.csv", low_memory=False)
    df.columns = df.columns.str.strip()
    gt = labels_from_column(df, "Label")
    assert gt.report["counts"] == {"benign": 295, "attack": 72}
    assert gt.report["defaulted"] == {"DrDoS_NTP": 72}
    assert gt.labels.index.equals(df.index)
    assert (gt.labels == "attack").sum() == 72
    raw = pd.read_csv(samples / "cicddos2019" / "DrDoS_NTP.csv", low_memory=False, usecols=[" Label"])
    assert ground_truth(raw, column="label").report["counts"]["attack"] == 72  # " Label" found stripped


def test_label_mapping_options():
    df = pd.DataFrame({"label": [" BENIGN", "benign", "DrDoS_NTP", "", None, "Syn", "WebDDoS"]})
    gt = labels_from_column(df)
    assert gt.labels.iloc[0] == "benign" and gt.labels.iloc[1] == "benign" and gt.labels.iloc[2] == "attack"
    assert gt.labels.iloc[3:5].isna().all() and gt.report["unlabeled"] == 2
    strict = {"BENIGN": "benign", "DrDoS_NTP": "attack"}
    with pytest.raises(ValueError, match="'Syn' \\(1 rows\\)"):
        labels_from_column(df, mapping=strict, default=None)
    custom = labels_from_column(df, mapping={"BENIGN": "benign", "WebDDoS": "benign"}, default="attack")
    assert custom.labels.iloc[6] == "benign" and custom.report["counts"] == {"benign": 3, "attack": 2}
    with pytest.raises(ValueError, match="not classes"):
        labels_from_column(df, mapping={"BENIGN": "normal"})


T0 = pd.Timestamp("2021-03-01 12:00:00", tz="UTC")


def _flows() -> pd.DataFrame:
    minutes = [0, 5, 10, 15, 20, 25, 30, 35]
    return pd.DataFrame(
        {
            "timestamp": [T0 + pd.Timedelta(minutes=m) for m in minutes],
            "dst": ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.9"],
            "dst_port": [123, 80, 123, 53, 123, 123, 80, 123],
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )


def test_alert_windows_overlap_and_filters():
    f = _flows()
    w = pd.DataFrame(
        {
            # 1: any flow 12:04-12:11 (flows at 5, 10); 2: overlaps 1, only 10.0.0.1 port 123 (10, 25)
            # 3: port 80 only, exactly at the 12:30 flow (closed end); 4: target only; 5: matches nothing
            "start": ["2021-03-01 12:04", "2021-03-01 12:09", "2021-03-01 12:29", "2021-03-01 12:33", "2021-03-02 00:00"],
            "end": ["2021-03-01 12:11", "2021-03-01 12:26", "2021-03-01 12:30", "2021-03-01 12:40", "2021-03-02 01:00"],
            "target": [None, "10.0.0.1", None, "10.0.0.9", None],
            "port": [None, 123, 80, None, None],
        }
    )
    gt = labels_from_alerts(f, w)
    expected = ["benign", "attack", "attack", "benign", "benign", "attack", "attack", "attack"]
    assert gt.labels.tolist() == expected
    assert gt.labels.index.equals(f.index)
    assert gt.report["flows_matched"] == 5 and gt.report["flows_unmatched"] == 3
    assert gt.report["windows_matched"] == 4 and gt.report["unmatched_window_rows"] == [5]
    assert gt.windows["flows"].tolist() == [2, 2, 1, 1, 0]
    left = labels_from_alerts(f, w, closed="left")
    assert left.labels.iloc[6] == "benign"  # 12:30 is the end of window 3
    assert left.windows["flows"].tolist()[2] == 0


def _brute(f: pd.DataFrame, w: pd.DataFrame, closed: str) -> tuple[np.ndarray, np.ndarray]:
    t = f["timestamp"].to_numpy()[:, None]
    s = pd.to_datetime(w["start"], utc=True).to_numpy()[None, :]
    e = pd.to_datetime(w["end"], utc=True).to_numpy()[None, :]
    inside = (t >= s) & ((t <= e) if closed == "both" else (t < e))
    tgt_ok = w["target"].isna().to_numpy()[None, :] | (f["dst"].to_numpy()[:, None] == w["target"].to_numpy()[None, :])
    port = w["port"].to_numpy(dtype=float)
    port_ok = np.isnan(port)[None, :] | (f["dst_port"].to_numpy()[:, None] == port[None, :])
    hit = inside & tgt_ok & port_ok
    return hit.any(axis=1), hit.sum(axis=0)


@pytest.mark.parametrize("seed", range(6))
def test_alert_join_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = 400, 25
    f = pd.DataFrame({
        "timestamp": T0 + pd.to_timedelta(np.sort(rng.integers(0, 3600, n)), unit="s"),
        "dst": rng.choice(["a", "b", "c"], n),
        "dst_port": rng.choice([53, 80, 123], n),
    })
    start = T0 + pd.to_timedelta(rng.integers(0, 3600, m), unit="s")
    f.loc[rng.choice(n, 5, replace=False), "timestamp"] = start[:5]  # exact boundary hits
    w = pd.DataFrame({
        "start": start,
        "end": start + pd.to_timedelta(rng.integers(0, 600, m), unit="s"),
        "target": pd.Series(rng.choice(["a", "b", None], m), dtype=object),
        "port": pd.Series(rng.choice([53, 80, np.nan], m)),
    })
    for closed in ("both", "left"):
        gt = labels_from_alerts(f, w, closed=closed)
        want, per_window = _brute(f, w, closed)
        assert (gt.labels == "attack").to_numpy().tolist() == want.tolist()
        assert gt.windows["flows"].tolist() == per_window.tolist()


def test_alert_files_csv_yaml_and_errors(tmp_path):
    f = _flows().assign(timestamp=lambda d: d["timestamp"].dt.tz_localize(None).astype(str))  # naive strings
    csv = tmp_path / "alerts.csv"
    csv.write_text("start,end,target,port\n2021-03-01 12:04,2021-03-01 12:11,,\n2021-03-01T12:09:00Z,2021-03-01T12:26:00Z,10.0.0.1,123\n")
    yml = tmp_path / "alerts.yaml"
    yml.write_text("windows:\n  - {start: '2021-03-01 12:04', end: '2021-03-01 12:11'}\n"
                   "  - {start: '2021-03-01 12:09', end: '2021-03-01 12:26', target: 10.0.0.1, port: 123}\n")
    a = labels_from_alerts(f, csv)
    b = ground_truth(f, alerts=yml)
    assert a.labels.tolist() == b.labels.tolist()
    assert (a.labels == "attack").sum() == 3 and a.report["source"] == str(csv)
    win = load_alert_windows(csv)
    assert str(win["start"].dtype) == "datetime64[ns, UTC]" and win["port"].tolist()[1] == 123
    # naive times (flows and window 1) are read in tz; window 2's explicit "Z" is not moved, so in
    # Amsterdam time (UTC+1) the flows leave window 2 and only window 1's two flows match
    amsterdam = labels_from_alerts(f, csv, tz="Europe/Amsterdam")
    assert amsterdam.report["flows_matched"] == 2 and amsterdam.windows["flows"].tolist() == [2, 0]

    bad = tmp_path / "bad.csv"
    bad.write_text("start,end\n2021-03-01 12:00,2021-03-01 13:00\n2021-03-01 12:00,2021-03-01 11:00\n")
    with pytest.raises(AlertWindowError, match=r"bad\.csv: row 2 \(line 3\): end .* before start") as err:
        load_alert_windows(bad)
    from flamenco_core.errors import EXIT_UNUSABLE, FlamencoError

    assert isinstance(err.value, FlamencoError) and isinstance(err.value, ValueError)  # one line, exit 1
    assert err.value.exit_code == EXIT_UNUSABLE
    bad.write_text("start,end\nyesterday-ish,2021-03-01 13:00\n")
    with pytest.raises(AlertWindowError, match=r"bad\.csv: row 1 \(line 2\): cannot read start time 'yesterday-ish'"):
        labels_from_alerts(f, bad)
    bad.write_text("start,end,port\n2021-03-01 12:00,2021-03-01 13:00,http\n")
    with pytest.raises(AlertWindowError, match="port 'http'"):
        load_alert_windows(bad)
    bad.write_text("begin,finish\n1,2\n")
    with pytest.raises(AlertWindowError, match="missing \\['end'\\]"):
        load_alert_windows(bad)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("- {start: '2021-03-01 12:00', end: '2021-03-01 13:00'}\n- {start: '2021-03-01 12:00', end: '2021-03-01 11:00'}\n")
    with pytest.raises(AlertWindowError, match=r"bad\.yaml: row 2: end"):
        load_alert_windows(bad_yaml)
    with pytest.raises(KeyError, match="dst_port"):
        labels_from_alerts(f.drop(columns="dst_port"), csv)
    epoch = pd.DataFrame({"timestamp": [1614600000.5, 1614600100, None]})  # Unix seconds, one missing
    by_epoch = labels_from_alerts(epoch, [{"start": 1614600000, "end": 1614600050}])
    assert by_epoch.labels.tolist()[:2] == ["attack", "benign"] and by_epoch.report["flows_without_time"] == 1
    with pytest.raises(ValueError, match="either"):
        ground_truth(f, column="label", alerts=csv)
