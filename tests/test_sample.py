"""``sample``: conditional draws (``given``), usable rows (``bounds``) and missing cells.

Exact answers: the conditional of a fitted mixture is computed here by Bayes over its
components (numpy, from ``weights_``, ``means_``, ``covariances_`` and
``level_probabilities_``) and Gaussian conditioning; PPCA's from its covariance
``W W^T + sigma^2 I``; a truncated Gaussian's moments from scipy. Sampled frequencies
and moments must match them within a few standard errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from skgenerative import (
    BernoulliRBM,
    FlowVAE,
    GaussianMixtureDensity,
    PPCADensity,
    VariationalAutoencoder,
)
from skgenerative import IdentifierColumnWarning
from skgenerative._schema import TableSchema


def _mixed(n=600, seed=0):
    """Two clusters: numbers x, y correlated within each, levels a (3) and b (2) leaning by cluster."""
    rng = np.random.RandomState(seed)
    z = rng.uniform(size=n) < 0.4
    x = np.where(z, 2.0, -1.0) + rng.normal(size=n)
    y = np.where(z, 1.0, 0.0) + 0.8 * (x - np.where(z, 2.0, -1.0)) + 0.5 * rng.normal(size=n)
    a = np.where(rng.uniform(size=n) < 0.7, np.where(z, "p", "q"), rng.choice(["p", "q", "r"], n))
    b = np.where(rng.uniform(size=n) < 0.8, z, ~z)
    return pd.DataFrame({"x": x, "a": pd.Categorical(a), "y": y, "b": b})


@pytest.fixture(scope="module")
def mixture():
    df = _mixed()
    return GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(df), df


def _exact_conditional(model, given_a: str, given_x: float):
    """By hand: r_k given (a, x), then p(b | .), E[y | .], Var[y | .] (x is column 0 of means_)."""
    levels_a = list(model.schema_.levels["a"])
    theta_a, theta_b = model.level_probabilities_
    w, mu, cov = model.weights_, model.means_, model.covariances_  # numbers: x, y
    log_r = (np.log(w) + np.log(theta_a[:, levels_a.index(given_a)])
             + stats.norm.logpdf(given_x, mu[:, 0], np.sqrt(cov[:, 0, 0])))
    r = np.exp(log_r - log_r.max())
    r /= r.sum()
    m = mu[:, 1] + cov[:, 1, 0] / cov[:, 0, 0] * (given_x - mu[:, 0])
    v = cov[:, 1, 1] - cov[:, 1, 0] ** 2 / cov[:, 0, 0]
    mean = r @ m
    return r, r @ theta_b, mean, r @ (v + m**2) - mean**2


def test_given_dict_draws_the_exact_mixed_conditional(mixture):
    model, df = mixture
    r, p_b, mean_y, var_y = _exact_conditional(model, "q", 0.5)
    assert 0.05 < r.min() < 0.95  # both components matter: the test can fail
    n = 100_000
    rows = model.sample(n, random_state=0, given={"a": "q", "x": 0.5}, bounds=None)
    assert rows.dtypes.equals(df.dtypes) and len(rows) == n
    assert (rows["a"] == "q").all() and (rows["x"] == 0.5).all()
    levels_b = list(model.schema_.levels["b"])
    freq = rows["b"].value_counts(normalize=True).reindex(levels_b).to_numpy()
    np.testing.assert_allclose(freq, p_b, atol=4 * np.sqrt(0.25 / n))
    assert rows["y"].mean() == pytest.approx(mean_y, abs=4 * np.sqrt(var_y / n))
    assert rows["y"].var() == pytest.approx(var_y, rel=0.02)
    # the joint of b and y: E[y | b] weighs each component by r_k theta_kb
    theta_b = model.level_probabilities_[1]
    m = model.means_[:, 1] + model.covariances_[:, 1, 0] / model.covariances_[:, 0, 0] * (0.5 - model.means_[:, 0])
    for code, level in enumerate(levels_b):
        weights = r * theta_b[:, code] / (r @ theta_b[:, code])
        chosen = rows["y"][rows["b"] == level]
        assert chosen.mean() == pytest.approx(weights @ m, abs=4 * np.sqrt(var_y / len(chosen)))


def test_given_frame_draws_each_rows_missing_cells_from_its_own_conditional(mixture):
    model, df = mixture
    n = 40_000
    partial = pd.DataFrame({
        "x": np.r_[np.full(n, 0.5), np.full(n, np.nan)],
        "a": pd.Categorical(np.r_[["q"] * n, ["p"] * n], categories=df["a"].cat.categories),
        "y": np.r_[np.full(n, np.nan), np.full(n, 1.5)],
        "b": pd.array([None] * n + [True] * n, dtype="boolean"),
    }, index=np.arange(2 * n) + 1000)
    rows = model.sample(given=partial, random_state=1, bounds=None)
    assert rows.index.equals(partial.index)
    _, p_b, mean_y, var_y = _exact_conditional(model, "q", 0.5)
    first = rows.iloc[:n]
    assert (first["x"] == 0.5).all() and (first["a"] == "q").all()
    true_share = (first["b"] == True).mean()  # noqa: E712
    assert true_share == pytest.approx(p_b[1], abs=4 * np.sqrt(p_b[1] * (1 - p_b[1]) / n))
    assert first["y"].mean() == pytest.approx(mean_y, abs=4 * np.sqrt(var_y / n))
    # second half: x drawn given a = p, y = 1.5, b = True, by Bayes over the components
    second = rows.iloc[n:]
    assert (second["y"] == 1.5).all() and second["b"].all() and (second["a"] == "p").all()
    theta_a, theta_b = model.level_probabilities_
    mu, cov = model.means_, model.covariances_
    log_r = (np.log(model.weights_) + np.log(theta_a[:, list(model.schema_.levels["a"]).index("p")])
             + np.log(theta_b[:, list(model.schema_.levels["b"]).index(True)])
             + stats.norm.logpdf(1.5, mu[:, 1], np.sqrt(cov[:, 1, 1])))
    r = np.exp(log_r - log_r.max())
    r /= r.sum()
    m = mu[:, 0] + cov[:, 0, 1] / cov[:, 1, 1] * (1.5 - mu[:, 1])
    v = cov[:, 0, 0] - cov[:, 0, 1] ** 2 / cov[:, 1, 1]
    mean_x = r @ m
    var_x = r @ (v + m**2) - mean_x**2
    assert second["x"].mean() == pytest.approx(mean_x, abs=4 * np.sqrt(var_x / n))
    assert second["x"].var() == pytest.approx(var_x, rel=0.03)


def test_given_frame_may_name_a_subset_of_columns_and_n_samples_must_match(mixture):
    model, df = mixture
    partial = pd.DataFrame({"a": ["p", "r", "q"]})
    rows = model.sample(given=partial, random_state=0)
    assert list(rows.columns) == list(df.columns) and list(rows["a"]) == ["p", "r", "q"]
    assert rows.notna().all().all()
    pd.testing.assert_frame_equal(rows, model.sample(3, given=partial, random_state=0))
    with pytest.raises(ValueError, match="n_samples=5 must then be 1"):
        model.sample(5, given=partial)


def test_the_same_seed_gives_the_same_conditional_rows(mixture):
    model, _ = mixture
    first = model.sample(50, random_state=3, given={"b": True})
    pd.testing.assert_frame_equal(first, model.sample(50, random_state=3, given={"b": True}))
    assert not first.equals(model.sample(50, random_state=4, given={"b": True}))


def test_numeric_mixture_on_an_array_conditions_by_position():
    rng = np.random.RandomState(1)
    X = np.vstack([rng.multivariate_normal([0, 0, 0], [[1, .6, .2], [.6, 1, .3], [.2, .3, 1]], 400),
                   rng.multivariate_normal([3, 1, -2], np.eye(3) * 0.5, 300)])
    model = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X)
    n = 80_000
    draws = model.sample(n, random_state=0, given={1: 0.8}, bounds=None)
    assert isinstance(draws, np.ndarray) and draws.shape == (n, 3) and (draws[:, 1] == 0.8).all()
    w, mu, cov = model.weights_, model.means_, model.covariances_
    log_r = np.log(w) + stats.norm.logpdf(0.8, mu[:, 1], np.sqrt(cov[:, 1, 1]))
    r = np.exp(log_r - log_r.max())
    r /= r.sum()
    others = [0, 2]
    means = np.array([mu[k, others] + cov[k, others, 1] / cov[k, 1, 1] * (0.8 - mu[k, 1]) for k in range(2)])
    covs = np.array([cov[k][np.ix_(others, others)] - np.outer(cov[k, others, 1], cov[k, others, 1]) / cov[k, 1, 1]
                     for k in range(2)])
    mean = r @ means
    second = sum(r[k] * (covs[k] + np.outer(means[k], means[k])) for k in range(2)) - np.outer(mean, mean)
    sd = np.sqrt(np.diag(second))
    np.testing.assert_allclose(draws[:, others].mean(0), mean, atol=4 * sd.max() / np.sqrt(n))
    np.testing.assert_allclose(np.cov(draws[:, others].T), second, atol=0.03 * sd.max() ** 2)


def test_ppca_conditional_is_gaussian_conditioning_of_its_covariance():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 5)) + 0.4 * rng.normal(size=(500, 5)) + np.arange(5)
    model = PPCADensity(2).fit(X)
    W = model.components_.T * np.sqrt(model.explained_variance_ - model.noise_variance_)
    C = W @ W.T + model.noise_variance_ * np.eye(5)
    o, m = [0, 3], [1, 2, 4]
    value = np.array([1.0, 2.0])
    gain = C[np.ix_(m, o)] @ np.linalg.inv(C[np.ix_(o, o)])
    mean = model.mean_[m] + gain @ (value - model.mean_[o])
    cov = C[np.ix_(m, m)] - gain @ C[np.ix_(o, m)]
    n = 100_000
    draws = model.sample(n, random_state=0, given={0: 1.0, 3: 2.0}, bounds=None)
    assert (draws[:, o] == value).all()
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(draws[:, m].mean(0), mean, atol=4 * sd.max() / np.sqrt(n))
    np.testing.assert_allclose(np.cov(draws[:, m].T), cov, atol=0.03 * sd.max() ** 2)


def test_vae_conditional_levels_approach_the_models_own_conditional():
    """Importance resampling is approximate: its level frequencies must agree with
    ``exp(log p(given, level) - log p(given))`` from importance-weighted scores with
    200000 samples (which converge to the exact integral, see test_vae_mixed)."""
    rng = np.random.RandomState(0)
    n = 300
    t = rng.normal(size=n)
    df = pd.DataFrame({
        "a": t + 0.2 * rng.normal(size=n),
        "c": pd.Categorical(np.where(t > 0.5, "hi", np.where(t < -0.5, "lo", "mid"))),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = VariationalAutoencoder(n_components=1, dtype="float64", hidden_layer_sizes=(16,), max_iter=150,
                                       learning_rate=1e-2, batch_size=32, n_training_samples=10,
                                       random_state=0).fit(df)
    m = 20_000
    rows = model.sample(m, random_state=0, given={"a": 0.3})
    assert (rows["a"] == 0.3).all()
    levels = list(model.schema_.levels["c"])
    freq = rows["c"].value_counts(normalize=True).reindex(levels).to_numpy()
    model.set_params(n_importance_samples=200_000)
    full = pd.DataFrame({"a": [0.3] * 3, "c": pd.Categorical(levels, categories=df["c"].cat.categories)})
    given_only = pd.DataFrame({"a": [0.3], "c": pd.Categorical([None], categories=df["c"].cat.categories)})
    exact = np.exp(model.score_samples(full) - model.score_samples(given_only)[0])
    assert exact.sum() == pytest.approx(1.0, abs=0.02)
    assert 0.05 < exact.max() < 0.95  # a spread conditional: the test can fail
    np.testing.assert_allclose(freq, exact, atol=0.03)


@pytest.mark.parametrize("make", [
    lambda: GaussianMixtureDensity(2, random_state=0),
    lambda: PPCADensity(2),
    lambda: VariationalAutoencoder(n_components=2, hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                                   n_imputation_samples=50),
    lambda: FlowVAE(n_components=2, hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                    n_imputation_samples=50),
], ids=["gmm", "ppca", "vae", "flow_vae"])
def test_every_model_with_a_conditional_samples_given_values(make):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 2)) @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(120, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make().fit(X)
    draws = model.sample(30, random_state=0, given={1: 0.25, 3: -0.5})
    assert draws.shape == (30, 4) and (draws[:, 1] == 0.25).all() and (draws[:, 3] == -0.5).all()
    assert np.isfinite(draws).all() and len(np.unique(draws[:, 0])) > 20
    np.testing.assert_array_equal(draws, model.sample(30, random_state=0, given={1: 0.25, 3: -0.5}))
    partial = X[:5].copy()
    partial[[0, 2], 0] = np.nan
    rows = model.sample(given=partial, random_state=0)
    np.testing.assert_array_equal(np.delete(rows, [0, 2], axis=0), np.delete(partial, [0, 2], axis=0))
    np.testing.assert_array_equal(rows[[0, 2], 1:], partial[[0, 2], 1:])
    assert np.isfinite(rows).all()


# ---------------------------------------------------------------- usable rows
def test_observed_bounds_restrict_the_model_to_the_box_not_clip_it():
    """bounds="observed": the rows follow the fitted Gaussian truncated to the training range."""
    rng = np.random.RandomState(0)
    X = rng.normal(1.0, 2.0, size=(150, 1)) + rng.uniform(0, 1e-3, size=(150, 1))  # no short decimals
    model = GaussianMixtureDensity(1, dtype="float64").fit(X)
    lo, hi = X.min(), X.max()
    mu, sigma = model.means_[0, 0], np.sqrt(model.covariances_[0, 0, 0])
    truncated = stats.truncnorm((lo - mu) / sigma, (hi - mu) / sigma, loc=mu, scale=sigma)
    n = 100_000
    draws = model.sample(n, random_state=0)[:, 0]
    assert draws.min() >= lo and draws.max() <= hi
    assert (draws == lo).sum() + (draws == hi).sum() <= 2  # redrawn, not piled onto the ends
    assert draws.mean() == pytest.approx(truncated.mean(), abs=4 * truncated.std() / np.sqrt(n))
    assert draws.var() == pytest.approx(truncated.var(), rel=0.02)
    raw = model.sample(n, random_state=0, bounds=None)[:, 0]
    assert raw.min() < lo and raw.var() == pytest.approx(sigma**2, rel=0.02)
    half = model.sample(n, random_state=0, bounds={0: (mu, None)})[:, 0]
    assert half.min() >= mu and half.max() > hi
    assert half.mean() == pytest.approx(mu + sigma * np.sqrt(2 / np.pi), abs=4 * sigma / np.sqrt(n))


def test_numbers_snap_to_the_values_the_data_repeat_as_the_model_weighs_them():
    """A column of 0, 1, 3 and 7: each draw becomes the nearest of them, so each value's
    share is the truncated Gaussian's mass over its cell (the midpoints between values)."""
    X = np.repeat([0.0, 1.0, 3.0, 7.0], [60, 100, 80, 40])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixtureDensity(1, dtype="float64").fit(X)
    mu, sigma = model.means_[0, 0], np.sqrt(model.covariances_[0, 0, 0])
    n = 100_000
    draws = model.sample(n, random_state=0)[:, 0]
    values, counts = np.unique(draws, return_counts=True)
    assert list(values) == [0.0, 1.0, 3.0, 7.0]
    # accepted draws round into [0, 7]: [-0.5, 7.5]; cells split at the midpoints
    edges = np.array([-0.5, 0.5, 2.0, 5.0, 7.5])
    mass = np.diff(stats.norm.cdf(edges, mu, sigma))
    np.testing.assert_allclose(counts / n, mass / mass.sum(), atol=4 * np.sqrt(0.25 / n))
    # values seen fewer than 5 times are not targets; beyond the frequent ones, rounding
    rare = np.r_[X[:, 0], [0.4, 20.0, 20.0]][:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixtureDensity(1, dtype="float64").fit(rare)
    draws = model.sample(20_000, random_state=0)[:, 0]
    assert 0.4 not in draws and set(np.unique(draws[draws <= 7])) == {0.0, 1.0, 3.0, 7.0}
    assert (draws[draws > 7] == np.round(draws[draws > 7], 1)).all() and draws.max() <= 20.0
    assert len(np.unique(model.sample(20_000, random_state=0, bounds=None)[:, 0])) > 1000


def _typed_table(n=400, seed=0):
    rng = np.random.RandomState(seed)
    t = rng.normal(size=n)
    return pd.DataFrame({
        "age": np.clip(np.rint(40 + 12 * t), 18, 90).astype(np.int64),
        "price": np.round(np.exp(3 + 0.8 * t + 0.3 * rng.normal(size=n)), 2),  # cents
        "income": np.exp(10 + t + 0.5 * rng.normal(size=n)),
        "visits": rng.poisson(np.exp(0.3 * t)).astype(float),
        "shop": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["a", "b", "c", "unused"]),
        "vip": t + rng.normal(size=n) > 1,
    })


