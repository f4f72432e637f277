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

from scipy import stats  # noqa: E402
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


# ------------------------------------- every block: positive (with zeros) and count columns
BLOCK_TYPES = {"inc": "positive", "k": "count"}


def _block_table(n=400, seed=0, missing=0.0, zeros=0.25):
    """A real, a positive column with zeros, a count, a binary, a categorical and an ordinal column."""
    rng = np.random.RandomState(seed)
    t = rng.normal(size=n)
    inc = np.exp(1.0 + 0.5 * t + 0.3 * rng.normal(size=n))
    inc[rng.uniform(size=n) < np.where(t > 0, zeros / 2, 3 * zeros / 2)] = 0.0
    df = pd.DataFrame({
        "a": t + 0.3 * rng.normal(size=n),
        "inc": inc,
        "k": rng.poisson(np.exp(0.5 * t + 1.0)).astype(np.int64),
        "flag": (t + 0.5 * rng.normal(size=n)) > 0,
        "shop": pd.Categorical(np.array(LEVELS["shop"])[np.where(rng.uniform(size=n) < 0.8, (t > 0) * 2, 1)],
                               categories=LEVELS["shop"]),
        "size": pd.Categorical(np.array(LEVELS["size"])[np.digitize(t, [-0.5, 0.5])],
                               categories=LEVELS["size"], ordered=True),
    })
    if missing:
        df["flag"] = df["flag"].astype("boolean")
        df["k"] = df["k"].astype("Int64")
        for column in df.columns:
            df.loc[rng.uniform(size=n) < missing, column] = np.nan if column in ("a", "inc") else None
    return df


def _block_joint_by_hand(model, row):
    """``w_k p_k(observed cells)`` per component from the fitted parameters and scipy, in the
    user's units: the Gaussian over (a, log inc) with the Jacobian 1 / inc, the zero mass,
    the Poisson and the level tables."""
    a, inc, k, flag, shop, size = row
    covariances = _full_covariances(model)
    out = np.array(model.weights_, dtype=float)
    y = np.array([a, np.log(inc) if inc is not None and inc > 0 else np.nan])
    observed = ~np.isnan(y)
    for c in range(model.n_components):
        if observed.any():
            out[c] *= multivariate_normal(model.means_[c, observed],
                                          covariances[c][np.ix_(observed, observed)]).pdf(y[observed])
        if inc is not None and not np.isnan(inc):
            zero = model.zero_probabilities_[c, 0]
            out[c] *= zero if inc == 0 else (1 - zero) / inc
        if k is not None:
            out[c] *= stats.poisson(model.count_rates_[c, 0]).pmf(k)
        for j, (column, value) in enumerate(zip(LEVELS_BLOCK, (flag, shop, size))):
            if value is not None:
                out[c] *= model.level_probabilities_[j][c, list(LEVELS_BLOCK[column]).index(value)]
    return out


LEVELS_BLOCK = {"flag": [False, True], "shop": LEVELS["shop"], "size": LEVELS["size"]}


def _cells(df):
    """Rows as tuples, missing cells as None (NaN for the numbers)."""
    out = []
    for row in df.itertuples(index=False):
        a, inc, k, flag, shop, size = (None if pd.isna(v) else v for v in row)
        out.append((np.nan if a is None else a, inc, k, flag, shop, size))
    return out


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_block_scores_the_product_density_of_the_observed_cells(covariance_type):
    df = _block_table(missing=0.1)
    model = GaussianMixtureDensity(3, covariance_type=covariance_type, column_types=BLOCK_TYPES,
                                   random_state=0).fit(df)
    assert model.means_.shape == (3, 2) and model.count_rates_.shape == (3, 1)
    assert model.zero_probabilities_.shape == (3, 1) and 0 < model.zero_probabilities_.min()
    scores = model.score_samples(df)
    by_hand = np.log([_block_joint_by_hand(model, row).sum() for row in _cells(df)])
    np.testing.assert_allclose(scores, by_hand, rtol=1e-11, atol=1e-11)
    # the posterior of the components is Bayes' rule with the same factors
    joint = np.array([_block_joint_by_hand(model, row) for row in _cells(df.iloc[:20])])
    np.testing.assert_allclose(model.predict_proba(df.iloc[:20]), joint / joint.sum(1, keepdims=True),
                               rtol=1e-10, atol=1e-12)
    # bic and aic count every block: weights, Gaussian means and covariances over
    # (a, log inc), the zero mass, the Poisson rate, 1 + 2 + 2 level probabilities
    k = 3
    gaussian = {"full": k * 3, "tied": 3, "diag": k * 2, "spherical": k}[covariance_type] + k * 2
    n_parameters = (k - 1) + gaussian + k + k + k * (1 + 2 + 2)
    n = len(df)
    assert model.bic(df) == pytest.approx(-2 * scores.sum() + n_parameters * np.log(n), rel=1e-12)
    assert model.aic(df) == pytest.approx(-2 * scores.sum() + 2 * n_parameters, rel=1e-12)


