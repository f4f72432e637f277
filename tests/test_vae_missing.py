"""VariationalAutoencoder with missing values (MIWAE): bounds, imputation, edge cases.

The sharp tests use linear VAEs, whose marginal is Gaussian: the log-density of a
row's observed entries and the conditional distribution of its missing entries are
then known exactly, so the importance-weighted bound, the self-normalised
imputation and the resampled draws can be checked against them.
"""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skgenerative import GenerativeImputer, VariationalAutoencoder
from skgenerative.nn import ColumnLikelihood, standard_normal_log_prob
from skgenerative.vae import gaussian_posterior_sample, importance_weighted_bound
from test_vae import QUICK, AffinePosteriorVAE, _gaussian_data, _linear_marginal, _linear_vae


def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def _mask(X, rate, seed=7):
    rng = np.random.RandomState(seed)
    Xm = X.copy()
    Xm[rng.rand(*X.shape) < rate] = np.nan
    return Xm


def _marginal(x, mean, cov):
    """Exact log-density of the observed entries of ``x`` under N(mean, cov)."""
    o = ~np.isnan(x)
    if not o.any():
        return 0.0
    return multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[o])


def _conditional(x, mean, cov):
    """Mean and covariance of the missing entries of ``x`` given the observed ones."""
    o, m = ~np.isnan(x), np.isnan(x)
    if not o.any():
        return mean[m], cov[np.ix_(m, m)]
    gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T
    return mean[m] + gain @ (x[o] - mean[o]), cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]


# ---------------------------------------------------------------- building blocks
@pytest.mark.parametrize("head", ["gaussian", "gaussian-conditional", "bernoulli"])
def test_masked_heads_sum_over_the_observed_entries_only(head):
    rng = np.random.RandomState(0)
    n, d = 6, 4
    if head == "bernoulli":
        module = ColumnLikelihood.for_columns(["real"] * d, likelihood="bernoulli")
        x = (rng.rand(n, d) < 0.5).astype(float)
        params = torch.tensor(rng.normal(size=(n, 3, d)), requires_grad=True)
    else:
        module = ColumnLikelihood.for_columns(["real"] * d, conditional_variance=head.endswith("conditional")).double()
        x = rng.normal(size=(n, d))
        width = module.n_params
        params = torch.tensor(rng.normal(size=(n, 3, width)), requires_grad=True)
    observed = rng.rand(n, d) < 0.6
    observed[0] = True  # complete row
    observed[1] = False  # nothing observed
    x_nan = np.where(observed, x, np.nan)
    out = module.log_prob(torch.from_numpy(x_nan).unsqueeze(1), params, torch.from_numpy(observed).unsqueeze(1))
    full = module.log_prob(torch.from_numpy(x).unsqueeze(1), params.detach()).detach()
    # the same as dropping the missing features: per-feature terms summed over o
    for i in range(n):
        expected = 0.0
        for j in np.flatnonzero(observed[i]):
            single = x.copy()
            keep = np.zeros((n, d), dtype=bool)
            keep[i, j] = True
            term = module.log_prob(
                torch.from_numpy(single).unsqueeze(1), params.detach(), torch.from_numpy(keep).unsqueeze(1)
            )[i]
            expected = expected + term.detach().numpy()
        np.testing.assert_allclose(out[i].detach().numpy(), np.broadcast_to(expected, (3,)), rtol=1e-12, atol=1e-12)
    assert torch.all(out[1] == 0)
    # the NaN behind the mask poisons neither the value nor the gradient
    out.sum().backward()
    assert torch.isfinite(params.grad).all()
    # an all-true mask gives the unmasked value (up to rounding: the estimator sends
    # complete rows down the unmasked path, so they score bit for bit as before)
    np.testing.assert_allclose(out[0].detach().numpy(), full[0].detach().numpy(), rtol=1e-13)
    everything = torch.ones(n, 1, d, dtype=torch.bool)
    np.testing.assert_allclose(
        module.log_prob(torch.from_numpy(x).unsqueeze(1), params.detach(), everything).detach().numpy(),
        full.numpy(), rtol=1e-13,
    )


