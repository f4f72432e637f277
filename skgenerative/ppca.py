"""Probabilistic PCA (Tipping & Bishop, 1999), in torch.

Model: ``z ~ N(0, I_q)``, ``x = W z + mu + eps``, ``eps ~ N(0, sigma^2 I_D)``, so that
``x ~ N(mu, C)`` with ``C = W W^T + sigma^2 I``. The maximum-likelihood solution is in
closed form from the eigendecomposition ``S = U diag(lambda) U^T`` of the sample
covariance: ``sigma^2 = sum_{j > q} lambda_j / (D - q)`` and
``W = U_q (Lambda_q - sigma^2 I)^{1/2}`` (up to a rotation, taken as the identity).

With that ``W``, ``M = W^T W + sigma^2 I = Lambda_q`` is diagonal, so the Woodbury
identity and the matrix determinant lemma give, for ``r = x - mu`` and
``z = U_q^T r``:

    r^T C^{-1} r = ||r - U_q z||^2 / sigma^2 + sum_j z_j^2 / lambda_j
    log det C    = sum_{j <= q} log lambda_j + (D - q) log sigma^2

at O(D q) per row, with no D x D inverse.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import gammaln
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval

from ._torch import chunk_rows, has_nan, iter_slices
from .base import GenerativeModel

__all__ = ["PPCADensity", "ppca_log_likelihood", "ppca_posterior", "minka_dimension"]


def ppca_log_likelihood(
    X: torch.Tensor,
    mean: torch.Tensor,
    components: torch.Tensor,
    eigenvalues: torch.Tensor,
    noise_variance: float | torch.Tensor,
) -> torch.Tensor:
    """Exact ``log N(x; mu, W W^T + sigma^2 I)`` per row (Woodbury form).

    Parameters
    ----------
    X : tensor of shape (n, D)
    mean : tensor of shape (D,)
    components : tensor of shape (q, D)
        Orthonormal principal directions ``U_q^T``.
    eigenvalues : tensor of shape (q,)
        ``lambda_1..q``, each at least ``noise_variance``.
    noise_variance : float
        ``sigma^2 > 0``.
    """
    d = X.shape[1]
    q = components.shape[0]
    r = X - mean
    z = r @ components.T
    z2 = z.square()
    if X.dtype == torch.float64 and float(eigenvalues.max()) <= 1e6 * float(noise_variance):
        # ||r - U z||^2 = ||r||^2 - ||z||^2 for orthonormal U: no residual of X's
        # size. The difference loses about eps * ||r||^2 / sigma^2 nats, under
        # 1e-9 relative for typical rows while the leading variance is at most 1e6
        # sigma^2; beyond that, and in float32 (1e9 times coarser), the residual is
        # formed explicitly
        residual = (torch.einsum("ij,ij->i", r, r) - z2.sum(1)).clamp_min(0.0)
    else:
        residual = (r - z @ components).square().sum(1)
    maha = residual / noise_variance + (z2 / eigenvalues).sum(1)
    log_det = torch.log(eigenvalues).sum() + (d - q) * math.log(float(noise_variance))
    return -0.5 * (d * math.log(2 * math.pi) + log_det + maha)


def ppca_posterior(X: torch.Tensor, mean: torch.Tensor, W: torch.Tensor, noise_variance: float):
    """Latent posterior and marginal log-likelihood given the observed entries of each row.

    With ``o`` the observed coordinates of a row (NaN marks the rest),
    ``M = sigma^2 I + W_o^T W_o``, ``E[z | x_o] = M^{-1} W_o^T (x_o - mu_o)``,
    ``Cov[z | x_o] = sigma^2 M^{-1}`` and, by the Woodbury identity and the determinant
    lemma, ``log N(x_o; mu_o, W_o W_o^T + sigma^2 I) = -1/2 [|o| log 2 pi +
    (|o| - q) log sigma^2 + log det M + (||r_o||^2 - r_o^T W_o E[z | x_o]) / sigma^2]``.

    Returns ``(log_likelihood (n,), posterior_mean (n, q), M^{-1} (n, q, q))``.
    """
    observed = ~torch.isnan(X)
    m = observed.to(X.dtype)
    r = torch.where(observed, X - mean, torch.zeros_like(X))
    q = W.shape[1]
    outer = (W.unsqueeze(2) * W.unsqueeze(1)).reshape(W.shape[0], q * q)
    M = (m @ outer).view(-1, q, q) + noise_variance * torch.eye(q, dtype=X.dtype, device=X.device)
    chol = torch.linalg.cholesky(M)
    projected = r @ W
    z = torch.cholesky_solve(projected.unsqueeze(2), chol).squeeze(2)
    n_obs = m.sum(1)
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(1)
    maha = (r.square().sum(1) - (projected * z).sum(1)) / noise_variance
    log_lik = -0.5 * (
        n_obs * math.log(2 * math.pi) + (n_obs - q) * math.log(noise_variance) + log_det + maha
    )
    return log_lik, z, torch.cholesky_inverse(chol)


def _covariance(X: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Sample covariance (divided by ``n - 1``), as fast as the numerics allow.

    First ``(X^T X - n mu mu^T) / (n - 1)``, a product in torch. (numpy's
    ``A.T @ A`` is a symmetric rank-k update with half the flops, but numpy's BLAS
    threads keep spinning after it and slowed torch's next steps on a 2-core CPU
    more than the update saved: fit + score_samples on 200,000 x 100 took 0.22 s
    against 0.17 s all in torch.) Its relative error on feature ``j`` is about ``eps (1 + mu_j^2 / var_j)``; when that
    could exceed 1e-10 (data far from the origin relative to its spread, or float32)
    the covariance is accumulated from centred chunks instead.
    """
    n, d = X.shape
    gram = X.T @ X
    cov = (gram - n * torch.outer(mean, mean)) / (n - 1)
    variance = torch.diagonal(cov).clamp_min(torch.finfo(X.dtype).tiny)
    worst = float((mean.square() * n / ((n - 1) * variance)).max())
    if torch.finfo(X.dtype).eps * (1.0 + worst) <= 1e-10:
        return cov
    cov = torch.zeros(d, d, dtype=X.dtype, device=X.device)
    for rows in iter_slices(n, chunk_rows(X.element_size() * d, n, X.device)):
        centred = X[rows] - mean
        cov.addmm_(centred.T, centred)
    return cov / (n - 1)