def test_rows_a_user_can_use():
    df = _typed_table()
    model = GaussianMixtureDensity(3, random_state=0, column_types={"income": "positive", "visits": "count"}).fit(df)
    rows = model.sample(5000, random_state=0)
    assert rows.dtypes.equals(df.dtypes)
    assert list(rows["shop"].cat.categories) == ["a", "b", "c", "unused"]
    for column in ["age", "price", "income", "visits"]:
        assert rows[column].between(df[column].min(), df[column].max()).all(), column
    cents = rows["price"].to_numpy() * 100
    np.testing.assert_allclose(cents, np.round(cents), rtol=0, atol=1e-8)  # the data's cents
    assert (rows["visits"] == np.round(rows["visits"])).all()
    assert len(np.unique(rows["income"])) > 4000  # not rounded: the data have no short grid
    # the model's own draws: a Gaussian puts income below 0, the type does not allow it
    raw = model.sample(5000, random_state=0, bounds=None)
    assert (raw["income"] > 0).all() and (raw["visits"] >= 0).all()
    assert (raw["visits"] == np.round(raw["visits"])).all() and (raw["age"].min() < 18 or raw["age"].max() > 90)
    cents = raw["price"].to_numpy() * 100
    assert (np.abs(cents - np.round(cents)) > 1e-3).mean() > 0.9


