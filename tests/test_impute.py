"""GenerativeImputer: an sklearn transformer imputing from a density model."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skgenerative import GaussianMixtureDensity, GenerativeImputer, PPCADensity


@parametrize_with_checks([
    GenerativeImputer(),
    GenerativeImputer(PPCADensity(1), add_indicator=True),
    GenerativeImputer(sample_posterior=True, random_state=0),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _iris_missing(rate=0.3, seed=0):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.RandomState(seed)
    Xm = X.copy()
    Xm[rng.rand(*X.shape) < rate] = np.nan
    return X, Xm, y


def test_imputes_better_than_the_mean_and_like_iterative_imputer():
    X, Xm, _ = _iris_missing()
    mask = np.isnan(Xm)
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[mask] ** 2))  # noqa: E731
    ours = rmse(GenerativeImputer().fit_transform(Xm))
    assert ours < 0.6 * rmse(SimpleImputer().fit_transform(Xm))
    assert ours < 1.05 * rmse(IterativeImputer(random_state=0).fit_transform(Xm))


def test_observed_entries_unchanged_and_no_nan_left():
    X, Xm, _ = _iris_missing()
    out = GenerativeImputer().fit(Xm).transform(Xm)
    observed = ~np.isnan(Xm)
    assert np.array_equal(out[observed], Xm[observed])
    assert not np.isnan(out).any()


def test_pipeline_with_a_classifier_and_grid_search():
    _, Xm, y = _iris_missing()
    pipe = make_pipeline(GenerativeImputer(), LogisticRegression(max_iter=500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accuracy = cross_val_score(pipe, Xm, y, cv=3).mean()
    assert accuracy > 0.8
    search = GridSearchCV(
        make_pipeline(GenerativeImputer(GaussianMixtureDensity(random_state=0)), LogisticRegression(max_iter=500)),
        {"generativeimputer__estimator__n_components": [1, 2, 3]}, cv=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(Xm, y)
    assert search.best_score_ > 0.8
    # directly on the imputer: GridSearchCV over estimator__n_components
    imputer_search = GridSearchCV(GenerativeImputer(GaussianMixtureDensity(random_state=0)),
                                  {"estimator__n_components": [1, 2]}, cv=3,
                                  scoring=lambda est, X, y=None: est.estimator_.score(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer_search.fit(Xm)
    assert imputer_search.best_params_["estimator__n_components"] in (1, 2)


def test_set_output_and_indicator_names():
    _, Xm, _ = _iris_missing()
    df = pd.DataFrame(Xm, columns=["a", "b", "c", "d"])
    imputer = GenerativeImputer(add_indicator=True).set_output(transform="pandas").fit(df)
    out = imputer.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b", "c", "d", "missingindicator_a", "missingindicator_b",
                                 "missingindicator_c", "missingindicator_d"]
    np.testing.assert_array_equal(out.iloc[:, 4:].to_numpy(), np.isnan(Xm).astype(float))


def test_sample_posterior_draws_vary_with_the_seed_and_match_the_mean():
    X, Xm, _ = _iris_missing()
    mask = np.isnan(Xm)
    mean = GenerativeImputer(PPCADensity(2)).fit(Xm).transform(Xm)
    draws = np.array([
        GenerativeImputer(PPCADensity(2), sample_posterior=True, random_state=s).fit(Xm).transform(Xm)
        for s in range(200)
    ])
    assert not np.allclose(draws[0][mask], draws[1][mask])
    same = GenerativeImputer(PPCADensity(2), sample_posterior=True, random_state=0).fit(Xm)
    np.testing.assert_array_equal(same.transform(Xm), same.transform(Xm))  # fixed seed: fixed draws
    np.testing.assert_allclose(draws.mean(0)[mask], mean[mask], atol=0.15)


def test_edge_cases():
    X, Xm, _ = _iris_missing()
    Xm[0] = np.nan  # a row with every entry missing: imputed from the marginal
    imputer = GenerativeImputer(PPCADensity(2)).fit(Xm)
    out = imputer.transform(Xm)
    np.testing.assert_allclose(out[0], imputer.estimator_.mean_)
    bad = pd.DataFrame(Xm, columns=["a", "b", "c", "d"])
    bad["c"] = np.nan
    with pytest.raises(ValueError, match="'c'"):
        GenerativeImputer().fit(bad)
    # no missing value: the data come back as they are, and the model is the complete-data fit
    full = GenerativeImputer(PPCADensity(2)).fit(X)
    np.testing.assert_array_equal(full.transform(X), X)
    assert full.estimator_.noise_variance_ == PPCADensity(2).fit(X).noise_variance_


def test_rejects_estimators_without_impute():
    from sklearn.mixture import GaussianMixture

    _, Xm, _ = _iris_missing()
    with pytest.raises(ValueError, match="estimator"):
        GenerativeImputer(GaussianMixture()).fit(Xm)