def minka_dimension(eigenvalues: np.ndarray, n_samples: int, n_features: int) -> int:
    """Latent dimension with the highest Laplace-approximated evidence (Minka, 2000).

    ``eigenvalues`` are the sample-covariance eigenvalues in decreasing order (the
    ``min(n_samples, n_features)`` leading ones; the rest are zero). Candidates run
    from 1 to ``len(eigenvalues) - 1``. The log evidence of dimension ``k`` is

        log p(U) - N/2 sum_{j<=k} log l_j - N (D-k)/2 log v + (m + k)/2 log 2 pi
        - 1/2 log|A_Z| - k/2 log N,

    with ``v`` the mean discarded eigenvalue, ``m = D k - k (k + 1) / 2``,
    ``log p(U) = -k log 2 + sum_{i<=k} [lgamma((D-i+1)/2) - (D-i+1)/2 log pi]`` and
    ``log|A_Z| = sum_{i<=k} sum_{j>i} log[N (1/l'_j - 1/l'_i)(l_i - l_j)]`` where
    ``l'_j = l_j`` for ``j <= k`` and ``v`` beyond.
    """
    d, n = n_features, n_samples
    spectrum = np.maximum(np.asarray(eigenvalues, dtype=np.float64), 1e-300)
    full = np.zeros(d)
    full[: len(spectrum)] = spectrum
    total = full.sum()
    best_k, best = 1, -np.inf
    for k in range(1, len(spectrum)):
        v = max((total - full[:k].sum()) / (d - k), 1e-300)
        i = np.arange(1, k + 1)
        log_pu = -k * math.log(2) + np.sum(gammaln((d - i + 1) / 2.0) - (d - i + 1) / 2.0 * math.log(math.pi))
        log_pl = -n / 2.0 * np.sum(np.log(full[:k]))
        log_pv = -n * (d - k) / 2.0 * math.log(v)
        m = d * k - k * (k + 1) / 2.0
        log_pp = (m + k) / 2.0 * math.log(2 * math.pi)
        modified = full.copy()
        modified[k:] = v
        log_az = 0.0
        for a in range(k):
            diff = (1.0 / modified[a + 1 :] - 1.0 / modified[a]) * (full[a] - full[a + 1 :])
            log_az += np.sum(np.log(np.maximum(diff, 1e-300))) + (d - a - 1) * math.log(n)
        evidence = log_pu + log_pl + log_pv + log_pp - log_az / 2.0 - k * math.log(n) / 2.0
        if evidence > best:
            best_k, best = k, evidence
    return best_k


