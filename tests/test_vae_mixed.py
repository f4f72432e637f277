"""VariationalAutoencoder and FlowVAE on tables: one head per column type (HI-VAE).

Exact answers: each head's log-probability is scipy's pmf or pdf (or an ordered
logit / softmax written out by hand); for a fitted model with a one-dimensional
latent, ``p(x) = int p(x | z) p(z) dz`` is computed by quadrature over ``z`` from
the decoder and scipy's densities, and the importance-weighted score and level
probabilities must converge to it.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special, stats
from sklearn.model_selection import KFold, cross_val_score

from skgenerative import FlowVAE, VariationalAutoencoder
from skgenerative.distributions import (
    ORDINAL_MIN_GAP,
    Normal,
    OrderedLogistic,
    Poisson,
    ordinal_log_probs,
    ordinal_thresholds,
)
from skgenerative.nn import ColumnLikelihood

TYPES = {"inc": "positive", "k": "count"}


def _table(n=300, seed=0):
    """A table whose columns all follow one latent ``t``."""
    rng = np.random.RandomState(seed)
    t = rng.normal(size=n)
    return pd.DataFrame({
        "a": t + 0.2 * rng.normal(size=n),
        "inc": np.exp(0.5 * t + 0.2 * rng.normal(size=n)),
        "k": rng.poisson(np.exp(0.5 * t + 1.0)).astype(np.int64),
        "c": pd.Categorical(np.where(t > 0.5, "hi", np.where(t < -0.5, "lo", "mid")),
                            categories=["hi", "lo", "mid"]),
        "o": pd.Categorical(np.digitize(t, [-1.0, 0.0, 1.0]).astype(str),
                            categories=["0", "1", "2", "3"], ordered=True),
        "b": t + 0.3 * rng.normal(size=n) > 0,
    })


def _fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X)


QUICK = dict(hidden_layer_sizes=(16,), max_iter=60, learning_rate=1e-2, batch_size=32,
             kl_warmup_epochs=2, n_iter_no_change=10, column_types=TYPES, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    """A 1-D latent (quadrature over z is exact); IWAE-10 training, whose proposal
    covers the posterior well enough for the bound to converge at 2e5 samples."""
    df = _table()
    model = VariationalAutoencoder(n_components=1, dtype="float64", n_training_samples=10,
                                   **dict(QUICK, max_iter=200))
    return _fit(model, df), df


# ------------------------------------------------------------------ the heads
def _head(layout, **kwargs):
    return ColumnLikelihood.for_columns([k for k, _ in layout], [n for _, n in layout], **kwargs).double()


def _by_column(head, params):
    """Per column: (mean, log-variance) of a normal-scale one, a count's rate, a level's log-probabilities."""
    out = {}
    for block, family in zip(head.columns.blocks, head.families(params)):
        for i, j in enumerate(block.columns):
            if isinstance(family, Normal):
                shape = family.batch_shape
                out[j] = (family.loc.expand(shape)[..., i], family.log_var.expand(shape)[..., i])
            elif isinstance(family, Poisson):
                out[j] = family.rate[..., i]
            else:
                out[j] = family.level_log_probs()[..., i, :]
    return out


def _random_params(head, shape=(7,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(shape + (head.n_params,), generator=g, dtype=torch.float64)


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "shared"])
def test_each_head_is_scipys_density_or_mass(conditional):
    layout = [("real", 0), ("positive", 0), ("count", 0), ("binary", 2), ("categorical", 3), ("ordinal", 4)]
    head = _head(layout, conditional_variance=conditional, count_offsets=[0.7])
    if not conditional:
        with torch.no_grad():
            head.raw_log_variance.copy_(torch.tensor([0.4, -1.3], dtype=torch.float64))
    params = _random_params(head)
    rng = np.random.RandomState(1)
    x = np.column_stack([
        rng.normal(size=7), rng.normal(size=7), rng.poisson(3, 7), rng.randint(2, size=7),
        rng.randint(3, size=7), rng.randint(4, size=7),
    ]).astype(float)
    got = head.cell_log_prob(torch.as_tensor(x), params).detach().numpy()
    p = params.numpy()
    if not conditional:  # the same layout without the two raw log-variances
        p = np.column_stack([p[:, :2], np.tile([0.4, -1.3], (7, 1)), p[:, 2:]])
    floor = math.log(1e-3)
    mean, raw = p[:, 0:2], p[:, 2:4]
    var = np.exp(floor + np.logaddexp(0.0, raw - floor))
    np.testing.assert_allclose(got[:, 0], stats.norm.logpdf(x[:, 0], mean[:, 0], np.sqrt(var[:, 0])), rtol=1e-12)
    np.testing.assert_allclose(got[:, 1], stats.norm.logpdf(x[:, 1], mean[:, 1], np.sqrt(var[:, 1])), rtol=1e-12)
    np.testing.assert_allclose(got[:, 2], stats.poisson.logpmf(x[:, 2], np.exp(p[:, 4] + 0.7)), rtol=1e-12)
    np.testing.assert_allclose(got[:, 3], stats.bernoulli.logpmf(x[:, 3], special.expit(p[:, 5])), rtol=1e-12)
    softmax = special.log_softmax(p[:, 6:9], axis=1)
    np.testing.assert_allclose(got[:, 4], softmax[np.arange(7), x[:, 4].astype(int)], rtol=1e-12)
    # ordered logit by hand: eta, theta_1 = r_1, theta_k = theta_{k-1} + softplus(r_k) + gap
    eta, r = p[:, 9], p[:, 10:13]
    theta = np.cumsum(np.column_stack([r[:, 0], np.logaddexp(0.0, r[:, 1:]) + ORDINAL_MIN_GAP]), axis=1)
    cdf = np.column_stack([np.zeros(7), special.expit(theta - eta[:, None]), np.ones(7)])
    probs = np.diff(cdf, axis=1)
    np.testing.assert_allclose(got[:, 5], np.log(probs[np.arange(7), x[:, 5].astype(int)]), rtol=1e-10)


def test_positive_column_is_lognormal_in_the_users_units(fitted):
    """The Gaussian on standardised log x plus the log-Jacobian is scipy's lognorm."""
    model, df = fitted
    head = model.module_.likelihood
    params = model.module_.decode(torch.zeros(1, 1, dtype=torch.float64))
    j = 1
    mean, log_var = (t.detach().numpy() for t in _by_column(head, params)[j])
    x = df["inc"].to_numpy()[:5]
    u = (np.log(x) - model.mean_[j]) / model.scale_[j]
    ours = head.cell_log_prob(
        torch.as_tensor(np.column_stack([np.zeros(5), u, np.zeros((5, 4))])), params
    ).detach().numpy()[:, j]
    jacobian = -np.log(model.scale_[j]) - np.log(x)
    sigma = np.sqrt(np.exp(log_var[0])) * model.scale_[j]
    exact = stats.lognorm.logpdf(x, s=sigma, scale=np.exp(mean[0] * model.scale_[j] + model.mean_[j]))
    np.testing.assert_allclose(ours + jacobian, exact, rtol=1e-10)


