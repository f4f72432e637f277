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
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import gammaln
from sklearn.utils._param_validation import Interval, StrOptions

from ._em import EMModel, EStep
from ._sources import Cast
from ._torch import has_nan
from .base import GenerativeModel

__all__ = [
    "PPCADensity",
    "PPCAParameters",
    "ppca_log_likelihood",
    "ppca_posterior",
    "ppca_statistics",
    "ppca_m_step",
    "closed_form_log_likelihood",
    "minka_dimension",
]


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


class DegeneratePosteriorError(ValueError):
    """A row's latent posterior cannot be factorised: EM's noise variance collapsed."""


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
    chol, info = torch.linalg.cholesky_ex(M)
    if bool((info != 0).any()):
        raise DegeneratePosteriorError(
            f"PPCA: the latent posterior of a row with missing entries is degenerate (noise variance "
            f"{noise_variance:.3g} against loadings of squared norm up to {float(W.square().sum(1).max()):.3g}): "
            "the data lie on a subspace; scale the columns or set a smaller n_components."
        )
    projected = r @ W
    z = torch.cholesky_solve(projected.unsqueeze(2), chol).squeeze(2)
    n_obs = m.sum(1)
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(1)
    maha = (r.square().sum(1) - (projected * z).sum(1)) / noise_variance
    log_lik = -0.5 * (
        n_obs * math.log(2 * math.pi) + (n_obs - q) * math.log(noise_variance) + log_det + maha
    )
    # M^{-1} = L^{-T} L^{-1} by substitution: torch.cholesky_inverse of a batch of blocks
    # about 200 wide hangs after torch.set_num_threads (mixture.covariances_from_precision_cholesky)
    eye = torch.eye(q, dtype=X.dtype, device=X.device).expand_as(chol)
    inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)
    return log_lik, z, inv_chol.transpose(-1, -2) @ inv_chol


class PPCAParameters(NamedTuple):
    """What EM carries between steps: ``mean`` (D,), ``loadings`` ``W`` (D, q), ``noise_variance``."""

    mean: torch.Tensor
    loadings: torch.Tensor
    noise_variance: float


def ppca_statistics(X: torch.Tensor, params: PPCAParameters) -> dict:
    """E-step on a chunk: expected sufficient statistics given the observed entries.

    ``X`` holds NaN where entries are missing; ``m_ij = 1`` where ``x_ij`` is observed.
    With the latent posterior of each row given its observed entries,
    ``E z_i = M_i^{-1} W_o^T (x_i,o - mu_o)`` and ``Cov z_i = sigma^2 M_i^{-1}``
    (:func:`ppca_posterior`), and the residuals at the current parameters
    ``e_ij = x_ij - mu_j - w_j^T E z_i`` on observed entries, returns the float64 sums

    - ``log_likelihood = sum_i log N(x_i,o; mu_o, W_o W_o^T + sigma^2 I)``, ``n_samples``,
    - ``count_j = sum_i m_ij``, ``residual_j = sum_i m_ij e_ij``,
      ``squared_residual = sum_ij m_ij e_ij^2``,
    - ``latent_j = sum_i m_ij E z_i``, ``residual_latent_j = sum_i m_ij e_ij E z_i``,
    - ``latent_moments_j = sum_i m_ij E z_i E z_i^T``,
      ``latent_covariance_j = sum_i m_ij Cov z_i``.

    Taken about the current parameters, the M-step (:func:`ppca_m_step`) needs no second
    pass over the data and its noise variance is formed from residuals, not from
    differences of the data's second moments. Every entry is a sum over rows, so the
    statistics of a partition of the rows add up to those of the whole.
    """
    mean, W, noise = params
    observed = ~torch.isnan(X)
    m = observed.to(X.dtype)
    log_lik, z, m_inv = ppca_posterior(X, mean, W, noise)
    e = torch.where(observed, X - mean - z @ W.T, torch.zeros_like(X))
    n, q = z.shape
    zz = (z.unsqueeze(2) * z.unsqueeze(1)).reshape(n, q * q)
    stats = {
        "log_likelihood": log_lik.double().sum(),
        "n_samples": n,
        "count": m.sum(0),
        "residual": e.sum(0),
        "squared_residual": e.square().sum(),
        "latent": m.T @ z,
        "residual_latent": e.T @ z,
        "latent_moments": (m.T @ zz).view(-1, q, q),
        "latent_covariance": (m.T @ (noise * m_inv).reshape(n, q * q)).view(-1, q, q),
    }
    return {key: value if key == "n_samples" else value.double() for key, value in stats.items()}