def test_standardisation_and_log_jacobian_use_the_observed_entries():
    X = _gaussian_data(200, 5)
    Xm = _mask(X, 0.3)
    vae = _fit(VariationalAutoencoder(**QUICK), Xm)
    np.testing.assert_allclose(vae.mean_, np.nanmean(Xm, 0), rtol=1e-12)
    np.testing.assert_allclose(vae.scale_, np.nanstd(Xm, 0), rtol=1e-12)
    observed = torch.from_numpy(~np.isnan(Xm[:20]))
    expected = -(~np.isnan(Xm[:20]) * np.log(vae.scale_)).sum(1)
    np.testing.assert_allclose(vae._log_jacobian(observed).numpy(), expected, rtol=1e-12)
    # scaling by a power of two standardises to the same numbers: the same network
    # (the missingness indicators included), and densities move by the Jacobian of
    # each row's observed entries only
    a = vae.set_params(n_importance_samples=2000)
    b = _fit(VariationalAutoencoder(**QUICK), 8.0 * Xm).set_params(n_importance_samples=2000)
    np.testing.assert_array_equal(b.transform(8.0 * Xm), a.transform(Xm))
    incomplete = np.isnan(Xm).any(1)
    n_observed = (~np.isnan(Xm[incomplete])).sum(1)
    shift = b.score(8.0 * Xm[incomplete]) - a.score(Xm[incomplete])
    assert shift == pytest.approx(-n_observed.mean() * math.log(8.0), abs=0.02)


# --------------------------------------------------- the bound on observed entries
def test_bound_on_incomplete_rows_never_exceeds_the_exact_marginal_and_tightens():
    # a posterior 3 times wider than the exact one for complete rows: for incomplete
    # rows (encoder input zero-filled) it is a wrong but overdispersed proposal
    vae, X, _ = _linear_vae(encoder_var_factor=3.0)
    mean, cov = _linear_marginal(vae)
    Xm = _mask(X, 0.4)
    Xm[0] = np.nan
    exact = np.array([_marginal(x, mean, cov) for x in Xm])
    incomplete = np.isnan(Xm).any(1) & ~np.isnan(Xm).all(1)
    gaps, errors = [], []
    for samples in (1, 10, 10_000):
        scores = vae.set_params(n_importance_samples=samples).score_samples(Xm)
        assert scores[0] == 0.0  # nothing observed: the density of no entries is 1
        gap = (scores - exact)[incomplete]
        gaps.append(gap.mean())
        errors.append(gap.std() / math.sqrt(len(gap)))
        assert gap.mean() < 3 * errors[-1]  # below the exact value up to Monte Carlo error
    assert gaps[0] < -0.3
    assert gaps[0] < gaps[1] < gaps[2]
    assert abs(gaps[-1]) < 0.03


def test_exact_encoder_scores_complete_rows_exactly_in_a_batch_with_incomplete_ones():
    vae, X, exact = _linear_vae()
    Xm = _mask(X, 0.3)
    complete = ~np.isnan(Xm).any(1)
    mixed = vae.score_samples(Xm)
    alone = vae.score_samples(X[complete])
    np.testing.assert_array_equal(mixed[complete], alone)  # the complete-data path, bit for bit
    np.testing.assert_allclose(mixed[complete], exact[complete], rtol=0, atol=1e-9)