def test_ordinal_thresholds_increase_and_levels_sum_to_one():
    raw = torch.tensor([[3.0, -40.0, 0.0, 25.0], [-2.0, 5.0, -5.0, 1.0]], dtype=torch.float64)
    theta = ordinal_thresholds(raw)
    assert bool((theta.diff(dim=-1) >= ORDINAL_MIN_GAP * (1 - 1e-9)).all())
    log_p = ordinal_log_probs(torch.tensor([[0.5], [-30.0]], dtype=torch.float64), theta)
    np.testing.assert_allclose(log_p.exp().sum(-1).numpy(), 1.0, rtol=1e-12)
    # far tails stay finite (the stable identity, not a difference of sigmoids)
    assert bool(torch.isfinite(log_p).all())


def test_fitted_ordinal_thresholds_increase(fitted):
    model, _ = fitted
    z = torch.linspace(-4, 4, 50, dtype=torch.float64).unsqueeze(1)
    families = model.module_.likelihood.families(model.module_.decode(z))
    (theta,) = [f.cutpoints.squeeze(-2) for f in families if isinstance(f, OrderedLogistic)]
    assert theta.shape == (50, 3) and bool((theta.diff(dim=-1) > 0).all())


def test_head_sums_to_one_over_every_level_combination():
    head = _head([("binary", 2), ("categorical", 3), ("ordinal", 3)])
    params = _random_params(head, (2,))
    x = torch.tensor(list(itertools.product(range(2), range(3), range(3))), dtype=torch.float64)
    total = head.log_prob(x.unsqueeze(1), params.unsqueeze(0)).exp().sum(0)
    np.testing.assert_allclose(total.numpy(), 1.0, rtol=1e-12)


