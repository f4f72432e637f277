"""Level groups of GaussianMixtureDensity (issue #22): joint level tables per component.

Every number is checked against a brute-force enumeration of the fitted model
(weights, Gaussians, joint tables ``level_group_probabilities_``), against a model
fitted on the hand-joined column, or against sample frequencies.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from skgenerative import GaussianMixtureDensity
from skgenerative._level_groups import choose_level_groups
from skgenerative._sources import TensorSource

A_LEVELS, B_LEVELS = ["p", "q", "r"], ["u", "v"]


def _table(n=800, seed=0, unseen=True):
    """x numeric; a (3 levels) and b (2 levels) strongly dependent; (p, v) and (r, v)
    never occur when ``unseen`` (two unseen combinations share the "other" slot)."""
    rng = np.random.RandomState(seed)
    a = rng.randint(0, 3, n)
    b = np.where(rng.rand(n) < 0.85, a % 2, 1 - a % 2)
    if unseen:
        b[a != 1] = 0
    x = rng.normal(size=n) + 2.0 * (a == 1) + b
    return pd.DataFrame({"x": x, "a": pd.Categorical(np.array(A_LEVELS)[a], categories=A_LEVELS),
                         "b": pd.Categorical(np.array(B_LEVELS)[b], categories=B_LEVELS)})


def _with_holes(df, seed=1):
    rng = np.random.RandomState(seed)
    out = df.copy()
    for column, share in (("x", 0.2), ("a", 0.3), ("b", 0.3)):
        out.loc[rng.rand(len(df)) < share, column] = np.nan
    return out


@pytest.fixture(scope="module")
def model():
    df = _table()
    return GaussianMixtureDensity(2, level_groups=[["a", "b"]], dtype="float64", random_state=0).fit(df), df


def _brute(model, row):
    """``log p(observed cells of row)`` by enumeration of components and combinations."""
    w, mu, cov = model.weights_, model.means_[:, 0], model.covariances_[:, 0, 0]
    table = model.level_group_probabilities_[0]  # (K, 3, 2)
    total = 0.0
    for k in range(len(w)):
        part = w[k] * (norm.pdf(row["x"], mu[k], np.sqrt(cov[k])) if pd.notna(row["x"]) else 1.0)
        t = table[k]
        if pd.notna(row["a"]):
            t = t[A_LEVELS.index(row["a"])][None]
        if pd.notna(row["b"]):
            t = t[:, B_LEVELS.index(row["b"])]
        total += part * t.sum()
    return np.log(total)


def test_joint_tables_are_distributions_with_a_finite_floor(model):
    m, _ = model
    table = m.level_group_probabilities_[0]
    assert table.shape == (2, 3, 2)
    np.testing.assert_allclose(table.sum((1, 2)), 1.0, rtol=1e-12)
    assert (table > 0).all()  # the unseen combination (r, v) keeps the floor
    assert m.level_groups_ == [("a", "b")]
    # the marginal tables of the members are the joint tables' margins
    np.testing.assert_allclose(m.level_probabilities_[0], table.sum(2), rtol=1e-12)
    np.testing.assert_allclose(m.level_probabilities_[1], table.sum(1), rtol=1e-12)


def test_score_samples_equal_enumeration_with_missing_members(model):
    m, df = model
    rows = pd.concat([df.iloc[:5], _with_holes(df).iloc[:60],
                      pd.DataFrame({"x": [0.3, np.nan, 1.0], "a": pd.Categorical(["r", "r", "p"], categories=A_LEVELS),
                                    "b": pd.Categorical(["v", np.nan, "v"], categories=B_LEVELS)})],
                     ignore_index=True)
    expected = np.array([_brute(m, r) for _, r in rows.iterrows()])
    got = m.score_samples(rows)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a fixed number of EM steps
@pytest.mark.parametrize("numeric_holes", [False, True])
def test_grouped_fit_equals_the_hand_joined_column(numeric_holes):
    df = _table(unseen=False)
    if numeric_holes:  # the E-step's rows with a missing Gaussian entry take another path
        df.loc[np.random.RandomState(5).rand(len(df)) < 0.3, "x"] = np.nan
    joined = pd.DataFrame({"x": df["x"], "ab": pd.Categorical(
        df["a"].astype(str) + df["b"].astype(str), categories=[a + b for a in A_LEVELS for b in B_LEVELS])})
    params = dict(n_components=2, init_params="random", dtype="float64", random_state=3, tol=1e-8, max_iter=50)
    grouped = GaussianMixtureDensity(level_groups=[["a", "b"]], **params).fit(df)
    plain = GaussianMixtureDensity(**params).fit(joined)
    assert grouped.n_iter_ == plain.n_iter_
    np.testing.assert_allclose(grouped.lower_bounds_, plain.lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(grouped.score_samples(df), plain.score_samples(joined), rtol=1e-9)
    np.testing.assert_allclose(grouped.level_group_probabilities_[0].reshape(2, 6), plain.level_probabilities_[0],
                               rtol=1e-8)
    # BIC counts the joint table: 5 free parameters per component instead of 2 + 1
    k = 2
    assert grouped._layout.n_parameters(k, "full") == k - 1 + 2 * k + k * 5


def test_expected_counts_with_missing_members_equal_enumeration():
    import torch

    from skgenerative._level_groups import JointLevels

    block = JointLevels((0, 1), (3, 2), (0, 1, 2, 4), slice(0, 2))  # (1, v) -> index 3 and (2, v) unseen
    rng = np.random.RandomState(0)
    logits = torch.as_tensor(rng.normal(size=(2, 1, 5)))
    cells = torch.tensor([[0.0, 1.0], [np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [1.0, np.nan]],
                         dtype=torch.float64)
    resp = torch.as_tensor(rng.dirichlet([1, 1], size=5))
    stats = block.statistics(cells, resp, logits)
    probs = torch.exp(block.combination_log_probs(logits)).numpy()  # (K, 6)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(probs[:, 3], probs[:, 5])  # the unseen pair shares its slot evenly
    expected = np.zeros((2, 5))
    slot = [0, 1, 2, 4, 3, 4]
    count = np.zeros(2)
    for i, (a, b) in enumerate(cells.numpy()):
        if np.isnan(a) and np.isnan(b):
            continue
        count += resp[i].numpy()
        for k in range(2):
            consistent = [c for c in range(6) if (np.isnan(a) or c // 2 == a) and (np.isnan(b) or c % 2 == b)]
            total = probs[k, consistent].sum()
            for c in consistent:
                expected[k, slot[c]] += resp[i, k].item() * probs[k, c] / total
    np.testing.assert_allclose(stats.sums[:, 0].numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(stats.count[:, 0].numpy(), count, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a fixed number of EM steps
def test_em_with_missing_members_never_decreases_the_likelihood():
    df = _with_holes(_table(n=600))
    m = GaussianMixtureDensity(3, level_groups=[["a", "b"]], level_prior=1e-9, dtype="float64", tol=0.0,
                               max_iter=40, random_state=0).fit(df)
    bounds = np.asarray(m.lower_bounds_)
    assert len(bounds) >= 10
    assert (np.diff(bounds) >= -1e-10).all()


def test_sample_frequencies_match_the_joint_table(model):
    m, _ = model
    rows = m.sample(40000, random_state=0)
    freq = pd.crosstab(rows["a"], rows["b"]).reindex(index=A_LEVELS, columns=B_LEVELS, fill_value=0).to_numpy()
    freq = freq / freq.sum()
    expected = np.einsum("k,kab->ab", m.weights_, m.level_group_probabilities_[0])
    assert np.abs(freq - expected).max() < 4 * np.sqrt(expected * (1 - expected) / 40000).max()


def test_conditional_sample_matches_enumeration(model):
    m, _ = model
    rows = m.sample(20000, random_state=1, given={"a": "p"})
    assert (rows["a"] == "p").all()
    share = float((rows["b"] == "v").mean())
    joint = np.einsum("k,kb->b", m.weights_, m.level_group_probabilities_[0][:, 0])
    expected = joint[1] / joint.sum()
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / 20000)


def test_impute_proba_and_impute_equal_enumeration(model):
    m, df = model
    rows = _with_holes(df).iloc[:40].reset_index(drop=True)
    proba = m.impute_proba(rows)
    for column, levels in (("a", A_LEVELS), ("b", B_LEVELS)):
        for i, row in rows.iterrows():
            without = row.copy()
            without[column] = np.nan
            base = _brute(m, without)
            expected = []
            for level in levels:
                filled = without.copy()
                filled[column] = level
                expected.append(np.exp(_brute(m, filled) - base))
            np.testing.assert_allclose(proba[column].iloc[i].to_numpy(), expected, rtol=1e-9, atol=1e-12)
    # impute: each missing member's most probable level given the row (with the other member as observed)
    filled = m.impute(rows)
    for i, row in rows.iterrows():
        for column, levels in (("a", A_LEVELS), ("b", B_LEVELS)):
            if pd.isna(row[column]):
                scores = []
                for level in levels:
                    candidate = row.copy()
                    candidate[column] = level
                    other = "b" if column == "a" else "a"
                    candidate[other] = np.nan if pd.isna(row[other]) else row[other]
                    scores.append(_brute(m, candidate))
                assert filled.loc[i, column] == levels[int(np.argmax(scores))]


def test_explain_is_the_exact_leave_one_out_conditional(model):
    m, df = model
    rows = _with_holes(df).iloc[:30].reset_index(drop=True)
    got = m.explain(rows)
    for i, row in rows.iterrows():
        full = _brute(m, row)
        for column in ("x", "a", "b"):
            if pd.isna(row[column]):
                assert np.isnan(got.loc[i, column])
                continue
            without = row.copy()
            without[column] = np.nan
            np.testing.assert_allclose(got.loc[i, column], full - _brute(m, without), rtol=1e-9, atol=1e-9)


def test_rows_score_alike_in_any_batch_and_after_pickling(model):
    m, df = model
    rows = _with_holes(df)
    whole = m.score_samples(rows)
    order = np.random.RandomState(0).permutation(len(rows))[:97]
    np.testing.assert_array_equal(m.score_samples(rows.iloc[order]), whole[order])
    np.testing.assert_array_equal(m.score_samples(rows.iloc[[5]]), whole[[5]])
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.score_samples(rows), whole)


def test_refit_with_the_same_seed_is_identical():
    df = _with_holes(_table(n=400))
    one = GaussianMixtureDensity(2, level_groups="auto", random_state=0).fit(df)
    two = GaussianMixtureDensity(2, level_groups="auto", random_state=0).fit(df)
    np.testing.assert_array_equal(one.score_samples(df), two.score_samples(df))
    np.testing.assert_array_equal(one.sample(50, random_state=0)["a"], two.sample(50, random_state=0)["a"])


def test_float32_fit_gives_distributions():
    df = _with_holes(_table())
    m = GaussianMixtureDensity(2, level_groups=[["a", "b"]], dtype="float32", random_state=0).fit(df)
    table = m.level_group_probabilities_[0]
    np.testing.assert_allclose(table.sum((1, 2)), 1.0, rtol=1e-6)
    assert np.isfinite(m.score_samples(df)).all()


def _source(df):
    codes = np.column_stack([df[c].cat.codes.replace(-1, np.nan) if isinstance(df[c].dtype, pd.CategoricalDtype)
                             else df[c] for c in df.columns]).astype(np.float64)
    import torch

    return TensorSource(torch.as_tensor(codes))


def test_auto_rule_groups_dependent_columns_only():
    rng = np.random.RandomState(0)
    n = 2000
    a = rng.randint(0, 4, n)
    dependent = np.where(rng.rand(n) < 0.9, a % 3, rng.randint(0, 3, n))
    independent = rng.randint(0, 3, n)
    other = rng.randint(0, 2, n)
    df = pd.DataFrame({"x": rng.normal(size=n), "a": pd.Categorical(a), "d": pd.Categorical(dependent),
                       "i": pd.Categorical(independent), "o": pd.Categorical(other)})
    types = ["real", "categorical", "categorical", "categorical", "categorical"]
    counts = [0, 4, 3, 3, 2]
    assert choose_level_groups(_source(df), types, counts, row_bytes=64) == [(1, 2)]
    alone = df[["x", "i", "o"]]
    assert choose_level_groups(_source(alone), ["real", "categorical", "categorical"], [0, 3, 2], 64) == []
    assert choose_level_groups(_source(df[["x", "a"]]), ["real", "categorical"], [0, 4], 64) == []
    m = GaussianMixtureDensity(2, level_groups="auto", random_state=0).fit(df)
    assert m.level_groups_ == [("a", "d")]


def test_bad_groups_name_the_column():
    df = _table(n=100)
    with pytest.raises(ValueError, match="'x'"):
        GaussianMixtureDensity(1, level_groups=[["a", "x"]]).fit(df)
    with pytest.raises(ValueError, match="at least two"):
        GaussianMixtureDensity(1, level_groups=[["a"]]).fit(df)
    with pytest.raises(ValueError, match="not a column"):
        GaussianMixtureDensity(1, level_groups=[["a", "nope"]]).fit(df)


def test_dask_fit_equals_the_in_memory_fit():
    dd = pytest.importorskip("dask.dataframe")
    df = _with_holes(_table(n=600))
    params = dict(n_components=2, level_groups="auto", dtype="float64", random_state=0)
    memory = GaussianMixtureDensity(**params).fit(df)
    lazy = GaussianMixtureDensity(**params).fit(dd.from_pandas(df, npartitions=3))
    assert lazy.level_groups_ == memory.level_groups_ == [("a", "b")]
    np.testing.assert_allclose(lazy.level_group_probabilities_[0], memory.level_group_probabilities_[0], rtol=1e-6)
    np.testing.assert_allclose(lazy.score_samples(df), memory.score_samples(df), rtol=1e-6)


def test_one_component_imputes_and_draws_a_member_from_the_joint_table():
    # with one component the joint table is the only dependence between a and b
    df = _table(n=1000)
    m = GaussianMixtureDensity(1, level_groups=[["a", "b"]], random_state=0).fit(df)
    table = m.level_group_probabilities_[0][0]
    rows = pd.DataFrame({"x": [np.nan] * 3, "a": pd.Categorical(A_LEVELS, categories=A_LEVELS),
                         "b": pd.Categorical([np.nan] * 3, categories=B_LEVELS)})
    filled = m.impute(rows)
    assert list(filled["b"]) == [B_LEVELS[int(np.argmax(table[i]))] for i in range(3)]
    assert list(filled["b"]) == ["u", "v", "u"]
    draws = m.sample(20000, random_state=0, given={"a": "q"})
    expected = table[1, 1] / table[1].sum()
    assert abs(float((draws["b"] == "v").mean()) - expected) < 4 * np.sqrt(expected * (1 - expected) / 20000)


def test_binary_and_ordinal_members_score_and_impute_by_enumeration():
    rng = np.random.RandomState(0)
    n = 900
    size = rng.randint(0, 3, n)
    flag = (rng.rand(n) < np.array([0.1, 0.5, 0.9])[size])
    other = rng.randint(0, 2, n)
    df = pd.DataFrame({"size": pd.Categorical(np.array(["S", "M", "L"])[size], categories=["S", "M", "L"],
                                              ordered=True),
                       "flag": flag, "other": pd.Categorical(np.array(["x", "y"])[other])})
    m = GaussianMixtureDensity(2, level_groups="auto", dtype="float64", random_state=0).fit(df)
    assert m.level_groups_ == [("size", "flag")]
    assert m.schema_.types[:2] == ["ordinal", "binary"]
    table, other_table = m.level_group_probabilities_[0], m.level_probabilities_[2]
    rows = pd.DataFrame({"size": pd.Categorical(["S", None, "L", None], categories=["S", "M", "L"], ordered=True),
                         "flag": pd.array([True, False, None, None], dtype="boolean"),
                         "other": pd.Categorical(["x", "y", None, "x"])})
    expected = []
    for s_, f_, o_ in [(0, 1, 0), (None, 0, 1), (2, None, None), (None, None, 0)]:
        t = table
        t = t[:, [s_]] if s_ is not None else t
        t = t[:, :, [f_]] if f_ is not None else t
        o = other_table[:, o_] if o_ is not None else np.ones(2)
        expected.append(np.log((m.weights_ * t.sum((1, 2)) * o).sum()))
    np.testing.assert_allclose(m.score_samples(rows), expected, rtol=1e-10)
    # the ordinal member's point imputation is the median of its conditional
    posterior = m.weights_[:, None] * table[:, :, 0] * other_table[:, 1][:, None]  # flag False, other y
    conditional = posterior.sum(0) / posterior.sum()
    median = int(np.searchsorted(np.cumsum(conditional), 0.5))
    assert m.impute(rows)["size"].iloc[1] == ["S", "M", "L"][median]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a fixed number of EM steps
def test_warm_start_keeps_the_groups():
    df = _with_holes(_table(n=500))
    m = GaussianMixtureDensity(2, level_groups="auto", warm_start=True, max_iter=5, level_prior=1e-9,
                               dtype="float64", random_state=0).fit(df)
    first, last = m.level_group_probabilities_[0].copy(), m.lower_bounds_[-1]
    m.fit(df)  # resumes EM from the first fit's joint tables
    assert m.level_groups_ == [("a", "b")]
    assert m.level_group_probabilities_[0].shape == first.shape
    assert m.lower_bounds_[0] >= last - 1e-10


def test_warm_start_on_rows_with_a_combination_new_to_the_groups():
    # GenerativeImputer's kept candidates resume on every cell after a fit with held-out
    # cells: a combination seen only now joins the shared slot instead of changing the layout
    df = _table(n=500)
    first = df[~((df["a"] == "q") & (df["b"] == "u"))]
    m = GaussianMixtureDensity(2, level_groups=[["a", "b"]], warm_start=True, dtype="float64", random_state=0)
    m.fit(first)
    slots = m._layout.groups[0][1].n_levels
    m.fit(df)
    assert m._layout.groups[0][1].n_levels == slots
    assert np.isfinite(m.score_samples(df)).all()
    np.testing.assert_allclose(m.level_group_probabilities_[0].sum((1, 2)), 1.0, rtol=1e-12)
    fresh = GaussianMixtureDensity(2, level_groups=[["a", "b"]], dtype="float64", random_state=0).fit(df)
    assert fresh._layout.groups[0][1].n_levels == slots + 1


def test_pooled_imputation_posteriors_equal_enumeration(model):
    # GenerativeImputer's mixed default reads the point and the level posteriors in one pass
    import torch

    m, df = model
    rows = _with_holes(df).iloc[:50].reset_index(drop=True)
    X = torch.as_tensor(m._validate_table(rows, reset=False)[0])
    both = m._point_with_level_probabilities(X, [1, 2]).numpy()
    separate = torch.cat(m._level_probabilities(X, [1, 2]), 1).numpy()
    np.testing.assert_allclose(both[:, 3:], separate, rtol=1e-12)
    for i, row in rows.iterrows():
        if pd.isna(row["a"]):
            base = _brute(m, row)
            expected = [np.exp(_brute(m, row.copy().set_axis(row.index).where(row.index != "a", level)) - base)
                        for level in A_LEVELS]
            np.testing.assert_allclose(separate[i, :3], expected, rtol=1e-9)
