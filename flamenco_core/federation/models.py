"""The typed aggregate a site returns, and the coordinator's per-site outcome.

A :class:`SiteAggregate` holds counts only: rows, votes, overlaps, conflicts, confusion cells, label-model
agreement; each count is a :class:`Count` that is either a number the site's policy released or ``null``
with the reason it was suppressed. It never holds rows, feature values, statistics (thresholds), file
names or free text from the data: every string in it is the request's own (pack, LF and class names), the
site's and dataset's names, or one of the fixed codes below. ``extra="forbid"`` everywhere: the
coordinator validates what comes back with the same model, so a field the schema does not know is refused.
The JSON schema in ``docs/federation.md`` is generated from this module (:func:`aggregate_schema`).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

AGGREGATE_FORMAT = "flamenco-site-aggregate"
AGGREGATE_VERSION = 1

#: Why a count is ``null``: fewer than k rows; fewer than k rows outside it (its complement would be
#: small); hidden so that a suppressed neighbour in the same sum cannot be recovered by subtraction; or
#: the count it is part of was itself suppressed.
SuppressionReason = Literal["fewer_than_k", "complement_fewer_than_k", "secondary", "total_suppressed"]
Outcome = Literal["ok", "refused", "failed"]
#: What the coordinator saw of a site: it answered (ok), refused the request, failed while answering,
#: was down (no worker online on its pool, or no such deployment) or did not answer in time.
SiteStatus = Literal["ok", "refused", "failed", "down", "timeout"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Count(BaseModel):
    """A released count (``value``) or a suppressed one (``value`` null, ``suppressed`` says why)."""

    model_config = _STRICT

    value: Optional[NonNegativeInt] = None
    suppressed: Optional[SuppressionReason] = None

    @model_validator(mode="after")
    def _one_of(self) -> "Count":
        if (self.value is None) == (self.suppressed is None):
            raise ValueError("a count has either a value or a suppression reason")
        return self


class ConfusionRow(BaseModel):
    """Rows of one true class by what was decided: each class name, and ``abstain``. A class missing from
    ``decided`` could not be decided (an LF votes only its label): its count is 0 by construction."""

    model_config = _STRICT

    true_class: str
    total: Count
    decided: dict[str, Count]


class LFCounts(BaseModel):
    """One LF at one site: rows it votes on, overlaps and conflicts; with ground truth, its confusion."""

    model_config = _STRICT

    lf: str
    label: str
    content_hash: str
    votes: Count
    overlaps: Count
    conflicts: Count
    confusion: Optional[list[ConfusionRow]] = None


class LabelModelCounts(BaseModel):
    """The label model fitted at the site: how often it decides, how often it agrees with the majority
    vote of the same LFs, and (with ground truth) its confusion."""

    model_config = _STRICT

    name: str
    fallback: Optional[str] = None
    error: Optional[str] = None  # the exception's type name only: a message could quote data
    conclusive: Count
    majority_conclusive: Count
    both_conclusive: Count
    agree: Count
    confusion: Optional[list[ConfusionRow]] = None


class PackAggregate(BaseModel):
    """Everything a site reports about one pack (or the combination of the request's packs)."""

    model_config = _STRICT

    pack: str
    version: Union[int, str]
    group: Optional[str] = None
    content_hash: str
    kind: Literal["pack", "combination"] = "pack"
    classes: list[str]
    statistics_used: dict[str, list[str]]  # names only: the values are statistics of the site's data
    rows: Count
    covered: Count
    overlapped: Count
    conflicted: Count
    labeled_rows: Optional[Count] = None
    lfs: list[LFCounts]
    majority_vote_confusion: Optional[list[ConfusionRow]] = None
    label_model: LabelModelCounts


class Reason(BaseModel):
    """Why a site refused (or failed): a fixed ``code``, the pack/LF/feature it concerns, a message built
    from the request's own content (never from the data)."""

    model_config = _STRICT

    code: str
    message: str
    pack: Optional[str] = None
    lf: Optional[str] = None
    feature: Optional[str] = None


class PolicySummary(BaseModel):
    """The policy the answer was produced under."""

    model_config = _STRICT

    min_group_size: int
    min_rows: int
    noise_epsilon: Optional[float] = None
    allowed_statistics: Optional[list[str]] = None
    min_window_share: float


class SiteAggregate(BaseModel):
    """A site's whole answer to one request: the only object that leaves the site."""

    model_config = _STRICT

    format: Literal["flamenco-site-aggregate"] = AGGREGATE_FORMAT
    format_version: Literal[1] = AGGREGATE_VERSION
    site: str
    dataset: str
    request_hash: str
    outcome: Outcome
    reasons: list[Reason] = Field(default_factory=list)
    policy: PolicySummary
    has_ground_truth: bool = False
    label_model: Optional[str] = None
    seed: int = 0
    packs: list[PackAggregate] = Field(default_factory=list)


class SiteOutcome(BaseModel):
    """What the coordinator got from one site: a status, a one-line reason, the aggregate when there is one,
    and the Prefect flow run that carried it."""

    model_config = _STRICT

    site: str
    status: SiteStatus
    reason: Optional[str] = None
    flow_run_id: Optional[str] = None
    seconds: Optional[float] = None
    aggregate: Optional[SiteAggregate] = None

    @property
    def usable(self) -> bool:
        """An answer with counts in it."""
        return self.status == "ok" and self.aggregate is not None and bool(self.aggregate.packs)


def aggregate_schema() -> dict:
    """The JSON schema of :class:`SiteAggregate` (what ``docs/federation.md`` shows)."""
    return SiteAggregate.model_json_schema()


__all__ = ["AGGREGATE_FORMAT", "AGGREGATE_VERSION", "ConfusionRow", "Count", "LFCounts", "LabelModelCounts",
           "PackAggregate", "PolicySummary", "Reason", "SiteAggregate", "SiteOutcome", "aggregate_schema"]


if __name__ == "__main__":  # python -m flamenco_core.federation.models: the schema docs/federation.md shows
    import json

    print(json.dumps(aggregate_schema(), indent=2))
