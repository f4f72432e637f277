"""BernoulliRBM on tables: binary columns as bits, categorical columns as softmax units.

Exact answers by enumeration: every visible level combination of a tiny model is
listed as a DataFrame row, its one-hot units written out by hand, and
``log Z``, the scores, the likelihood gradient and AIS are checked against the
brute-force sums.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp
from sklearn.model_selection import KFold, cross_val_score

from skgenerative import BernoulliRBM
from skgenerative.rbm import (
    VisibleBlocks,
    bernoulli,
    cd_gradient,
    free_energy,
    gibbs_from_hidden,
    hidden_means,
    log_partition_exact,
    momentum_step_,
)

LEVELS = {"c": ["a", "b", "c", "unused"], "o": ["lo", "mid", "hi"]}


def _table(n=200, seed=0):
    rng = np.random.RandomState(seed)
    z = rng.randint(3, size=n)
    flip = rng.uniform(size=n) < 0.1
    return pd.DataFrame({
        "x": ((z == 0) ^ flip).astype(float),
        "c": pd.Categorical(np.array(["a", "b", "c"])[z], categories=LEVELS["c"]),
        "b": (z == 1) ^ (rng.uniform(size=n) < 0.1),
        "o": pd.Categorical(np.array(LEVELS["o"])[(z + flip) % 3], categories=LEVELS["o"], ordered=True),
    })


def _all_rows(df):
    """Every visible configuration of the table, as DataFrame rows."""
    combos = itertools.product([0.0, 1.0], LEVELS["c"], [False, True], LEVELS["o"])
    return pd.DataFrame(list(combos), columns=df.columns).astype(df.dtypes.to_dict())


def _units_by_hand(rows):
    """The visible units of rows: x, one-hot of c (4), b, one-hot of o (3)."""
    c = np.eye(4)[[LEVELS["c"].index(v) for v in rows["c"]]]
    o = np.eye(3)[[LEVELS["o"].index(v) for v in rows["o"]]]
    return np.column_stack([rows["x"].to_numpy(float), c, rows["b"].to_numpy(float), o])


def _hidden_states(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=float)


def _brute_log_z(rbm, V):
    W, b, c = rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_
    H = _hidden_states(W.shape[0])
    return float(logsumexp(H @ W @ V.T + (V @ b)[None] + (H @ c)[:, None]))


def _fit(rbm, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rbm.fit(X)


@pytest.fixture(scope="module", params=[3, 7], ids=["hidden-enumerated", "visible-enumerated"])
def tiny(request):
    # 2**3 = 8 < 48 visible states: log Z sums over h; 2**7 = 128 > 48: over v
    df = _table()
    rbm = _fit(BernoulliRBM(n_components=request.param, max_iter=30, batch_size=10, random_state=0,
                            dtype="float64"), df)
    return rbm, df


def test_layout_is_bits_and_softmax_blocks(tiny):
    rbm, df = tiny
    layer = rbm._visible_layer()
    assert isinstance(layer, VisibleBlocks) and layer.n_units == 9 and layer.n_states == 2 * 4 * 2 * 3
    assert [type(block).__name__ for block in layer.blocks] == [
        "BernoulliVisible", "SoftmaxVisible", "BernoulliVisible", "SoftmaxVisible"]
    assert rbm.components_.shape == (rbm.n_components, 9)
    np.testing.assert_array_equal(rbm._visible_units(torch.as_tensor(rbm._validate_X(df.head(5), reset=False))).numpy(),
                                  _units_by_hand(df.head(5)))


def test_exact_log_partition_is_the_brute_force_sum(tiny):
    rbm, df = tiny
    V = _units_by_hand(_all_rows(df))
    assert rbm.log_partition_method_ == "exact"
    assert rbm.log_partition_ == pytest.approx(_brute_log_z(rbm, V), rel=1e-12)


def test_scores_are_exact_and_sum_to_one_over_every_configuration(tiny):
    rbm, df = tiny
    rows = _all_rows(df)
    V = _units_by_hand(rows)
    W, b, c = rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_
    H = _hidden_states(W.shape[0])
    log_p = logsumexp(H @ W @ V.T + (V @ b)[None] + (H @ c)[:, None], axis=0) - _brute_log_z(rbm, V)
    scores = rbm.score_samples(rows)
    np.testing.assert_allclose(scores, log_p, rtol=1e-10)
    assert math.isclose(np.exp(scores).sum(), 1.0, rel_tol=1e-12)
    # an unused category has probability mass, small (it was never seen)
    unused = rows["c"] == "unused"
    assert np.exp(scores[unused]).sum() < 0.05


def test_ais_agrees_with_the_exact_log_partition():
    df = _table(300, seed=1)
    kwargs = dict(n_components=6, max_iter=40, batch_size=10, random_state=0, dtype="float64")
    exact = _fit(BernoulliRBM(**kwargs), df)
    ais = _fit(BernoulliRBM(partition_method="ais", n_ais_chains=200, n_ais_temperatures=1000, **kwargs), df)
    assert ais.log_partition_method_ == "ais" and ais.log_partition_std_ > 0
    assert abs(ais.log_partition_ - exact.log_partition_) < 4 * ais.log_partition_std_ + 0.02
    np.testing.assert_allclose(ais.components_, exact.components_)  # same training, only log Z differs


def test_exact_likelihood_gradient_is_the_cd_gradient_at_the_model_distribution(tiny):
    """``d mean log p(v_data) = <q v^T>_data - sum_v p(v) q(v) v^T``, autograd against enumeration."""
    rbm, df = tiny
    layer = rbm._visible_layer()
    data = torch.as_tensor(_units_by_hand(df.head(30)))
    states = layer.states(torch.arange(layer.n_states), torch.float64)
    params = [torch.tensor(a, requires_grad=True) for a in
              (rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_)]
    log_z = torch.logsumexp(-free_energy(states, *params, layer), 0)
    objective = (-free_energy(data, *params, layer)).mean() - log_z
    autograd = torch.autograd.grad(objective, params)
    W, b, c = (p.detach() for p in params)
    p = torch.softmax(-free_energy(states, W, b, c, layer), 0)
    q_data, q_model = hidden_means(data, W, c), hidden_means(states, W, c)
    exact = (q_data.T @ data / 30 - (q_model * p[:, None]).T @ states,
             data.mean(0) - p @ states, q_data.mean(0) - p @ q_model)
    for mine, reference in zip(exact, autograd):
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-10, atol=1e-13)
    # cd_gradient with the model term at a sample in the exact proportions agrees to its rounding
    counts = np.round(p.numpy() * 100000).astype(int)
    v_model = torch.repeat_interleave(states, torch.as_tensor(counts), dim=0)
    ours = cd_gradient(data, v_model, W, c)
    for mine, reference in zip((ours.weights, ours.visible_bias, ours.hidden_bias), exact):
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), atol=layer.n_states * 1e-5)


@pytest.mark.parametrize("persistent", [True, False])
def test_training_step_on_a_table_is_the_tested_functions(persistent):
    """One update of the estimator on one-hot units, replayed with the pure functions."""
    df = _table(40, seed=3)
    rbm = _fit(BernoulliRBM(n_components=4, max_iter=0, persistent=persistent, cd_steps=2,
                            random_state=0, dtype="float64"), df)
    X = torch.as_tensor(rbm._validate_X(df, reset=False))
    units = rbm._training_data(X)
    np.testing.assert_array_equal(units.numpy(), _units_by_hand(df))
    rbm._start_training(units, 1)
    state = rbm._cd
    (W, b, c), velocity = (p.clone() for p in state.params), [v.clone() for v in state.velocity]
    chains = None if state.chains is None else state.chains.clone()
    replay = torch.Generator().set_state(state.generator.get_state())
    batch = units[:20]
    lr = rbm._step_size()
    rbm._train_step(batch, state.generator)
    layer = rbm._visible_layer()
    if persistent:
        v_model = gibbs_from_hidden(chains, W, b, c, replay, 2, layer)
    else:
        v_model = gibbs_from_hidden(bernoulli(hidden_means(batch, W, c), replay), W, b, c, replay, 2, layer)
    # the model's draws are valid states: one level per categorical block
    assert torch.equal(v_model[:, 1:5].sum(1), torch.ones(20, dtype=v_model.dtype))
    assert torch.equal(v_model[:, 6:9].sum(1), torch.ones(20, dtype=v_model.dtype))
    momentum_step_((W, b, c), velocity, cd_gradient(batch, v_model, W, c), lr, 0.5, 1e-4)
    for ours, replayed in zip(state.params, (W, b, c)):
        assert torch.equal(ours, replayed)


def test_dataframes_in_and_out_keep_their_category_dtypes(tiny):
    rbm, df = tiny
    sample = rbm.sample(200, random_state=0)
    assert isinstance(sample, pd.DataFrame) and sample.dtypes.equals(df.dtypes)
    assert list(sample["c"].cat.categories) == LEVELS["c"] and sample["o"].cat.ordered
    assert not sample.isna().any().any()
    stepped = rbm.gibbs(df.head(4), random_state=0)
    assert isinstance(stepped, pd.DataFrame) and stepped.dtypes.equals(df.dtypes)
    assert rbm.transform(df.head(4)).shape == (4, rbm.n_components)
    # rows of levels as an object array score as the frame does
    with pytest.warns(UserWarning, match="X does not have valid feature names"):  # sklearn's
        by_position = rbm.score_samples(df.head(6).astype(object).to_numpy())
    np.testing.assert_allclose(by_position, rbm.score_samples(df.head(6)))


def test_sample_draws_the_exact_distribution(tiny):
    rbm, df = tiny
    rows = _all_rows(df)
    p = np.exp(rbm.score_samples(rows))
    sample = rbm.set_params(burn_in=200).sample(4000, random_state=1)
    rbm.set_params(burn_in=1000)
    # level frequencies of c against the exact marginal
    exact = np.array([p[(rows["c"] == level).to_numpy()].sum() for level in LEVELS["c"]])
    shares = sample["c"].value_counts(normalize=True).reindex(LEVELS["c"]).to_numpy()
    np.testing.assert_allclose(shares, exact, atol=0.04)


def _with_an_unseen_level(df):
    """The first three rows, the second with a level of 'o' not seen in fit."""
    rows = df.head(3).copy()
    rows["o"] = rows["o"].astype(str).astype(object)
    rows.loc[rows.index[1], "o"] = "extreme"
    return rows


def test_an_unseen_level_is_summed_out_exactly_and_penalised(tiny):
    rbm, df = tiny
    rows = _with_an_unseen_level(df)
    with pytest.warns(UserWarning, match="'o'.*'extreme'"):
        scores = rbm.score_samples(rows)
    completions = pd.concat([rows.iloc[[1]].assign(o=level) for level in LEVELS["o"]])
    completions["o"] = pd.Categorical(completions["o"], categories=LEVELS["o"], ordered=True)
    completions = completions.astype(df.dtypes.to_dict())
    marginal = logsumexp(rbm.score_samples(completions))
    penalty = -math.log(len(df) + 3 + 1)
    assert scores[1] == pytest.approx(marginal + penalty, rel=1e-12)
    np.testing.assert_allclose(scores[[0, 2]], rbm.score_samples(df.head(3))[[0, 2]], rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="gibbs.*'o'"):
            rbm.gibbs(rows)
        assert np.isfinite(rbm.transform(rows)).all()


def test_a_level_only_in_a_test_fold_does_not_crash_cross_validation():
    df = _table(90, seed=4)
    df["c"] = df["c"].astype(str).astype(object)
    df.loc[df.index[-2:], "c"] = "rare"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(BernoulliRBM(n_components=3, max_iter=5, random_state=0), df, cv=KFold(3))
    assert np.isfinite(scores).all()


def test_columns_without_a_unit_are_named_and_binarize_touches_real_columns_only():
    df = _table(50)
    df["n"] = np.arange(50)
    with pytest.raises(ValueError, match=r"BernoulliRBM models .*'n' \(count\)"):
        BernoulliRBM(column_types={"n": "count"}).fit(df)
    with pytest.raises(ValueError, match=r"'n'.*values in \[0, 1\]"):
        _fit(BernoulliRBM(n_components=2, max_iter=1, binarize=None), df)  # 'n' is real, outside [0, 1]
    with pytest.warns(UserWarning, match=r"1 real column\(s\).*'n' in \[0, 49\] at 24.5"):
        default = BernoulliRBM(n_components=2, max_iter=1, random_state=0).fit(df)
    assert np.isnan(default.binarize_threshold_[:4]).all() and default.binarize_threshold_[4] == 24.5
    rbm = _fit(BernoulliRBM(n_components=2, max_iter=1, binarize=10.5, random_state=0), df)
    units = rbm._visible_units(torch.as_tensor(rbm._validate_X(df, reset=False)))
    assert torch.equal(units[:, -1], torch.as_tensor((df["n"] > 10.5).to_numpy(float)))
    assert torch.equal(units[:, 5], torch.as_tensor(df["b"].to_numpy(float)))  # binary codes kept


def test_a_numeric_array_is_unchanged():
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(60, 5)) < 0.4).astype(float)
    a = _fit(BernoulliRBM(n_components=3, max_iter=3, random_state=0), X)
    assert type(a._visible_layer()).__name__ == "BernoulliVisible"
    assert isinstance(a.sample(2, random_state=0), np.ndarray)
    assert isinstance(a.gibbs(X[:2], random_state=0), np.ndarray)
    assert a.log_partition_ == pytest.approx(log_partition_exact(
        *(torch.as_tensor(t) for t in (a.components_, a.intercept_visible_, a.intercept_hidden_))), rel=1e-12)


# ------------------------------------------------------------------ explain
CHOICES = {"x": [0.0, 1.0], "c": LEVELS["c"], "b": [False, True], "o": LEVELS["o"]}


def _unnormalised_log_prob(rbm, rows):
    """``log sum_h exp(-E(v, h))`` of rows by enumerating the hidden states (``log Z`` cancels)."""
    V = _units_by_hand(rows)
    W, b, c = rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_
    H = _hidden_states(W.shape[0])
    return logsumexp(H @ W @ V.T + (V @ b)[None] + (H @ c)[:, None], axis=0)


def _variants(row, df, **choices):
    """Every row with the given columns set to each combination of the given values."""
    names = list(choices)
    rows = [row.assign(**dict(zip(names, combo))) for combo in itertools.product(*choices.values())]
    return pd.concat(rows).astype(df.dtypes.to_dict())


def test_explain_conditions_each_column_on_its_levels_by_brute_force(tiny):
    """``log p(x_j | x_-j) = log p~(x) - log sum_s p~(x with column j = s)`` over the column's
    states: a categorical column's levels (one value per column, not per one-hot unit)."""
    rbm, df = tiny
    rows = df.head(8)
    E = rbm.explain(rows)
    assert list(E.columns) == list(df.columns) and E.shape == (8, 4)
    for i, name in itertools.product(range(8), CHOICES):
        row = rows.iloc[[i]]
        own = _unnormalised_log_prob(rbm, row)[0]
        expected = own - logsumexp(_unnormalised_log_prob(rbm, _variants(row, df, **{name: CHOICES[name]})))
        assert E.iloc[i][name] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # and each column's conditional sums to one over its states
    for name, choices in CHOICES.items():
        variants = _variants(rows.iloc[[0]], df, **{name: choices})
        assert logsumexp(rbm.explain(variants)[name]) == pytest.approx(0.0, abs=1e-12)


def test_explain_sums_an_unseen_level_out_of_the_other_columns(tiny):
    rbm, df = tiny
    with pytest.warns(UserWarning, match="'o'.*'extreme'"):
        E = rbm.explain(_with_an_unseen_level(df))
    assert E.iloc[1]["o"] == pytest.approx(-math.log(len(df) + 3 + 1))
    row = df.iloc[[1]]
    for name in ("x", "c", "b"):
        joint = logsumexp(_unnormalised_log_prob(rbm, _variants(row, df, o=LEVELS["o"])))
        rest = logsumexp(_unnormalised_log_prob(rbm, _variants(row, df, o=LEVELS["o"], **{name: CHOICES[name]})))
        assert E.iloc[1][name] == pytest.approx(joint - rest, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(E.iloc[[0, 2]].to_numpy(), rbm.explain(df.head(3)).iloc[[0, 2]].to_numpy(), rtol=1e-12)
