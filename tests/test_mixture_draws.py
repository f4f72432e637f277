"""Conditional draws of the mixture: factors without subtraction, one condition shared
by many rows drawn at once, and observed ranges of a dask-fitted model."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from skgenerative import GaussianMixtureDensity
from skgenerative.mixture import gaussian_conditionals


def _patterns_of(d, rng):
    X = torch.as_tensor(rng.normal(size=(6, d)))
    X[rng.uniform(size=X.shape) < 0.5] = float("nan")
    X[0] = float("nan")  # nothing observed
    return X


@pytest.mark.parametrize("k", [1, 3])
def test_conditional_factors_give_the_schur_complement(k):
    rng = np.random.RandomState(0)
    d = 5
    B = torch.as_tensor(rng.normal(size=(k, d, d)))
    S = B @ B.transpose(1, 2) + 0.5 * torch.eye(d, dtype=torch.float64)
    X = _patterns_of(d, rng)
    c = gaussian_conditionals(X, torch.zeros(k, d, dtype=torch.float64), S, "full")
    F = c.conditional_factors()
    np.testing.assert_allclose((F @ F.transpose(-1, -2)).numpy(), c.conditional_covariances().numpy(), atol=1e-10)
    # by hand for one row: S_mm - S_mo S_oo^-1 S_om
    row = int(np.flatnonzero((~torch.isnan(X)).sum(1).numpy() == 3)[0]) if ((~torch.isnan(X)).sum(1) == 3).any() else 1
    o, m = (~torch.isnan(X[row])).numpy(), torch.isnan(X[row]).numpy()
    S0 = S[0].numpy()
    schur = S0[np.ix_(m, m)] - S0[np.ix_(m, o)] @ np.linalg.solve(S0[np.ix_(o, o)], S0[np.ix_(o, m)])
    got = (F @ F.transpose(-1, -2))[c.pattern[row], 0].numpy()
    np.testing.assert_allclose(got[np.ix_(m, m)], schur, atol=1e-10)
    assert np.abs(got[o]).max() == 0 and np.abs(got[:, o]).max() == 0


@pytest.mark.parametrize("route", [None, "precision", "covariance"])
def test_conditional_factors_exist_where_the_subtraction_breaks(route):
    """A missing entry the observed ones determine almost exactly: the Schur complement
    computed by subtraction from an explicit inverse ``S_mm - S_mo S_oo^{-1} S_om`` is
    not positive in some of these cases (the LinAlgError of conditional draws seen on
    Adult); both routes of gaussian_conditionals (``Lambda_mm^{-1}``, or ``S_mm - W^T W``
    with ``W = L^{-1} S_om`` as in the joint's Cholesky factor) stay positive."""
    gen = torch.Generator().manual_seed(0)
    broken = 0
    for _ in range(200):
        B = torch.randn(4, 3, dtype=torch.float64, generator=gen) * 100
        S = (B @ B.T + 1e-11 * torch.eye(4, dtype=torch.float64)).unsqueeze(0)
        X = torch.tensor([[1.0, 2.0, 3.0, float("nan")]], dtype=torch.float64)
        S0 = S[0]
        broken += int(S0[3, 3] - S0[3, :3] @ torch.linalg.inv(S0[:3, :3]) @ S0[:3, 3] <= 0)
        c = gaussian_conditionals(X, torch.zeros(1, 4, dtype=torch.float64), S, "full", route=route)
        assert c.missing.tolist() == [[False, False, False, True]]
        assert c.conditional_covariances()[0, 0, 3, 3] > 0
        F = c.conditional_factors()
        assert torch.isfinite(F).all() and F[0, 0, 3, 3] > 0
    assert broken > 0  # the cases do break the subtraction


def _table(n=3000, seed=0):
    rng = np.random.RandomState(seed)
    group = rng.randint(3, size=n)
    return pd.DataFrame({
        "x": rng.normal(group * 3.0, 1.0),
        "y": rng.normal(-group * 2.0, 0.5) + 0.3 * rng.normal(size=n),
        "level": pd.Categorical(np.array(["a", "b", "c"])[(group + (rng.uniform(size=n) < 0.2)) % 3]),
        "amount": np.where(rng.uniform(size=n) < 0.3, 0.0, np.round(np.exp(rng.normal(group, 0.5)), 2)),
    })


def test_a_shared_condition_draws_from_the_exact_conditional():
    """``given`` a dict (one condition for every row, drawn at once): the drawn levels'
    frequencies and the numbers' mean match the model's exact conditional, and match
    the rows drawn one by one from a frame of the same partial rows."""
    df = _table()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixtureDensity(3, random_state=0).fit(df)
    n = 20000
    shared = model.sample(n, random_state=1, given={"x": 3.0}, bounds=None)
    one_by_one = model.sample(random_state=2, bounds=None,
                              given=pd.DataFrame({"x": np.full(n, 3.0)}))
    partial = df.iloc[:1].copy()
    partial["x"] = 3.0
    partial[["y", "level", "amount"]] = np.nan
    exact = model.impute_proba(partial)["level"]
    freq = shared["level"].value_counts(normalize=True).reindex(["a", "b", "c"]).to_numpy()
    freq1 = one_by_one["level"].value_counts(normalize=True).reindex(["a", "b", "c"]).to_numpy()
    np.testing.assert_allclose(freq, exact[["a", "b", "c"]].to_numpy(dtype=float).ravel(), atol=0.015)
    np.testing.assert_allclose(freq, freq1, atol=0.02)
    mean_y = model.impute(partial)["y"].iloc[0]  # E[y | x = 3], exact
    assert shared["y"].mean() == pytest.approx(mean_y, abs=0.03)
    assert (shared["x"] == 3.0).all() and shared["y"].std() > 0.1  # independent draws, not one repeated


def test_a_shared_condition_with_many_components_on_adult_is_fast_enough_to_run():
    """The dict path draws 3000 rows given two numbers without a LinAlgError (seen
    before with 32 components on Adult)."""
    from test_mixture_auto import _shared_adult

    df = _shared_adult()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GaussianMixtureDensity(32, random_state=0).fit(df)
    rows = model.sample(3000, random_state=0, given={"age": 37, "hours_per_week": 40})
    assert (rows["age"] == 37).all() and (rows["hours_per_week"] == 40).all()
    assert rows["fnlwgt"].between(df["fnlwgt"].min(), df["fnlwgt"].max()).all()


def test_a_dask_fitted_model_records_what_sample_needs():
    """A fit on a dask DataFrame records the observed ranges, decimals, frequent values
    (the zeros) and holes as the in-memory fit does, so its samples stay in range."""
    dd = pytest.importorskip("dask.dataframe")
    df = _table(n=4000, seed=1)
    df["count"] = np.random.RandomState(2).poisson(3, len(df)).astype(np.int64)
    df.loc[df.index[::7], "y"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # amounts declared positive: a zero is a point mass (inferred, they would be real)
        params = dict(random_state=0, column_types={"amount": "positive"})
        memory = GaussianMixtureDensity(4, **params).fit(df)
        lazy = GaussianMixtureDensity(4, **params).fit(dd.from_pandas(df, npartitions=4))
    a, b = memory.schema_.observed, lazy.schema_.observed
    assert b and a["ranges"] == b["ranges"] and a["decimals"] == b["decimals"] and a["n_rows"] == b["n_rows"]
    np.testing.assert_array_equal(a["missing"][0], b["missing"][0])
    np.testing.assert_array_equal(a["missing"][1], b["missing"][1])
    zeros = dict(zip(*b["frequent"]["amount"][:2]))
    assert zeros[0.0] == (df["amount"] == 0).sum()
    rows = lazy.sample(5000, random_state=0)
    for column in ("x", "y", "amount", "count"):
        assert rows[column].between(df[column].min(), df[column].max()).all(), column
    assert (rows["amount"] == 0).mean() == pytest.approx((df["amount"] == 0).mean(), abs=0.03)
    assert rows["count"].dtype == np.int64
    assert np.allclose(rows["amount"], rows["amount"].round(2))
    holes = lazy.sample(5000, random_state=0, missing=True)
    assert holes["y"].isna().mean() == pytest.approx(1 / 7, abs=0.02)
