"""Flow readers (cicflowmeter, nfdump) and the tabular csv/parquet readers, on the real sample files.

Row counts are checked against counts made independently of the readers (line counts with the csv
module or plain string tests), and every read checks the accounting contract of ReadContext.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import flamenco_core.ingest.cicflowmeter as cic
import flamenco_core.ingest.nfdump as nfd
import flamenco_core.ingest.tabular as tab
from flamenco_core.ingest.base import KINDS, READERS, IngestError, ReadContext

KEYS = ["timestamp", "src", "dst", "src_port", "dst_port", "protocol"]


def read(fmt: str, path: Path, batch_rows: int | None = None, **options) -> tuple[pd.DataFrame, ReadContext]:
    """Drive a reader as the driver does: produced = rows yielded; the accounting must balance."""
    ctx = ReadContext(str(path)) if batch_rows is None else ReadContext(str(path), batch_rows=batch_rows)
    frames = list(READERS[fmt](path, ctx, **options))
    ctx.produced = sum(len(f) for f in frames)
    assert ctx.balanced(), (ctx.input_records, ctx.produced, ctx.dropped, len(ctx.quarantined))
    if batch_rows is not None:
        assert all(len(f) <= batch_rows for f in frames)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df, ctx


def cic_files(samples: Path) -> list[Path]:
    return sorted((samples / "cicddos2019").glob("*.csv"))


def csv_rows(path: Path) -> list[list[str]]:
    """Data rows of a CSV, by the csv module (independent of the readers)."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    return rows[1:]


# ---------------------------------------------------------------------------------------------------
# registration


def test_registry():
    assert KINDS["cicflowmeter"] == "flows"
    assert KINDS["nfdump"] == "flows"
    assert KINDS["csv"] == "auto" and KINDS["parquet"] == "auto"


# ---------------------------------------------------------------------------------------------------
# CICFlowMeter


def test_every_cic_file_ingests(samples):
    files = cic_files(samples)
    assert len(files) == 13
    for path in files:
        df, ctx = read("cicflowmeter", path)
        expected = csv_rows(path)
        assert ctx.input_records == len(expected) == len(df), path.name
        assert not ctx.quarantined and not ctx.dropped
        assert list(df.columns[:6]) == KEYS and df.columns[-1] == "label"
        assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
        for c in ("src_port", "dst_port", "protocol"):
            assert df[c].dtype == np.int64
        assert set(df["protocol"]) <= {0, 6, 17}
        # labels, addresses and ports are exactly what the file says, row for row
        header = [h.strip() for h in next(csv.reader(open(path)))]
        col = {h: i for i, h in enumerate(header)}
        assert df["label"].tolist() == [r[col["Label"]] for r in expected]
        assert df["src"].tolist() == [r[col["Source IP"]] for r in expected]
        assert df["dst_port"].tolist() == [int(r[col["Destination Port"]]) for r in expected]


def test_cic_labels_ntp(samples):
    df, _ = read("cicflowmeter", samples / "cicddos2019" / "DrDoS_NTP.csv")
    assert df["label"].value_counts().to_dict() == {"BENIGN": 295, "DrDoS_NTP": 72}


def test_cic_labels_differ_from_file_names(samples):
    udp, _ = read("cicflowmeter", samples / "cicddos2019" / "UDP.csv")
    assert set(udp["label"]) == {"MSSQL"}
    lag, _ = read("cicflowmeter", samples / "cicddos2019" / "UDPLag.csv")
    assert set(lag["label"]) == {"UDP-lag"}


def test_cic_feature_names(samples):
    df, ctx = read("cicflowmeter", samples / "cicddos2019" / "DrDoS_NTP.csv")
    feats = [c for c in df.columns if c not in KEYS and c != "label"]
    assert len(feats) == 88 - len(cic.EXCLUDED_COLUMNS) - len(KEYS) - 1 == 78
    for name in ("average_packet_size", "flow_iat_min", "flow_bytes_s", "flow_packets_s", "fwd_header_length_1",
                 "init_win_bytes_forward", "down_up_ratio", "inbound"):
        assert name in feats
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", f) for f in feats)
    for gone in ("unnamed_0", "flow_id", "simillarhttp", "source_ip", "timestamp_1"):
        assert gone not in df.columns
    assert set(cic.EXCLUDED_COLUMNS) == {"Unnamed: 0", "Flow ID", "SimillarHTTP"}
    for c in feats:
        assert df[c].dtype == np.float64
    assert ctx.display_names["average_packet_size"] == "Average Packet Size"
    assert ctx.display_names["flow_iat_min"] == "Flow IAT Min"
    assert ctx.display_names["src"] == "Source IP"
    assert ctx.display_names["flow_bytes_s"] == "Flow Bytes/s"
    assert set(ctx.display_names) == set(df.columns)


