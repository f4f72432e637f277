"""BernoulliRBM against exact answers: brute-force sums over every state, autograd
gradients, and statistics of Gibbs samples compared with exact probabilities; the
visible layers (binary, softmax, blocks of both) by the same brute force, and the
training update replayed with the pure functions those tests check."""

from __future__ import annotations

import warnings
from itertools import product

import numpy as np
import pytest
import torch
from scipy.special import expit, logsumexp
from scipy.stats import chi2
from sklearn.base import clone
from sklearn.datasets import load_digits

from skgenerative import BernoulliRBM
from skgenerative.rbm import (
    BernoulliVisible,
    SoftmaxVisible,
    VisibleBlocks,
    ais_betas,
    ais_log_partition,
    bernoulli,
    cd_gradient,
    cd_gradients,
    free_energy,
    gibbs_from_hidden,
    hidden_free_energy,
    hidden_means,
    log_partition_exact,
    momentum_step_,
)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Run this module's many tiny matrix products on one thread.

    They gain nothing from threads, and on a loaded machine every multi-threaded
    BLAS call can stall for milliseconds waiting for a descheduled thread (100x
    the work itself). The previous setting is restored afterwards.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def all_states(n: int) -> np.ndarray:
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def random_parameters(n_hidden, n_visible, scale=1.0, seed=0):
    rng = np.random.RandomState(seed)
    return (
        scale * rng.normal(size=(n_hidden, n_visible)),
        rng.normal(size=n_visible),
        rng.normal(size=n_hidden),
    )


def brute_force_log_z(W, b, c) -> float:
    """log sum over every (v, h) of exp(h W v + b.v + c.h)."""
    V, H = all_states(W.shape[1]), all_states(W.shape[0])
    neg_energy = H @ W @ V.T + (V @ b)[None, :] + (H @ c)[:, None]
    return float(logsumexp(neg_energy))


def exact_visible_probabilities(rbm) -> tuple[np.ndarray, np.ndarray]:
    """Every visible state and its probability, by brute force over (v, h)."""
    W, b, c = rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_
    V, H = all_states(W.shape[1]), all_states(W.shape[0])
    neg_energy = H @ W @ V.T + (V @ b)[None, :] + (H @ c)[:, None]
    log_p = logsumexp(neg_energy, axis=0) - logsumexp(neg_energy)
    return V, np.exp(log_p)


def prototype_data(n=400, n_features=8, flip=0.1, seed=0):
    """Rows near three random binary prototypes (a multimodal distribution)."""
    rng = np.random.RandomState(seed)
    prototypes = rng.uniform(size=(3, n_features)) < 0.5
    X = prototypes[rng.randint(3, size=n)]
    return np.logical_xor(X, rng.uniform(size=X.shape) < flip).astype(np.float64)


def as_tensors(*arrays):
    return [torch.as_tensor(a, dtype=torch.float64) for a in arrays]


# ------------------------------------------------------------------ mathematics
@pytest.mark.parametrize("n_hidden, n_visible", [(8, 10), (7, 4), (1, 1), (5, 5)])
def test_log_partition_exact_matches_brute_force(n_hidden, n_visible):
    # (7, 4) enumerates the visible layer, the others the hidden one
    W, b, c = random_parameters(n_hidden, n_visible, scale=1.5)
    expected = brute_force_log_z(W, b, c)
    assert log_partition_exact(*as_tensors(W, b, c)) == pytest.approx(expected, rel=1e-12, abs=1e-10)


def test_log_partition_exact_is_stable_for_huge_parameters():
    W, b, c = random_parameters(6, 9, scale=300.0, seed=1)
    b, c = 300 * b, 300 * c
    expected = brute_force_log_z(W, b, c)
    assert expected > 1000  # exp would overflow float64
    assert log_partition_exact(*as_tensors(W, b, c)) == pytest.approx(expected, rel=1e-12)


