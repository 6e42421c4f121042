"""Where a subset's LFs come from: learned on the subset, on the whole pair, on the pooled labeled
rows of the source's pairs, or the envelope of the labeled good rows (see docs/latency.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from .config import CLASSES, LatencyConfig
from .features import LEVEL_FEATURE, RARITY_FLOOR, lf_view, pair_features, prepare_pair
from .results import SubsetResult, encode_labels


@dataclass
class Learner:
    """LFs, label model and end model learned at one level (a subset, or the whole pair)."""

    level: str  # subset | pair
    auto: Any
    stats: Any
    feats: list[str]
    model: Any = None
    kind: str = ""
    reason: str = ""
    dropped: int = 0
    trials: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""  # the end model's fit on a sample of the rows (max_train_rows), said in the report

    def predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class index, P(noise), source) for ``rows``: the label model where an LF voted, the end model
        where all abstained (or the label model's prior when there is no end model)."""
        L = self.auto.label_matrix(lf_view(rows), stats=self.stats)
        covered = (L != -1).any(axis=1)
        lm = self.auto.label_model.predict_proba(L)[:, 1]
        if self.model is not None and len(rows):
            X = rows[self.feats].to_numpy(dtype="float64")
            proba = np.asarray(self.model.predict_proba(X))[:, 1]
            cls = np.asarray(self.model.predict(X)).astype(int)
        else:
            proba, cls = lm, (lm >= 0.5).astype(int)
        p = np.where(covered, lm, proba)
        lab = np.where(covered, (lm >= 0.5).astype(int), cls)
        src = np.where(covered, "label_model", "classifier" if self.model is not None else "label_model")
        return lab, p, src


def learn_level(level: str, labeled: pd.DataFrame, train: pd.DataFrame, feats: list[str], config: LatencyConfig,
           size: int, end_model: bool = True) -> tuple[Optional[Learner], str]:
    """Snuba LFs on ``labeled`` (validation rows, class names in ``label``) over ``train`` (the unlabeled
    rows), the label model, and the end model on the covered training rows. ``(None, reason)`` when the LFs
    cannot be learned; an end model that cannot train leaves the label model alone, with the reason."""
    from flamenco_core.autolf import SnubaConfig, generate_lfs
    from flamenco_core.labeling import DataStatistics, filter_unlabeled
    from flamenco_core.models import build_model

    scfg = SnubaConfig(**{"seed": config.seed, "classes": CLASSES, "positive": "noise", **config.snuba})
    feats = _distinct(feats, pd.concat([labeled[feats], train[feats]]))
    seen = lf_view(train)
    try:
        auto = generate_lfs(lf_view(labeled), seen, feats, "label", scfg)
    except ValueError as exc:
        return None, f"automatic LFs at the {level} level: {exc}"
    learner = Learner(level, auto, DataStatistics(seen), feats)
    if not end_model:
        return learner, ""
    X_fit, p_fit, learner.dropped = filter_unlabeled(train[feats].to_numpy(dtype="float64"), auto.train_probs, auto.L_train)
    choice = config.model.choose(size)
    params = config.model.params(choice.kind)
    if choice.kind == "lstm":
        params.setdefault("window", config.window)
    X_val = labeled[feats].to_numpy(dtype="float64")
    # Every validation row is labeled (the pool is the labeled rows only), so this cast cannot meet a NaN.
    y_val = encode_labels(labeled["label"]).astype(int)
    try:
        if len(p_fit) == 0 or len(np.unique(p_fit.argmax(axis=1))) < 2:
            raise ValueError("the label model gave one class to every covered training row")
        if choice.kind == "lstm" and config.model.search:
            from flamenco_core.models.search import PAPER_LSTM_GRID, search

            found = search(build_model("lstm", params, config.seed), PAPER_LSTM_GRID, X_fit, p_fit, X_val, y_val,
                           seed=config.seed, **config.model.search)
            model = found.best_estimator
            learner.trials = _trials(found.results, "score", "lstm")
        else:
            model = build_model(choice.kind, params, config.seed)
            if choice.kind == "lstm":
                model.fit(X_fit, p_fit, X_val=X_val, y_val=y_val)
            else:
                model.fit(X_fit, p_fit)
                learner.trials = _trials(getattr(model, "cv_results_", None), "mean_test_score", "random_forest")
        learner.model, learner.kind = model, choice.kind
        trained = getattr(model, "n_train_rows_", len(X_fit))
        if trained < len(X_fit):
            learner.note = f"{choice.kind} trained on a seeded sample of {trained} of {len(X_fit)} rows (max_train_rows)"
    except ValueError as exc:
        learner.kind, learner.reason = "label_model", f"end model: {exc}; label-model labels only"
    return learner, ""


