"""What format a file's content looks like, from its first bytes: a hint for an ingest that quarantined
everything ("is --format right? the content looks like cicflowmeter"). Cheap (one 64 KiB head), never
authoritative: the readers decide what a record is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from flamenco_core.ingest.manifest import read_head, detect_format
from flamenco_core.ingest.schema import snake_case

_PARQUET_MAGIC = b"PAR1"
# Snake-cased header names that only CICFlowMeter writes, and the CSV headers of nfdump's exports.
_CIC_MARKERS = {"flow_id", "flow_duration", "total_fwd_packets", "flow_iat_min", "fwd_packet_length_max"}
_NFDUMP_CSV_FIRST = ("ts,te,td,sa,da", "firstseen,lastseen")
_NFDUMP_TEXT_FIRST = ("date first seen", "date flow start")


def guess_format(path: str | Path) -> Optional[str]:
    """The ingest format ``path``'s content looks like (``atlas``, ``scamper``, ``warts``,
    ``cicflowmeter``, ``nfdump``, ``csv``, ``parquet``), or ``None`` when it is none of them or unreadable."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if fh.read(4) == _PARQUET_MAGIC:
                return "parquet"
        found = detect_format(p)
        if found is not None:
            return found
        head, _ = read_head(p)
    except OSError:
        return None
    text = head.decode("utf-8", "replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        return None
    low = first.lower()
    if low.startswith(_NFDUMP_CSV_FIRST) or low.startswith(_NFDUMP_TEXT_FIRST):
        return "nfdump"
    if first[:1] in "{[":
        return None  # JSON of no known signature
    names = {snake_case(h) for h in first.split(",")}
    if names & _CIC_MARKERS:
        return "cicflowmeter"
    if len(names) > 1:
        return "csv"
    return None


__all__ = ["guess_format"]
