"""PPCADensity against scikit-learn's PCA density and direct matrix algebra."""

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.decomposition import PCA

from skgenerative import PPCADensity
from skgenerative.ppca import minka_dimension, ppca_log_likelihood


def _low_rank(n=500, d=8, q=3, noise=0.3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, q)) @ rng.normal(size=(q, d)) * 2 + noise * rng.normal(size=(n, d)) + 3


def _covariance(est):
    W = est.components_.T * np.sqrt(est.explained_variance_ - est.noise_variance_)
    return W @ W.T + est.noise_variance_ * np.eye(W.shape[0]), W


@pytest.mark.parametrize("q", [1, 2, 3, 5, 7])
def test_matches_sklearn_pca(q):
    X = _low_rank()
    ref = PCA(q).fit(X)
    est = PPCADensity(q).fit(X)
    np.testing.assert_allclose(est.score_samples(X), ref.score_samples(X), rtol=1e-8)
    assert est.score(X) == pytest.approx(ref.score(X), rel=1e-10)
    np.testing.assert_allclose(est.components_, ref.components_, atol=1e-10)
    np.testing.assert_allclose(est.explained_variance_, ref.explained_variance_, rtol=1e-10)
    assert est.noise_variance_ == pytest.approx(ref.noise_variance_, rel=1e-10)
    np.testing.assert_allclose(est.mean_, ref.mean_, rtol=1e-12)


def test_woodbury_equals_direct_gaussian():
    X = _low_rank()
    est = PPCADensity(3).fit(X)
    C, _ = _covariance(est)
    expected = stats.multivariate_normal(est.mean_, C).logpdf(X)
    np.testing.assert_allclose(est.score_samples(X), expected, rtol=1e-10)
    got = ppca_log_likelihood(
        torch.as_tensor(X),
        torch.as_tensor(est.mean_),
        torch.as_tensor(est.components_),
        torch.as_tensor(est.explained_variance_),
        est.noise_variance_,
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_transform_is_the_posterior_mean():
    X = _low_rank()
    est = PPCADensity(3).fit(X)
    _, W = _covariance(est)
    M = W.T @ W + est.noise_variance_ * np.eye(3)
    expected = np.linalg.solve(M, W.T @ (X - est.mean_).T).T
    np.testing.assert_allclose(est.transform(X), expected, rtol=1e-9, atol=1e-12)
    Z = np.random.RandomState(0).normal(size=(4, 3))
    np.testing.assert_allclose(est.inverse_transform(Z), Z @ W.T + est.mean_, rtol=1e-10)


def test_density_integrates_to_one_in_2d():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 1)) @ [[2.0, 1.0]] + 0.5 * rng.normal(size=(300, 2))
    est = PPCADensity(1).fit(X)
    g = np.linspace(-12, 12, 801)
    xx, yy = np.meshgrid(g, g)
    density = np.exp(est.score_samples(np.column_stack([xx.ravel(), yy.ravel()])))
    assert density.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-4)


def test_sample_moments():
    X = _low_rank()
    est = PPCADensity(3).fit(X)
    S = est.sample(300_000, random_state=0, bounds=None)  # the model's draws, not truncated
    C, _ = _covariance(est)
    scale = np.sqrt(np.diag(C))
    np.testing.assert_allclose(S.mean(0), est.mean_, atol=0.01 * scale.max())
    np.testing.assert_allclose(np.cov(S.T), C, atol=0.02 * np.outer(scale, scale).max())


def test_minka_chooses_the_true_dimension_like_sklearn():
    for q in (1, 2, 4):
        X = _low_rank(n=800, d=10, q=q, seed=q)
        est = PPCADensity().fit(X)
        assert est.n_components_ == q
        assert PCA("mle").fit(X).n_components_ == q


def _data_with_spectrum(spectrum, n, seed):
    """Centred rows whose sample covariance (n - 1 denominator) has exactly these eigenvalues."""
    rng = np.random.RandomState(seed)
    d = len(spectrum)
    A = rng.normal(size=(n, d))
    A -= A.mean(0)
    Q, _ = np.linalg.qr(A)  # orthonormal columns, each orthogonal to the ones vector
    R, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return Q * np.sqrt((n - 1) * spectrum) @ R.T


