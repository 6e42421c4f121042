"""The envelope of the labeled good rows: a row is noise on the centred score only where it stands out
both in robust sigmas and as a share of its baseline, so heavy-tailed jitter is not called noise while
spikes still are."""

import numpy as np
import pandas as pd

from flamenco_core.experiments.latency import LatencyConfig, run_pair
from flamenco_core.experiments.latency.levels import envelope_labels


def _work(crz, crel) -> pd.DataFrame:
    # neighbour score, rarity and roughness calm, so only the centred rule can fire
    return pd.DataFrame({"rtt_ms_pair_crz": crz, "rtt_ms_pair_crel": crel, "rtt_ms_pair_nrz": 0.0,
                         "rtt_ms_rarity": 0.0, "rtt_ms_pair_rough": 0.0})


def test_a_high_z_within_the_good_rows_share_is_good_and_a_spike_is_noise():
    """1,000 labeled good rows of heavy-tailed jitter reach 9 robust sigmas and 60% of the baseline. An
    unlabeled row of the same jitter at 15 sigmas (a window whose MAD is small) adds 50%: good. Spikes at
    15 sigmas that double the RTT: noise. A row at 95% but 5 sigmas: good (within the floor)."""
    rng = np.random.default_rng(0)
    good_z = np.append(rng.uniform(-2.0, 8.0, 999), 9.0)
    good_rel = np.append(rng.uniform(-0.1, 0.5, 999), 0.6)
    crz = np.concatenate([good_z, [15.0, 15.7, 15.0, 40.0, 5.0]])
    crel = np.concatenate([good_rel, [0.5, 0.55, 1.0, 2.0, 0.95]])
    work = _work(crz, crel)
    pool = pd.Series(pd.NA, index=work.index, dtype="string")
    pool.iloc[:1000] = "good"
    hit, words = envelope_labels(work, pool, LatencyConfig())
    assert hit.to_numpy()[1000:].tolist() == [0, 0, 1, 1, 0] and hit.to_numpy()[:1000].sum() == 0
    assert "rtt_ms_pair_crz > 13.50" in words and "rtt_ms_pair_crel > 0.90" in words


def test_labeled_noise_lowers_the_share_bound_to_midway():
    """Labeled noise rows all beyond the good rows' highest share, but closer than the margin: the bound
    is midway between the two; where they lie further out, the margin stays (and says so)."""
    work = _work(np.array([1.0, 2.0, 3.0, 30.0, 30.0, 30.0, 30.0]),
                 np.array([0.1, 0.15, 0.2, 0.3, 0.6, 0.26, 0.24]))
    pool = pd.Series(["good", "good", "good", "noise", "noise", pd.NA, pd.NA], dtype="string")
    hit, words = envelope_labels(work, pool, LatencyConfig())
    assert "rtt_ms_pair_crel > 0.25 (midway between 3 labeled good and 2 labeled noise rows)" in words
    assert hit.tolist() == [0, 0, 0, 1, 1, 1, 0]
    far = work.assign(rtt_ms_pair_crel=[0.1, 0.15, 0.2, 0.5, 0.6, 0.26, 0.24])
    hit, words = envelope_labels(far, pool, LatencyConfig())
    assert "rtt_ms_pair_crel > 0.30 (1.5 x the highest of 3 labeled good rows)" in words
    assert hit.tolist() == [0, 0, 0, 1, 1, 0, 0]


def test_heavy_tail_scenario_gets_no_noise():
    """The scenario generator's heavy_tail_no_noise (seed 12, pair 0): the centred z alone called 2 of its
    1,943 unlabeled good rows noise (capped lognormal jitter 14.7 robust sigmas up, where the 1,046 labeled
    rows reached 9.6; 1.5 x 9.6 is the bound), though they add no larger a share of the RTT than labeled
    good rows did."""
    from flamenco_core.synth.scenarios import generate

    df = generate("heavy_tail_no_noise", n_pairs=1, seed=12)
    pair = df.sort_values("timestamp", kind="stable").reset_index(drop=True).drop(columns=["family"])
    res = run_pair(pair, LatencyConfig(), source="ark")
    out = res.labels.reset_index(drop=True)
    unl = pair["label"].isna().to_numpy()
    assert unl.sum() > 1500 and (out["label"][unl] == "good").all()


def _burst_work(n_outstanding: int) -> tuple[pd.DataFrame, pd.Series]:
    """1,000 labeled good rows, calm in both scores; 20 labeled good rows beside a burst (roughness is a
    window statistic, so they inherit the burst's, 30, while standing near their neighbours); and
    ``n_outstanding`` labeled good rows that stand out from their neighbours (8-12 sigmas) calmly. Then
    four unlabeled rows: a burst's row on a common level (neighbour z 30, roughness 14), a calm short stay
    on another route (neighbour z 30, roughness 1.5), a calm row beside a burst, and a plain row."""
    rng = np.random.default_rng(1)
    nrz = np.concatenate([rng.uniform(-2.0, 5.0, 1000), np.full(20, 1.0), np.linspace(8.0, 12.0, n_outstanding),
                          [30.0, 30.0, 1.0, 0.5]])
    rough = np.concatenate([rng.uniform(0.5, 2.5, 1000), np.full(20, 30.0), np.full(n_outstanding, 3.0),
                            [14.0, 1.5, 30.0, 1.0]])
    work = pd.DataFrame({"rtt_ms_pair_crz": 0.0, "rtt_ms_pair_crel": 0.0, "rtt_ms_pair_nrz": nrz,
                         "rtt_ms_rarity": 0.0, "rtt_ms_pair_rough": rough})
    pool = pd.Series(pd.NA, index=work.index, dtype="string")
    pool.iloc[:-4] = "good"
    return work, pool


def test_roughness_is_bounded_by_the_good_rows_that_stand_out():
    """The roughness bound comes from the labeled good rows that stand above their neighbours (here 10,
    at 3 at most, so the floor of 10 holds), not from the calm rows beside a burst (30): a burst's row on
    a common level is noise, a calm short route visit and a calm row beside a burst stay good."""
    work, pool = _burst_work(10)
    hit, words = envelope_labels(work, pool, LatencyConfig())
    assert hit.to_numpy()[-4:].tolist() == [1, 0, 0, 0] and hit.to_numpy()[:-4].sum() == 0
    assert "rtt_ms_pair_rough > 10.00 (the floor 10; 1.5 x the highest of 10 labeled good rows with rtt_ms_pair_nrz > 6" in words


def test_too_few_outstanding_good_rows_keep_the_bound_of_all_good_rows():
    """With fewer than min_class_rows labeled good rows standing out, the labels say nothing about how
    rough such a row may be: the bound falls back to all labeled good rows (1.5 x 30), and the burst's
    row is left to the learned LFs."""
    work, pool = _burst_work(3)
    hit, words = envelope_labels(work, pool, LatencyConfig())
    assert hit.to_numpy()[-4:].tolist() == [0, 0, 0, 0]
    assert "rtt_ms_pair_rough > 45.00 (1.5 x the highest of 1023 labeled good rows)" in words