# --------------------------------------------- the fitted model against quadrature
def _cell_log_probs_by_scipy(model, row: pd.Series, z: np.ndarray) -> np.ndarray:
    """``log p(x_o | z)`` (G,) of a row's observed cells at each grid point, from scipy."""
    module = model.module_
    head = module.likelihood
    params = module.decode(torch.as_tensor(z[:, None]))
    by_column = _by_column(head, params)
    schema = model.schema_
    total = np.zeros(len(z))
    for j, (name, kind) in enumerate(zip(schema.names, schema.types)):
        value = row[name]
        if pd.isna(value):
            continue
        m, s = model.mean_[j], model.scale_[j]
        if kind in ("real", "positive"):
            mean, log_var = (t.detach().numpy() for t in by_column[j])
            sigma = np.sqrt(np.exp(log_var)) * s
            loc = mean * s + m
            if kind == "real":
                total += stats.norm.logpdf(float(value), loc, sigma)
            else:
                total += stats.lognorm.logpdf(float(value), s=sigma, scale=np.exp(loc))
        elif kind == "count":
            total += stats.poisson.logpmf(int(value), by_column[j].detach().numpy())
        else:
            code = list(schema.levels[name]).index(value)
            total += by_column[j].detach().numpy()[:, code]
    return total


def _quadrature_log_density(model, row):
    z = np.linspace(-12, 12, 24001)
    log_f = _cell_log_probs_by_scipy(model, row, z) + stats.norm.logpdf(z)
    return special.logsumexp(log_f) + math.log(z[1] - z[0])


def _rows_with_holes(df):
    rows = df.iloc[[0, 5, 17]].copy()
    rows.loc[rows.index[1], "c"] = np.nan  # an incomplete row: the marginal of its cells
    rows.loc[rows.index[2], ["a", "k"]] = np.nan
    return rows


def test_score_is_the_importance_weighted_bound_of_scipys_densities(fitted):
    """``log (1/S) sum_s p(x_o | z_s) p(z_s) / q(z_s | x_o)`` by hand, at the model's keyed draws."""
    model, df = fitted
    rows = _rows_with_holes(df)
    X = torch.as_tensor(model._validate_X(rows, reset=False))
    eps = model._score_noise(X, 50).numpy()
    encoded = model._posterior_parameters(X)
    mean, sd = encoded.mean.detach().numpy(), np.exp(0.5 * encoded.log_var.detach().numpy())
    scores = model.score_samples(rows)
    for i in range(3):
        z = mean[i, 0] + sd[i, 0] * eps[i, :, 0]
        log_w = (_cell_log_probs_by_scipy(model, rows.iloc[i], z) + stats.norm.logpdf(z)
                 - stats.norm.logpdf(z, mean[i, 0], sd[i, 0]))
        np.testing.assert_allclose(scores[i], special.logsumexp(log_w) - math.log(50), rtol=1e-10)


def test_importance_weighted_score_converges_to_the_integral_over_z(fitted):
    model, df = fitted
    rows = _rows_with_holes(df)
    exact = np.array([_quadrature_log_density(model, rows.iloc[i]) for i in range(3)])
    model.set_params(n_importance_samples=200000)
    try:
        scores = model.score_samples(rows)
    finally:
        model.set_params(n_importance_samples=50)
    np.testing.assert_allclose(scores, exact, atol=1e-2)


def test_explain_converges_to_the_exact_conditionals(fitted):
    """``explain`` against an answer independent of ``score_samples``: ``log p(x_j | rest)
    = log p(row) - log p(row without x_j)``, both integrals over ``z`` by quadrature of
    scipy's densities, for every cell of complete and incomplete rows."""
    model, df = fitted
    rows = _rows_with_holes(df).iloc[:2]
    exact = np.full(rows.shape, np.nan)
    for i in range(len(rows)):
        row = rows.iloc[i]
        full = _quadrature_log_density(model, row)
        for j, name in enumerate(rows.columns):
            if pd.isna(row[name]):
                continue  # a missing cell has nothing to explain
            without = row.copy()
            without[name] = np.nan
            exact[i, j] = full - _quadrature_log_density(model, without)
    model.set_params(n_importance_samples=200000)
    try:
        explained = np.asarray(model.explain(rows), dtype=float)
    finally:
        model.set_params(n_importance_samples=50)
    assert np.array_equal(np.isnan(explained), np.isnan(exact))
    # each side is a difference of two estimates within 1e-2 of their integrals
    np.testing.assert_allclose(explained, exact, atol=2e-2)
    # the cells differ by far more than that: the test tells them apart
    assert np.nanmax(exact) - np.nanmin(exact) > 1.0


