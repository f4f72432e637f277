"""GenerativeImputer: an sklearn transformer imputing from a density model."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skgenerative import DiscreteDataWarning, GaussianMixtureDensity, GenerativeImputer, PPCADensity


@parametrize_with_checks([
    GenerativeImputer(),
    GenerativeImputer(PPCADensity(1), add_indicator=True),
    GenerativeImputer(sample_posterior=True, random_state=0),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _iris_missing(rate=0.3, seed=0):
    """Iris with MCAR holes. Measured to 0.1 cm, two of its columns take few values:
    the models warn (DiscreteDataWarning), and the tests assert it."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.RandomState(seed)
    Xm = X.copy()
    Xm[rng.rand(*X.shape) < rate] = np.nan
    return X, Xm, y


# the peer's own warning at its defaults, on the data we compare on
@pytest.mark.filterwarnings("ignore:\\[IterativeImputer\\] Early stopping:sklearn.exceptions.ConvergenceWarning")
def test_imputes_better_than_the_mean_and_like_iterative_imputer():
    X, Xm, _ = _iris_missing()
    mask = np.isnan(Xm)
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[mask] ** 2))  # noqa: E731
    with pytest.warns(DiscreteDataWarning, match="GaussianMixtureDensity"):
        ours = rmse(GenerativeImputer().fit_transform(Xm))
    assert ours < 0.6 * rmse(SimpleImputer().fit_transform(Xm))
    assert ours < 1.05 * rmse(IterativeImputer(random_state=0).fit_transform(Xm))


