"""Mixed tables in the EM models: the latent class / mixed Gaussian mixture, and PPCA's refusal.

Every number is checked against an exact answer: brute-force sums over all level
combinations of tiny models, scipy's multivariate normal, Bayes' rule written out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skgenerative import GaussianMixtureDensity, PPCADensity


# --------------------------------------------------------------------------- PPCA
def _small_table(n=40, seed=0):
    rng = np.random.RandomState(seed)
    return pd.DataFrame({
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "c": rng.normal(size=n),
        "shop": pd.Categorical(rng.choice(["x", "y"], n)),
    })


def test_ppca_refuses_a_discrete_column_naming_it_and_who_models_it():
    df = _small_table()
    with pytest.raises(ValueError, match=r"'shop' \(categorical\).*GaussianMixtureDensity"):
        PPCADensity(1).fit(df)
    # declared discrete through column_types: the same refusal
    numeric = df.drop(columns="shop").assign(d=1.0 + np.random.RandomState(1).rand(len(df)))
    with pytest.raises(ValueError, match=r"'d' \(ordinal\).*GaussianMixtureDensity"):
        PPCADensity(1, column_types={"d": "ordinal"}).fit(numeric)
    # numeric declarations are accepted and modelled as real numbers
    declared = PPCADensity(1, column_types={"d": "positive"}).fit(numeric)
    plain = PPCADensity(1).fit(numeric)
    np.testing.assert_array_equal(declared.score_samples(numeric), plain.score_samples(numeric))