def _distinct(feats: list[str], frame: pd.DataFrame) -> list[str]:
    """``feats`` without columns equal to an earlier one (a one-mode pair's subset features are its pair
    features): a copy would count twice in a majority vote."""
    out: list[str] = []
    for f in feats:
        x = frame[f].to_numpy()
        if not any(np.array_equal(x, frame[g].to_numpy(), equal_nan=True) for g in out):
            out.append(f)
    return out


def _trials(results: Optional[pd.DataFrame], score: str, kind: str) -> list[dict[str, Any]]:
    """One record per hyperparameter configuration tried: ``{model, params, score, seconds}``."""
    if results is None or not len(results) or score not in results.columns:
        return []
    pcols = [c for c in results.columns if c.startswith("param_") and c != "params"]
    secs = next((c for c in ("fit_seconds", "mean_fit_time") if c in results.columns), None)
    out = []
    for i, (_, r) in enumerate(results.iterrows()):  # a handful of rows: the search's own budget
        out.append({"trial": i, "model": kind, "params": {c.removeprefix("param_"): _plain(r[c]) for c in pcols},
                    "score": float(r[score]) if pd.notna(r[score]) else float("nan"),
                    "seconds": float(r[secs]) if secs and pd.notna(r[secs]) else float("nan")})
    return out


def _plain(v):
    return v.item() if hasattr(v, "item") else (None if v is pd.NA else v)


def _class_counts(labels: pd.Series) -> dict[str, int]:
    vc = labels.dropna().astype(str).value_counts()
    return {c: int(vc.get(c, 0)) for c in CLASSES}


def learnable(labeled: pd.Series, config: LatencyConfig) -> tuple[bool, str]:
    counts = _class_counts(labeled)
    if min(counts.values()) >= config.min_class_rows:
        return True, ""
    return False, (f"labeled rows hold {counts['good']} good and {counts['noise']} noise "
                   f"(fewer than min_class_rows={config.min_class_rows} of a class)")


def envelope_labels(work: pd.DataFrame, pool: pd.Series, config: LatencyConfig) -> tuple[np.ndarray, str]:
    """Labels where no level could learn (the labeled rows hold one class, or too few of one), and the
    guard on learned labels: each row's deviation from its local baseline against what the pair's labeled
    rows showed.

    The labeled good rows bound how far good RTTs stray: per score, ``envelope_margin`` times the highest
    of them (at least ``envelope_floor``); a few labeled noise rows lower a bound to midway between the two
    classes where they do not overlap. Roughness beside the neighbour score is bounded by the labeled good
    rows that stand out on that score (at least ``min_class_rows`` of them, else by all), not by the calm
    rows beside a burst that inherit its roughness. A row is noise when it lies beyond the bound of every
    score of one of :func:`_envelope_rules`. A pool of good rows whose range covers the data therefore
    labels it all good, which is then what the evidence says, not a default. Returns 0/1 per row (a Series
    on ``work``'s index) and the rule in words."""
    lab = pool.reindex(work.index)
    good = (lab == "good").fillna(False).to_numpy()
    noise = (lab == "noise").fillna(False).to_numpy()
    hit = np.zeros(len(work), dtype=bool)
    words, bounds = [], {}
    for rule in _envelope_rules(config):
        both = np.ones(len(work), dtype=bool)
        parts = []
        lead = rule[0]
        for f in rule:
            x = work[f].to_numpy(dtype="float64")
            ref, key, among = good, f, "labeled good rows"
            if f == ROUGHNESS and f != lead:
                # Roughness is a window statistic: the calm good rows beside a burst inherit the burst's. How
                # rough a good row that stands out on the rule's lead score can be is told by such rows only,
                # where the labels hold enough of them.
                lead_floor = _envelope_floor(lead, config)
                out = good & (work[lead].to_numpy(dtype="float64") > lead_floor)
                if int(out.sum()) >= config.min_class_rows:
                    ref, key, among = out, (f, lead), f"labeled good rows with {lead} > {lead_floor:g}"
            if key not in bounds:
                bounds[key] = _envelope_bound(x, ref, noise, among, _envelope_floor(f, config), config)
            bound, how = bounds[key]
            both &= x > bound
            parts.append(f"{f} > {bound:.2f} ({how})")
        hit |= both
        words.append(" and ".join(parts))
    return pd.Series(hit.astype(int), index=work.index), " or ".join(f"[{w}]" for w in words)


