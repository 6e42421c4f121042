"""Flow-record experiments: LF combinations compared by LF F1, classifier F1 and Tree F1 (issue 5).

The paper's manual path for NetFlow / CICFlowMeter data (Sections 3.4.2, 4.3, 4.4), composed from the
core stages; nothing here re-defines a metric, a split or a label model.

**Preparation** (:func:`prepare`, once per experiment):

1. Ground truth from the data's label column (:func:`~flamenco_core.preprocess.ground_truth.labels_from_column`)
   or from alert windows (:func:`~flamenco_core.preprocess.ground_truth.labels_from_alerts`). Rows that get
   no class (blank labels, unknown labels with ``ground_truth.default: null``) leave the experiment; they
   are counted, and still receive labels in ``labels.parquet``.
2. Splits (:func:`~flamenco_core.preprocess.splits.stratified_splits`): stratified test 20%, validation 20% of
   the rest, train the remainder, each ordered by time; seeded.
3. Statistics for every threshold come from the **training split** only (one
   :class:`~flamenco_core.labeling.stats.DataStatistics` shared by the LFs, the trees and every split), and
   are recorded with the resolved thresholds.
4. The packs are checked against the data's columns and types first (:func:`check_packs`): a feature
   that is not a column, or not numeric, raises :class:`PackMismatch` before anything runs. Then each LF
   is applied on its own, so an LF that still cannot run (a threshold that divides by zero) fails alone:
   its error is recorded and only the combinations that use it fail.
5. Feature importance of the LFs' features on train (ground truth; for ordering tree nodes), Pearson and
   Spearman correlations of those features on train, constant features, and the end classifier's
   features (``classifier_features``: ``selected`` = numeric, non-identifier, non-constant columns;
   ``lf`` = the combination's own features; or a list).

**Per combination** (:func:`run_combination`), one record:

- **LF F1** on test: :func:`~flamenco_core.labeling.analysis.combination_f1`, i.e. the majority vote of the
  combination's LFs, ties and all-abstain rows inconclusive, and inconclusive rows counted as the
  ``abstain`` policy says (default ``"negative"``: an inconclusive row predicts the negative class, so an
  LF that never votes ``attack`` has F1 0). Coverage, overlap and conflicts on test are Snorkel's
  (:func:`~flamenco_core.labeling.analysis.label_summary`).
- **Label model** on the training votes (:func:`~flamenco_core.labeling.label_model.make_label_model`; fewer
  than 3 LFs fall back to majority vote or the LF's own votes, and the fallback reason is recorded), then
  :func:`~flamenco_core.labeling.label_model.filter_unlabeled`. When the remaining labels hold a single class
  (a combination whose LFs all vote the same class), the rows no LF voted on are read as the negative class,
  exactly as LF F1 reads them (``single_class: negative``; recorded); if the labels still hold one class
  (the LFs vote only the negative class), the classifier is the constant predictor of that class, so its
  F1 is 0 like the LF F1 (recorded). ``single_class: skip`` skips the classifier instead.
- **End classifier** (the LSTM with balanced class weights by default, trained on the label model's soft
  labels; the random forest as option), **classifier F1** on test with
  :func:`~flamenco_core.evaluation.metrics.classification_scores` (same definitions as LF F1).
- **Trees** (:func:`~flamenco_core.explain.tree.compare_modes`): reports use the **faithful** tree (Tree F1,
  its PNG); the prediction difference tree-vs-LF on test is recorded for both modes
  (``tree_vs_lf_difference`` for faithful, 0 by construction, ``tree_vs_lf_difference_paper``).
- **Prediction-difference matrix** LF / classifier / tree on a seeded 20% sample of test
  (:func:`~flamenco_core.evaluation.metrics.prediction_difference_matrix`), the predictions read as F1 reads
  them: under ``abstain: negative`` an inconclusive decision counts as the negative class (so an LF that
  only says "benign" and a classifier that says "benign" everywhere do not differ); under the other
  policies inconclusive is a value of its own.
- The **correlation** of the features involved (:func:`~flamenco_core.preprocess.feature_selection.correlation_of`).

Every combination ends with an ``outcome``: ``ok``; ``skipped`` with a ``reason`` (the classifier could
not be trained: no training row voted on, one class only); or ``failed`` with an ``error`` (an LF that
cannot be applied, an unknown LF name in the experiment file, an unexpected exception). Metrics computed
before the stop stay in the record. No combination stops another; an ``OSError`` (I/O) propagates so a
task runner can retry it.

**Outputs** (:func:`write_outputs`): ``report.json`` (``combinations``: the records), the paper-shaped tables
of :mod:`flamenco_core.evaluation.tables` (CSV + Markdown under ``tables/``), the trees under ``trees/``,
per-combination confusion matrices and difference matrices under ``combinations/``, and ``labels.parquet``:
every row of the data with ``label``, ``probability`` (of that label) and ``label_source`` from the whole
pack's combination: ``label_model`` where the LFs decide, ``classifier`` elsewhere, ``ground_truth`` only
when the whole pack's classifier could not be trained (``none`` where not even that exists).

torch's random number generator is process-wide, so fits in threads would interleave their draws: label
model and LSTM fits take a module lock, which keeps results independent of how many combinations run at
once.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flamenco_core.errors import EXIT_USAGE, FlamencoError
from flamenco_core.labeling.constants import ABSTAIN, LABEL_DTYPE
from flamenco_core.labeling.spec import LFPack, LFSpec, SpecError, combine_packs
from flamenco_core.outputs import atomic_write_parquet, atomic_write_text, json_ready

#: Where the defaults live in a checkout (the pydantic defaults below equal them).
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[2] / "conf" / "flow_records.yaml"

#: Internal columns of the prepared frames: the row's position in the input, and its gold class name.
ROW = "__row"
GOLD = "__gold"
SPLITS = ("train", "validation", "test")
#: Columns copied to ``labels.parquet`` (where present) so labels join back to the flows.
KEY_COLUMNS = ("timestamp", "src", "dst", "src_port", "dst_port", "protocol")
OUTCOMES = ("ok", "skipped", "failed")
REPORT_VERSION = 1
WORK_DIR = "work"

# Serializes torch-backed fits (Snorkel's LabelModel, the LSTM): see the module docstring.
_TORCH_LOCK = threading.Lock()


class PreparationError(FlamencoError):
    """The experiment cannot start (no ground truth, too few rows to split, bad configuration); exit 1."""


class PackMismatch(PreparationError):
    """An LF pack does not fit the data (a feature that is not a column, or not numeric): found before
    any combination runs, so one error replaces a failure per combination; exit 2 (bad input)."""

    exit_code = EXIT_USAGE


# ====================================================================================================
# configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Strict):
    """Fractions of the stratified splits: ``test`` of all labeled rows, ``validation`` of the rest."""

    test: float = Field(0.2, gt=0, lt=1)
    validation: float = Field(0.2, gt=0, lt=1)


class GroundTruthConfig(_Strict):
    """Where gold labels come from. ``mapping`` maps raw labels to classes (case-insensitive);
    ``default`` is the class of every other raw label (CIC-DDoS2019 names each attack), ``None`` makes
    them unknown: ``unknown: drop`` drops those rows (counted), ``fail`` stops the experiment.
    ``closed`` and ``tz`` apply to alert windows."""

    column: str = "label"
    mapping: dict[str, str] = Field(default_factory=lambda: {"BENIGN": "benign"})
    default: Optional[str] = "attack"
    unknown: Literal["drop", "fail"] = "drop"
    closed: Literal["both", "left"] = "both"
    tz: str = "UTC"


class LabelModelConfig(_Strict):
    """``kind``: ``snorkel`` (with the majority-vote fallback under 3 LFs) or ``majority``; ``params``
    go to Snorkel's LabelModel."""

    kind: Literal["snorkel", "majority"] = "snorkel"
    params: dict[str, Any] = Field(default_factory=lambda: {"n_epochs": 100, "lr": 0.01})


def _default_lstm() -> dict[str, Any]:
    return {"window": 10, "hidden": 32, "epochs": 3, "batch_size": 256, "lr": 0.003, "class_weight": "balanced",
            "patience": 2}


def _default_forest() -> dict[str, Any]:
    return {"n_iter": 3, "n_splits": 3, "class_weight": "balanced",
            "param_distributions": {"n_estimators": [25, 50], "max_depth": [5, None], "bootstrap": [True]}}