def test_cic_infinity_kept(samples):
    total = 0
    for path in cic_files(samples):
        df, _ = read("cicflowmeter", path)
        rows = csv_rows(path)
        header = [h.strip() for h in next(csv.reader(open(path)))]
        for name, canonical in (("Flow Bytes/s", "flow_bytes_s"), ("Flow Packets/s", "flow_packets_s")):
            i = header.index(name)
            n_inf = sum(r[i] == "Infinity" for r in rows)
            assert int(np.isposinf(df[canonical]).sum()) == n_inf, (path.name, name)
            total += n_inf
    assert total > 0


def test_cic_timestamps(samples):
    path = samples / "cicddos2019" / "DrDoS_NTP.csv"
    df, _ = read("cicflowmeter", path)
    assert df["timestamp"].iloc[0] == pd.Timestamp("2018-12-01 09:17:11.183810", tz="UTC")
    local, _ = read("cicflowmeter", path, tz="America/Moncton")  # UNB, Atlantic time: UTC-4 in December
    assert (local["timestamp"] - df["timestamp"] == pd.Timedelta(hours=4)).all()


def test_cic_batches_and_compression(samples, tmp_path):
    path = samples / "cicddos2019" / "Syn.csv"
    whole, _ = read("cicflowmeter", path)
    small, _ = read("cicflowmeter", path, batch_rows=50)
    pd.testing.assert_frame_equal(whole, small)
    gz = tmp_path / "Syn.csv.data"  # compression is detected by content, not by name
    gz.write_bytes(gzip.compress(path.read_bytes()))
    zipped, _ = read("cicflowmeter", gz)
    pd.testing.assert_frame_equal(whole, zipped)
    crlf = tmp_path / "Syn_crlf.csv"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    windows, _ = read("cicflowmeter", crlf)
    pd.testing.assert_frame_equal(whole, windows)


def test_cic_other_cicflowmeter_spelling(samples, tmp_path):
    """CICFlowMeter-V3/V4 (CSE-CIC-IDS2018) writes "Src IP", "Dst Port", ... and day-first 12-hour times."""
    src = samples / "cicddos2019" / "Portmap.csv"
    rows = csv_rows(src)
    header = next(csv.reader(open(src)))
    rename = {" Source IP": "Src IP", " Source Port": "Src Port", " Destination IP": "Dst IP",
              " Destination Port": "Dst Port", " Timestamp": "Timestamp"}
    t_col = header.index(" Timestamp")
    for r in rows:
        r[t_col] = pd.Timestamp(r[t_col]).strftime("%d/%m/%Y %I:%M:%S %p")
    path = tmp_path / "ids2018_style.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([rename.get(h, h) for h in header])
        w.writerows(rows)
    df, ctx = read("cicflowmeter", path)
    clean, _ = read("cicflowmeter", src)
    assert len(df) == len(clean) and not ctx.quarantined
    assert (df["timestamp"] == clean["timestamp"].dt.floor("s")).all()
    assert (df["src_port"] == clean["src_port"]).all() and ctx.display_names["src"] == "Src IP"


def _corrupt(lines: list[str], lineno: int, field: int, value: str) -> None:
    fields = lines[lineno - 1].split(",")
    fields[field] = value
    lines[lineno - 1] = ",".join(fields)