def test_given_cells_are_never_clipped_or_rounded():
    df = _typed_table()
    model = GaussianMixtureDensity(2, random_state=0, column_types={"visits": "count"}).fit(df)
    rows = model.sample(200, random_state=0, given={"age": 120, "price": 3.14159})
    assert (rows["age"] == 120).all() and (rows["price"] == 3.14159).all()
    assert rows["income"].between(df["income"].min(), df["income"].max()).all()


def test_missing_cells_come_back_at_the_tables_own_rates_and_patterns():
    df = _typed_table(1000)
    rng = np.random.RandomState(1)
    holes = rng.uniform(size=len(df)) < 0.3
    df.loc[holes, ["price", "income"]] = np.nan  # always together
    df.loc[rng.uniform(size=len(df)) < 0.1, "age"] = np.nan
    df["shop"] = df["shop"].where(rng.uniform(size=len(df)) > 0.2)
    model = GaussianMixtureDensity(2, random_state=0, column_types={"visits": "count"}).fit(df)
    assert model.sample(2000, random_state=0).notna().all().all()  # off by default
    n = 20_000
    rows = model.sample(n, random_state=0, missing=True)
    expected = df.isna().mean()
    observed = rows.isna().mean()
    np.testing.assert_allclose(observed, expected, atol=4 * np.sqrt(0.25 / n))
    assert (rows["price"].isna() == rows["income"].isna()).all()  # the pattern, not only rates
    given = model.sample(n, random_state=0, missing=True, given={"price": 9.99})
    assert (given["price"] == 9.99).all()  # given cells stay


