"""Settings of a flow-records experiment: ``conf/flow_records.yaml`` and experiment files, as pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from flamenco_core.config import load_settings, read_mapping, validation_text
from flamenco_core.errors import EXIT_USAGE, FlamencoError
from flamenco_core.models.config import EndModelConfig

#: Where the defaults live in a checkout (the pydantic defaults below equal them).
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parents[3] / "conf" / "flow_records.yaml"


class PreparationError(FlamencoError):
    """The experiment cannot start (no ground truth, too few rows to split, bad configuration); exit 1."""


class PackMismatch(PreparationError):
    """An LF pack does not fit the data (a feature that is not a column, or not numeric): found before
    any combination runs, so one error replaces a failure per combination; exit 2 (bad input)."""

    exit_code = EXIT_USAGE


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
    """``kind``: a label model of :data:`flamenco_core.labeling.label_models.KINDS`: ``snorkel`` (with the
    majority-vote fallback under 3 LFs), ``majority``, or crowd-kit's ``dawid_skene``, ``one_coin_ds``,
    ``mmsr`` (their fallbacks: :mod:`flamenco_core.labeling.label_models`); ``params`` go to Snorkel's
    LabelModel (the other models take their defaults)."""

    kind: Literal["snorkel", "majority", "dawid_skene", "one_coin_ds", "mmsr"] = "snorkel"
    params: dict[str, Any] = Field(default_factory=lambda: {"n_epochs": 100, "lr": 0.01})


def _default_lstm() -> dict[str, Any]:
    return {"window": 10, "hidden": 32, "epochs": 3, "batch_size": 256, "lr": 0.003, "class_weight": "balanced",
            "patience": 2}


def _default_forest() -> dict[str, Any]:
    return {"n_iter": 3, "n_splits": 3, "class_weight": "balanced",
            "param_distributions": {"n_estimators": [25, 50], "max_depth": [5, None], "bootstrap": [True]}}


class ModelConfig(EndModelConfig):
    """The end classifier of a flow-records experiment (:class:`~flamenco_core.models.config.EndModelConfig`):
    ``lstm`` or ``random_forest``, never ``auto`` (one classifier for every combination, so they compare);
    small budgets by default, for speed."""

    kind: Literal["lstm", "random_forest"] = Field("lstm", validation_alias=AliasChoices("kind", "model"))
    lstm: dict[str, Any] = Field(default_factory=_default_lstm)
    random_forest: dict[str, Any] = Field(default_factory=_default_forest,
                                          validation_alias=AliasChoices("random_forest", "forest"))
    search: None = Field(None, description="not searched here: each combination trains the configured classifier")


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


def load_config(*overrides: Any, defaults: Union[str, Path, None] = None) -> FlowRecordsConfig:
    """The configuration: ``defaults`` (default ``conf/flow_records.yaml`` when the checkout has it, else
    the model's defaults, which are the same), then each override deep-merged in order. An override is
    ``None`` (skipped), a mapping, a YAML file, or a :class:`FlowRecordsConfig` (its explicitly set
    fields). Invalid settings raise ``ValueError`` naming them."""
    if defaults is None and DEFAULT_CONFIG_FILE.is_file():
        defaults = DEFAULT_CONFIG_FILE
    return load_settings(FlowRecordsConfig, overrides, defaults=defaults, what="flow-records config")


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
            raise ValueError(f"{source}: invalid experiment file: {validation_text(exc)}") from None

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "ExperimentFile":
        """Load an experiment file (``yaml.safe_load`` only)."""
        return cls.from_dict(read_mapping(path), str(path))


def load_experiment(source: Union[str, Path, Mapping, ExperimentFile, None]) -> Optional[ExperimentFile]:
    """An :class:`ExperimentFile` from a path, a mapping or itself; ``None`` stays ``None`` (default experiment)."""
    if source is None or isinstance(source, ExperimentFile):
        return source
    if isinstance(source, Mapping):
        return ExperimentFile.from_dict(source)
    return ExperimentFile.from_yaml(source)