def test_observed_entries_unchanged_and_no_nan_left():
    X, Xm, _ = _iris_missing()
    with pytest.warns(DiscreteDataWarning):
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
    # directly on the imputer: GridSearchCV over estimator__n_components picks the
    # setting whose fitted model has the best held-out likelihood, computed by hand
    grid = [1, 2, 3]
    imputer_search = GridSearchCV(GenerativeImputer(GaussianMixtureDensity(random_state=0)),
                                  {"estimator__n_components": grid}, cv=3,
                                  scoring=lambda est, X, y=None: est.estimator_.score(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer_search.fit(Xm)
        by_hand = {k: np.mean([GenerativeImputer(GaussianMixtureDensity(k, random_state=0)).fit(Xm[train])
                               .estimator_.score(Xm[test]) for train, test in KFold(3).split(Xm)]) for k in grid}
    assert len({round(v, 6) for v in by_hand.values()}) == len(grid)  # the settings are told apart
    assert imputer_search.best_params_["estimator__n_components"] == max(by_hand, key=by_hand.get)
    assert imputer_search.best_score_ == pytest.approx(max(by_hand.values()), rel=1e-12)
    np.testing.assert_allclose(imputer_search.cv_results_["mean_test_score"], [by_hand[k] for k in grid],
                               rtol=1e-12)


def test_set_output_and_indicator_names():
    _, Xm, _ = _iris_missing()
    df = pd.DataFrame(Xm, columns=["a", "b", "c", "d"])
    with pytest.warns(DiscreteDataWarning, match="column\\(s\\) 1, 3 "):
        imputer = GenerativeImputer(add_indicator=True).set_output(transform="pandas").fit(df)
    out = imputer.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["a", "b", "c", "d", "missingindicator_a", "missingindicator_b",
                                 "missingindicator_c", "missingindicator_d"]
    np.testing.assert_array_equal(out.iloc[:, 4:].to_numpy(), np.isnan(Xm).astype(float))


def test_sample_posterior_draws_vary_with_the_seed_and_match_the_mean():
    X, Xm, _ = _iris_missing()
    mask = np.isnan(Xm)
    with pytest.warns(DiscreteDataWarning, match="PPCADensity"):  # at each of the 202 fits
        mean = GenerativeImputer(PPCADensity(2)).fit(Xm).transform(Xm)
        draws = np.array([
            GenerativeImputer(PPCADensity(2), sample_posterior=True, random_state=s).fit(Xm).transform(Xm)
            for s in range(200)
        ])
        same = GenerativeImputer(PPCADensity(2), sample_posterior=True, random_state=0).fit(Xm)
    assert not np.allclose(draws[0][mask], draws[1][mask])
    np.testing.assert_array_equal(same.transform(Xm), same.transform(Xm))  # fixed seed: fixed draws
    np.testing.assert_allclose(draws.mean(0)[mask], mean[mask], atol=0.15)


def test_edge_cases():
    X, Xm, _ = _iris_missing()
    Xm[0] = np.nan  # a row with every entry missing: imputed from the marginal
    with pytest.warns(DiscreteDataWarning, match="PPCADensity"):
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


# --------------------------------------------------------------- mixed tables
def _mixed_frame(n=400, seed=0, rate=0.2):
    """Two classes behind every column; MCAR holes in every column at ``rate``."""
    rng = np.random.RandomState(seed)
    z = rng.randint(2, size=n)
    full = pd.DataFrame({
        "amount": rng.normal(3.0 * z, 1.0),
        "shop": pd.Categorical(np.where(rng.uniform(size=n) < 0.85, z, 1 - z).astype(str),
                               categories=["0", "1", "never"]),
        "size": pd.Categorical(np.array(["S", "M", "L"])[np.clip(z * 2 + rng.randint(-1, 2, n), 0, 2)],
                               categories=["S", "M", "L"], ordered=True),
        "online": pd.array(rng.uniform(size=n) < np.where(z, 0.9, 0.1), dtype="boolean"),
        "country": np.where(z, "FR", "DE").astype(object),
        "items": rng.poisson(1 + 4 * z).astype(np.int64),
    }, index=pd.RangeIndex(100, 100 + n))
    holes = full.copy()
    for column in holes.columns:
        if column == "items":  # an int64 column cannot hold a missing cell
            continue
        holes.loc[rng.uniform(size=n) < rate, column] = None if column != "amount" else np.nan
    return full, holes


def test_mixed_frames_come_back_as_the_users_frame():
    full, holes = _mixed_frame()
    imputer = GenerativeImputer().fit(holes)
    from skgenerative.impute import MIXED_CANDIDATES

    # the default on a table with discrete columns: mixed mixtures stacked on held-out
    # cells; 'items' (Poisson counts in an int64 column, 18% zeros) is zero-inflated
    assert len(imputer.selection_) == len(MIXED_CANDIDATES)
    for model in imputer.estimators_:
        assert model.column_types == {"items": "positive"} and len(model.level_probabilities_) == 4
    outputs = (imputer.transform(holes),
               GenerativeImputer(sample_posterior=True, random_state=0).fit(holes).transform(holes),
               GenerativeImputer().set_output(transform="pandas").fit(holes).transform(holes))
    for out in outputs:
        assert isinstance(out, pd.DataFrame) and out.index.equals(holes.index)
        assert list(out.columns) == list(holes.columns) and out.dtypes.equals(holes.dtypes)
        assert list(out["shop"].cat.categories) == ["0", "1", "never"] and out["size"].cat.ordered
        assert not out.isna().any().any()
        observed = holes.notna()
        for column in holes.columns:
            pd.testing.assert_series_equal(out[column][observed[column]], holes[column][observed[column]])
    # the levels are imputed from the other columns: far better than the mode
    out = imputer.transform(holes)
    for column in ("shop", "online", "country"):
        missing = holes[column].isna()
        ours = (out[column][missing].astype(object) != full[column][missing].astype(object)).mean()
        mode = (full[column][missing].astype(object) != holes[column].mode()[0]).mean()
        assert ours < 0.6 * mode, column
    with_indicator = GenerativeImputer(add_indicator=True).set_output(transform="pandas").fit(holes)
    out = with_indicator.transform(holes)
    assert list(out.columns[6:]) == [f"missingindicator_{c}" for c in holes.columns if holes[c].isna().any()]
    np.testing.assert_array_equal(out["missingindicator_shop"].to_numpy(), holes["shop"].isna().to_numpy())
    assert out.iloc[:, :6].dtypes.equals(holes.dtypes)


def test_numeric_frames_keep_their_dtypes_under_pandas_output():
    rng = np.random.RandomState(0)
    df = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60).astype(np.float32),
                       "c": rng.randint(0, 5, 60).astype(np.int64)})
    df.loc[[1, 2], "a"] = np.nan
    df.loc[[3], "b"] = np.nan
    with pytest.warns(DiscreteDataWarning, match="column\\(s\\) 2 "):  # 'c': 5 integers
        out = GenerativeImputer().set_output(transform="pandas").fit(df).transform(df)
    assert out.dtypes.equals(df.dtypes) and not out.isna().any().any()
    with pytest.warns(DiscreteDataWarning, match="column\\(s\\) 2 "):
        plain = GenerativeImputer().fit(df).transform(df)  # default output: the array, as before
    assert isinstance(plain, np.ndarray)
    np.testing.assert_array_equal(plain[:, 0], out["a"].to_numpy())


def test_mixed_frames_in_a_pipeline_and_a_model_that_cannot_take_them():
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    full, holes = _mixed_frame(300, seed=1)
    y = (full["country"] == "FR").to_numpy()
    X = holes.drop(columns="country")
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_include=["category", "boolean"])),
        remainder="passthrough",
    )
    pipe = make_pipeline(GenerativeImputer(), encode, LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accuracy = cross_val_score(pipe, X, y, cv=3, error_score="raise").mean()
    assert accuracy > 0.85  # the country is the class that every column depends on
    with pytest.raises(ValueError, match=r"PPCADensity models .*'shop' \(categorical\)"):
        GenerativeImputer(PPCADensity(1)).fit(holes)


def test_verbose_is_passed_down_to_the_density_model(capsys):
    X = np.random.RandomState(0).normal(size=(200, 3))
    X[::7, 1] = np.nan
    GenerativeImputer().fit(X)
    assert capsys.readouterr().out == ""  # verbose=0: silent
    imputer = GenerativeImputer(verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "[GaussianMixtureDensity] done:" in out and "EM iteration" in out
    assert imputer.estimator_.verbose == 1
    model = PPCADensity(1)
    GenerativeImputer(model, verbose=2).fit(X)
    assert model.verbose == 0 and "iteration" in capsys.readouterr().out
