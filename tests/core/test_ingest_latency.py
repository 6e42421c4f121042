"""Latency readers (RIPE Atlas JSON, scamper JSON, warts) on the real sample files.

Expected numbers come from independent sources: a plain ``json`` scan of the input, the official
``ripe.atlas.sagan`` parser, the ``.txt`` dumps that came with the warts files, and a live ``scamper`` run.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flamenco_core.ingest.atlas  # noqa: F401 - registers "atlas"
import flamenco_core.ingest.scamper  # noqa: F401 - registers "scamper" and "warts"
from flamenco_core.ingest.base import READERS, IngestError, ReadContext
from flamenco_core.ingest.schema import LATENCY_COLUMNS, to_latency_table

HAVE_WARTS2JSON = shutil.which("sc_warts2json") is not None
IN_CI = os.environ.get("CI") == "true"


def ingest(fmt: str, path: Path, **options) -> tuple[pd.DataFrame, ReadContext]:
    """Drive a reader the way the ingest driver does and return (all rows, accounting)."""
    ctx = ReadContext(str(path), batch_rows=options.pop("batch_rows", 200_000))
    frames = list(READERS[fmt](path, ctx, **options))
    ctx.produced = sum(len(f) for f in frames)
    for f in frames:
        assert len(f) <= ctx.batch_rows
        assert list(f.columns) == LATENCY_COLUMNS
    if not frames:
        frames = [pd.DataFrame({c: pd.Series(dtype=t) for c, t in EMPTY_DTYPES.items()})]
    return pd.concat(frames, ignore_index=True), ctx


EMPTY_DTYPES = {
    "timestamp": "datetime64[us, UTC]", "src": "string", "dst": "string", "rtt_ms": "float64",
    "source": "string", "measurement": "string", "hop_ttl": "Int16",
}


def assert_balanced(ctx: ReadContext) -> None:
    assert ctx.balanced(), (ctx.input_records, ctx.produced, dict(ctx.dropped), len(ctx.quarantined))


def need_warts2json() -> None:
    if not HAVE_WARTS2JSON:
        if IN_CI:
            pytest.fail("sc_warts2json (Debian package scamper) must be installed in CI")
        pytest.skip("sc_warts2json not installed (apt-get install scamper)")


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------- Atlas


def atlas_expected(obj: dict, all_hops: bool) -> list[tuple[float, int | None]]:
    """(rtt, hop) of every row one Atlas result should give, from a plain scan of the JSON."""
    if obj.get("type", "ping") == "ping":
        return [(float(s["rtt"]), None) for s in obj.get("result", []) if "rtt" in s]
    hops = obj["result"]
    out = []
    for i, hop in enumerate(hops):
        for rep in hop.get("result", []):
            if "rtt" not in rep or "late" in rep:
                continue
            if all_hops:
                out.append((float(rep["rtt"]), hop["hop"]))
            elif i == len(hops) - 1 and rep.get("from") == obj["dst_addr"]:
                out.append((float(rep["rtt"]), None))
    return out


@pytest.mark.parametrize("all_hops", [False, True])
def test_atlas_samples_rows_match_json_scan(samples: Path, all_hops: bool) -> None:
    files = sorted((samples / "ripe_atlas").glob("*.jsonl"))
    assert len(files) == 4
    for path in files:
        df, ctx = ingest("atlas", path, all_hops=all_hops)
        assert_balanced(ctx)
        assert not ctx.quarantined, ctx.quarantined[:3]
        results = json_lines(path)
        expected = [e for obj in results for e in atlas_expected(obj, all_hops)]
        assert len(df) == len(expected), path.name
        assert df["rtt_ms"].tolist() == [rtt for rtt, _ in expected]
        assert [None if pd.isna(h) else int(h) for h in df["hop_ttl"]] == [h for _, h in expected]
        # Timeouts are counted, not lost.
        n_x = sum(
            1
            for obj in results
            for slot in (
                obj.get("result", [])
                if obj.get("type", "ping") == "ping"
                else [r for hop in obj["result"] for r in hop.get("result", [])]
            )
            if "x" in slot
        )
        assert ctx.dropped["timeout"] == n_x
        small, _ = ingest("atlas", path, all_hops=all_hops, batch_rows=4)  # ingest() checks frames <= 4 rows
        pd.testing.assert_frame_equal(small, df)
        assert (df["source"] == "atlas").all()
        assert df["timestamp"].dt.year.between(2012, 2026).all()
        to_latency_table(df)  # the frame satisfies the canonical schema


def test_atlas_legacy_fields_and_drops(samples: Path) -> None:
    df, ctx = ingest("atlas", samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl")
    # Firmware 0 and 1 carry only avg/min/max: one record each, dropped like sagan's empty packet list.
    assert ctx.dropped["no_per_reply_rtts"] == 2
    # Firmware 1 uses "addr" for the destination and "from" for the probe.
    results = json_lines(samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl")
    assert set(df["dst"]) == {r.get("dst_addr", r.get("addr")) for r in results}
    # "from" wins over src_addr when present; fw 4570 has no src_addr at all.
    assert "192.168.178.21" not in set(df["src"]) and "188.194.234.136" in set(df["src"])
    assert set(df["measurement"]) == {"1000192"}


def test_atlas_ping_matches_sagan(samples: Path, tmp_path: Path) -> None:
    from ripe.atlas.sagan import Result

    n_results = 0
    for path in sorted((samples / "ripe_atlas").glob("*ping*.jsonl")):
        for k, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            one = tmp_path / f"{path.stem}_{k}.jsonl"
            one.write_text(line + "\n")
            df, ctx = ingest("atlas", one)
            assert_balanced(ctx)
            parsed = Result.get(line, on_malformation=Result.ACTION_IGNORE, on_error=Result.ACTION_IGNORE)
            sagan_rtts = [p.rtt for p in parsed.packets if p.rtt is not None]
            # sagan rounds every RTT to 3 decimals.
            assert [round(x, 3) for x in df["rtt_ms"]] == sagan_rtts, (path.name, k)
            if len(df):
                assert (df["timestamp"] == pd.Timestamp(parsed.created)).all()
                assert (df["measurement"] == str(parsed.measurement_id)).all()
                if parsed.destination_address:
                    assert (df["dst"] == parsed.destination_address).all()
            n_results += 1
    assert n_results == 15 + 14 + 4


def test_atlas_traceroute_default_and_all_hops(samples: Path) -> None:
    path = samples / "ripe_atlas" / "pantrace_atlas_traceroute.jsonl"
    default, ctx = ingest("atlas", path)
    assert default["hop_ttl"].isna().all()
    assert (default["dst"] == "84.205.77.1").all()
    # 10 of the 14 traceroutes end in a hop-255 timeout: the destination never answered.
    assert default["rtt_ms"].tolist() == [49.192, 48.48, 48.442, 198.725, 49.026] + [
        48.575, 48.268, 48.494, 48.951, 49.133, 48.568,
    ]
    everything, ctx_all = ingest("atlas", path, all_hops=True)
    assert everything["hop_ttl"].notna().all()
    answered = {h["hop"] for r in json_lines(path) for h in r["result"] if any("rtt" in x for x in h["result"])}
    assert set(everything["hop_ttl"].astype(int)) == answered == set(range(1, 10)) - {8}
    assert ctx_all.input_records == ctx.input_records
    assert len(everything) == len(default) + ctx.dropped["intermediate_hop"]


def test_atlas_bad_records_are_quarantined_by_field(tmp_path: Path) -> None:
    ok = {"type": "ping", "timestamp": 1600000000, "dst_addr": "192.0.2.1", "from": "198.51.100.7", "msm_id": 5}
    lines = [
        json.dumps({**ok, "result": [{"rtt": 1.5}, {"x": "*"}, {"rtt": "fast"}, {"error": "sendto failed"}, 7]}),
        json.dumps({k: v for k, v in ok.items() if k != "timestamp"} | {"result": [{"rtt": 1}]}),
        json.dumps({k: v for k, v in ok.items() if k != "dst_addr"} | {"result": [{"rtt": 1}]}),
        json.dumps({**ok, "type": "dns", "result": {"ANCOUNT": 1}}),
        json.dumps({**ok, "timestamp": "1600000001", "msm_id": "6", "result": [{"rtt": "2.25"}]}),
        '{"type": "ping", "timestamp": 16',
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    df, ctx = ingest("atlas", path)
    assert_balanced(ctx)
    assert df["rtt_ms"].tolist() == [1.5, 2.25]
    assert df["measurement"].tolist() == ["5", "6"]
    assert ctx.dropped == Counter({"timeout": 1, "error": 1, "unsupported_type:dns": 1})
    fields = {(q.record, q.field) for q in ctx.quarantined}
    assert fields == {(1, "result[2].rtt"), (1, "result[4]"), (2, "timestamp"), (3, "dst_addr"), (6, None)}


# ------------------------------------------------------------------------------------------- scamper


def scamper_expected(obj: dict, all_hops: bool) -> list[tuple[float, int | None]]:
    """(rtt, hop_ttl) of the rows one scamper JSON record should give, from a plain scan."""
    t, dst = obj["type"], obj.get("dst")
    if t == "ping":
        return [(r["rtt"], None) for r in obj.get("responses", [])]
    if t == "trace":
        hops = obj.get("hops", [])
        return [(h["rtt"], h["probe_ttl"] if all_hops else None) for h in hops if all_hops or h["addr"] == dst]
    if t == "tracelb":
        out = []
        for node in obj.get("nodes", []):
            for group in node["links"]:
                for elem in group:
                    for probe in elem.get("probes", []):
                        for rep in probe.get("replies", []):
                            if all_hops or elem["addr"] == dst:
                                out.append((rep["rtt"], probe["ttl"] if all_hops else None))
        return out
    return []


@pytest.mark.parametrize("all_hops", [False, True])
def test_scamper_json_samples_rows_match_json_scan(samples: Path, all_hops: bool) -> None:
    files = sorted((samples / "scamper_json").glob("*.json"))
    assert len(files) == 7
    for path in files:
        df, ctx = ingest("scamper", path, all_hops=all_hops)
        assert_balanced(ctx)
        assert not ctx.quarantined, ctx.quarantined[:3]
        records = json_lines(path)
        expected = [e for obj in records for e in scamper_expected(obj, all_hops)]
        assert len(df) == len(expected), path.name
        assert sorted(df["rtt_ms"]) == sorted(float(r) for r, _ in expected)
        assert Counter(None if pd.isna(h) else int(h) for h in df["hop_ttl"]) == Counter(h for _, h in expected)
        assert ctx.dropped["metadata"] == sum(r["type"] in ("cycle-start", "cycle-stop") for r in records) == 2
        assert (df["source"] == "ark").all()
        # pantrace's converter wrote start 0: rows must carry the probes' tx times, never 1970.
        assert (df["timestamp"].dt.year >= 2022).all()
        to_latency_table(df)


_TXT_DST = re.compile(r"^(?:ping|traceroute|tracelb) from \S+ to (\S+)$", re.M)
_TXT_PING = re.compile(r"^reply from (\S+), attempt: \d+, tx: ([\d.]+)s, rtt: ([\d.]+)s", re.M)
_TXT_TRACE = re.compile(r"^hop +(\d+) +(\S+)\n attempt: \d+, tx: ([\d.]+)s, rtt: ([\d.]+)s", re.M)
_TXT_LB = re.compile(
    r"^  probe flowid: \d+, ttl: (\d+), attempt: \d+, tx: ([\d.]+)\n((?:   reply from: .*\n(?:     .*\n)?)*)", re.M
)
_TXT_LB_REPLY = re.compile(r"reply from: (\S+), rtt: ([\d.]+),")


def txt_replies(txt: str) -> tuple[str, list[tuple[str, float, float | None, int | None]]]:
    """(destination, [(replier, rtt_ms, tx, ttl)]) from scamper's text dump; tx is an offset from start for
    ping/trace and absolute for tracelb."""
    dst = _TXT_DST.search(txt).group(1)
    if txt.count("\nping from"):
        return dst, [(a, float(r) * 1000, float(tx), None) for a, tx, r in _TXT_PING.findall(txt)]
    if txt.count("\ntraceroute from"):
        return dst, [(a, float(r) * 1000, float(tx), int(ttl)) for ttl, a, tx, r in _TXT_TRACE.findall(txt)]
    out = []
    for ttl, tx, block in _TXT_LB.findall(txt):
        out += [(a, float(r) * 1000, float(tx), int(ttl)) for a, r in _TXT_LB_REPLY.findall(block)]
    return dst, out


def test_scamper_rows_match_text_dumps(samples: Path) -> None:
    """The .txt dumps that came with the warts files are an independent rendering of the same replies."""
    dumps = sorted((samples / "warts").glob("*.txt"))
    assert len(dumps) == 6
    for txt_path in dumps:
        dst, replies = txt_replies(txt_path.read_text())
        assert replies, txt_path.name
        json_path = samples / "scamper_json" / (txt_path.stem + ".json")
        start = next(r["start"] for r in json_lines(json_path) if "start" in r)
        start_s = start["sec"] + start["usec"] / 1e6
        for all_hops in (False, True):
            df, _ = ingest("scamper", json_path, all_hops=all_hops)
            want = [r for r in replies if all_hops or r[0] == dst]
            got = sorted(zip(df["rtt_ms"].round(3), df["hop_ttl"].astype("float").fillna(-1)))
            assert got == sorted((round(r, 3), -1 if (t is None or not all_hops) else t) for _, r, _, t in want)
            ts = (df["timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
            tx = [t if "tracelb" in txt_path.name else start_s + t for _, _, t, _ in want]
            assert sorted(ts.round(6)) == pytest.approx(sorted(tx), abs=2e-6)
        assert (df["dst"] == dst).all()


def test_scamper_ping_timeouts_and_reply_from_other(tmp_path: Path) -> None:
    ping = {
        "type": "ping", "src": "192.0.2.1", "dst": "198.51.100.1", "start": {"sec": 1644339038, "usec": 5},
        "ping_sent": 5,
        "responses": [
            {"from": "198.51.100.1", "seq": 0, "tx": {"sec": 1644339038, "usec": 10}, "rtt": 2.5},
            {"from": "198.51.100.1", "seq": 0, "tx": {"sec": 1644339038, "usec": 10}, "rtt": 3.5},
            {"from": "203.0.113.9", "seq": 2, "tx": {"sec": 1644339040, "usec": 0}, "rtt": 9.0},
            {"from": "198.51.100.1", "seq": 3, "rtt": "x"},
        ],
    }
    trace0 = {"type": "trace", "src": "192.0.2.1", "dst": "198.51.100.1", "start": {"sec": 0, "usec": 0},
              "hops": [{"addr": "198.51.100.1", "probe_ttl": 3, "rtt": 1.0}]}
    path = tmp_path / "p.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in (ping, trace0, {"type": "neighbourdisc"})))
    df, ctx = ingest("scamper", path)
    assert_balanced(ctx)
    assert df["rtt_ms"].tolist() == [2.5, 3.5]  # a duplicate reply is still a reply
    assert df["measurement"].tolist() == ["ping:192.0.2.1>198.51.100.1@1644339038.000005"] * 2
    # seq 1 and 4 were never answered; seq 2 was answered, but by a router.
    assert ctx.dropped == Counter({"timeout": 2, "reply_from_other": 1, "unsupported_type:neighbourdisc": 1})
    assert {(q.record, q.field) for q in ctx.quarantined} == {(1, "responses[3].rtt"), (2, "hops[0].tx")}


# --------------------------------------------------------------------------------------------- warts


@pytest.mark.parametrize("all_hops", [False, True])
def test_warts_equals_json_twin(samples: Path, all_hops: bool) -> None:
    need_warts2json()
    warts = sorted((samples / "warts").glob("*.warts"))
    assert len(warts) == 7
    for w in warts:
        got, ctx_w = ingest("warts", w, all_hops=all_hops)
        want, ctx_j = ingest("scamper", samples / "scamper_json" / (w.stem + ".json"), all_hops=all_hops)
        assert_balanced(ctx_w)
        pd.testing.assert_frame_equal(got, want)
        assert (ctx_w.input_records, ctx_w.dropped, len(ctx_w.quarantined)) == (
            ctx_j.input_records, ctx_j.dropped, len(ctx_j.quarantined),
        )


def test_warts_small_batches_stream(samples: Path) -> None:
    need_warts2json()
    path = samples / "warts" / "pantrace_trace.warts"
    whole, _ = ingest("warts", path, all_hops=True)
    batched, ctx = ingest("warts", path, all_hops=True, batch_rows=100)  # ingest() checks each frame <= 100
    assert_balanced(ctx)
    assert len(whole) == 2929
    pd.testing.assert_frame_equal(batched, whole)


def test_warts_stopping_early_ends_the_converter(samples: Path) -> None:
    need_warts2json()
    ctx = ReadContext("x", batch_rows=10)
    gen = READERS["warts"](samples / "warts" / "pantrace_trace.warts", ctx, all_hops=True)
    assert len(next(gen)) == 10
    gen.close()  # must not hang or leave a zombie


def test_scamper_loopback_run_ingests(tmp_path: Path) -> None:
    if shutil.which("scamper") is None or not HAVE_WARTS2JSON:
        if IN_CI:
            pytest.fail("scamper (Debian package scamper) must be installed in CI")
        pytest.skip("scamper not installed (apt-get install scamper)")
    out = tmp_path / "lo.warts"
    before = time.time()
    # -i 0.2: five probes in about a second instead of five.
    proc = subprocess.run(
        ["scamper", "-O", "warts", "-o", str(out), "-c", "ping -c 5 -i 0.2", "-i", "127.0.0.1"],
        capture_output=True, text=True, timeout=60,
    )
    after = time.time()
    assert proc.returncode == 0 and out.stat().st_size > 0, proc.stderr
    df, ctx = ingest("warts", out)
    assert_balanced(ctx)
    assert len(df) == 5, (dict(ctx.dropped), ctx.quarantined)
    assert (df["src"] == "127.0.0.1").all() and (df["dst"] == "127.0.0.1").all()
    assert df["rtt_ms"].between(0, 1000).all()
    ts = (df["timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    assert ts.between(before - 1, after + 1).all()
    assert df["measurement"].nunique() == 1 and df["measurement"][0].startswith("ping:127.0.0.1>127.0.0.1@")
    # Ark publishes .warts.gz: a compressed copy is decompressed and piped into sc_warts2json.
    for opener, suffix in ((gzip.open, ".gz"), (bz2.open, ".bz2")):
        packed = tmp_path / ("lo.warts" + suffix)
        with opener(packed, "wb") as fh:
            fh.write(out.read_bytes())
        again, ctx2 = ingest("warts", packed)
        assert_balanced(ctx2)
        pd.testing.assert_frame_equal(again, df)


def test_missing_sc_warts2json_names_the_package(samples: Path, tmp_path: Path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(IngestError, match=r"apt-get install scamper") as err:
        list(READERS["warts"](samples / "warts" / "dioptra_ping_google_dns_v4_default.warts", ReadContext("x")))
    assert "sc_warts2json" in str(err.value) and "`scamper`" in str(err.value)


def test_sc_warts2json_failure_names_file_and_stderr(tmp_path: Path) -> None:
    need_warts2json()
    bad = tmp_path / "not_really.warts"
    bad.write_bytes(b"this is not a warts file\n")
    with pytest.raises(IngestError) as err:
        list(READERS["warts"](bad, ReadContext(str(bad))))
    msg = str(err.value)
    assert str(bad) in msg and "sc_warts2json exited with status" in msg and "could not open" in msg


# ------------------------------------------------------------------------------------- compression


def _compressed_copies(path: Path, into: Path) -> list[Path]:
    out = []
    for opener, suffix in ((gzip.open, ".gz"), (bz2.open, ".bz2")):
        # Neutral names: the readers must detect compression by content, not by suffix.
        copy = into / f"{path.stem}_{suffix[1:]}.data"
        with opener(copy, "wb") as fh:
            fh.write(path.read_bytes())
        out.append(copy)
    return out


@pytest.mark.parametrize(
    "fmt,folder,pattern", [("atlas", "ripe_atlas", "*.jsonl"), ("scamper", "scamper_json", "*.json")]
)
def test_compressed_copies_give_same_rows(
    samples: Path, tmp_path: Path, fmt: str, folder: str, pattern: str
) -> None:
    for path in sorted((samples / folder).glob(pattern)):
        want, ctx = ingest(fmt, path, all_hops=True)
        for copy in _compressed_copies(path, tmp_path):
            got, ctx_c = ingest(fmt, copy, all_hops=True)
            pd.testing.assert_frame_equal(got, want)
            assert (ctx_c.input_records, ctx_c.dropped) == (ctx.input_records, ctx.dropped)


@pytest.mark.parametrize("fmt", ["atlas", "scamper"])
def test_broken_compressed_stream_is_an_ingest_error(samples: Path, tmp_path: Path, fmt: str) -> None:
    name = "ripe_atlas/pantrace_atlas_traceroute.jsonl" if fmt == "atlas" else "scamper_json/pantrace_trace.json"
    src = samples / name
    packed = gzip.compress(src.read_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(packed[: len(packed) // 2])  # a download that stopped half way
    with pytest.raises(IngestError, match="cut.gz"):
        list(READERS[fmt](cut, ReadContext(str(cut))))
    fake = tmp_path / "fake"
    fake.write_bytes(b"BZh is how this plain line happens to start\n")
    with pytest.raises(IngestError, match="fake"):
        list(READERS[fmt](fake, ReadContext(str(fake))))


# -------------------------------------------------------------------------------------- hypothesis

_POOLS: dict[str, list[str]] = {}


def valid_lines(samples: Path, fmt: str) -> list[str]:
    """Real lines of the given format (pantrace's 1,000 traces trimmed to 20 to keep examples small)."""
    if fmt not in _POOLS:
        if fmt == "atlas":
            files = sorted((samples / "ripe_atlas").glob("*.jsonl"))
        else:
            files = sorted((samples / "scamper_json").glob("dioptra_*.json"))
        lines = [ln for f in files for ln in f.read_text().splitlines() if ln.strip()]
        if fmt == "scamper":
            lines += (samples / "scamper_json" / "pantrace_trace.json").read_text().splitlines()[:20]
        _POOLS[fmt] = lines
    return _POOLS[fmt]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([10**400, -(10**400)])  # too big for a float
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    """Every key/index path inside a JSON value."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        yield prefix + (k,)
        yield from _paths(v, prefix + (k,))


@st.composite
def garbage_line(draw, pool: list[str]) -> bytes:
    """One bad line: free text, binary-ish bytes, a JSON non-record, a truncated real line, or a real record
    with one value somewhere inside it replaced by a value of another type (or removed)."""
    kind = draw(st.sampled_from(["text", "binary", "json_value", "truncated", "wrong_type", "wrong_type"]))
    if kind == "text":
        # surrogatepass: lone surrogates become bytes that are not valid UTF-8, which is garbage too.
        raw = draw(st.text(min_size=1, max_size=60)).encode("utf-8", "surrogatepass")
    elif kind == "binary":
        raw = draw(st.binary(min_size=1, max_size=60))
    elif kind == "json_value":
        raw = json.dumps(draw(json_values)).encode()
    else:
        line = draw(st.sampled_from(pool))
        if kind == "truncated":
            raw = line[: draw(st.integers(1, len(line) - 1))].encode()
        else:
            obj = json.loads(line)
            path = draw(st.sampled_from(list(_paths(obj))))
            target = obj
            for k in path[:-1]:
                target = target[k]
            if draw(st.booleans()):
                target[path[-1]] = draw(json_values)
            elif isinstance(target, dict):
                del target[path[-1]]
            else:
                target[path[-1]] = None
            raw = json.dumps(obj).encode()
    return raw.replace(b"\n", b" ")  # one line per entry keeps line numbers known


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))


def _with_head(pool: list[str], lines: list[bytes]) -> list[bytes]:
    # Every file starts with the same real line: the shared opener sniffs the first bytes (a "[" means a
    # JSON array, "BZh" or 1f 8b a compressed stream), which would otherwise make a garbage-only file read
    # as something other than JSON lines and break the line-by-line comparison below.
    return [pool[0].encode()] + lines


@pytest.mark.parametrize("fmt", ["atlas", "scamper"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage_never_crashes_and_counts_balance(samples: Path, fmt: str, data) -> None:
    pool = valid_lines(samples, fmt)
    valid = data.draw(st.lists(st.sampled_from(pool), max_size=6), label="valid")
    bad = data.draw(st.lists(garbage_line(pool), min_size=1, max_size=6), label="garbage")
    tagged = [(ln.encode(), False) for ln in valid] + [(ln, True) for ln in bad]
    tagged = data.draw(st.permutations(tagged), label="order")
    all_hops = data.draw(st.booleans(), label="all_hops")
    opener = data.draw(st.sampled_from([gzip.open, bz2.open]), label="compression")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write(d / "head", _with_head(pool, []))
        _write(d / "mixed", _with_head(pool, [ln for ln, _ in tagged]))
        _write(d / "valid", _with_head(pool, [ln for ln, g in tagged if not g]))
        _write(d / "bad", _with_head(pool, [ln for ln, g in tagged if g]))
        head, ctx_h = ingest(fmt, d / "head", all_hops=all_hops)
        mixed, ctx = ingest(fmt, d / "mixed", all_hops=all_hops)
        valid_df, ctx_v = ingest(fmt, d / "valid", all_hops=all_hops)
        bad_df, ctx_b = ingest(fmt, d / "bad", all_hops=all_hops)
        for c in (ctx, ctx_v, ctx_b):
            assert_balanced(c)
        # Lines are independent: garbage neither hides nor invents rows of the valid lines.
        assert len(mixed) == len(valid_df) + len(bad_df) - len(head)
        assert ctx.input_records == ctx_v.input_records + ctx_b.input_records - ctx_h.input_records
        assert not ctx_v.quarantined
        garbage_line_numbers = {i for i, (_, g) in enumerate(tagged, 2) if g}
        assert {q.record for q in ctx.quarantined} <= garbage_line_numbers
        if len(mixed):
            to_latency_table(mixed)
        with opener(d / "packed", "wb") as fh:
            fh.write((d / "mixed").read_bytes())
        packed, ctx_p = ingest(fmt, d / "packed", all_hops=all_hops)
        pd.testing.assert_frame_equal(packed, mixed)
        assert (ctx_p.input_records, ctx_p.dropped, len(ctx_p.quarantined)) == (
            ctx.input_records, ctx.dropped, len(ctx.quarantined),
        )


def test_a_folder_of_latency_dumps_gives_its_dump_files_only(tmp_path):
    """``run latency --input FOLDER``: the generators write their ground truth (Parquet) beside the dumps;
    only the format's files are inputs, sorted by name; an empty folder or a missing path is a usage error."""
    import pytest

    from flamenco_core.errors import UsageError
    from flamenco_core.experiments.inputs import expand_inputs

    for name in ("b.jsonl", "a.json.gz", "labels.parquet", ".hidden.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in expand_inputs([tmp_path], "atlas")] == ["a.json.gz", "b.jsonl"]
    (tmp_path / "t.warts").write_text("")
    assert [p.name for p in expand_inputs([tmp_path], "warts")] == ["a.json.gz", "t.warts"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no atlas file"):
        expand_inputs([tmp_path / "empty"], "atlas")
    with pytest.raises(UsageError, match="no such file or folder"):
        expand_inputs([tmp_path / "missing"], "atlas")