class ModelConfig(_Strict):
    """The end classifier: ``kind`` (``lstm`` or ``random_forest``; aliases ``forest``, ``rf``) and the
    constructor parameters of each (small budgets by default, for speed)."""

    kind: Literal["lstm", "random_forest"] = "lstm"
    lstm: dict[str, Any] = Field(default_factory=_default_lstm)
    random_forest: dict[str, Any] = Field(default_factory=_default_forest)

    @field_validator("kind", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return {"forest": "random_forest", "rf": "random_forest"}.get(str(v).lower(), v) if isinstance(v, str) else v

    def params(self) -> dict[str, Any]:
        """Constructor parameters of the chosen kind."""
        return dict(self.lstm if self.kind == "lstm" else self.random_forest)


class ImportanceConfig(_Strict):
    """Feature importance that orders tree nodes: a seeded random forest's ``impurity`` or
    ``permutation`` importance on the training split."""

    method: Literal["impurity", "permutation"] = "impurity"
    n_estimators: int = Field(100, ge=1)


class TreeConfig(_Strict):
    max_nodes: int = Field(20_000, ge=1)
    png: bool = True


class FlowRecordsConfig(_Strict):
    """Every setting of a flow-records experiment (defaults: ``conf/flow_records.yaml``)."""

    seed: int = 0
    dataset: Optional[str] = None
    splits: SplitConfig = Field(default_factory=SplitConfig)
    ground_truth: GroundTruthConfig = Field(default_factory=GroundTruthConfig)
    label_model: LabelModelConfig = Field(default_factory=LabelModelConfig)
    filter_unlabeled: bool = True
    single_class: Literal["negative", "skip"] = "negative"
    model: ModelConfig = Field(default_factory=ModelConfig)
    classifier_features: Union[Literal["selected", "lf"], list[str]] = "selected"
    feature_selection: dict[str, Any] = Field(default_factory=lambda: {"drop_constant": True, "rank": False})
    importance: ImportanceConfig = Field(default_factory=ImportanceConfig)
    abstain: Literal["negative", "exclude", "wrong"] = "negative"
    sample_fraction: float = Field(0.2, gt=0, le=1)
    correlation: Literal["pearson", "spearman"] = "pearson"
    tree: TreeConfig = Field(default_factory=TreeConfig)
    plots: bool = True
    runner: Union[None, Literal["threads", "processes", "dask"], dict[str, Any]] = Field(
        None, description="the per-combination fan-out's task runner: a kind, or {kind, workers, address}")

    @field_validator("feature_selection")
    @classmethod
    def _check_selection(cls, v: dict[str, Any]) -> dict[str, Any]:
        from flamenco_core.preprocess.feature_selection import FeatureSelectionConfig

        blocked = sorted(set(v) & {"features", "label"})
        if blocked:
            raise ValueError(f"feature_selection sets {blocked} itself (use classifier_features)")
        FeatureSelectionConfig.from_mapping(v).validate()
        return v


def _read_mapping(source: Union[str, Path]) -> dict[str, Any]:
    import yaml

    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return data


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_config(*overrides: Any, defaults: Union[str, Path, None] = None) -> FlowRecordsConfig:
    """The configuration: ``defaults`` (default ``conf/flow_records.yaml`` when the checkout has it, else
    the model's defaults, which are the same), then each override deep-merged in order. An override is
    ``None`` (skipped), a mapping, a YAML file, or a :class:`FlowRecordsConfig` (its explicitly set
    fields). Invalid settings raise ``ValueError`` naming them."""
    base = Path(defaults) if defaults is not None else DEFAULT_CONFIG_FILE
    data: dict[str, Any] = _read_mapping(base) if (defaults is not None or base.is_file()) else {}
    for o in overrides:
        if o is None:
            continue
        if isinstance(o, FlowRecordsConfig):
            o = o.model_dump(mode="json", exclude_unset=True)
        elif isinstance(o, (str, Path)):
            o = _read_mapping(o)
        elif not isinstance(o, Mapping):
            raise TypeError(f"a config override is a mapping, a YAML path or a FlowRecordsConfig, not {type(o).__name__}")
        data = _deep_merge(data, o)
    try:
        return FlowRecordsConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid flow-records config: {_validation_text(exc)}") from None


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())


# ====================================================================================================
# experiment files


class CombinationEntry(_Strict):
    """One combination in an experiment file: LF references and an optional display name."""

    name: Optional[str] = Field(None, min_length=1, max_length=200)
    lfs: list[str] = Field(min_length=1)


