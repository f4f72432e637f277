"""The column schema: inference, overrides, encoding, unseen levels and the way back.

The contract side is tested through a toy model defined here (independent columns:
a Gaussian per numeric column, level frequencies per discrete one), whose every
number can be written down by hand.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from skgenerative._schema import TableSchema, _distinct_rows, point_levels
from skgenerative.base import DiscreteDataWarning, GenerativeModel


def _table(n=12, seed=0):
    rng = np.random.RandomState(seed)
    return pd.DataFrame({
        "amount": rng.normal(10, 2, n),
        "merchant": pd.Categorical(rng.choice(["food", "fuel", "travel"], n),
                                   categories=["food", "fuel", "travel", "unused"]),
        "size": pd.Categorical(rng.choice(["S", "M", "L"], n), categories=["S", "M", "L"], ordered=True),
        "online": rng.uniform(size=n) < 0.5,
        "country": pd.Series(rng.choice(["FR", "DE"], n), dtype=object),
        "items": rng.poisson(3, n).astype(np.int64),
        "rating": pd.array(rng.randint(1, 6, n), dtype="Int64"),
    })


@pytest.mark.parametrize("n_columns", [1, 12, 63, 64, 70])
def test_distinct_rows_are_numpys_unique_rows(n_columns):
    rng = np.random.default_rng(n_columns)
    for share in (0.02, 0.3, 0.9):
        mask = rng.uniform(size=(500, n_columns)) < share
        mask[250:] = mask[:250][rng.integers(0, 250, 250)]  # repeated rows
        patterns, counts = _distinct_rows(mask)
        expected, expected_counts = np.unique(mask, axis=0, return_counts=True)
        assert patterns.dtype == bool
        np.testing.assert_array_equal(patterns, expected)
        np.testing.assert_array_equal(counts, expected_counts)


def test_fill_frame_merges_category_codes_as_where_does():
    frame = pd.DataFrame({
        "c": pd.Categorical(["a", None, "b", None, "a", "z"], categories=["a", "b", "z"]),
        "o": pd.Categorical([1, 2, None, 3, None, 1], categories=[1, 2, 3], ordered=True),
        "x": [1.0, np.nan, 2.0, 3.0, np.nan, 0.5],
    }, index=[10, 11, 12, 13, 14, 15])
    schema = TableSchema.infer(frame)
    X, _ = schema.encode(frame)
    codes = np.where(np.isnan(X), [[2.0, 1.0, 7.0]], X)  # the filled cells: "z", 2, 7.0
    filled = schema.to_frame(codes, index=frame.index)
    out = schema.fill_frame(frame, filled)
    for column in frame.columns:
        expected = frame[column].where(frame[column].notna(), filled[column].to_numpy())
        pd.testing.assert_series_equal(out[column], expected, check_exact=True)
    assert out["c"].tolist() == ["a", "z", "b", "z", "a", "z"] and out["o"].tolist() == [1, 2, 2, 3, 2, 1]
    # a frame whose categories differ from the filled one's takes where's path
    other = frame.assign(c=frame["c"].cat.add_categories(["w"]))
    merged = schema.fill_frame(other, filled)
    pd.testing.assert_series_equal(merged["c"], other["c"].where(other["c"].notna(), filled["c"].to_numpy()))


def test_types_are_inferred_from_pandas_dtypes_and_overridden():
    df = _table()
    schema = TableSchema.infer(df)
    assert schema.types == ["real", "categorical", "ordinal", "binary", "categorical", "real", "real"]
    assert list(schema.levels["merchant"]) == ["food", "fuel", "travel", "unused"]  # unused kept
    assert list(schema.levels["size"]) == ["S", "M", "L"]  # the category order, not sorted
    assert list(schema.levels["online"]) == [False, True]
    assert list(schema.levels["country"]) == ["DE", "FR"]
    overridden = TableSchema.infer(df, {"items": "count", "rating": "ordinal", "amount": "positive"})
    assert overridden.types_by_column()["items"] == "count"
    assert list(overridden.levels["rating"]) == sorted(set(df["rating"].dropna()))
    positional = TableSchema.infer(df, [None, None, "categorical", None, None, "count", None])
    assert positional.types[2] == "categorical" and positional.types[5] == "count"


@pytest.mark.parametrize("column_types, match", [
    ({"nope": "real"}, "does not have"),
    ({"items": "colour"}, "unknown type"),
    ([None, "real"], "one type per column"),
    ({"amount": "count"}, "declared count"),
    ({"country": "binary", "merchant": "binary"}, "declared binary"),
])
def test_bad_overrides_name_the_column(column_types, match):
    df = _table()
    df.loc[0, "amount"] = -1.5
    with pytest.raises(ValueError, match=match):
        TableSchema.infer(df, column_types)


def test_unsupported_dtype_is_named():
    df = pd.DataFrame({"when": pd.date_range("2020", periods=3), "x": [1.0, 2, 3]})
    with pytest.raises(ValueError, match="'when'.*datetime"):
        TableSchema.infer(df)


def test_encode_then_to_frame_round_trips_names_order_and_dtypes():
    df = _table()
    df.loc[2, "merchant"] = np.nan
    df.loc[3, "country"] = None
    df.loc[4, "rating"] = pd.NA
    schema = TableSchema.infer(df)
    X, unseen = schema.encode(df)
    assert unseen is None
    assert np.isnan(X[2, 1]) and np.isnan(X[3, 4]) and np.isnan(X[4, 6])
    # codes are positions in the levels
    assert X[0, 1] == list(schema.levels["merchant"]).index(df.loc[0, "merchant"])
    back = schema.to_frame(X, index=df.index)
    assert list(back.columns) == list(df.columns)
    for column in df.columns:
        assert back[column].dtype == df[column].dtype, column
    pd.testing.assert_frame_equal(back, df)


def test_unseen_levels_are_missing_with_a_laplace_penalty_and_a_warning():
    df = _table(20)
    schema = TableSchema.infer(df)
    new = df.head(3).copy()
    new["country"] = pd.Series(["FR", "XX", "YY"], dtype=object, index=new.index)
    with pytest.warns(UserWarning, match="'country'.*'XX', 'YY'"):
        X, unseen = schema.encode(new)
    assert unseen[:, 4].tolist() == [False, True, True] and unseen.sum() == 2
    assert np.isnan(X[1, 4]) and X[0, 4] == 1.0
    penalty = schema.unseen_penalty(unseen, 3)
    np.testing.assert_allclose(penalty, [0.0, -math.log(20 + 2 + 1), -math.log(23)])


def test_point_levels_are_the_mode_or_the_median():
    probabilities = np.array([[0.4, 0.0, 0.35, 0.25], [0.1, 0.2, 0.1, 0.6]])
    np.testing.assert_array_equal(point_levels(probabilities, "categorical"), [0, 3])
    # ordinal: the first level whose cumulative probability reaches 1/2
    np.testing.assert_array_equal(point_levels(probabilities, "ordinal"), [2, 3])


# --------------------------------------------------- the contract, through a toy model
def _level_counts(chunk, j, n_levels):
    codes = chunk[:, j]
    return {"counts": torch.bincount(codes[~torch.isnan(codes)].long(), minlength=n_levels).double()}


class IndependentColumns(GenerativeModel):
    """Independent columns: a Gaussian per numeric one, frequencies per discrete one."""

    _supports_missing = True
    _supported_column_types = frozenset({"real", "positive", "count", "binary", "categorical", "ordinal"})

    def __init__(self, *, column_types=None, contamination=0.1, device="cpu", dtype="float64"):
        self.column_types = column_types
        self.contamination, self.device, self.dtype = contamination, device, dtype
        self.n_components, self.random_state, self.verbose = 1, None, 0

    def _fit(self, source):
        moments = source.column_moments()
        self.mean_ = moments.mean.numpy()
        self.var_ = moments.variance.numpy() + 1e-9
        self.freq_ = {}
        for j in self.schema_.discrete:
            counts = source.reduce(_level_counts, j, self.schema_.n_levels(j), row_bytes=64)["counts"].numpy()
            self.freq_[j] = (counts + 1.0) / (counts.sum() + len(counts))

    def _cell_log_prob(self, X):
        X = X.cpu().numpy()
        out = np.zeros_like(X)
        for j in range(X.shape[1]):
            x = X[:, j]
            observed = ~np.isnan(x)
            if j in self.freq_:
                out[observed, j] = np.log(self.freq_[j][x[observed].astype(int)])
            else:
                out[observed, j] = -0.5 * ((x[observed] - self.mean_[j]) ** 2 / self.var_[j]
                                           + np.log(2 * np.pi * self.var_[j]))
        return out

    def _log_prob(self, X):
        return torch.as_tensor(self._cell_log_prob(X).sum(1))

    def _encode(self, X):
        return self._log_prob(X).unsqueeze(1)

    def _sample(self, n, generator):
        out = torch.randn(n, len(self.mean_), generator=generator, dtype=torch.float64)
        out = out * torch.as_tensor(self.var_).sqrt() + torch.as_tensor(self.mean_)
        for j, p in self.freq_.items():
            out[:, j] = torch.multinomial(torch.as_tensor(p), n, replacement=True, generator=generator).double()
        return out

    def _impute(self, X, n_draws, generator):
        means = torch.as_tensor(self.mean_).expand_as(X)
        if n_draws is None:
            return means
        draws = means.unsqueeze(1).repeat(1, n_draws, 1).clone()
        for j, p in self.freq_.items():
            draws[:, :, j] = torch.multinomial(
                torch.as_tensor(p).expand(X.shape[0], -1), n_draws, replacement=True, generator=generator
            ).double()
        return draws

    def _level_probabilities(self, X, columns):
        return [torch.as_tensor(self.freq_[j]).expand(X.shape[0], -1) for j in columns]


def _brute_force_score(model, df):
    """Sum of per-cell log-probabilities written out cell by cell."""
    schema = model.schema_
    total = np.zeros(len(df))
    for i in range(len(df)):
        for j, name in enumerate(schema.names):
            value = df.iloc[i, j]
            if pd.isna(value):
                continue
            if j in model.freq_:
                levels = list(schema.levels[name])
                if value in levels:
                    total[i] += math.log(model.freq_[j][levels.index(value)])
                else:
                    total[i] += -math.log(schema.n_samples + len(levels) + 1)
            else:
                v = model.var_[j]
                total[i] += -0.5 * ((float(value) - model.mean_[j]) ** 2 / v + math.log(2 * math.pi * v))
    return total


def test_mixed_row_scores_numbers_plus_levels_with_the_unseen_policy():
    df = _table(30)
    with pytest.warns(DiscreteDataWarning, match="'items', 'rating'"):  # integers taken as real
        model = IndependentColumns().fit(df)
    assert model.schema_.types[1] == "categorical"
    new = df.head(4).copy()
    new["country"] = pd.Series(["FR", "ZZ", None, "DE"], dtype=object, index=new.index)
    new.loc[new.index[0], "amount"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = model.score_samples(new)
    np.testing.assert_allclose(scores, _brute_force_score(model, new), rtol=1e-12)
    # rows of levels as a plain object array, position by position: the same scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_allclose(model.score_samples(new.astype(object).to_numpy()), scores)


def test_impute_and_sample_return_the_users_table():
    df = _table(40)
    with pytest.warns(DiscreteDataWarning, match="'items', 'rating'"):  # integers taken as real
        model = IndependentColumns().fit(df)
    holes = df.copy()
    holes.loc[[0, 3], "merchant"] = np.nan
    holes.loc[[1], "size"] = np.nan
    holes.loc[[2], "amount"] = np.nan
    holes["online"] = holes["online"].astype("boolean")
    holes.loc[[5], "online"] = pd.NA
    holes.loc[[6], "rating"] = pd.NA
    with pytest.warns(DiscreteDataWarning, match="'items', 'rating'"):
        refit = IndependentColumns().fit(holes)
    filled = refit.impute(holes)
    assert list(filled.columns) == list(holes.columns)
    for column in holes.columns:
        assert filled[column].dtype == holes[column].dtype, column
    assert not filled.isna().any().any()
    observed = holes.notna()
    for column in holes.columns:
        pd.testing.assert_series_equal(filled[column][observed[column]], holes[column][observed[column]])
    # point levels: the mode of the frequencies (merchant), the median (ordinal size)
    merchant = refit.freq_[1]
    assert filled.loc[0, "merchant"] == refit.schema_.levels["merchant"][np.argmax(merchant)]
    size_median = np.argmax(np.cumsum(refit.freq_[2]) >= 0.5)
    assert filled.loc[1, "size"] == refit.schema_.levels["size"][size_median]
    assert filled.loc[2, "amount"] == pytest.approx(refit.mean_[0])
    draws = refit.impute(holes, n_draws=3, random_state=0)
    assert len(draws) == 3 and all(d.dtypes.equals(holes.dtypes) for d in draws)
    sample = refit.sample(500, random_state=0)
    assert sample.dtypes.equals(holes.dtypes)
    shares = sample["merchant"].value_counts(normalize=True).reindex(refit.schema_.levels["merchant"])
    np.testing.assert_allclose(shares.to_numpy(), refit.freq_[1], atol=0.07)


def test_impute_proba_gives_each_levels_conditional_probability():
    df = _table(25)
    with pytest.warns(DiscreteDataWarning, match="'rating'"):  # an integer column taken as real
        model = IndependentColumns().fit(df)
    probabilities = model.impute_proba(df.head(3))
    assert set(probabilities) == {"merchant", "size", "online", "country"}
    merchant = probabilities["merchant"]
    assert list(merchant.columns) == ["food", "fuel", "travel", "unused"]
    np.testing.assert_allclose(merchant.to_numpy(), np.tile(model.freq_[1], (3, 1)))
    np.testing.assert_allclose(merchant.sum(axis=1), 1.0)


def test_a_model_that_does_not_model_a_type_names_the_columns_and_who_does():
    from skgenerative import PPCADensity

    df = _table(30)
    with pytest.raises(ValueError, match=r"PPCADensity models .* columns only.*'merchant' \(categorical\)"):
        PPCADensity(1).fit(df)


def test_numeric_frames_keep_working_and_come_back_as_frames():
    from skgenerative import GaussianMixtureDensity

    rng = np.random.RandomState(0)
    df = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50).astype(np.float32)})
    gmm = GaussianMixtureDensity(1, random_state=0).fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "X does not have valid feature names"
        np.testing.assert_array_equal(gmm.score_samples(df), gmm.score_samples(df.to_numpy()))
    sample = gmm.sample(5, random_state=0)
    assert isinstance(sample, pd.DataFrame) and sample.dtypes.equals(df.dtypes)
    holes = df.copy()
    holes.loc[3, "a"] = np.nan
    filled = GaussianMixtureDensity(1, random_state=0).fit(holes).impute(holes)
    assert isinstance(filled, pd.DataFrame) and filled.dtypes.equals(df.dtypes)
    assert filled["b"].equals(holes["b"])


def test_filled_bool_and_integer_columns_get_their_fitted_dtype_back():
    """NaN turns a bool column into object and an int one into float; filled, they return."""
    frame = pd.DataFrame({"flag": [True, False, True, False], "n": np.array([1, 2, 3, 4], dtype=np.int64),
                          "x": [0.5, 1.5, 2.5, 3.5]})
    schema = TableSchema.infer(frame)
    holes = frame.astype({"flag": object, "n": np.float64})
    holes.loc[1, "flag"], holes.loc[2, "n"] = np.nan, np.nan
    filled = frame.copy()
    out = schema.fill_frame(holes, filled)
    assert out.dtypes.equals(frame.dtypes) and out.equals(frame)
    # a fractional fill (a conditional mean of a count) keeps the float column
    filled = filled.astype({"n": np.float64})
    filled.loc[2, "n"] = 2.5
    assert schema.fill_frame(holes, filled)["n"].dtype == np.float64