def test_scores_and_imputations_of_incomplete_rows_do_not_depend_on_the_batch():
    X = _gaussian_data(120, 5)
    Xm = _mask(X, 0.3, seed=2)
    vae = _fit(VariationalAutoencoder(**QUICK), Xm)
    for method in (vae.score_samples, vae.impute, vae.transform):
        full = method(Xm)
        perm = np.random.RandomState(0).permutation(len(Xm))
        np.testing.assert_allclose(method(Xm[perm]), full[perm], rtol=1e-10, atol=1e-10)
        singles = np.concatenate([method(Xm[i : i + 1]) for i in range(6)])
        np.testing.assert_allclose(singles, full[:6], rtol=1e-10, atol=1e-10)
        with config_context(working_memory=0.001):
            np.testing.assert_allclose(method(Xm), full, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(method(Xm), full)  # and no state: the same again
    assert np.isfinite(vae.transform(Xm)).all()
    # draws come from random_state
    a = vae.impute(Xm[:5], n_draws=3, random_state=0)
    np.testing.assert_array_equal(a, vae.impute(Xm[:5], n_draws=3, random_state=0))
    assert not np.array_equal(a, vae.impute(Xm[:5], n_draws=3, random_state=1))


# ---------------------------------------------------------------------- imputation
def _ppca_data(n=2000, seed=0):
    rng = np.random.RandomState(seed)
    W = rng.normal(size=(8, 3)) * 2
    X = rng.normal(size=(n, 3)) @ W.T + 0.3 * rng.normal(size=(n, 8)) + 1.0
    return X, W @ W.T + 0.09 * np.eye(8)


@pytest.fixture(scope="module")
def linear_miwae():
    """A linear VAE (factor analysis) trained by MIWAE on 30%-masked PPCA data."""
    X, cov = _ppca_data()
    Xm = _mask(X, 0.3, seed=1)
    vae = VariationalAutoencoder(
        n_components=3, hidden_layer_sizes=(), decoder_variance="shared", learning_rate=1e-2,
        random_state=0, device="cpu",
    )
    return _fit(vae, Xm), X, Xm, cov


def test_imputation_approaches_the_bayes_optimal_conditional_mean(linear_miwae):
    vae, X, Xm, cov = linear_miwae
    missing = np.isnan(Xm)
    bayes = Xm.copy()
    for i in np.flatnonzero(missing.any(1)):
        bayes[i, missing[i]] = _conditional(Xm[i], np.ones(8), cov)[0]
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[missing] ** 2))  # noqa: E731
    imputed = vae.impute(Xm)
    mean_imputation = np.where(missing, np.nanmean(Xm, 0), Xm)
    assert rmse(imputed) < 1.2 * rmse(bayes)
    assert rmse(imputed) < 0.3 * rmse(mean_imputation)
    # MIWAE trained the K-sample bound ("auto": 20 with missing values) and the
    # encoder learned to use the missingness indicators
    assert vae._n_training_samples() == 20
    assert vae.module_.encoder_missing.weight.abs().sum() > 0


def test_imputation_is_the_conditional_mean_of_the_fitted_model(linear_miwae):
    """SNIS against the exact conditional mean of the model the VAE learned."""
    vae, X, Xm, _ = linear_miwae
    mean, cov = _linear_marginal(vae)
    missing = np.isnan(Xm)
    rows = np.flatnonzero(missing.any(1))[:300]
    exact = Xm[rows].copy()
    for k, i in enumerate(rows):
        exact[k, missing[i]] = _conditional(Xm[i], mean, cov)[0]
    imputed = vae.impute(Xm[rows])
    sd = np.sqrt(np.diag(cov))
    error = ((imputed - exact) / sd)[missing[rows]]
    assert np.sqrt(np.mean(error**2)) < 0.1  # in units of each feature's spread


def test_draws_match_the_conditional_of_the_fitted_linear_model(linear_miwae):
    vae, X, Xm, _ = linear_miwae
    # the trained encoder is narrower than the exact posterior (an effective sample
    # size of about 6% for this row): more particles than the default for 0.1 sd
    vae = copy.deepcopy(vae).set_params(n_imputation_samples=10_000)
    mean, cov = _linear_marginal(vae)
    row = X[:1].copy()
    row[0, [1, 4, 6]] = np.nan
    m = np.isnan(row[0])
    cond_mean, cond_cov = _conditional(row[0], mean, cov)
    draws = vae.impute(row, n_draws=20_000, random_state=0)
    assert draws.shape == (20_000, 1, 8)
    np.testing.assert_array_equal(draws[:, 0, ~m], np.broadcast_to(row[0, ~m], (20_000, 5)))
    sample = draws[:, 0, m]
    sd = np.sqrt(np.diag(cond_cov))
    np.testing.assert_allclose(sample.mean(0), vae.impute(row)[0, m], atol=0.1 * sd.max())
    np.testing.assert_allclose(sample.mean(0), cond_mean, atol=0.1 * sd.max())
    np.testing.assert_allclose(np.sqrt(np.diag(np.cov(sample.T))), sd, rtol=0.1)