def ppca_m_step(statistics: dict, params: PPCAParameters, min_noise: float = 0.0) -> PPCAParameters:
    """New parameters from summed :func:`ppca_statistics` (Tipping & Bishop, 1999).

    Per column ``j`` over the rows where it is observed, each update maximises the
    expected complete-data log-likelihood given those before it:
    ``mu_j' = mean_i(x_ij - w_j^T E z_i)``, then
    ``w_j' = (sum_i m_ij E[z_i z_i^T])^{-1} sum_i m_ij E z_i (x_ij - mu_j')``, then
    ``sigma^2' = mean_ij[(x_ij - mu_j' - w_j'^T E z_i)^2 + w_j'^T Cov z_i w_j']``, so the
    observed-data log-likelihood never decreases. In terms of the statistics, with
    ``d_j = mu_j' - mu_j = residual_j / count_j`` and ``D_j = w_j' - w_j``, the squared
    residual at the new parameters is ``sum_ij m_ij (e_ij - d_j - D_j^T E z_i)^2``,
    expanded. Computed in float64; returned in the dtype of ``params``; the noise
    variance is at least ``min_noise``.
    """
    s = statistics
    mean, W = params.mean.double(), params.loadings.double()
    count = s["count"]
    shift = s["residual"] / count
    moments = s["latent_moments"]
    rhs = s["residual_latent"] + (moments @ W.unsqueeze(2)).squeeze(2) - shift.unsqueeze(1) * s["latent"]
    # the systems are positive definite: Cholesky, not torch.linalg.solve's LU, which hangs
    # on a batch of blocks about 160 wide after torch.set_num_threads
    # (mixture.covariances_from_precision_cholesky); LU only where a block is singular
    system = moments + s["latent_covariance"]
    chol, info = torch.linalg.cholesky_ex(system)
    if bool((info != 0).any()):
        W_new = torch.linalg.solve(system, rhs.unsqueeze(2)).squeeze(2)
    else:
        W_new = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2)
    step = W_new - W
    residual = (
        s["squared_residual"]
        - 2.0 * (shift * s["residual"]).sum()
        - 2.0 * (step * s["residual_latent"]).sum()
        + (count * shift.square()).sum()
        + 2.0 * (shift.unsqueeze(1) * step * s["latent"]).sum()
        + _quadratic_forms(moments, step)
    )
    spread = _quadratic_forms(s["latent_covariance"], W_new)
    noise = max(float((residual + spread) / count.sum()), min_noise)
    dtype = params.mean.dtype
    return PPCAParameters((mean + shift).to(dtype), W_new.to(dtype), noise)


