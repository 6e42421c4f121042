"""A site's catalog and policy: ``conf/site.yaml``.

The catalog maps dataset *names* to local files (a request names a dataset, never a path); the policy
decides what may leave the site. Format and fields: docs/federation.md, section "The site's catalog and
policy"."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flamenco_core.errors import UsageError

#: Site names become deployment names and MLflow run names: keep them plain.
SITE_NAME_PATTERN = r"^[a-z0-9][a-z0-9\-]{0,62}$"
DATASET_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$"
DEFAULT_MIN_GROUP_SIZE = 20


class GroundTruth(BaseModel):
    """The column holding the truth and, optionally, how its values map to a pack's class names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(min_length=1)
    classes: dict[str, str] = Field(default_factory=dict)


class DatasetEntry(BaseModel):
    """One dataset of the catalog: a local file (Parquet file or folder, or CSV)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    ground_truth: Optional[GroundTruth] = None
    description: Optional[str] = None


class NoiseSpec(BaseModel):
    """Laplace noise of scale ``1/epsilon`` on every released count; ``seed`` makes it reproducible (the
    same request gets the same noise, so repeating a question does not average the noise away)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(gt=0)
    seed: int = 0


class SitePolicy(BaseModel):
    """What may leave the site (every field has a safe default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_group_size: int = Field(DEFAULT_MIN_GROUP_SIZE, ge=1)
    min_rows: int = Field(100, ge=1)
    allowed_statistics: Optional[list[str]] = None
    allow_findings: list[str] = Field(default_factory=list)
    min_window_share: float = Field(0.01, ge=0)
    noise: Optional[NoiseSpec] = None
    max_pack_bytes: int = Field(1_000_000, ge=1)
    max_lfs: int = Field(1_000, ge=1)
    max_packs: int = Field(8, ge=1)
    label_models: list[str] = Field(default_factory=lambda: ["snorkel", "majority"])

    @field_validator("allowed_statistics")
    @classmethod
    def _canonical_stats(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is None:
            return None
        from flamenco_core.labeling.expr import canonical_stat

        out = []
        for s in v:
            c = canonical_stat(str(s))
            if c is None:
                raise ValueError(f"unknown statistic {s!r} (e.g. mean, std, median, p75, iqr, min, max)")
            out.append(c)
        return sorted(set(out))

    def summary(self) -> dict[str, Any]:
        """The policy's shape as the aggregate reports it (no file names)."""
        return {"min_group_size": self.min_group_size, "min_rows": self.min_rows,
                "noise_epsilon": self.noise.epsilon if self.noise else None,
                "allowed_statistics": self.allowed_statistics, "min_window_share": self.min_window_share}


class SiteConfig(BaseModel):
    """A site: its name, its work pool, its catalog and its policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(pattern=SITE_NAME_PATTERN)
    work_pool: Optional[str] = None
    datasets: dict[str, DatasetEntry] = Field(min_length=1)
    policy: SitePolicy = Field(default_factory=SitePolicy)
    #: Where the config was read from: dataset paths are relative to its folder.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("datasets")
    @classmethod
    def _names(cls, v: dict[str, DatasetEntry]) -> dict[str, DatasetEntry]:
        import re

        for name in v:
            if not re.match(DATASET_NAME_PATTERN, name):
                raise ValueError(f"dataset name {name!r} must match {DATASET_NAME_PATTERN}")
        return v

    @property
    def pool(self) -> str:
        """The site's work pool (``flamenco-site-<site>`` unless named)."""
        return self.work_pool or f"flamenco-site-{self.site}"

    def dataset(self, name: str) -> DatasetEntry:
        """The catalog entry ``name``; ``KeyError`` when the site has no such dataset."""
        if name not in self.datasets:
            raise KeyError(name)
        return self.datasets[name]

    def dataset_path(self, name: str) -> Path:
        """The local path of dataset ``name`` (relative paths from the config's folder)."""
        p = Path(self.dataset(name).path)
        return p if p.is_absolute() else (self.base_dir / p)


def load_site_config(path: Union[str, Path]) -> SiteConfig:
    """Read and validate a site config (``yaml.safe_load`` only); ``UsageError`` naming the file and the
    field on any problem."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read site config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a site config must be a mapping (site, datasets, policy)")
    try:
        return SiteConfig.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        raise UsageError(f"{path}: {where}: {e['msg']}") from None
