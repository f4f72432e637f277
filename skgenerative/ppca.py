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
from numbers import Integral

import numpy as np
import torch
from scipy.special import gammaln
from sklearn.utils._param_validation import Interval

from .base import GenerativeModel

__all__ = ["PPCADensity", "ppca_log_likelihood", "minka_dimension"]


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
    residual = r - z @ components
    maha = residual.square().sum(1) / noise_variance + (z.square() / eigenvalues).sum(1)
    log_det = torch.log(eigenvalues).sum() + (d - q) * math.log(float(noise_variance))
    return -0.5 * (d * math.log(2 * math.pi) + log_det + maha)


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
    components_ : ndarray of shape (n_components_, n_features)
        Orthonormal principal directions (rows), signs fixed so that the largest
        entry of each is positive (as scikit-learn's PCA).
    explained_variance_ : ndarray of shape (n_components_,)
        Leading eigenvalues of the sample covariance.
    noise_variance_ : float
        ``sigma^2``, the mean of the discarded eigenvalues.
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
    }

    def __init__(
        self,
        n_components=None,
        *,
        contamination=0.1,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
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
        Xc = X - mean
        total_variance = float(Xc.square().sum()) / (n - 1)
        eigenvalues, vectors = self._leading_eigenpairs(Xc)
        if q is None:
            q = minka_dimension(eigenvalues.double().cpu().numpy(), n, d)
            self._log(f"Minka's evidence chose n_components={q}")
        eigenvalues, vectors = eigenvalues[:q], vectors[:, :q]

        noise = (total_variance - float(eigenvalues.sum())) / (d - q)
        floor = float(torch.finfo(X.dtype).eps) * max(float(eigenvalues[0]), 1e-300)
        noise = max(noise, floor)
        eigenvalues = eigenvalues.clamp_min(noise)

        components = vectors.T.contiguous()
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

    @staticmethod
    def _leading_eigenpairs(Xc: torch.Tensor):
        """Eigenvalues (decreasing) and unit eigenvectors (columns) of the covariance.

        Uses the D x D covariance when n >= D, otherwise the n x n Gram matrix
        (``S u = l u`` with ``u = Xc^T v / sqrt((n - 1) l)`` for ``G v = l v``).
        """
        n, d = Xc.shape
        if n >= d:
            cov = (Xc.T @ Xc) / (n - 1)
            values, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
            return values.flip(0).clamp_min(0.0), vectors.flip(1)
        gram = (Xc @ Xc.T) / (n - 1)
        values, small = torch.linalg.eigh(0.5 * (gram + gram.T))
        values, small = values.flip(0).clamp_min(0.0), small.flip(1)
        scale = torch.sqrt((n - 1) * values.clamp_min(torch.finfo(Xc.dtype).tiny))
        vectors = (Xc.T @ small) / scale
        vectors = vectors / torch.linalg.vector_norm(vectors, dim=0).clamp_min(1e-300)
        return values, vectors

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        return ppca_log_likelihood(
            X,
            self._tensor("mean_"),
            self._tensor("components_"),
            self._tensor("explained_variance_"),
            self.noise_variance_,
        )

    def _loadings(self) -> torch.Tensor:
        """``W^T = diag(sqrt(lambda - sigma^2)) U_q^T``, shape (q, D)."""
        scale = torch.sqrt((self._tensor("explained_variance_") - self.noise_variance_).clamp_min(0))
        return self._tensor("components_") * scale.unsqueeze(1)

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
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
