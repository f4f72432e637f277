"""dtype="auto": float32 fitting, float64 evaluation, and when it falls back to float64."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from conftest import ESTIMATORS, data_for
from skgenerative import DiscreteDataWarning, GaussianMixtureDensity, PPCADensity, VariationalAutoencoder


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=[type(e).__name__ for e in ESTIMATORS])
def test_auto_fits_in_the_training_dtype_and_evaluates_in_float64(estimator):
    est = clone(estimator).set_params(dtype="auto")
    X = data_for(est)
    seen = []
    original = type(est)._fit

    def spy(self, X):
        seen.append(self._dtype)
        return original(self, X)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        type(est)._fit = spy
        try:
            est.fit(X)
        finally:
            type(est)._fit = original
    expected = torch.float64 if isinstance(est, PPCADensity) else torch.float32
    assert seen == [expected]
    assert est.score_samples(X).dtype == np.float64
    assert est.transform(X[:3]).dtype == np.float64


def test_auto_is_close_to_float64_and_exact_in_its_own_scores():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 4)) @ rng.normal(size=(4, 4)) + 3.0
    auto = GaussianMixtureDensity(3, random_state=0).fit(X)
    wide = GaussianMixtureDensity(3, random_state=0, dtype="float64").fit(X)
    assert auto._train_dtype == "float32" and wide._train_dtype == "float64"
    # float32 EM lands within float32 rounding of the float64 fit
    np.testing.assert_allclose(auto.score_samples(X), wide.score_samples(X), rtol=1e-4, atol=1e-4)
    # and its float64 evaluation is batch-invariant to float64 rounding
    np.testing.assert_allclose(auto.score_samples(X[5:6]), auto.score_samples(X)[5:6], rtol=1e-13)


@pytest.mark.parametrize("make", [
    lambda dtype: GaussianMixtureDensity(2, random_state=0, dtype=dtype),
    lambda dtype: VariationalAutoencoder(n_components=2, hidden_layer_sizes=(16,), max_iter=30,
                                         random_state=0, dtype=dtype),
], ids=["gmm", "vae"])
def test_data_far_from_the_origin_are_centred_before_the_float32_cast(make):
    """Prices around a million with cents: float32 would round the raw values to 0.06.

    The models centre (the mixture) or standardise (the VAE) the data in the
    precision they were given and cast to float32 only then, so dtype="auto" fits
    in float32 and still sees the spread.
    """
    rng = np.random.RandomState(0)
    X = 1e6 + 0.01 * rng.normal(size=(300, 3)) @ rng.normal(size=(3, 3))
    auto, wide = make("auto").fit(X), make("float64").fit(X)
    assert auto._train_dtype == "float32"
    assert auto.score(X) == pytest.approx(wide.score(X), abs=0.5)
    # rounding the raw values first (what float32 input would be) loses the model,
    # and leaves three values per column: the model says so
    with pytest.warns(DiscreteDataWarning, match="take at most 3 distinct values"):
        blurred = make("auto").fit(X.astype(np.float32))
    assert blurred.score(X) < wide.score(X) - 1.0


def test_a_float32_failure_is_fitted_again_in_float64(monkeypatch):
    original = GaussianMixtureDensity._fit

    def fragile(self, X):
        if self._dtype == torch.float32:
            raise FloatingPointError("EM produced a non-finite log-likelihood")
        return original(self, X)

    monkeypatch.setattr(GaussianMixtureDensity, "_fit", fragile)
    X = np.random.RandomState(0).normal(size=(200, 3))
    auto = GaussianMixtureDensity(2, random_state=0).fit(X)
    assert auto._train_dtype == "float64"
    expected = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X)
    np.testing.assert_array_equal(auto.score_samples(X), expected.score_samples(X))
    with pytest.raises(FloatingPointError):
        GaussianMixtureDensity(2, random_state=0, dtype="float32").fit(X)
    # errors about the input are not retried
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixtureDensity(5).fit(X[:3])