def test_positive_count_and_levels_sum_to_one_over_every_value():
    """sum over the levels and counts of (P(inc = 0) + integral of the density over inc > 0) = 1."""
    df = _block_table(300, seed=1)[["inc", "k", "flag"]]
    model = GaussianMixtureDensity(2, column_types=BLOCK_TYPES, random_state=0, dtype="float64").fit(df)
    y = np.linspace(-12.0, 14.0, 2601)  # log inc: the density of inc times inc, on a log grid
    counts = np.arange(60)
    grid = pd.DataFrame({
        "inc": np.tile(np.concatenate([[0.0], np.exp(y)]), 2 * len(counts)),
        "k": np.repeat(np.tile(counts, 2), len(y) + 1),
        "flag": np.repeat([False, True], len(counts) * (len(y) + 1)),
    })
    p = np.exp(model.score_samples(grid)).reshape(2, len(counts), len(y) + 1)
    zero_mass = p[..., 0].sum()
    positive = np.trapezoid(p[..., 1:] * np.exp(y), y, axis=-1).sum()
    assert zero_mass == pytest.approx(float(model.weights_ @ model.zero_probabilities_[:, 0]), rel=1e-10)
    assert zero_mass + positive == pytest.approx(1.0, abs=1e-8)


def test_em_with_every_block_increases_the_log_posterior_at_every_step():
    """MAP-EM: log-likelihood + the families' log-priors never decrease (float64, no
    covariance regularisation): Dirichlet(1 + a) levels and zero masses, Gamma rates."""
    df = _block_table(300, seed=2, missing=0.2)
    a = 0.1
    model = GaussianMixtureDensity(3, reg_covar=0.0, covariance_floor=0.0, column_types=BLOCK_TYPES,
                                   dtype="float64", random_state=0, warm_start=True, max_iter=1)
    mean_count = df["k"].astype(float).mean()
    objectives = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(25):
            model.fit(df)
            rates, zero = model.count_rates_[:, 0], model.zero_probabilities_[:, 0]
            log_prior = (a * sum(np.log(p).sum() for p in model.level_probabilities_)
                         + a * (np.log(zero) + np.log1p(-zero)).sum()
                         + (a * mean_count * np.log(rates) - a * rates).sum())
            objectives.append(model.score_samples(df).sum() + log_prior)
    steps = np.diff(objectives)
    assert steps.min() > -1e-9 * abs(objectives[-1]), steps
    assert objectives[-1] > objectives[0] + 1.0


