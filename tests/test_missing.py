"""Missing values: EM on incomplete tables, marginal scores, imputation (GMM and PPCA)."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.exceptions import ConvergenceWarning

from skgenerative import GaussianMixtureDensity, PPCADensity
from skgenerative.mixture import conditional_gaussian, conditional_gaussian_diag
from skgenerative.ppca import ppca_posterior

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _mask(X, rate, seed=0):
    rng = np.random.RandomState(seed)
    Xm = X.copy()
    Xm[rng.rand(*X.shape) < rate] = np.nan
    return Xm


def _gmm_truth(seed=0):
    rng = np.random.RandomState(seed)
    d = 4
    means = np.array([[3.0, 3, 0, 0], [-3, 0, 3, -3]])
    covs = []
    for _ in range(2):
        A = rng.normal(size=(d, d))
        covs.append(A @ A.T / d + 0.3 * np.eye(d))
    return np.array([0.4, 0.6]), means, np.array(covs)


def _gmm_data(n=1500, seed=0):
    weights, means, covs = _gmm_truth()
    rng = np.random.RandomState(seed)
    labels = rng.choice(2, size=n, p=weights)
    return np.array([rng.multivariate_normal(means[k], covs[k]) for k in labels])


def _ppca_data(n=1000, seed=0):
    rng = np.random.RandomState(seed)
    W = rng.normal(size=(8, 3)) * 2
    X = rng.normal(size=(n, 3)) @ W.T + 0.3 * rng.normal(size=(n, 8)) + 1.0
    return X, W, 0.09


def _marginal(x, mean, cov):
    o = ~np.isnan(x)
    if not o.any():
        return 0.0
    return stats.multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[o])


# ------------------------------------------------------------ conditional Gaussians
def test_conditional_gaussian_equals_schur_complement():
    rng = np.random.RandomState(0)
    d = 6
    A = rng.normal(size=(d, d))
    cov = A @ A.T + 0.5 * np.eye(d)
    mean = rng.normal(size=d)
    X = rng.normal(size=(40, d))
    X[rng.rand(40, d) < 0.4] = np.nan
    X[0] = np.nan  # nothing observed
    X[1, :] = rng.normal(size=d)  # everything observed
    log_m, filled, cond = (t.numpy() for t in conditional_gaussian(
        torch.as_tensor(X), torch.as_tensor(mean), torch.as_tensor(cov)))
    for i in range(len(X)):
        o, m = ~np.isnan(X[i]), np.isnan(X[i])
        assert log_m[i] == pytest.approx(_marginal(X[i], mean, cov), abs=1e-10)
        np.testing.assert_array_equal(filled[i, o], X[i, o])
        if m.any():
            S_oo_inv = np.linalg.inv(cov[np.ix_(o, o)]) if o.any() else np.zeros((0, 0))
            S_mo = cov[np.ix_(m, o)]
            expected_mean = mean[m] + S_mo @ S_oo_inv @ (X[i, o] - mean[o])
            expected_cov = cov[np.ix_(m, m)] - S_mo @ S_oo_inv @ S_mo.T
            np.testing.assert_allclose(filled[i, m], expected_mean, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(cond[i][np.ix_(m, m)], expected_cov, rtol=1e-9, atol=1e-12)
        # zero outside the missing block
        assert np.all(cond[i][o, :] == 0) and np.all(cond[i][:, o] == 0)


def test_conditional_gaussian_diag_equals_full_with_diagonal_covariance():
    rng = np.random.RandomState(1)
    d = 5
    var = rng.uniform(0.5, 2, size=d)
    mean = rng.normal(size=d)
    X = rng.normal(size=(30, d))
    X[rng.rand(30, d) < 0.5] = np.nan
    full = conditional_gaussian(torch.as_tensor(X), torch.as_tensor(mean), torch.as_tensor(np.diag(var)))
    diag = conditional_gaussian_diag(torch.as_tensor(X), torch.as_tensor(mean), torch.as_tensor(var))
    np.testing.assert_allclose(diag[0].numpy(), full[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(diag[1].numpy(), full[1].numpy(), rtol=1e-12)
    np.testing.assert_allclose(diag[2].numpy(), np.diagonal(full[2].numpy(), axis1=1, axis2=2), atol=1e-12)


def test_ppca_posterior_marginal_is_exact():
    rng = np.random.RandomState(0)
    W = rng.normal(size=(7, 2))
    mean = rng.normal(size=7)
    noise = 0.4
    X = rng.normal(size=(25, 7))
    X[rng.rand(25, 7) < 0.4] = np.nan
    log_lik, z, m_inv = ppca_posterior(torch.as_tensor(X), torch.as_tensor(mean), torch.as_tensor(W), noise)
    C = W @ W.T + noise * np.eye(7)
    for i in range(25):
        assert log_lik[i].item() == pytest.approx(_marginal(X[i], mean, C), abs=1e-10)
        o = ~np.isnan(X[i])
        M = W[o].T @ W[o] + noise * np.eye(2)
        np.testing.assert_allclose(z[i].numpy(), np.linalg.solve(M, W[o].T @ (X[i, o] - mean[o])), rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------- marginal scores
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_score_of_incomplete_rows_is_the_exact_marginal(covariance_type):
    X = _gmm_data(400)
    est = GaussianMixtureDensity(2, covariance_type=covariance_type, random_state=0).fit(X)
    Xm = _mask(X[:30], 0.4)
    d = X.shape[1]
    cov = {
        "full": lambda k: est.covariances_[k],
        "tied": lambda k: est.covariances_,
        "diag": lambda k: np.diag(est.covariances_[k]),
        "spherical": lambda k: est.covariances_[k] * np.eye(d),
    }[covariance_type]
    expected = [
        np.log(sum(est.weights_[k] * np.exp(_marginal(x, est.means_[k], cov(k))) for k in range(2)))
        for x in Xm
    ]
    np.testing.assert_allclose(est.score_samples(Xm), expected, rtol=1e-9, atol=1e-9)
    resp = est.predict_proba(Xm)
    np.testing.assert_allclose(resp.sum(1), 1.0)


def test_ppca_score_of_incomplete_rows_is_the_exact_marginal():
    X, _, _ = _ppca_data(300)
    est = PPCADensity(3).fit(X)
    Xm = _mask(X[:30], 0.4)
    W = est.components_.T * np.sqrt(est.explained_variance_ - est.noise_variance_)
    C = W @ W.T + est.noise_variance_ * np.eye(8)
    expected = [_marginal(x, est.mean_, C) for x in Xm]
    np.testing.assert_allclose(est.score_samples(Xm), expected, rtol=1e-9, atol=1e-9)
    # complete rows score as before
    np.testing.assert_allclose(est.score_samples(X[:5]), stats.multivariate_normal(est.mean_, C).logpdf(X[:5]), rtol=1e-9)


# -------------------------------------------------------------------- EM recovery
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gmm_em_with_30_percent_missing_recovers_the_full_data_fit(covariance_type):
    X = _gmm_data()
    full = GaussianMixtureDensity(2, covariance_type=covariance_type, random_state=0).fit(X)
    est = GaussianMixtureDensity(2, covariance_type=covariance_type, random_state=0, tol=1e-6).fit(_mask(X, 0.3))
    order_full, order = np.argsort(full.means_[:, 0]), np.argsort(est.means_[:, 0])
    np.testing.assert_allclose(est.weights_[order], full.weights_[order_full], atol=0.03)
    np.testing.assert_allclose(est.means_[order], full.means_[order_full], atol=0.15)
    if covariance_type == "full":
        np.testing.assert_allclose(est.covariances_[order], full.covariances_[order_full], atol=0.25)
    assert np.all(np.diff(est.lower_bounds_) > -1e-9)  # EM never decreases the likelihood


def test_ppca_em_with_30_percent_missing_recovers_the_full_data_fit():
    X, _, _ = _ppca_data()
    full = PPCADensity(3).fit(X)
    assert full.n_iter_ == 1  # no NaN: the closed form, as before
    est = PPCADensity(3).fit(_mask(X, 0.3))
    assert est.converged_ and est.n_iter_ > 1
    assert est.noise_variance_ == pytest.approx(full.noise_variance_, rel=0.1)
    np.testing.assert_allclose(est.mean_, full.mean_, atol=0.1)
    # same principal subspace: singular values of U_full^T U_est all near 1
    cosines = np.linalg.svd(full.components_ @ est.components_.T, compute_uv=False)
    assert cosines.min() > 0.99
    np.testing.assert_allclose(est.explained_variance_, full.explained_variance_, rtol=0.1)


def test_ppca_em_likelihood_never_decreases():
    X, _, _ = _ppca_data(300)
    Xm = _mask(X, 0.4)
    previous = -np.inf
    for iterations in (1, 2, 5, 20, 80):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = PPCADensity(3, max_iter=iterations).fit(Xm)
        current = est.score(Xm)
        assert current >= previous - 1e-9
        previous = current


# ---------------------------------------------------------------------- imputation
def test_gmm_imputation_approaches_the_bayes_optimal_conditional_mean():
    X = _gmm_data(2000)
    Xm = _mask(X, 0.3, seed=1)
    missing = np.isnan(Xm)
    weights, means, covs = _gmm_truth()
    oracle = GaussianMixtureDensity(2, max_iter=0, weights_init=weights, means_init=means,
                                    precisions_init=np.linalg.inv(covs)).fit(X)
    bayes = oracle.impute(Xm)
    est = GaussianMixtureDensity(2, random_state=0).fit(Xm)
    imputed = est.impute(Xm)
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[missing] ** 2))  # noqa: E731
    mean_imputation = np.where(missing, np.nanmean(Xm, 0), Xm)
    assert rmse(imputed) < 1.03 * rmse(bayes)
    assert rmse(imputed) < 0.7 * rmse(mean_imputation)
    # close to the oracle's imputations entry by entry, not only on average
    assert np.sqrt(np.mean((imputed - bayes)[missing] ** 2)) < 0.1 * rmse(bayes)


def test_ppca_imputation_approaches_the_bayes_optimal_conditional_mean():
    X, W, noise = _ppca_data(2000)
    Xm = _mask(X, 0.3, seed=1)
    missing = np.isnan(Xm)
    C = W @ W.T + noise * np.eye(8)
    bayes = np.array(Xm)
    for i in np.flatnonzero(missing.any(1)):
        o, m = ~missing[i], missing[i]
        bayes[i, m] = 1.0 + C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)], Xm[i, o] - 1.0) if o.any() else 1.0
    est = PPCADensity(3).fit(Xm)
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[missing] ** 2))  # noqa: E731
    assert rmse(est.impute(Xm)) < 1.03 * rmse(bayes)


@pytest.mark.parametrize("make", [
    lambda: GaussianMixtureDensity(1, random_state=0),
    lambda: PPCADensity(3),
], ids=["gmm", "ppca"])
def test_multiple_imputation_draws_match_the_conditional(make):
    """Draws from p(x_m | x_o): their mean is impute()'s, their covariance the Schur complement."""
    X, _, _ = _ppca_data(800)
    est = make().fit(X)
    row = X[:1].copy()
    row[0, [1, 4, 6]] = np.nan
    draws = est.impute(row, n_draws=40_000, random_state=0)
    assert draws.shape == (40_000, 1, 8)
    m = np.isnan(row[0])
    np.testing.assert_array_equal(draws[:, 0, ~m], np.broadcast_to(row[0, ~m], (40_000, (~m).sum())))
    if isinstance(est, PPCADensity):
        W = est.components_.T * np.sqrt(est.explained_variance_ - est.noise_variance_)
        C, mu = W @ W.T + est.noise_variance_ * np.eye(8), est.mean_
    else:
        C, mu = est.covariances_[0], est.means_[0]
    o = ~m
    cond_cov = C[np.ix_(m, m)] - C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)], C[np.ix_(o, m)])
    sample = draws[:, 0, m]
    np.testing.assert_allclose(sample.mean(0), est.impute(row)[0, m], atol=0.03 * np.sqrt(cond_cov.diagonal()).max() + 0.01)
    np.testing.assert_allclose(np.cov(sample.T), cond_cov, atol=0.05 * cond_cov.diagonal().max())


def test_gmm_multiple_imputation_mixes_components():
    X = _gmm_data(1000)
    est = GaussianMixtureDensity(2, random_state=0).fit(X)
    row = np.full((1, 4), np.nan)  # nothing observed: draws from the marginal mixture
    draws = est.impute(row, n_draws=30_000, random_state=0)[:, 0]
    np.testing.assert_allclose(draws.mean(0), est.weights_ @ est.means_, atol=0.08)
    np.testing.assert_allclose(est.impute(row)[0], est.weights_ @ est.means_, rtol=1e-10)


# The contract every NaN-accepting model keeps (observed entries bit for bit, no NaN
# left, the identity without NaN, an all-missing column named, log-density 0 for an
# empty row) is tested once, over all of them, in test_common.py; what is PPCA's own:
def test_ppca_fills_an_empty_row_with_its_mean():
    X, _, _ = _ppca_data(300)
    est = PPCADensity(3).fit(_mask(X, 0.3))
    np.testing.assert_allclose(est.impute(np.full((1, 8), np.nan))[0], est.mean_, rtol=1e-10)