def _envelope_bound(x: np.ndarray, ref: np.ndarray, noise: np.ndarray, among: str, floor: float,
                    config: LatencyConfig) -> tuple[float, str]:
    """One score's bound: ``envelope_margin`` x the highest of the ``ref`` rows (labeled good), at least
    ``floor``, lowered to midway between the classes where the labeled noise rows all lie beyond."""
    if not ref.any():
        return floor, f"the floor: no {among} to bound it"
    top = float(np.nanmax(x[ref]))
    scaled = config.envelope_margin * top
    bound = max(floor, scaled)
    how = f"{config.envelope_margin:g} x the highest of {int(ref.sum())} {among}"
    if floor > scaled:
        how = f"the floor {floor:g}; {how} is {scaled:.2f}"
    low = float(np.nanmin(x[noise])) if noise.any() else -np.inf
    midway = max(floor, (top + low) / 2)
    if low > top and midway < bound:
        bound = midway
        how = f"midway between {int(ref.sum())} {among.replace(' rows', '', 1)} and {int(noise.sum())} labeled noise rows"
    return bound, how


#: The envelope's relative-excess score: how far above its centred median a row lies, as a share of it.
EXCESS_SHARE = "rtt_ms_pair_crel"


#: The envelope's roughness score: the median jump around a row over the series' median jump.
ROUGHNESS = "rtt_ms_pair_rough"

#: The envelope's floor for roughness: jumps ten times the series' usual ones. A level that only the
#: unlabeled period visits can jitter 6-9 times as much as the labeled ones (`level_shift_unlabeled`).
ROUGH_FLOOR = 10.0


def _steady(calm: np.ndarray, rough: np.ndarray) -> np.ndarray:
    """The calm rows that do not jump like a burst's: those the level floor is learned from and applied to."""
    return calm & (rough < ROUGH_FLOOR)


def _envelope_floor(feature: str, config: LatencyConfig) -> float:
    # z-scores are floored in robust sigmas; rarity in decades of density below the busiest level;
    # roughness in multiples of the series' usual jump; the excess share has no floor: the labeled good
    # rows' own spread (times the margin) is its bound
    if feature == LEVEL_FEATURE:
        return RARITY_FLOOR
    if feature == ROUGHNESS:
        return ROUGH_FLOOR
    return 0.0 if feature == EXCESS_SHARE else config.envelope_floor


def _envelope_rules(config: LatencyConfig) -> list[tuple[str, ...]]:
    """Conjunctions of scores, any of which makes a row noise: the pair's centred robust z with the
    excess as a share of the centred median (a z-score alone calls heavy-tailed jitter noise wherever
    the 21-point window's MAD happens to be small: the share of the RTT it adds is then no larger than
    labeled good rows show); the neighbour score with the rarity of the RTT's level (the neighbour score
    alone also fires on the first rows after a route change, which lie on a common level); the neighbour
    score with roughness (inside a burst of spikes every RTT jumps, so the centred z, whose median the
    burst pulled up, misses them)."""
    if config.two_sided:
        return [("rtt_ms_pair_crz", EXCESS_SHARE), ("rtt_ms_pair_nrz", LEVEL_FEATURE),
                ("rtt_ms_pair_nrz", ROUGHNESS)]
    return [("rtt_ms_pair_rz", LEVEL_FEATURE)]


