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


# ------------------------------------------------------------- the mixed mixture
import itertools  # noqa: E402
import math  # noqa: E402
import warnings  # noqa: E402

from scipy.stats import multivariate_normal  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402

LEVELS = {"shop": ["a", "b", "c"], "size": ["S", "M", "L"], "flag": [False, True]}


def _mixed_table(n=300, seed=0, missing=0.0):
    """Two classes: numbers, a categorical, an ordinal and a binary column all depend on it."""
    rng = np.random.RandomState(seed)
    z = rng.randint(2, size=n)
    shop_p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    size_p = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    df = pd.DataFrame({
        "x": rng.normal(2.0 * z, 1.0),
        "shop": pd.Categorical([rng.choice(LEVELS["shop"], p=shop_p[k]) for k in z],
                               categories=LEVELS["shop"]),
        "y": rng.normal(-1.5 * z, 0.7) + 0.5 * rng.normal(size=n),
        "size": pd.Categorical([rng.choice(LEVELS["size"], p=size_p[k]) for k in z],
                               categories=LEVELS["size"], ordered=True),
        "flag": rng.uniform(size=n) < np.where(z, 0.8, 0.2),
    })
    if missing:
        df["flag"] = df["flag"].astype("boolean")
        for column in df.columns:
            df.loc[rng.uniform(size=n) < missing, column] = np.nan if column in ("x", "y") else None
    return df


def _full_covariances(model):
    k, d = model.means_.shape
    cov = model.covariances_
    kind = model.covariance_type
    if kind == "full":
        return cov
    if kind == "tied":
        return np.repeat(cov[None], k, axis=0)
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def _joint_by_hand(model, numbers, levels):
    """``p(k, observed cells)`` per component, from the fitted parameters and scipy.

    ``numbers``: the numeric cells (NaN where missing), ``levels``: a code per discrete
    column (None where missing).
    """
    covariances = _full_covariances(model)
    observed = ~np.isnan(numbers)
    out = np.array(model.weights_, dtype=float)
    for k in range(model.n_components):
        if observed.any():
            out[k] *= multivariate_normal(
                model.means_[k, observed], covariances[k][np.ix_(observed, observed)]
            ).pdf(numbers[observed])
        for j, code in enumerate(levels):
            if code is not None:
                out[k] *= model.level_probabilities_[j][k, code]
    return out


def _row(x, shop, y, size, flag):
    return pd.DataFrame({
        "x": [x], "shop": pd.Categorical([shop], categories=LEVELS["shop"]), "y": [y],
        "size": pd.Categorical([size], categories=LEVELS["size"], ordered=True),
        "flag": pd.array([flag], dtype="boolean"),
    })


def _all_level_rows(x, y):
    combos = list(itertools.product(LEVELS["shop"], LEVELS["size"], LEVELS["flag"]))
    return pd.concat([_row(x, *c[:1], y, *c[1:]) for c in combos], ignore_index=True), combos


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_score_is_the_gaussian_density_times_the_level_probabilities(covariance_type):
    df = _mixed_table(missing=0.1)
    model = GaussianMixtureDensity(2, covariance_type=covariance_type, random_state=0).fit(df)
    assert model.means_.shape == (2, 2) and [p.shape for p in model.level_probabilities_] == [(2, 3), (2, 3), (2, 2)]
    for p in model.level_probabilities_:
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-14)
        assert p.min() > 0
    # every level combination at one numeric point: each row by hand, and their sum is
    # the numeric mixture density (scipy): the levels' probabilities sum to one
    rows, combos = _all_level_rows(0.3, -0.4)
    scores = model.score_samples(rows)
    code = {c: {v: i for i, v in enumerate(LEVELS[c])} for c in LEVELS}
    for score, (shop, size, flag) in zip(scores, combos):
        joint = _joint_by_hand(model, np.array([0.3, -0.4]),
                               [code["shop"][shop], code["size"][size], code["flag"][flag]])
        assert score == pytest.approx(math.log(joint.sum()), rel=1e-12, abs=1e-12)
    covariances = _full_covariances(model)
    numeric_density = sum(
        w * multivariate_normal(m, c).pdf([0.3, -0.4])
        for w, m, c in zip(model.weights_, model.means_, covariances)
    )
    assert np.exp(scores).sum() == pytest.approx(numeric_density, rel=1e-12)
    # with the numbers missing the rows are the probabilities of the levels: sum one
    rows_no_numbers, _ = _all_level_rows(np.nan, np.nan)
    assert np.exp(model.score_samples(rows_no_numbers)).sum() == pytest.approx(1.0, rel=1e-12)
    # a missing level drops its factor: the marginal is the sum over that column's levels
    one_missing = _row(0.3, None, -0.4, "M", True)
    summed = sum(np.exp(model.score_samples(_row(0.3, s, -0.4, "M", True)))[0] for s in LEVELS["shop"])
    assert np.exp(model.score_samples(one_missing))[0] == pytest.approx(summed, rel=1e-12)


