"""The default GenerativeImputer on tables with discrete columns: zero-inflated columns,
held-out cells, the stacked mixed mixtures and the pooled imputation of a table."""

import warnings

import numpy as np
import pandas as pd
import pytest

from skgenerative import GaussianMixtureDensity, GenerativeImputer
from skgenerative.impute import (
    MIXED_CANDIDATES,
    MIXED_HELD_OUT_SHARE,
    MIXED_HELD_OUT_TOL,
    MIXED_RESUMED,
    default_mixed_candidates,
    held_out_cells_log_likelihood,
    hold_out_cells,
    pooled_table_draws,
    pooled_table_imputation,
    stack_on_held_out_cells,
    zero_inflated_columns,
)


def _table(n=300, seed=0, rate=0.2):
    """Two classes behind a number, a zero-inflated amount, a categorical and an ordinal column."""
    rng = np.random.RandomState(seed)
    z = rng.randint(2, size=n)
    full = pd.DataFrame({
        "x": rng.normal(3.0 * z, 1.0),
        "gain": np.where(rng.uniform(size=n) < np.where(z, 0.3, 0.9), 0.0, rng.lognormal(2.0 + z, 0.5)),
        "colour": pd.Categorical(np.where(rng.uniform(size=n) < 0.85, z, 1 - z).astype(str).astype(object),
                                 categories=["0", "1", "2"]),
        "size": pd.Categorical(np.array(["S", "M", "L"])[np.clip(2 * z + rng.randint(-1, 2, n), 0, 2)],
                               categories=["S", "M", "L"], ordered=True),
    })
    holes = full.copy()
    for column in holes.columns:
        holes.loc[rng.uniform(size=n) < rate, column] = np.nan
    return full, holes


def test_zero_inflated_columns_are_the_nonnegative_ones_with_a_tenth_of_zeros():
    n = 100
    frame = pd.DataFrame({
        "tenth": np.r_[np.zeros(10), np.arange(1.0, 91.0)],
        "ninth_short": np.r_[np.zeros(9), np.arange(1.0, 92.0)],  # 9%: a Gaussian's business
        "negative": np.r_[np.zeros(50), -np.arange(1.0, 51.0)],
        "integers": np.r_[np.zeros(30, dtype=np.int64), np.arange(1, 71)],
        "missing": np.r_[np.zeros(5), np.full(45, np.nan), np.arange(1.0, 51.0)],  # 5 of 55 observed
        "level": pd.Categorical(["0"] * n),
        "flag": np.zeros(n, dtype=bool),
    })
    assert zero_inflated_columns(frame) == {"tenth": "positive", "integers": "positive"}


def test_held_out_cells_are_observed_cells_and_leave_every_column_one():
    _, holes = _table(200)
    holes.loc[1:, "x"] = np.nan  # one observed cell left in 'x'
    holes.loc[0, "x"] = 1.0
    held = hold_out_cells(holes, 0.3, 0)
    observed = holes.notna().to_numpy()
    assert not (held & ~observed).any()
    assert ((observed & ~held).sum(0) >= 1).all()
    assert abs(held[:, 1:].sum() / observed[:, 1:].sum() - 0.3) < 0.05
    np.testing.assert_array_equal(held, hold_out_cells(holes, 0.3, 0))
    assert not np.array_equal(held, hold_out_cells(holes, 0.3, 1))


def test_the_held_out_score_of_one_cell_is_its_explain_value():
    _, holes = _table()
    model = GaussianMixtureDensity(2, covariance_prior=2.0, random_state=0,
                                   column_types={"gain": "positive"}).fit(holes)
    observed = holes.notna().to_numpy()
    rows = np.flatnonzero(observed.all(1))[:20]
    explained = np.asarray(model.explain(holes.iloc[rows]), dtype=np.float64)
    for j, column in enumerate(holes.columns):
        train = holes.copy()
        train.iloc[rows, j] = np.nan
        got = held_out_cells_log_likelihood(model, holes, train, rows)
        np.testing.assert_allclose(got, explained[:, j], rtol=1e-6, atol=1e-8, err_msg=column)


def test_the_pooled_imputation_is_the_pool_of_the_models_conditionals():
    full, holes = _table()
    models = [GaussianMixtureDensity(k, covariance_prior=2.0, random_state=0).fit(holes) for k in (1, 3)]
    weights = np.array([0.3, 0.7])
    out = pooled_table_imputation(models, weights, holes)
    # by hand, through the public API: level probabilities averaged, then the mode (or the median)
    probabilities = [m.impute_proba(holes) for m in models]
    for column, ordinal in (("colour", False), ("size", True)):
        missing = holes[column].isna().to_numpy()
        pooled = sum(w * p[column].to_numpy() for w, p in zip(weights, probabilities))[missing]
        if ordinal:
            expected = (np.cumsum(pooled, axis=1) >= 0.5).argmax(1)
        else:
            expected = pooled.argmax(1)
        np.testing.assert_array_equal(out[column].cat.codes.to_numpy()[missing], expected)
        assert out[column].dtype == holes[column].dtype
    # numbers: the weighted mean of the models' points
    points = [m.impute(holes) for m in models]
    for column in ("x", "gain"):
        missing = holes[column].isna().to_numpy()
        expected = sum(w * p[column].to_numpy() for w, p in zip(weights, points))[missing]
        np.testing.assert_allclose(out[column].to_numpy()[missing], expected, rtol=1e-10)
    observed = holes.notna()
    for column in holes.columns:
        pd.testing.assert_series_equal(out[column][observed[column]], holes[column][observed[column]])
    # a pool of one is the model itself
    pd.testing.assert_frame_equal(pooled_table_imputation(models[:1], [1.0], holes), points[0])


