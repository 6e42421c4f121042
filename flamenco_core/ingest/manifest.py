"""The dump manifest: which measurement dumps in a folder are new, in progress, done or failed.

How it works, step by step: docs/ingest.md, section manifest.py.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from flamenco_core.errors import EXIT_IN_USE, FlamencoError
from flamenco_core.outputs import atomic_write_text

MANIFEST_VERSION = 1
STATES = ("pending", "processing", "done", "failed")

#: Formats the watcher knows; each is an ingest format name of :mod:`flamenco_core.ingest.pipeline`.
DUMP_FORMATS = ("warts", "scamper", "atlas")

_WARTS_MAGIC = b"\x12\x05"
_SCAMPER_TYPES = frozenset({"trace", "ping", "tracelb", "cycle-start", "cycle-stop", "cycle-def", "list",
                            "dealias", "neighbourdisc", "tbit", "sting", "sniff", "host", "http", "udpprobe"})
# Keys every RIPE Atlas result carries (any firmware), and none of scamper's records do.
_ATLAS_KEYS = frozenset({"msm_id", "prb_id", "fw"})
_HEAD_BYTES = 64 * 1024
_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".lock")

_hash_memo: dict[tuple, str] = {}


class ManifestBusy(FlamencoError, RuntimeError):
    """Another watcher holds the manifest's lock (exit 3, like an output folder in use)."""

    exit_code = EXIT_IN_USE


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes (as stored, compressed or not).

    Memoized per process on ``(path, size, mtime_ns, inode)``: the cache policy, the run identity and the
    manifest all ask for the same inputs' hashes within one run.
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _hash_memo:
        return _hash_memo[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    _hash_memo[key] = digest
    return digest


def read_head(path: Path, n: int = _HEAD_BYTES) -> tuple[bytes, str | None]:
    """The first ``n`` decompressed bytes and the compression found by magic bytes (gzip, bzip2)."""
    with open(path, "rb") as fh:
        magic = fh.read(3)
    try:
        if magic[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read(n), "gzip"
        if magic == b"BZh":
            with bz2.open(path, "rb") as fh:
                return fh.read(n), "bzip2"
    except (OSError, EOFError):
        # A truncated archive still has a readable head most of the time; when not, it is unknown.
        return b"", "gzip" if magic[:2] == b"\x1f\x8b" else "bzip2"
    with open(path, "rb") as fh:
        return fh.read(n), None


def _first_json_object(head: bytes) -> dict | None:
    text = head.decode("utf-8", "replace").lstrip()
    if text.startswith("["):
        text = text[1:].lstrip()
        # The first element of an array: decode one value and ignore the rest of the head.
        try:
            obj, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            # The head may cut the first line short when it is very long: decode what is there.
            try:
                obj, _ = json.JSONDecoder().raw_decode(line)
            except ValueError:
                return None
        return obj if isinstance(obj, dict) else None
    return None


def detect_format(path: str | Path) -> str | None:
    """The ingest format of a dump, by content: ``warts`` (binary, magic ``0x1205``), ``scamper`` (JSON
    lines with a scamper ``type``) or ``atlas`` (JSON lines or array of RIPE Atlas results); ``None`` when
    it is none of these. Compression (gzip, bzip2) is seen through; the file name is only a tie-breaker
    for JSON that carries neither signature."""
    p = Path(path)
    head, _ = read_head(p)
    if head[:2] == _WARTS_MAGIC:
        return "warts"
    obj = _first_json_object(head)
    if obj is not None:
        if _ATLAS_KEYS & obj.keys():
            return "atlas"
        if obj.get("type") in _SCAMPER_TYPES and ("src" in obj or "list_name" in obj or "version" in obj):
            return "scamper"
    name = p.name.lower()
    for suffix in (".gz", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if obj is not None and name.endswith((".json", ".jsonl")):
        if "atlas" in name or "ripe" in name:
            return "atlas"
        if "scamper" in name or "warts" in name:
            return "scamper"
    return None


def is_candidate(path: Path) -> bool:
    """Files the scan looks at: regular, not hidden, not a partial download or a temporary file."""
    return path.is_file() and not path.name.startswith(".") and not path.name.lower().endswith(_IGNORED_SUFFIXES)


@dataclass
class Entry:
    """One dump, keyed by ``sha256``. ``file`` is the name it was last seen under (``path`` the full path),
    ``state`` one of :data:`STATES`, ``attempts`` how often processing started, ``error`` the last failure,
    ``result`` what the pipeline returned (small: ids and counts)."""

    sha256: str
    file: str
    path: str
    format: str | None
    size: int
    mtime_ns: int
    state: str = "pending"
    attempts: int = 0
    error: str | None = None
    result: dict | None = None
    updated: float = field(default_factory=time.time)
    aliases: list[str] = field(default_factory=list)


@dataclass
class ScanResult:
    """What a scan found: ``todo`` (entries to process, in name order: crashed ``processing`` ones first),
    and ``skipped``: ``(file name, reason)`` for everything not to process now."""

    todo: list[Entry]
    skipped: list[tuple[str, str]]


class Manifest:
    """A JSON manifest of dumps at ``path`` (see docs/ingest.md, manifest.py). Load with :meth:`load`; every
    mutating method saves atomically before returning."""

    def __init__(self, path: str | Path, entries: dict[str, Entry] | None = None, directory: str | None = None):
        self.path = Path(path)
        self.entries: dict[str, Entry] = entries or {}
        self.directory = directory

    # ------------------------------------------------------------------------------------------- storage
    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        """Read the manifest at ``path``; an absent file is an empty manifest. A corrupt file raises
        ``ValueError`` naming it (never silently treated as empty: that would redo every dump)."""
        p = Path(path)
        if not p.exists():
            return cls(p)
        try:
            data = json.loads(p.read_text())
            entries = {k: Entry(**v) for k, v in data.get("entries", {}).items()}
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{p}: unreadable dump manifest ({exc}); fix or remove it") from exc
        return cls(p, entries, data.get("directory"))

    def to_dict(self) -> dict:
        return {
            "format": "flamenco-dump-manifest",
            "version": MANIFEST_VERSION,
            "directory": self.directory,
            "entries": {k: asdict(v) for k, v in sorted(self.entries.items())},
        }

    def save(self) -> None:
        """Write atomically: a crash leaves either the previous or this version on disk."""
        atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive, non-blocking lock (``<manifest>.lock``) for one watcher run: a scheduled run
        overlapping a manual one raises :class:`ManifestBusy` instead of processing the same dumps twice."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path.with_name(self.path.name + ".lock"), "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ManifestBusy(f"{self.path} is in use by another watcher") from exc
            yield
        finally:
            fh.close()  # closing releases the lock

    # ---------------------------------------------------------------------------------------------- scan
    def _known_hash(self, by_path: dict[str, Entry], path: Path, st: os.stat_result) -> str | None:
        e = by_path.get(str(path))
        if e is not None and e.size == st.st_size and e.mtime_ns == st.st_mtime_ns:
            return e.sha256
        return None

    def scan(self, directory: str | Path, *, min_age_s: float = 0.0, retry_failed: bool = False,
             recursive: bool = False, now: float | None = None) -> ScanResult:
        """Register new dumps in ``directory`` as ``pending`` (saved) and return what to process.

        Skipped: files younger than ``min_age_s`` (possibly still being copied in), files of no known
        format, duplicates by content of another file, ``done`` dumps, and ``failed`` ones unless
        ``retry_failed``. Entries left ``processing`` by a crash are returned first.
        """
        d = Path(directory)
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such folder")
        self.directory = str(d.resolve())
        now = time.time() if now is None else now
        files = sorted(d.rglob("*") if recursive else d.iterdir())
        todo: list[Entry] = []
        skipped: list[tuple[str, str]] = []
        seen_this_scan: dict[str, str] = {}
        changed = False
        by_path = {e.path: e for e in self.entries.values()}
        for f in files:
            if not is_candidate(f) or f.resolve() == self.path.resolve():
                continue
            name = str(f.relative_to(d)) if recursive else f.name
            st = f.stat()
            if min_age_s and now - st.st_mtime < min_age_s:
                skipped.append((name, f"modified less than {min_age_s:g} s ago (may still be written)"))
                continue
            digest = self._known_hash(by_path, f.resolve(), st) or content_hash(f)
            if digest in seen_this_scan:
                skipped.append((name, f"same content as {seen_this_scan[digest]}"))
                continue
            seen_this_scan[digest] = name
            entry = self.entries.get(digest)
            if entry is None:
                fmt = detect_format(f)
                entry = Entry(sha256=digest, file=name, path=str(f.resolve()), format=fmt, size=st.st_size,
                              mtime_ns=st.st_mtime_ns)
                if fmt is None:
                    entry.state = "failed"
                    entry.error = "unknown format (not warts, scamper JSON or RIPE Atlas JSON)"
                self.entries[digest] = entry
                changed = True
            elif entry.path != str(f.resolve()) or entry.mtime_ns != st.st_mtime_ns:
                if entry.file != name and entry.file not in entry.aliases:
                    entry.aliases.append(entry.file)
                entry.file, entry.path, entry.size, entry.mtime_ns = name, str(f.resolve()), st.st_size, st.st_mtime_ns
                changed = True
            if entry.format is None:
                skipped.append((name, entry.error or "unknown format"))
            elif entry.state == "done":
                skipped.append((name, "already processed"))
            elif entry.state == "failed" and not retry_failed:
                skipped.append((name, f"failed before: {entry.error}"))
            else:
                todo.append(entry)
        if changed:
            self.save()
        # A dump interrupted by a crash goes first: it is the oldest work.
        todo.sort(key=lambda e: (e.state != "processing", e.file))
        return ScanResult(todo, skipped)

    # ------------------------------------------------------------------------------------------- states
    def _set(self, sha256: str, **changes) -> Entry:
        e = self.entries[sha256]
        for k, v in changes.items():
            setattr(e, k, v)
        e.updated = time.time()
        self.save()
        return e

    def start(self, sha256: str) -> Entry:
        """Mark ``processing`` (saved) before any work on the dump begins."""
        e = self.entries[sha256]
        return self._set(sha256, state="processing", attempts=e.attempts + 1, error=None)

    def finish(self, sha256: str, result: dict | None = None) -> Entry:
        """Mark ``done`` with the pipeline's (small) result."""
        return self._set(sha256, state="done", result=result, error=None)

    def fail(self, sha256: str, error: str) -> Entry:
        """Mark ``failed`` with the error; a later scan skips it unless asked to retry failed dumps."""
        return self._set(sha256, state="failed", error=error[:2000])

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for e in self.entries.values():
            out[e.state] = out.get(e.state, 0) + 1
        return out