def test_free_energies_match_sums_over_the_other_layer():
    W, b, c = random_parameters(5, 7, scale=2.0, seed=2)
    V, H = all_states(7), all_states(5)
    neg_energy = H @ W @ V.T + (V @ b)[None, :] + (H @ c)[:, None]
    np.testing.assert_allclose(-free_energy(*as_tensors(V, W, b, c)).numpy(), logsumexp(neg_energy, axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        -hidden_free_energy(*as_tensors(H, W, b, c)).numpy(), logsumexp(neg_energy, axis=1), rtol=1e-12
    )


def test_cd_gradients_are_the_free_energy_gradient():
    W, b, c = as_tensors(*random_parameters(6, 9, seed=3))
    rng = np.random.RandomState(3)
    v_data, v_model = as_tensors(rng.uniform(size=(13, 9)) < 0.4, rng.uniform(size=(7, 9)) < 0.6)
    params = [p.clone().requires_grad_(True) for p in (W, b, c)]
    objective = -free_energy(v_data, *params).mean() + free_energy(v_model, *params).mean()
    autograd = torch.autograd.grad(objective, params)
    for ours, reference in zip(cd_gradients(v_data, v_model, W, c), autograd):
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-12, atol=1e-14)


def test_ais_betas_schedule():
    betas = ais_betas(1000).numpy()
    assert betas.shape == (1001,) and betas[0] == 0.0 and betas[-1] == 1.0
    assert (np.diff(betas) > 0).all()
    # most of the steps anneal the last tenth, as in Salakhutdinov & Murray
    assert 0.6 < np.mean(betas >= 0.9) < 0.75


def test_ais_is_unbiased_on_a_tiny_model():
    W, b, c = as_tensors(*random_parameters(5, 7, scale=1.5, seed=4))
    exact = log_partition_exact(W, b, c)
    generator = torch.Generator().manual_seed(0)
    base = torch.zeros(7, dtype=torch.float64)
    estimate, std_error = ais_log_partition(W, b, c, base, n_chains=4000, n_temperatures=100, generator=generator)
    assert 0 < std_error < 0.05
    assert abs(estimate - exact) < 4 * std_error + 1e-3


# ------------------------------------------------------------ the fitted model
@pytest.fixture(scope="module")
def tiny():
    """A model with 10 visible and 8 hidden units fitted to multimodal data."""
    X = prototype_data(n_features=10)
    return BernoulliRBM(n_components=8, random_state=0).fit(X), X


def test_fitted_log_partition_is_the_brute_force_sum(tiny):
    rbm, _ = tiny
    assert rbm.log_partition_method_ == "exact" and rbm.log_partition_std_ == 0.0
    expected = brute_force_log_z(rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_)
    assert rbm.log_partition_ == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_hidden", [8, 12])
def test_probabilities_of_all_visible_states_sum_to_one(tiny, n_hidden):
    X = tiny[1] if n_hidden == 8 else prototype_data(n_features=6)
    rbm = tiny[0] if n_hidden == 8 else BernoulliRBM(n_components=n_hidden, max_iter=10, random_state=0).fit(X)
    V = all_states(X.shape[1])
    assert np.exp(rbm.score_samples(V)).sum() == pytest.approx(1.0, abs=1e-10)
    _, p = exact_visible_probabilities(rbm)
    np.testing.assert_allclose(rbm.score_samples(V), np.log(p), rtol=1e-10)


def test_transform_is_the_hidden_posterior(tiny):
    rbm, X = tiny
    expected = expit(X @ rbm.components_.T + rbm.intercept_hidden_)
    np.testing.assert_allclose(rbm.transform(X), expected, rtol=1e-12)


def test_ais_agrees_with_exact_on_digits():
    digits = load_digits().data > 7  # binarised 8x8 digits
    rbm = BernoulliRBM(n_components=16, random_state=0).fit(digits)
    ais = clone(rbm).set_params(partition_method="ais").fit(digits)
    np.testing.assert_array_equal(ais.components_, rbm.components_)  # same training
    assert rbm.log_partition_method_ == "exact" and ais.log_partition_method_ == "ais"
    # the estimate is within 4 of its standard errors (about 0.04 nats here) of the
    # exact value, as in the other AIS tests; 1e-3 covers its float32 arithmetic
    assert 0 < ais.log_partition_std_ < 0.1
    assert abs(ais.log_partition_ - rbm.log_partition_) < 4 * ais.log_partition_std_ + 1e-3
    # deterministic given random_state
    assert clone(ais).fit(digits).log_partition_ == ais.log_partition_