def test_minka_dimension_is_sklearns_mle_on_any_spectrum():
    """Our evidence maximiser against scikit-learn's PCA('mle') on data built to have
    each spectrum exactly: random spectra of several shapes and sample sizes."""
    chosen = []
    for seed in range(6):
        rng = np.random.RandomState(seed)
        for shape in (0.5, 2.0):
            spectrum = np.sort(rng.gamma(shape, size=12))[::-1]
            for n in (20, 100, 1000):
                X = _data_with_spectrum(spectrum, n, seed)
                reference = PCA("mle").fit(X)
                np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(X.T))[::-1], spectrum, rtol=1e-9, atol=1e-12)
                ours = minka_dimension(spectrum, n, 12)
                assert ours == reference.n_components_, (seed, shape, n)
                chosen.append(ours)
    assert len(set(chosen)) >= 3  # the spectra lead to different answers, not one boundary


def test_wide_data_uses_the_gram_matrix():
    """n < D: the n x n eigendecomposition gives the same model as the D x D one."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 3)) @ rng.normal(size=(3, 60)) + 0.1 * rng.normal(size=(30, 60))
    est = PPCADensity(3).fit(X)
    Xc = X - X.mean(0)
    values, vectors = np.linalg.eigh(Xc.T @ Xc / 29)
    values, vectors = values[::-1], vectors[:, ::-1]
    np.testing.assert_allclose(est.explained_variance_, values[:3], rtol=1e-8)
    np.testing.assert_allclose(np.abs(est.components_ @ vectors[:, :3]), np.eye(3), atol=1e-8)
    assert est.noise_variance_ == pytest.approx(values[3:].clip(0).sum() / 57, rel=1e-8)
    C, _ = _covariance(est)
    np.testing.assert_allclose(
        est.score_samples(X[:5]), stats.multivariate_normal(est.mean_, C).logpdf(X[:5]), rtol=1e-8
    )


def test_data_in_a_subspace_gets_finite_scores():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(100, 2)) @ rng.normal(size=(2, 5))  # rank 2, no noise
    est = PPCADensity(2).fit(X)
    assert est.noise_variance_ > 0
    assert np.isfinite(est.score_samples(X)).all()
    # points off the subspace are far less likely
    off = X[:5] + 1e-3 * rng.normal(size=(5, 5))
    assert (est.score_samples(off) < est.score_samples(X[:5])).all()


def test_errors_name_the_problem():
    X = _low_rank()
    with pytest.raises(ValueError, match="n_components=8 must be strictly less than n_features=8"):
        PPCADensity(8).fit(X)
    with pytest.raises(ValueError, match="n_samples=1"):
        PPCADensity(1).fit(X[:1])
    with pytest.raises(ValueError, match="n_features=1"):
        PPCADensity().fit(X[:, :1])
    with pytest.raises(ValueError, match="n_components"):
        PPCADensity(0).fit(X)


def test_data_far_from_the_origin_keeps_its_accuracy():
    """The fast uncentred covariance falls back to centred chunks when it would cancel."""
    X = _low_rank(n=2000)
    shifted = X + 1e7  # storing it rounds each entry by ~2e-9: the floor of any method
    near = PPCADensity(3).fit(X)
    far = PPCADensity(3).fit(shifted)
    np.testing.assert_allclose(far.score_samples(shifted), near.score_samples(X), rtol=1e-7)
    np.testing.assert_allclose(far.explained_variance_, near.explained_variance_, rtol=1e-7)
    # the uncentred formula alone would be far off here: what the fallback prevents
    mu = shifted.mean(0)
    naive = (shifted.T @ shifted - len(X) * np.outer(mu, mu)) / (len(X) - 1)
    assert np.abs(np.diag(naive) / np.var(X, axis=0, ddof=1) - 1).max() > 1e-4


@pytest.mark.parametrize("noise", [1e-1, 1e-3, 1e-5])
def test_score_is_accurate_when_the_noise_is_tiny(noise):
    """float64 scores use ||r||^2 - ||z||^2 for the residual while that is accurate:
    check against the explicit residual as the noise shrinks below the signal (the
    variance ratio is 3e5 at 0.1, the fast form; 2e9 and 2e13 below, past the switch)."""
    rng = np.random.RandomState(3)
    X = rng.normal(size=(500, 3)) @ (10 * rng.normal(size=(3, 12))) + noise * rng.normal(size=(500, 12)) + 5.0
    est = PPCADensity(3).fit(X)
    r = torch.as_tensor(X - est.mean_)
    U = torch.as_tensor(est.components_)
    z = r @ U.T
    explicit = ((r - z @ U).square().sum(1) / est.noise_variance_ + (z.square() / torch.as_tensor(est.explained_variance_)).sum(1))
    maha = -2 * est.score_samples(X) - (12 * np.log(2 * np.pi) + np.log(est.explained_variance_).sum() + 9 * np.log(est.noise_variance_))
    np.testing.assert_allclose(maha, explicit.numpy(), rtol=1e-10, atol=1e-9)
