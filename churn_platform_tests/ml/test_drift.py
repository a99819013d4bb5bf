import numpy as np
import pandas as pd

from churn_platform.ml.drift import feature_drift, population_stability_index


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(0, 1, 5000))
    assert population_stability_index(reference, pd.Series(rng.normal(0, 1, 5000))) < 0.02
    assert population_stability_index(reference, pd.Series(rng.normal(1.0, 1, 5000))) > 0.25


def test_missing_values_count_as_a_bin_of_their_own():
    rng = np.random.default_rng(1)
    reference = pd.Series(rng.normal(0, 1, 2000))
    mostly_missing = pd.Series(np.where(rng.random(2000) < 0.5, np.nan, rng.normal(0, 1, 2000)))
    assert population_stability_index(reference, mostly_missing) > 0.25


def test_feature_drift_covers_the_requested_columns():
    frame = pd.DataFrame({"a": range(100), "b": [1.0] * 100})
    result = feature_drift(frame, frame, ["a", "b", "not_there"])
    assert set(result) == {"a", "b"} and all(v < 1e-6 for v in result.values())