def test_row_with_every_entry_missing_gets_the_marginal(linear_miwae):
    vae, X, Xm, _ = linear_miwae
    mean, cov = _linear_marginal(vae)
    empty = np.full((1, 8), np.nan)
    assert vae.score_samples(empty)[0] == 0.0
    sd = np.sqrt(np.diag(cov))
    # z_s drawn from the prior with equal weights: the decoder's mean over the prior
    np.testing.assert_allclose(vae.impute(empty)[0], mean, atol=4 * sd.max() / math.sqrt(vae.n_imputation_samples))
    draws = vae.impute(empty, n_draws=20_000, random_state=0)[:, 0]
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.15 * sd.max())
    np.testing.assert_allclose(np.sqrt(np.diag(np.cov(draws.T))), sd, rtol=0.1)


# observed entries bit for bit, no NaN left, the identity without NaN and an all-missing
# column named: the contract of every NaN-accepting model, tested once in test_common.py


# ---------------------------------------------------- complete data: as before
class _BeforeMissingValues(VariationalAutoencoder):
    """The complete-data formulas of the VAE before missing values were supported."""

    def _fit_preprocessing(self, X):
        values = X.detach().double()
        mean, scale = values.mean(0), values.std(0, correction=0)
        tiny = 100 * torch.finfo(X.dtype).eps * torch.clamp(mean.abs(), min=1.0)
        scale = torch.where(scale <= tiny, torch.ones_like(scale), scale)
        self.mean_, self.scale_ = mean.cpu().numpy(), scale.cpu().numpy()

    def _old_log_weights(self, module, x, eps, kl_weight=1.0):
        encoded = module.encode(x)
        z, log_q = gaussian_posterior_sample(encoded.mean, encoded.log_var, eps)
        log_lik = module.likelihood.log_prob(x.unsqueeze(1), module.decode(z), masked=False)  # no mask then
        return log_lik + kl_weight * (standard_normal_log_prob(z) - log_q)

    def _negative_bound(self, module, batch, generator, kl_weight):
        shape = (batch.shape[0], 1, int(self.n_components))
        eps = torch.randn(shape, generator=generator, dtype=batch.dtype, device=batch.device)
        elbo = self._old_log_weights(module, batch, eps, kl_weight).mean()
        return -(elbo + -float(np.log(self.scale_).sum()))

    def _log_prob(self, X):
        eps = self._score_noise(X, int(self.n_importance_samples))
        log_weights = self._old_log_weights(self.module_, self._preprocess(X), eps)
        return importance_weighted_bound(log_weights) - float(np.log(self.scale_).sum())

    def _encode(self, X):
        return self.module_.encode(self._preprocess(X)).mean


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_complete_data_give_the_same_model_and_scores_as_before(dtype):
    X = _gaussian_data(200, 5)
    params = {**QUICK, "dtype": dtype, "max_iter": 15}
    new = _fit(VariationalAutoencoder(**params), X)
    old = _fit(_BeforeMissingValues(**params), X)
    assert [h["train_loss"] for h in new.history_] == [h["train_loss"] for h in old.history_]
    assert [h["validation_loss"] for h in new.history_] == [h["validation_loss"] for h in old.history_]
    for p, q in zip(new.module_.parameters(), old.module_.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(new.score_samples(X), old.score_samples(X))
    np.testing.assert_array_equal(new.transform(X), old.transform(X))
    assert new.offset_ == old.offset_
    assert new._n_training_samples() == 1  # "auto": the ELBO, as before
    assert not new.module_.encoder_missing.weight.any()  # indicators unused, never trained


# --------------------------------------------------------------------- edge cases
def test_bernoulli_likelihood_with_missing_values():
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(600, 4)) < np.array([0.2, 0.5, 0.7, 0.3])).astype(float)
    X[:, 3] = X[:, 0]  # a dependency the latent must carry
    Xm = _mask(X, 0.2)
    # float64 training: a seed on which 60 epochs learn the dependency below
    vae = _fit(VariationalAutoencoder(**{**QUICK, "likelihood": "bernoulli", "max_iter": 60, "dtype": "float64"}), Xm)
    vae.set_params(n_importance_samples=20_000, n_imputation_samples=20_000)
    assert vae.mean_.tolist() == [0.0] * 4 and vae.scale_.tolist() == [1.0] * 4
    # the mass of the observed entries sums to 1 over their values (exp of the
    # bound is an unbiased estimate of the mass: 1 up to Monte Carlo error)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    partial = np.hstack([states, np.full((8, 1), np.nan)])
    assert np.exp(vae.score_samples(partial)).sum() == pytest.approx(1.0, abs=0.02)
    # marginalising x_3 by hand agrees with the bound on the observed entries, and
    # the imputation is P(x_3 = 1 | x_0..2) from the same joint
    joint = np.exp(vae.score_samples(np.vstack([np.hstack([states, np.zeros((8, 1))]),
                                                np.hstack([states, np.ones((8, 1))])]))).reshape(2, 8)
    np.testing.assert_allclose(vae.score_samples(partial), np.log(joint.sum(0)), atol=0.03)
    imputed = vae.impute(partial)[:, 3]
    np.testing.assert_allclose(imputed, joint[1] / joint.sum(0), atol=0.03)
    # and it learned the dependency: x_3 follows x_0
    assert imputed[states[:, 0] == 1].min() > 0.8 and imputed[states[:, 0] == 0].max() < 0.2
    draws = vae.impute(partial, n_draws=50, random_state=0)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.score_samples(np.where(np.isnan(Xm), np.nan, 2 * Xm))