def test_conditionals_of_positive_count_and_level_cells_are_bayes_rule():
    df = _block_table(500, seed=3, missing=0.1)
    model = GaussianMixtureDensity(3, column_types=BLOCK_TYPES, random_state=0).fit(df)
    query = df.iloc[:4].copy()
    query.loc[query.index[0], ["inc", "k", "shop"]] = [np.nan, None, None]
    query.loc[query.index[1], ["a", "inc", "flag"]] = [np.nan, np.nan, None]
    query.loc[query.index[2], ["inc", "size"]] = [0.0, None]
    query.loc[query.index[3], ["a", "k", "size"]] = [np.nan, None, None]
    rows = _cells(query)
    covariances = _full_covariances(model)
    filled = model.impute(query)
    probabilities = model.impute_proba(query)
    for i, row in enumerate(rows):
        joint = _block_joint_by_hand(model, row)
        resp = joint / joint.sum()
        if row[1] is None or np.isnan(row[1]):  # inc missing: 0, or the conditional geometric mean
            zero = resp @ model.zero_probabilities_[:, 0]
            given_positive = resp * (1 - model.zero_probabilities_[:, 0])
            log_mean = []
            for c in range(3):
                mean, cov = model.means_[c], covariances[c]
                log_mean.append(mean[1] + cov[1, 0] / cov[0, 0] * (row[0] - mean[0]) if not np.isnan(row[0])
                                else mean[1])
            expected = 0.0 if zero >= 0.5 else np.exp(given_positive @ np.array(log_mean) / given_positive.sum())
            assert filled["inc"].iloc[i] == pytest.approx(expected, rel=1e-10, abs=1e-12)
        if row[2] is None:  # count missing: the conditional mean, rounded in an integer column
            assert filled["k"].iloc[i] == np.rint(resp @ model.count_rates_[:, 0])
        for j, column in enumerate(LEVELS_BLOCK):  # p(level | the other observed cells)
            others = list(row)
            expected = []
            for level in LEVELS_BLOCK[column]:
                others[3 + j] = level
                expected.append(_block_joint_by_hand(model, tuple(others)).sum())
            expected = np.array(expected) / np.sum(expected)
            np.testing.assert_allclose(probabilities[column].iloc[i].to_numpy(), expected, rtol=1e-10)
    # draws of row 0: zeros at the conditional zero probability, log inc among the
    # positive draws at the conditional mean given inc > 0, counts at the mixture mean
    resp = _block_joint_by_hand(model, rows[0])
    resp /= resp.sum()
    draws = model.impute(query.iloc[[0]], n_draws=3000, random_state=0)  # one frame a draw: few
    inc = np.array([d["inc"].iloc[0] for d in draws])
    k = np.array([d["k"].iloc[0] for d in draws], dtype=float)
    zero = resp @ model.zero_probabilities_[:, 0]
    assert abs((inc == 0).mean() - zero) < 5 * np.sqrt(zero * (1 - zero) / len(inc)) + 1e-3
    given_positive = resp * (1 - model.zero_probabilities_[:, 0])
    given_positive /= given_positive.sum()
    means = np.array([model.means_[c, 1] + covariances[c][1, 0] / covariances[c][0, 0] * (rows[0][0] - model.means_[c, 0])
                      for c in range(3)])
    variances = np.array([covariances[c][1, 1] - covariances[c][1, 0] ** 2 / covariances[c][0, 0] for c in range(3)])
    logs = np.log(inc[inc > 0])
    second = given_positive @ (variances + means ** 2)
    se = np.sqrt((second - (given_positive @ means) ** 2) / len(logs))
    assert abs(logs.mean() - given_positive @ means) < 5 * se
    rate = resp @ model.count_rates_[:, 0]
    assert abs(k.mean() - rate) < 5 * np.sqrt((resp @ (model.count_rates_[:, 0] * (1 + model.count_rates_[:, 0]))
                                               - rate ** 2) / len(k))
    assert all(d["a"].iloc[0] == query["a"].iloc[0] for d in draws[:10])


def test_sample_keeps_positive_columns_positive_or_zero_and_counts_whole():
    df = _block_table(600, seed=4)
    model = GaussianMixtureDensity(4, column_types=BLOCK_TYPES, random_state=0).fit(df)
    sample = model.sample(20000, random_state=0)
    assert sample.dtypes.equals(df.dtypes)
    assert (sample["inc"] >= 0).all() and (sample["k"] >= 0).all()
    zero = float(model.weights_ @ model.zero_probabilities_[:, 0])
    assert abs((sample["inc"] == 0).mean() - zero) < 5 * np.sqrt(zero * (1 - zero) / 20000)
    assert abs(sample["k"].mean() - model.weights_ @ model.count_rates_[:, 0]) < 0.05
    # the plain positive income of the module docstring's example: never negative
    rng = np.random.RandomState(0)
    income = pd.DataFrame({"age": rng.uniform(20, 70, 1000)})
    income["income"] = np.exp(9.0 + 0.02 * income["age"] + 0.8 * rng.normal(size=1000))
    as_positive = GaussianMixtureDensity(4, column_types={"income": "positive"}, random_state=0).fit(income)
    assert (as_positive.sample(5000, random_state=0)["income"] > 0).all()
    assert not as_positive.zero_probabilities_.any()  # no zero at fit: no zero mass


