"""Gaussian mixture density fitted by EM, in torch.

The model is ``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` with one of four covariance
structures (full, tied, diag, spherical). The EM iterations follow scikit-learn's
``GaussianMixture`` step for step, so that started from the same parameters both give
the same model; the work is chunked so that memory stays bounded and, on the CPU, each
chunk stays in cache. The loop itself (restarts, convergence, ``warm_start``) is
:class:`skgenerative._em.EMModel`; this module supplies the E-step
(:func:`mixture_statistics`), the M-step (:func:`gaussian_parameters_from_statistics`)
and the initialisation.

Precision Cholesky factors ``P_k`` (``P_k P_k^T = Sigma_k^{-1}``) parametrise the
Gaussians, as in scikit-learn: ``log N(x; mu, Sigma) = -D/2 log 2 pi + log|det P|
- ||(x - mu) P||^2 / 2``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from ._em import EMModel, EStep, accumulate, add_statistics
from ._explain import gaussian_mixture_conditionals
from ._schema import COLUMN_TYPES, point_levels
from ._torch import chunk_rows, generator_from, has_nan, iter_slices, seed_from
from .base import GenerativeModel, lazy_rows

__all__ = [
    "GaussianMixtureDensity",
    "compute_precision_cholesky",
    "estimate_gaussian_parameters",
    "estimate_log_gaussian_prob",
    "gaussian_statistics",
    "gaussian_parameters_from_statistics",
    "conditional_gaussian",
    "conditional_gaussian_diag",
    "covariances_from_precision_cholesky",
    "component_conditionals",
    "MixtureParameters",
    "mixture_statistics",
    "initial_responsibilities",
    "check_initial_parameters",
    "draw_conditional_mixture",
    "sample_mixture",
    "one_hot_levels",
    "level_log_probabilities",
    "level_probabilities_from_counts",
]

_COVARIANCE_ERROR = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the "
    "input data{extra}."
)


# --------------------------------------------------------------------- mathematics
def compute_precision_cholesky(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Cholesky factors of the precision matrices from the covariances.

    For full and tied covariances ``Sigma = C C^T`` (C lower triangular) and the
    returned factor is ``P = C^{-T}`` (upper triangular), so ``P P^T = Sigma^{-1}``.
    For diag and spherical it is ``1 / sqrt(Sigma)``. Raises ``ValueError`` pointing
    to ``reg_covar`` when a covariance is not positive definite.
    """
    extra = ", or use dtype='float64'" if covariances.dtype == torch.float32 else ""
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()):
            raise ValueError(_COVARIANCE_ERROR.format(extra=extra))
        eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype, device=covariances.device)
        eye = eye.expand_as(covariances)
        inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)
        return inv_chol.transpose(-1, -2).contiguous()
    if bool((covariances <= 0).any()) or not bool(torch.isfinite(covariances).all()):
        raise ValueError(_COVARIANCE_ERROR.format(extra=extra))
    return torch.rsqrt(covariances)


def _precision_cholesky_from_precisions(precisions: torch.Tensor, covariance_type: str):
    # any P with P P^T = Lambda serves; like scikit-learn, take Lambda's lower Cholesky
    if covariance_type in ("full", "tied"):
        chol, info = torch.linalg.cholesky_ex(precisions)
        if bool((info != 0).any()):
            raise ValueError("'precisions_init' should be symmetric, positive-definite.")
        return chol
    return torch.sqrt(precisions)


def _log_det_cholesky(precisions_chol: torch.Tensor, covariance_type: str, n_features: int):
    """log|det P| per component (a scalar for tied)."""
    if covariance_type == "full":
        return torch.log(torch.diagonal(precisions_chol, dim1=-2, dim2=-1)).sum(-1)
    if covariance_type == "tied":
        return torch.log(torch.diagonal(precisions_chol)).sum()
    if covariance_type == "diag":
        return torch.log(precisions_chol).sum(-1)
    return n_features * torch.log(precisions_chol)


def estimate_log_gaussian_prob(
    X: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor, covariance_type: str
) -> torch.Tensor:
    """``log N(x_i; mu_k, Sigma_k)`` for every row and component, shape (n, K).

    Full covariances use one matrix product ``X [P_1 ... P_K]`` for all components;
    diag and spherical use the expansion ``||x||^2 - 2 x.mu + ||mu||^2`` with the
    precisions folded in (both as in scikit-learn). Centre ``X`` and ``means`` by the
    same vector first for accuracy; the result does not depend on it.
    """
    n, d = X.shape
    k = means.shape[0]
    if covariance_type == "full":
        stacked = precisions_chol.permute(1, 0, 2).reshape(d, k * d)
        shift = torch.einsum("kd,kde->ke", means, precisions_chol).reshape(k * d)
        y = torch.addmm(-shift, X, stacked).view(n, k, d)
        maha = torch.linalg.vector_norm(y, dim=-1).square()
    elif covariance_type == "tied":
        y = (X @ precisions_chol).unsqueeze(1) - (means @ precisions_chol).unsqueeze(0)
        maha = torch.linalg.vector_norm(y, dim=-1).square()
    elif covariance_type == "diag":
        prec = precisions_chol.square()
        maha = (
            (means.square() * prec).sum(1)
            - 2.0 * X @ (means * prec).T
            + X.square() @ prec.T
        )
    else:
        prec = precisions_chol.square()
        maha = (
            (means.square().sum(1) * prec)
            - 2.0 * (X @ means.T) * prec
            + X.square().sum(1, keepdim=True) * prec
        )
    log_det = _log_det_cholesky(precisions_chol, covariance_type, d)
    return -0.5 * (d * math.log(2 * math.pi) + maha) + log_det


def gaussian_statistics(
    X: torch.Tensor, resp: torch.Tensor, covariance_type: str, second_moments: bool = True
):
    """Sufficient statistics of a chunk: ``(sum_i r_ik, sum_i r_ik x_i, second moments)``.

    The second moments are ``sum_i r_ik x_i x_i^T`` (full, shape (K, D, D)),
    ``sum_i x_i x_i^T`` (tied, (D, D)) or ``sum_i r_ik x_i * x_i`` (diag and
    spherical, (K, D)); ``None`` when ``second_moments=False``. Sums over chunks add up.
    """
    n, d = X.shape
    k = resp.shape[1]
    nk = resp.sum(0)
    sx = resp.T @ X
    if not second_moments:
        sxx = None
    elif covariance_type == "full":
        weighted = (resp.unsqueeze(2) * X.unsqueeze(1)).reshape(n, k * d)
        sxx = (X.T @ weighted).view(d, k, d).permute(1, 0, 2)
    elif covariance_type == "tied":
        sxx = X.T @ X
    else:
        sxx = resp.T @ X.square()
    return nk, sx, sxx