def test_bounds_and_missing_are_checked():
    df = _typed_table()
    model = GaussianMixtureDensity(1, column_types={"visits": "count"}).fit(df)
    with pytest.raises(ValueError, match="bounds must be"):
        model.sample(3, bounds="data")
    with pytest.raises(ValueError, match="'age'.*low > high"):
        model.sample(3, bounds={"age": (50, 20)})
    with pytest.raises(ValueError, match="'nope' is not a column"):
        model.sample(3, bounds={"nope": (0, 1)})
    with pytest.raises(ValueError, match="missing must be"):
        model.sample(3, missing="yes")


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("given, match", [
    ({"shop": "zz"}, r"given\['shop'\] = 'zz' is not a level seen in fit.*'a', 'b', 'c'"),
    ({"nope": 1}, "'nope' is not a column of the fitted data"),
    ({"visits": 1.5}, r"given\['visits'\] = 1.5 is impossible for a count column"),
    ({"visits": -1}, r"given\['visits'\] = -1 is impossible"),
    ({"income": 0.0}, r"given\['income'\] = 0.0 is impossible for a positive column"),
    ({"age": "old"}, r"given\['age'\] = 'old' is not a number"),
    ({"age": np.nan}, r"given\['age'\] is missing"),
    ({"age": [30, 40]}, r"given\['age'\] must be one value"),
    ({"age": 1e160}, "probability zero"),
])
def test_bad_conditions_get_errors_naming_the_column(given, match):
    df = _typed_table()
    model = GaussianMixtureDensity(2, random_state=0, column_types={"income": "positive", "visits": "count"}).fit(df)
    with pytest.raises(ValueError, match=match):
        model.sample(4, given=given)


