"""The feature-selection report that guided conf/lf_packs/cic2019_multiclass.yaml, and the pack's LF
analysis, both on the **training split** only (the split `flamenco lf compare-models` makes, seed 0), so
the test split that scores the pack was never looked at while writing it (docs/cic2019_multiclass.md).

    .venv/bin/python benchmarks/cic2019_feature_report.py [--samples ../shared/samples/cicddos2019] > report.md

Prints Markdown: the random forest's impurity importance of every numeric feature for the classes of
conf/class_maps/cic2019.yaml, per-class medians of the top features, protocol and direction per class,
where each class's smallest forward payload falls as a share of the largest, and the LF analysis
(coverage, correct, incorrect, empirical accuracy per LF).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _md(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    head = "| " + " | ".join([str(df.index.name or "")] + [str(c) for c in df.columns]) + " |"
    sep = "| " + " | ".join(["---"] * (len(df.columns) + 1)) + " |"
    rows = []
    for idx, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        rows.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join([head, sep, *rows]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default=str(ROOT.parent / "shared" / "samples" / "cicddos2019"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from flamenco_core.experiments.inputs import read_inputs
    from flamenco_core.experiments.label_model_comparison import GOLD, prepare
    from flamenco_core.labeling.analysis import lf_summary
    from flamenco_core.labeling.audit import is_identifier_feature
    from flamenco_core.labeling.class_map import load_class_map
    from flamenco_core.labeling.spec import LFPack
    from flamenco_core.preprocess.feature_selection import NON_FEATURES, feature_importance, numeric_features

    with tempfile.TemporaryDirectory() as tmp:
        df, _, _ = read_inputs([args.samples], "cicflowmeter", tmp)
    pack = LFPack.from_yaml(ROOT / "conf" / "lf_packs" / "cic2019_multiclass.yaml")
    prep = prepare(df, pack, load_class_map(ROOT / "conf" / "class_maps" / "cic2019.yaml"), seed=args.seed)
    train = prep.frames["train"]
    y = train[GOLD].astype(str)
    print(f"# Feature-selection report: CIC-DDoS2019, {len(train)} training rows of {len(df)}\n")
    print("Classes (conf/class_maps/cic2019.yaml), training rows: "
          + ", ".join(f"{c} {n}" for c, n in y.value_counts().items()) + "\n")
    # ports are left out: the pack's port LFs come from protocol knowledge, not from this data
    skip = set(NON_FEATURES) | {GOLD, "__raw_label", "src_port", "dst_port"}
    feats = [f for f in numeric_features(train, skip) if not is_identifier_feature(f)]
    imp = feature_importance(train, y, feats, methods=("impurity",), seed=args.seed, n_estimators=100)
    top = imp.sort_values("impurity", ascending=False).head(15)
    print("## Impurity importance (random forest, 100 trees, seeded), top 15\n")
    print(_md(top[["impurity"]]))
    cols = ["protocol", "inbound", "fwd_packet_length_min", "fwd_packet_length_max", "fwd_packet_length_std",
            "total_fwd_packets", "flow_duration", "syn_flag_count", "ack_flag_count"]
    med = train.groupby(GOLD)[cols].median()
    med.index.name = "class (median)"
    print("## Per-class medians\n")
    print(_md(med))
    print("## Protocol and direction per class (rows)\n")
    print(_md(pd.crosstab(train[GOLD], [train["protocol"].rename("protocol")]).rename_axis("class")))
    print(_md(pd.crosstab(train[GOLD], train["inbound"].rename("inbound")).rename_axis("class")))
    largest = float(train["fwd_packet_length_min"].max())
    share = train["fwd_packet_length_min"] / largest
    bands = pd.cut(share, [-0.01, 0.0, 0.12, 0.2, 0.28, 0.6, 0.85, 1.0],
                   labels=["0", "(0, 0.12]", "(0.12, 0.2]", "(0.2, 0.28]", "(0.28, 0.6]", "(0.6, 0.85]", "(0.85, 1]"])
    print(f"## Smallest forward payload as a share of the largest ({largest:.0f} bytes), rows per class\n")
    print(_md(pd.crosstab(train[GOLD], bands).rename_axis("class")))
    print("## LF analysis on the training split\n")
    summ = lf_summary(prep.L["train"], pack.lf_names, Y=prep.y["train"], classes=prep.classes)
    print(_md(summ[["Coverage", "Correct", "Incorrect", "Emp. Acc."]].rename_axis("LF")))


if __name__ == "__main__":
    main()
