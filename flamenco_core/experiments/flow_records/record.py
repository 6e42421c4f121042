"""The record of one LF combination: a typed model whose field metadata says which fields are MLflow
metrics, which are summary columns and which are MLflow parameters, so no other module lists them again."""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from flamenco_core.experiments.flow_records.catalog import Combination

Outcome = Literal["ok", "skipped", "failed"]
OUTCOMES: tuple[str, ...] = ("ok", "skipped", "failed")


def _metric(title: Optional[str] = None, summary: Optional[int] = None) -> Any:
    """A numeric field logged as an MLflow metric; ``summary``: its position among the columns of run
    summaries, headed ``title``."""
    return Field(None, title=title, json_schema_extra={"metric": True, "summary": summary})


def _param(name: Optional[str] = None, missing: Any = None, default: Any = None) -> Any:
    """A field logged as an MLflow parameter under ``name`` (default: the field's), as ``missing`` when a
    record lacks it (``None``: not logged)."""
    extra = {"param": True, "param_name": name, "missing": missing}
    return Field(default_factory=list, json_schema_extra=extra) if default == [] else Field(default, json_schema_extra=extra)


class CombinationRecord(BaseModel):
    """What one combination produced. Fields that a stage never set stay out of :meth:`to_dict` (a skipped
    combination has no ``cls_f1``), so reports and tables tell "not computed" from a value."""

    # extra="allow": a record read back from record.json may carry fields of a later version
    model_config = ConfigDict(extra="allow", validate_assignment=False)

    index: int = 0
    combination: str = Field("", title="combination", json_schema_extra={"summary": 0})
    label: Optional[str] = None
    slug: str = ""
    role: str = _param(missing="", default="experiment")
    lfs: list[str] = _param(missing=[], default=[])
    refs: list[str] = _param(missing=[], default=[])
    n_lfs: int = _param(default=0)
    groups: list[str] = _param(missing=[], default=[])
    packs: list[str] = Field(default_factory=list)
    features: list[str] = _param(missing=[], default=[])
    dataset: str = "flows"
    experiment: str = "default"
    outcome: Outcome = Field("ok", title="outcome", json_schema_extra={"summary": 1})
    reason: str = ""
    error: Optional[str] = None
    notes: list[str] = Field(default_factory=list)
    tree_mode: str = _param(missing="faithful", default="faithful")
    artifacts: dict[str, str] = Field(default_factory=dict)
    # correlation of the features involved (train)
    correlation_pearson: Optional[float] = _metric()
    correlation_spearman: Optional[float] = _metric()
    correlation: Optional[float] = Field(None, json_schema_extra={"metric": True, "param": True})
    # score_lfs
    lf_f1: Optional[float] = _metric("LF F1", summary=2)
    lf_precision: Optional[float] = _metric()
    lf_recall: Optional[float] = _metric()
    decision_coverage: Optional[float] = _metric()
    ties: Optional[float] = _metric()
    coverage: Optional[float] = _metric("coverage", summary=6)
    overlap: Optional[float] = _metric()
    conflicts: Optional[float] = _metric()
    coverage_train: Optional[float] = _metric()
    f1_definition: Optional[dict[str, Any]] = None
    # build_trees
    tree_f1: Optional[float] = _metric("Tree F1", summary=4)
    tree_f1_paper: Optional[float] = _metric()
    tree_vs_lf_difference: Optional[float] = _metric("tree vs LF", summary=5)
    tree_vs_lf_difference_paper: Optional[float] = _metric()
    tree_conditions: Optional[int] = _metric()
    tree_depth: Optional[int] = _metric()
    # multi-class (k > 2) only, so binary records stay as they were: the classes the combination's LFs vote
    # for on train, per-class F1 and the macro F1 over those classes and the weighted F1 (issue 13)
    covered_classes: Optional[list[str]] = None
    lf_f1_per_class: Optional[dict[str, float]] = None
    lf_f1_macro_covered: Optional[float] = _metric()
    lf_f1_weighted: Optional[float] = _metric()
    cls_f1_per_class: Optional[dict[str, float]] = None
    cls_f1_macro_covered: Optional[float] = _metric()
    cls_f1_weighted: Optional[float] = _metric()
    # fit_label_model
    label_model: Optional[dict[str, Any]] = None
    label_model_name: Optional[str] = _param("label_model", missing="")
    label_model_fallback: Optional[str] = _param(missing="")
    training: Optional[dict[str, Any]] = None
    # fit_end_model
    cls_f1: Optional[float] = _metric("classifier F1", summary=3)
    cls_f1_macro: Optional[float] = _metric()
    cls_accuracy: Optional[float] = _metric()
    cls_precision: Optional[float] = None
    cls_recall: Optional[float] = None
    classifier: Optional[dict[str, Any]] = None
    # compare_predictions
    prediction_differences: Optional[dict[str, float]] = None
    diff_lf_cls: Optional[float] = _metric()
    diff_lf_tree: Optional[float] = _metric()
    diff_cls_tree: Optional[float] = _metric()
    difference_sample_rows: Optional[int] = None
    # whole pack only, and bookkeeping
    labels_rows: Optional[int] = None
    timings: Optional[dict[str, float]] = None
    f1_undefined: Optional[str] = None
    seconds: Optional[float] = _metric()
    run_id: Optional[str] = None

    @classmethod
    def start(cls, combo: Combination, dataset: str, experiment: str, entries: Sequence[Any] = (),
              features: Sequence[str] = ()) -> "CombinationRecord":
        """The record a combination starts with (outcome ``ok``); ``entries``: its LFs' catalog entries."""
        return cls(**_identity(combo), groups=list(dict.fromkeys(e.group for e in entries)),
                   packs=list(dict.fromkeys(e.pack for e in entries)), features=list(features), dataset=dataset,
                   experiment=experiment, outcome="ok", reason="", error=None, notes=[], tree_mode="faithful",
                   artifacts={})

    @classmethod
    def not_run(cls, combo: Combination, outcome: Outcome, reason: str, dataset: str = "flows") -> "CombinationRecord":
        """The record of a combination that never ran (``skipped``: e.g. the preparation failed) or whose
        task died outside the core (``failed``: ``reason`` is the error)."""
        return cls(**_identity(combo), groups=[], features=[], dataset=dataset, outcome=outcome, reason=reason,
                   error=reason if outcome == "failed" else combo.error, notes=[], artifacts={})

    def fail(self, error: str) -> None:
        """The combination failed: ``error`` is also its reason."""
        self.outcome, self.error, self.reason = "failed", error, error

    def skip(self, reason: str) -> None:
        """The combination stops here (an earlier failure stays the outcome)."""
        if self.outcome == "ok":
            self.outcome, self.reason = "skipped", reason

    def has(self, name: str) -> bool:
        """Whether a stage set ``name``."""
        return name in self.model_fields_set or name in (self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what tasks pass on and ``record.json`` holds): the fields that were set."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CombinationRecord":
        """Inverse of :meth:`to_dict`."""
        return cls.model_validate(dict(data))


