"""What LFs see of the rarity score: the RTTs at the busiest level's peak are one level, so no learned
LF cuts between them; end models and baselines keep the raw score."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from flamenco_core.experiments.latency import LatencyConfig, run_pair
from flamenco_core.experiments.latency.features import COMMON_LEVEL, LEVEL_FEATURE, lf_view


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 6.0, allow_nan=False), min_size=1, max_size=50))
def test_lf_view_zeroes_only_the_peak_and_keeps_order(values):
    frame = pd.DataFrame({LEVEL_FEATURE: values, "rtt_ms": 1.0})
    seen = lf_view(frame)[LEVEL_FEATURE].to_numpy()
    raw = np.asarray(values)
    assert np.array_equal(seen[raw >= COMMON_LEVEL], raw[raw >= COMMON_LEVEL])
    assert np.all(seen[raw < COMMON_LEVEL] == 0.0)
    # monotone: a cut on the view is a cut on the raw score, never between rows it merged
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(seen[order]) >= 0)
    assert frame[LEVEL_FEATURE].tolist() == list(values)  # the caller's frame is untouched


def test_lf_view_without_the_score_is_the_frame_itself():
    frame = pd.DataFrame({"rtt_ms": [1.0, 2.0]})
    assert lf_view(frame) is frame


def test_no_learned_rule_cuts_inside_the_busiest_route():
    """The scenario generator's route_flapping, seed 19 (a fresh seed), pair 3: its labeled period barely
    visits the busiest route (48 ms), and the subset's learned LF "rarity > 0.0055 is noise" (1.3% under
    the peak density) called 78 of that route's ordinary RTTs noise. With the peak one level, at most 20."""
    from builders import scenario_pair, unlabeled_errors

    pair = scenario_pair("route_flapping", 19, 3)
    res = run_pair(pair, LatencyConfig(), source="ark")
    unlabeled, false_pos, missed = unlabeled_errors(pair, res.labels)
    assert unlabeled > 1500
    assert false_pos <= 25 and missed <= 5, (false_pos, missed)
