"""The applier: Snorkel equivalence, ops, profiles, Python LFs, chunked Parquet, and the ``flamenco lf`` CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from snorkel.labeling import LabelingFunction, PandasLFApplier, labeling_function
from typer.testing import CliRunner

import builders
from builders import EXAMPLE_PACK as EXAMPLE
from builders import lf
from flamenco.cli_lf import lf_app
from flamenco_core.labeling import (
    ABSTAIN,
    LFPack,
    SpecError,
    apply_lfs,
    apply_lfs_parquet,
    compute_stats,
    resolved_thresholds,
    vectorized_lf,
)



def flows_frame(n: int = 4000, seed: int = 7) -> pd.DataFrame:
    """CIC-like flow records: heavy-tailed volumes, ports, protocols, identifiers, NaNs and an inf."""
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < 0.3
    packets = np.where(attack, rng.integers(1, 4, n), rng.integers(1, 400, n)).astype(float)
    df = pd.DataFrame(
        {
            "src": [f"10.0.{i % 250}.{i % 7}" for i in range(n)],
            "dst": "192.0.2.1",
            "src_port": np.where(attack, 123, rng.integers(1024, 65536, n)),
            "dst_port": np.where(attack, rng.integers(1024, 65536, n), rng.choice([53, 80, 443, 123], n)),
            "protocol": rng.choice([6, 17], n, p=[0.6, 0.4]),
            "packets": packets,
            "bytes": packets * np.where(attack, 468.0, rng.lognormal(6, 1, n)),
            "duration": rng.exponential(2.0, n),
            "flow_bytes_s": rng.lognormal(8, 2, n),
            "iat_mean": rng.lognormal(0, 1.5, n),
            "label": np.where(attack, "attack", "benign"),
        }
    )
    for col, frac in (("bytes", 0.03), ("duration", 0.05), ("iat_mean", 0.02)):
        df.loc[rng.random(n) < frac, col] = np.nan
    df.loc[5, "flow_bytes_s"] = np.inf
    df.loc[6, "flow_bytes_s"] = -np.inf
    return df


def pack_dict(*lfs, **kw):
    return builders.pack_dict(*lfs, name="t", **kw)


# Each condition with an independent reference threshold written against pandas (describe semantics,
# finite values only), so the comparison does not reuse the applier's statistics code.
def _finite(s):
    return s[np.isfinite(s)]


REF = {
    "mean": lambda s: _finite(s).mean(),
    "std": lambda s: _finite(s).std(),
    "median": lambda s: _finite(s).median(),
    "0.5*p75": lambda s: 0.5 * _finite(s).quantile(0.75),
    "q3 + 1.5*iqr": lambda s: _finite(s).quantile(0.75) + 1.5 * (_finite(s).quantile(0.75) - _finite(s).quantile(0.25)),
    "mean + 2*std": lambda s: _finite(s).mean() + 2 * _finite(s).std(),
    "p99.9": lambda s: _finite(s).quantile(0.999),
    "p10": lambda s: _finite(s).quantile(0.10),
    "q1": lambda s: _finite(s).quantile(0.25),
    "q3": lambda s: _finite(s).quantile(0.75),
    "min": lambda s: _finite(s).min(),
    "max": lambda s: _finite(s).max(),
    "(max - min)/2": lambda s: (_finite(s).max() - _finite(s).min()) / 2,
}

FLOW_LFS = [
    lf("ntp_reflection", "attack", ("src_port", "==", 123), ("protocol", "==", 17)),
    lf("small_bytes", "benign", ("bytes", "<=", "0.5*p75"), ("packets", "<=", "mean")),
    lf("bytes_outlier", "attack", ("bytes", ">", "q3 + 1.5*iqr")),
    lf("long_flow", "benign", ("duration", ">=", "mean + 2*std")),
    lf("fast_rate", "attack", ("flow_bytes_s", ">", "p99.9")),
    lf("slow_rate", "benign", ("flow_bytes_s", "<", "p10")),
    lf("dns_or_web", "benign", ("dst_port", "in", [53, 80, 443])),
    lf("mid_iat", "benign", ("iat_mean", "between", ["q1", "q3"])),
    lf("not_median_packets", "attack", ("packets", "!=", "median"), ("protocol", "!=", 6)),
    lf("top_packets", "attack", ("packets", "==", "max")),
    lf("nan_aware_ne", "attack", ("duration", "!=", "median"), ("bytes", "!=", "mean")),
    lf("short_half_range", "benign", ("duration", "<", "(max - min)/2"), ("duration", ">", "min")),
]


def snorkel_lfs_for(pack_data: dict, df: pd.DataFrame) -> list[LabelingFunction]:
    """Row-wise Snorkel LFs equivalent to the spec, thresholds from pandas via REF."""
    classes = pack_data["classes"]
    out = []
    for spec in pack_data["lfs"]:
        conds = []
        for c in spec["when"]:
            vals = c["value"] if isinstance(c["value"], list) else [c["value"]]
            thr = [float(REF[v](df[c["feature"]])) if isinstance(v, str) else float(v) for v in vals]
            conds.append((c["feature"], c["op"], thr))
        idx = classes.index(spec["label"])

        def f(x, conds=conds, idx=idx):
            for feature, op, t in conds:
                v = float(x[feature])
                if math.isnan(v) or any(math.isnan(tt) for tt in t if op != "in"):
                    return -1
                ok = {
                    "<=": lambda: v <= t[0], "<": lambda: v < t[0], ">=": lambda: v >= t[0], ">": lambda: v > t[0],
                    "==": lambda: v == t[0], "!=": lambda: v != t[0], "in": lambda: v in t, "between": lambda: t[0] <= v <= t[1],
                }[op]()
                if not ok:
                    return -1
            return idx

        out.append(LabelingFunction(name=spec["name"], f=f))
    return out


# ---------------------------------------------------------------------------------------------- Snorkel equivalence


def test_pack_matrix_equals_snorkel_pandas_applier():
    df = flows_frame()
    data = pack_dict(*FLOW_LFS)
    pack = LFPack.from_dict(data)
    L = apply_lfs(pack, df)
    assert L.dtype == np.int8 and L.shape == (len(df), len(FLOW_LFS))
    expected = PandasLFApplier(snorkel_lfs_for(data, df)).apply(df, progress_bar=False)
    np.testing.assert_array_equal(L, expected)
    # every LF both votes and abstains somewhere: the comparison is not vacuous
    assert ((L != ABSTAIN).sum(axis=0) > 0).all() and ((L == ABSTAIN).sum(axis=0) > 0).all()

    # the same Snorkel LFs run through apply_lfs give the same matrix
    np.testing.assert_array_equal(apply_lfs(snorkel_lfs_for(data, df), df), expected)


def test_parallel_and_block_sizes_do_not_change_the_matrix():
    df = flows_frame(9000, seed=3)
    pack = LFPack.from_dict(pack_dict(*FLOW_LFS))
    base = apply_lfs(pack, df)
    for kw in ({"n_jobs": 4, "block_rows": 1024}, {"block_rows": 1500}, {"n_jobs": 2}):
        np.testing.assert_array_equal(apply_lfs(pack, df, **kw), base)


def test_example_pack_on_flows():
    df = flows_frame()
    pack = LFPack.from_yaml(EXAMPLE)
    L, meta = apply_lfs(pack, df, return_meta=True)
    bytes_thr = 0.5 * _finite(df["bytes"]).quantile(0.75)
    pk_thr = _finite(df["packets"]).mean()
    exp0 = np.where(df.src_port <= 6600, 1, -1)
    exp1 = np.where((df.bytes <= bytes_thr) & (df.packets <= pk_thr), 0, -1)
    np.testing.assert_array_equal(L, np.column_stack([exp0, exp1]))
    assert meta.stats["bytes"]["q3"] == pytest.approx(_finite(df["bytes"]).quantile(0.75))
    assert meta.thresholds["bytes_le_half_p75_benign"]["bytes <= 0.5*p75"] == pytest.approx(bytes_thr)
    assert meta.votes["src_port_le_6600_attack"] == int((exp0 != -1).sum())
    assert meta.pack_hash == pack.content_hash and meta.stats_source == "data"
    json.dumps(meta.to_dict())


# ---------------------------------------------------------------------------------------------- ops


@pytest.mark.parametrize(
    "op, value, expected",
    [
        ("<=", 2, [0, 0, -1, -1, -1, -1]),
        ("<", 2, [0, -1, -1, -1, -1, -1]),
        (">=", 2, [-1, 0, 0, 0, -1, -1]),
        (">", 2, [-1, -1, 0, 0, -1, -1]),
        ("==", 3, [-1, -1, 0, -1, -1, -1]),
        ("!=", 3, [0, 0, -1, 0, -1, -1]),       # NaN never votes, not even for !=
        ("in", [1, 4, 99], [0, -1, -1, 0, -1, -1]),
        ("between", [2, 3], [-1, 0, 0, -1, -1, -1]),
        ("between", ["min", "median"], [0, 0, -1, -1, -1, -1]),  # median of 1..4 is 2.5
        ("<=", "mean", [0, 0, -1, -1, -1, -1]),
        ("==", "max", [-1, -1, -1, 0, -1, -1]),
    ],
)
def test_each_op(op, value, expected):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, np.nan, np.nan]})
    pack = LFPack.from_dict(pack_dict(lf("t", "benign", ("x", op, value)), universal=("x",)))
    assert apply_lfs(pack, df)[:, 0].tolist() == expected


def test_integer_and_nullable_columns():
    df = pd.DataFrame({"x": pd.array([1, 2, None, 4], dtype="Int64"), "y": np.array([1, 2, 3, 4], dtype=np.int16), "z": [True, False, True, False]})
    pack = LFPack.from_dict(pack_dict(lf("a", "attack", ("x", ">=", "median")), lf("b", "attack", ("y", "<", "mean")), lf("c", "benign", ("z", "==", "max"))))
    assert apply_lfs(pack, df).tolist() == [[-1, 1, 0], [1, 1, -1], [-1, -1, 0], [1, -1, -1]]


def test_nan_statistic_abstains():
    df = pd.DataFrame({"x": [1.0, np.nan, np.nan], "y": [np.nan, np.nan, np.nan]})
    pack = LFPack.from_dict(pack_dict(lf("a", "attack", ("x", "<=", "std")), lf("b", "attack", ("y", "!=", "mean"))))
    assert (apply_lfs(pack, df) == ABSTAIN).all()


def test_empty_frame():
    pack = LFPack.from_yaml(EXAMPLE)
    df = flows_frame(10).iloc[:0]
    L = apply_lfs(pack, df)
    assert L.shape == (0, 2) and L.dtype == np.int8


# ---------------------------------------------------------------------------------------------- profiles


def test_profile_stats_replace_data_stats():
    train, test = flows_frame(3000, seed=1), flows_frame(1000, seed=2)
    pack = LFPack.from_dict(pack_dict(*FLOW_LFS))
    profile = compute_stats(train, pack.features(), pack.needed_stats())
    L_profile = apply_lfs(pack, test, stats=profile)
    # same as computing from the training split: thresholds travel, data does not
    expected_thr = resolved_thresholds(pack, profile)
    L_manual, meta = apply_lfs(pack, test, stats=profile, return_meta=True)
    assert meta.thresholds == expected_thr and meta.stats_source == "profile"
    np.testing.assert_array_equal(L_profile, L_manual)
    assert not np.array_equal(L_profile, apply_lfs(pack, test))  # test-split stats differ


def test_a_missing_statistic_is_a_usage_error_and_still_a_key_error():
    from flamenco_core.errors import EXIT_USAGE, FlamencoError
    from flamenco_core.labeling.stats import MissingStatistic, ProfileStatistics

    assert issubclass(MissingStatistic, FlamencoError) and MissingStatistic.exit_code == EXIT_USAGE
    with pytest.raises(KeyError, match="p99 of 'bytes'"):
        ProfileStatistics({"bytes": {"mean": 1.0}}).get("bytes", "p99")


def test_profile_dataframe_from_preprocess(tmp_path):
    from flamenco_core.preprocess.profile import profile

    df = flows_frame(2000)
    pack = LFPack.from_yaml(EXAMPLE)
    prof = profile(df, ["bytes", "packets", "src_port"])
    np.testing.assert_array_equal(apply_lfs(pack, df, stats=prof), apply_lfs(pack, df))
    prof.to_csv(tmp_path / "profile.csv")
    from flamenco_core.labeling import load_profile

    np.testing.assert_array_equal(apply_lfs(pack, df, stats=load_profile(tmp_path / "profile.csv")), apply_lfs(pack, df))
    np.testing.assert_array_equal(apply_lfs(pack, df, stats=df[["bytes", "packets", "src_port"]].describe().T), apply_lfs(pack, df))
    with pytest.raises(TypeError):
        apply_lfs(pack, df, stats=df)  # raw data is not a profile


# ---------------------------------------------------------------------------------------------- Python LFs


def test_vectorized_and_snorkel_lfs_together():
    df = flows_frame(500)

    @vectorized_lf(name="ntp_vec")
    def ntp_vec(d):
        return np.where((d.src_port == 123) & (d.protocol == 17), 1, ABSTAIN)

    @vectorized_lf
    def many_packets(d):
        return np.where(d.packets > 100, 0, ABSTAIN)

    @labeling_function()
    def ntp_row(x):
        return 1 if x.src_port == 123 and x.protocol == 17 else ABSTAIN

    L = apply_lfs([ntp_vec, ntp_row, many_packets], df)
    assert L.dtype == np.int8
    np.testing.assert_array_equal(L[:, 0], L[:, 1])
    assert many_packets.name == "many_packets"
    np.testing.assert_array_equal(apply_lfs([ntp_vec, many_packets], df, n_jobs=2), L[:, [0, 2]])
    with pytest.raises(ValueError, match="unique"):
        apply_lfs([ntp_vec, ntp_vec], df)

    @vectorized_lf(name="broken")
    def broken(d):
        return np.zeros(3)

    with pytest.raises(ValueError, match="broken"):
        apply_lfs([broken], df)
    with pytest.raises(TypeError):
        apply_lfs([lambda d: d], df)


# ---------------------------------------------------------------------------------------------- Parquet


def test_chunked_parquet_equals_in_memory(tmp_path):
    df = flows_frame(7000, seed=11)
    path = tmp_path / "flows.parquet"
    df.to_parquet(path, row_group_size=1000)
    pack = LFPack.from_dict(pack_dict(*FLOW_LFS))
    expected = apply_lfs(pack, df)
    got = apply_lfs_parquet(pack, path, batch_rows=777, n_jobs=2, block_rows=1024)
    np.testing.assert_array_equal(got, expected)

    out, meta = apply_lfs_parquet(pack, path, batch_rows=2048, out=tmp_path / "L.parquet", return_meta=True)
    table = pq.read_table(out)
    assert table.column_names == pack.lf_names
    assert all(t == pa.int8() for t in table.schema.types)
    assert table.schema.metadata[b"flamenco.pack_hash"].decode() == pack.content_hash
    np.testing.assert_array_equal(table.to_pandas().to_numpy(), expected)
    assert meta.n_rows == len(df) and meta.votes == {n: int(v) for n, v in zip(pack.lf_names, (expected != -1).sum(0))}

    # a folder of files, with a profile
    folder = tmp_path / "parts"
    folder.mkdir()
    df.iloc[:3000].to_parquet(folder / "a.parquet")
    df.iloc[3000:].to_parquet(folder / "b.parquet")
    profile = compute_stats(df.iloc[:3000], pack.features(), pack.needed_stats())
    np.testing.assert_array_equal(apply_lfs_parquet(pack, folder, stats=profile), apply_lfs(pack, df, stats=profile))
    np.testing.assert_array_equal(apply_lfs_parquet(pack, folder), expected)


def test_parquet_unknown_feature(tmp_path):
    path = tmp_path / "f.parquet"
    pd.DataFrame({"bytes": [1.0]}).to_parquet(path)
    with pytest.raises(SpecError) as exc:
        apply_lfs_parquet(LFPack.from_yaml(EXAMPLE), path)
    assert "LF 'src_port_le_6600_attack'" in str(exc.value) and "src_port" in str(exc.value)


# ---------------------------------------------------------------------------------------------- CLI


def _write_pack(path: Path, data: dict) -> Path:
    LFPack.from_dict(data).to_yaml(path)
    return path


def test_cli_apply_parquet_and_csv(tmp_path):
    runner = CliRunner()
    df = flows_frame(1500)
    pq_path, csv_path = tmp_path / "flows.parquet", tmp_path / "flows.csv"
    df.to_parquet(pq_path)
    df.to_csv(csv_path, index=False)
    expected = apply_lfs(LFPack.from_yaml(EXAMPLE), df)
    for data in (pq_path, csv_path):
        out = tmp_path / f"L_{data.suffix[1:]}.parquet"
        res = runner.invoke(lf_app, ["apply", str(EXAMPLE), "--data", str(data), "--out", str(out)])
        assert res.exit_code == 0, res.output
        table = pq.read_table(out)
        assert table.column_names == ["src_port_le_6600_attack", "bytes_le_half_p75_benign"]
        assert all(t == pa.int8() for t in table.schema.types)
        np.testing.assert_array_equal(table.to_pandas().to_numpy(), expected)
        meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
        assert meta["pack_hash"] == LFPack.from_yaml(EXAMPLE).content_hash and "bytes" in meta["stats"]

    bad = _write_pack(tmp_path / "bad.yaml", pack_dict(lf("x", "attack", ("nope", "<", "mean"))))
    res = runner.invoke(lf_app, ["apply", str(bad), "--data", str(pq_path), "--out", str(tmp_path / "o.parquet")])
    assert res.exit_code == 2 and "nope" in res.output


def test_cli_audit(tmp_path):
    runner = CliRunner()
    res = runner.invoke(lf_app, ["audit", str(EXAMPLE)])
    assert res.exit_code == 0, res.output
    assert "no findings" in res.output
    leaky = _write_pack(tmp_path / "leaky.yaml", pack_dict(
        lf("raw_bytes", "attack", ("bytes", ">", 48213)), lf("ip_list", "attack", ("dst_ip", "in", [3232235777]))))
    res = runner.invoke(lf_app, ["audit", str(leaky)])
    assert res.exit_code == 1 and "literal_threshold" in res.output and "identifier_feature" in res.output
    res = runner.invoke(lf_app, ["audit", str(leaky), "--allow", "raw_bytes"])
    assert res.exit_code == 1 and "raw_bytes" not in res.output
    res = runner.invoke(lf_app, ["audit", str(leaky), "--allow", "raw_bytes", "--allow", "ip_list"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(lf_app, ["audit", str(leaky), "--json"])
    assert res.exit_code == 1 and {f["lf"] for f in json.loads(res.output)} == {"raw_bytes", "ip_list"}


def test_cli_combine(tmp_path):
    runner = CliRunner()
    a = _write_pack(tmp_path / "a.yaml", {**pack_dict(lf("big", "attack", ("bytes", ">", "p90")), lf("ntp", "attack", ("src_port", "==", 123))), "pack": "a", "group": "A"})
    b = _write_pack(tmp_path / "b.yaml", {**pack_dict(lf("huge", "attack", ("bytes", ">", "p90")), lf("ntp", "attack", ("src_port", "==", 124))), "pack": "b", "group": "B"})
    out = tmp_path / "c.yaml"
    res = runner.invoke(lf_app, ["combine", str(a), str(b), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "duplicate" in res.output and "huge" in res.output and "ntp__B" in res.output
    merged = LFPack.from_yaml(out)
    assert merged.name == "c" and merged.lf_names == ["big", "ntp", "ntp__B"]

    leaky = _write_pack(tmp_path / "leaky.yaml", {**pack_dict(lf("raw", "attack", ("bytes", ">", 48213))), "pack": "leaky"})
    res = runner.invoke(lf_app, ["combine", str(a), str(leaky), "-o", str(tmp_path / "d.yaml")])
    assert res.exit_code == 1 and "refusing" in res.output and not (tmp_path / "d.yaml").exists()
    res = runner.invoke(lf_app, ["combine", str(a), str(leaky), "-o", str(tmp_path / "d.yaml"), "--allow", "raw"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d.yaml").exists()