def _deviation_scores(config: LatencyConfig) -> tuple[str, ...]:
    # how far a row stands above its local baselines: centred and neighbour (two-sided), else causal
    return ("rtt_ms_pair_crz", "rtt_ms_pair_nrz") if config.two_sided else ("rtt_ms_pair_rz",)


def _deviation(rows: pd.DataFrame, config: LatencyConfig) -> Optional[np.ndarray]:
    cols = [c for c in _deviation_scores(config) if c in rows.columns]
    if not cols:
        return None
    return np.fmax.reduce([rows[c].to_numpy(dtype="float64") for c in cols])


@dataclass
class NoiseFloor:
    """What a learned noise row must show to stay noise (see :func:`deviation_floor`): stand ``z`` robust
    sigmas above its centred or its neighbour baseline, and, where it does not stand ``noise_min_z``
    above the centred one, jump at least ``rough`` (roughness) around it and, unless it jumps like a burst
    (:data:`ROUGH_FLOOR`), lie on a level at least ``level`` rare (rarity). 0: no such condition."""

    z: float = 0.0
    z_from: str = "off"
    rough: float = 0.0
    rough_from: str = "off"
    level: float = 0.0
    level_from: str = "off"

    def to_dict(self) -> dict[str, Any]:
        return {"z": self.z, "from": self.z_from, "rough": self.rough, "rough_from": self.rough_from,
                "level": self.level, "level_from": self.level_from}


def _floor(values: np.ndarray, cap: float, what: str, unit: str) -> tuple[float, str]:
    if not values.size:
        return 0.0, f"no labeled noise rows {what} to learn it from"
    low = float(values.min())
    if low < cap:
        return max(low, 0.0), f"the calmest of {values.size} labeled noise rows {what} ({low:.2f} {unit})"
    return cap, f"the cap {cap:g} (the {values.size} labeled noise rows {what} all stand higher)"


def _crz_rough(frame: pd.DataFrame, config: LatencyConfig) -> Optional[tuple[np.ndarray, np.ndarray]]:
    # the centred z and the roughness: a row above its neighbours only must jump to be a burst's
    if not (config.two_sided and {"rtt_ms_pair_crz", ROUGHNESS} <= set(frame.columns)):
        return None
    return frame["rtt_ms_pair_crz"].to_numpy(dtype="float64"), frame[ROUGHNESS].to_numpy(dtype="float64")


def _below_floor(rows: pd.DataFrame, config: LatencyConfig, floor: NoiseFloor) -> np.ndarray:
    """Rows under ``floor``: too calm to be noise whatever the learned LFs say (NaN scores: not under)."""
    below = np.zeros(len(rows), dtype=bool)
    dev = _deviation(rows, config)
    if floor.z > 0 and dev is not None:
        below |= dev < floor.z
    scores = _crz_rough(rows, config)
    if scores is None:
        return below
    crz, rough = scores
    calm = crz < config.noise_min_z  # does not stand on its centred baseline
    if floor.rough > 0:
        below |= calm & (rough < floor.rough)
    if floor.level > 0 and LEVEL_FEATURE in rows.columns:
        # a row inside a burst (jumping ROUGH_FLOOR times the usual) is a burst's on any level
        below |= _steady(calm, rough) & (rows[LEVEL_FEATURE].to_numpy(dtype="float64") < floor.level)
    return below