def test_discrete_part_sums_to_one_given_the_numbers(fitted):
    """``sum over every level combination of p(x_num, levels) = p(x_num)``."""
    model, df = fitted
    row = df.iloc[3]
    schema = model.schema_
    combos = list(itertools.product(*(schema.levels[c] for c in ["c", "o", "b"])))
    frame = pd.DataFrame([row] * len(combos)).reset_index(drop=True).astype(df.dtypes.to_dict())
    for i, combo in enumerate(combos):
        frame.loc[i, ["c", "o", "b"]] = combo
    frame = frame.astype(df.dtypes.to_dict())
    numbers = frame.head(1).copy()
    numbers["b"] = numbers["b"].astype("boolean")  # a bool column cannot hold a missing cell
    numbers[["c", "o", "b"]] = None
    assert numbers[["c", "o", "b"]].isna().all().all()
    model.set_params(n_importance_samples=200000)
    try:
        joint = model.score_samples(frame)
        marginal = model.score_samples(numbers)[0]
    finally:
        model.set_params(n_importance_samples=50)
    # exact by quadrature first (the heads normalise), then the estimates
    quad = np.array([_quadrature_log_density(model, frame.iloc[i]) for i in range(len(frame))])
    np.testing.assert_allclose(special.logsumexp(quad), _quadrature_log_density(model, numbers.iloc[0]),
                               atol=1e-9)
    np.testing.assert_allclose(special.logsumexp(joint), marginal, atol=2e-2)


def test_level_probabilities_converge_to_the_exact_conditional(fitted):
    model, df = fitted
    row = df.iloc[[8]].copy()
    row["c"] = np.nan
    row = row.astype(df.dtypes.to_dict())
    z = np.linspace(-12, 12, 24001)
    base = _cell_log_probs_by_scipy(model, row.iloc[0], z) + stats.norm.logpdf(z)
    exact = []
    for level in model.schema_.levels["c"]:
        full = row.iloc[0].copy()
        full["c"] = level
        exact.append(special.logsumexp(_cell_log_probs_by_scipy(model, full, z) + stats.norm.logpdf(z)))
    exact = np.exp(np.array(exact) - special.logsumexp(base))
    model.set_params(n_imputation_samples=200000)
    try:
        got = model.impute_proba(row)["c"].to_numpy()[0]
        filled = model.impute(row)
    finally:
        model.set_params(n_imputation_samples=1000)
    np.testing.assert_allclose(exact.sum(), 1.0, atol=1e-9)
    np.testing.assert_allclose(got, exact, atol=5e-3)
    assert filled["c"].iloc[0] == model.schema_.levels["c"][np.argmax(exact)]


# ------------------------------------------------------------------ behaviour
def test_scores_are_deterministic_per_row(fitted):
    model, df = fitted
    # to rounding: a matrix product may round a row by its position in the batch
    batch = model.score_samples(df.head(20))
    alone = np.array([model.score_samples(df.iloc[[i]])[0] for i in (0, 7, 19)])
    np.testing.assert_allclose(batch[[0, 7, 19]], alone, rtol=1e-12)
    np.testing.assert_allclose(model.score_samples(df.head(20).iloc[::-1])[::-1], batch, rtol=1e-12)
    holes = df.head(20).copy()
    holes.loc[holes.index[::3], "c"] = np.nan  # incomplete rows beside complete ones
    mixed_batch = model.score_samples(holes)
    np.testing.assert_allclose(mixed_batch[1::3], batch[1::3], rtol=1e-12)


def test_impossible_level_combination_scores_below_every_normal_row():
    df = _table(400, seed=3)
    model = _fit(VariationalAutoencoder(n_components=2, **QUICK), df)
    normal = model.score_samples(df)
    odd = df.head(1).copy()
    odd["c"] = pd.Categorical(["hi"], categories=df["c"].cat.categories)
    odd["o"] = pd.Categorical(["0"], categories=df["o"].cat.categories, ordered=True)  # t > 0.5 and t < -1
    assert model.score_samples(odd)[0] < normal.min()