def _quadratic_forms(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_j v_j^T A_j v_j`` for ``A`` (D, q, q) and ``v`` (D, q)."""
    return ((A @ v.unsqueeze(2)).squeeze(2) * v).sum()


def _em_row_bytes(n_features: int, n_latent: int, itemsize: int) -> int:
    """Temporaries of one row in :func:`ppca_statistics` (residuals, q x q moments)."""
    return itemsize * (6 * n_features + 8 * n_latent * n_latent + 4 * n_latent)


def _least_noise(dtype: torch.dtype) -> float:
    """The least noise variance of EM with missing values: the dtype's ``eps``."""
    return float(torch.finfo(dtype).eps)


class _PPCAFitData(NamedTuple):
    e_step: EStep  # the statistics of the observed entries, over the rows' source
    start: PPCAParameters  # the closed form on mean-imputed data
    dtype: torch.dtype  # the training dtype


def closed_form_log_likelihood(
    leading: torch.Tensor, eigenvalues: torch.Tensor, noise: float, trace: float, n: int, d: int
) -> float:
    """Mean training log-likelihood of the closed-form fit, from the spectrum alone.

    ``C = U_q diag(lambda') U_q^T + sigma^2 (I - U_q U_q^T)`` shares its eigenvectors with
    the sample covariance ``S`` (divisor ``n - 1``, leading eigenvalues ``l_j``, trace
    ``tr S``), so ``mean_i log N(x_i; x_bar, C) = -1/2 [D log 2 pi + log det C +
    (n - 1)/n tr(C^{-1} S)]`` with ``tr(C^{-1} S) = sum_{j<=q} l_j / lambda'_j +
    (tr S - sum_{j<=q} l_j) / sigma^2``.
    """
    q = eigenvalues.shape[0]
    leading, eigenvalues = leading.double(), eigenvalues.double()
    fit = float((leading / eigenvalues).sum()) + (trace - float(leading.sum())) / noise
    log_det = float(torch.log(eigenvalues).sum()) + (d - q) * math.log(noise)
    return -0.5 * (d * math.log(2 * math.pi) + log_det + (n - 1) / n * fit)


def _closed_form(mean, eigenvalues, vectors, total_variance: float, q: int, d: int):
    """The closed form at ``q`` dimensions from the covariance's spectrum (decreasing):
    ``(leading eigenvalues, those floored at the noise, noise variance, its floor,
    directions (q, D))``. The noise is the mean discarded eigenvalue, at least
    ``eps * lambda_1`` so that data lying exactly in a subspace get a finite density."""
    leading = eigenvalues[:q]
    floor = float(torch.finfo(mean.dtype).eps) * max(float(leading[0]), 1e-300)
    noise = max((total_variance - float(leading.sum())) / (d - q), floor)
    return leading, leading.clamp_min(noise), noise, floor, vectors[:, :q].T.contiguous()


def _spectrum(cov: torch.Tensor):
    """Eigenvalues (decreasing, at least 0), unit eigenvectors (columns) and trace of ``cov``."""
    values, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
    return values.flip(0).clamp_min(0.0), vectors.flip(1), float(torch.trace(cov))


def _gram_spectrum(X: torch.Tensor, mean: torch.Tensor):
    """:func:`_spectrum` of the covariance of fewer rows than columns, from their Gram matrix.

    ``S u = l u`` with ``u = Xc^T v / sqrt((n - 1) l)`` for ``G v = l v``, where
    ``G = Xc Xc^T / (n - 1)`` is n x n: no D x D matrix, and only the ``n`` eigenvalues
    that can be non-zero.
    """
    n = X.shape[0]
    Xc = X - mean
    gram = (Xc @ Xc.T) / (n - 1)
    values, small = torch.linalg.eigh(0.5 * (gram + gram.T))
    values, small = values.flip(0).clamp_min(0.0), small.flip(1)
    scale = torch.sqrt((n - 1) * values.clamp_min(torch.finfo(Xc.dtype).tiny))
    vectors = (Xc.T @ small) / scale
    vectors = vectors / torch.linalg.vector_norm(vectors, dim=0).clamp_min(1e-300)
    return values, vectors, float(torch.trace(gram))


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


class PPCADensity(EMModel, GenerativeModel):
    """Probabilistic PCA density (Tipping & Bishop), maximum likelihood in closed form.

    A Gaussian whose covariance is low rank plus isotropic noise,
    ``N(mean_, W W^T + noise_variance_ I)``; the density behind PCA.

    Parameters
    ----------
    n_components : int or None, default=None
        Latent dimension ``q`` (``1 <= q < n_features``). ``None`` picks it by
        Minka's Laplace approximation of the evidence (with missing values: fewer
        where EM's noise variance would collapse there; see the Notes).
    max_iter : int, default=1000
        Maximum EM iterations when the training data have missing values (NaN);
        complete data are fitted in closed form.
    tol : float, default=1e-6
        EM stops when the mean log-likelihood of the observed entries improves by
        less than ``tol``.
    acceleration : {"squarem", None}, default="squarem"
        How EM with missing values steps. ``"squarem"`` (default) extrapolates its
        steps (SQUAREM, :mod:`skgenerative._em`): the same fixed points in fewer
        E-steps, judged converged on whole cycles. PPCA's EM moves at the rate of the
        missing information: with a fifth of the entries missing at random, plain EM
        stopped unconverged at ``max_iter`` on 6 of the 12 scikit-learn and ADBench
        tables of ``benchmarks/bench_ppca_missing.py`` (at a lower likelihood);
        SQUAREM converged on all of them, 1.07x to 7.6x sooner (satimage-2: 14 s
        against 80 s, one thread). None: plain EM, whose
        every step the bounds record.
    column_types : dict, list, tuple or None, default=None
        Types of the columns of a DataFrame (``{column: type}`` or one per column)
        where the pandas dtypes do not say it; see :mod:`skgenerative._schema`.
        PPCA models numeric columns only (``real``, ``positive``, ``count``, all as
        real numbers): a ``binary``, ``categorical`` or ``ordinal`` column, declared
        or inferred, raises a ``ValueError`` naming it and the estimators that
        model it.
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
    dtype : {"auto", "float32", "float64"}, default="auto"
        ``"auto"`` and ``"float64"``: float64 throughout (the closed form is one
        pass over the data; float32 would save little and cost digits).
        ``"float32"``: float32 throughout.
    random_state : int, RandomState instance or None, default=None
        Unused by the fit (it is deterministic); kept for the common contract.
    verbose : int, default=0
        1: one line with the dimension Minka's evidence chose (when
        ``n_components=None``) and, with missing values, a progress bar of the EM
        iterations where a terminal or notebook shows it, then one summary line;
        2: also a line per EM iteration.

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
    lower_bound_ : float
        Mean log-likelihood of the observed training entries at the last E-step; for
        complete data, that of the closed-form fit.
    lower_bounds_ : list of float
        The same, per EM iteration (one entry for complete data).
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

    With missing values (NaN) in the training data, EM (:func:`ppca_statistics`,
    :func:`ppca_m_step`) starts from the closed form on mean-imputed data and maximises
    the likelihood of the observed entries; ``score_samples`` of a row with NaN is the
    exact log-density of its observed entries. Maximum likelihood with missing values
    overfits where the latent dimension approaches the number of entries a row
    observes and some columns are (nearly) constant: EM's noise variance then
    collapses towards 0 until a row's latent posterior cannot be factorised
    (scikit-learn's digits with a fifth of the pixels missing, whose three constant
    pixels make Minka's evidence keep 61 to 63 of 64 dimensions). With
    ``n_components=None`` the fit then restarts at ``min(q // 2, m // 2)`` dimensions,
    ``m`` the mean number of entries a row observes, and again until EM fits (the
    digits: 25 dimensions with 20% missing, 15 with 50%), saying so at ``verbose=1``;
    a collapse at a given ``n_components`` raises a ``ValueError`` saying so.

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
        "acceleration": [StrOptions({"squarem"}), None],
        "column_types": [dict, list, tuple, None],
    }

    _supports_missing = True
    # dtype="auto": the closed form is one pass and an eigendecomposition, so it
    # keeps float64 (float32 would save little and cost digits)
    _auto_training_dtype = "float64"
    _em_convergence_message = (
        "PPCA EM with missing values did not converge in max_iter={max_iter} "
        "iterations; increase max_iter or tol."
    )

    def __init__(
        self,
        n_components=None,
        *,
        max_iter=1000,
        tol=1e-6,
        acceleration="squarem",
        column_types=None,
        contamination=0.1,
        device="auto",
        dtype="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.acceleration = acceleration
        self.column_types = column_types
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _n_latent(self) -> int:
        return int(self.n_components_)

    def _row_bytes(self, n_features: int) -> int:
        q = self.n_components or n_features
        return self._itemsize * (3 * n_features + 2 * q + 4)

    def _check_dimensions(self, n: int, d: int) -> None:
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

    def _fit(self, source):
        """The closed form from the rows' mean and covariance, in the training dtype.

        With missing values: the closed form of the data imputed by column means is
        the start (and gives the dimension) of EM over the observed entries.
        """
        n, d = source.shape
        self._check_dimensions(n, d)
        dtype = self._dtype
        has_missing = source.has_missing
        if n < d:  # fewer rows than columns: the n x n Gram matrix of the rows
            X = source.sample(limit=n).to(dtype)
            if has_missing:
                X = torch.where(torch.isnan(X), torch.nanmean(X, 0).expand_as(X), X)
            mean = X.mean(0)
            spectrum = _gram_spectrum(X, mean)
        else:
            mean, cov = source.covariance(dtype, fill_missing=has_missing)
            spectrum = _spectrum(cov)

        def make_data(start: PPCAParameters) -> _PPCAFitData:
            row_bytes = _em_row_bytes(d, start.loadings.shape[1], torch.finfo(dtype).bits // 8)
            return _PPCAFitData(EStep(source.map(Cast(dtype), dtype=dtype), ppca_statistics, row_bytes), start, dtype)

        def observed_per_row() -> float:
            return float(source.column_moments().count.sum()) / n

        self._fit_spectrum(mean, *spectrum, n, d, make_data if has_missing else None, observed_per_row)

    def _fit_spectrum(self, mean, eigenvalues, vectors, total_variance, n, d, make_data, observed_per_row=None) -> None:
        """Closed form from the covariance's spectrum; EM from it when ``make_data`` is given.

        ``make_data(start)`` builds the EM data (the observed rows) for data with missing
        values, the closed form of the mean-imputed data being the start. Where EM's
        noise variance collapses at the dimension Minka's evidence chose (a row's
        posterior cannot be factorised, or the discarded eigenvalues are zero), the fit
        restarts at ``min(q // 2, observed_per_row() // 2)`` dimensions, and again
        until it fits.
        """
        q = self.n_components
        if q is None:
            q = minka_dimension(eigenvalues.double().cpu().numpy(), n, d)
            self._log(f"Minka's evidence chose n_components={q}")
        if make_data is None:
            leading, kept, noise, _, components = _closed_form(mean, eigenvalues, vectors, total_variance, q, d)
            self._set_parameters(mean, components, kept, noise)
            self.n_iter_, self.converged_ = 1, True  # the closed form: one exact step
            self.lower_bound_ = closed_form_log_likelihood(leading, kept, noise, total_variance, n, d)
            self.lower_bounds_ = [self.lower_bound_]
            return None
        while True:
            _, kept, noise, floor, components = _closed_form(mean, eigenvalues, vectors, total_variance, q, d)
            chosen = self.n_components is not None or q == 1
            # eigenvalues beyond q zero to rounding (numpy's matrix_rank tolerance): EM's
            # noise variance would collapse
            why = "the eigenvalues beyond it are zero"
            if chosen or noise > d * floor:
                start = PPCAParameters(mean, components.T * torch.sqrt(kept - noise), noise)
                try:
                    self._em_fit(make_data(start), n_init=1, max_iter=self.max_iter, tol=self.tol)
                    return None
                except DegeneratePosteriorError:
                    if chosen:
                        raise
                    why = "a row's latent posterior became degenerate"
            observed = observed_per_row()
            q_new = max(1, min(q // 2, int(observed) // 2))
            self._log(
                f"EM's noise variance collapses at n_components={q} ({why}; rows observe "
                f"{observed:.1f} entries on average): refitting with n_components={q_new}"
            )
            q = q_new

    def _set_parameters(self, mean, components, eigenvalues, noise) -> None:
        # deterministic signs: the largest-magnitude entry of each direction positive
        pivot = torch.argmax(components.abs(), dim=1)
        signs = torch.sign(components[torch.arange(components.shape[0], device=components.device), pivot])
        self.n_components_ = int(components.shape[0])
        self.mean_ = mean.double().cpu().numpy()
        self.components_ = (components * signs.unsqueeze(1)).double().cpu().numpy()
        self.explained_variance_ = eigenvalues.double().cpu().numpy()
        self.noise_variance_ = float(noise)

    # ---------------------------------------------------- EM with missing values
    def _em_initialize(self, data, generator) -> PPCAParameters:
        return data.start

    def _em_m_step(self, data, statistics, params) -> PPCAParameters:
        return ppca_m_step(statistics, params, min_noise=_least_noise(data.dtype))

    @property
    def _em_accelerated(self) -> bool:
        return getattr(self, "acceleration", None) == "squarem"  # (models pickled before it: plain)

    def _em_coordinates(self, data, params) -> tuple:
        """SQUAREM's coordinates (:mod:`skgenerative._em`): the mean, the loadings and
        the log noise variance."""
        log_noise = torch.tensor(math.log(params.noise_variance), dtype=params.mean.dtype, device=params.mean.device)
        return params.mean, params.loadings, log_noise

    def _em_from_coordinates(self, data, coordinates: tuple, params) -> PPCAParameters:
        """Parameters from SQUAREM's coordinates, the noise variance floored as in the M-step."""
        mean, loadings, log_noise = coordinates
        if not float(log_noise) < 700.0:  # (a NaN too) no finite variance
            return None
        return PPCAParameters(mean, loadings, max(math.exp(float(log_noise)), _least_noise(data.dtype)))

    def _em_set_parameters(self, data, params) -> None:
        mean, W, noise = params
        # back to orthonormal directions: W W^T = U diag(s^2) U^T
        U, singular, _ = torch.linalg.svd(W, full_matrices=False)
        self._set_parameters(mean, U.T.contiguous(), singular.square() + noise, noise)

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