def test_latent_class_model_sums_to_one_over_all_level_combinations():
    df = _mixed_table()[["shop", "size", "flag"]]
    model = GaussianMixtureDensity(3, random_state=0).fit(df)
    assert model.means_.shape == (3, 0)
    combos = list(itertools.product(*LEVELS.values()))
    rows = pd.DataFrame({
        "shop": pd.Categorical([c[0] for c in combos], categories=LEVELS["shop"]),
        "size": pd.Categorical([c[1] for c in combos], categories=LEVELS["size"], ordered=True),
        "flag": [c[2] for c in combos],
    })
    probabilities = np.exp(model.score_samples(rows))
    assert probabilities.sum() == pytest.approx(1.0, rel=1e-12)
    for p, (shop, size, flag) in zip(probabilities, combos):
        by_hand = _joint_by_hand(model, np.array([]), [
            LEVELS["shop"].index(shop), LEVELS["size"].index(size), LEVELS["flag"].index(flag)
        ]).sum()
        assert p == pytest.approx(by_hand, rel=1e-12)
    # a sample's level frequencies follow the model's probabilities
    sample = model.sample(20000, random_state=0)
    observed = sample.groupby(["shop", "size", "flag"], observed=False).size().to_numpy() / 20000
    expected = probabilities.reshape(3, 3, 2).reshape(-1)
    np.testing.assert_allclose(observed, expected, atol=0.01)


def test_conditional_levels_and_numbers_are_bayes_rule_exactly():
    df = _mixed_table(400, seed=1, missing=0.15)
    model = GaussianMixtureDensity(2, random_state=0).fit(df)
    query = pd.concat([
        _row(1.0, None, np.nan, "L", False),
        _row(np.nan, "b", -1.0, None, True),
        _row(np.nan, None, np.nan, None, None),
    ], ignore_index=True)
    probabilities = model.impute_proba(query)
    cells = [  # numbers, level codes per discrete column, as in `query`
        (np.array([1.0, np.nan]), [None, 2, 0]),
        (np.array([np.nan, -1.0]), [1, None, 1]),
        (np.array([np.nan, np.nan]), [None, None, None]),
    ]
    for i, (numbers, levels) in enumerate(cells):
        for j, column in enumerate(LEVELS):
            # p(x_j = l | the other observed cells), by enumerating l
            others = list(levels)
            joint = []
            for code_l in range(len(LEVELS[column])):
                others[j] = code_l
                joint.append(_joint_by_hand(model, numbers, others).sum())
            joint = np.array(joint)
            np.testing.assert_allclose(probabilities[column].iloc[i].to_numpy(), joint / joint.sum(),
                                       rtol=1e-10)
    # the point imputation: the mode (shop, flag), the median (size), and the
    # conditional mean of the numbers, sum_k p(k | observed) E[x_m | x_o, k]
    filled = model.impute(query)
    covariances = _full_covariances(model)
    for i, (numbers, levels) in enumerate(cells):
        resp = _joint_by_hand(model, numbers, levels)
        resp /= resp.sum()
        observed = ~np.isnan(numbers)
        expected = 0.0
        for k in range(2):
            mean, cov = model.means_[k], covariances[k]
            m, o = ~observed, observed
            conditional = mean[m] + cov[np.ix_(m, o)] @ np.linalg.solve(
                cov[np.ix_(o, o)], numbers[o] - mean[o]) if o.any() else mean[m]
            expected = expected + resp[k] * conditional
        np.testing.assert_allclose(filled.loc[i, ["x", "y"]].to_numpy(dtype=float)[~observed], expected,
                                   rtol=1e-10)
        for j, column in enumerate(LEVELS):
            if levels[j] is not None:
                continue
            p = probabilities[column].iloc[i].to_numpy()
            best = (np.argmax(np.cumsum(p) >= 0.5) if column == "size" else np.argmax(p))
            assert filled.loc[i, column] == LEVELS[column][best]
    assert filled.loc[0, "size"] == "L" and filled.loc[1, "shop"] == "b"  # observed kept
    # draws: levels drawn from the conditional (frequencies over many draws)
    draws = model.impute(query.iloc[[0]], n_draws=4000, random_state=0)
    shares = pd.Series([d.loc[0, "shop"] for d in draws]).value_counts(normalize=True)
    np.testing.assert_allclose(shares.reindex(LEVELS["shop"]).to_numpy(),
                               probabilities["shop"].iloc[0].to_numpy(), atol=0.03)
    assert all(d.loc[0, "x"] == 1.0 and d.loc[0, "size"] == "L" for d in draws[:10])