def test_pooled_draws_take_each_row_from_one_model():
    _, holes = _table()
    models = [GaussianMixtureDensity(k, covariance_prior=2.0, random_state=0).fit(holes) for k in (1, 3)]
    out = pooled_table_draws(models, np.array([0.0, 1.0]), holes, seed=5)
    pd.testing.assert_frame_equal(out, models[1].impute(holes, n_draws=1, random_state=6)[0])
    mixed = pooled_table_draws(models, np.array([0.5, 0.5]), holes, seed=5)
    assert mixed.dtypes.equals(holes.dtypes) and mixed.index.equals(holes.index)
    assert not mixed.isna().any().any()


def test_the_default_choice_on_a_table_is_recorded_and_deterministic(capsys):
    full, holes = _table()
    holes.index = pd.RangeIndex(50, 50 + len(holes))
    imputer = GenerativeImputer(verbose=2).fit(holes)
    out = capsys.readouterr().out
    assert "stacked" in out and "zero-inflated columns: ['gain']" in out
    assert len(imputer.selection_) == len(MIXED_CANDIDATES)
    assert [e["status"] for e in imputer.selection_] == ["tried"] * len(MIXED_CANDIDATES)
    kept = [e["weight_kept"] for e in imputer.selection_ if e["weight_kept"] > 0]
    np.testing.assert_allclose(sorted(kept, reverse=True), imputer.weights_)
    assert imputer.weights_.sum() == pytest.approx(1.0)
    assert all(m.column_types == {"gain": "positive"} for m in imputer.estimators_)
    # the real column reaches the candidates on normal scores (the positive one through its log)
    assert all(list(m.normal_scores_.columns) == [0] for m in imputer.estimators_)
    assert imputer.estimator_ is imputer.estimators_[0]
    again = GenerativeImputer().fit(holes)
    np.testing.assert_array_equal(again.weights_, imputer.weights_)
    first, second = imputer.transform(holes), again.transform(holes)
    pd.testing.assert_frame_equal(first, second)
    assert first.dtypes.equals(holes.dtypes) and first.index.equals(holes.index)
    # subsets of rows are imputed as in the whole batch
    pd.testing.assert_frame_equal(imputer.transform(holes.iloc[7:40]), first.iloc[7:40])
    # the levels come from the other columns: better than the mode
    missing = holes["colour"].isna().to_numpy()
    truth = full["colour"].to_numpy()[missing]
    wrong = (first["colour"].to_numpy()[missing] != truth).mean()
    assert wrong < 0.6 * (truth != holes["colour"].mode()[0]).mean()


def test_a_rare_level_held_out_does_not_crash_the_choice():
    _, holes = _table(200)
    holes["shop"] = np.where(np.arange(200) % 2, "a", "b").astype(object)
    holes.loc[3, "shop"] = "rare"  # a level of an object column seen in one row only
    j = list(holes.columns).index("shop")
    seed = next(s for s in range(100) if hold_out_cells(holes, 0.5, s)[3, j])  # 'rare' held out
    candidates = default_mixed_candidates(zero_inflated_columns(holes), seed)[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensemble, record = stack_on_held_out_cells(candidates, holes, share=0.5, random_state=seed)
    assert ensemble and all(e["status"] == "tried" for e in record)
    # a model that never saw 'rare' would code the table's levels differently: every
    # candidate kept resumes on every cell, whatever its rank
    assert all(e["resumed"] for e in record if e["weight_kept"] > 0)
    assert sum(w for w, _ in ensemble) == pytest.approx(1.0)
    imputed = pooled_table_imputation([m for _, m in ensemble], [w for w, _ in ensemble], holes)
    assert imputed.loc[3, "shop"] == "rare" and not imputed.isna().any().any()


def test_only_the_largest_weights_resume_em_on_every_cell():
    from sklearn.base import clone

    _, holes = _table(300, seed=3, rate=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GenerativeImputer().fit(holes)
        kept = sorted((e for e in imputer.selection_ if e["weight_kept"] > 0), key=lambda e: -e["weight_kept"])
        assert len(kept) > MIXED_RESUMED  # else the test shows nothing
        assert [e["resumed"] for e in kept] == [True] * MIXED_RESUMED + [False] * (len(kept) - MIXED_RESUMED)
        # a model not resumed is its fit without the held-out cells, bit for bit
        train = holes.mask(hold_out_cells(holes, MIXED_HELD_OUT_SHARE, 0))
        candidates = default_mixed_candidates(zero_inflated_columns(holes), 0)
        for model in imputer.estimators_[MIXED_RESUMED:]:
            i = next(i for i, c in enumerate(candidates) if (c.n_components, c.covariance_type) ==
                     (model.n_components, model.covariance_type))
            again = clone(candidates[i]).set_params(tol=MIXED_HELD_OUT_TOL).fit(train)
            np.testing.assert_array_equal(model.means_, again.means_)
            assert model.n_iter_ == again.n_iter_
        resumed = imputer.estimators_[0]
        assert resumed.lower_bound_ != clone(resumed).set_params(tol=MIXED_HELD_OUT_TOL).fit(train).lower_bound_


def test_small_tables_get_the_fixed_mixed_model():
    _, holes = _table(40)
    imputer = GenerativeImputer().fit(holes)
    assert imputer.selection_ is None and len(imputer.estimators_) == 1
    assert imputer.estimator_.column_types == {"gain": "positive"}
    assert not imputer.transform(holes).isna().any().any()


def test_a_given_estimator_is_cloned_even_when_fitted():
    _, holes = _table(120)
    given = GaussianMixtureDensity(2, random_state=0).fit(holes)
    imputer = GenerativeImputer(given).fit(holes)
    assert imputer.estimator_ is not given and imputer.selection_ is None
    assert imputer.weights_.tolist() == [1.0]