class PPCADensity(GenerativeModel):
    """Probabilistic PCA density (Tipping & Bishop), maximum likelihood in closed form.

    A Gaussian whose covariance is low rank plus isotropic noise,
    ``N(mean_, W W^T + noise_variance_ I)``; the density behind PCA.

    Parameters
    ----------
    n_components : int or None, default=None
        Latent dimension ``q`` (``1 <= q < n_features``). ``None`` picks it by
        Minka's Laplace approximation of the evidence.
    max_iter : int, default=1000
        Maximum EM iterations when the training data have missing values (NaN);
        complete data are fitted in closed form.
    tol : float, default=1e-6
        EM stops when the mean log-likelihood of the observed entries improves by
        less than ``tol``.
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
    dtype : {"float64", "float32"}, default="float64"
    random_state : int, RandomState instance or None, default=None
        Unused by the fit (it is deterministic); kept for the common contract.
    verbose : int, default=0

    Attributes
    ----------
    n_components_ : int
        The latent dimension used.
    components_ : ndarray of shape (n_latent, n_features)
        Orthonormal principal directions (rows), signs fixed so that the largest
        entry of each is positive (as scikit-learn's PCA).
    explained_variance_ : ndarray of shape (n_latent,)
        Leading eigenvalues of the sample covariance.
    noise_variance_ : float
        ``sigma^2``, the mean of the discarded eigenvalues.
    n_iter_ : int
        EM iterations when the training data had missing values; 1 for the
        closed-form fit of complete data.
    converged_ : bool
        Whether EM converged within ``max_iter`` (always True for complete data).
    mean_ : ndarray of shape (n_features,)
    offset_ : float
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    sklearn.decomposition.PCA : whose ``score_samples`` is the same density.
    GaussianMixtureDensity : for multimodal data.

    Notes
    -----
    ``score_samples`` is the exact log-density. ``transform`` is the posterior mean
    ``E[z | x] = M^{-1} W^T (x - mu)`` (shrunk towards 0, unlike PCA's projection) and
    ``inverse_transform`` the decoder mean ``W z + mu``.

    As in scikit-learn the sample covariance divides by ``n - 1`` (the strict ML
    estimate divides by ``n``), so that the two give the same densities. ``sigma^2``
    averages all ``D - q`` discarded eigenvalues, zeros included when
    ``n_samples < n_features`` (scikit-learn averages only the first
    ``min(n, D) - q``). It is floored at ``eps * lambda_1`` so that data lying exactly
    in a subspace still gets a finite density.

    References
    ----------
    Tipping, M. E. & Bishop, C. M. (1999). Probabilistic principal component
    analysis. JRSS B, 61(3), 611-622.
    Minka, T. (2000). Automatic choice of dimensionality for PCA. NIPS 13.

    Examples
    --------
    >>> import numpy as np
    >>> from skgenerative import PPCADensity
    >>> rng = np.random.RandomState(0)
    >>> Z = rng.normal(size=(500, 2))
    >>> X = Z @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(500, 6))
    >>> ppca = PPCADensity().fit(X)
    >>> ppca.n_components_
    2
    >>> round(ppca.noise_variance_, 2)
    0.01
    """

    _parameter_constraints: dict = {
        **GenerativeModel._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
    }

    _supports_missing = True

    def __init__(
        self,
        n_components=None,
        *,
        max_iter=1000,
        tol=1e-6,
        contamination=0.1,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _n_latent(self) -> int:
        return int(self.n_components_)

    def _row_bytes(self, n_features: int) -> int:
        q = self.n_components or n_features
        return np.dtype(self.dtype).itemsize * (3 * n_features + 2 * q + 4)

    def _fit(self, X: torch.Tensor):
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PPCADensity needs at least 2 samples, got n_samples={n}.")
        if d < 2:
            raise ValueError(
                f"PPCADensity needs n_features >= 2 for a latent dimension below the "
                f"data dimension, got n_features={d}."
            )
        q = self.n_components
        if q is not None and q >= d:
            raise ValueError(
                f"n_components={q} must be strictly less than n_features={d}: the "
                "noise variance is the mean of the discarded eigenvalues."
            )
        if q is not None and q > n:
            raise ValueError(f"n_components={q} must be at most n_samples={n}.")

        mean = X.mean(0)
        # a NaN anywhere makes its column's mean NaN: one pass finds both
        has_missing = bool(torch.isnan(mean).any())
        if has_missing:  # closed form on mean-imputed data: the start (and the dimension)
            incomplete = torch.isnan(X)
            X_observed = X
            X = torch.where(incomplete, torch.nanmean(X, 0).expand_as(X), X)
            mean = X.mean(0)
        eigenvalues, vectors, total_variance = self._leading_eigenpairs(X, mean)
        if q is None:
            q = minka_dimension(eigenvalues.double().cpu().numpy(), n, d)
            self._log(f"Minka's evidence chose n_components={q}")
        eigenvalues, vectors = eigenvalues[:q], vectors[:, :q]

        noise = (total_variance - float(eigenvalues.sum())) / (d - q)
        floor = float(torch.finfo(X.dtype).eps) * max(float(eigenvalues[0]), 1e-300)
        noise = max(noise, floor)
        eigenvalues = eigenvalues.clamp_min(noise)

        components = vectors.T.contiguous()
        self.n_iter_, self.converged_ = 1, True  # the closed form: one exact step
        if has_missing:
            W = components.T * torch.sqrt(eigenvalues - noise)
            mean, W, noise = self._em_missing(X_observed, mean, W, noise)
            # back to orthonormal directions: W W^T = U diag(s^2) U^T
            U, singular, _ = torch.linalg.svd(W, full_matrices=False)
            components = U.T.contiguous()
            eigenvalues = singular.square() + noise
        # deterministic signs: the largest-magnitude entry of each direction positive
        pivot = torch.argmax(components.abs(), dim=1)
        signs = torch.sign(components[torch.arange(q, device=X.device), pivot])
        components = components * signs.unsqueeze(1)

        self.n_components_ = int(q)
        self.mean_ = mean.double().cpu().numpy()
        self.components_ = components.double().cpu().numpy()
        self.explained_variance_ = eigenvalues.double().cpu().numpy()
        self.noise_variance_ = float(noise)
        return None

    def _em_missing(self, X, mean, W, noise):
        """EM for PPCA with missing entries (Tipping & Bishop 1999; Ilin & Raiko 2010).

        E-step: the latent posterior of each row given its observed entries
        (:func:`ppca_posterior`). M-step, per column ``j`` over the rows ``i`` where it is
        observed: ``mu_j = mean_i(x_ij - w_j^T E z_i)``, then
        ``w_j = (sum_i E[z_i z_i^T])^{-1} sum_i E[z_i] (x_ij - mu_j)``, then
        ``sigma^2 = mean_ij[(x_ij - mu_j - w_j^T E z_i)^2 + w_j^T Cov[z_i] w_j]``. Each
        update maximises the expected complete-data log-likelihood given the others, so
        the observed-data log-likelihood never decreases.
        """
        observed = ~torch.isnan(X)
        m = observed.to(X.dtype)
        Xz = torch.where(observed, X, torch.zeros_like(X))
        n_observed = m.sum()
        per_column = m.sum(0)
        q = W.shape[1]
        previous = -math.inf
        self.converged_ = False
        for iteration in range(1, self.max_iter + 1):
            log_lik, z, m_inv = ppca_posterior(X, mean, W, noise)
            bound = float(log_lik.double().mean())
            self._log(f"  EM iteration {iteration}\t log-likelihood {bound:.6f}", 2)
            if not math.isfinite(bound):
                raise FloatingPointError("PPCA EM diverged: scale the input.")
            if abs(bound - previous) < self.tol:
                self.converged_ = True
                break
            previous = bound
            zz = noise * m_inv + z.unsqueeze(2) * z.unsqueeze(1)  # E[z z^T], (n, q, q)
            mean = (m * (Xz - z @ W.T)).sum(0) / per_column
            r = (Xz - mean) * m
            A = (m.T @ zz.reshape(-1, q * q)).view(-1, q, q)
            B = r.T @ z
            W = torch.linalg.solve(A, B.unsqueeze(2)).squeeze(2)
            residual = (r - (z @ W.T) * m).square().sum()
            outer = (W.unsqueeze(2) * W.unsqueeze(1)).reshape(W.shape[0], q * q)
            spread = ((m @ outer) * (noise * m_inv).reshape(-1, q * q)).sum()
            noise = max(float((residual + spread) / n_observed), float(torch.finfo(X.dtype).eps))
        self.n_iter_ = iteration
        if not self.converged_:
            warnings.warn(
                f"PPCA EM with missing values did not converge in max_iter={self.max_iter} "
                "iterations; increase max_iter or tol.",
                ConvergenceWarning,
            )
        return mean, W, noise

    @staticmethod
    def _leading_eigenpairs(X: torch.Tensor, mean: torch.Tensor):
        """Eigenvalues (decreasing), unit eigenvectors (columns) and trace of the covariance.

        Uses the D x D covariance when n >= D, accumulated from centred chunks (no
        centred copy of X, no cancellation), otherwise the n x n Gram matrix
        (``S u = l u`` with ``u = Xc^T v / sqrt((n - 1) l)`` for ``G v = l v``).
        """
        n, d = X.shape
        if n >= d:
            cov = _covariance(X, mean)
            values, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
            return values.flip(0).clamp_min(0.0), vectors.flip(1), float(torch.trace(cov))
        Xc = X - mean
        gram = (Xc @ Xc.T) / (n - 1)
        values, small = torch.linalg.eigh(0.5 * (gram + gram.T))
        values, small = values.flip(0).clamp_min(0.0), small.flip(1)
        scale = torch.sqrt((n - 1) * values.clamp_min(torch.finfo(Xc.dtype).tiny))
        vectors = (Xc.T @ small) / scale
        vectors = vectors / torch.linalg.vector_norm(vectors, dim=0).clamp_min(1e-300)
        return values, vectors, float(torch.trace(gram))

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        if has_nan(X):  # the marginal of the observed entries
            return ppca_posterior(X, self._tensor("mean_"), self._loadings().T, self.noise_variance_)[0]
        return ppca_log_likelihood(
            X,
            self._tensor("mean_"),
            self._tensor("components_"),
            self._tensor("explained_variance_"),
            self.noise_variance_,
        )

    def _impute(self, X: torch.Tensor, n_draws, generator) -> torch.Tensor:
        """``E[x_m | x_o] = mu_m + W_m E[z | x_o]``; draws through ``z ~ p(z | x_o)``."""
        mean, W = self._tensor("mean_"), self._loadings().T
        _, z, m_inv = ppca_posterior(X, mean, W, self.noise_variance_)
        if n_draws is None:
            return mean + z @ W.T
        n, d = X.shape
        q = W.shape[1]
        factor = torch.linalg.cholesky(self.noise_variance_ * m_inv)  # Cov[z | x_o]
        eps = torch.randn(n, n_draws, q, generator=generator, dtype=X.dtype, device=X.device)
        noise = torch.randn(n, n_draws, d, generator=generator, dtype=X.dtype, device=X.device)
        z_draws = z.unsqueeze(1) + eps @ factor.transpose(1, 2)
        return mean + z_draws @ W.T + math.sqrt(self.noise_variance_) * noise

    def _loadings(self) -> torch.Tensor:
        """``W^T = diag(sqrt(lambda - sigma^2)) U_q^T``, shape (q, D)."""
        scale = torch.sqrt((self._tensor("explained_variance_") - self.noise_variance_).clamp_min(0))
        return self._tensor("components_") * scale.unsqueeze(1)

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        if has_nan(X):
            return ppca_posterior(X, self._tensor("mean_"), self._loadings().T, self.noise_variance_)[1]
        # E[z | x] = M^{-1} W^T (x - mu) with M = diag(lambda)
        projection = (X - self._tensor("mean_")) @ self._loadings().T
        return projection / self._tensor("explained_variance_")

    def _decode(self, Z: torch.Tensor) -> torch.Tensor:
        return Z @ self._loadings() + self._tensor("mean_")

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        mean = self._tensor("mean_")
        q, d = self.n_components_, mean.shape[0]
        z = torch.randn(n, q, generator=generator, dtype=mean.dtype, device=mean.device)
        noise = torch.randn(n, d, generator=generator, dtype=mean.dtype, device=mean.device)
        return self._decode(z) + math.sqrt(self.noise_variance_) * noise