def deviation_floor(work: pd.DataFrame, pool: pd.Series, config: LatencyConfig) -> NoiseFloor:
    """The floor under learned noise labels, learned from the pair's labeled noise rows.

    An LF that cuts on roughness alone learns "a jumpy neighbourhood" and then calls the baseline RTTs
    around a burst or a route change noise; an LF on the neighbour score alone calls a calm short stay on
    another route noise (both neighbour medians lie on the usual route, as they do around a burst). A
    noise RTT usually stands above a local baseline, and one that stands above its neighbours only (a
    burst's rows) usually jumps. But not always: on some routes the user's noise includes calm RTTs
    within a few sigmas of both baselines (a congestion episode the median has already followed). The
    pair's labeled noise rows say which: each floor is its cap (``noise_min_z``, ``noise_min_rough``) or
    the calmest labeled noise row, whichever is lower, and there is none without labeled noise.

    The level floor: a row that stands above its neighbours only, on a level at least a tenth as dense as
    the pair's busiest (what the KDE's ``min_height`` calls a mode), without jumping like a burst (under
    :data:`ROUGH_FLOOR`), is a short stay on a route, unless the pair's labeled noise holds such rows (the
    floor is then the lowest rarity among them). A burst's rows that happen to land on a common level do
    not lower it."""
    out = NoiseFloor()
    dev = _deviation(work, config)
    if not config.noise_min_z or dev is None:
        return out
    noise = (pool.reindex(work.index) == "noise").fillna(False).to_numpy()
    out.z, out.z_from = _floor(dev[noise & np.isfinite(dev)], config.noise_min_z, "with a baseline", "robust sigmas")
    scores = _crz_rough(work, config)
    if scores is None:
        return out
    crz, rough = scores
    calm = noise & ~(crz >= config.noise_min_z)
    what = f"under {config.noise_min_z:g} sigmas above the centred baseline"
    if config.noise_min_rough:
        out.rough, out.rough_from = _floor(rough[calm & np.isfinite(rough)], config.noise_min_rough, what, "roughness")
    if LEVEL_FEATURE in work.columns:
        level = work[LEVEL_FEATURE].to_numpy(dtype="float64")
        cap = float(-np.log10(config.modality.min_height))
        # A burst's rows that land on a common level say nothing of a calm stay there: only labeled noise
        # that does not jump (under ROUGH_FLOOR) lowers this floor.
        steady = _steady(calm, rough) & np.isfinite(level)
        what = f"{what} and jumping less than {ROUGH_FLOOR:g}"
        if noise.any() and not steady.any():
            out.level, out.level_from = cap, f"the cap {cap:g} (no labeled noise row {what})"
        else:
            out.level, out.level_from = _floor(level[steady], cap, what, "rarity")
    return out


def guard_labels(lab, p, src, envelope, rows, res: SubsetResult, config: LatencyConfig,
                 floor: Optional[NoiseFloor] = None):
    """Learned labels, less the noise of rows that stand out from no local baseline, or only from their
    neighbours without jumping (:func:`deviation_floor`), with the envelope's noise added (see
    ``LatencyConfig.envelope_guard``)."""
    lab = np.asarray(lab)
    if floor is not None:
        calm = (lab == 1) & _below_floor(rows, config, floor)
        res.autolf["deviation_floor_removed"] = int(calm.sum())
        lab = np.where(calm, 0, lab)
        p = np.where(calm, 0.0, p)
        src = np.where(calm, "deviation_floor", src)
    if envelope is None or not config.envelope_guard:
        return lab, p, src
    env = envelope[0].loc[rows.index].to_numpy().astype(bool)
    add = env & (np.asarray(lab) == 0)
    res.autolf["envelope_added"] = int(add.sum())
    lab = np.where(add, 1, lab)
    p = np.where(add, 1.0, p)
    src = np.where(add, "envelope", src)
    return lab, p, src


def describe_subset(res: SubsetResult, learner: Learner, train: pd.DataFrame) -> None:
    """The subset's record of the LFs that labeled it: pack, Snuba's record, and the LF tree."""
    auto = learner.auto
    # keeps what the subset already recorded (the envelope guard's count)
    res.autolf = {**auto.to_dict(), "level": learner.level, "dropped_unlabeled_train_rows": int(learner.dropped), **res.autolf}
    res.pack_yaml = auto.pack.to_yaml() if hasattr(auto.pack, "to_yaml") else ""
    try:
        from flamenco_core.explain import build_tree, render_text

        feats = sorted({c.feature for spec in auto.pack.lfs for c in spec.when})
        complete = [f for f in feats if f in train.columns and train[f].notna().all()]
        tree = build_tree(auto.pack, learner.stats, importance=_importance(auto), mode="faithful", never_missing=complete)
        res.tree_text = render_text(tree)
        res.tree_json = tree.to_json()
    except Exception as exc:  # the tree is an explanation, not a result: record and go on
        res.tree_text = f"(tree not built: {type(exc).__name__}: {exc})"