def test_sample_reproduces_the_exact_distribution(tiny):
    rbm, _ = tiny
    small = BernoulliRBM(n_components=4, max_iter=30, burn_in=200, random_state=0).fit(prototype_data(n_features=6))
    V, p = exact_visible_probabilities(small)
    draws = small.sample(20000, random_state=1)
    assert np.isin(draws, (0.0, 1.0)).all()
    codes = (draws @ (1 << np.arange(6))).astype(int)
    counts = np.bincount(codes, minlength=64)
    expected = 20000 * p
    keep = expected >= 5  # chi-square over states with enough expected counts, the rest pooled
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    statistic = ((observed - expected) ** 2 / expected).sum()
    assert chi2.sf(statistic, len(observed) - 1) > 1e-4


def test_long_gibbs_chains_reproduce_exact_marginals(tiny):
    rbm, _ = tiny
    V, p = exact_visible_probabilities(rbm)
    marginals = p @ V
    v = np.tile([[1.0] * 5 + [0.0] * 5], (2000, 1))  # every chain starts at one state
    total = np.zeros(10)
    for step in range(300):
        v = rbm.gibbs(v, random_state=step)
        if step >= 100:
            total += v.mean(0)
    observed = total / 200
    # chains are correlated in time; 200 steps of 2000 chains give at least
    # 2000 effective draws, so 5 standard errors of that is a safe bound
    tolerance = 5 * np.sqrt(marginals * (1 - marginals) / 2000)
    np.testing.assert_array_less(np.abs(observed - marginals), tolerance)


@pytest.mark.parametrize("persistent, cd_steps", [(True, 1), (False, 1), (False, 3)])
def test_cd_training_raises_the_exact_log_likelihood(persistent, cd_steps):
    X = prototype_data(n_features=10, seed=5)
    params = dict(n_components=8, persistent=persistent, cd_steps=cd_steps, random_state=0)
    before = BernoulliRBM(max_iter=0, **params).fit(X).score(X)
    after = BernoulliRBM(**params).fit(X).score(X)
    # the data's own empirical distribution bounds any model's training likelihood
    _, counts = np.unique(X, axis=0, return_counts=True)
    empirical = np.sum(counts * np.log(counts / len(X))) / len(X)
    assert before + 1.0 < after <= empirical


def test_partial_fit_streams_minibatches():
    X = prototype_data(n=600, n_features=10, seed=6)
    rbm = BernoulliRBM(n_components=8, random_state=0)
    V = all_states(10)
    scores = []
    for epoch in range(40):
        for chunk in np.array_split(X, 20):
            rbm.partial_fit(chunk)
        # the cached parameter tensors follow every update
        assert np.exp(rbm.score_samples(V)).sum() == pytest.approx(1.0, abs=1e-10)
        scores.append(rbm.score(X))
    # 30 rows a call in minibatches of 20: two updates a call
    assert rbm.n_samples_seen_ == 40 * 600 and rbm.n_updates_ == 40 * 40 and rbm.n_iter_ == 40 * 20
    np.testing.assert_allclose(rbm.visible_marginals_, X.mean(0))
    assert scores[-1] > scores[0] + 1.0
    with pytest.raises(ValueError, match="features"):
        rbm.partial_fit(X[:, :5])