def _identity(combo: Combination) -> dict[str, Any]:
    return dict(index=combo.index, combination=combo.name, label=combo.label, slug=combo.slug, role=combo.role,
                lfs=list(combo.lfs or combo.refs), refs=list(combo.refs), n_lfs=len(combo.lfs or combo.refs))


def _extra(name: str, key: str) -> Any:
    return (CombinationRecord.model_fields[name].json_schema_extra or {}).get(key)


#: Numeric record fields logged as MLflow metrics of a combination's child run.
METRIC_KEYS: tuple[str, ...] = tuple(n for n in CombinationRecord.model_fields if _extra(n, "metric"))
#: Columns of a run's summary table (field -> heading), in that order.
SUMMARY_COLUMNS: dict[str, str] = {
    n: CombinationRecord.model_fields[n].title or n
    for n in sorted((n for n in CombinationRecord.model_fields if _extra(n, "summary") is not None),
                    key=lambda n: _extra(n, "summary"))
}
#: Fields of each combination in a flow's returned summary.
SUMMARY_KEYS: tuple[str, ...] = ("combination", "lfs", "outcome", "reason", "lf_f1", "cls_f1", "tree_f1",
                                 "tree_vs_lf_difference", "coverage", "f1_undefined", "run_id")


def metrics(rec: Mapping[str, Any]) -> dict[str, float]:
    """The finite MLflow metrics of a record (dict form)."""
    out = {}
    for k in METRIC_KEYS:
        v = rec.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


def params(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The MLflow parameters of a record (dict form): its parameter fields, the classifier's kind and
    features and the single-class fallback; ``None`` values left out."""
    training = rec.get("training") or {}
    out: dict[str, Any] = {_extra(n, "param_name") or n: rec.get(n, _extra(n, "missing"))
                           for n in CombinationRecord.model_fields if _extra(n, "param")}
    out.update({"classifier": (rec.get("classifier") or {}).get("kind", ""),
                "classifier_features": training.get("features", []),
                "single_class_fallback": training.get("single_class_fallback") or ""})
    return {k: v for k, v in out.items() if v is not None}