def test_partial_fit_switches_to_the_missing_value_objective():
    X = _gaussian_data(200, 5)
    vae = VariationalAutoencoder(**QUICK)
    vae.partial_fit(X[:100])
    assert vae._n_training_samples() == 1
    vae.partial_fit(_mask(X[100:], 0.3))
    assert vae._n_training_samples() == 20
    assert np.isfinite(vae.score_samples(_mask(X, 0.3))).all()
    np.testing.assert_allclose(vae.mean_, X[:100].mean(0))  # the first call's standardisation


def test_n_training_samples_sets_the_training_bound():
    X = _gaussian_data(120, 5)
    Xm = _mask(X, 0.3)
    auto = _fit(VariationalAutoencoder(**QUICK), Xm)
    elbo = _fit(VariationalAutoencoder(**{**QUICK, "n_training_samples": 1}), Xm)
    assert elbo._n_training_samples() == 1 and auto._n_training_samples() == 20
    assert auto.history_[0]["train_loss"] != elbo.history_[0]["train_loss"]
    complete_k5 = _fit(VariationalAutoencoder(**{**QUICK, "n_training_samples": 5}), X)
    assert complete_k5._n_training_samples() == 5
    with pytest.raises(ValueError, match="n_training_samples"):
        VariationalAutoencoder(**{**QUICK, "n_training_samples": 0}).fit(X)
    with pytest.raises(ValueError, match="n_imputation_samples"):
        VariationalAutoencoder(**{**QUICK, "n_imputation_samples": 0}).fit(X)


def test_subclass_posterior_inherits_missing_value_support():
    """A flow posterior (as FlowVAE) gets MIWAE through the two hooks alone."""
    X = _gaussian_data()
    Xm = _mask(X, 0.3)
    vae = _fit(AffinePosteriorVAE(**QUICK), Xm)
    assert vae.module_.flow_shift.weight.abs().sum() > 0
    imputed = vae.impute(Xm)
    assert np.isfinite(imputed).all() and np.isfinite(vae.score_samples(Xm)).all()
    restored = pickle.loads(pickle.dumps(vae))
    np.testing.assert_array_equal(restored.impute(Xm), imputed)


def test_generative_imputer_in_a_pipeline():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    Xm = _mask(X, 0.3)
    vae = VariationalAutoencoder(n_components=2, hidden_layer_sizes=(32,), random_state=0, device="cpu")
    imputer = _fit(GenerativeImputer(vae), Xm)
    out = imputer.transform(Xm)
    assert not np.isnan(out).any()
    assert np.array_equal(out[~np.isnan(Xm)], Xm[~np.isnan(Xm)])
    np.testing.assert_array_equal(imputer.transform(Xm), out)  # deterministic transform
    missing = np.isnan(Xm)
    rmse = np.sqrt(np.mean((out - X)[missing] ** 2))
    assert rmse < 0.8 * np.sqrt(np.mean(X[missing] ** 2))  # better than the column means
    pipe = make_pipeline(GenerativeImputer(clone(vae)), LogisticRegression(max_iter=500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accuracy = cross_val_score(pipe, Xm, y, cv=3).mean()
    assert accuracy > 0.8