@pytest.mark.parametrize("cls", [VariationalAutoencoder, FlowVAE])
def test_dataframes_round_trip_their_dtypes(cls):
    df = _table(200)
    holes = df.copy()
    holes["k"] = holes["k"].astype("Int64")
    holes["b"] = holes["b"].astype("boolean")
    holes.loc[[0, 4], "c"] = np.nan
    holes.loc[[1], "o"] = np.nan
    holes.loc[[2], "a"] = np.nan
    holes.loc[[3], "k"] = pd.NA
    holes.loc[[5], "b"] = pd.NA
    holes.loc[[6], "inc"] = np.nan
    kwargs = dict(QUICK, max_iter=5)
    model = _fit(cls(n_components=2, **kwargs), holes)
    filled = model.impute(holes)
    assert filled.dtypes.equals(holes.dtypes) and not filled.isna().any().any()
    observed = holes.notna()
    for column in holes.columns:
        pd.testing.assert_series_equal(filled[column][observed[column]], holes[column][observed[column]])
    draws = model.impute(holes, n_draws=2, random_state=0)
    assert all(d.dtypes.equals(holes.dtypes) and not d.isna().any().any() for d in draws)
    sample = model.sample(50, random_state=0)
    assert sample.dtypes.equals(holes.dtypes)
    assert (sample["inc"] > 0).all() and (sample["k"] >= 0).all()
    assert set(sample["c"].dropna()) <= set(df["c"].cat.categories)
    back = model.inverse_transform(model.transform(holes.head(3)))
    assert back.dtypes.equals(holes.dtypes)
    probabilities = model.impute_proba(holes.head(4))
    assert set(probabilities) == {"c", "o", "b"}
    np.testing.assert_allclose(probabilities["o"].sum(axis=1), 1.0)


def test_missing_levels_are_imputed_from_the_rest_of_the_row():
    """MIWAE on a table: a missing category read from the numbers beats the mode."""
    df = _table(600, seed=5)
    holes = df.copy()
    rng = np.random.RandomState(0)
    hidden = rng.uniform(size=len(df)) < 0.2
    holes.loc[hidden, "c"] = np.nan
    holes.loc[rng.uniform(size=len(df)) < 0.2, "a"] = np.nan
    model = _fit(VariationalAutoencoder(n_components=2, **dict(QUICK, max_iter=100)), holes)
    assert model._n_training_samples() == 20  # MIWAE's bound
    filled = model.impute(holes)
    accuracy = np.mean(filled.loc[hidden, "c"].to_numpy() == df.loc[hidden, "c"].to_numpy())
    mode = df.loc[~hidden, "c"].mode()[0]
    baseline = np.mean(df.loc[hidden, "c"].to_numpy() == mode)
    assert accuracy > baseline + 0.2


def test_a_level_only_in_a_test_fold_does_not_crash_cross_validation():
    df = _table(120, seed=2)
    df["c"] = df["c"].astype(str).astype(object)
    df.loc[df.index[-3:], "c"] = "rare"  # only in the last fold
    model = VariationalAutoencoder(n_components=1, **dict(QUICK, max_iter=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(model, df, cv=KFold(3))
    assert np.isfinite(scores).all()
    fitted = _fit(VariationalAutoencoder(n_components=1, **dict(QUICK, max_iter=3)), df.head(100))
    with pytest.warns(UserWarning, match="'c'.*'rare'"):
        unseen = fitted.score_samples(df.tail(3))
    as_missing = df.tail(3).copy()
    as_missing["c"] = None
    penalty = -math.log(100 + 3 + 1)
    np.testing.assert_allclose(unseen, fitted.score_samples(as_missing) + penalty)


def test_a_numeric_array_takes_the_unchanged_path():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    kwargs = dict(QUICK, max_iter=3, column_types=None)
    a = _fit(VariationalAutoencoder(n_components=1, **kwargs), X)
    b = _fit(VariationalAutoencoder(n_components=1, **kwargs), frame)
    assert [(b.family, b.columns) for b in a.module_.likelihood.columns.blocks] == [(Normal, [0, 1, 2])]
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(frame))


def test_bad_table_values_name_the_column(fitted):
    model, df = fitted
    bad = df.head(2).copy()
    bad["k"] = bad["k"].astype(float)
    bad.loc[bad.index[0], "k"] = 1.5
    with pytest.raises(ValueError, match="'k'.*count"):
        model.score_samples(bad)
    bad = df.head(2).copy()
    bad.loc[bad.index[0], "inc"] = -1.0
    with pytest.raises(ValueError, match="'inc'.*positive"):
        model.score_samples(bad)
    with pytest.raises(ValueError, match="likelihood='bernoulli'"):
        _fit(VariationalAutoencoder(likelihood="bernoulli", **dict(QUICK, max_iter=1)), df)