def gaussian_parameters_from_statistics(
    nk: torch.Tensor,
    sx: torch.Tensor,
    sxx: torch.Tensor,
    reg_covar: float,
    covariance_type: str,
    prior_count: float = 0.0,
    prior_variance: torch.Tensor | None = None,
):
    """M-step: ``(nk, means, covariances)`` from summed statistics.

    ``nk`` gets ``10 eps`` added (as in scikit-learn) so that an empty component
    gives finite means; ``reg_covar`` is added to the diagonal.

    With ``prior_count = c > 0`` the covariances are the MAP estimates under a
    conjugate prior centred on ``Psi = diag(prior_variance)`` (Fraley & Raftery,
    2007): ``Sigma_k = (n_k S_k + c Psi) / (n_k + c)``, where ``S_k`` is the
    component's maximum-likelihood covariance; as if ``c`` pseudo-observations with
    covariance ``Psi`` joined every component. A component that has collapsed onto
    a few points keeps about the data's spread instead of shrinking to
    ``reg_covar``; large components barely change.
    """
    nk = nk + 10 * torch.finfo(nk.dtype).eps
    means = sx / nk.unsqueeze(1)
    shrink = prior_count > 0
    if covariance_type == "full":
        cov = sxx / nk.view(-1, 1, 1) - means.unsqueeze(2) * means.unsqueeze(1)
        cov = 0.5 * (cov + cov.transpose(1, 2))
        if shrink:
            weight = (nk / (nk + prior_count)).view(-1, 1, 1)
            cov = weight * cov + (1 - weight) * torch.diag(prior_variance)
        cov = cov + reg_covar * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    elif covariance_type == "tied":
        total = nk.sum()
        cov = (sxx - (nk.unsqueeze(1) * means).T @ means) / total
        cov = 0.5 * (cov + cov.T)
        if shrink:
            weight = total / (total + prior_count)
            cov = weight * cov + (1 - weight) * torch.diag(prior_variance)
        cov = cov + reg_covar * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    else:
        cov = sxx / nk.unsqueeze(1) - means.square()
        if shrink:
            weight = (nk / (nk + prior_count)).unsqueeze(1)
            cov = weight * cov + (1 - weight) * prior_variance
        cov = cov + reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(1)
    return nk, means, cov


def estimate_gaussian_parameters(
    X: torch.Tensor, resp: torch.Tensor, reg_covar: float, covariance_type: str
):
    """``(nk, means, covariances)`` from data and responsibilities (one chunk)."""
    return gaussian_parameters_from_statistics(
        *gaussian_statistics(X, resp, covariance_type), reg_covar, covariance_type
    )