def test_inputs_outside_unit_interval_are_binarised_with_a_warning_or_rejected():
    X = prototype_data(n_features=6)
    for bad in (X * 2, X - 0.5):
        with pytest.raises(ValueError, match=r"values in \[0, 1\].*binarize"):
            BernoulliRBM(n_components=3, max_iter=1, binarize=None).fit(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # binary data and probabilities: used as they are, silently
        fitted = BernoulliRBM(n_components=3, max_iter=2, random_state=0).fit(X)
        BernoulliRBM(n_components=3, max_iter=1).fit(0.3 + 0.4 * X)
    assert np.isnan(fitted.binarize_threshold_).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # a column fitted as it is stays in [0, 1]
        fitted.score_samples(X * 3)
    rng = np.random.RandomState(0)
    continuous = rng.normal(size=X.shape) + 3 * X
    # the default binarises what its units cannot take, at the middle of each column's range, and says so
    with pytest.warns(UserWarning, match=r"6 real column\(s\).*binarize='auto'.*'x0' in \["):
        auto = BernoulliRBM(n_components=3, max_iter=2, random_state=0).fit(continuous)
    middle = (continuous.min(0) + continuous.max(0)) / 2
    np.testing.assert_array_equal(auto.binarize_threshold_, middle)
    reference = BernoulliRBM(n_components=3, max_iter=2, random_state=0).fit((continuous > middle) * 1.0)
    np.testing.assert_array_equal(auto.components_, reference.components_)
    np.testing.assert_allclose(auto.score_samples(continuous), reference.score_samples(continuous > middle))
    # binarize=t: x > t, on fit and on every evaluation
    binarized = BernoulliRBM(n_components=3, max_iter=2, binarize=1.5, random_state=0).fit(continuous)
    reference = BernoulliRBM(n_components=3, max_iter=2, random_state=0).fit((continuous > 1.5) * 1.0)
    np.testing.assert_array_equal(binarized.components_, reference.components_)
    np.testing.assert_allclose(binarized.score_samples(continuous), reference.score_samples(continuous > 1.5))
    np.testing.assert_allclose(binarized.transform(continuous), reference.transform(continuous > 1.5))


def test_unlike_rows_are_outliers(tiny):
    rbm, X = tiny
    strange = 1.0 - X[:20]  # complements of typical rows
    assert (rbm.predict_outlier(strange) == -1).mean() > 0.9
    assert np.median(rbm.score_samples(strange)) < np.quantile(rbm.score_samples(X), 0.01)


def test_divergence_raises_a_clear_error():
    with pytest.raises(FloatingPointError, match="learning_rate"):
        BernoulliRBM(n_components=3, max_iter=3, learning_rate=1e308, momentum=0.9).fit(prototype_data(n_features=6))


def test_float32_scores_match_float64(tiny):
    rbm, X = tiny
    rbm32 = clone(rbm).set_params(dtype="float32").fit(X)
    V = all_states(10)
    assert np.exp(rbm32.score_samples(V).astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)


def test_exact_partition_refuses_huge_enumerations_before_training():
    X = np.zeros((3, 30))
    with pytest.raises(ValueError, match=r"2\*\*30 states"):
        BernoulliRBM(n_components=30, max_iter=1, partition_method="exact").fit(X)


def test_ais_partition_method_is_used_when_asked(tiny):
    rbm, X = tiny
    ais = clone(rbm).set_params(partition_method="ais").fit(X)
    assert ais.log_partition_method_ == "ais" and ais.log_partition_std_ > 0
    assert abs(ais.log_partition_ - rbm.log_partition_) < 4 * ais.log_partition_std_ + 0.05
    # scores differ from the exact model's by the constant gap in log Z only
    np.testing.assert_allclose(
        ais.score_samples(X) - rbm.score_samples(X), rbm.log_partition_ - ais.log_partition_, rtol=1e-9
    )


# ------------------------------------------------------- visible layers, by brute force
MIXED = VisibleBlocks([BernoulliVisible(2), SoftmaxVisible(3), SoftmaxVisible(2)])  # 4 * 3 * 2 states


def mixed_states() -> np.ndarray:
    """Every visible state of MIXED, listed by hand: two bits, a one-hot of 3, a one-hot of 2."""
    eye3, eye2 = np.eye(3), np.eye(2)
    return np.array(
        [[*bits, *eye3[i], *eye2[j]] for j in range(2) for i in range(3) for bits in product([0, 1], repeat=2)]
    )


def brute_force(W, b, c, V):
    """log Z and every visible state's log-probability over the listed states V."""
    neg_energy = all_states(W.shape[0]) @ W @ V.T + (V @ b)[None, :] + (all_states(W.shape[0]) @ c)[:, None]
    return float(logsumexp(neg_energy)), logsumexp(neg_energy, axis=0) - logsumexp(neg_energy)


def test_mixed_layer_enumerates_every_valid_state_once():
    states = MIXED.states(torch.arange(MIXED.n_states), torch.float64).numpy()
    assert MIXED.n_units == 7 and MIXED.n_states == 24
    assert {tuple(s) for s in states} == {tuple(s) for s in mixed_states()} and len(states) == 24
    # the log-normaliser is the log-sum over those states
    x = torch.as_tensor(np.random.RandomState(0).normal(size=(5, 7)) * 3)
    expected = logsumexp(x.numpy() @ states.T, axis=1)
    np.testing.assert_allclose(MIXED.log_normalizer(x).numpy(), expected, rtol=1e-12)
    # and the conditional mean is the gradient of the log-normaliser
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(MIXED.log_normalizer(x).sum(), x)
    np.testing.assert_allclose(MIXED.mean(x.detach()).numpy(), grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("n_hidden", [3, 6])
def test_mixed_layer_free_energies_and_exact_log_partition(n_hidden):
    # 2**3 = 8 <= 24 states: the hidden layer is enumerated; 2**6 = 64 > 24: the visible one
    W, b, c = random_parameters(n_hidden, 7, scale=1.5, seed=7)
    V, H = mixed_states(), all_states(n_hidden)
    log_z, _ = brute_force(W, b, c, V)
    assert log_partition_exact(*as_tensors(W, b, c), MIXED) == pytest.approx(log_z, rel=1e-12)
    neg_energy = H @ W @ V.T + (V @ b)[None, :] + (H @ c)[:, None]
    Wt, bt, ct = as_tensors(W, b, c)
    np.testing.assert_allclose(
        -free_energy(torch.as_tensor(V), Wt, bt, ct, MIXED).numpy(), logsumexp(neg_energy, axis=0), rtol=1e-12
    )
    np.testing.assert_allclose(
        -hidden_free_energy(torch.as_tensor(H), Wt, bt, ct, MIXED).numpy(), logsumexp(neg_energy, axis=1), rtol=1e-12
    )


def test_ais_is_unbiased_on_a_mixed_layer():
    W, b, c = as_tensors(*random_parameters(5, 7, scale=1.5, seed=8))
    exact = log_partition_exact(W, b, c, MIXED)
    data = torch.as_tensor(mixed_states()[np.random.RandomState(0).randint(24, size=200)])
    base = MIXED.base_rate_bias(data.mean(0), 200)
    estimate, std_error = ais_log_partition(
        W, b, c, base, n_chains=4000, n_temperatures=100, generator=torch.Generator().manual_seed(0), visible=MIXED
    )
    assert 0 < std_error < 0.05
    assert abs(estimate - exact) < 4 * std_error + 1e-3


def test_base_rate_models_reproduce_the_smoothed_marginals():
    n = 50
    marginals = torch.tensor([0.0, 1.0, 0.3, 0.2, 0.8, 0.0, 0.5, 0.5], dtype=torch.float64)
    layer = VisibleBlocks([BernoulliVisible(3), SoftmaxVisible(3), SoftmaxVisible(2)])
    b_A = layer.base_rate_bias(marginals, n)
    assert torch.isfinite(b_A).all()  # columns always 0 or always 1 included
    # half a pseudo-count per value: n + 1 for a bit, n + K/2 for K levels
    smoothed = torch.cat([
        (n * marginals[:3] + 0.5) / (n + 1), (n * marginals[3:6] + 0.5) / (n + 1.5), (n * marginals[6:] + 0.5) / (n + 1)
    ])
    np.testing.assert_allclose(layer.mean(b_A).numpy(), smoothed.numpy(), rtol=1e-12)


@pytest.mark.parametrize("visible", [None, MIXED], ids=["bernoulli", "mixed"])
def test_gibbs_chains_from_hidden_states_reach_the_exact_distribution(visible):
    n_visible = 6 if visible is None else 7
    W, b, c = as_tensors(*random_parameters(4, n_visible, scale=0.8, seed=9))
    layer = BernoulliVisible(6) if visible is None else visible
    V = layer.states(torch.arange(layer.n_states), torch.float64).numpy()
    _, log_p = brute_force(*(t.numpy() for t in (W, b, c)), V)
    generator = torch.Generator().manual_seed(0)
    h = torch.zeros(20000, 4, dtype=torch.float64)  # every chain starts at h = 0
    v = gibbs_from_hidden(h, W, b, c, generator, 30, visible)
    codes = {tuple(s): k for k, s in enumerate(V)}
    counts = np.bincount([codes[tuple(row)] for row in v.numpy()], minlength=len(V))
    expected = 20000 * np.exp(log_p)
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert chi2.sf(statistic, len(V) - 1) > 1e-4


def test_cd_gradient_on_a_mixed_layer_is_the_free_energy_gradient():
    W, b, c = as_tensors(*random_parameters(5, 7, seed=10))
    rng = np.random.RandomState(10)
    v_data, v_model = (torch.as_tensor(mixed_states()[rng.randint(24, size=m)]) for m in (11, 6))
    params = [p.clone().requires_grad_(True) for p in (W, b, c)]
    objective = -free_energy(v_data, *params, MIXED).mean() + free_energy(v_model, *params, MIXED).mean()
    autograd = torch.autograd.grad(objective, params)
    ours = cd_gradient(v_data, v_model, W, c)
    for mine, reference in zip((ours.weights, ours.visible_bias, ours.hidden_bias), autograd):
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-12, atol=1e-14)
    # the stacked rows and hidden means training passes in give the very same gradient
    v = torch.cat([v_data, v_model])
    given = cd_gradient(v_data, v_model, W, c, stacked=(v, hidden_means(v, W, c)))
    for mine, reference in zip(given, ours):
        assert torch.equal(mine, reference)


@pytest.mark.parametrize("momentum, decay", [(0.5, 1e-2), (0.0, 1e-2), (0.5, 0.0)])
def test_momentum_step_is_the_documented_update(momentum, decay):
    W, b, c = as_tensors(*random_parameters(5, 6, seed=11))
    rng = np.random.RandomState(11)
    v_data, v_model = as_tensors(rng.uniform(size=(8, 6)) < 0.5, rng.uniform(size=(4, 6)) < 0.5)
    gradient = cd_gradient(v_data, v_model, W, c)
    velocity = [torch.as_tensor(rng.normal(size=p.shape)) for p in (W, b, c)]
    params = [W.clone(), b.clone(), c.clone()]
    new_velocity = [v.clone() for v in velocity]
    momentum_step_(params, new_velocity, gradient, 0.1, momentum, decay)
    gradients = (gradient.weights, gradient.visible_bias, gradient.hidden_bias)
    for p, p0, u, u0, g, is_weight in zip(params, (W, b, c), new_velocity, velocity, gradients, (1, 0, 0)):
        if momentum == 0.0 and is_weight:  # no velocity kept for the weights
            expected = (1 - 0.1 * decay) * p0 + 0.1 * g
            np.testing.assert_array_equal(u.numpy(), u0.numpy())
        else:
            step = momentum * u0 + 0.1 * (g - decay * p0 * is_weight)
            np.testing.assert_allclose(u.numpy(), step.numpy(), rtol=1e-12, atol=1e-15)
            expected = p0 + step
        np.testing.assert_allclose(p.numpy(), expected.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("persistent, cd_steps", [(True, 1), (True, 2), (False, 2)])
def test_training_steps_are_the_tested_functions(persistent, cd_steps):
    """One update of the estimator, replayed with the pure functions on a copy of its stream."""
    X = torch.as_tensor(prototype_data(n=40, n_features=6, seed=12))
    params = dict(n_components=4, max_iter=0, persistent=persistent, cd_steps=cd_steps, random_state=0)
    rbm = BernoulliRBM(**params).fit(X.numpy())
    rbm._start_training(X, 1)
    state = rbm._cd
    (W, b, c), velocity = (p.clone() for p in state.params), [v.clone() for v in state.velocity]
    chains = None if state.chains is None else state.chains.clone()
    replay = torch.Generator().set_state(state.generator.get_state())
    batch = X[:20]
    lr = rbm._step_size()
    rbm._train_step(batch, state.generator)
    if persistent:
        v_model = gibbs_from_hidden(chains, W, b, c, replay, cd_steps)
        chains = bernoulli(hidden_means(torch.cat([batch, v_model]), W, c)[20:], replay)
    else:
        v_model = gibbs_from_hidden(bernoulli(hidden_means(batch, W, c), replay), W, b, c, replay, cd_steps)
    momentum_step_((W, b, c), velocity, cd_gradient(batch, v_model, W, c), lr, 0.5, 1e-4)
    for ours, replayed in zip(state.params, (W, b, c)):
        assert torch.equal(ours, replayed)
    if persistent:
        assert torch.equal(state.chains, chains)
    assert rbm.n_updates_ == 1


def test_layers_check_their_values():
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        BernoulliVisible(2).check_values(np.array([[0.0, 1.5]]))
    SoftmaxVisible(3).check_values(np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]))
    with pytest.raises(ValueError, match="one-hot"):
        SoftmaxVisible(3).check_values(np.array([[1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="one-hot"):
        MIXED.check_values(np.array([[0, 1, 1, 0, 0, 0, 1.0], [1, 1, 0, 1, 0, 1, 1.0]]))


def test_history_and_the_linear_step_size_schedule():
    X = prototype_data(n=100, n_features=6, seed=13)
    rbm = BernoulliRBM(n_components=3, max_iter=4, batch_size=20, random_state=0).fit(X)
    # 5 updates an epoch, 20 in all: the step at each epoch's first update
    assert [h["learning_rate"] for h in rbm.history_] == [0.05 * (1 - 5 * e / 20) for e in range(4)]
    assert [h["epoch"] for h in rbm.history_] == [0, 1, 2, 3] and rbm.n_iter_ == 4
    rbm.partial_fit(X)
    assert rbm.history_[-1]["learning_rate"] == 0.05 and rbm.history_[-1]["epoch"] == 4


def test_verbose_prints_the_reconstruction_error(capsys):
    BernoulliRBM(n_components=3, max_iter=2, verbose=2, random_state=0).fit(prototype_data(n=60, n_features=6))
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if "] epoch " in line]
    assert len(lines) == 2 and "reconstruction error" in lines[0]
    assert any(line.startswith("[BernoulliRBM] done: 2 epochs in ") for line in out)


def test_fit_only_fits_and_log_z_is_computed_once_on_first_use(monkeypatch):
    """AIS runs when a score needs it, once, with the seed drawn at fit; pickles keep it."""
    import pickle

    import skgenerative.rbm as rbm_module

    calls = []
    real = rbm_module.ais_log_partition

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(rbm_module, "ais_log_partition", counted)
    digits = load_digits().data > 7
    rbm = BernoulliRBM(n_components=24, max_iter=3, n_ais_temperatures=300, random_state=0).fit(digits)
    assert calls == [] and rbm.log_partition_method_ == "ais"
    before = dict(vars(rbm))
    scores = rbm.score_samples(digits[:50])
    assert calls == [1]
    assert rbm.offset_ == pytest.approx(np.quantile(rbm.score_samples(digits), rbm.contamination))
    assert calls == [1]  # cached: the offset reuses it
    assert set(vars(rbm)) == set(before)  # prediction adds no attribute
    # the same seed at fit gives the same estimate, whenever it is computed
    again = clone(rbm).fit(digits)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(again)).score_samples(digits[:50]), scores)
    assert calls == [1, 1]
    restored = pickle.loads(pickle.dumps(rbm))
    assert restored.log_partition_ == rbm.log_partition_ and calls == [1, 1]


def test_ais_reports_progress_and_a_summary_at_verbose(capsys):
    digits = load_digits().data > 7
    rbm = BernoulliRBM(n_components=24, max_iter=2, n_ais_temperatures=200, random_state=0, verbose=1)
    rbm.fit(digits)
    capsys.readouterr()
    rbm.score_samples(digits[:5])
    out = capsys.readouterr().out
    assert "done: 200 AIS steps" in out and "AIS log Z = " in out
    assert capsys.readouterr().out == ""  # once
    rbm.score_samples(digits[:5])
    assert capsys.readouterr().out == ""
