"""The end-model settings both pipelines share (one model config, one alias table): which classifier, the
row count under which ``auto`` picks the forest, each classifier's parameters and the LSTM search."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from flamenco_core.models.select import DEFAULT_SMALL_THRESHOLD, MODEL_ALIASES, ModelChoice, choose_model


class EndModelConfig(BaseModel):
    """The end classifier: ``kind`` (``auto``, ``lstm`` or ``random_forest``; aliases ``forest``, ``rf``;
    also read from the key ``model``), ``small_threshold`` (under ``auto``, fewer rows choose the forest),
    the constructor parameters of each (``random_forest`` also read from ``forest``) and the LSTM
    hyperparameter ``search`` (``{strategy, budget}``, off when ``None``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["auto", "lstm", "random_forest"] = Field("auto", validation_alias=AliasChoices("kind", "model"))
    small_threshold: int = Field(DEFAULT_SMALL_THRESHOLD, ge=1, description="under auto, fewer rows get the random forest")
    lstm: dict[str, Any] = Field(default_factory=dict)
    random_forest: dict[str, Any] = Field(default_factory=dict, validation_alias=AliasChoices("random_forest", "forest"))
    search: Optional[dict[str, Any]] = Field(None, description="LSTM hyperparameter search: {strategy, budget}")

    @field_validator("kind", mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        return MODEL_ALIASES.get(v.lower(), v) if isinstance(v, str) else v

    def choose(self, n_rows: int) -> ModelChoice:
        """The classifier for ``n_rows`` training rows (``auto``: by ``small_threshold``), and why."""
        return choose_model(n_rows, {"model": self.kind, "small_threshold": self.small_threshold})

    def params(self, kind: Optional[str] = None) -> dict[str, Any]:
        """Constructor parameters of ``kind`` (default: this config's, when it is not ``auto``)."""
        k = MODEL_ALIASES.get(str(kind or self.kind).lower())
        if k not in ("lstm", "random_forest"):
            raise ValueError(f"no parameters for model kind {kind or self.kind!r}: choose lstm or random_forest")
        return dict(self.lstm if k == "lstm" else self.random_forest)
