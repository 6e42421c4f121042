"""The fast ingest path (msgspec / pyarrow CSV readers, out-of-core de-duplication and sort) against the
reference path it replaces: identical tables, reports and quarantine on every sample file and on
inputs made to hit every fallback (malformed lines and values, quotes, CRLF, blank lines, block cuts)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamenco_core.ingest import cicflowmeter_fast, merge
from flamenco_core.ingest.clean import dedupe_and_sort
from flamenco_core.ingest.pipeline import ingest

# The checkout's shared samples, else the copy under tests/data (a bare clone has no ../shared).
from conftest import SAMPLES


def _run(paths, fmt, out: Path, engine: str, **kw):
    report = ingest(paths, fmt, out, options={"engine": engine, **kw.pop("options", {})}, **kw)
    d = report.to_dict()
    for k in ("data_path", "quarantine_path"):
        d.pop(k)
    return pq.read_table(out / "data.parquet"), (out / "quarantine.jsonl").read_text(), d


def _assert_same(paths, fmt, tmp_path, **kw):
    fast = _run(paths, fmt, tmp_path / "fast", "fast", **dict(kw))
    ref = _run(paths, fmt, tmp_path / "ref", "reference", **dict(kw))
    assert fast[0].schema.equals(ref[0].schema, check_metadata=True)
    assert fast[0].equals(ref[0]), "tables differ"
    assert fast[1] == ref[1], "quarantine differs"
    assert fast[2] == ref[2], "report differs"
    return fast


def _sample_files(folder):
    files = sorted((SAMPLES / folder).glob("*"))
    if not files:
        pytest.skip(f"no sample files in {SAMPLES / folder}")
    return files


@pytest.mark.parametrize("path", _sample_files("ripe_atlas") if (SAMPLES / "ripe_atlas").is_dir() else [],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("all_hops", [False, True])
def test_atlas_fast_equals_reference_on_each_sample(path, all_hops, tmp_path):
    _assert_same([path], "atlas", tmp_path, options={"all_hops": all_hops})


@pytest.mark.parametrize("path", _sample_files("cicddos2019") if (SAMPLES / "cicddos2019").is_dir() else [],
                         ids=lambda p: p.name)
def test_cicflowmeter_fast_equals_reference_on_each_sample(path, tmp_path):
    _assert_same([path], "cicflowmeter", tmp_path)


@pytest.mark.parametrize("path", _sample_files("scamper_json") if (SAMPLES / "scamper_json").is_dir() else [],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("all_hops", [False, True])
def test_scamper_fast_equals_reference_on_each_sample(path, all_hops, tmp_path):
    _assert_same([path], "scamper", tmp_path, options={"all_hops": all_hops})


def test_all_samples_together_including_cross_file_duplicates(tmp_path):
    atlas = _sample_files("ripe_atlas")
    _assert_same(atlas + atlas[:1], "atlas", tmp_path / "a")  # the repeated file is all duplicates
    cic = _sample_files("cicddos2019")
    _assert_same(cic + cic[:1], "cicflowmeter", tmp_path / "c", batch_rows=100)


def test_spilled_parts_and_many_buckets_give_the_same_tables(tmp_path, monkeypatch):
    """Past one bucket of rows the driver spills to scratch parts and sorts bucket by bucket."""
    from flamenco_core.ingest import pipeline

    monkeypatch.setattr(pipeline, "HOLD_BYTES", 20_000)  # spill after a few batches
    monkeypatch.setattr(merge, "DEFAULT_BUCKET_BYTES", 30_000)  # and sort in many buckets
    monkeypatch.setattr(merge, "SAMPLE_CAP", 8)  # bucket bounds from a sample thinned many times over
    buckets = []
    real = merge._partition
    monkeypatch.setattr(merge, "_partition", lambda *a: buckets.append(real(*a)) or buckets[-1])
    atlas = _sample_files("ripe_atlas")
    _assert_same(atlas + atlas[:2], "atlas", tmp_path / "a", batch_rows=7, options={"all_hops": True})
    cic = _sample_files("cicddos2019")
    _assert_same(cic[:4] + cic[:1], "cicflowmeter", tmp_path / "c", batch_rows=50)
    assert len(buckets) == 4 and all(len(b) > 3 for b in buckets)  # both engines, both formats: bucketed


def test_atlas_odd_lines_take_the_reference_rules(tmp_path):
    good = {"type": "ping", "timestamp": 1600000000, "msm_id": 7, "from": "10.0.0.1", "dst_addr": "10.0.0.2",
            "result": [{"rtt": 1.5}, {"rtt": 2.5}]}
    lines = [
        json.dumps(good),
        json.dumps({**good, "result": [{"rtt": 1}, {"x": "*"}, {"error": "e"}, {"late": 1, "rtt": 3.0}]}),
        json.dumps({**good, "timestamp": 1600000000.25, "from": " 10.0.0.9 "}),
        json.dumps({**good, "result": [{"rtt": -1.0}, {"rtt": "2.0"}, {}]}),
        '{"type": "ping", "rtt": NaN}',
        "[1, 2]",
        "",
        "   ",
        "not json",
        json.dumps({**good, "msm_id": 2**70}),
        json.dumps({**good, "from": ""}),
        json.dumps(good),  # a duplicate of the first: dropped as duplicate
        '{"type": "ping", "timestamp": 1, "msm_id": 1, "from": "a", "dst_addr": "b", "result": [{"rtt": 1e400}]}',
        json.dumps({**good, "type": "dns"}),
    ]
    plain = tmp_path / "a.jsonl"
    plain.write_text("\n".join(lines))  # no final newline: the last line still counts
    packed = tmp_path / "a.jsonl.gz"
    packed.write_bytes(gzip.compress(("\r\n".join(lines) + "\r\n").encode()))
    for p in (plain, packed):
        fast = _assert_same([p], "atlas", tmp_path / ("out_" + p.name), batch_rows=2)
        assert fast[2]["quarantined"] > 3 and fast[2]["dropped"]["duplicate"] >= 2


def _cic_text(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    head = ("Unnamed: 0,Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp,"
            " Flow Duration, Flow Bytes/s, Total Fwd Packets, Label")
    lines = [head]
    for i in range(n):
        ts = f"2018-12-01 09:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}"
        lines.append(f"{i},x,172.16.0.{i % 7},{1000 + i % 50},192.168.50.1,80,{6 if i % 3 else 17},{ts},"
                     f"{rng.integers(0, 10**6)},{rng.random() * 1e4:.6f},{rng.integers(1, 9)},BENIGN")
    return lines


def test_cicflowmeter_fallbacks_and_block_cuts(tmp_path, monkeypatch):
    lines = _cic_text(400, 0)
    lines[10] = lines[10].rsplit(",", 3)[0]  # too few fields
    lines[50] = lines[50].replace(",80,", ",eighty,")  # text where a port belongs
    lines[90] = lines[90].replace("BENIGN", '"BEN,IGN"')  # a quoted field: csv-module rules
    lines[130] = ""  # blank lines are no records
    lines[131] = "   "
    lines[170] = lines[170].replace(",80,", ",70000,")  # port out of range
    lines[210] = lines[210].replace(",BENIGN", ",Infinity,BENIGN").replace(",BENIGN", "")  # shifted fields
    lines[250] = lines[250].replace("2018-12-01", "yesterday")  # unparsable timestamp
    lines[290] = lines[291]  # an exact duplicate row
    lines[300] = lines[300].replace(",BENIGN", ",NaN,BENIGN").rsplit(",", 3)[0] + ",NaN,1,BENIGN"
    lines[330] = lines[330].replace("192.168.50.1", "192.168.50.1\r")  # a lone CR splits a line
    path = tmp_path / "flows.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    # small byte blocks and reference blocks: cuts fall inside and between reference blocks
    monkeypatch.setattr(cicflowmeter_fast, "FAST_BLOCK_BYTES", 3000)
    fast = _assert_same([path], "cicflowmeter", tmp_path / "small", batch_rows=64)
    assert fast[2]["quarantined"] >= 5 and fast[2]["dropped"].get("duplicate") == 1
    # gzip: the decompressor hands over short reads, so blocks are filled by several reads
    packed = tmp_path / "flows.csv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    _assert_same([packed], "cicflowmeter", tmp_path / "small_gz", batch_rows=64)
    monkeypatch.setattr(cicflowmeter_fast, "FAST_BLOCK_BYTES", 1 << 20)
    _assert_same([path], "cicflowmeter", tmp_path / "big")


@pytest.mark.parametrize("options", [{}, {"tz": "Europe/Berlin"}, {"timestamp_format": "%Y-%m-%d %H:%M:%S.%f"}])
def test_cicflowmeter_fast_timestamps_and_texts_equal_reference(tmp_path, monkeypatch, options):
    """The fast path reads plain ISO timestamps and clean texts with Arrow; every other value (another
    time format, a zone, a date pandas cannot hold, spaces Python strips) the reference's way."""
    lines = _cic_text(300, 1)
    odd = {
        20: ("2018-12-01 09:00:20.000020", "2018-12-01T09:00:20"),  # ISO with a T, no fraction
        40: ("2018-12-01 09:00:40.000040", "2018-12-01 09:00:40.1234567"),  # 7 fraction digits
        60: ("2018-12-01 09:01:00.000060", "1/12/2018 09:01"),  # CIC-IDS2017's day-first format
        80: ("2018-12-01 09:01:20.000080", "0001-01-01 00:00:00"),  # outside pandas' range
        100: ("2018-12-01 09:01:40.000100", "2018-12-01 24:00:00"),  # no such hour
        120: ("2018-12-01 09:02:00.000120", "2019-02-29 00:00:00"),  # no such day
        140: ("172.16.0.0", "\u00a0172.16.0.0"),  # a no-break space Python strips
        160: ("192.168.50.1", " 192.168.50.1\t"),
        180: ("BENIGN", " BENIGN "),
        200: ("BENIGN", ""),  # an empty label is missing
    }
    for i, (old, new) in odd.items():
        lines[i + 1] = lines[i + 1].replace(old, new)
    path = tmp_path / "flows.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(cicflowmeter_fast, "FAST_BLOCK_BYTES", 4000)  # each oddity in its own block
    _assert_same([path], "cicflowmeter", tmp_path / "out", options=options, batch_rows=100)