class ExperimentFile(_Strict):
    """An experiment file (YAML)::

        experiment: cic-ntp-single-feature
        dataset: cicddos2019-ntp          # optional: name in tables and MLflow tags
        combinations:                     # omitted: the default experiment
          - [src_port_le_6600_attack]                     # one LF
          - [cic-ntp:src_port_le_6600_attack, worf:src_port_eq_123_attack]   # pack:lf across packs
          - {name: all-sizes, lfs: [bytes_le_p75_benign, bytes_le_mean_benign]}
        include_default: false            # true: the default combinations first, then these
        config: {classifier_features: lf} # overrides of conf/flow_records.yaml

    An LF is named ``pack:lf`` or by its plain name when that is unique across the packs given. The
    default experiment is every single LF, every pair and the whole pack (the union of the packs); the
    whole pack is always run, since it produces ``labels.parquet``.
    """

    experiment: str = Field("default", min_length=1, max_length=200)
    description: Optional[str] = None
    dataset: Optional[str] = None
    combinations: Optional[list[Union[list[str], CombinationEntry, str]]] = None
    include_default: bool = False
    config: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<experiment>") -> "ExperimentFile":
        """Validate a mapping; ``ValueError`` names the source and the bad fields."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: an experiment file is a mapping (experiment, combinations, ...)")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ValueError(f"{source}: invalid experiment file: {_validation_text(exc)}") from None

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "ExperimentFile":
        """Load an experiment file (``yaml.safe_load`` only)."""
        return cls.from_dict(_read_mapping(path), str(path))


def load_experiment(source: Union[str, Path, Mapping, ExperimentFile, None]) -> Optional[ExperimentFile]:
    """An :class:`ExperimentFile` from a path, a mapping or itself; ``None`` stays ``None`` (default experiment)."""
    if source is None or isinstance(source, ExperimentFile):
        return source
    if isinstance(source, Mapping):
        return ExperimentFile.from_dict(source)
    return ExperimentFile.from_yaml(source)


def load_packs(sources: Iterable[Union[str, Path, LFPack]]) -> list[LFPack]:
    """LF packs from YAML/JSON files (or packs); a :class:`SpecError` names the file."""
    out = []
    for s in sources:
        if isinstance(s, LFPack):
            out.append(s)
            continue
        path = Path(s)
        try:
            out.append(LFPack.from_json(path) if path.suffix.lower() == ".json" else LFPack.from_yaml(path))
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None
    if not out:
        raise SpecError("no LF packs given")
    return out


# ====================================================================================================
# LF catalog: the union of the packs, with references


@dataclass(frozen=True)
class LFEntry:
    """One LF of the run: ``name`` (unique in the run: a label-matrix column), ``ref`` (``pack:lf`` as
    written), its ``pack``, its ``group`` (the LF's, else the pack's group, else the pack's name) and
    its ``spec`` (named ``name``)."""

    name: str
    ref: str
    pack: str
    group: str
    spec: LFSpec

    @property
    def features(self) -> list[str]:
        """Features the LF reads, in the order its conditions name them."""
        return _ordered_features([self.spec])


def _ordered_features(specs: Iterable[LFSpec]) -> list[str]:
    from flamenco_core.labeling.expr import parse_expression

    out: list[str] = []
    for spec in specs:
        for c in spec.when:
            out.append(c.feature)
            for v in c.values:
                if isinstance(v, str):
                    out.extend(f for f, _ in parse_expression(v).statistics(c.feature))
    return list(dict.fromkeys(out))


@dataclass
class Catalog:
    """The LFs of all packs (union via :func:`~flamenco_core.labeling.spec.combine_packs`: an LF whose
    content another pack already has is an alias of it; a name clash with different content is renamed
    ``name__group``), and how experiment files may refer to them."""

    packs: list[LFPack]
    classes: list[str]
    entries: list[LFEntry]
    aliases: dict[str, str]
    combine_report: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The run's LF names, in pack order (the label matrices' columns)."""
        return [e.name for e in self.entries]

    def entry(self, name: str) -> LFEntry:
        """The entry of a run LF name."""
        return self.entries[self.index(name)]

    def index(self, name: str) -> int:
        """Column of a run LF name in the label matrices (``KeyError`` when unknown)."""
        for i, e in enumerate(self.entries):
            if e.name == name:
                return i
        raise KeyError(name)

    def resolve(self, ref: str) -> str:
        """The run's LF name for ``ref`` (``pack:lf``, or a plain LF name unique across the packs).
        ``KeyError`` with a message for unknown or ambiguous names."""
        ref = str(ref).strip()
        if ":" in ref:
            if ref in self.aliases:
                return self.aliases[ref]
            pack = ref.rsplit(":", 1)[0]
            known = sorted(self.aliases)
            hint = difflib.get_close_matches(ref, known, n=3)
            if pack not in {p.name for p in self.packs}:
                raise KeyError(f"unknown LF {ref!r}: no pack named {pack!r} (packs: {', '.join(p.name for p in self.packs)})")
            raise KeyError(f"unknown LF {ref!r}" + (f"; did you mean {', '.join(hint)}?" if hint else ""))
        matches = {e.name for e in self.entries if e.name == ref}
        matches |= {target for alias, target in self.aliases.items() if alias.rsplit(":", 1)[1] == ref}
        if len(matches) == 1:
            return matches.pop()
        if len(matches) > 1:
            refs = sorted(a for a, t in self.aliases.items() if a.rsplit(":", 1)[1] == ref)
            raise KeyError(f"LF name {ref!r} is ambiguous across packs; write one of {', '.join(refs)}")
        plain = sorted({a.rsplit(":", 1)[1] for a in self.aliases} | set(self.names))
        hint = difflib.get_close_matches(ref, plain, n=3)
        raise KeyError(f"unknown LF {ref!r}" + (f"; did you mean {', '.join(hint)}?" if hint else ""))

    def pack_of(self, names: Sequence[str], name: str = "combination") -> LFPack:
        """A pack holding the LFs ``names`` (in that order) with the run's classes."""
        return LFPack.from_dict({
            "pack": name,
            "classes": list(self.classes),
            "lfs": [self.entry(n).spec.model_dump(mode="json", exclude_none=True) for n in names],
        })

    def features(self, names: Optional[Sequence[str]] = None) -> list[str]:
        """Features read by the LFs ``names`` (default: all), in order of appearance."""
        names = self.names if names is None else names
        return _ordered_features(self.entry(n).spec for n in names)


def build_catalog(packs: Sequence[LFPack]) -> Catalog:
    """The run's LF catalog from ``packs`` (their classes must be the same set; pack names distinct)."""
    packs = list(packs)
    if not packs:
        raise SpecError("no LF packs given")
    seen: set[str] = set()
    for p in packs:
        if p.name in seen:
            raise SpecError(f"two packs are named {p.name!r}; pack names must be distinct to refer to their LFs")
        seen.add(p.name)
    union, report = combine_packs(packs, name="+".join(p.name for p in packs))
    renamed = {(p, a): b for p, a, b in report.renamed}
    dropped = {(dp, d): k for k, _kp, d, dp, _h in report.duplicates}
    entries: list[LFEntry] = []
    aliases: dict[str, str] = {}
    for p in packs:
        for lf in p.lfs:
            ref = f"{p.name}:{lf.name}"
            if (p.name, lf.name) in dropped:
                aliases[ref] = dropped[(p.name, lf.name)]
                continue
            name = renamed.get((p.name, lf.name), lf.name)
            spec = union.lf(name)
            entries.append(LFEntry(name, ref, p.name, spec.group or p.group or p.name, spec))
            aliases[ref] = name
    return Catalog(packs, list(union.classes), entries, aliases, report.to_dict())


# ====================================================================================================
# combinations


@dataclass
class Combination:
    """One LF combination to evaluate: run LF names (``lfs``), the references as written (``refs``), an
    optional display ``label``, its ``role`` (``"whole_pack"`` produces ``labels.parquet``) and an
    ``error`` when the experiment file's entry could not be resolved (the combination then fails)."""

    index: int
    lfs: tuple[str, ...]
    refs: tuple[str, ...]
    label: Optional[str] = None
    role: str = "experiment"
    error: Optional[str] = None

    @property
    def name(self) -> str:
        """LF names joined by " + " (the tables' key)."""
        return " + ".join(self.lfs or self.refs)

    @property
    def slug(self) -> str:
        """A file-system-safe, unique folder/file stem."""
        text = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label or "+".join(self.lfs or self.refs)).strip("_.")
        return f"c{self.index:03d}-{text[:60] or 'combination'}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a Prefect task receives)."""
        return {"index": self.index, "lfs": list(self.lfs), "refs": list(self.refs), "label": self.label,
                "role": self.role, "error": self.error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Combination":
        """Inverse of :meth:`to_dict`."""
        return cls(int(d["index"]), tuple(d.get("lfs") or ()), tuple(d.get("refs") or ()), d.get("label"),
                   d.get("role", "experiment"), d.get("error"))


def default_combinations(catalog: Catalog) -> list[Combination]:
    """Every single LF, every pair, and the whole pack (when it has more than two LFs; with one or two
    LFs the whole pack is already in the list and is marked as such)."""
    names = catalog.names
    tuples: list[tuple[str, ...]] = [(n,) for n in names] + list(itertools.combinations(names, 2))
    if len(names) > 2:
        tuples.append(tuple(names))
    return _numbered(catalog, [(t, tuple(catalog.entry(n).ref for n in t), None, None) for t in tuples])


def _numbered(catalog: Catalog, items: list[tuple]) -> list[Combination]:
    whole = frozenset(catalog.names)
    out = []
    for i, (lfs, refs, label, error) in enumerate(items):
        role = "whole_pack" if error is None and frozenset(lfs) == whole else "experiment"
        out.append(Combination(i, tuple(lfs), tuple(refs), label, role, error))
    return out


def experiment_combinations(experiment: Optional[ExperimentFile], catalog: Catalog) -> tuple[list[Combination], list[str]]:
    """The combinations of ``experiment`` (``None``: :func:`default_combinations`) and notes.

    Entries that name an unknown or ambiguous LF, or one LF twice, become combinations with an
    ``error`` (they fail; the others run). A repeated set of LFs is run once (noted). The whole pack is
    appended when the file does not list it.
    """
    if experiment is None or experiment.combinations is None:
        return default_combinations(catalog), []
    items: list[tuple] = []
    notes: list[str] = []
    seen: dict[frozenset, int] = {}
    raw: list[Any] = []
    if experiment.include_default:
        raw.extend([list(c.refs) for c in default_combinations(catalog)])
    raw.extend(experiment.combinations)
    for pos, entry in enumerate(raw):
        if isinstance(entry, CombinationEntry):
            refs, label = list(entry.lfs), entry.name
        elif isinstance(entry, str):
            refs, label = [entry], None
        else:
            refs, label = list(entry), None
        if not refs:
            items.append(((), (), label, "a combination needs at least one LF"))
            continue
        try:
            names = tuple(catalog.resolve(r) for r in refs)
        except KeyError as exc:
            items.append(((), tuple(refs), label, str(exc.args[0]) if exc.args else str(exc)))
            continue
        if len(set(names)) != len(names):
            items.append((names, tuple(refs), label, f"combination {refs} names an LF twice"))
            continue
        key = frozenset(names)
        if key in seen:
            notes.append(f"combination {refs} repeats entry {seen[key]}; run once")
            continue
        seen[key] = len(items)
        items.append((names, tuple(refs), label, None))
    if frozenset(catalog.names) not in seen:
        items.append((tuple(catalog.names), tuple(e.ref for e in catalog.entries), "whole-pack", None))
    return _numbered(catalog, items), notes


# ====================================================================================================
# preparation


@dataclass
class Prepared:
    """Everything the combinations share. ``frames`` holds ``train``, ``validation``, ``test`` (time
    ordered) and ``unlabeled`` (rows without a gold class), each with the data's columns plus ``__row``
    (position in the input) and ``__gold`` (class name). Derived parts (statistics, label matrices, LF
    errors, thresholds, correlations, constant features) are recomputed by :meth:`load` from the frames,
    deterministically; importance (a forest) is stored."""

    config: FlowRecordsConfig
    catalog: Catalog
    combinations: list[Combination]
    frames: dict[str, pd.DataFrame]
    importance: dict[str, float]
    classifier_features: Optional[list[str]]
    meta: dict[str, Any]
    display_names: dict[str, str] = field(default_factory=dict)
    experiment: str = "default"
    dataset: str = "flows"
    stats: Any = None
    L: dict[str, np.ndarray] = field(default_factory=dict)
    lf_errors: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    corr: dict[str, pd.DataFrame] = field(default_factory=dict)
    constant: dict[str, str] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Class names; a class's index is its position."""
        return list(self.catalog.classes)

    def y(self, split: str) -> np.ndarray:
        """Gold class indices of a split (int64)."""
        codes = pd.Categorical(self.frames[split][GOLD].astype(object), categories=self.classes).codes
        return np.asarray(codes, dtype=np.int64)

    def columns(self, names: Sequence[str]) -> list[int]:
        """Label-matrix columns of the LFs ``names``."""
        return [self.catalog.index(n) for n in names]

    # ------------------------------------------------------------------ persistence

    def save(self, work_dir: Union[str, Path]) -> Path:
        """Write the frames (Parquet) and ``prepared.json``; :meth:`load` rebuilds the rest."""
        work = Path(work_dir)
        (work / "frames").mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            atomic_write_parquet(frame, work / "frames" / f"{name}.parquet", index=False)
        state = {
            "version": REPORT_VERSION,
            "experiment": self.experiment,
            "dataset": self.dataset,
            "config": self.config.model_dump(mode="json"),
            "packs": [p.to_dict() for p in self.catalog.packs],
            "combinations": [c.to_dict() for c in self.combinations],
            "importance": self.importance,
            "classifier_features": self.classifier_features,
            "display_names": self.display_names,
            "meta": self.meta,
        }
        atomic_write_text(work / "prepared.json", json.dumps(json_ready(state), indent=1))
        return work

    @classmethod
    def load(cls, work_dir: Union[str, Path]) -> "Prepared":
        """Read what :meth:`save` wrote and recompute the derived parts."""
        work = Path(work_dir)
        state = json.loads((work / "prepared.json").read_text())
        packs = [LFPack.from_dict(p) for p in state["packs"]]
        frames = {name: pd.read_parquet(work / "frames" / f"{name}.parquet") for name in (*SPLITS, "unlabeled")}
        prep = cls(
            config=FlowRecordsConfig.model_validate(state["config"]),
            catalog=build_catalog(packs),
            combinations=[Combination.from_dict(c) for c in state["combinations"]],
            frames=frames,
            importance={k: float(v) for k, v in (state.get("importance") or {}).items()},
            classifier_features=state.get("classifier_features"),
            meta=state.get("meta") or {},
            display_names=state.get("display_names") or {},
            experiment=state.get("experiment", "default"),
            dataset=state.get("dataset", "flows"),
        )
        _derive(prep)
        return prep


def read_input(path: Union[str, Path], fmt: str, out_dir: Union[str, Path]) -> tuple[pd.DataFrame, dict[str, str], dict[str, Any]]:
    """Ingest one input file (:func:`~flamenco_core.ingest.pipeline.ingest`: cleaning, accounting) into
    ``out_dir`` and read the canonical table back: ``(frame, display names, ingest report)``."""
    from flamenco_core.ingest.pipeline import ingest, read_canonical

    report = ingest([path], fmt, out_dir)
    if report.data_path is None:
        raise PreparationError(f"{path}: no rows survived ingest ({report.to_dict()['dropped']} dropped, "
                               f"{report.quarantined} quarantined)")
    df, names = read_canonical(report.data_path)
    return df, names, report.to_dict()


def _numeric(frame: pd.DataFrame, col: str) -> bool:
    dt = frame[col].dtype
    return bool(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))