def test_a_zero_in_a_positive_column_that_had_none_scores_like_an_unseen_level():
    df = _block_table(300, seed=5, zeros=0.0)
    model = GaussianMixtureDensity(2, column_types=BLOCK_TYPES, random_state=0).fit(df)
    assert not model.zero_probabilities_.any()
    row = df.iloc[[0]].copy()
    row["inc"] = 0.0
    as_missing = df.iloc[[0]].copy()
    as_missing["inc"] = np.nan
    np.testing.assert_allclose(model.score_samples(row), model.score_samples(as_missing) - np.log(300 + 3),
                               rtol=1e-12)
    assert model.explain(row)["inc"].iloc[0] == pytest.approx(-np.log(303), rel=1e-10)
    assert (model.sample(5000, random_state=0)["inc"] > 0).all()


def test_zeros_in_a_declared_positive_column_the_mixture_models_others_refuse():
    df = _block_table(200, seed=6)
    GaussianMixtureDensity(2, column_types=BLOCK_TYPES, random_state=0).fit(df)
    with pytest.raises(ValueError, match=r"'inc' \(declared positive\).*LogNormal.*> 0"):
        PPCADensity(1, column_types={"inc": "positive"}).fit(df[["a", "inc"]])
    negative = df.copy()
    negative.loc[3, "inc"] = -1.0
    with pytest.raises(ValueError, match=r"'inc' \(declared positive\).*ZeroInflatedLogNormal.*>= 0"):
        GaussianMixtureDensity(2, column_types=BLOCK_TYPES).fit(negative)


@pytest.mark.parametrize("dtype", ["auto", "float32"])
def test_block_scores_do_not_depend_on_the_batch(dtype):
    df = _block_table(240, seed=7, missing=0.2)
    model = GaussianMixtureDensity(3, dtype=dtype, column_types=BLOCK_TYPES, random_state=0).fit(df)
    for method in ("score_samples", "predict_proba"):
        whole = getattr(model, method)(df)
        for size in (1, 7, 50):
            pieces = np.concatenate([getattr(model, method)(df.iloc[i:i + size]) for i in range(0, len(df), size)])
            np.testing.assert_array_equal(pieces, whole, err_msg=f"{method} in batches of {size}")
    filled = model.impute(df)
    pieces = pd.concat([model.impute(df.iloc[i:i + 7]) for i in range(0, len(df), 7)])
    pd.testing.assert_frame_equal(pieces, filled)


def test_explain_is_the_score_minus_the_marginal_without_the_cell_on_every_block():
    df = _block_table(300, seed=8, missing=0.1)
    model = GaussianMixtureDensity(3, column_types=BLOCK_TYPES, random_state=0).fit(df)
    rows = df.iloc[:12]
    explained = model.explain(rows)
    full = model.score_samples(rows)
    for column in df.columns:
        without = rows.copy()
        without[column] = np.nan if column in ("a", "inc") else None
        expected = np.where(rows[column].isna(), np.nan, full - model.score_samples(without))
        np.testing.assert_allclose(explained[column].to_numpy(dtype=float), expected, rtol=1e-10, atol=1e-12)


def test_sample_given_a_zero_in_a_positive_column_is_bayes_rule():
    """A zero is a condition like a level: p(k | inc = 0) is proportional to w_k pi_k."""
    df = _block_table(600, seed=9)
    model = GaussianMixtureDensity(3, column_types=BLOCK_TYPES, random_state=0).fit(df)
    rows = model.sample(20000, random_state=0, given={"inc": 0.0}, bounds=None)
    assert (rows["inc"] == 0).all()
    posterior = model.weights_ * model.zero_probabilities_[:, 0]
    posterior /= posterior.sum()
    rate = posterior @ model.count_rates_[:, 0]
    second = posterior @ (model.count_rates_[:, 0] * (1 + model.count_rates_[:, 0]))
    assert abs(rows["k"].mean() - rate) < 5 * np.sqrt((second - rate ** 2) / len(rows))
    flag = posterior @ model.level_probabilities_[0][:, 1]
    assert abs(rows["flag"].mean() - flag) < 5 * np.sqrt(flag * (1 - flag) / len(rows))