def test_unseen_level_in_a_given_frame_is_an_error():
    df = _typed_table()
    model = GaussianMixtureDensity(2, random_state=0, column_types={"visits": "count"}).fit(df)
    partial = df.head(3).copy()
    partial["shop"] = partial["shop"].astype(object)
    partial.loc[partial.index[1], "shop"] = "new"
    partial.loc[:, "income"] = np.nan
    with pytest.raises(ValueError, match=r"given\['shop'\] = 'new' is not a level seen in fit"):
        model.sample(given=partial)
    with pytest.raises(ValueError, match="column"):
        model.sample(given=partial.rename(columns={"age": "AGE"}))


def test_models_without_a_conditional_say_so():
    X = (np.random.RandomState(0).uniform(size=(60, 6)) < 0.5).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rbm = BernoulliRBM(n_components=3, max_iter=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="BernoulliRBM cannot sample given.*GaussianMixtureDensity.*PPCADensity"):
        rbm.sample(2, given={0: 1.0})
    assert rbm.sample(4, random_state=0).shape == (4, 6)


# ---------------------------------------------------------------- the schema
def test_identifier_columns_are_warned_about_by_name():
    rng = np.random.RandomState(0)
    df = pd.DataFrame({"name": [f"person {i}" for i in range(100)], "x": rng.normal(size=100),
                       "city": rng.choice(["A", "B"], 100)})
    with pytest.warns(IdentifierColumnWarning, match="'name' has a distinct value in 100 of its 100 rows"):
        TableSchema.infer(df)
    as_category = df.assign(name=df["name"].astype("category"))
    with pytest.warns(IdentifierColumnWarning, match="'name'"):
        GaussianMixtureDensity(1).fit(as_category)
    # a category column counts its observed cells and the distinct levels among them (not its categories)
    holes = as_category.assign(name=as_category["name"].where(np.arange(100) % 10 != 0))
    with pytest.warns(IdentifierColumnWarning, match="'name' has a distinct value in 90 of its 90 rows"):
        TableSchema.infer(holes)
    repeated = as_category.assign(name=as_category["name"].where(np.arange(100) % 40 != 0, "person 1"))
    with pytest.warns(IdentifierColumnWarning, match="'name' has a distinct value in 97 of its 100 rows"):
        TableSchema.infer(repeated)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifierColumnWarning)
        TableSchema.infer(df, column_types={"name": "categorical"})  # declared: the user knows
        TableSchema.infer(df.drop(columns="name"))
        TableSchema.infer(df.head(19))  # too few rows to tell