def _arrow(frame: pd.DataFrame) -> pa.Table:
    # naive UTC into Arrow, then the UTC type: pandas deprecates handing tz-aware values over as .values
    naive = frame.assign(timestamp=frame["timestamp"].dt.tz_convert(None))
    table = pa.Table.from_pandas(naive, preserve_index=False)
    return table.set_column(0, "timestamp", table["timestamp"].cast(pa.timestamp("us", tz="UTC")))


def _parts(tmp_path, frame: pd.DataFrame, row_group: int) -> Path:
    table = _arrow(frame)
    n = table.num_rows
    table = table.append_column(merge.SEQ_COL, pa.array(np.arange(n, dtype=np.int64)))
    table = table.append_column(merge.FILE_COL, pa.array((np.arange(n) * 3 // n).astype(np.int32)))
    path = tmp_path / "parts.arrow"
    with merge.open_parts(path, table.schema) as w:
        w.write_table(table, max_chunksize=row_group)
    return path


@pytest.mark.parametrize("bucket_rows", [1, 7, 50, 10_000])
def test_out_of_core_dedupe_sort_equals_in_memory_reference(tmp_path, bucket_rows):
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(rng.integers(0, 40, n) * 1_000_000, unit="us", utc=True).astype("datetime64[us, UTC]"),
        "src": rng.choice(["a", "b"], n),
        "dst": rng.choice(["c", "d"], n),
        "rtt_ms": rng.choice([0.0, -0.0, 1.5, 2.5], n),  # -0.0 and 0.0 are one value, as in pandas
        "hop_ttl": pd.array(rng.choice([1, 2, None], n), dtype="Int16"),
    })
    parts = _parts(tmp_path, frame, row_group=37)
    out = tmp_path / "out.parquet"
    schema = _arrow(frame).schema.remove_metadata()
    dups = merge.dedupe_sort_parts(parts, out, schema, tmp_path, bucket_rows=bucket_rows)
    want, n_dup, mask = dedupe_and_sort(frame)
    got = pq.read_table(out).to_pandas()
    pd.testing.assert_frame_equal(got, want.astype(got.dtypes.to_dict()), check_exact=True)
    file_idx = (np.arange(n) * 3 // n)[mask.to_numpy()]
    assert dict(dups) == {int(k): int(v) for k, v in zip(*np.unique(file_idx, return_counts=True))}
    assert sum(dups.values()) == n_dup > 0


@pytest.mark.parametrize("all_hops", [False, True])
def test_scamper_odd_traces_take_the_reference_rules(tmp_path, monkeypatch, all_hops):
    """The column-wise trace path against the rules on every shape it must hand back: the tables,
    reports and quarantine are identical, and the clean traces never reach the rules."""
    from flamenco_core.ingest import scamper

    def hop(ttl, addr, rtt, tx=None):
        h = {"addr": addr, "probe_ttl": ttl, "probe_id": 1, "rtt": rtt}
        return {**h, "tx": tx} if tx is not None else h

    def trace(i, hops, **kw):
        return {"type": "trace", "version": "0.1", "src": "10.0.0.1", "dst": f"8.8.8.{i % 3}",
                "start": {"sec": 1700000000 + i, "usec": 5}, "hops": hops, **kw}

    good = [trace(i, [hop(1, "62.0.0.1", 1.5), hop(2, f"8.8.8.{i % 3}", 9.25 + i)]) for i in range(40)]
    odd = [
        trace(0, [hop(1, "62.0.0.1", 1.0, {"sec": 1700000001, "usec": 7}), hop(2, "8.8.8.0", 3, {"sec": 1700000001})]),
        trace(1, [hop(1, "62.0.0.1", -1.0), hop(2, "8.8.8.1", 2.0)]),  # a negative RTT is quarantined
        trace(2, [hop(1, "62.0.0.1", 1.0, {"sec": -5, "usec": 0}), hop(2, "8.8.8.2", 2.0)]),  # a bad tx
        trace(3, [hop("x", "8.8.8.0", 2.0)]),  # a bad probe TTL (quarantined with all_hops only)
        trace(4, [hop(1, "8.8.8.1", 2.0, {"sec": 0, "usec": 0})]),  # tx 0: no usable time
        trace(5, [hop(1, "8.8.8.2", 2.0)], start={"sec": 0, "usec": 0}),  # start 0, no tx
        trace(6, []),
        {k: v for k, v in trace(7, []).items() if k != "hops"},  # nothing answered: no "hops" at all
        trace(8, [hop(1, "8.8.8.2", 2.0)], start={"sec": 2**70}),
        trace(9, [hop(1, "8.8.8.0", 1e400)]),
        trace(10, [{"addr": 5, "rtt": 1.0}, "not a hop"]),
        trace(11, [hop(1, "8.8.8.2", 2.0)], src=""),
        {"type": "ping", "src": "10.0.0.1", "dst": "8.8.8.8", "start": {"sec": 1700000000, "usec": 0}, "ping_sent": 3,
         "responses": [{"from": "8.8.8.8", "seq": 0, "rtt": 4.5, "tx": {"sec": 1700000000, "usec": 10}}]},
        {"type": "cycle-start", "list_name": "default", "id": 1, "start_time": 1700000000},
        {"type": "dealias", "src": "10.0.0.1", "dst": "8.8.8.8"},
    ]
    lines = [json.dumps(o) for o in good[:20]]
    for o in odd:
        lines += [json.dumps(o), json.dumps(good[len(lines) % 40])]
    lines += ["", "not json", "[1]", json.dumps(good[0])]  # the last one is a duplicate
    path = tmp_path / "ark.jsonl"
    path.write_text("\n".join(lines + [json.dumps(g) for g in good[20:]]))
    fast = _assert_same([path], "scamper", tmp_path / "out", batch_rows=7, options={"all_hops": all_hops})
    assert fast[2]["quarantined"] >= 5
    calls = []
    real = scamper.account_record
    monkeypatch.setattr(scamper, "account_record", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    _run([path], "scamper", tmp_path / "again", "fast", options={"all_hops": all_hops})
    clean = {json.dumps(g) for g in good}
    odd_lines = {i + 1 for i, line in enumerate(lines) if line not in clean}
    assert calls and set(calls) <= odd_lines  # the clean traces never reach the rules


@pytest.mark.parametrize("variant", ["in_order", "duplicates", "reversed"])
def test_early_parquet_write_stands_only_when_sort_and_dedupe_change_nothing(tmp_path, monkeypatch, variant):
    """The driver writes rows in time order to Parquet as they come (merge.EarlyWriter); a file whose
    rows repeat or come out of order is rewritten whole. Either way the tables equal the reference's."""
    from flamenco_core.synth import GENERATORS

    src = GENERATORS["cic"](tmp_path / "gen", scale=0.002, seed=0).data_paths[0]
    head, *lines = src.read_text().splitlines(keepends=True)
    lines = {"in_order": lines, "duplicates": lines + lines[-3:], "reversed": lines[::-1]}[variant]
    path = tmp_path / "flows.csv"
    path.write_text(head + "".join(lines))
    monkeypatch.setattr(merge.EarlyWriter, "GROUP_ROWS", 100)  # several row groups
    outcomes = []
    real = merge.EarlyWriter.finish
    monkeypatch.setattr(merge.EarlyWriter, "finish", lambda self, s: outcomes.append(real(self, s)) or outcomes[-1])
    fast = _assert_same([path], "cicflowmeter", tmp_path, batch_rows=150)
    assert outcomes[:1] == ([True] if variant == "in_order" else [])  # the fast run is the first
    rgs = pq.ParquetFile(tmp_path / "fast" / "data.parquet").metadata.num_row_groups
    assert (rgs > 1) == (variant == "in_order") and fast[0].num_rows > 300


def test_concurrent_ingests_restore_arrow_default_pool():
    import threading

    import pyarrow as pa

    from flamenco_core.ingest.pipeline import system_pool

    before = pa.default_memory_pool().backend_name
    inside, release = threading.Event(), threading.Event()

    def long_ingest():
        with system_pool():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=long_ingest)
    t.start()
    inside.wait(5)
    with system_pool():  # a second ingest ends first: the other still runs on the system pool
        pass
    assert pa.default_memory_pool().backend_name == "system"
    release.set()
    t.join()
    assert pa.default_memory_pool().backend_name == before  # the last one out restores the default


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=40), st.integers(1, 50), st.integers(1, 8))
def test_timestamp_sample_stays_bounded_and_even(sizes, cap, stride):
    """Whatever the number of rows, at most ``cap`` timestamps are held, and they stay an even sample:
    in order, and no gap between two kept rows (or before the first) wider than twice the final stride."""
    sample = merge.TimestampSample(cap=cap, stride=stride)
    start = 0
    for n in sizes:
        sample.add(np.arange(start, start + n, dtype=np.int64))
        start += n
        assert len(sample) <= cap
    values = sample.values()
    assert len(values) == len(sample) <= cap
    assert sample.stride % stride == 0 and (sample.stride // stride) & (sample.stride // stride - 1) == 0
    if sample.stride == stride:  # never thinned: exactly every stride-th row of each batch
        assert values.tolist() == [v for s, n in zip(np.cumsum([0] + sizes[:-1]), sizes) for v in range(s, s + n, stride)]
    if start:
        assert len(values) and values[0] < 2 * sample.stride
        assert np.all(np.diff(values) > 0) and np.all(np.diff(values) <= 2 * sample.stride)
        assert start - values[-1] <= 2 * sample.stride


def test_timestamp_samples_of_two_strides_merge_at_the_coarser_one():
    fine, coarse = merge.TimestampSample(cap=10**6, stride=2), merge.TimestampSample(cap=10**6, stride=8)
    fine.add(np.arange(0, 1000))
    coarse.add(np.arange(1000, 2000))
    fine.merge(coarse.values(), coarse.stride)
    assert fine.stride == 8
    assert np.array_equal(fine.values(), np.concatenate([np.arange(0, 1000, 8), np.arange(1000, 2000, 8)]))
    coarse.merge(np.arange(0, 1000, 2), 2)  # a finer sample is thinned to the coarse stride
    assert coarse.stride == 8 and len(coarse) == 250


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.5, -2.0, 1e308, float("nan"), float("inf"), -float("inf"), None]),
                          st.sampled_from([1.0, float("nan"), None]),
                          st.sampled_from(["a", None])), max_size=200))