def test_em_increases_the_log_posterior_at_every_step():
    """MAP-EM: log-likelihood + log Dirichlet prior never decreases (exact arithmetic)."""
    df = _mixed_table(300, seed=2, missing=0.2)
    model = GaussianMixtureDensity(3, reg_covar=0.0, dtype="float64", random_state=0,
                                   warm_start=True, max_iter=1)
    objectives = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(30):
            model.fit(df)
            log_prior = model.level_prior * sum(np.log(p).sum() for p in model.level_probabilities_)
            objectives.append(model.score_samples(df).sum() + log_prior)
    steps = np.diff(objectives)
    assert steps.min() > -1e-9 * abs(objectives[-1]), steps
    assert objectives[-1] > objectives[0] + 1.0


def test_latent_class_model_recovers_known_parameters():
    rng = np.random.RandomState(0)
    weights = np.array([0.5, 0.3, 0.2])
    theta = [  # 3 classes x 3 levels for each of 4 columns
        np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]),
        np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1]]),
        np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]),
        np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.5, 0.25, 0.25]]),
    ]
    n = 8000
    z = rng.choice(3, size=n, p=weights)
    df = pd.DataFrame({
        f"q{j}": pd.Categorical(np.array(["u", "v", "w"])[
            (rng.uniform(size=(n, 1)) > np.cumsum(t[z], axis=1)).sum(1)], categories=["u", "v", "w"])
        for j, t in enumerate(theta)
    })
    model = GaussianMixtureDensity(3, n_init=3, tol=1e-6, max_iter=500, dtype="float64",
                                   random_state=0).fit(df)
    order = min(itertools.permutations(range(3)),
                key=lambda p: np.abs(model.weights_[list(p)] - weights).sum()
                + sum(np.abs(fitted[list(p)] - t).sum() for fitted, t in zip(model.level_probabilities_, theta)))
    order = list(order)
    np.testing.assert_allclose(model.weights_[order], weights, atol=0.03)
    for fitted, t in zip(model.level_probabilities_, theta):
        np.testing.assert_allclose(fitted[order], t, atol=0.05)


def test_dtypes_round_trip_through_impute_and_sample():
    rng = np.random.RandomState(0)
    n = 200
    df = pd.DataFrame({
        "amount": rng.normal(10, 2, n),
        "merchant": pd.Categorical(rng.choice(["food", "fuel"], n), categories=["food", "fuel", "unused"]),
        "size": pd.Categorical(rng.choice(["S", "M", "L"], n), categories=["S", "M", "L"], ordered=True),
        "online": rng.uniform(size=n) < 0.4,
        "country": pd.Series(rng.choice(["FR", "DE", "IT"], n), dtype=object),
        "items": rng.poisson(3, n).astype(np.int64),
    })
    model = GaussianMixtureDensity(2, column_types={"items": "count"}, random_state=0).fit(df)
    assert model.level_probabilities_[0][:, 2].max() < 0.01  # the unused level: smoothed, tiny
    sample = model.sample(300, random_state=0)
    assert list(sample.columns) == list(df.columns) and sample.dtypes.equals(df.dtypes)
    assert list(sample["merchant"].cat.categories) == ["food", "fuel", "unused"]
    assert sample["size"].cat.ordered and set(sample["country"]) <= {"FR", "DE", "IT"}
    assert (sample["items"] >= 0).all()
    holes = df.copy()
    holes["online"] = holes["online"].astype("boolean")
    holes.loc[[0, 1], "merchant"] = np.nan
    holes.loc[[2], "size"] = np.nan
    holes.loc[[3], "online"] = pd.NA
    holes.loc[[4], "country"] = None
    holes.loc[[5], "amount"] = np.nan
    refit = GaussianMixtureDensity(2, column_types={"items": "count"}, random_state=0).fit(holes)
    for filled in [refit.impute(holes)] + refit.impute(holes, n_draws=2, random_state=0):
        assert filled.dtypes.equals(holes.dtypes) and not filled.isna().any().any()
        assert list(filled["merchant"].cat.categories) == ["food", "fuel", "unused"]
        observed = holes.notna()
        for column in holes.columns:
            pd.testing.assert_series_equal(filled[column][observed[column]], holes[column][observed[column]])
        assert filled.loc[4, "country"] in {"FR", "DE", "IT"}