def test_cic_corrupted_copy_quarantines_exactly_the_bad_lines(samples, tmp_path):
    src = samples / "cicddos2019" / "DrDoS_NTP.csv"
    lines = src.read_text().split("\n")
    header = [h.strip() for h in lines[0].split(",")]
    _corrupt(lines, 5, header.index("Flow Duration"), "abc")  # a text in a numeric field
    lines[9] = lines[9][: len(lines[9]) // 2]  # a truncated line
    _corrupt(lines, 20, header.index("Source Port"), "http")  # a text where a port belongs
    _corrupt(lines, 30, header.index("Timestamp"), "yesterday")
    _corrupt(lines, 40, header.index("Flow Bytes/s"), "NaN")  # missing value: kept, not malformed
    lines[50] = lines[50] + ",extra"  # one field too many
    lines.insert(60, "")  # blank lines are not records
    bad = tmp_path / "DrDoS_NTP_corrupted.csv"
    bad.write_text("\n".join(lines))

    df, ctx = read("cicflowmeter", bad)
    got = {q.record: q for q in ctx.quarantined}
    assert sorted(got) == [5, 10, 20, 30, 51]
    assert got[5].field == "Flow Duration" and "'abc'" in got[5].reason
    assert got[10].field is None and "expected 88 fields" in got[10].reason
    assert got[20].field == "Source Port" and "port" in got[20].reason
    assert got[30].field == "Timestamp" and "timestamp" in got[30].reason
    assert "expected 88 fields, found 89" in got[51].reason
    assert got[5].raw == lines[4]
    # nothing else is lost: every other row is there, identical to the clean read
    clean, _ = read("cicflowmeter", src)
    keep = [i for i in range(len(clean)) if i + 2 not in got]
    assert ctx.input_records == 367 and len(df) == 362
    expected = clean.iloc[keep].reset_index(drop=True)
    assert np.isnan(df["flow_bytes_s"].iloc[keep.index(40 - 2)])  # "NaN" is kept as NaN
    cols = [c for c in df.columns if c != "flow_bytes_s"]
    pd.testing.assert_frame_equal(df[cols], expected[cols])


def test_cic_quoted_field_with_comma(samples, tmp_path):
    lines = (samples / "cicddos2019" / "DrDoS_NTP.csv").read_text().split("\n")
    header = [h.strip() for h in lines[0].split(",")]
    _corrupt(lines, 2, header.index("SimillarHTTP"), '"a,b"')
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join(lines))
    df, ctx = read("cicflowmeter", path)
    assert not ctx.quarantined and len(df) == 367


def test_cic_missing_key_column(tmp_path):
    path = tmp_path / "nokey.csv"
    path.write_text("Flow Duration,Label\n1,BENIGN\n")
    with pytest.raises(IngestError, match=r"nokey\.csv.*Source IP|nokey\.csv.*src"):
        read("cicflowmeter", path)