def test_arrow_cleaning_drops_what_the_pandas_cleaning_drops(rows):
    """The Arrow cleaning (a sum per column, invalid rows cut out by slices or by a filter) keeps exactly
    the rows and counts of the pandas one; 1e308 + 1e308 overflows the sum, not the check."""
    from collections import Counter

    from flamenco_core.ingest.clean import drop_invalid, drop_invalid_arrow

    frame = pd.DataFrame({"rtt_ms": pd.array([r[0] for r in rows], dtype="float64"),
                          "x": pd.array([r[1] for r in rows], dtype="float64"),
                          "label": pd.array([r[2] for r in rows], dtype="string")})
    # NaN stays a float NaN in Arrow (None is a null): both are "nan" drops
    table = pa.table({"rtt_ms": pa.array([r[0] for r in rows], pa.float64(), from_pandas=False),
                      "x": pa.array([r[1] for r in rows], pa.float64(), from_pandas=False),
                      "label": pa.array([r[2] for r in rows], pa.string())})
    got, got_counts = drop_invalid_arrow(table)
    want, want_counts = drop_invalid(frame)
    assert Counter(got_counts) == Counter(want_counts)
    assert [(r["rtt_ms"], r["x"], r["label"]) for r in got.to_pylist()] == list(
        zip(want["rtt_ms"].tolist(), want["x"].tolist(), [None if pd.isna(v) else v for v in want["label"]]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bc", b",", b"\n", b"\r\n", b"\r", b"\n\n", b"xyz" * 7]), max_size=60),
       st.integers(1, 40), st.integers(1, 9), st.booleans())
def test_cic_line_blocks_cut_whole_lines_as_text_mode_reads_them(pieces, block_bytes, batch_rows, gz):
    """Blocks put back together are the file as Python's universal newlines read it (a last line without a
    newline gets one), every block ends a line, the line numbers follow on, and a reference block (of
    ``batch_rows`` lines) never ends inside a block; a "\\r\\n" cut by a read stays one line break."""
    import io

    data = b"".join(pieces)
    raw = gzip.compress(data) if gz else data
    fh = gzip.GzipFile(fileobj=io.BytesIO(raw)) if gz else io.BufferedReader(io.BytesIO(raw))
    blocks = list(cicflowmeter_fast._line_blocks(fh, 5, batch_rows, block_bytes))
    text = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1", newline=None).read().encode("latin-1")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    assert b"".join(bytes(b[0]) for b in blocks) == text
    no, into = 5, 0
    for buf, first, n, ends in blocks:
        assert buf.endswith(b"\n") and buf.count(b"\n") == n and first == no and n >= 1
        into += n
        assert into <= batch_rows
        # a reference block's end is always flagged; a short one only where the file ends (the caller
        # files what is left after its last block in any case)
        assert ends == (into == batch_rows) or (ends and buf is blocks[-1][0])
        if into == batch_rows:
            into = 0
        no += n


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=8))
def test_cic_blank_edge_check_flags_every_text_strip_would_change(texts):
    """The edge-byte test that decides whether a text column needs Python's ``strip``: it flags exactly the
    texts that start or end outside printable ASCII-but-space, so never misses one ``strip`` would change."""
    col = pa.chunked_array([pa.array(texts, pa.string())])
    odd = any(t and not ("!" <= t[0] <= "~" and "!" <= t[-1] <= "~") for t in texts)
    assert cicflowmeter_fast._has_blank_edge(col) == odd
    if not odd:
        assert all(t.strip() == t for t in texts)


def test_conform_attaches_metadata_without_copying_and_casts_otherwise():
    from flamenco_core.ingest.schema import conform

    t = pa.table({"a": pa.array([1.0, 2.0]), "b": pa.array(["x", "y"])})
    target = t.schema.with_metadata({b"k": b"v"})
    same = conform(t, target)
    assert same.schema.equals(target, check_metadata=True)
    assert same.column("a").chunk(0).buffers()[1].address == t.column("a").chunk(0).buffers()[1].address
    cast = conform(t, pa.schema([("a", pa.float32()), ("b", pa.string())]))
    assert cast.schema.field("a").type == pa.float32() and cast.column("a").to_pylist() == [1.0, 2.0]