def test_level_columns_score_and_count_as_one_one_hot_matrix_exactly_as_column_by_column():
    """``LevelCells``: the stacked one-hot matmuls give each level block's log-probability
    sum and E-step statistics as the family's own gather and weighted sums, missing cells
    left out of both."""
    import torch

    from skgenerative.distributions import Categorical
    from skgenerative.mixture import LevelCells, families_log_prob

    df = _block_table(missing=0.3)
    model = GaussianMixtureDensity(3, column_types=BLOCK_TYPES, random_state=0, dtype="float64").fit(df)
    X = torch.as_tensor(model._validate_table(df, reset=False)[0])
    rows, params, _ = model._evaluation(X)
    families = tuple((block, rows[:, block.cells]) for block in model._layout.blocks)
    levels = LevelCells.of(families)
    assert len(levels.blocks) == 2 and all(families[b][0].family is Categorical for b in levels.blocks)
    assert torch.isnan(torch.cat([families[b][1] for b in levels.blocks])).any()
    total, grouped = families_log_prob(families, params.families)
    by_hand = sum(block.distribution(p).log_prob(cells.unsqueeze(1)).sum(-1)
                  for (block, cells), p in zip(families, params.families))
    assert grouped is not None
    torch.testing.assert_close(total, by_hand, rtol=0, atol=1e-12)
    resp = torch.softmax(torch.randn(rows.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), 1)
    subset = torch.arange(0, rows.shape[0], 3)
    for index in (None, subset):
        statistics = levels.statistics(families, resp if index is None else resp[index], index)
        for b in levels.blocks:
            block, cells = families[b]
            cells = cells if index is None else cells[index]
            expected = Categorical.weighted_statistics(cells, resp if index is None else resp[index], block.n_levels)
            torch.testing.assert_close(statistics[b].count, expected.count, rtol=0, atol=1e-12)
            torch.testing.assert_close(statistics[b].sums, expected.sums, rtol=0, atol=1e-12)


def test_point_with_level_probabilities_is_both_passes_side_by_side():
    import torch

    df = _block_table(missing=0.3)
    model = GaussianMixtureDensity(3, column_types=BLOCK_TYPES, random_state=0).fit(df)
    X = torch.as_tensor(model._validate_table(df, reset=False)[0])
    columns = [j for j, _, _ in model._layout.levels]
    both = model._point_with_level_probabilities(X, columns)
    point = model._point_imputation(X)
    levels = torch.cat(model._level_probabilities(X, columns), dim=1)
    torch.testing.assert_close(both[:, :X.shape[1]], point, rtol=1e-12, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(both[:, X.shape[1]:], levels, rtol=1e-12, atol=1e-12)


def test_sum_of_two_terms_is_torchs_sum_to_the_bit():
    """The E-step's per-row sums of a family block's two cells: an addition, the numbers of ``sum(-1)``."""
    import torch

    from skgenerative.mixture import _sum_last

    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        for shape in [(300, 16, 2), (5, 1, 2), (0, 3, 2), (40, 2), (30, 4, 3), (9, 1)]:
            terms = torch.randn(*shape, generator=generator, dtype=dtype)
            terms = terms * torch.exp(5 * torch.randn(*shape, generator=generator, dtype=dtype))
            flat = terms.view(-1)
            flat[::7], flat[::5], flat[::11], flat[::13] = -0.0, 0.0, float("inf"), float("nan")
            expected, got = terms.sum(-1), _sum_last(terms)
            torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
            assert torch.equal(torch.signbit(got), torch.signbit(expected))


def test_bernoulli_codes_log_prob_is_the_familys_sum_to_the_bit():
    """Binary codes and "is zero" cells scored by picking per cell: the family's log_prob summed over columns."""
    import torch

    from skgenerative.distributions import Bernoulli
    from skgenerative.mixture import _bernoulli_codes_log_prob

    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        for k in (1, 3, 16):
            for n_columns in (1, 2, 3, 5):
                cells = (torch.rand(400, n_columns, generator=generator) < 0.6).to(dtype)
                cells[torch.rand(400, n_columns, generator=generator) < 0.2] = float("nan")
                logits = 5 * torch.randn(k, n_columns, generator=generator, dtype=dtype)
                logits[0, 0] = 40.0  # softplus's cut-off
                family = Bernoulli(logits)
                expected = family.log_prob(cells.unsqueeze(1)).sum(-1)
                got = _bernoulli_codes_log_prob(cells, family)
                torch.testing.assert_close(got, expected, rtol=0, atol=0)
                assert torch.equal(torch.signbit(got), torch.signbit(expected))
