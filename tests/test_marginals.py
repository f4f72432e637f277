"""Normal-score marginals of the mixture's real columns (``marginals="normal_scores"``).

Every figure against an exact answer: the map's inverse and autograd's derivative,
a numeric integral of the density, scipy's Gaussian densities on the normal-score
scale plus the log-slopes, Bayes' rule for conditionals, sample quantiles against the
training quantiles.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

from skgenerative import GaussianMixtureDensity
from skgenerative._marginals import KNOTS, NormalScores, grid_jitter, sorted_quantiles


def _table(n=600, seed=0):
    """A skewed column on a grid of 0.1, a heavy-tailed whole-number column, a level."""
    rng = np.random.RandomState(seed)
    group = rng.randint(2, size=n)
    return pd.DataFrame({
        "sugar": np.round(rng.gamma(1.5 + group, 2.0), 1),
        "dose": (np.round(np.exp(rng.normal(2 + group, 0.7)))).astype(np.int64),
        "kind": pd.Categorical(np.where(group == 1, "b", "a")),
    })


def _fit(frame, k=2, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixtureDensity(k, marginals="normal_scores", random_state=0, dtype="float64",
                                      **kw).fit(frame)


def _np_scores(scores: NormalScores, X: np.ndarray):
    """The maps and their log-slopes written out in numpy (np.interp), for the checks."""
    Z, log_slope = X.copy(), np.zeros(X.shape[0])
    for i, (j, k) in enumerate(zip(scores.columns, scores.knots)):
        x = X[:, j]
        z = np.interp(x, k[:, 0], k[:, 1])
        low, high = scores.tails[i]
        z = np.where(x < k[0, 0], k[0, 1] + (x - k[0, 0]) * low, z)
        z = np.where(x > k[-1, 0], k[-1, 1] + (x - k[-1, 0]) * high, z)
        piece = np.clip(np.searchsorted(k[:, 0], x, side="right") - 1, 0, len(k) - 2)
        slope = np.diff(k[:, 1])[piece] / np.diff(k[:, 0])[piece]
        slope = np.where(x < k[0, 0], low, np.where(x > k[-1, 0], high, slope))
        Z[:, j] = z
        log_slope += np.where(np.isnan(x), 0.0, np.log(slope))
    return Z, log_slope


# ------------------------------------------------------------------ the maps
def test_inverse_undoes_the_map_and_log_slope_is_autograds_derivative():
    rng = np.random.RandomState(0)
    X = np.column_stack([np.round(rng.gamma(2, 3, 500), 1), rng.standard_t(3, 500)])
    scores = NormalScores.fit(X, [0, 1], [0.1, 0.0], seed=3)
    x = torch.tensor(np.column_stack([np.linspace(-20, 60, 4001), np.linspace(-50, 50, 4001)]),
                     dtype=torch.float64, requires_grad=True)
    z = scores.forward(x)
    back = scores.inverse(z.detach())
    torch.testing.assert_close(back, x.detach(), rtol=0, atol=1e-9)  # beyond the knots too
    grads = [torch.autograd.grad(z[:, j].sum(), x, retain_graph=True)[0][:, j] for j in range(2)]
    log_slope = torch.log(grads[0]) + torch.log(grads[1])
    torch.testing.assert_close(scores.log_jacobian(x.detach()), log_slope, rtol=0, atol=1e-12)
    # knots: the normal quantiles of (i + 1/2) / m, at most 1000 of them, increasing
    for k in scores.knots:
        assert len(k) <= 1000 and np.all(np.diff(k[:, 0]) > 0) and np.all(np.diff(k[:, 1]) > 0)
    np.testing.assert_allclose(scores.knots[1][:, 1], norm.ppf((np.arange(500) + 0.5) / 500))


@pytest.mark.parametrize("kind", ["normal", "ties", "half_zeros", "three_values", "two_rows"])
def test_sorted_quantiles_are_numpys_to_the_bit(kind):
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = 2 if kind == "two_rows" else int(rng.integers(2, 3000))
        values = rng.normal(size=n) * 10.0 ** rng.uniform(-4, 4)
        if kind == "ties":
            values = np.round(values)
        elif kind == "half_zeros":
            values[: n // 2] = 0.0
        elif kind == "three_values":
            values = rng.integers(0, 3, n).astype(np.float64)
        m = min(KNOTS, n)
        for p in ((np.arange(m) + 0.5) / m, np.concatenate([[0.0, 1.0], rng.uniform(size=7)])):
            np.testing.assert_array_equal(sorted_quantiles(values, p), np.quantile(values, p))


def test_grid_jitter_stays_in_the_cell_and_depends_on_the_row_not_the_batch():
    rng = np.random.RandomState(1)
    X = torch.tensor(np.column_stack([np.round(rng.rand(1000) * 10, 1), rng.rand(1000)]))
    spread = grid_jitter(X, [0], [0.1], seed=5)
    shift = (spread[:, 0] - X[:, 0]).numpy()
    assert np.all(np.abs(shift) <= 0.05) and abs(shift.mean()) < 0.005  # uniform on the cell
    assert 0.1 / np.sqrt(12) * 0.9 < shift.std() < 0.1 / np.sqrt(12) * 1.1
    torch.testing.assert_close(spread[:, 1], X[:, 1], rtol=0, atol=0)
    pieces = torch.cat([grid_jitter(X[s], [0], [0.1], seed=5) for s in (slice(0, 300), slice(300, None))])
    torch.testing.assert_close(pieces, spread, rtol=0, atol=0)
    assert not torch.equal(grid_jitter(X, [0], [0.1], seed=6), spread)  # the seed's


def test_a_column_of_few_values_is_spread_unless_the_exploration_switch_says_not(monkeypatch):
    from scipy.special import ndtri

    from skgenerative import mixture

    df = _table().assign(rating=lambda f: np.clip(np.round(f["sugar"] / 2), 0, 6).astype(np.int64))
    assert df["rating"].nunique() <= 7
    spread = _fit(df).normal_scores_
    assert list(spread.steps) == [0.1, 1.0, 1.0]  # every grid column spread over its cells (default)
    monkeypatch.setattr(mixture, "MARGINAL_UNSPREAD_LEVELS", 20)
    kept = _fit(df).normal_scores_
    assert list(kept.steps) == [0.1, 1.0, 0.0]  # sugar and dose have more than 20 values
    # the rating's knots: the quantiles of its values as they are (ties: one knot at their
    # mean normal score), so each value is a knot; spread, none is
    values = df["rating"].to_numpy()
    p = (np.arange(len(values)) + 0.5) / len(values)
    x, z = np.quantile(values, p), ndtri(p)
    expected = np.array([[u, z[x == u].mean()] for u in np.unique(x)])
    np.testing.assert_allclose(kept.knots[2], expected, rtol=0, atol=1e-12)
    assert set(np.unique(values)) <= set(kept.knots[2][:, 0])
    assert not set(np.unique(values)) & set(spread.knots[2][:, 0])
    np.testing.assert_array_equal(kept.knots[0], spread.knots[0])


def _rated(n=600, seed=0):
    """_table() with a rating of 7 values that follows sugar (noisily)."""
    df = _table(n, seed)
    noise = np.random.RandomState(seed + 1).normal(0, 1.0, n)
    return df.assign(rating=np.clip(np.round(df["sugar"] / 2 + noise), 0, 6).astype(np.int64))


def test_the_synthetic_call_spreads_a_rating_in_the_order_of_the_rest_of_the_row():
    from scipy.special import ndtri
    from scipy.stats import rankdata

    df = _rated()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixtureDensity("auto", random_state=0).fit(df)
        again = GaussianMixtureDensity("auto", random_state=0).fit(df)
    scores = model.normal_scores_
    assert scores.columns == [0, 1, 3] and list(scores.orders) == [2]  # the rating only
    X = torch.as_tensor(df.assign(kind=df["kind"].cat.codes).to_numpy(dtype=float))
    spread = scores.dequantised(X).numpy()
    rating, u = X[:, 3].numpy(), spread[:, 3] - X[:, 3].numpy()
    # the order: least squares of the rating's score on the other columns' scores, plus
    # the residual's standard deviation times the normal quantile of the row's hash spread
    hashed = grid_jitter(X, scores.columns, scores.steps, scores.seed).numpy()
    first = NormalScores.fit(X.numpy(), scores.columns, scores.steps, scores.seed, ordered_max_levels=0)
    Z, _ = _np_scores(first, hashed)  # the maps of the hash spread, before the order
    design = np.column_stack([Z[:, [0, 1]], np.ones(len(Z))])
    coef, *_ = np.linalg.lstsq(design, Z[:, 3], rcond=None)
    weights, levels, _, residual = scores.orders[2]
    np.testing.assert_allclose(weights[:2], coef[:2], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(residual, np.std(Z[:, 3] - design @ coef), rtol=1e-4)
    assert weights[2] == 0 and list(levels) == sorted(np.unique(rating))
    key = Z[:, [0, 1]] @ coef[:2] + residual * ndtri(hashed[:, 3] - rating + 0.5)
    for v in np.unique(rating):
        rows = rating == v
        # each level covers its cell uniformly, in the key's order: mid-ranks (i + 1/2) / n - 1/2
        # (identical rows share theirs)
        ranks = (rankdata(key[rows]) - 0.5) / rows.sum() - 0.5
        np.testing.assert_allclose(u[rows], ranks, rtol=0, atol=1e-9)
    # a function of the row: in pieces as in one batch; the seed's fit is the same fit
    pieces = torch.cat([scores.dequantised(X[s]) for s in (slice(0, 250), slice(250, None))])
    torch.testing.assert_close(pieces, torch.as_tensor(spread), rtol=0, atol=0)
    np.testing.assert_array_equal(model.score_samples(df), again.score_samples(df))
    # the explicit normal scores (the imputer's) spread by the hash alone
    assert not _fit(df).normal_scores_.orders


def test_two_ordered_columns_spread_the_training_rows_at_use_as_at_fit():
    """The keys of a column of few values read the other columns' scores; with two such
    columns, the fitted maps (refitted on the ordered spread) move the other ordered
    column's score. The keys read the maps the orders were fitted with, so the spread
    the final knots were fitted on is the spread ``dequantised`` gives the same rows."""
    rng = np.random.RandomState(3)
    n = 600
    z = rng.normal(size=n)
    X = np.column_stack([z + 0.3 * rng.normal(size=n), np.clip(np.round(2 * z + 3 + rng.normal(size=n)), 0, 6),
                         np.clip(np.round(-1.5 * z + 2 + rng.normal(size=n)), 0, 5), rng.gamma(2.0, size=n)])
    steps = np.array([0.0, 1.0, 1.0, 0.0])
    scores = NormalScores.fit(X, [0, 1, 2, 3], steps, seed=7)
    assert sorted(scores.orders) == [1, 2]
    first = NormalScores.fit(X, [0, 1, 2, 3], steps, seed=7, ordered_max_levels=0)
    at_fit = first.dequantised(torch.as_tensor(X), scores.orders).numpy()  # what the final knots saw
    at_use = scores.dequantised(torch.as_tensor(X)).numpy()
    np.testing.assert_array_equal(at_use, at_fit)
    # the refitted maps do move the ordered columns' scores (the keys would move with them)
    moved = scores._scores(torch.as_tensor(at_fit)) - first._scores(torch.as_tensor(at_fit))
    assert np.abs(moved[:, [1, 2]]).max() > 1e-3 and np.abs(moved[:, [0, 3]]).max() == 0
    # and the keys survive pickling
    again = pickle.loads(pickle.dumps(scores))
    np.testing.assert_array_equal(again.dequantised(torch.as_tensor(X)).numpy(), at_fit)


def test_an_ordered_rating_keeps_its_frequencies_and_its_dependence_on_the_rest():
    from skgenerative import mixture

    df = _rated(2000)
    draws = {}
    for levels in (0, mixture.MARGINAL_ORDERED_LEVELS):
        with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
            warnings.simplefilter("ignore")
            patch.setattr(mixture, "MARGINAL_ORDERED_LEVELS", levels)
            draws[levels] = GaussianMixtureDensity("auto", random_state=0).fit(df).sample(20000, random_state=1)
    ordered = draws[mixture.MARGINAL_ORDERED_LEVELS]
    frequencies = lambda f: f["rating"].value_counts(normalize=True).reindex(range(7), fill_value=0)  # noqa: E731
    assert np.abs(frequencies(ordered) - frequencies(df)).max() < 0.02
    # the rating's correlation with sugar: real 0.79; spread by the hash alone the
    # synthetic rows understate it (0.75), in the order of the rest they keep it
    correlation = lambda f: np.corrcoef(f["rating"], f["sugar"])[0, 1]  # noqa: E731
    assert abs(correlation(ordered) - correlation(df)) < 0.025 < abs(correlation(draws[0]) - correlation(df))


# ---------------------------------------------------------- the density
def test_score_is_the_gaussian_mixture_of_the_scores_plus_the_log_slopes():
    df = _table()
    model = _fit(df)
    X = model.schema_.encode(df.iloc[:50])[0]
    Z, log_slope = _np_scores(model.normal_scores_, X)
    levels = model.level_probabilities_[0][:, X[:, 2].astype(int)].T
    parts = [np.log(w) + multivariate_normal(m, c).logpdf(Z[:, :2]) + np.log(levels[:, k])
             for k, (w, m, c) in enumerate(zip(model.weights_, model.means_, model.covariances_))]
    np.testing.assert_allclose(model.score_samples(df.iloc[:50]), logsumexp(parts, axis=0) + log_slope,
                               rtol=1e-10, atol=1e-10)


def test_density_of_a_column_integrates_to_one():
    df = _table()[["sugar"]]
    model = _fit(df, k=3)
    # Gauss-Legendre on every interval between the knots (and a fine grid): the density
    # is smooth inside a piece, with a jump in slope at each knot
    edges = np.unique(np.concatenate([model.normal_scores_.knots[0][:, 0], np.linspace(-60, 120, 18001)]))
    nodes, weights = np.polynomial.legendre.leggauss(8)
    half = np.diff(edges) / 2
    points = (edges[:-1] + half)[:, None] + half[:, None] * nodes
    density = np.exp(model.score_samples(pd.DataFrame({"sugar": points.ravel()}))).reshape(points.shape)
    assert float((density * weights * half[:, None]).sum()) == pytest.approx(1.0, abs=1e-6)


def test_missing_cells_are_marginalised_on_the_score_scale_without_their_slope():
    df = _table()
    model = _fit(df)
    holes = df.iloc[:40].copy()
    holes.loc[holes.index[::2], "dose"] = np.nan
    X = model.schema_.encode(holes)[0]
    Z, log_slope = _np_scores(model.normal_scores_, X)
    levels = model.level_probabilities_[0][:, X[:, 2].astype(int)].T
    expected = []
    for i in range(len(X)):
        seen = [j for j in range(2) if not np.isnan(Z[i, j])]
        parts = [np.log(w) + multivariate_normal(m[seen], c[np.ix_(seen, seen)]).logpdf(Z[i, seen]) + np.log(levels[i, k])
                 for k, (w, m, c) in enumerate(zip(model.weights_, model.means_, model.covariances_))]
        expected.append(logsumexp(parts) + log_slope[i])
    np.testing.assert_allclose(model.score_samples(holes), expected, rtol=1e-10, atol=1e-10)
    # explain: each cell's contribution carries its log-slope (score minus the score without it)
    explained = model.explain(df.iloc[:5])
    without = df.iloc[:5].copy()
    without["sugar"] = np.nan
    np.testing.assert_allclose(explained["sugar"], model.score_samples(df.iloc[:5]) - model.score_samples(without),
                               rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------- draws and conditionals
def test_samples_follow_the_training_quantiles():
    df = _table(n=3000)[["sugar"]]
    model = _fit(df, k=1)
    drawn = model.sample(20000, random_state=0, bounds=None)["sugar"].to_numpy()
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(np.quantile(drawn, q), np.quantile(df["sugar"], q), rtol=0.04)
    # rounded back onto the grid of 0.1 (bounds="observed"), and not snapped onto the
    # values many rows share: a value held by fewer than 5 rows is drawn about as often
    observed = model.sample(20000, random_state=0)["sugar"].to_numpy()
    np.testing.assert_allclose(observed * 10, np.round(observed * 10), atol=1e-9)
    values, counts = np.unique(df["sugar"], return_counts=True)
    frequent = values[counts >= 5]
    inner = lambda x: x[(x >= frequent[0]) & (x <= frequent[-1])]  # noqa: E731
    rare = lambda x: np.mean(~np.isin(np.round(inner(x), 1), np.round(frequent, 1)))  # noqa: E731
    assert 0.5 * rare(df["sugar"].to_numpy()) < rare(observed) < 2 * rare(df["sugar"].to_numpy())


def test_conditional_draws_and_point_are_bayes_rule_on_the_score_scale():
    df = _table()
    model = _fit(df, k=2)
    given = 14  # dose
    z1 = _np_scores(model.normal_scores_, np.array([[0.0, given, 0.0]]))[0][0, 1]
    # p(k | dose) and E[z_sugar | dose, k], written out (kind drawn too: not given)
    log_r = [np.log(w) + norm(m[1], np.sqrt(c[1, 1])).logpdf(z1)
             for w, m, c in zip(model.weights_, model.means_, model.covariances_)]
    r = np.exp(np.array(log_r) - logsumexp(log_r))
    means = np.array([m[0] + c[0, 1] / c[1, 1] * (z1 - m[1]) for m, c in zip(model.means_, model.covariances_)])
    variances = np.array([c[0, 0] - c[0, 1] ** 2 / c[1, 1] for c in model.covariances_])
    draws = model.sample(20000, random_state=1, bounds=None, given={"dose": given})
    assert (draws["dose"] == given).all()
    z = _np_scores(model.normal_scores_, np.column_stack([draws["sugar"], draws["dose"], np.zeros(len(draws))]))[0][:, 0]
    mean = r @ means
    sd = np.sqrt(r @ (variances + means**2) - mean**2)
    assert abs(z.mean() - mean) < 4 * sd / np.sqrt(len(z))
    assert z.std() == pytest.approx(sd, rel=0.03)
    # the point imputation: T^{-1} of the conditional mean score
    holes = pd.DataFrame({"sugar": [np.nan], "dose": [given], "kind": pd.Categorical(["a"], categories=["a", "b"])})
    point = model.impute(holes)["sugar"].iloc[0]
    level = model.level_probabilities_[0][:, 0]
    log_r = np.array(log_r) + np.log(level)
    r = np.exp(log_r - logsumexp(log_r))
    expected = model.normal_scores_.inverse(torch.tensor([[r @ means, z1]], dtype=torch.float64))[0, 0].item()
    assert point == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------ the contract
def test_auto_uses_normal_scores_only_for_the_synthetic_table_call():
    df = _table()
    X = df[["sugar", "dose"]].to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = GaussianMixtureDensity("auto", random_state=0).fit(X)
        frame_fixed = GaussianMixtureDensity(2, random_state=0).fit(df)
        frame_auto = GaussianMixtureDensity("auto", random_state=0).fit(df)
        gaussian = GaussianMixtureDensity("auto", marginals="gaussian", random_state=0).fit(X)
    assert array.normal_scores_ is None and frame_fixed.normal_scores_ is None
    np.testing.assert_array_equal(array.score_samples(X), gaussian.score_samples(X))
    assert frame_auto.normal_scores_.columns == [0, 1]
    # declared positive and count columns keep their families
    declared = _fit(df.assign(sugar=df["sugar"] + 0.1), column_types={"sugar": "positive", "dose": "count"})
    assert declared.normal_scores_ is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seeded_refit_batches_and_pickling_give_the_same_rows(dtype):
    df = _table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixtureDensity(3, marginals="normal_scores", dtype=dtype, random_state=4).fit(df)
        b = GaussianMixtureDensity(3, marginals="normal_scores", dtype=dtype, random_state=4).fit(df)
    np.testing.assert_array_equal(a.means_, b.means_)
    pd.testing.assert_frame_equal(a.sample(50, random_state=2), b.sample(50, random_state=2))
    whole = a.score_samples(df)
    np.testing.assert_array_equal(np.concatenate([a.score_samples(df.iloc[:7]), a.score_samples(df.iloc[7:])]), whole)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.score_samples(df), whole)
    pd.testing.assert_frame_equal(c.sample(50, random_state=2), a.sample(50, random_state=2))


def test_a_dask_frame_gives_the_in_memory_maps_and_model():
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = _table()
    kw = dict(n_components=2, marginals="normal_scores", dtype="float64", random_state=0, max_iter=5, tol=0)
    with warnings.catch_warnings(), dask.config.set(scheduler="synchronous"):
        warnings.simplefilter("ignore")
        memory = GaussianMixtureDensity(**kw).fit(df)
        blocks = GaussianMixtureDensity(**kw).fit(dd.from_pandas(df, npartitions=3))
    for a, b in zip(memory.normal_scores_.knots, blocks.normal_scores_.knots):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(blocks.means_, memory.means_, rtol=1e-10)


def test_a_rating_the_maps_spread_does_not_warn_of_discrete_data_but_one_off_any_grid_does():
    from skgenerative import DiscreteDataWarning

    def warned(frame, **kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            GaussianMixtureDensity("auto", random_state=0, max_iter=5, **kw).fit(frame)
        return [str(w.message) for w in caught if issubclass(w.category, DiscreteDataWarning)]

    df = _rated()
    assert warned(df) == []  # normal scores spread the rating over its unit cells
    assert len(warned(df, marginals="gaussian")) == 1 and "'rating'" in warned(df, marginals="gaussian")[0]
    thirds = warned(df.assign(rating=df["rating"] / 3))  # 1/3, 2/3, ...: no grid to spread over
    assert len(thirds) == 1 and "'rating'" in thirds[0]


def test_a_dask_frame_gives_the_in_memory_order_of_a_rating():
    dd = pytest.importorskip("dask.dataframe")
    import dask

    df = _rated()
    kw = dict(n_components="auto", dtype="float64", random_state=0, max_iter=5, tol=0)
    with warnings.catch_warnings(), dask.config.set(scheduler="synchronous"):
        warnings.simplefilter("ignore")
        memory = GaussianMixtureDensity(**kw).fit(df)
        blocks = GaussianMixtureDensity(**kw).fit(dd.from_pandas(df, npartitions=3))
    (w, levels, keys, residual), (w2, levels2, keys2, residual2) = memory.normal_scores_.orders[2], \
        blocks.normal_scores_.orders[2]
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(levels, levels2)
    assert residual == residual2 and all(np.array_equal(a, b) for a, b in zip(keys, keys2))
    np.testing.assert_allclose(blocks.score_samples(df), memory.score_samples(df), rtol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_fit_has_the_cpu_maps_and_scores_on_a_cpu_machine():
    df = _table()
    kw = dict(n_components=2, marginals="normal_scores", dtype="float64", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = GaussianMixtureDensity(**kw).fit(df)
        gpu = GaussianMixtureDensity(device="cuda", **kw).fit(df)
    for a, b in zip(cpu.normal_scores_.knots, gpu.normal_scores_.knots):
        np.testing.assert_array_equal(a, b)  # the same spread rows: the hash runs on the host
    restored = pickle.loads(pickle.dumps(gpu)).set_params(device="cpu")
    np.testing.assert_allclose(restored.score_samples(df), gpu.score_samples(df), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gpu.score_samples(df), cpu.score_samples(df), rtol=1e-6, atol=1e-6)
    assert np.isfinite(gpu.sample(100, random_state=0)["sugar"]).all()