def _importance(auto) -> dict[str, float]:
    """Tree node order: the committed heuristics' order (Snuba commits the best-scoring first)."""
    order: dict[str, float] = {}
    for rank, h in enumerate(auto.heuristics):
        for f in h.features:
            order.setdefault(f, float(len(auto.heuristics) - rank))
    return order


@dataclass
class SourceLevel:
    """LFs learned on the pooled labeled rows of many pairs of one source, for pairs too small or too
    one-sided to learn their own. Plain data (a pack and the statistics its percentiles resolve to), so it
    travels to any worker as JSON; votes are combined by majority."""

    pack_yaml: str
    stats: dict[str, dict[str, float]]
    pairs: int
    rows: int
    counts: dict[str, int]
    level: str = "source"
    kind: str = "label_model"

    def to_dict(self) -> dict[str, Any]:
        return {"pack_yaml": self.pack_yaml, "stats": self.stats, "pairs": self.pairs, "rows": self.rows, "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceLevel":
        return cls(d["pack_yaml"], d["stats"], int(d["pairs"]), int(d["rows"]), dict(d["counts"]))

    @property
    def pack(self):
        from flamenco_core.labeling import LFPack

        import yaml

        return LFPack.from_dict(yaml.safe_load(self.pack_yaml))

    def predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from flamenco_core.labeling import apply_lfs
        from flamenco_core.labeling.stats import as_statistics

        L = apply_lfs(self.pack, lf_view(rows), stats=as_statistics(self.stats))
        noise = (L == 1).sum(axis=1)
        votes = (L != -1).sum(axis=1)
        p = np.where(votes > 0, noise / np.maximum(votes, 1), 0.0)
        return (p > 0.5).astype(int), p, np.full(len(rows), "label_model", dtype=object)


def needs_source_level(frames: Sequence[pd.DataFrame], config: LatencyConfig) -> bool:
    """Whether some pair with labels has too few of a class to learn its own LFs (the pair-level check
    on all its labeled rows; cheap: reads the label column only)."""
    for df in frames:
        if len(df) >= config.min_points and "label" in df.columns and df["label"].notna().any():
            if min(_class_counts(df["label"]).values()) < 2 * config.min_class_rows:
                return True
    return False


def fit_source_level(frames: Sequence[pd.DataFrame], config: LatencyConfig, source: str = "ark") -> tuple[Optional[SourceLevel], str]:
    """Pool the labeled rows of ``frames`` (pairs of one source, as given to :func:`run_pair`) and learn LFs
    on their relative features. ``(None, reason)`` when the pooled labels still cannot teach both classes."""
    from flamenco_core.labeling import compute_stats

    labeled, train, used = [], [], 0
    for df in frames:
        df = df.sort_values("timestamp", kind="stable").reset_index(drop=True).drop(columns=["truth"], errors="ignore")
        if len(df) < config.min_points or "label" not in df.columns or df["label"].isna().all():
            continue
        prep = prepare_pair(df, config, source, True)
        feats = pair_features(config)
        labeled.append(prep.work.loc[prep.val_idx, feats].assign(label=prep.pool.loc[prep.val_idx]))
        train.append(prep.work.loc[prep.train_idx, feats])
        used += 1
    if not labeled:
        return None, "source level: no pair with labels"
    lab = pd.concat(labeled, ignore_index=True)
    tr = pd.concat(train, ignore_index=True)
    ok, why = learnable(lab["label"], config)
    if not ok:
        return None, f"source level ({used} pairs): {why}"
    learner, why = learn_level("source", lab, tr, pair_features(config), config, 0, end_model=False)
    if learner is None:
        return None, why
    pack = learner.auto.pack
    stats = compute_stats(lf_view(tr), needed=pack.needed_stats())
    return SourceLevel(pack.to_yaml(), {f: {k: float(v) for k, v in d.items()} for f, d in stats.items()}, used, len(lab),
                       _class_counts(lab["label"])), ""