garbage_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=120)
garbage_csv = st.lists(
    st.one_of(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n,"), max_size=12),
              st.sampled_from(["Infinity", "NaN", "", "-1", "1e9", '"', "inf", "2018-12-01 09:17:11"])),
    min_size=86, max_size=90,
).map(",".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cic_garbage_lines_never_crash(samples, tmp_path, data):
    lines = (samples / "cicddos2019" / "DrDoS_NTP.csv").read_text().split("\n")[:61]  # header + 60 rows
    header, body = lines[:1], lines[1:]
    inserts = data.draw(st.lists(st.tuples(st.integers(0, 60), st.one_of(garbage_text, garbage_csv)), max_size=8))
    tagged = [(line, False) for line in body]
    for pos, text in sorted(inserts, key=lambda t: -t[0]):
        tagged.insert(pos, (text, True))
    path = tmp_path / "garbage.csv"
    path.write_text("\n".join(header + [t for t, _ in tagged]), encoding="utf-8")
    df, ctx = read("cicflowmeter", path, batch_rows=data.draw(st.sampled_from([16, 1000])))
    inserted = {i + 2 for i, (_, g) in enumerate(tagged) if g}
    assert {q.record for q in ctx.quarantined} <= inserted
    assert len(df) >= 60


# ---------------------------------------------------------------------------------------------------
# nfdump


def nfdump_files(samples: Path) -> list[Path]:
    return sorted((samples / "nfdump").iterdir())


def independent_nfdump_count(path: Path) -> int:
    lines = path.read_text().split("\n")
    if path.suffix == ".csv":
        end = lines.index("Summary")
        return sum(1 for line in lines[1:end] if line.strip())
    return sum(1 for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:", line))


def test_every_nfdump_file_ingests(samples):
    files = nfdump_files(samples)
    assert len(files) == 5
    for path in files:
        df, ctx = read("nfdump", path)
        n = independent_nfdump_count(path)
        assert ctx.input_records == n == len(df) and not ctx.quarantined, path.name
        assert list(df.columns[:6]) == KEYS
        feats = ["last_seen", "duration", "packets", "bytes", "bps", "pps", "bpp"]
        assert list(df.columns[6:13]) == feats
        assert ("flows" in df.columns) == (path.suffix == ".txt")
        assert (df["protocol"] == 6).all()
        assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
        # totals agree with the summary nfdump printed
        text = path.read_text()
        if path.suffix == ".csv":
            flows, nbytes, packets = map(int, text.split("Summary\n")[1].split("\n")[1].split(",")[:3])
        else:
            m = re.search(r"total flows: (\d+), total bytes: (\d+), total packets: (\d+)", text)
            flows, nbytes, packets = map(int, m.groups())
        assert (flows, nbytes, packets) == (len(df), df["bytes"].sum(), df["packets"].sum())


def test_nfdump_display_names(samples):
    _, ctx = read("nfdump", samples / "nfdump" / "nfdump_extended_cicddos2019_webddos.txt")
    assert ctx.display_names["timestamp"] == "Date first seen"
    assert {ctx.display_names[k] for k in ("packets", "bytes", "bps", "pps", "bpp", "flows")} == {
        "Packets", "Bytes", "bps", "pps", "Bpp", "Flows"}
    _, ctx = read("nfdump", samples / "nfdump" / "nfdump_csv_cicddos2019_webddos.csv")
    assert ctx.display_names["packets"] == "ipkt" and ctx.display_names["timestamp"] == "ts"


@pytest.mark.parametrize("capture", ["synflood", "webddos"])
def test_nfdump_csv_and_extended_agree(samples, capture):
    c, _ = read("nfdump", samples / "nfdump" / f"nfdump_csv_cicddos2019_{capture}.csv")
    e, _ = read("nfdump", samples / "nfdump" / f"nfdump_extended_cicddos2019_{capture}.txt")
    assert len(c) == len(e)
    for k in ("src", "dst", "src_port", "dst_port", "protocol", "packets", "bytes", "duration"):
        assert (c[k].to_numpy() == e[k].to_numpy()).all(), k
    # the csv prints whole seconds, the text milliseconds
    assert (c["timestamp"] == e["timestamp"].dt.floor("s")).all()
    assert (np.abs(c["last_seen"] - e["last_seen"]) < 1).all()
    # rates computed for the csv as nfdump computes them match those the text printed ...
    assert (c["pps"] == e["pps"]).all() and (c["bpp"] == e["bpp"]).all()
    small = c["bps"] < 1e6
    assert (c["bps"][small] == e["bps"][small]).all()
    # ... up to the one decimal nfdump prints in "10.3 M"
    assert (np.abs(c["bps"][~small] - e["bps"][~small]) <= 0.05e6 + 1e-6).all()
    assert ((c["duration"] == 0) <= (c["bps"] == 0)).all()


def test_nfdump_long_computes_rates_like_extended(samples):
    long_, _ = read("nfdump", samples / "nfdump" / "nfdump_long_cicddos2019_synflood.txt")
    ext, _ = read("nfdump", samples / "nfdump" / "nfdump_extended_cicddos2019_synflood.txt")
    m = long_.merge(ext, on=["timestamp", "src", "dst", "src_port", "dst_port"], suffixes=("_l", "_e"))
    assert len(m) == len(long_) == 100
    for k in ("packets", "bytes", "bps", "pps", "bpp", "flows"):
        assert (m[f"{k}_l"] == m[f"{k}_e"]).all(), k


def test_nfdump_scaled_value_in_file(samples):
    path = samples / "nfdump" / "nfdump_extended_cicddos2019_webddos.txt"
    line = next(x for x in path.read_text().split("\n") if " 1.8 M " in x)
    assert "172.16.0.5:53363 ->" in line
    df, _ = read("nfdump", path)
    row = df[(df["src_port"] == 53363) & (df["src"] == "172.16.0.5")].iloc[0]
    assert row["bps"] == pytest.approx(1.8e6) and row["pps"] == 4000 and row["duration"] == pytest.approx(0.001)


def test_parse_scaled_examples():
    assert nfd.parse_scaled("1.4 M") == pytest.approx(1.4e6)
    assert nfd.parse_scaled("  80") == 80
    assert nfd.parse_scaled("3 k") == 3000
    assert nfd.parse_scaled("2.5 G") == pytest.approx(2.5e9)
    assert nfd.parse_scaled("1.0 T") == pytest.approx(1e12)
    for junk in ("", "M", "1.4 X", "abc", "1 .4 M", "--1"):
        with pytest.raises(ValueError):
            nfd.parse_scaled(junk)
    values, bad = nfd.scaled_numbers(pd.Series(["1.4M", "1.4 M", "12", "", "x", " 7.0 G "]))
    assert values[:3].tolist() == pytest.approx([1.4e6, 1.4e6, 12])
    assert np.isnan(values[3]) and not bad[3] and bad[4]
    assert values[5] == pytest.approx(7e9)


def nfdump_format(n: int) -> str:
    """nfdump's format_number (fixed width, >= 1.6)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if n >= scale:
            return f"{n / scale:5.1f} {unit}"
    return f"{n:4.0f}"


@given(st.integers(min_value=0, max_value=10**15))
def test_parse_scaled_round_trips_nfdump_format(n):
    text = nfdump_format(n)
    got = nfd.parse_scaled(text)
    unit = 1.0 if n < 1e6 else (1e6 if n < 1e9 else (1e9 if n < 1e12 else 1e12))
    assert abs(got - n) <= 0.05 * unit + 1e-9 * n
    if n < 1e6:
        assert got == n


@given(st.decimals(min_value=0, max_value=999, places=1, allow_nan=False), st.sampled_from(sorted(nfd.UNIT_SCALE)))
def test_parse_scaled_round_trips_units(x, unit):
    text = f"{x} {unit}".strip()
    assert nfd.parse_scaled(text) == pytest.approx(float(x) * nfd.UNIT_SCALE[unit])


@given(st.lists(st.one_of(st.text(max_size=10), st.integers(0, 10**12).map(nfdump_format)), max_size=20))
def test_scaled_numbers_matches_scalar_parser(texts):
    values, bad = nfd.scaled_numbers(pd.Series(texts, dtype=object))
    for text, v, b in zip(texts, values, bad):
        try:
            expected = nfd.parse_scaled(text)
        except ValueError:
            assert b or (np.isnan(v) and text.strip().lower() in {s.lower() for s in tab.NA_STRINGS})
        else:
            assert not b and v == pytest.approx(expected)


def test_durations():
    values, bad = nfd.durations(pd.Series(["00:00:04.518", "1d02:03:04.500", "12.5", "01:00:00.000", "4:x", "-1"]))
    assert values[:4].tolist() == pytest.approx([4.518, 93784.5, 12.5, 3600.0])
    assert bad.tolist() == [False, False, False, False, True, True]


EXT_HEADER = ("Date first seen             Duration     Proto      Src IP Addr:Port          Dst IP Addr:Port     "
              "Flags Tos  Packets    Bytes      pps      bps    Bpp Flows")


def test_nfdump_icmp_ipv6_and_days(tmp_path):
    path = tmp_path / "edge.txt"
    path.write_text("\n".join([
        EXT_HEADER,
        "2018-11-03 10:30:31.435     00:00:00.000 ICMP      192.168.50.4:0     ->       172.16.0.5:8.0   ........   0        2       80        0        0     40     1",
        "2018-11-03 10:30:31.435     00:00:01.000 TCP     2001:db8::1.443   ->  2001:db8::2.51000 ...A.R..   0        2     1.4 M        2     11.2 M   700000     1",
        "2018-11-03 10:30:31.435     00:00:00.500 ICMP6   fe80::1.0   ->  fe80::2.128.0 ........   0        2       80        4     1280     40     1",
        "2018-11-03 10:30:31.435  1d 00:00:00.000 UDP       192.168.50.4:53    ->       172.16.0.5:1024  ........   0        2       80        0        0     40     1",
        "2018-11-03 10:30:31.435     00:00:00.000 TCP       192.168.50.4   ->       172.16.0.5:80  ........   0        2       80        0        0     40     1",
        "Summary: total flows: 5, total bytes: 1400320, total packets: 10, avg bps: 1, avg pps: 1, avg bpp: 1",
    ]))
    df, ctx = read("nfdump", path)
    assert ctx.input_records == 5 and len(df) == 4
    assert [q.record for q in ctx.quarantined] == [6] and ctx.quarantined[0].field == "Src IP Addr:Port"
    assert df["protocol"].tolist() == [1, 6, 58, 17]
    assert df["dst_port"].tolist() == [8 * 256, 51000, 128 * 256, 1024]
    assert df["src"].tolist()[1:3] == ["2001:db8::1", "fe80::1"]
    assert df["dst"].tolist()[1:3] == ["2001:db8::2", "fe80::2"]
    assert df["bytes"].iloc[1] == pytest.approx(1.4e6) and df["bps"].iloc[1] == pytest.approx(11.2e6)
    assert df["duration"].iloc[3] == 86400


def test_nfdump_corrupted_values(samples, tmp_path):
    lines = (samples / "nfdump" / "nfdump_extended_cicddos2019_webddos.txt").read_text().split("\n")
    lines[3] = lines[3].replace(" TCP ", " XYZ ")
    lines[4] = re.sub(r"(\s)(\d+)(\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+)$", r"\1abc\3", lines[4])  # Packets
    lines[5] = "2018-12-01 12:04:50.065     00:00:05.002 TCP"
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines))
    df, ctx = read("nfdump", path)
    got = {q.record: q for q in ctx.quarantined}
    assert sorted(got) == [4, 5, 6]
    assert got[4].field == "Proto" and got[5].field == "Packets" and got[6].field is None
    assert len(df) == 296 - 3


def test_nfdump_headerless_and_unknown(samples, tmp_path):
    lines = (samples / "nfdump" / "nfdump_extended_cicddos2019_synflood.txt").read_text().split("\n")
    path = tmp_path / "quiet.txt"
    path.write_text("\n".join(lines[1:301]))  # as printed with -q
    df, ctx = read("nfdump", path)
    assert len(df) == 300 and ctx.input_records == 300
    csv_lines = (samples / "nfdump" / "nfdump_csv_cicddos2019_synflood.csv").read_text().split("\n")
    quiet_csv = tmp_path / "quiet.csv"
    quiet_csv.write_text("\n".join(csv_lines[1:301]))  # no header, no summary
    qdf, _ = read("nfdump", quiet_csv)
    full, _ = read("nfdump", samples / "nfdump" / "nfdump_csv_cicddos2019_synflood.csv")
    pd.testing.assert_frame_equal(qdf, full)
    other = tmp_path / "other.txt"
    other.write_text("hello world\n")
    with pytest.raises(IngestError, match="other.txt"):
        read("nfdump", other)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_nfdump_garbage_lines_never_crash(samples, tmp_path, data):
    lines = (samples / "nfdump" / "nfdump_extended_cicddos2019_webddos.txt").read_text().split("\n")
    header, body = lines[:1], lines[1:]
    inserts = data.draw(st.lists(st.tuples(st.integers(0, len(body)), garbage_text), max_size=8))
    tagged = [(line, False) for line in body]
    for pos, text in sorted(inserts, key=lambda t: -t[0]):
        assume(not nfd.TRAILER.match(text))
        tagged.insert(pos, (text, True))
    path = tmp_path / "garbage.txt"
    path.write_text("\n".join(header + [t for t, _ in tagged]), encoding="utf-8")
    df, ctx = read("nfdump", path, batch_rows=data.draw(st.sampled_from([128, 1000])))
    inserted = {i + 2 for i, (_, g) in enumerate(tagged) if g}
    assert {q.record for q in ctx.quarantined} <= inserted
    assert len(df) >= 296


# ---------------------------------------------------------------------------------------------------
# tabular csv / parquet


@pytest.fixture(scope="module")
def atlas_latency(samples) -> pd.DataFrame:
    """RTTs of the real RIPE Atlas ping results, one row per reply, canonical column names."""
    rows = []
    for line in (samples / "ripe_atlas" / "ripe_atlas_tools_tests_ping_results.jsonl").read_text().splitlines():
        r = json.loads(line)
        for reply in r["result"]:
            if "rtt" in reply:
                rows.append({"timestamp": r["timestamp"], "src": r["from"], "dst": r["dst_addr"], "rtt_ms": reply["rtt"]})
    assert len(rows) > 30
    return pd.DataFrame(rows)


def test_tabular_canonical_latency_csv(atlas_latency, tmp_path):
    path = tmp_path / "atlas_rtts.csv"
    atlas_latency.to_csv(path, index=False)
    df, ctx = read("csv", path)
    assert tab.tabular_kind(path) == "latency"
    assert ctx.input_records == len(atlas_latency) == len(df)
    assert list(df.columns) == ["timestamp", "src", "dst", "rtt_ms", "source", "measurement", "hop_ttl"]
    assert df["rtt_ms"].tolist() == atlas_latency["rtt_ms"].tolist()
    assert (df["timestamp"] == pd.to_datetime(atlas_latency["timestamp"], unit="s", utc=True)).all()
    assert set(df["source"]) == {"csv"} and set(df["measurement"]) == {"atlas_rtts"}
    assert df["hop_ttl"].isna().all()


def test_tabular_mapped_latency_csv_with_yaml(atlas_latency, tmp_path):
    other = atlas_latency.rename(columns={"timestamp": "when", "src": "probe", "dst": "target", "rtt_ms": "RTT"})
    other["when"] = pd.to_datetime(other["when"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    other["status"] = "ok"
    path = tmp_path / "renamed.csv"
    other.to_csv(path, index=False)
    cmap = tmp_path / "map.yaml"
    cmap.write_text(yaml.safe_dump({"column_map": {"timestamp": "when", "src": "probe", "dst": "target",
                                                   "rtt_ms": "RTT", "label": "status"}}))
    df, ctx = read("csv", path, column_map_path=str(cmap))
    assert len(df) == len(other)
    assert df["rtt_ms"].tolist() == atlas_latency["rtt_ms"].tolist()
    assert (df["timestamp"] == pd.to_datetime(atlas_latency["timestamp"], unit="s", utc=True)).all()
    assert set(df["label"]) == {"ok"} and df["src"].tolist() == atlas_latency["src"].tolist()
    # the same map given inline
    df2, _ = read("csv", path, column_map={"timestamp": "when", "src": "probe", "dst": "target", "rtt_ms": "RTT"})
    assert df2["rtt_ms"].tolist() == df["rtt_ms"].tolist()


@pytest.fixture(scope="module")
def nfdump_flows(samples) -> pd.DataFrame:
    return pd.read_csv(samples / "nfdump" / "nfdump_csv_cicddos2019_webddos.csv", skipfooter=3, engine="python")


def test_tabular_flows_csv_with_map(nfdump_flows, tmp_path):
    t = nfdump_flows
    flows = pd.DataFrame({"start": t["ts"], "source": t["sa"], "destination": t["da"], "sport": t["sp"],
                          "dport": t["dp"], "proto": t["pr"], "Packet Count": t["ipkt"], "Octets": t["ibyt"],
                          "tcp flags": t["flg"], "Attack": np.where(t["dp"] == 80, "web-ddos", "benign")})
    path = tmp_path / "flows.csv"
    flows.to_csv(path, index=False)
    cmap = {"timestamp": "start", "src": "source", "dst": "destination", "src_port": "sport", "dst_port": "dport",
            "protocol": "proto", "label": "Attack"}
    assert tab.tabular_kind(path, column_map=cmap) == "flows"
    df, ctx = read("csv", path, column_map=cmap)
    assert list(df.columns) == KEYS + ["packet_count", "octets", "label"]  # the text flags are no feature
    assert (df["protocol"] == 6).all()  # "TCP" -> 6
    assert df["octets"].sum() == t["ibyt"].sum() and len(df) == len(t)
    assert ctx.display_names["packet_count"] == "Packet Count" and ctx.display_names["src"] == "source"


def test_tabular_parquet(atlas_latency, nfdump_flows, tmp_path):
    lat = atlas_latency.assign(timestamp=pd.to_datetime(atlas_latency["timestamp"], unit="s"))  # naive
    path = tmp_path / "lat.parquet"
    pq.write_table(pa.Table.from_pandas(lat, preserve_index=False), path, row_group_size=10)
    df, ctx = read("parquet", path, batch_rows=16)
    assert len(df) == len(lat) and ctx.input_records == len(lat)
    assert df["rtt_ms"].tolist() == lat["rtt_ms"].tolist()
    assert (df["timestamp"] == lat["timestamp"].dt.tz_localize("UTC")).all()
    assert tab.tabular_kind(path) == "latency"

    t = nfdump_flows
    ts = pd.to_datetime(t["ts"])
    flows = pa.table({"timestamp": pa.array(ts.to_numpy(), type=pa.timestamp("us", tz="UTC")), "src": t["sa"],
                      "dst": t["da"], "src_port": t["sp"], "dst_port": t["dp"], "protocol": [6] * len(t),
                      "packets": t["ipkt"], "bytes": t["ibyt"].astype(float)})
    fpath = tmp_path / "flows.parquet"
    pq.write_table(flows, fpath)
    fdf, _ = read("parquet", fpath, batch_rows=100)
    assert list(fdf.columns) == KEYS + ["packets", "bytes"] and len(fdf) == len(flows)
    assert (fdf["timestamp"] == ts.dt.tz_localize("UTC")).all()


def test_tabular_quarantine_and_nan(tmp_path):
    path = tmp_path / "lat.csv"
    path.write_text("timestamp,src,dst,rtt_ms\n"
                    "2018-12-01T09:17:11Z,a,b,1.5\n"
                    "2018-12-01T09:17:12Z,a,b,fast\n"
                    "2018-12-01T09:17:13Z,a,b,\n"
                    "2018-12-01T09:17:14Z,a,b,inf\n"
                    "never,a,b,2\n"
                    "2018-12-01T09:17:15Z,a\n")
    df, ctx = read("csv", path)
    got = {q.record: q.field for q in ctx.quarantined}
    assert got == {3: "rtt_ms", 6: "timestamp", 7: None}
    assert len(df) == 3 and np.isnan(df["rtt_ms"].iloc[1]) and np.isinf(df["rtt_ms"].iloc[2])


def test_tabular_optional_latency_columns(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,src,dst,rtt_ms,hop_ttl,measurement,source\n"
                    "1543655831,a,b,1.5,3,m1,scamper-export\n"
                    "1543655832,a,b,2.5,,m1,scamper-export\n"
                    "1543655833,a,b,2.5,x,m1,scamper-export\n")
    df, ctx = read("csv", path)
    assert df["hop_ttl"].tolist()[0] == 3 and pd.isna(df["hop_ttl"].iloc[1])
    assert set(df["measurement"]) == {"m1"} and set(df["source"]) == {"scamper-export"}
    assert [(q.record, q.field) for q in ctx.quarantined] == [(4, "hop_ttl")]


def test_tabular_missing_column_message(tmp_path):
    path = tmp_path / "incomplete.csv"
    path.write_text("timestamp,src,rtt_ms\n1,a,2\n")
    with pytest.raises(IngestError) as err:
        read("csv", path)
    msg = str(err.value)
    assert "incomplete.csv" in msg and "dst" in msg and "['timestamp', 'src', 'rtt_ms']" in msg
    with pytest.raises(IngestError, match=r"incomplete\.csv.*'RTT'"):
        read("csv", path, column_map={"rtt_ms": "RTT"})
    with pytest.raises(IngestError, match=r"incomplete\.csv.*src_port"):
        read("csv", path, kind="flows", column_map={"dst": "src"})
    ppath = tmp_path / "incomplete.parquet"
    pq.write_table(pa.table({"timestamp": [1], "src": ["a"], "rtt_ms": [2.0]}), ppath)
    with pytest.raises(IngestError, match=r"incomplete\.parquet.*dst"):
        read("parquet", ppath)