def _ground_truth(df: pd.DataFrame, gcfg: GroundTruthConfig, classes: list[str], alerts: Any) -> tuple[pd.Series, dict[str, Any]]:
    from flamenco_core.preprocess.ground_truth import AlertWindowError, labels_from_alerts, labels_from_column

    if alerts is not None:
        if len(classes) != 2:
            raise PreparationError(f"alert windows label two classes; the packs have {classes}")
        try:
            gt = labels_from_alerts(df, alerts, positive=classes[1], negative=classes[0], closed=gcfg.closed, tz=gcfg.tz)
        except (AlertWindowError, KeyError, ValueError) as exc:
            raise PreparationError(f"alert windows: {exc.args[0] if exc.args else exc}") from None
        report = dict(gt.report)
        if gcfg.column in df.columns:
            report["label_column_ignored"] = gcfg.column
        return gt.labels, report
    source = df
    unknown: dict[str, int] = {}
    try:
        from flamenco_core.preprocess.ground_truth import _find_column

        col = _find_column(df, gcfg.column)
    except KeyError:
        raise PreparationError(f"no ground truth: the data has no {gcfg.column!r} column and no alert windows were "
                               "given (--alerts)") from None
    if gcfg.default is None:
        text = df[col].astype("string").str.strip()
        known = {str(k).strip().lower() for k in gcfg.mapping} | {c.lower() for c in classes}
        mask = (text.notna() & (text != "") & ~text.str.lower().isin(known)).fillna(False).to_numpy(dtype=bool)
        if mask.any():
            unknown = {str(k): int(v) for k, v in text[mask].value_counts().items()}
            listed = ", ".join(f"{k!r} ({v} rows)" for k, v in list(unknown.items())[:10])
            if gcfg.unknown == "fail":
                raise PreparationError(f"label column {col!r} holds labels with no class: {listed}")
            source = pd.DataFrame({col: text.mask(mask)}, index=df.index)
    try:
        gt = labels_from_column(source, col, mapping=gcfg.mapping, default=gcfg.default, classes=classes)
    except ValueError as exc:
        raise PreparationError(f"ground truth: {exc}") from None
    report = dict(gt.report)
    report["unknown_labels"] = unknown
    report["unknown_rows"] = int(sum(unknown.values()))
    return gt.labels, report