def test_schema_records_ranges_decimal_places_and_missing_patterns():
    frame = pd.DataFrame({"w": [1.0, 2.0, 3.0, np.nan], "c": [0.25, 1.5, 3.125, 2.0],
                          "m": [0.1 + 1e-10, 0.3, 0.7, 0.9], "k": ["a", "b", None, "a"]})
    schema = TableSchema.infer(frame)
    X, _ = schema.encode(frame)
    observed = schema.with_observed(X).observed
    assert observed["ranges"] == {"w": (1.0, 3.0), "c": (0.25, 3.125), "m": (0.1 + 1e-10, 0.9)}
    assert observed["decimals"] == {"w": 0, "c": 3}  # m needs more than 8 places
    patterns, counts = observed["missing"]
    assert {tuple(p): c for p, c in zip(patterns.tolist(), counts)} == {
        (False, False, False, False): 2, (True, False, False, False): 1, (False, False, False, True): 1}
    # partial_fit: ranges joined, the finer grid, patterns added
    more = pd.DataFrame({"w": [0.5, 8.0], "c": [1.0, 2.0], "m": [0.2, 0.4], "k": ["b", "b"]})
    merged = schema.with_observed(X).with_observed(schema.encode(more)[0], merge=True).observed
    assert merged["ranges"]["w"] == (0.5, 8.0) and merged["decimals"]["w"] == 1
    assert merged["n_rows"] == 6
    assert dict(zip(map(tuple, merged["missing"][0].tolist()), merged["missing"][1]))[
        (False, False, False, False)] == 4