def _covariance_cholesky(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """A factor ``C`` with ``C C^T = Sigma`` (lower triangular), or ``sqrt(Sigma)``."""
    if covariance_type in ("full", "tied"):
        return torch.linalg.cholesky(covariances)
    return torch.sqrt(covariances)


def conditional_gaussian(X: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor):
    """Per row, the Gaussian ``N(mean, cov)`` split into observed (o) and missing (m) parts.

    ``X`` holds NaN where entries are missing. Returns, for each row,

    - ``log N(x_o; mu_o, S_oo)`` (0 for a row with nothing observed),
    - ``x`` with the missing entries replaced by ``E[x_m | x_o] = mu_m + S_mo S_oo^{-1} (x_o - mu_o)``,
    - ``Cov[x_m | x_o] = S_mm - S_mo S_oo^{-1} S_om`` embedded in a (D, D) matrix that is
      zero outside the missing block.

    All rows are processed at once: with ``M = diag(observed)`` the matrix
    ``S~ = M S M + (I - M)`` is block diagonal (``S_oo`` and an identity), so one batched
    Cholesky factorisation serves every missingness pattern, ``v = S~^{-1} r`` (with
    ``r = M (x - mu)``) vanishes on the missing coordinates, and ``mu + S v`` equals
    ``x_o`` on the observed ones and the conditional mean on the missing ones.
    """
    observed = ~torch.isnan(X)
    m = observed.to(X.dtype)
    r = torch.where(observed, X - mean, torch.zeros_like(X))
    masked = cov * m.unsqueeze(2) * m.unsqueeze(1) + torch.diag_embed(1.0 - m)
    chol, info = torch.linalg.cholesky_ex(masked)
    if bool((info != 0).any()):
        raise ValueError(_COVARIANCE_ERROR.format(extra=""))
    v = torch.cholesky_solve(r.unsqueeze(2), chol).squeeze(2)
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(1)
    log_marginal = -0.5 * (m.sum(1) * math.log(2 * math.pi) + log_det + (r * v).sum(1))
    filled = torch.where(observed, X, mean + v @ cov)
    inverse_oo = torch.cholesky_inverse(chol) - torch.diag_embed(1.0 - m)
    missing = (1.0 - m)
    cond_cov = (cov - cov @ inverse_oo @ cov) * missing.unsqueeze(2) * missing.unsqueeze(1)
    return log_marginal, filled, cond_cov


def conditional_gaussian_diag(X: torch.Tensor, mean: torch.Tensor, var: torch.Tensor):
    """:func:`conditional_gaussian` for a diagonal covariance ``diag(var)``.

    Coordinates are independent, so ``E[x_m | x_o] = mu_m`` and the conditional
    variances are ``var_m``; the conditional covariance is returned as its diagonal.
    """
    observed = ~torch.isnan(X)
    var = var.expand_as(X)
    r2 = torch.where(observed, (X - mean).square() / var + torch.log(2 * math.pi * var), torch.zeros_like(X))
    log_marginal = -0.5 * r2.sum(1)
    filled = torch.where(observed, X, mean.expand_as(X))
    cond_var = torch.where(observed, torch.zeros_like(X), var)
    return log_marginal, filled, cond_var


def covariances_from_precision_cholesky(precisions_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """``Sigma = (P P^T)^{-1}`` from precision Cholesky factors (``1 / P^2`` for diag, spherical)."""
    if covariance_type in ("full", "tied"):
        inv = torch.linalg.inv(precisions_chol)
        return inv.transpose(-1, -2) @ inv
    return 1.0 / precisions_chol.square()


def _precisions_from_cholesky(precisions_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type in ("full", "tied"):
        return precisions_chol @ np.swapaxes(precisions_chol, -1, -2)
    return precisions_chol**2


def component_conditionals(
    X: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor, covariance_type: str
) -> list:
    """:func:`conditional_gaussian` (or its diagonal form) of each component, in order."""
    out = []
    for k in range(means.shape[0]):
        if covariance_type == "full":
            out.append(conditional_gaussian(X, means[k], covariances[k]))
        elif covariance_type == "tied":
            out.append(conditional_gaussian(X, means[k], covariances))
        elif covariance_type == "diag":
            out.append(conditional_gaussian_diag(X, means[k], covariances[k]))
        else:
            out.append(conditional_gaussian_diag(X, means[k], covariances[k].expand(X.shape[1])))
    return out


def draw_conditional_mixture(
    X: torch.Tensor, parts: list, resp: torch.Tensor, n_draws: int, generator: torch.Generator,
    covariance_type: str, choice: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n_draws`` draws per row of ``X`` (NaN where missing) from ``p(x_m | x_o)``.

    ``p(x_m | x_o) = sum_k r_k N(E[x_m | x_o, k], Cov[x_m | x_o, k])`` with ``parts`` the
    :func:`component_conditionals` of ``X`` and ``resp`` (n, K) the component
    probabilities given the observed entries. Returns (n, n_draws, D); observed entries
    keep their values. ``choice`` (n, n_draws), when given, fixes the component of
    each draw (the mixed model draws it once for the numbers and the levels).
    """
    n, d = X.shape
    if choice is None:
        choice = torch.multinomial(resp, n_draws, replacement=True, generator=generator)
    observed = (~torch.isnan(X)).to(X.dtype)
    out = torch.zeros(n, n_draws, d, dtype=X.dtype, device=X.device)
    for k, (_, filled, cond) in enumerate(parts):
        z = torch.randn(n, n_draws, d, generator=generator, dtype=X.dtype, device=X.device)
        if covariance_type in ("full", "tied"):
            # identity on the observed block keeps the factorisation defined
            factor = torch.linalg.cholesky(cond + torch.diag_embed(observed))
            draw = filled.unsqueeze(1) + z @ factor.transpose(1, 2)
        else:
            draw = filled.unsqueeze(1) + z * cond.sqrt().unsqueeze(1)
        out = torch.where((choice == k).unsqueeze(2), draw, out)
    return out


def sample_mixture(
    weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor, covariance_type: str,
    n: int, generator: torch.Generator, labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """``n`` draws ``x = mu_k + C_k z`` (``C_k C_k^T = Sigma_k``) with ``k ~ w``, in random order.

    ``labels`` (n,), when given, are the components ``k`` of the draws.
    """
    factor = _covariance_cholesky(covariances, covariance_type)
    if labels is None:
        labels = torch.multinomial(weights, n, replacement=True, generator=generator)
    z = torch.randn(n, means.shape[1], generator=generator, dtype=means.dtype, device=means.device)
    out = torch.empty_like(z)
    for k in range(means.shape[0]):
        rows = (labels == k).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        zk = z[rows]
        if covariance_type == "full":
            out[rows] = means[k] + zk @ factor[k].T
        elif covariance_type == "tied":
            out[rows] = means[k] + zk @ factor.T
        else:
            out[rows] = means[k] + zk * factor[k]
    return out


def _incomplete_chunk_rows(n_rows: int, n_features: int, itemsize: int, device) -> int:
    """Rows of incomplete data per piece: each needs a few (D, D) temporaries."""
    return chunk_rows(8 * n_features * n_features * itemsize, n_rows, device)


# -------------------------------------------------------------------------- E-step
class MixtureParameters(NamedTuple):
    """What EM carries from one step to the next (tensors in the compute dtype).

    ``precisions_cholesky`` (``P P^T = Sigma^{-1}``) scores complete rows and
    ``covariances`` the rows with missing entries; shapes by covariance type.
    ``covariances`` is ``None`` before the first M-step. ``log_levels`` (K, L): the
    log-probabilities of the levels of the discrete columns, one block of columns per
    discrete column (``None`` for numeric data).
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor | None
    precisions_cholesky: torch.Tensor
    log_levels: torch.Tensor | None = None


def normalised_responsibilities(weighted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log sum_k exp w_ik, r_ik = exp(w_ik) / sum_k exp w_ik)`` from ``w`` of shape (n, K).

    One exponential per entry, where ``logsumexp`` then ``exp(w - norm)`` take two:
    the exponentials were a quarter of a full-covariance EM iteration on the CPU.
    """
    top = weighted.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    resp = torch.exp(weighted - top)
    total = resp.sum(1, keepdim=True)
    resp /= total
    return (top + total.log()).squeeze(1), resp


def _complete_statistics(X, log_weights, params, covariance_type, second_moments, onehot=None):
    weighted = estimate_log_gaussian_prob(X, params.means, params.precisions_cholesky, covariance_type)
    norm, resp = normalised_responsibilities(weighted + log_weights)
    nk, sx, sxx = gaussian_statistics(X, resp, covariance_type, second_moments=second_moments)
    if sxx is None:  # tied, left to the caller
        sxx = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64, device=X.device)
    out = {"log_likelihood": norm.double().sum(), "n_samples": X.shape[0],
           "nk": nk.double(), "sx": sx.double(), "sxx": sxx.double()}
    if onehot is not None:
        out["levels"] = (resp.T @ onehot).double()
    return out


def _incomplete_statistics(X, log_weights, params, covariance_type, onehot=None):
    parts = component_conditionals(X, params.means, params.covariances, covariance_type)
    norm, resp = normalised_responsibilities(torch.stack([p[0] for p in parts], dim=1) + log_weights)
    nk = resp.sum(0)
    sx = torch.stack([resp[:, k] @ f for k, (_, f, _) in enumerate(parts)])
    if covariance_type in ("full", "tied"):
        sxx = torch.stack([
            (f * resp[:, k, None]).T @ f + (resp[:, k, None, None] * c).sum(0)
            for k, (_, f, c) in enumerate(parts)
        ])
        if covariance_type == "tied":
            sxx = sxx.sum(0)
    else:
        sxx = torch.stack([resp[:, k] @ (f.square() + c) for k, (_, f, c) in enumerate(parts)])
    out = {"log_likelihood": norm.double().sum(), "n_samples": X.shape[0],
           "nk": nk.double(), "sx": sx.double(), "sxx": sxx.double()}
    if onehot is not None:
        out["levels"] = (resp.T @ onehot).double()
    return out


def mixture_statistics(
    X: torch.Tensor,
    params: MixtureParameters,
    covariance_type: str,
    complete_second_moments: bool = True,
    row_log_prob: torch.Tensor | None = None,
    onehot: torch.Tensor | None = None,
) -> dict:
    """E-step on a chunk: expected sufficient statistics given the observed entries.

    ``X`` holds NaN where entries are missing (rows with NaN need
    ``params.covariances``; complete rows use ``params.precisions_cholesky``). With
    responsibilities
    ``r_ik = p(k | x_i,o)`` (from the marginal ``N(x_o; mu_k,o, Sigma_k,oo)``) and, per
    component, ``x^_ik`` the row with its missing entries replaced by
    ``E[x_m | x_o, k]`` and ``C_ik`` the conditional covariance ``Cov[x_m | x_o, k]``
    (zero outside the missing block; Ghahramani & Jordan, 1994):

    - ``log_likelihood = sum_i log sum_k w_k N(x_i,o; mu_k,o, Sigma_k,oo)`` (float64),
    - ``n_samples``, the number of rows,
    - ``nk = sum_i r_ik``, ``sx = sum_i r_ik x^_ik``,
    - ``sxx = sum_i r_ik (x^_ik x^_ik^T + C_ik)`` per component (full), summed over
      components (tied) or its diagonal (diag, spherical).

    A complete row has ``x^_ik = x_i`` and ``C_ik = 0``: the plain statistics of
    :func:`gaussian_statistics`. Every entry is a sum over rows (in float64), so the
    statistics of a partition of the rows add up to those of the whole. With
    ``complete_second_moments=False`` a tied model's ``sxx`` leaves out the complete rows'
    ``sum_i x_i x_i^T``, which does not depend on the parameters (EM forms it once).

    The mixed model passes ``row_log_prob`` (n, K), the log-probability of each row's
    observed levels under each component (added to ``log w_k`` before the
    responsibilities are normalised), and the rows' level indicators ``onehot``
    (n, L); the statistics then also hold ``levels = sum_i r_ik onehot_i`` (K, L),
    the expected level counts per component.
    """
    log_weights = torch.log(params.weights)
    if row_log_prob is not None:
        log_weights = log_weights + row_log_prob
    parts = []
    if has_nan(X):
        incomplete = torch.isnan(X).any(1)
        if bool(incomplete.any()):
            parts.append(_incomplete_statistics(
                X[incomplete], log_weights if row_log_prob is None else log_weights[incomplete],
                params, covariance_type, None if onehot is None else onehot[incomplete],
            ))
            X = X[~incomplete]
            if row_log_prob is not None:
                log_weights = log_weights[~incomplete]
            if onehot is not None:
                onehot = onehot[~incomplete]
    if X.shape[0] > 0 or not parts:
        second_moments = complete_second_moments or covariance_type != "tied"
        parts.append(_complete_statistics(X, log_weights, params, covariance_type, second_moments, onehot))
    return functools.reduce(add_statistics, parts)


# ------------------------------------------------------------- discrete columns
def one_hot_levels(codes: torch.Tensor, n_levels) -> torch.Tensor:
    """Level indicators (n, L) of level codes (n, J): one block of ``K_j`` columns per column.

    ``codes`` holds the codes ``0 .. K_j - 1`` as floats and NaN where a cell is
    missing; a missing cell's block is all zeros, so that any sum over levels
    weighted by the indicators (a log-probability, a count) leaves it out.
    """
    blocks = [
        (codes[:, j, None] == torch.arange(k, dtype=codes.dtype, device=codes.device)).to(codes.dtype)
        for j, k in enumerate(n_levels)
    ]
    if not blocks:
        return codes.new_zeros(codes.shape[0], 0)
    return torch.cat(blocks, dim=1)


def level_log_probabilities(onehot: torch.Tensor, log_levels: torch.Tensor) -> torch.Tensor:
    """``sum_j log theta_kj(x_ij)`` over the observed levels of each row: (n, K)."""
    return onehot @ log_levels.T


def level_probabilities_from_counts(counts: torch.Tensor, n_levels, prior: float) -> torch.Tensor:
    """M-step of the level probabilities: ``(c_kjl + a) / (c_kj + a K_j)``, per block.

    ``counts`` (K, L) are the expected level counts ``sum_i r_ik [x_ij = l]`` (over
    the rows where column ``j`` is observed), ``a = prior`` the pseudo-count of every
    level: the posterior mode under a symmetric Dirichlet(1 + a) prior, so that no
    probability is exactly 0 (a level absent from a component keeps about ``a /
    n_k``). Returns the probabilities (K, L), each block summing to one.
    """
    out, start = [], 0
    for k in n_levels:
        block = counts[:, start:start + k] + prior
        out.append(block / block.sum(1, keepdim=True))
        start += k
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------- initialisation
def _sq_distances(X: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    d2 = (
        X.square().sum(1, keepdim=True)
        - 2.0 * X @ centers.T
        + centers.square().sum(1).unsqueeze(0)
    )
    return d2.clamp_min_(0.0)


def _kmeans_plusplus(X: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``k`` seeds chosen by greedy k-means++ (Arthur & Vassilvitskii).

    Each new seed is the best of ``2 + log k`` candidates drawn with probability
    proportional to the squared distance to the nearest seed so far.
    """
    n = X.shape[0]
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator, device=X.device)
    indices = [first]
    closest = _sq_distances(X, X[first]).squeeze(1)
    for _ in range(1, k):
        total = closest.sum()
        if float(total) <= 0:  # every point coincides with a seed
            candidates = torch.randint(n, (trials,), generator=generator, device=X.device)
        else:
            candidates = torch.multinomial(closest / total, trials, replacement=True, generator=generator)
        distance = torch.minimum(closest.unsqueeze(1), _sq_distances(X, X[candidates]))
        best = torch.argmin(distance.sum(0))
        closest = distance[:, best]
        indices.append(candidates[best].view(1))
    return torch.cat(indices)


def _kmeans_labels(
    X: torch.Tensor, k: int, generator: torch.Generator, max_iter: int = 300, tol: float = 1e-4
) -> torch.Tensor:
    """Lloyd's k-means from k-means++ seeds; the labels of the final assignment."""
    n, d = X.shape
    size = chunk_rows(X.element_size() * (k + d), n, X.device)
    centers = X[_kmeans_plusplus(X, k, generator)].clone()
    threshold = tol * float(X.var(0).mean()) if n > 1 else 0.0
    labels = torch.empty(n, dtype=torch.long, device=X.device)
    for _ in range(max_iter):
        for rows in iter_slices(n, size):
            labels[rows] = torch.argmin(_sq_distances(X[rows], centers), dim=1)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=k).to(X.dtype)
        empty = counts == 0
        new = torch.where(empty.unsqueeze(1), centers, sums / counts.clamp_min(1).unsqueeze(1))
        shift = float((new - centers).square().sum())
        centers = new
        if shift <= threshold:
            break
    for rows in iter_slices(n, size):
        labels[rows] = torch.argmin(_sq_distances(X[rows], centers), dim=1)
    return labels



def initial_responsibilities(
    X: torch.Tensor, n_components: int, init_params: str, generator: torch.Generator
) -> torch.Tensor:
    """Starting responsibilities (n, K) by scikit-learn's ``init_params`` rules.

    ``"kmeans"``: one-hot labels of Lloyd's k-means from k-means++ seeds;
    ``"k-means++"``: the seeds alone (one row per component); ``"random"``: uniform
    draws normalised per row; ``"random_from_data"``: ``K`` distinct random rows.
    """
    n, k = X.shape[0], n_components
    dtype, device = X.dtype, X.device
    if init_params == "kmeans":
        labels = _kmeans_labels(X, k, generator)
        return torch.nn.functional.one_hot(labels, k).to(dtype)
    if init_params == "random":
        resp = torch.rand(n, k, generator=generator, dtype=dtype, device=device)
        return resp / resp.sum(1, keepdim=True)
    if init_params == "k-means++":
        indices = _kmeans_plusplus(X, k, generator)
    else:
        indices = torch.randperm(n, generator=generator, device=device)[:k]
    resp = torch.zeros(n, k, dtype=dtype, device=device)
    resp[indices, torch.arange(k, device=device)] = 1.0
    return resp


def check_initial_parameters(
    weights_init, means_init, precisions_init, n_components: int, n_features: int, covariance_type: str
) -> dict:
    """Validate user-given starting parameters (scikit-learn's checks and messages).

    Returns a dict with the keys ``"weights"``, ``"means"``, ``"precisions"`` of those
    given, as numpy arrays.
    """
    k, cov = n_components, covariance_type
    out = {}
    if weights_init is not None:
        w = check_array(weights_init, dtype=[np.float64, np.float32], ensure_2d=False)
        if w.shape != (k,):
            raise ValueError(f"The parameter 'weights' should have the shape of ({k},), but got {w.shape}")
        if w.min() < 0 or w.max() > 1:
            raise ValueError(
                "The parameter 'weights' should be in the range [0, 1], but got "
                f"max value {w.max():.5f}, min value {w.min():.5f}"
            )
        if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError(
                f"The parameter 'weights' should be normalized, but got sum(weights) = {w.sum():.5f}"
            )
        out["weights"] = w
    if means_init is not None:
        m = check_array(means_init, dtype=[np.float64, np.float32])
        if m.shape != (k, n_features):
            raise ValueError(
                f"The parameter 'means' should have the shape of {(k, n_features)}, but got {m.shape}"
            )
        out["means"] = m
    if precisions_init is not None:
        p = check_array(precisions_init, dtype=[np.float64, np.float32], ensure_2d=False, allow_nd=True)
        shape = {
            "full": (k, n_features, n_features),
            "tied": (n_features, n_features),
            "diag": (k, n_features),
            "spherical": (k,),
        }[cov]
        if p.shape != shape:
            raise ValueError(
                f"The parameter '{cov} precision' should have the shape of {shape}, but got {p.shape}"
            )
        if cov in ("full", "tied"):
            if not np.allclose(p, np.swapaxes(p, -1, -2)):
                raise ValueError(f"'{cov} precision' should be symmetric, positive-definite")
        elif (p <= 0).any():
            raise ValueError(f"'{cov} precision' should be positive")
        out["precisions"] = p
    return out


def n_mixture_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of the mixture (for BIC and AIC)."""
    k, d = n_components, n_features
    cov_params = {
        "full": k * d * (d + 1) / 2.0,
        "diag": k * d,
        "tied": d * (d + 1) / 2.0,
        "spherical": k,
    }[covariance_type]
    return int(cov_params + k * d + k - 1)


# ----------------------------------------------------------------- the EM fit
class _MixtureRows:
    """Training rows as EM reads them: the numeric columns centred at ``center`` (in the
    rows' own precision) and cast to the training dtype, then the level indicators of
    the discrete columns (:func:`one_hot_levels`). A picklable map of a data source."""

    def __init__(self, numeric, discrete, n_levels, center, dtype):
        self.numeric, self.discrete, self.n_levels = numeric, discrete, n_levels
        self.center, self.dtype = center, dtype

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        if not self.discrete:
            return (X - self.center.to(X.device)).to(self.dtype)
        Xc = (X[:, self.numeric] - self.center.to(X.device)).to(self.dtype)
        onehot = one_hot_levels(X[:, self.discrete], self.n_levels).to(self.dtype)
        return torch.cat([Xc, onehot], dim=1)


def _split_columns(rows: torch.Tensor, n_numeric: int, mixed: bool):
    """Prepared rows -> (numbers, level indicators or None)."""
    if not mixed:
        return rows, None
    return rows[:, :n_numeric].contiguous(), rows[:, n_numeric:].contiguous()


class _MixtureStatistics:
    """The E-step on a chunk of prepared rows (picklable: it travels to dask workers).

    Rows with a missing number go first, in pieces small enough for their (D, D)
    temporaries (:func:`_incomplete_chunk_rows`), then the complete rows; each piece
    gives :func:`mixture_statistics` (with the level terms for a mixed table), and the
    pieces add up. A tied model's complete rows leave out ``sum x x^T`` (formed once).
    """

    def __init__(self, covariance_type: str, n_numeric: int, mixed: bool):
        self.covariance_type, self.n_numeric, self.mixed = covariance_type, n_numeric, mixed

    def __call__(self, chunk: torch.Tensor, params: MixtureParameters) -> dict:
        x, onehot = _split_columns(chunk, self.n_numeric, self.mixed)
        pieces = []
        if self.n_numeric and has_nan(x):
            incomplete = torch.isnan(x).any(1)
            n_incomplete = int(incomplete.sum())
            if n_incomplete:
                size = _incomplete_chunk_rows(n_incomplete, self.n_numeric, x.element_size(), x.device)
                xi = x[incomplete]
                hi = None if onehot is None else onehot[incomplete]
                pieces += [(xi[sub], None if hi is None else hi[sub]) for sub in iter_slices(n_incomplete, size)]
                x = x[~incomplete]
                onehot = None if onehot is None else onehot[~incomplete]
        if x.shape[0] or not pieces:
            pieces.append((x, onehot))
        return accumulate(pieces, lambda piece: self._piece(*piece, params))

    def _piece(self, x, onehot, params) -> dict:
        cov = self.covariance_type
        if onehot is None:
            return mixture_statistics(x, params, cov, complete_second_moments=False)
        levels = level_log_probabilities(onehot, params.log_levels)
        if x.shape[1]:
            return mixture_statistics(x, params, cov, complete_second_moments=False,
                                      row_log_prob=levels, onehot=onehot)
        norm, resp = normalised_responsibilities(torch.log(params.weights) + levels)
        return {"log_likelihood": norm.double().sum(), "n_samples": x.shape[0],
                "nk": resp.sum(0).double(), "levels": (resp.T @ onehot).double()}


def _complete_second_moments(chunk: torch.Tensor, n_numeric: int) -> dict:
    """``sum x x^T`` over the rows of a chunk with no missing number (float64)."""
    x = chunk[:, :n_numeric]
    complete = x[~torch.isnan(x).any(1)].double()
    return {"sxx": complete.T @ complete}


@dataclass
class _MixtureFitData:
    """What one fit prepares once for its EM runs (from the data source)."""

    e_step: EStep
    init_rows: torch.Tensor  # prepared rows of the initialisation (all, in memory)
    center: torch.Tensor  # the numeric columns' mean, in the input's dtype
    dtype: torch.dtype  # the training dtype
    has_missing: bool  # whether a number is missing
    prior_variance: torch.Tensor  # the covariance prior's centre
    tied_second_moments: torch.Tensor | None  # sum x x^T over complete rows (tied)
    init: dict  # validated *_init arrays
    n_levels: tuple = ()  # levels of each discrete column (a mixed table)

    @property
    def n_numeric(self) -> int:
        return int(self.center.shape[0])


def prepare_mixture_fit(estimator, source, seed: int) -> _MixtureFitData:
    """A data source's rows ready for a mixture's EM: one pass of column moments (the
    centre and the prior's variances), the prepared rows (a map of the source), the
    initialisation's rows and, for tied covariances, the complete rows' ``sum x x^T``.

    EM runs on data centred at its mean (the model is translation equivariant): it
    keeps the uncentred second moments well conditioned.
    """
    est = estimator
    n, k, cov = source.shape[0], est.n_components, est.covariance_type
    if n < k:
        raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}")
    numeric, discrete = est.schema_.numeric_columns, est.schema_.discrete
    d = len(numeric)
    init = check_initial_parameters(est.weights_init, est.means_init, est.precisions_init, k, d, cov)
    moments = source.column_moments()
    center = moments.mean[numeric].to(device=source.device, dtype=source.dtype)
    dtype = est._dtype
    n_levels = tuple(est.schema_.n_levels(j) for j in discrete)
    prepare = _MixtureRows(numeric, discrete, n_levels, center, dtype)
    rows = source.map(prepare, dtype=dtype, width=d + sum(n_levels))
    row_bytes = est._row_bytes(source.shape[1]) * 2
    has_missing = d > 0 and moments.has_missing(numeric)
    tied = None
    if cov == "tied" and d:  # incomplete rows add expected moments per pass
        tied = rows.reduce(_complete_second_moments, d, row_bytes=row_bytes)["sxx"].to(dtype)
    return _MixtureFitData(
        e_step=EStep(rows, _MixtureStatistics(cov, d, bool(discrete)), row_bytes),
        init_rows=rows.sample(random_state=seed),
        center=center,
        dtype=dtype,
        has_missing=has_missing,
        prior_variance=moments.variance[numeric].to(device=source.device, dtype=dtype),
        tied_second_moments=tied,
        init=init,
        n_levels=n_levels,
    )


# ---------------------------------------------------------------------- estimator
class GaussianMixtureDensity(EMModel, GenerativeModel):
    """Gaussian mixture density fitted by expectation-maximisation in torch.

    A drop-in counterpart of :class:`sklearn.mixture.GaussianMixture` with the
    skgenerative contract: exact ``score_samples``, ``sample``, outlier thresholds,
    CPU or GPU.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the component covariances.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood improves by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance (in the units of ``X``); keeps
        them positive definite.
    covariance_prior : float, default=0.0
        Weight ``c`` (in pseudo-observations) of a conjugate prior that shrinks each
        covariance towards the data's diagonal covariance: the M-step gives
        ``Sigma_k = (n_k S_k + c diag(var(X))) / (n_k + c)`` (Fraley & Raftery, 2007).
        0 (the default) is plain maximum likelihood, as scikit-learn. A few
        pseudo-observations stop a component from collapsing onto a handful of
        points (an isolated outlier, duplicated rows), the classic failure of
        mixtures on small or contaminated tables.
    max_iter : int, default=100
        Maximum EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the best final bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How responsibilities are initialised (as in scikit-learn): labels of Lloyd's
        k-means from k-means++ seeds, the k-means++ seeds alone, random
        responsibilities, or random data points. All run in torch.
    weights_init, means_init, precisions_init : array-like, default=None
        User-provided starting weights (K,), means (K, D) and precisions (shape by
        covariance type, as in scikit-learn).
    warm_start : bool, default=False
        Start from the previous fit's solution (with one initialisation).
    level_prior : float > 0, default=0.1
        Pseudo-count added to every level of every discrete column in every
        component at each M-step (tables with discrete columns only): the level
        probabilities are the posterior mode under a symmetric Dirichlet(1 +
        level_prior) prior, so none is exactly 0 (see Notes).
    column_types : dict, list, tuple or None, default=None
        Types of the columns of a DataFrame (``{column: type}`` or one per column)
        where the pandas dtypes do not say it (see :mod:`skgenerative._schema`):
        ``real``, ``positive`` and ``count`` columns are modelled by the Gaussians,
        ``binary``, ``categorical`` and ``ordinal`` ones by per-component level
        probabilities (see Notes).
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
    dtype : {"auto", "float32", "float64"}, default="auto"
        ``"auto"``: fit in float32 and evaluate (``score_samples``, ``transform``,
        ``impute``, ``sample``) in float64, so that EM costs float32 (statistics
        still summed in float64; see Notes on accuracy) and scores stay exact and
        batch-invariant. ``"float32"`` or ``"float64"``: that
        precision for both.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation.
    verbose : int, default=0
        1: a progress bar of the EM iterations where a terminal or notebook shows it,
        then one summary line (best lower bound, convergence); 2: also a line per
        initialisation and per iteration.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
        Over the numeric columns only when the table has discrete ones (``D`` is
        then the number of numeric columns, possibly 0).
    covariances_ : ndarray
        Shape (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    level_probabilities_ : list of ndarray
        One array of shape (n_components, n_levels) per discrete column, in column
        order: ``theta_kj(l)``, rows summing to one. Empty for numeric data.
    precisions_ : ndarray
        Inverses of the covariances, same shape.
    precisions_cholesky_ : ndarray
        Cholesky factors of the precisions, same shape.
    converged_ : bool
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Mean log-likelihood of the training data at the last E-step of the best
        initialisation.
    lower_bounds_ : list of float
        The same, per iteration.
    offset_ : float
        The ``contamination`` quantile of the training log-densities.
    device_ : torch.device
        Where the model was fitted.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    sklearn.mixture.GaussianMixture : the numpy reference implementation.
    PPCADensity : a single Gaussian with low-rank plus isotropic covariance.
    GenerativeOutlierDetector : outlier detection in pipelines.

    Notes
    -----
    ``score_samples`` is the exact log-density ``log sum_k w_k N(x; mu_k, Sigma_k)``.
    ``transform`` and ``predict_proba`` give the posterior component probabilities,
    ``predict`` the most probable component. ``sample`` returns rows in random order
    (not grouped by component).

    The EM iterations follow scikit-learn's step for step: started from the same
    ``weights_init``, ``means_init`` and ``precisions_init``, a ``dtype="float64"`` fit
    gives scikit-learn's model up to rounding. The sufficient statistics are accumulated
    in float64 across chunks; in float32 the second moments are formed around the data
    mean, so components far from it (relative to their spread) lose a few digits:
    prefer float64 for such data.

    **Mixed tables.** Fitted on a DataFrame with discrete columns (binary,
    categorical, ordinal: see :mod:`skgenerative._schema`), each component is a
    Gaussian over the numeric columns times independent level probabilities
    ``theta_kj`` over each discrete column (a latent class model when no column is
    numeric): ``p(x) = sum_k w_k N(x_num; mu_k, Sigma_k) prod_j theta_kj(x_j)``. An
    ordinal column is categorical over its ordered levels (the order serves
    ``impute``'s median). ``score_samples`` is the log-density of the observed
    numbers plus the log-probability of the observed levels; a missing number is
    marginalised, a missing level drops its factor. EM is exact: the
    responsibilities include the level probabilities and the M-step sets
    ``theta_kj(l) = (c_kjl + a) / (c_kj + a K_j)`` from the expected counts with
    ``a = level_prior`` (so each step never decreases log-likelihood + ``a sum log
    theta``). k-means starts from the standardised numbers and the level
    indicators. The conditional ``p(x_j = l | x_obs) = sum_k p(k | x_obs)
    theta_kj(l)`` is exact (``impute_proba``; ``impute`` takes its mode, or its median
    for ordinal columns, and draws from it with ``n_draws``). The maths are in the
    user guide (``docs/user_guide/mixture.rst``); the model is that of Hunt &
    Jorgensen (2003).

    ``fit`` accepts missing values (NaN): EM then uses, per row and component, the
    conditional Gaussian of the missing entries given the observed ones
    (:func:`mixture_statistics`); ``score_samples`` of a row with NaN is the exact
    log-density of its observed entries, and :meth:`impute` fills the gaps with the
    conditional expectation (or draws from the conditional mixture).

    References
    ----------
    Dempster, A. P., Laird, N. M. & Rubin, D. B. (1977). Maximum likelihood from
    incomplete data via the EM algorithm. JRSS B, 39(1), 1-38.
    Ghahramani, Z. & Jordan, M. I. (1994). Supervised learning from incomplete
    data via an EM approach. NIPS 6.
    Fraley, C. & Raftery, A. E. (2007). Bayesian regularization for normal mixture
    estimation and model-based clustering. Journal of Classification, 24, 155-181.
    Hunt, L. & Jorgensen, M. (2003). Mixture model clustering for mixed data with
    missing information. Computational Statistics & Data Analysis, 41, 429-440.

    Examples
    --------
    >>> import numpy as np
    >>> from skgenerative import GaussianMixtureDensity
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    >>> gmm = GaussianMixtureDensity(n_components=2, random_state=0).fit(X)
    >>> np.sort(gmm.means_[:, 0]).round(0)
    array([-3.,  3.])
    >>> gmm.predict_outlier([[-3.0, -3.0], [0.0, 0.0], [20.0, 20.0]])
    array([ 1, -1, -1])
    """

    _parameter_constraints: dict = {
        **GenerativeModel._parameter_constraints,
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "covariance_prior": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "warm_start": ["boolean"],
        "level_prior": [Interval(Real, 0.0, None, closed="neither")],
        "column_types": [dict, list, tuple, None],
    }

    _supports_missing = True
    _supported_column_types = frozenset(COLUMN_TYPES)
    _em_divergence_hint = "scale the input or increase reg_covar"

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        covariance_prior=0.0,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        warm_start=False,
        level_prior=0.1,
        column_types=None,
        contamination=0.1,
        device="auto",
        dtype="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.covariance_prior = covariance_prior
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.warm_start = warm_start
        self.level_prior = level_prior
        self.column_types = column_types
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ EM
    def _fit(self, source):
        """EM over the numeric columns' Gaussians, times level tables for discrete ones."""
        seed = seed_from(self.random_state)
        data = prepare_mixture_fit(self, source, seed)
        self._em_fit(data, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                     warm_start=self.warm_start, generator=generator_from(seed, source.device))

    def _column_split(self) -> tuple[list, list]:
        """Positions of the numeric and of the discrete columns."""
        return self.schema_.numeric_columns, self.schema_.discrete

    def _log_levels(self, counts: torch.Tensor, data: _MixtureFitData) -> torch.Tensor:
        probabilities = level_probabilities_from_counts(counts.double(), data.n_levels, self.level_prior)
        return torch.log(probabilities).to(data.dtype)

    def _empty_gaussians(self, like: torch.Tensor):
        """Means, covariances and precision factors over no numeric column."""
        k = self.n_components
        shape = {"full": (k, 0, 0), "tied": (0, 0), "diag": (k, 0), "spherical": (k,)}[self.covariance_type]
        ones = like.new_ones(shape)
        return like.new_zeros(k, 0), ones, ones

    def _em_initialize(self, data: _MixtureFitData, generator) -> MixtureParameters:
        """Responsibilities by ``init_params``, one M-step, then the ``*_init`` arrays.

        k-means reads the numbers (missing ones at the column means, zero after
        centring) and, for a mixed table, the standardised numbers beside the level
        indicators.
        """
        X, onehot = _split_columns(data.init_rows, data.n_numeric, bool(data.n_levels))
        X = torch.nan_to_num(X, nan=0.0) if data.has_missing else X
        n, d = X.shape
        cov = self.covariance_type
        Z = X
        if onehot is not None:
            scale = data.prior_variance.sqrt()
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            # one unit of distance per numeric column (its spread) and at most one per
            # discrete column (two different levels are sqrt(2) apart in indicators)
            Z = torch.cat([X / scale, onehot * math.sqrt(0.5)], dim=1)
        resp = initial_responsibilities(Z, self.n_components, self.init_params, generator)
        as_t = lambda a: torch.as_tensor(a, dtype=X.dtype, device=X.device)  # noqa: E731
        init = data.init
        if d:
            total = accumulate(
                iter_slices(n, chunk_rows(data.e_step.row_bytes, n, X.device)),
                lambda rows: dict(zip(("nk", "sx", "sxx"), (
                    s.double() for s in gaussian_statistics(X[rows], resp[rows], cov)
                ))),
            )
            nk, means, covariances = gaussian_parameters_from_statistics(
                *(total[key].to(X.dtype) for key in ("nk", "sx", "sxx")),
                self.reg_covar, cov, self.covariance_prior, data.prior_variance,
            )
            # shifted in the centre's precision, then cast to the training dtype
            if "means" in init:
                means = as_t(torch.as_tensor(init["means"], dtype=data.center.dtype) - data.center.cpu())
            if "precisions" in init:
                prec_chol = _precision_cholesky_from_precisions(as_t(init["precisions"]), cov)
            else:
                prec_chol = compute_precision_cholesky(covariances, cov)
        else:
            nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
            means, _, prec_chol = self._empty_gaussians(X)
        weights = as_t(init["weights"]) if "weights" in init else nk / n
        log_levels = None if onehot is None else self._log_levels((resp.T @ onehot).double(), data)
        return MixtureParameters(weights, means, None, prec_chol, log_levels)

    def _em_resume(self, data: _MixtureFitData) -> MixtureParameters:
        as_t = lambda a: torch.as_tensor(a, dtype=data.dtype, device=data.center.device)  # noqa: E731
        means = as_t(torch.as_tensor(self.means_, dtype=data.center.dtype) - data.center.cpu())
        params = MixtureParameters(as_t(self.weights_), means, None, as_t(self.precisions_cholesky_))
        if data.n_levels:
            if self._level_log_table.shape[1] != sum(data.n_levels):
                raise ValueError(
                    "warm_start needs the same columns and levels as the previous fit; "
                    "fit again with warm_start=False."
                )
            params = params._replace(log_levels=as_t(self._level_log_table))
        return params

    def _em_expectation_parameters(self, data: _MixtureFitData, params) -> MixtureParameters:
        # rows with missing entries see the covariances of the very precision factors
        # that score the complete rows: one Gaussian per component, to the last bit
        if not data.has_missing or data.n_numeric == 0:
            return params
        covariances = covariances_from_precision_cholesky(params.precisions_cholesky, self.covariance_type)
        return params._replace(covariances=covariances)

    def _em_m_step(self, data: _MixtureFitData, statistics: dict, params) -> MixtureParameters:
        cov = self.covariance_type
        log_levels = None
        if data.n_levels:
            log_levels = self._log_levels(statistics["levels"], data)
            if data.n_numeric == 0:
                nk = statistics["nk"].to(data.dtype) + 10 * torch.finfo(data.dtype).eps
                return MixtureParameters(nk / nk.sum(), params.means, params.precisions_cholesky,
                                         params.precisions_cholesky, log_levels)
        nk, sx, sxx = (statistics[key].to(data.dtype) for key in ("nk", "sx", "sxx"))
        if cov == "tied":
            sxx = data.tied_second_moments + sxx
        nk, means, covariances = gaussian_parameters_from_statistics(
            nk, sx, sxx, self.reg_covar, cov, self.covariance_prior, data.prior_variance
        )
        return MixtureParameters(nk / nk.sum(), means, covariances,
                                 compute_precision_cholesky(covariances, cov), log_levels)

    def _em_set_parameters(self, data: _MixtureFitData, params: MixtureParameters) -> None:
        # M-step weights are n_k / n in the compute dtype: in float32 they sum to one
        # only to about 1e-7, so they are normalised again in float64
        weights = params.weights.double()
        self.weights_ = (weights / weights.sum()).cpu().numpy()
        self.level_probabilities_ = []
        if params.log_levels is not None:
            self._set_level_parameters(data, params)
            if data.n_numeric == 0:
                like = data.center.new_zeros(0, dtype=torch.float64)
                means, covariances, prec_chol = self._empty_gaussians(like)
                self.means_ = means.cpu().numpy()
                self.covariances_ = covariances.cpu().numpy()
                self.precisions_cholesky_ = prec_chol.cpu().numpy()
                self.precisions_ = prec_chol.cpu().numpy()
                return
        self.means_ = (params.means + data.center).double().cpu().numpy()
        covariances = params.covariances
        if covariances is None:  # max_iter == 0: from the starting precisions
            covariances = covariances_from_precision_cholesky(params.precisions_cholesky, self.covariance_type)
        self.covariances_ = covariances.double().cpu().numpy()
        prec_chol = params.precisions_cholesky
        if prec_chol.dtype != torch.float64:
            # fitted in float32: the model is the float64 covariances, so its
            # precision factors are computed from them in float64 (the factors of the
            # float32 M-step agree with them only to float32 rounding)
            prec_chol = compute_precision_cholesky(covariances.double(), self.covariance_type)
        self.precisions_cholesky_ = prec_chol.double().cpu().numpy()
        self.precisions_ = _precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)

    def _set_level_parameters(self, data: _MixtureFitData, params: MixtureParameters) -> None:
        # normalised again in float64 (a float32 fit's blocks sum to one to ~1e-7)
        table = torch.exp(params.log_levels.double())
        blocks, start = [], 0
        for k in data.n_levels:
            block = table[:, start:start + k]
            blocks.append((block / block.sum(1, keepdim=True)).cpu().numpy())
            start += k
        self.level_probabilities_ = blocks
        self._level_table = np.concatenate(blocks, axis=1)
        self._level_log_table = np.log(self._level_table)

    # ----------------------------------------------------------- evaluation
    def _row_bytes(self, n_features: int) -> int:
        k = self.n_components
        width = k * n_features if self.covariance_type in ("full", "tied") else k
        schema = getattr(self, "schema_", None)
        if schema is not None and schema.has_discrete:  # level indicators
            width += sum(schema.n_levels(j) for j in schema.discrete)
        return self._itemsize * (width + 4 * k + 2 * n_features)

    def _centred(self, X: torch.Tensor):
        """``X`` and the means shifted by the mixture mean (as in EM, for accuracy)."""
        means = self._tensor("means_")
        center = self._tensor("weights_") @ means
        return X - center, means - center, center

    def _weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x_o; mu_k, Sigma_k)`` over the observed entries of each row.

        For a mixed table, plus ``sum_j log theta_kj(x_ij)`` over its observed levels.
        """
        if not self.schema_.has_discrete:
            return self._gaussian_weighted_log_prob(X)
        numeric, discrete = self._column_split()
        if numeric:
            weighted = self._gaussian_weighted_log_prob(X[:, numeric])
        else:
            weighted = torch.log(self._tensor("weights_")).expand(X.shape[0], -1)
        return weighted + self._level_log_prob(X[:, discrete])

    def _level_log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """``sum_j log theta_kj(x_ij)`` over the observed levels of each row: (n, K)."""
        onehot = one_hot_levels(codes, [p.shape[1] for p in self.level_probabilities_])
        return level_log_probabilities(onehot, self._tensor("_level_log_table"))

    def _level_block(self, position: int) -> torch.Tensor:
        """The level probabilities (K, K_j) of the discrete column at ``position``."""
        index = self.schema_.discrete.index(position)
        start = sum(p.shape[1] for p in self.level_probabilities_[:index])
        stop = start + self.level_probabilities_[index].shape[1]
        return self._tensor("_level_table")[:, start:stop]

    def _mixed_parts(self, X: torch.Tensor):
        """Responsibilities given the observed cells, and the numeric conditionals."""
        numeric, discrete = self._column_split()
        weighted = torch.log(self._tensor("weights_")) + self._level_log_prob(X[:, discrete])
        parts, Xc, center = None, None, None
        if numeric:
            Xc, means, center = self._centred(X[:, numeric])
            parts = component_conditionals(Xc, means, self._tensor("covariances_"), self.covariance_type)
            weighted = weighted + torch.stack([p[0] for p in parts], dim=1)
        return torch.softmax(weighted, dim=1), parts, Xc, center

    def _impute_mixed(self, X: torch.Tensor, n_draws, generator) -> torch.Tensor:
        numeric, discrete = self._column_split()
        resp, parts, Xc, center = self._mixed_parts(X)
        if n_draws is None:  # levels: the base takes them from _level_probabilities
            out = X.clone()
            if numeric:
                out[:, numeric] = sum(resp[:, k, None] * f for k, (_, f, _) in enumerate(parts)) + center
            return out
        n = X.shape[0]
        choice = torch.multinomial(resp, n_draws, replacement=True, generator=generator)
        out = X.unsqueeze(1).repeat(1, n_draws, 1)
        if numeric:
            out[:, :, numeric] = draw_conditional_mixture(
                Xc, parts, resp, n_draws, generator, self.covariance_type, choice=choice
            ) + center
        for j in discrete:
            probabilities = self._level_block(j)[choice.reshape(-1)]
            levels = torch.multinomial(probabilities, 1, generator=generator).reshape(n, n_draws)
            out[:, :, j] = levels.to(X.dtype)
        return out

    def _point_imputation(self, X: torch.Tensor) -> torch.Tensor:
        """As the base's, with the component posterior computed once for numbers and levels."""
        if not self.schema_.has_discrete:
            return super()._point_imputation(X)
        numeric, discrete = self._column_split()
        resp, parts, _, center = self._mixed_parts(X)
        out = X.clone()
        if numeric:
            out[:, numeric] = sum(resp[:, k, None] * f for k, (_, f, _) in enumerate(parts)) + center
        for j in discrete:
            probabilities = (resp @ self._level_block(j)).cpu().numpy()
            codes = point_levels(probabilities, self.schema_.types[j])
            out[:, j] = torch.as_tensor(codes, dtype=out.dtype, device=out.device)
        return out

    def _level_probabilities(self, X: torch.Tensor, columns: list[int]) -> list[torch.Tensor]:
        """``p(x_j = l | x_obs) = sum_k p(k | x_obs) theta_kj(l)``, exactly."""
        resp = self._mixed_parts(X)[0]
        return [resp @ self._level_block(j) for j in columns]

    def _gaussian_weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x_o; mu_k, Sigma_k)`` over the observed numeric entries."""
        Xc, means, _ = self._centred(X)
        log_weights = torch.log(self._tensor("weights_"))
        if not has_nan(Xc):
            prec_chol = self._tensor("precisions_cholesky_")
            return estimate_log_gaussian_prob(Xc, means, prec_chol, self.covariance_type) + log_weights
        incomplete = torch.isnan(Xc).any(1)
        out = torch.empty(X.shape[0], self.n_components, dtype=X.dtype, device=X.device)
        if not bool(incomplete.all()):
            out[~incomplete] = estimate_log_gaussian_prob(
                Xc[~incomplete], means, self._tensor("precisions_cholesky_"), self.covariance_type
            )
        rows = torch.nonzero(incomplete).squeeze(1)
        covariances = self._tensor("covariances_")
        size = _incomplete_chunk_rows(rows.numel(), X.shape[1], self._itemsize, self._device)
        for sub in iter_slices(rows.numel(), size):
            parts = component_conditionals(Xc[rows[sub]], means, covariances, self.covariance_type)
            out[rows[sub]] = torch.stack([p[0] for p in parts], dim=1)
        return out + log_weights

    def _impute(self, X: torch.Tensor, n_draws, generator) -> torch.Tensor:
        """Mixture of the components' conditional Gaussians given the observed entries."""
        if self.schema_.has_discrete:
            return self._impute_mixed(X, n_draws, generator)
        Xc, means, center = self._centred(X)
        parts = component_conditionals(Xc, means, self._tensor("covariances_"), self.covariance_type)
        weighted = torch.stack([p[0] for p in parts], dim=1) + torch.log(self._tensor("weights_"))
        resp = torch.softmax(weighted, dim=1)
        if n_draws is None:
            return sum(resp[:, k, None] * f for k, (_, f, _) in enumerate(parts)) + center
        return draw_conditional_mixture(Xc, parts, resp, n_draws, generator, self.covariance_type) + center

    def _impute_row_bytes(self, n_features: int, n_draws) -> int:
        itemsize = self._itemsize
        return itemsize * self.n_components * (8 * n_features * n_features + 2 * (n_draws or 1) * n_features)

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self._weighted_log_prob(X), dim=1)

    def _explain(self, X: torch.Tensor) -> torch.Tensor:
        """Complete numeric rows: the precision-matrix closed form (:mod:`._explain`)."""
        if has_nan(X) or self.schema_.has_discrete:
            return super()._explain(X)  # through the marginal of the observed entries
        Xc, means, _ = self._centred(X)
        return gaussian_mixture_conditionals(
            Xc, means, self._tensor("precisions_cholesky_"), self.covariance_type,
            self._weighted_log_prob(X),
        )

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self._weighted_log_prob(X), dim=1)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.schema_.has_discrete:
            return self._sample_mixed(n, generator)
        return sample_mixture(
            self._tensor("weights_"), self._tensor("means_"), self._tensor("covariances_"),
            self.covariance_type, n, generator,
        )

    def _sample_mixed(self, n: int, generator: torch.Generator) -> torch.Tensor:
        numeric, discrete = self._column_split()
        weights = self._tensor("weights_")
        labels = torch.multinomial(weights, n, replacement=True, generator=generator)
        out = torch.empty(n, self.n_features_in_, dtype=weights.dtype, device=weights.device)
        if numeric:
            out[:, numeric] = sample_mixture(
                weights, self._tensor("means_"), self._tensor("covariances_"),
                self.covariance_type, n, generator, labels=labels,
            )
        for j in discrete:
            probabilities = self._level_block(j)[labels]
            out[:, j] = torch.multinomial(probabilities, 1, generator=generator).squeeze(1).to(out.dtype)
        return out

    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        return self.transform(X)

    @lazy_rows
    def predict(self, X):
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._evaluate(lambda x: torch.argmax(self._weighted_log_prob(x), dim=1), X)

    def fit_predict(self, X, y=None):
        """Fit, then return the most probable component of each training sample."""
        return self.fit(X).predict(X)

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        levels = sum(k * (p.shape[1] - 1) for p in self.level_probabilities_)
        if d == 0:  # a latent class model
            return int(k - 1 + levels)
        return n_mixture_parameters(k, d, self.covariance_type) + levels

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0] if not isinstance(X, torch.Tensor) else X.shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0] if not isinstance(X, torch.Tensor) else X.shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()