def prepare(
    data: pd.DataFrame,
    packs: Sequence[Union[LFPack, str, Path]],
    config: Any = None,
    experiment: Union[ExperimentFile, str, Path, Mapping, None] = None,
    *,
    alerts: Any = None,
    display_names: Optional[Mapping[str, str]] = None,
    sources: Optional[Mapping[str, Any]] = None,
    out_dir: Union[str, Path, None] = None,
) -> Prepared:
    """Ground truth, splits, statistics, LF votes, importance and features for one experiment.

    ``config`` overrides (mapping, YAML path or :class:`FlowRecordsConfig`) apply over the experiment
    file's ``config``, which applies over the defaults. ``alerts`` (a file, frame or records) replaces the
    label column as ground truth. ``sources`` (input files, hashes) is recorded as is. With ``out_dir`` the
    training-split profile (``profile_train.csv``, for LF writers) and the work folder are written there.
    Raises :class:`PreparationError` when the experiment cannot start.
    """
    from flamenco_core.preprocess.feature_selection import (
        NON_FEATURES,
        feature_importance,
        numeric_features,
        select_features,
        write_profile_csv,
    )
    from flamenco_core.preprocess.splits import stratified_splits
    from flamenco_core.labeling.audit import is_identifier_feature

    t0 = time.perf_counter()
    pack_list = load_packs(packs)
    catalog = build_catalog(pack_list)
    check_packs(packs, pack_list, data)
    exp = load_experiment(experiment)
    try:
        cfg = load_config(exp.config if exp else None, config)
    except ValueError as exc:
        raise PreparationError(str(exc)) from None
    combos, notes = experiment_combinations(exp, catalog)
    classes = catalog.classes
    gcol = cfg.ground_truth.column
    for reserved in (ROW, GOLD):
        if reserved in data.columns:
            raise PreparationError(f"the data has a column named {reserved!r}, which the pipeline reserves")

    df = data.reset_index(drop=True).copy()
    df[ROW] = np.arange(len(df), dtype=np.int64)
    gold, gt_report = _ground_truth(df, cfg.ground_truth, classes, alerts)
    df[GOLD] = gold.to_numpy()
    has_gold = gold.notna().to_numpy()
    labeled, unlabeled = df[has_gold], df[~has_gold]
    if labeled.empty:
        raise PreparationError(f"no row has a ground-truth class ({gt_report.get('counts')})")
    time_col = "timestamp" if "timestamp" in df.columns else None
    try:
        splits = stratified_splits(labeled, GOLD, test=cfg.splits.test, validation=cfg.splits.validation,
                                   seed=cfg.seed, time_col=time_col)
    except ValueError as exc:
        raise PreparationError(f"cannot split: {exc}") from None
    frames = {"train": splits.train, "validation": splits.validation, "test": splits.test,
              "unlabeled": _time_sorted(unlabeled, time_col)}
    train = frames["train"]
    skip = set(NON_FEATURES) | {gcol, ROW, GOLD}
    lf_feats = [f for f in catalog.features() if f in train.columns and _numeric(train, f) and f not in skip]

    importance: dict[str, float] = {}
    importance_note = f"{cfg.importance.method} importance of a seeded random forest on the training split (ground truth)"
    if lf_feats:
        try:
            table = feature_importance(train, train[GOLD].astype(str), lf_feats, methods=(cfg.importance.method,),
                                       seed=cfg.seed, n_estimators=cfg.importance.n_estimators)
            importance = {f: float(table.loc[f, cfg.importance.method]) for f in lf_feats}
        except ValueError as exc:
            importance_note = f"not computed ({exc}); trees keep the LFs' order"

    selection: dict[str, Any] = {}
    classifier_features: Optional[list[str]]
    if cfg.classifier_features == "selected":
        candidates = numeric_features(train, skip)
        ids = [c for c in candidates if is_identifier_feature(c)]
        candidates = [c for c in candidates if c not in ids]
        sel = select_features(train, {**cfg.feature_selection, "features": candidates, "label": None})
        classifier_features = sel.selected
        selection = sel.to_dict()
        selection["dropped"].update({c: "identifier (addresses, ids, times): would memorize, not generalize" for c in ids})
    elif cfg.classifier_features == "lf":
        classifier_features = None
    else:
        missing = [f for f in cfg.classifier_features if f not in train.columns or not _numeric(train, f)]
        if missing:
            raise PreparationError(f"classifier_features not numeric columns of the data: {missing}")
        classifier_features = list(cfg.classifier_features)

    dataset = cfg.dataset or (exp.dataset if exp and exp.dataset else None) or str((sources or {}).get("dataset") or "flows")
    prep = Prepared(
        config=cfg, catalog=catalog, combinations=combos, frames=frames, importance=importance,
        classifier_features=classifier_features, meta={}, display_names=dict(display_names or {}),
        experiment=exp.experiment if exp else "default", dataset=dataset,
    )
    _derive(prep)
    prep.meta = {
        "sources": json_ready(dict(sources or {})),
        "rows": {"input": int(len(df)), "labeled": int(has_gold.sum()), "unlabeled": int((~has_gold).sum()),
                 **{k: int(len(v)) for k, v in frames.items()}},
        "ground_truth": gt_report,
        "splits": splits.meta,
        "packs": [{"pack": p.name, "version": p.version, "group": p.group, "content_hash": p.content_hash,
                   "lfs": p.lf_names} for p in pack_list],
        "combine": catalog.combine_report,
        "lfs": [{"name": e.name, "ref": e.ref, "pack": e.pack, "group": e.group, "label": e.spec.label,
                 "features": e.features} for e in catalog.entries],
        "lf_errors": dict(prep.lf_errors),
        "statistics_source": "training split",
        "statistics": prep.stats.used(),
        "thresholds": prep.thresholds,
        "constant_features": dict(prep.constant),
        "importance": importance,
        "importance_source": importance_note,
        "classifier_features": cfg.classifier_features if classifier_features is None else classifier_features,
        "feature_selection": selection,
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if out_dir is not None:
        out = Path(out_dir)
        profile_feats = numeric_features(train, skip)
        if profile_feats:
            write_profile_csv(train, out / "profile_train.csv", profile_feats)
        prep.save(out / WORK_DIR)
    return prep


def check_packs(sources: Sequence[Any], packs: Sequence[LFPack], data: pd.DataFrame) -> None:
    """Raise :class:`PackMismatch` when a pack reads a feature the data lacks (with "did you mean") or
    one that is not numeric: one line naming the pack file, the LF and the feature, and how many more
    problems there are."""
    from flamenco_core.labeling.applier import pack_problems

    problems: list[str] = []
    for src, pack in zip(sources, packs):
        where = "" if isinstance(src, LFPack) else f"{src}: "
        problems += [f"{where}{p}" for p in pack_problems(pack, data)]
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise PackMismatch(problems[0] + more)


def _time_sorted(frame: pd.DataFrame, time_col: Optional[str]) -> pd.DataFrame:
    return frame.sort_values(time_col, kind="stable") if time_col is not None else frame


def _derive(prep: Prepared) -> None:
    """Statistics of train, per-LF votes on every frame, LF errors, thresholds, correlations, constants."""
    from flamenco_core.labeling.applier import apply_lfs
    from flamenco_core.labeling.stats import DataStatistics
    from flamenco_core.preprocess.feature_selection import constant_features, correlations

    train = prep.frames["train"]
    stats = DataStatistics(train)
    m = len(prep.catalog.entries)
    L = {name: np.full((len(f), m), ABSTAIN, dtype=LABEL_DTYPE) for name, f in prep.frames.items()}
    errors: dict[str, str] = {}
    thresholds: dict[str, Any] = {}
    for j, entry in enumerate(prep.catalog.entries):
        # one LF at a time: an LF that cannot run fails alone
        one = prep.catalog.pack_of([entry.name], entry.pack)
        try:
            col, meta = apply_lfs(one, train, stats=stats, return_meta=True)
        except (SpecError, TypeError, ValueError) as exc:
            errors[entry.name] = f"{type(exc).__name__}: {exc}"
            continue
        L["train"][:, j] = col[:, 0]
        thresholds[entry.name] = meta.thresholds[entry.name]
        for name, frame in prep.frames.items():
            if name != "train":
                L[name][:, j] = apply_lfs(one, frame, stats=stats)[:, 0]
    skip = {prep.config.ground_truth.column, ROW, GOLD}
    feats = [f for f in prep.catalog.features() if f in train.columns and _numeric(train, f) and f not in skip]
    prep.stats = stats
    prep.L = L
    prep.lf_errors = errors
    prep.thresholds = thresholds
    prep.constant = constant_features(train, feats) if feats else {}
    prep.corr = correlations(train, feats) if feats else {}
    used = set(prep.classifier_features or []) | set(feats)
    prep.medians = {f: _finite_median(train[f]) for f in used if f in train.columns and _numeric(train, f)}


def _finite_median(s: pd.Series) -> float:
    v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else 0.0


# ====================================================================================================
# one combination


def _matrix(prep: Prepared, frame: pd.DataFrame, features: Sequence[str]) -> tuple[np.ndarray, int]:
    """Classifier input: float64 features, non-finite values replaced by the training median (counted)."""
    X = np.column_stack([frame[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features]) if features else np.empty((len(frame), 0))
    bad = ~np.isfinite(X)
    n_bad = int(bad.sum())
    if n_bad:
        med = np.array([prep.medians.get(f, 0.0) for f in features])
        X = np.where(bad, med[None, :], X)
    return X, n_bad


def _winners(P: np.ndarray) -> set[int]:
    """Classes that are the strict most probable class of at least one row."""
    if len(P) == 0:
        return set()
    top = P.max(axis=1)
    strict = (P == top[:, None]).sum(axis=1) == 1
    return set(np.unique(P[strict].argmax(axis=1)).tolist())


def _training_targets(cfg: FlowRecordsConfig, L: np.ndarray, P: np.ndarray, classes: list[str]) -> tuple[Optional[np.ndarray], np.ndarray, dict[str, Any], Optional[str]]:
    """Rows and soft targets the classifier trains on: ``(keep mask or None, targets, info, skip reason)``."""
    from flamenco_core.labeling.label_model import filter_unlabeled, labeled_mask

    n = len(L)
    covered = labeled_mask(L) if n else np.zeros(0, dtype=bool)
    rows = np.arange(n)
    kept = filter_unlabeled(rows, P, L, enabled=cfg.filter_unlabeled)
    keep = np.zeros(n, dtype=bool)
    keep[np.asarray(kept.X, dtype=np.int64)] = True
    targets = P.copy()
    info: dict[str, Any] = {"rows": int(n), "covered": int(covered.sum()), "dropped_unlabeled": int(kept.dropped),
                            "single_class_fallback": None}
    if not covered.any():
        return None, targets, info, "the LFs vote on no training row: no labels to train the classifier on"
    winners = _winners(targets[keep])
    if len(winners) < 2 and cfg.single_class == "negative" and (~covered).any():
        # the rule the LFs state ("port <= 6600 means attack") says nothing of other rows; LF F1 reads
        # them as the negative class, and so does the training set here
        neg = 0
        targets[~covered] = 0.0
        targets[~covered, neg] = 1.0
        keep = np.ones(n, dtype=bool)
        only = classes[next(iter(winners))] if winners else "none"
        info["single_class_fallback"] = (f"the LFs' labels on training rows hold one class ({only}); the "
                                         f"{int((~covered).sum())} rows no LF voted on are read as {classes[neg]}")
        info["dropped_unlabeled"] = 0
        winners = _winners(targets)
    if len(winners) < 2:
        only = ", ".join(classes[w] for w in sorted(winners)) or "none"
        if cfg.single_class == "skip" or not winners:
            return None, targets, info, f"training labels hold one class ({only}): a classifier needs two"
        # nothing to tell classes apart: the only model these labels support predicts their one class
        info["constant_class"] = next(iter(winners))
        info["single_class_fallback"] = ((info["single_class_fallback"] + "; ") if info["single_class_fallback"] else "") + (
            f"the training labels hold one class ({only}) even so: the classifier is the constant {only}")
    info["train_rows"] = int(keep.sum())
    info["class_mass"] = {c: float(targets[keep, i].sum()) for i, c in enumerate(classes)}
    return keep, targets, info, None


class ConstantClassifier:
    """The model labels of one class support: that class everywhere (scikit-learn's "most frequent"
    dummy), so a combination whose LFs vote one class still gets a classifier F1 (0 for the positive
    class when that class is the negative one), as its LF F1 does."""

    def __init__(self, label: int) -> None:
        self.classes_ = np.array([int(label)])

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.ones((len(X), 1))


def _fit_classifier(prep: Prepared, X: np.ndarray, P: np.ndarray, X_val: Optional[np.ndarray], P_val: Optional[np.ndarray],
                    constant: Optional[int] = None):
    from flamenco_core.models.select import build_model

    if constant is not None:
        return ConstantClassifier(constant)
    cfg = prep.config
    est = build_model(cfg.model.kind, cfg.model.params(), seed=cfg.seed)
    kwargs: dict[str, Any] = {}
    if cfg.model.kind == "lstm" and X_val is not None and len(X_val):
        kwargs = {"X_val": X_val, "y_val": P_val}
    lock = _TORCH_LOCK if cfg.model.kind == "lstm" else contextlib.nullcontext()
    with lock:
        est.fit(X, P, **kwargs)
    return est


def _predict(est: Any, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and an (n, k) probability matrix in class-index order."""
    proba = np.asarray(est.predict_proba(X), dtype=np.float64)
    cls = np.asarray(est.classes_, dtype=np.int64)
    full = np.zeros((len(X), k))
    full[:, cls] = proba
    return full.argmax(axis=1).astype(np.int64), full


def _base_record(prep: Prepared, combo: Combination) -> dict[str, Any]:
    entries = [prep.catalog.entry(n) for n in combo.lfs if n in prep.catalog.names]
    return {
        "index": combo.index,
        "combination": combo.name,
        "label": combo.label,
        "slug": combo.slug,
        "role": combo.role,
        "lfs": list(combo.lfs) if combo.lfs else list(combo.refs),
        "refs": list(combo.refs),
        "n_lfs": len(combo.lfs or combo.refs),
        "groups": list(dict.fromkeys(e.group for e in entries)),
        "packs": list(dict.fromkeys(e.pack for e in entries)),
        "features": prep.catalog.features([e.name for e in entries]) if entries else [],
        "dataset": prep.dataset,
        "experiment": prep.experiment,
        "outcome": "ok",
        "reason": "",
        "error": None,
        "notes": [],
        "tree_mode": "faithful",
        "artifacts": {},
    }


def run_combination(prep: Prepared, combo: Combination, out_dir: Union[str, Path, None] = None) -> dict[str, Any]:
    """Evaluate one combination; returns its record (see the module docstring) and, with ``out_dir``,
    writes its trees (``trees/``), confusion and difference matrices and ``record.json``
    (``combinations/<slug>/``). Never raises for a bad combination: the record says ``failed`` and
    why. ``OSError`` propagates (retryable I/O)."""
    t0 = time.perf_counter()
    rec = _base_record(prep, combo)
    out = Path(out_dir) if out_dir is not None else None
    try:
        if combo.error:
            _fail(rec, combo.error)
        else:
            broken = {n: prep.lf_errors[n] for n in combo.lfs if n in prep.lf_errors}
            if broken:
                _fail(rec, "; ".join(f"LF {n!r} cannot be applied: {e}" for n, e in broken.items()))
            else:
                _evaluate(prep, combo, rec, out)
    except OSError:
        raise
    except Exception as exc:  # one combination's failure is its record, never the experiment's
        _fail(rec, f"{type(exc).__name__}: {exc}")
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        folder = out / "combinations" / combo.slug
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "record.json"
        rec["artifacts"]["record"] = str(path)
        atomic_write_text(path, json.dumps(json_ready(rec), indent=2))
    return rec


def _fail(rec: dict[str, Any], error: str) -> None:
    rec["outcome"] = "failed"
    rec["error"] = error
    rec["reason"] = error


def _skip(rec: dict[str, Any], reason: str) -> None:
    if rec["outcome"] == "ok":
        rec["outcome"] = "skipped"
        rec["reason"] = reason


def _evaluate(prep: Prepared, combo: Combination, rec: dict[str, Any], out: Optional[Path]) -> None:
    from flamenco_core.evaluation.metrics import classification_scores, prediction_difference_matrix, undefined_f1
    from flamenco_core.explain.tree import combination_decision, compare_modes, tree_f1
    from flamenco_core.labeling.analysis import combination_f1, label_summary
    from flamenco_core.labeling.label_model import make_label_model
    from flamenco_core.preprocess.feature_selection import correlation_of

    cfg = prep.config
    classes = prep.classes
    k = len(classes)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    cols = prep.columns(combo.lfs)
    L_tr, L_va, L_te = (prep.L[s][:, cols] for s in SPLITS)
    test = prep.frames["test"]
    y_te = prep.y("test")
    names = list(combo.lfs)

    # ---- correlation of the features involved
    feats = [f for f in rec["features"] if f in prep.frames["train"].columns and _numeric(prep.frames["train"], f)]
    for method in ("pearson", "spearman"):
        corr = prep.corr.get(method)
        rec[f"correlation_{method}"] = correlation_of(feats, corr) if corr is not None and feats else math.nan
    rec["correlation"] = rec[f"correlation_{cfg.correlation}"]
    for f in rec["features"]:
        if f in prep.constant:
            rec["notes"].append(f"feature {f!r} is {prep.constant[f]} on the training split: its correlations are undefined")

    # ---- LF F1, coverage, conflicts on test
    table = combination_f1(L_te, y_te, [list(range(len(cols)))], names, classes=classes, abstain=cfg.abstain)
    row = table.iloc[0]
    summary = label_summary(L_te)
    rec.update({
        "lf_f1": float(row["F1"]), "lf_precision": float(row["Precision"]), "lf_recall": float(row["Recall"]),
        "decision_coverage": float(row["Coverage"]), "ties": float(row["Ties"]),
        "coverage": summary["coverage"], "overlap": summary["overlap"], "conflicts": summary["conflict"],
        "coverage_train": label_summary(L_tr)["coverage"], "f1_definition": table.attrs["f1_definition"],
    })
    if summary["coverage"] == 0:
        rec["notes"].append(f"the LFs cover no test row: LF F1 is 0 (inconclusive rows count as {cfg.abstain})")
    lf_dec = combination_decision(L_te, k)
    timings["lf"] = time.perf_counter() - tick

    # ---- interpretability trees (both modes), Tree F1 of the faithful one
    tick = time.perf_counter()
    sub_pack = prep.catalog.pack_of(names)
    modes = compare_modes(sub_pack, test, stats=prep.stats, importance=prep.importance or None,
                          display_names=prep.display_names, max_nodes=cfg.tree.max_nodes)
    tree = modes["faithful"]["tree"]
    tree_pred = tree.predict(test)
    rec.update({
        "tree_f1": tree_f1(tree, test, y_te, abstain=cfg.abstain),
        "tree_f1_paper": tree_f1(modes["paper"]["tree"], test, y_te, abstain=cfg.abstain),
        "tree_vs_lf_difference": float(modes["faithful"]["difference"]),
        "tree_vs_lf_difference_paper": float(modes["paper"]["difference"]),
        "tree_conditions": int(modes["faithful"]["conditions"]), "tree_depth": int(modes["faithful"]["depth"]),
    })
    if out is not None:
        _write_trees(rec, modes, combo, out, cfg.tree.png)
    timings["tree"] = time.perf_counter() - tick

    # ---- label model on train votes -> training set -> end classifier
    tick = time.perf_counter()
    lm_kwargs = dict(cfg.label_model.params) if cfg.label_model.kind == "snorkel" else {}
    lm = make_label_model(cfg.label_model.kind, n_lfs=len(cols), cardinality=k, seed=cfg.seed, **lm_kwargs)
    lock = _TORCH_LOCK if lm.name == "snorkel_label_model" else contextlib.nullcontext()
    with lock:
        lm.fit(L_tr)
    rec["label_model"] = lm.describe()
    rec["label_model_name"] = lm.name
    rec["label_model_fallback"] = lm.fallback_reason or ""
    P_tr = lm.predict_proba(L_tr)
    keep, targets, info, reason = _training_targets(cfg, L_tr, P_tr, classes)
    timings["label_model"] = time.perf_counter() - tick

    cls_features = prep.classifier_features if prep.classifier_features is not None else feats
    info["features"] = list(cls_features)
    rec["training"] = info
    if reason is None and not cls_features:
        reason = "no classifier features (classifier_features selected none, or the LFs read no numeric feature)"
    cls_pred = est = None
    if reason is not None:
        _skip(rec, reason)
    else:
        tick = time.perf_counter()
        X_tr, bad_tr = _matrix(prep, prep.frames["train"], cls_features)
        X_va, _ = _matrix(prep, prep.frames["validation"], cls_features)
        X_te, bad_te = _matrix(prep, test, cls_features)
        info["imputed_values"] = bad_tr + bad_te
        P_va = lm.predict_proba(L_va)
        keep_va, P_va_t, _, _ = _training_targets(cfg, L_va, P_va, classes)
        val = (X_va[keep_va], P_va_t[keep_va]) if keep_va is not None else (None, None)
        constant = info.get("constant_class")
        est = _fit_classifier(prep, X_tr[keep], targets[keep], *val, constant=constant)
        if constant is not None:
            rec["notes"].append(info["single_class_fallback"])
        cls_pred, _ = _predict(est, X_te, k)
        scores = classification_scores(y_te, cls_pred, classes, abstain=cfg.abstain)
        rec.update({"cls_f1": scores["f1"], "cls_f1_macro": scores["f1_macro"], "cls_accuracy": scores["accuracy"],
                    "cls_precision": scores.get(f"precision_{classes[-1]}", math.nan),
                    "cls_recall": scores.get(f"recall_{classes[-1]}", math.nan)})
        rec["classifier"] = {"kind": "constant" if constant is not None else cfg.model.kind,
                             "params": {} if constant is not None else cfg.model.params(),
                             "epochs_run": getattr(est, "n_epochs_run_", None),
                             "best_params": getattr(est, "best_params_", None)}
        timings["classifier"] = time.perf_counter() - tick

    # ---- prediction differences on a seeded sample of test, read as F1 reads them: under
    # abstain="negative" an inconclusive decision is the negative class (else a value of its own)
    preds = {"lf": lf_dec, "cls": cls_pred, "tree": tree_pred}
    preds = {n: p for n, p in preds.items() if p is not None}
    read = {n: (np.where(p == ABSTAIN, 0, p) if cfg.abstain == "negative" else p) for n, p in preds.items()}
    matrix = prediction_difference_matrix(read, sample_frac=cfg.sample_fraction, seed=cfg.seed)
    rec["prediction_differences"] = {f"{a}_vs_{b}": float(matrix.loc[a, b]) for a, b in itertools.combinations(matrix.index, 2)}
    for key in ("lf_vs_cls", "lf_vs_tree", "cls_vs_tree"):
        a, b = key.split("_vs_")
        rec[f"diff_{a}_{b}"] = rec["prediction_differences"].get(key, math.nan)
    rec["difference_sample_rows"] = int(matrix.attrs["rows"])

    if out is not None:
        tick = time.perf_counter()
        _write_matrices(prep, rec, combo, out, y_te, preds, matrix)
        timings["artifacts"] = time.perf_counter() - tick
    if combo.role == "whole_pack":
        _predict_all_rows(prep, combo, rec, lm, est, cls_features, out)
    rec["timings"] = {k_: round(v, 3) for k_, v in timings.items()}
    _mark_undefined_f1(rec, undefined_f1(y_te, classes), classes, y_te, cls_pred, cfg.abstain)


#: Record fields that are F1 (or recall) of the positive class: undefined together when the test split
#: holds no row of that class.
_POSITIVE_SCORES = ("lf_f1", "lf_recall", "cls_f1", "cls_recall", "tree_f1", "tree_f1_paper")


def _mark_undefined_f1(rec: dict[str, Any], reason: Optional[str], classes: list[str], y_te: np.ndarray,
                       cls_pred: Optional[np.ndarray], abstain: str) -> None:
    """An F1 with no positive test row is undefined: NaN in the record (``null`` in JSON, "n/a" in
    tables), never a 0 that reads as "found none"; the macro F1 then averages the classes that have
    test rows. The reason goes to ``f1_undefined`` and the notes."""
    if reason is None:
        return
    from flamenco_core.evaluation.metrics import classification_scores

    for k in _POSITIVE_SCORES:
        if k in rec:
            rec[k] = math.nan
    if cls_pred is not None:
        scores = classification_scores(y_te, cls_pred, classes, abstain=abstain)
        present = [c for c in classes if scores[f"support_{c}"] > 0]
        rec["cls_f1_macro"] = float(np.mean([scores[f"f1_{c}"] for c in present])) if present else math.nan
    rec["f1_undefined"] = reason
    rec["notes"].append(f"test split: {reason}; LF, classifier and tree F1 are null (undefined), not 0")


def _write_trees(rec: dict[str, Any], modes: dict[str, Any], combo: Combination, out: Path, png: bool) -> None:
    from flamenco_core.explain.render import render_dot, render_png, render_text

    folder = out / "trees"
    folder.mkdir(parents=True, exist_ok=True)
    arts = rec["artifacts"]
    for mode, suffix in (("faithful", ""), ("paper", ".paper")):
        tree = modes[mode]["tree"]
        stem = folder / f"{combo.slug}{suffix}"
        tree.to_json(f"{stem}.json")
        arts[f"tree{suffix.replace('.', '_')}_json"] = f"{stem}.json"
        if mode == "faithful":
            Path(f"{stem}.dot").write_text(render_dot(tree, title=combo.name))
            Path(f"{stem}.txt").write_text(render_text(tree))
            arts["tree_dot"], arts["tree_text"] = f"{stem}.dot", f"{stem}.txt"
        if png:
            try:
                render_png(tree, f"{stem}.png", title=f"{combo.name} ({mode})")
                arts[f"tree{suffix.replace('.', '_')}_png"] = f"{stem}.png"
            except RuntimeError as exc:  # Graphviz missing or failing: the JSON/DOT still hold the tree
                rec["notes"].append(f"tree PNG not rendered: {exc}")


def _write_matrices(prep: Prepared, rec: dict[str, Any], combo: Combination, out: Path, y_te: np.ndarray,
                    preds: Mapping[str, np.ndarray], matrix: pd.DataFrame) -> None:
    from flamenco_core.evaluation.metrics import confusion_matrix
    from flamenco_core.evaluation.plots import confusion_matrix_plot
    from flamenco_core.evaluation.tables import difference_matrix_table

    folder = out / "combinations" / combo.slug
    folder.mkdir(parents=True, exist_ok=True)
    arts = rec["artifacts"]
    titles = {"lf": "LFs (majority vote)", "cls": "classifier", "tree": "tree (faithful)"}
    for name, pred in preds.items():
        cm = confusion_matrix(y_te, pred, prep.classes)
        cm.to_csv(folder / f"confusion_{name}.csv")
        arts[f"confusion_{name}_csv"] = str(folder / f"confusion_{name}.csv")
        if prep.config.plots:
            path = confusion_matrix_plot(cm, folder / f"confusion_{name}.png", title=f"{titles[name]}: {combo.name}"[:90])
            arts[f"confusion_{name}_png"] = str(path)
    difference_matrix_table(matrix).to_csv(folder / "prediction_differences.csv")
    arts["prediction_differences_csv"] = str(folder / "prediction_differences.csv")


def _all_rows(prep: Prepared) -> tuple[pd.DataFrame, np.ndarray]:
    """Every row of the input in input order (``__row``), with its split name; and the label matrix."""
    parts, mats = [], []
    for name in (*SPLITS, "unlabeled"):
        frame = prep.frames[name]
        parts.append(frame.assign(__split=name))
        mats.append(prep.L[name])
    rows = pd.concat(parts, ignore_index=True)
    L = np.concatenate(mats) if mats else np.empty((0, len(prep.catalog.entries)), dtype=LABEL_DTYPE)
    order = np.argsort(rows[ROW].to_numpy(), kind="stable")
    return rows.iloc[order].reset_index(drop=True), L[order]


def _predict_all_rows(prep: Prepared, combo: Combination, rec: dict[str, Any], lm: Any, est: Any,
                      features: Sequence[str], out: Optional[Path]) -> None:
    """The whole pack's label model and classifier on every input row (for ``labels.parquet``)."""
    rows, L_all = _all_rows(prep)
    L = L_all[:, prep.columns(combo.lfs)]
    k = len(prep.classes)
    lm_prob = lm.predict_proba(L)
    lm_dec = lm.predict(L)
    frame = pd.DataFrame({ROW: rows[ROW].to_numpy(), "lm_label": lm_dec,
                          "lm_probability": lm_prob[np.arange(len(L)), np.maximum(lm_dec, 0)]})
    if est is not None:
        # one time-ordered pass: the LSTM's windows then hold each row's true predecessors
        X, _ = _matrix(prep, rows, features)
        cls, proba = _predict(est, X, k)
        frame["cls_label"] = cls
        frame["cls_probability"] = proba[np.arange(len(X)), cls]
    rec["labels_rows"] = int(len(frame))
    if out is not None:
        path = out / "combinations" / combo.slug / "all_rows.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_parquet(frame, path, index=False)
        rec["artifacts"]["all_rows"] = str(path)


# ====================================================================================================
# the experiment and its outputs


def skipped_records(combinations: Sequence[Combination], reason: str, dataset: str = "flows") -> list[dict[str, Any]]:
    """Records for combinations that never ran (e.g. the preparation failed)."""
    out = []
    for c in combinations:
        out.append({"index": c.index, "combination": c.name, "label": c.label, "slug": c.slug, "role": c.role,
                    "lfs": list(c.lfs or c.refs), "refs": list(c.refs), "n_lfs": len(c.lfs or c.refs), "groups": [],
                    "features": [], "dataset": dataset, "outcome": "skipped", "reason": reason, "error": c.error,
                    "notes": [], "artifacts": {}})
    return out


def failed_record(combo: Combination, error: str, dataset: str = "flows") -> dict[str, Any]:
    """A record for a combination whose task died outside :func:`run_combination` (e.g. I/O after retries)."""
    rec = skipped_records([combo], error, dataset)[0]
    rec.update({"outcome": "failed", "error": error})
    return rec


def run_experiment(
    data: pd.DataFrame,
    packs: Sequence[Union[LFPack, str, Path]],
    out_dir: Union[str, Path],
    experiment: Union[ExperimentFile, str, Path, Mapping, None] = None,
    config: Any = None,
    *,
    alerts: Any = None,
    display_names: Optional[Mapping[str, str]] = None,
    sources: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The whole pipeline in one process (no Prefect, no MLflow): :func:`prepare`, :func:`run_combination`
    for every combination, :func:`write_outputs`. Returns the report (also ``out_dir/report.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        prep = prepare(data, packs, config, experiment, alerts=alerts, display_names=display_names,
                       sources=sources, out_dir=out)
    except PreparationError as exc:
        return write_failed_preparation(packs, experiment, str(exc), out, sources=sources)
    records = []
    for combo in prep.combinations:
        try:
            records.append(run_combination(prep, combo, out))
        except Exception as exc:  # OSError included: without a task runner there is no retry
            records.append(failed_record(combo, f"{type(exc).__name__}: {exc}", prep.dataset))
    return write_outputs(prep, records, out)


def write_failed_preparation(packs: Sequence[Any], experiment: Any, error: str, out_dir: Union[str, Path],
                             *, sources: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The report of an experiment whose preparation failed: every combination skipped with the reason."""
    catalog = build_catalog(load_packs(packs))
    exp = load_experiment(experiment)
    combos, notes = experiment_combinations(exp, catalog)
    records = skipped_records(combos, f"preparation failed: {error}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "pipeline": "flow_records", "version": REPORT_VERSION,
        "experiment": exp.experiment if exp else "default",
        "preparation": {"outcome": "failed", "error": error, "notes": notes, "sources": json_ready(dict(sources or {}))},
        "combinations": records, "summary": _summary(records), "labels": None, "tables": {},
    }
    atomic_write_text(out / "report.json", json.dumps(json_ready(report), indent=2))
    return report


def _summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = {o: sum(1 for r in records if r.get("outcome") == o) for o in OUTCOMES}
    return {
        **counts,
        "total": len(records),
        "failures": [{"combination": r.get("combination"), "error": r.get("error")} for r in records if r.get("outcome") == "failed"],
        "skips": [{"combination": r.get("combination"), "reason": r.get("reason")} for r in records if r.get("outcome") == "skipped"],
    }


def write_outputs(prep: Prepared, records: Sequence[Mapping[str, Any]], out_dir: Union[str, Path],
                  extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Write the tables (``tables/*.csv`` and ``*.md``, one record per combination in ``records.csv``),
    ``labels.parquet`` and ``report.json``; return the report."""
    from flamenco_core.evaluation.tables import paper_tables, records_frame, to_csv, to_markdown, write_tables

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The report is what says the outputs are complete: the old one goes before anything is replaced,
    # and the new one comes last.
    (out / "report.json").unlink(missing_ok=True)
    records = sorted((dict(r) for r in records), key=lambda r: r.get("index", 0))
    frame = records_frame(records)
    tables = paper_tables(frame)
    modes = _tree_modes_table(frame)
    if len(modes):
        tables["tree_modes"] = modes
    written = write_tables(tables, out / "tables", na="n/a")
    to_csv(frame, out / "tables" / "records.csv", index=False)
    markdown = {name: to_markdown(t) for name, t in tables.items()}
    labels = _write_labels(prep, records, out)
    report = {
        "pipeline": "flow_records",
        "version": REPORT_VERSION,
        "experiment": prep.experiment,
        "dataset": prep.dataset,
        "classes": prep.classes,
        "seed": prep.config.seed,
        "config": prep.config.model_dump(mode="json"),
        "tree_mode": "faithful",
        "definitions": {
            "lf_f1": "majority vote of the combination's LFs on test; ties and no vote inconclusive; "
                     f"inconclusive rows count as abstain={prep.config.abstain!r} (flamenco_core.labeling.analysis)",
            "cls_f1": "end classifier trained on the label model's labels (train split), scored on test like LF F1",
            "tree_f1": "faithful interpretability tree on test, scored like LF F1",
            "tree_vs_lf_difference": "fraction of test rows where the faithful tree and the LFs' decision differ "
                                     "(0 by construction); tree_vs_lf_difference_paper: the paper's construction",
            "coverage": "fraction of test rows at least one of the combination's LFs votes on",
            "conflicts": "fraction of test rows where the voting LFs disagree",
            "prediction_differences": f"fraction of differing predictions on a seeded {prep.config.sample_fraction:.0%} "
                                      "sample of test; " + ("an inconclusive decision counts as the negative class "
                                      "(abstain=negative)" if prep.config.abstain == "negative"
                                      else "inconclusive is a value of its own"),
            "correlation": f"mean absolute pairwise {prep.config.correlation} correlation of the features on train "
                           "(blank for one feature)",
        },
        "preparation": {"outcome": "ok", **prep.meta},
        "combinations": records,
        "summary": _summary(records),
        "tables": {name: {"csv": str(p["csv"]), "markdown": str(p["markdown"])} for name, p in written.items()},
        "tables_markdown": markdown,
        "labels": labels,
        **dict(extra or {}),
    }
    atomic_write_text(out / "report.json", json.dumps(json_ready(report), indent=2))
    return report


def _tree_modes_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per combination, Tree F1 and the tree-vs-LF difference of both tree modes (reports use faithful)."""
    cols = ["tree_f1", "tree_vs_lf_difference", "tree_f1_paper", "tree_vs_lf_difference_paper", "tree_conditions"]
    present = [c for c in cols if c in frame.columns]
    if "tree_vs_lf_difference" not in present:
        return pd.DataFrame()
    out = frame.set_index("combination")[["n_lfs", *present]]
    return out.rename(columns={"tree_f1": "tree_f1_faithful", "tree_vs_lf_difference": "difference_faithful",
                               "tree_vs_lf_difference_paper": "difference_paper", "tree_conditions": "conditions_faithful"})


def _write_labels(prep: Prepared, records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Any]:
    """``labels.parquet``: every input row's label from the whole pack (see the module docstring)."""
    rows, _ = _all_rows(prep)
    n = len(rows)
    whole = next((r for r in records if r.get("role") == "whole_pack"), None)
    classes = np.array(prep.classes, dtype=object)
    label = np.full(n, -1, dtype=np.int64)
    prob = np.full(n, np.nan)
    source = np.full(n, "none", dtype=object)
    part_path = (whole or {}).get("artifacts", {}).get("all_rows")
    if part_path and Path(part_path).is_file():
        part = pd.read_parquet(part_path).set_index(ROW).reindex(rows[ROW].to_numpy())
        lm = part["lm_label"].to_numpy()
        decided = lm >= 0
        label[decided] = lm[decided]
        prob[decided] = part["lm_probability"].to_numpy()[decided]
        source[decided] = "label_model"
        if "cls_label" in part.columns:
            rest = ~decided
            label[rest] = part["cls_label"].to_numpy()[rest]
            prob[rest] = part["cls_probability"].to_numpy()[rest]
            source[rest] = "classifier"
    gold = pd.Categorical(rows[GOLD].astype(object), categories=prep.classes).codes
    fallback = (source == "none") & (gold >= 0)
    label[fallback] = gold[fallback]
    prob[fallback] = 1.0
    source[fallback] = "ground_truth"
    frame = rows[[c for c in KEY_COLUMNS if c in rows.columns]].copy()
    frame["split"] = rows["__split"].to_numpy()
    frame["label"] = pd.array(np.where(label >= 0, classes[np.maximum(label, 0)], None), dtype="string")
    frame["probability"] = prob
    frame["label_source"] = pd.array(source, dtype="string")
    path = out / "labels.parquet"
    atomic_write_parquet(frame, path, index=False)
    return {
        "path": str(path),
        "rows": int(n),
        "source_combination": (whole or {}).get("combination"),
        "source_outcome": (whole or {}).get("outcome"),
        "by_source": {s: int(c) for s, c in pd.Series(source).value_counts().items()},
        "by_label": {str(s): int(c) for s, c in frame["label"].value_counts(dropna=False).items()},
    }


__all__ = [
    "Catalog", "Combination", "CombinationEntry", "ExperimentFile", "FlowRecordsConfig", "LFEntry",
    "PackMismatch", "PreparationError", "check_packs", "Prepared", "build_catalog", "default_combinations", "experiment_combinations",
    "failed_record", "load_config", "load_experiment", "load_packs", "prepare", "read_input",
    "run_combination", "run_experiment", "skipped_records", "write_failed_preparation", "write_outputs",
]