def test_a_level_only_in_the_test_fold_scores_finite():
    df = _mixed_table(90, seed=3)
    df["city"] = pd.Series(np.where(np.arange(90) % 2, "P", "Q"), dtype=object)
    df.loc[89, "city"] = "only-in-the-last-fold"
    model = GaussianMixtureDensity(2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = cross_val_score(model, df, cv=KFold(3), error_score="raise")
    assert np.isfinite(scores).all()
    fitted = GaussianMixtureDensity(2, random_state=0).fit(df.iloc[:60])
    with pytest.warns(UserWarning, match="'city'.*only-in-the-last-fold"):
        unseen = fitted.score_samples(df.iloc[[89]])
    as_missing = df.iloc[[89]].copy()
    as_missing["city"] = None
    expected = fitted.score_samples(as_missing) - math.log(60 + 2 + 1)
    np.testing.assert_allclose(unseen, expected, rtol=1e-12)
    with pytest.warns(UserWarning, match="'city'.*only-in-the-last-fold"):
        assert fitted.impute(df.iloc[[89]]).loc[89, "city"] == "only-in-the-last-fold"


def test_an_impossible_combination_of_levels_scores_below_every_normal_row():
    rng = np.random.RandomState(0)
    n = 400
    z = rng.randint(2, size=n)
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "left": pd.Categorical(np.array(["p", "q"])[z]),
        "right": pd.Categorical(np.array(["p", "q"])[z]),  # always equal to left
    })
    model = GaussianMixtureDensity(2, random_state=0).fit(df)
    odd = pd.DataFrame({"x": [0.0, 0.0], "left": pd.Categorical(["p", "q"]),
                        "right": pd.Categorical(["q", "p"])})
    assert model.score_samples(odd).max() < model.score_samples(df).min()
    assert (model.predict_outlier(odd) == -1).all()


def test_grid_search_over_n_components_on_a_dataframe():
    rng = np.random.RandomState(0)
    n = 900
    z = rng.randint(3, size=n)
    centres = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    numbers = centres[z] + rng.normal(size=(n, 2))
    df = pd.DataFrame({
        "x": numbers[:, 0], "y": numbers[:, 1],
        "kind": pd.Categorical(np.array(["r", "s", "t"])[np.where(rng.uniform(size=n) < 0.9, z, (z + 1) % 3)]),
    })
    search = GridSearchCV(GaussianMixtureDensity(random_state=0), {"n_components": [1, 2, 3]}, cv=3)
    search.fit(df)
    assert search.best_params_["n_components"] == 3
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("dtype", ["auto", "float32"])
def test_mixed_scores_do_not_depend_on_the_batch_and_survive_pickling(dtype):
    import pickle

    df = _mixed_table(200, seed=4, missing=0.2)
    model = GaussianMixtureDensity(3, dtype=dtype, random_state=0).fit(df)
    scores = model.score_samples(df)
    assert scores.dtype == (np.float32 if dtype == "float32" else np.float64)
    pieces = np.concatenate([model.score_samples(df.iloc[i:i + 7]) for i in range(0, len(df), 7)])
    np.testing.assert_array_equal(pieces, scores)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).score_samples(df), scores)


def test_column_types_on_an_array_are_applied_not_ignored():
    """column_types on a numpy array: columns by position, the user's values back."""
    rng = np.random.RandomState(0)
    n = 300
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.choice([3.0, 7.0, 9.0], size=n)])
    X[:, 0] += X[:, 2]
    model = GaussianMixtureDensity(2, column_types={2: "categorical"}, random_state=0).fit(X)
    assert model.schema_.types == ["real", "real", "categorical"]
    assert not hasattr(model, "feature_names_in_")
    # the same model as the table with a category column
    frame = pd.DataFrame({"0": X[:, 0], "1": X[:, 1], "2": pd.Categorical(X[:, 2])})
    as_table = GaussianMixtureDensity(2, random_state=0).fit(frame)
    np.testing.assert_allclose(model.score_samples(X), as_table.score_samples(frame), rtol=1e-12)
    # rows come back as arrays of the user's values, observed cells bit for bit
    Xm = X.copy()
    Xm[:20, 2] = np.nan
    Xm[20:40, 0] = np.nan
    filled = model.impute(Xm)
    assert isinstance(filled, np.ndarray) and np.isin(filled[:, 2], [3.0, 7.0, 9.0]).all()
    observed = ~np.isnan(Xm)
    assert np.array_equal(filled[observed], Xm[observed])
    draws = model.impute(Xm, n_draws=3, random_state=0)
    assert draws.shape == (3,) + X.shape and np.isin(draws[:, :, 2], [3.0, 7.0, 9.0]).all()
    assert np.isin(model.sample(50, random_state=0)[:, 2], [3.0, 7.0, 9.0]).all()
    with pytest.raises(ValueError, match="'2' \\(categorical\\)"):
        PPCADensity(1, column_types=["real", "real", "categorical"]).fit(X)
