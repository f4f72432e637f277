"""Gaussian mixture density fitted by EM, in torch: a component is a product of blocks.

The model is

    p(x) = sum_k w_k prod_b p_kb(x_b),

each component a product of independent blocks over the table's columns
(:class:`MixtureLayout`):

- the **Gaussian block** ``N(y; mu_k, Sigma_k)`` over the real and positive columns,
  with ``y = x`` on a real column and ``y = log x`` on a positive one (so a positive
  column keeps its correlations with the others), in one of four covariance
  structures (full, tied, diag, spherical); the log-Jacobian ``-sum_j log x_j`` of
  the positive cells makes the score a density in the user's units;
- one **family block** per other kind of column (:mod:`skgenerative.distributions`),
  with per-component parameters: a Bernoulli over the binary columns, a Poisson over
  the count columns, a categorical over each categorical or ordinal column, and a
  Bernoulli "is zero" over the positive columns (a zero is a point mass, and a
  missing cell for the Gaussian block: :class:`~skgenerative.distributions.ZeroInflatedLogNormal`).

A numeric array is the Gaussian block alone, a table of levels the family blocks alone
(a latent class model): the same code. Missing cells of any block are marginalised
exactly: a family cell drops its factor, the Gaussian block takes the marginal of its
observed entries (:func:`gaussian_conditionals`, one factorisation per missingness
pattern and component).

On numbers the EM iterations follow scikit-learn's ``GaussianMixture`` step for step,
so that started from the same parameters both give the same model; the work is
chunked so that memory stays bounded and, on the CPU, each chunk stays in cache. The
loop itself (restarts, convergence, ``warm_start``) is :class:`skgenerative._em.EMModel`;
this module supplies the E-step (:func:`mixture_statistics`), the M-steps
(:func:`gaussian_parameters_from_statistics` and the families' ``m_step``) and the
initialisation.

Precision Cholesky factors ``P_k`` (``P_k P_k^T = Sigma_k^{-1}``) parametrise the
Gaussians, as in scikit-learn: ``log N(x; mu, Sigma) = -D/2 log 2 pi + log|det P|
- ||(x - mu) P||^2 / 2``.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
import math
import time
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from . import _kernels
from ._em import EMModel, EStep, accumulate, add_statistics
from ._explain import gaussian_mixture_conditionals
from ._level_groups import JointLevels, combination_counts, level_groups_of, summary
from ._marginals import KNOTS, ORDERED_MAX_LEVELS, NormalScores
from ._schema import COLUMN_TYPES, _decimal_places
from ._torch import chunk_rows, generator_from, has_nan, iter_slices, row_matmul, seed_from
from .base import GenerativeModel, lazy_rows
from .distributions import (
    FAMILIES,
    Bernoulli,
    Categorical,
    Poisson,
    Statistics,
    ZeroInflatedLogNormal,
    level_point,
)

__all__ = [
    "GaussianMixtureDensity",
    "FamilyBlock",
    "GaussianConditionals",
    "MixtureLayout",
    "MixtureParameters",
    "check_initial_parameters",
    "compute_precision_cholesky",
    "draw_rows",
    "conditional_gaussian",
    "conditional_gaussian_diag",
    "covariances_from_precision_cholesky",
    "draw_conditional_mixture",
    "estimate_gaussian_parameters",
    "estimate_log_gaussian_prob",
    "floor_covariances",
    "gaussian_conditionals",
    "gaussian_parameters_from_statistics",
    "gaussian_statistics",
    "impute_draws",
    "impute_point",
    "initial_responsibilities",
    "mixture_statistics",
    "row_matmul",
    "sample_mixture",
    "weighted_log_prob",
]

_COVARIANCE_ERROR = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the "
    "input data{extra}."
)
#: a level indicator's scale beside standardised numbers in k-means: two different
#: levels are one unit apart, like one standard deviation of a number
_LEVEL_SCALE = math.sqrt(0.5)


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


#: ``n_components="auto"``: the share of rows held out to score the candidates, the
#: largest candidate, and the least training rows per component of a candidate
AUTO_VALIDATION_FRACTION = 0.2
AUTO_MAX_COMPONENTS = 128
AUTO_ROWS_PER_COMPONENT = 25
#: the candidates' EM stops at ``tol`` times this (the final fit at ``tol``); 1: a
#: coarser tolerance (10) changed the choice on 2 of 7 benchmark fits (Adult, Wine)
AUTO_SEARCH_TOL_FACTOR = 1.0
#: a larger size is chosen when its held-out mean is at most this many standard errors
#: (of the per-row differences) below the best's: such a difference is noise, and
#: samples gain from the components (see GaussianMixtureDensity, Notes)
AUTO_STANDARD_ERRORS = 1.0
#: ``marginals="normal_scores"``: the most knots of a column's map, and whether a column
#: on a grid of decimal places is spread over it first (:mod:`skgenerative._marginals`)
MARGINAL_KNOTS = KNOTS
MARGINAL_DEQUANTISE = True
#: a grid column with at most this many distinct values is not spread (its knots tie onto
#: the values' mean scores, the mixture sees the values as they are); 0: every grid column
#: is spread. Wine's quality (7 values), seeds 0 to 2, at 20: TSTR on unseen rows 0.237
#: against 0.216, but detection AUC 0.672 against 0.641 and the held-out log-likelihood a
#: density on a near-discrete column (benchmarks/bench_synth.py --explore), so 0
MARGINAL_UNSPREAD_LEVELS = 0
#: a grid column with at most this many values is spread in the order of the rest of the
#: row (:mod:`skgenerative._marginals`, "Columns of few values"); 0: by the hash alone
MARGINAL_ORDERED_LEVELS = ORDERED_MAX_LEVELS
_AUTO_SPLIT = 7211  # a stream of the seed of its own: the held-out rows

def estimate_log_gaussian_prob(
    X: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor, covariance_type: str,
    rowwise: bool = False,
) -> torch.Tensor:
    """``log N(x_i; mu_k, Sigma_k)`` for every row and component, shape (n, K).

    Full covariances use one matrix product ``X [P_1 ... P_K]`` for all components;
    diag and spherical use the expansion ``||x||^2 - 2 x.mu + ||mu||^2`` with the
    precisions folded in (both as in scikit-learn). Centre ``X`` and ``means`` by the
    same vector first for accuracy; the result does not depend on it. ``rowwise``:
    the products through :func:`row_matmul`, so that a row's value never depends on
    the other rows (evaluation; EM takes the one product).
    """
    n, d = X.shape
    k = means.shape[0]
    mm = row_matmul if rowwise else torch.matmul
    if covariance_type == "full":
        stacked = precisions_chol.permute(1, 0, 2).reshape(d, k * d)
        shift = torch.einsum("kd,kde->ke", means, precisions_chol).reshape(k * d)
        y = (mm(X, stacked) - shift if rowwise else torch.addmm(-shift, X, stacked)).view(n, k, d)
        maha = torch.linalg.vector_norm(y, dim=-1).square()
    elif covariance_type == "tied":
        y = mm(X, precisions_chol).unsqueeze(1) - (means @ precisions_chol).unsqueeze(0)
        maha = torch.linalg.vector_norm(y, dim=-1).square()
    elif covariance_type == "diag":
        prec = precisions_chol.square()
        maha = (
            (means.square() * prec).sum(1)
            - 2.0 * mm(X, (means * prec).T)
            + mm(X.square(), prec.T)
        )
    else:
        prec = precisions_chol.square()
        maha = (
            (means.square().sum(1) * prec)
            - 2.0 * mm(X, means.T) * prec
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


def covariances_from_precision_cholesky(precisions_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """``Sigma = (P P^T)^{-1}`` from precision Cholesky factors (``1 / P^2`` for diag, spherical).

    ``P`` is triangular (upper from :func:`compute_precision_cholesky`, lower from a
    ``precisions_init``) and is inverted by substitution, not by ``torch.linalg.inv``:
    torch 2.13's CPU build runs batched LU factorisations (``inv``, ``solve``, ``slogdet``)
    of blocks about 160 columns and wider into an MKL error and a hang once
    ``torch.set_num_threads`` has been called with 2 or more, which
    :func:`~skgenerative._torch.adaptive_threads` does when the machine's load changes.
    """
    if covariance_type in ("full", "tied"):
        upper = bool(torch.equal(precisions_chol, precisions_chol.triu()))
        if not upper and not bool(torch.equal(precisions_chol, precisions_chol.tril())):
            precisions_chol = torch.linalg.cholesky(precisions_chol @ precisions_chol.transpose(-1, -2))
        eye = torch.eye(precisions_chol.shape[-1], dtype=precisions_chol.dtype, device=precisions_chol.device)
        inv = torch.linalg.solve_triangular(precisions_chol, eye.expand_as(precisions_chol), upper=upper)
        return inv.transpose(-1, -2) @ inv
    return 1.0 / precisions_chol.square()


def _precisions_from_cholesky(precisions_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type in ("full", "tied"):
        return precisions_chol @ np.swapaxes(precisions_chol, -1, -2)
    return precisions_chol**2


def floor_covariances(
    covariances: torch.Tensor, covariance_type: str, variances: torch.Tensor, floor: float
) -> torch.Tensor:
    """Covariances lifted so that none is smaller than ``floor`` in units of the columns' variances.

    Full and tied: with ``V = diag(variances)`` and ``R = V^-1/2 Sigma V^-1/2``, a
    component whose least eigenvalue ``lambda`` of ``R`` is below ``floor`` becomes
    ``Sigma + (floor - lambda) V`` (its least eigenvalue in those units is then
    ``floor``); diag: each variance at least ``floor`` times its column's; spherical:
    at least ``floor`` times their mean. A component that collapsed onto a few rows
    (duplicated rows, a column constant within a group, rows on a line) gets a
    covariance of a fixed relative size instead of a singular one that fails the fit;
    every other covariance is returned bit for bit (``variances`` must be > 0).
    """
    if floor <= 0 or covariances.numel() == 0:
        return covariances
    if covariance_type in ("full", "tied"):
        scale = variances.sqrt()
        smallest = torch.linalg.eigvalsh(covariances / (scale.unsqueeze(1) * scale))[..., 0]
        lift = (floor - smallest).clamp_min(0.0)
        if not bool((lift > 0).any()):
            return covariances
        return covariances + lift[..., None, None] * torch.diag(variances)
    least = floor * (variances if covariance_type == "diag" else variances.mean())
    return torch.maximum(covariances, least)


# ----------------------------------------------- the Gaussian block with missing entries
class ConditionalGroup(NamedTuple):
    """The patterns of one batch of :func:`gaussian_conditionals` and the factor their
    conditional covariances come from.

    ``patterns`` (G,) the group's patterns, ``index`` (G, w) their missing columns (in
    increasing order, padded with ``D``). Precision route (``by_precision``): ``factor``
    (G, K, w, w) is ``L^{-1}`` with ``Lambda_mm = L L^T``, zero on the padding, so that
    ``Cov[x_m | x_o] = F^T F``. Covariance route: ``factor`` (G, K, o, w) is ``W = L^{-1}
    S_om`` with ``S_oo = L L^T``, and ``Cov[x_m | x_o] = S_mm - W^T W``.
    """

    patterns: torch.Tensor
    index: torch.Tensor
    factor: torch.Tensor
    by_precision: bool


class GaussianConditionals(NamedTuple):
    """The Gaussian of each component given the observed entries of each row.

    ``log_prob`` (n, K): ``log N(x_o; mu_k,o, Sigma_k,oo)``, 0 for a row with nothing
    observed; ``filled`` (n, K, D): the row with its missing entries replaced by
    ``E[x_m | x_o, k]``. Full and tied covariances: ``covariances`` are the
    components' (K, D, D), ``pattern`` (n,) each row's missingness pattern (of
    ``n_patterns``) and ``groups`` the :class:`ConditionalGroup` of each batch of
    patterns, from which ``Cov[x_m | x_o, k]`` is formed only when asked for
    (:meth:`conditional_covariances`, :meth:`conditional_factors`): EM needs only
    their weighted sum (:meth:`weighted_second_moments`); a tied model's one
    covariance has 1 in place of K (broadcast). Diag and spherical: ``covariances``
    (n, K, D) are the conditional variances themselves (the component's on missing
    entries, 0 on observed ones). ``leave_one_out`` (n, K, D), when asked for:
    ``log N_k(x_j | the other observed entries)`` of each observed entry ``j``, 0 on
    missing ones.
    """

    log_prob: torch.Tensor
    filled: torch.Tensor
    covariances: torch.Tensor
    groups: tuple = ()
    n_patterns: int = 0
    pattern: torch.Tensor | None = None
    leave_one_out: torch.Tensor | None = None

    @property
    def missing(self) -> torch.Tensor:
        """The missing entries of each pattern (P, D), boolean (full and tied covariances)."""
        d = self.filled.shape[-1]
        out = torch.zeros(self.n_patterns, d + 1, dtype=torch.bool, device=self.filled.device)
        for group in self.groups:
            out[group.patterns] = out[group.patterns].scatter(1, group.index, True)
        return out[:, :d]

    def _blocks(self, group: ConditionalGroup) -> torch.Tensor:
        """``Cov[x_m | x_o, k]`` of a group's patterns (G, K, w, w), zero on the padding."""
        gram = group.factor.transpose(-1, -2) @ group.factor
        if group.by_precision:
            return gram
        return _block(_padded_matrices(self.covariances), group.index, group.index) - gram

    def _embedded(self, pieces) -> torch.Tensor:
        """Blocks ``(group, (G, K, w, w))`` on the missing columns put in zeros (P, K, D, D)."""
        d = self.filled.shape[-1]
        k = self.covariances.shape[0]
        out = self.filled.new_zeros(self.n_patterns, k, (d + 1) ** 2)
        for group, blocks in pieces:
            g, width = group.index.shape
            flat = _pair_positions(group.index, d).reshape(g, 1, -1)
            out[group.patterns] = out[group.patterns].scatter(
                2, flat.expand(g, k, width * width), blocks.reshape(g, k, -1))
        return out.view(self.n_patterns, k, d + 1, d + 1)[..., :d, :d]

    def conditional_covariances(self) -> torch.Tensor:
        """``Cov[x_m | x_o, k]`` embedded in zeros: per pattern (P, K, D, D), or per row as
        a diagonal (n, K, D)."""
        if self.pattern is None:
            return self.covariances
        return self._embedded((group, self._blocks(group)) for group in self.groups)

    def conditional_factors(self) -> torch.Tensor:
        """Factors ``F`` (P, K, D, D) with ``F F^T = Cov[x_m | x_o, k]``, zero outside the
        missing block (full and tied covariances): the Cholesky factors of the
        conditional covariances, which :func:`gaussian_conditionals` forms without
        subtracting nearly equal matrices where the observed entries explain the
        missing ones almost exactly (there the missing entries are few:
        ``(Lambda_mm)^{-1}``)."""
        d = self.filled.shape[-1]

        def factor(group):
            padding = (group.index == d).to(group.factor.dtype)  # (G, w)
            chol = torch.linalg.cholesky(self._blocks(group) + torch.diag_embed(padding).unsqueeze(1))
            kept = 1.0 - padding
            return chol * (kept[:, None, :, None] * kept[:, None, None, :])

        return self._embedded((group, factor(group)) for group in self.groups)

    def weighted_second_moments(self, resp: torch.Tensor, covariance_type: str) -> torch.Tensor:
        """``sum_i r_ik (x^_ik x^_ik^T + C_ik)`` per component (full), summed over them
        (tied), or its diagonal (diag, spherical).

        Full and tied: ``sum_i r_ik C_ik = sum_p R_pk C_pk`` with ``R_pk`` the
        responsibilities summed over the rows of pattern ``p``, formed group by group
        and added in each pattern's missing columns (no (P, K, D, D) tensor, and no
        store of every pattern's ``C_pk`` padded to the widest: on Wine, 50% missing, 16
        components, that store was a sixth of the E-step). The precision route's few
        missing columns: ``R_pk F_p^T F_p`` per pattern. The covariance route's many:
        ``sum_p R_pk (S_mm - W_p^T W_p)`` as ``S`` times the weighted count of patterns
        missing each pair of columns, less one matrix product over the factors' rows put
        in their missing columns (instead of a ``W_p^T W_p`` and a subtraction per
        pattern and component).
        """
        f = self.filled
        if self.pattern is None:
            return torch.einsum("nk,nkd->kd", resp, f.square() + self.covariances)
        d = f.shape[-1]
        per_pattern = torch.zeros(self.n_patterns, resp.shape[1], dtype=resp.dtype, device=resp.device)
        per_pattern.index_add_(0, self.pattern, resp)
        if covariance_type == "tied":
            per_pattern = per_pattern.sum(1, keepdim=True)
        k = per_pattern.shape[1]
        spread = f.new_zeros((d + 1) ** 2, k)  # rows of K added at once (5% of Wine 50%'s time along K)
        covariances = None  # padded, once, if a group takes the covariance route
        for group in self.groups:
            weight = per_pattern[group.patterns]  # (G, K)
            g, width = group.index.shape
            if group.by_precision:  # few missing columns: each pattern's F^T F, added in its columns
                blocks = self._blocks(group) * weight[:, :, None, None]
                flat = _pair_positions(group.index, d).reshape(-1)
                spread.index_add_(0, flat, blocks.permute(0, 2, 3, 1).reshape(-1, k))
                continue
            # many: - sum_p R_pk W_p^T W_p as one product over the factors' rows put in their
            # missing columns, + S times the weighted count of patterns missing each pair
            rows = group.factor.shape[2]
            put = f.new_zeros(k, g, rows, d + 1)
            put.scatter_(3, group.index[None, :, None, :].expand(k, g, rows, width), group.factor.transpose(0, 1))
            gram = torch.bmm((put * weight.T[:, :, None, None]).reshape(k, g * rows, d + 1).transpose(1, 2),
                             put.reshape(k, g * rows, d + 1))
            where = f.new_zeros(g, d + 1).scatter_(1, group.index, 1.0)
            pairs = torch.einsum("gk,gi,gj->kij", weight, where, where)
            covariances = _padded_matrices(self.covariances) if covariances is None else covariances
            part = pairs * covariances - gram
            spread += part.reshape(k, -1).T
        spread = spread.T.reshape(k, d + 1, d + 1)[:, :d, :d]
        sxx = torch.einsum("nk,nkd,nke->kde", resp, f, f)
        return sxx.sum(0) + spread[0] if covariance_type == "tied" else sxx + spread


def gaussian_conditionals(
    X: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor, covariance_type: str, route: str | None = None,
    leave_one_out: bool = False,
) -> GaussianConditionals:
    """Every component's Gaussian given the observed entries of the rows of ``X`` (NaN missing).

    Full and tied covariances: rows that miss the same entries share one
    factorisation per component, of the smaller of two blocks. Where a pattern misses
    ``m <= D / 2`` entries, the missing block ``Lambda_mm`` of the precision
    ``Lambda = S^{-1}`` (one factorisation per component for all patterns):
    ``Cov[x_m | x_o] = Lambda_mm^{-1}``, ``E[x_m | x_o] = mu_m - Lambda_mm^{-1} b`` with
    ``b = Lambda_mo r_o`` (``r = x - mu``), ``log det S_oo = log det S + log det
    Lambda_mm`` and ``r_o^T S_oo^{-1} r_o = r_o^T Lambda_oo r_o - b^T Lambda_mm^{-1} b``
    (:func:`_given_by_precision`); otherwise the observed block ``S_oo`` itself
    (:func:`_given_by_covariance`). Both give the same numbers (to rounding); a
    complete row needs no factorisation of its own, a pattern with ``m`` missing
    entries an ``m x m`` one instead of ``D x D``. Diagonal and spherical covariances:
    the coordinates are independent, so the observed ones are scored alone and the
    missing ones keep their mean and variance. A row's numbers depend only on its
    pattern's factorisation and its own entries, not on the other rows. ``route``
    (``"precision"`` or ``"covariance"``) forces one of the two for every pattern
    (default ``None``: the smaller block; the others are there to compare them).

    ``leave_one_out=True`` adds each observed entry's conditional given the row's other
    observed entries, from ``Q = S_oo^{-1}``: ``x_j | rest ~ N(x_j - (Q r_o)_j / Q_jj,
    1 / Q_jj)``, with ``Q = Lambda_oo - V V^T`` (``V = Lambda_om L^{-T}``) on the
    precision route and ``Q = L^{-T} L^{-1}`` on the other.
    """
    n, d = X.shape
    k = means.shape[0]
    observed = ~torch.isnan(X)
    r = torch.where(observed.unsqueeze(1), X.unsqueeze(1) - means, torch.zeros((), dtype=X.dtype, device=X.device))
    if covariance_type in ("diag", "spherical"):
        var = covariances if covariance_type == "diag" else covariances.unsqueeze(1).expand(k, d)
        terms = r.square() / var + torch.log(2 * math.pi * var)
        log_prob = -0.5 * torch.where(observed.unsqueeze(1), terms, torch.zeros_like(terms)).sum(-1)
        filled = torch.where(observed.unsqueeze(1), X.unsqueeze(1), means.expand(n, k, d))
        conditional = torch.where(observed.unsqueeze(1), torch.zeros_like(filled), var.expand(n, k, d))
        alone = torch.where(observed.unsqueeze(1), -0.5 * terms, torch.zeros_like(terms)) if leave_one_out else None
        return GaussianConditionals(log_prob, filled, conditional, leave_one_out=alone)
    cov = covariances.unsqueeze(0) if covariance_type == "tied" else covariances  # tied: one factor a pattern
    first, pattern = _patterns(observed)
    counts = (~observed[first]).sum(1)  # missing entries per pattern
    order = torch.argsort(observed[first].to(torch.int8), dim=1, stable=True)  # missing first, in order
    order = torch.cat([order, order.new_full((order.shape[0], 1), d)], 1)  # index d: padding
    log_prob = X.new_empty(n, k)
    # filled, flat, and one slot beyond it where the padding columns' fills go
    filled = X.new_empty(n * k * d + 1)
    filled[:-1].view(n, k, d).copy_(torch.where(observed.unsqueeze(1), X.unsqueeze(1), means))
    first_entry = torch.arange(k, device=X.device) * d  # of each component in a row of filled
    alone = X.new_zeros(n, k, d + 1) if leave_one_out else None
    r, means, padded = _padded(r), _padded(means), _padded_matrices(cov)
    precision, by_precision = None, (route == "precision") | ((route is None) & (counts <= d - counts))
    forced = d if route is not None else None
    bucket = torch.where(by_precision, _bucket(counts, forced or d // 2),
                         -_bucket(d - counts, forced or (d - 1) // 2) - 1)
    row_bucket, slot, groups = bucket[pattern], torch.empty_like(counts), []
    for b in torch.unique(bucket).tolist():
        group = torch.nonzero(bucket == b).squeeze(1)
        rows = torch.nonzero(row_bucket == b).squeeze(1)
        slot[group] = torch.arange(group.numel(), device=X.device)
        at = _places(slot[pattern[rows]], group.numel())  # each row's place among the group's patterns
        m, seen = counts[group], d - counts[group]
        n_seen = seen.to(X.dtype)
        if b >= 0:
            precision = _precision(cov) if precision is None else precision
            missing = _columns(order[group], 0, m, b, d)
            log_det, maha, fill, factor, rest = _given_by_precision(r[rows], means, at, missing, *precision,
                                                                    leave_one_out=leave_one_out)
        else:
            o = -b - 1  # the observed entries' width; at most d - (o // 2 + 1) missing above the least width
            missing = _columns(order[group], 0, m, d - (o // 2 + 1) if o > _LEAST_WIDTH else d, d)
            observed_columns = _columns(order[group], m, seen, o, d)
            log_det, maha, fill, factor, rest = _given_by_covariance(r[rows], means, at, missing, observed_columns,
                                                                     padded, leave_one_out=leave_one_out)
        log_prob[rows] = -0.5 * (_take(n_seen, at)[:, None] * math.log(2 * math.pi) + _take(log_det, at)) - 0.5 * maha
        columns = _take(missing, at).unsqueeze(1)  # (rows, 1, w)
        entries = rows[:, None, None] * (k * d) + first_entry[:, None] + columns
        filled[torch.where(columns == d, n * k * d, entries).reshape(-1)] = fill.reshape(-1)
        groups.append(ConditionalGroup(group, missing, factor, b >= 0))
        if leave_one_out:
            alone[rows] = _log_normal(*rest)
    if leave_one_out:
        alone = torch.where(observed.unsqueeze(1), alone[..., :d], torch.zeros((), dtype=X.dtype, device=X.device))
    return GaussianConditionals(log_prob, filled[:-1].view(n, k, d), cov, tuple(groups), first.shape[0], pattern,
                                alone)


def _log_normal(projected: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """``log N(x_j | rest) = 0.5 log(Q_jj / 2 pi) - 0.5 (Q r)_j^2 / Q_jj`` (NaN where
    ``Q_jj`` is not positive: entries the caller masks)."""
    diagonal = torch.where(diagonal > 0, diagonal, torch.full((), float("nan"), dtype=diagonal.dtype,
                                                              device=diagonal.device))
    return 0.5 * torch.log(diagonal / (2 * math.pi)) - 0.5 * projected.square() / diagonal


#: blocks up to this width are padded to it (or to the largest block a route takes, if
#: smaller): batches of small blocks cost their torch calls more than their arithmetic.
#: 4, not 8: on Wine (D = 12, 16 components, 20% missing) most patterns miss one to
#: three entries, and their blocks padded to 6 made an E-step 1.5x slower than at 4
_LEAST_WIDTH = 4


def _bucket(sizes: torch.Tensor, limit: int) -> torch.Tensor:
    """The width a block of each size is padded to: the next power of two, at least
    ``_LEAST_WIDTH`` and at most ``limit`` (the largest block of the route), so that
    patterns go in a few batches whatever their sizes, each row's by its own size."""
    power = 2 ** torch.ceil(torch.log2(sizes.clamp_min(1).double())).long()
    return torch.minimum(power.clamp_min(_LEAST_WIDTH), torch.full_like(power, limit))


def _padded(x: torch.Tensor) -> torch.Tensor:
    """``x`` with one zero column appended (the padding index ``D``)."""
    return torch.cat([x, x.new_zeros(x.shape[:-1] + (1,))], -1)


def _padded_matrices(x: torch.Tensor) -> torch.Tensor:
    """Matrices (..., D, D) with a zero row and column appended (..., D + 1, D + 1)."""
    return _padded(_padded(x).transpose(-1, -2))


def _pair_positions(index: torch.Tensor, d: int) -> torch.Tensor:
    """Flat positions (G, w, w) in a (D + 1, D + 1) matrix of each pair of columns ``index`` (G, w)."""
    return index.unsqueeze(2) * (d + 1) + index.unsqueeze(1)


def _columns(order: torch.Tensor, start: torch.Tensor, sizes: torch.Tensor, width: int, d: int) -> torch.Tensor:
    """``order[g, start[g]:start[g] + sizes[g]]`` padded with ``d`` to ``width`` columns."""
    width = min(width, d)
    offsets = torch.arange(width, device=order.device)
    start = start if torch.is_tensor(start) else torch.full_like(sizes, start)
    taken = torch.gather(order, 1, (start.unsqueeze(1) + offsets).clamp_max(order.shape[1] - 1))
    return torch.where(offsets < sizes.unsqueeze(1), taken, d)


def _precision(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``Lambda = S^{-1}`` (K, D + 1, D + 1; zero on the padding index ``D``) and
    ``log det S`` (K,) of each component."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        raise ValueError(_COVARIANCE_ERROR.format(extra=""))
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(chol)
    inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)
    precision = inv_chol.transpose(-1, -2) @ inv_chol
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return _padded_matrices(precision), log_det


def _inverse_factor(blocks: torch.Tensor, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L^{-1}`` and ``log det`` of SPD blocks ``L L^T`` (G, K, w, w), with 1 put on the
    diagonal at ``padding`` (G, w) (their rows and columns are zero)."""
    blocks = blocks + torch.diag_embed(padding.to(blocks.dtype)).unsqueeze(1)
    chol, info = torch.linalg.cholesky_ex(blocks)
    if bool((info != 0).any()):
        raise ValueError(_COVARIANCE_ERROR.format(extra=""))
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device).expand_as(chol)
    log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return torch.linalg.solve_triangular(chol, eye, upper=False), log_det


def _block(matrices: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``matrices[k][rows[g]][:, cols[g]]`` for each pattern ``g``: (G, K, len rows, len cols).

    One gather of flat positions (a broadcast pair of index tensors took ten times as
    long: 9% of the mixed default's time on Wine, 50% missing)."""
    k, size = matrices.shape[0], matrices.shape[-1]
    flat = (rows[:, :, None] * size + cols[:, None, :]).reshape(-1)
    out = torch.index_select(matrices.reshape(k, -1), 1, flat)
    return out.view(k, rows.shape[0], rows.shape[1], cols.shape[1]).transpose(0, 1)


def _places(at: torch.Tensor, n_patterns: int) -> torch.Tensor | None:
    """Each row's place among its group's patterns, or ``None`` where the rows are the
    patterns in order (one row a pattern, as at high missingness): no gathers then."""
    if at.numel() == n_patterns and torch.equal(at, torch.arange(n_patterns, device=at.device)):
        return None
    return at


def _take(x: torch.Tensor, at: torch.Tensor | None) -> torch.Tensor:
    """``x[at]`` (the pattern's numbers for each row), ``x`` itself where ``at`` is ``None``."""
    return x if at is None else x[at]


#: row products over at most this many columns add their terms one by one
_LOOP_SUM_WIDTH = 4


def _row_apply(matrices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``matrices @ vectors`` row by row (n, K, a, b) x (n, K, b) -> (n, K, a), as a sum of
    products (no matrix-product kernel, whose rounding depends on the batch). Up to
    ``_LOOP_SUM_WIDTH`` columns the products are added one column at a time: torch's
    sum over a last dimension of 2 to 4 is slow (float32, (1337, 16, w, w): 0.63 /
    0.91 ms at w = 2 / 4 against 0.09 / 0.37 ms; from 6 on the sum is as fast or faster)."""
    width = matrices.shape[-1]
    if not 0 < width <= _LOOP_SUM_WIDTH:
        return (matrices * vectors.unsqueeze(-2)).sum(-1)
    out = matrices[..., 0] * vectors[..., :1]
    for j in range(1, width):
        out.addcmul_(matrices[..., j], vectors[..., j:j + 1])
    return out


def _given_by_precision(r, means, at, missing, precision, log_det_full, leave_one_out=False):
    """The rows of some patterns, from the precision's missing block: ``log det S_oo``
    (G, K), the Mahalanobis terms (n, K), ``E[x_m | x_o]`` (n, K, w) and the factor
    ``F = L^{-1}`` of ``Cov[x_m | x_o] = Lambda_mm^{-1} = F^T F`` (G, K, w, w; zero on
    the padding: :class:`ConditionalGroup`) (:func:`gaussian_conditionals`). ``r``
    (n, K, D + 1) is zero on missing entries and on the padding, ``at`` each row's
    pattern among ``missing`` (G, w), the missing columns padded with ``D``."""
    n, k, d = r.shape
    padding = missing == d - 1
    inv_chol, log_det = _inverse_factor(_block(precision, missing, missing), padding)
    u = row_matmul(r, precision.expand(k, d, d))  # Lambda r: b on the missing entries
    columns = _take(missing, at).unsqueeze(1).expand(n, k, missing.shape[1])
    b = torch.gather(u, 2, columns)
    factor = _take(inv_chol, at)
    y = _row_apply(factor, b)  # L^{-1} b, Lambda_mm = L L^T
    maha = (r * u).sum(-1) - y.square().sum(-1)
    shift = _row_apply(factor.transpose(-1, -2), y)  # Lambda_mm^{-1} b
    fill = torch.gather(means.expand(n, k, d), 2, columns) - shift
    kept = (~padding).to(r.dtype)
    rest = None
    if leave_one_out:  # Q = Lambda_oo - V V^T, V = Lambda_om L^{-T}; Q r_o = u_o - V y
        v = precision[:, :, missing].permute(2, 0, 1, 3) @ inv_chol.transpose(-1, -2)  # (G, K, D + 1, w)
        diagonal = torch.diagonal(precision, dim1=-2, dim2=-1) - v.square().sum(-1)
        rest = (u - _row_apply(_take(v, at), y), _take(diagonal, at))
    return log_det_full + log_det, maha, fill, inv_chol * kept[:, None, :, None], rest


def _given_by_covariance(r, means, at, missing, seen, cov, leave_one_out=False):
    """:func:`_given_by_precision` from the observed block ``S_oo`` (its columns ``seen``
    (G, o), padded with ``D`` as ``cov`` (K, D + 1, D + 1) is with zeros): ``S_oo = L L^T``,
    ``W = L^{-1} S_om`` (returned in place of the factor), ``Cov[x_m | x_o] = S_mm - W^T W``
    and ``E[x_m | x_o] = mu_m + W^T L^{-1} r_o``."""
    n, k, d = r.shape
    inv_chol, log_det = _inverse_factor(_block(cov, seen, seen), seen == d - 1)
    w = inv_chol @ _block(cov, seen, missing)  # (G, K, o, m)
    factor, seen_at = _take(inv_chol, at), _take(seen, at)
    z = _row_apply(factor, torch.gather(r, 2, seen_at.unsqueeze(1).expand(n, k, seen.shape[1])))
    columns = _take(missing, at).unsqueeze(1).expand(n, k, missing.shape[1])
    fill = torch.gather(means.expand(n, k, d), 2, columns) + _row_apply(_take(w, at).transpose(-1, -2), z)
    rest = None
    if leave_one_out:  # Q = L^{-T} L^{-1} on the observed entries, put back in their columns
        where = seen_at.unsqueeze(1).expand(n, k, seen.shape[1])
        projected = r.new_zeros(n, k, d).scatter(2, where, _row_apply(factor.transpose(-1, -2), z))
        diagonal = r.new_zeros(n, k, d).scatter(2, where, _take(inv_chol.square().sum(-2), at).expand(n, k, -1))
        rest = (projected, diagonal)
    return log_det, z.square().sum(-1), fill, w, rest


def conditional_gaussian(X: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor):
    """One Gaussian ``N(mean, cov)`` given the observed entries of each row of ``X``.

    Returns ``log N(x_o; mu_o, S_oo)`` (n,), the rows filled with ``E[x_m | x_o]`` (n, D)
    and ``Cov[x_m | x_o]`` (n, D, D), zero outside the missing block
    (:func:`gaussian_conditionals` with one component).
    """
    out = gaussian_conditionals(X, mean.unsqueeze(0), cov.unsqueeze(0), "full")
    return out.log_prob[:, 0], out.filled[:, 0], out.conditional_covariances()[out.pattern, 0]


def conditional_gaussian_diag(X: torch.Tensor, mean: torch.Tensor, var: torch.Tensor):
    """:func:`conditional_gaussian` for ``N(mean, diag(var))``; the conditional covariance
    as its diagonal (n, D)."""
    out = gaussian_conditionals(X, mean.unsqueeze(0), var.unsqueeze(0), "diag")
    return out.log_prob[:, 0], out.filled[:, 0], out.covariances[:, 0]


def _patterns(observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of a boolean mask (n, D): the first row of each, and each row's pattern.

    Rows are keyed by their bits packed in 62-bit integers (``torch.unique(dim=0)``
    compares rows one by one, which cost more than the factorisations it saves), each
    word from its own columns only: bits padded to whole 62-bit words took five times
    as long at ``D = 5`` (330 us on 2400 rows against 64 us; the same keys).
    """
    n, d = observed.shape
    bits = observed.to(torch.int64)
    powers = 2 ** torch.arange(min(d, 62), dtype=torch.int64, device=observed.device)
    if d <= 62:
        _, pattern = torch.unique((bits * powers).sum(1), return_inverse=True)
    else:
        keys = torch.stack([(bits[:, w:w + 62] * powers[:min(62, d - w)]).sum(1) for w in range(0, d, 62)], 1)
        _, pattern = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(pattern.max()) + 1 if n else 0,), n, dtype=torch.int64, device=observed.device)
    first.scatter_reduce_(0, pattern, torch.arange(n, device=observed.device), reduce="amin")
    return first, pattern


def _by_pattern(X: torch.Tensor) -> torch.Tensor:
    """Row order that puts the rows missing the same entries next to each other."""
    return torch.argsort(_patterns(torch.isnan(X))[1], stable=True)


def _conditional_piece_rows(n_rows: int, k: int, d: int, itemsize: int, device) -> int:
    """Rows with missing entries per piece: each gathers a (K, w, w) factor of its
    pattern's smaller block (``w <= D / 2``, :func:`gaussian_conditionals`) and holds
    (K, D + 1) vectors. Pieces that fit the cache at ``w = D / 2`` are larger than the
    few rows (8 at D = 64, K = 4) that a (K, D, D) factor a row allowed: each piece
    costs some fifty small torch calls, and on digits (1000 x 64, 20% missing) an EM
    fit of 4 components took 7.0 s with that piece size, 2.7 s with 16 times it."""
    return chunk_rows(k * (d + 1 + (d // 2) ** 2) * itemsize, n_rows, device)


# ---------------------------------------------------------------------- draws
def _covariance_cholesky(covariances: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """A factor ``C`` with ``C C^T = Sigma`` (lower triangular), or ``sqrt(Sigma)``."""
    if covariance_type in ("full", "tied"):
        return torch.linalg.cholesky(covariances)
    return torch.sqrt(covariances)


def draw_conditional_mixture(
    X: torch.Tensor, conditionals: GaussianConditionals, choice: torch.Tensor, generator: torch.Generator,
    covariance_type: str,
) -> torch.Tensor:
    """Draws from ``N(E[x_m | x_o, k], Cov[x_m | x_o, k])`` with ``k = choice`` (n, S): (n, S, D).

    ``conditionals`` are :func:`gaussian_conditionals` of ``X`` (NaN where missing);
    the observed entries keep their values. Drawing ``choice`` from the component
    posterior ``p(k | x_o)`` makes these draws from the conditional mixture.
    """
    n, d = X.shape
    n_draws = choice.shape[1]
    out = torch.zeros(n, n_draws, d, dtype=X.dtype, device=X.device)
    filled = conditionals.filled
    if covariance_type in ("full", "tied"):
        factors = conditionals.conditional_factors()  # from the joint's Cholesky: no subtraction
    else:
        conditional = conditionals.conditional_covariances()
    for k in range(filled.shape[1]):
        z = torch.randn(n, n_draws, d, generator=generator, dtype=X.dtype, device=X.device)
        if covariance_type in ("full", "tied"):
            factor = factors[conditionals.pattern, k if factors.shape[1] > 1 else 0]
            draw = filled[:, k].unsqueeze(1) + z @ factor.transpose(1, 2)
        else:
            draw = filled[:, k].unsqueeze(1) + z * conditional[:, k].sqrt().unsqueeze(1)
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


# ---------------------------------------------------------------------- the blocks
def _sum_last(terms: torch.Tensor) -> torch.Tensor:
    """``terms.sum(-1)``, two terms as one addition: torch's float64 sum over a last
    dimension of 2 took 550 us on (2400, 16, 2) (Adult's "is zero" cells at 16
    components, at every E-step), the addition 26 us (:func:`_sum_terms`)."""
    return _sum_terms(terms.unbind(-1)) if terms.shape[-1] == 2 else terms.sum(-1)


def _sum_terms(terms) -> torch.Tensor:
    """``torch.stack(terms, -1).sum(-1)``: up to two terms as additions, the same numbers
    (the sum adds the terms in order from +0: ``(0 + a) + b``, a -0 made +0)."""
    if len(terms) > 2:
        return torch.stack(terms, -1).sum(-1)
    return terms[0] + 0.0 if len(terms) == 1 else (terms[0] + 0.0) + terms[1]


def _bernoulli_codes_log_prob(cells: torch.Tensor, family: Bernoulli) -> torch.Tensor:
    """``sum_c log p_kc(x_ic)`` (n, K) of cells that are codes 0 or 1 (NaN missing): the
    family's own ``log_prob`` at 0 and at 1 per component (and 0 for a missing cell),
    picked per cell, column by column (n, K), then summed by :func:`_sum_terms`: the
    numbers of ``log_prob`` over the (n, K, C) broadcast and its ``sum(-1)``, whose
    broadcast products and masks took twice as long (Adult's "is zero" cells, 2400 rows,
    16 components: 630 -> 290 us, at every E-step and score)."""
    table = family.log_prob(torch.tensor([0.0, 1.0], dtype=cells.dtype, device=cells.device).view(2, 1, 1))
    table = torch.cat([table, torch.zeros_like(table[:1])]).permute(2, 0, 1).contiguous()  # (C, 3, K): 0, 1, missing
    code = torch.where(torch.isnan(cells), 2.0, cells).long()
    return _sum_terms([table[c][code[:, c]] for c in range(cells.shape[1])])


class FamilyBlock(NamedTuple):
    """Columns of one family with per-component parameters: one tensor of batch (K, C).

    ``family`` is :class:`~skgenerative.distributions.Bernoulli` (its logits: binary
    columns, or the "is zero" cells of the positive columns when ``zeros``),
    :class:`~skgenerative.distributions.Poisson` (log-rates: count columns) or
    :class:`~skgenerative.distributions.Categorical` (logits (K, 1, L): one
    categorical or ordinal column, ``ordered`` for an ordinal one); ``columns`` are
    the table's positions, ``cells`` their slice of the model rows.
    """

    family: type
    columns: tuple
    cells: slice
    n_levels: int = 0
    ordered: bool = False
    zeros: bool = False

    @property
    def levels(self) -> bool:
        """Whether the cells are level codes (binary, categorical, ordinal columns)."""
        return self.family is Categorical or (self.family is Bernoulli and not self.zeros)

    def distribution(self, parameter: torch.Tensor):
        if self.family is Categorical:
            return Categorical(parameter, ordered=self.ordered)
        return self.family(parameter)

    def log_prob(self, cells: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
        """``sum_j log p_kj(x_ij)`` over each row's observed cells (n, K): a sum per row."""
        if self.family is Categorical:
            # one column of codes: rows of the (L, K) table of log-probabilities (0 where the
            # cell is missing), the very numbers of the family's gather over an (n, K, 1, L)
            # expansion at a quarter of its time (a quarter of the E-step on Adult at 64
            # components; with missing cells the gather and its broadcasting were 10% of the
            # mixed default's fit on Adult)
            table = self.distribution(parameter).level_log_probs()[:, 0, :].T
            code = cells[:, 0]
            if not has_nan(code):
                return table[code.long().clamp(0, table.shape[0] - 1)]
            missing = torch.isnan(code)
            picked = table[torch.where(missing, 0.0, code).long().clamp(0, table.shape[0] - 1)]
            return picked.masked_fill(missing.unsqueeze(1), 0.0)
        if self.family is Bernoulli:  # binary level codes, or "is zero" indicators
            return _bernoulli_codes_log_prob(cells, self.distribution(parameter))
        return _sum_last(self.distribution(parameter).log_prob(cells.unsqueeze(1)))

    def statistics(self, cells: torch.Tensor, resp: torch.Tensor, parameter: torch.Tensor | None = None) -> Statistics:
        """Expected counts and sums of the observed cells per component (float64); the
        observed cells are sufficient, so ``parameter`` is not read (a level group's
        statistics need theirs: :meth:`JointLevels.statistics`)."""
        out = self.family.weighted_statistics(cells, resp, self.n_levels)
        return Statistics(out.count.double(), out.sums.double())

    def m_step(self, statistics: Statistics, level_prior: float, count_mean: torch.Tensor) -> torch.Tensor:
        """The family's closed-form M-step with ``level_prior`` pseudo-counts (float64).

        Bernoulli and categorical: ``(S + a) / (n + a L)``, the posterior mode under a
        symmetric Dirichlet(1 + a); Poisson: ``(S + a m) / (n + a)``, the mode under a
        Gamma prior worth ``a`` pseudo-observations of the column's mean ``m``.
        """
        if self.family is Poisson:
            return Poisson.m_step(statistics, prior_count=level_prior, prior_mean=count_mean).log_rate
        if self.family is Categorical:
            return Categorical.m_step(statistics, pseudo_count=level_prior).logits
        return Bernoulli.m_step(statistics, pseudo_count=level_prior).logits

    def level_probabilities(self, parameter: torch.Tensor) -> torch.Tensor:
        """``theta_kj(l)`` (K, C, L): a Bernoulli's as the two levels ``(1 - p, p)``."""
        return torch.exp(self.distribution(parameter).level_log_probs())

    @property
    def parameter_shape(self) -> tuple:
        """The parameter's shape without the components: (C,), or (1, L) for a categorical."""
        return (len(self.columns),) + ((self.n_levels,) if self.family is Categorical else ())

    def n_parameters(self, n_components: int) -> int:
        per_cell = self.n_levels - 1 if self.family is Categorical else 1
        return n_components * len(self.columns) * per_cell


class LevelCells(NamedTuple):
    """The categorical and ordinal blocks of some rows as one one-hot matrix.

    ``blocks``: their positions among the family blocks; ``one_hot`` (n, sum of their
    levels): a 1 at each observed cell's level, a row of zeros for a missing cell.
    Every such column then scores with one matmul against the stacked (sum L, K)
    table of log-probabilities and gives its statistics from one ``resp^T @
    one_hot``, where each column took a gather and an (n, K, 1, L) einsum of its
    own: a third of the E-step of the mixed default's candidates on Adult (eight
    level columns) went to these small calls.
    """

    blocks: tuple
    one_hot: torch.Tensor | None

    @classmethod
    def of(cls, families) -> LevelCells:
        """From ``(block, cells)`` pairs; ``one_hot`` is None without a categorical block.
        A level group whose members are all observed in these rows joins as one
        column of slot codes (:class:`~skgenerative._level_groups.JointLevels`)."""
        blocks = tuple(b for b, (block, cells) in enumerate(families) if block.family is Categorical
                       or (isinstance(block, JointLevels) and not has_nan(cells)))
        if not blocks:
            return cls((), None)
        codes = torch.cat([block.slot_codes(cells) if isinstance(block, JointLevels) else cells
                           for block, cells in (families[b] for b in blocks)], 1)
        sizes = torch.tensor([families[b][0].n_levels for b in blocks], device=codes.device)
        observed = ~torch.isnan(codes)
        column = torch.minimum(torch.where(observed, codes, 0.0).long().clamp(min=0), sizes - 1)
        column += torch.cumsum(sizes, 0) - sizes
        one_hot = codes.new_zeros(codes.shape[0], int(sizes.sum()))
        return cls(blocks, one_hot.scatter_(1, column, observed.to(codes.dtype)))

    def log_prob(self, families, parameters, tables: dict | None = None) -> torch.Tensor | None:
        """``sum_j log p_kj(x_ij)`` over the rows' observed level cells (n, K); ``None``
        when a level has probability 0 (``-inf``: the caller scores block by block).
        ``tables``: the stacked tables of ``parameters`` already formed, by blocks (read
        and filled: an E-step's pieces share their parameters)."""
        table = None if tables is None else tables.get(self.blocks)
        if table is None:
            table = torch.cat([families[b][0].slot_log_probs(parameters[b]) if isinstance(families[b][0], JointLevels)
                               else families[b][0].distribution(parameters[b]).level_log_probs()[:, 0, :]
                               for b in self.blocks], 1)
            if tables is not None:
                tables[self.blocks] = table
        if not bool(torch.isfinite(table).all()):
            return None
        return self.one_hot @ table.T

    def statistics(self, families, resp: torch.Tensor, rows=None) -> dict:
        """``{b: Statistics}`` of each level block from one ``resp^T @ one_hot`` (float64)."""
        one_hot = self.one_hot if rows is None else self.one_hot[rows]
        sums = (resp.T @ one_hot).double()
        out, start = {}, 0
        for b in self.blocks:
            stop = start + families[b][0].n_levels
            part = sums[:, start:stop]
            out[b] = Statistics(part.sum(1, keepdim=True), part.unsqueeze(1))
            start = stop
        return out


class MixtureLayout:
    """Which block models each column of a table, and the model rows the blocks read.

    The model rows are the Gaussian block's values first (``D`` of them: real
    columns as they are, positive ones as ``log x``, NaN where missing or 0), minus a
    centre, in the compute dtype; then the cells of each :class:`FamilyBlock`: the
    "is zero" indicators of the positive columns that hold zeros (1, 0, NaN where
    missing), the binary columns, the count columns, then each categorical or
    ordinal column.

    Parameters
    ----------
    types : sequence of str
        Column types (:mod:`skgenerative._schema`).
    level_counts : sequence of int
        Levels of each column (0 for numbers).
    zero_columns : sequence of int, default=()
        The positive columns with a zero in the training data: each gets a point
        mass at 0 (the "is zero" block). A positive column without one is log-normal
        in every component, and a zero there at evaluation is scored as a level never
        seen in fit (:meth:`unseen_zeros`).
    groups : sequence of (columns, seen), default=()
        Level groups (:mod:`skgenerative._level_groups`): the positions of their
        discrete columns and the combinations seen at fit (product indices). Each
        becomes one :class:`~skgenerative._level_groups.JointLevels` block, after the
        other blocks; its columns leave their single-column blocks.
    scores : NormalScores or None, default=None
        Real columns the Gaussian block reads on their normal-score scale
        (:mod:`skgenerative._marginals`; ``marginals="normal_scores"``), the
        log-slope of each map in :meth:`log_jacobian`.
    """

    #: the level groups, (block index, block) pairs (a class default for layouts pickled before them)
    groups = ()

    def __init__(self, types, level_counts, zero_columns=(), groups=(), scores=None):
        types = list(types)
        self.scores = scores
        grouped = {j for columns, _ in groups for j in columns}
        kept = [t if j not in grouped else "grouped" for j, t in enumerate(types)]
        self.n_features = len(types)
        self.gaussian = [j for j, t in enumerate(types) if t in ("real", "positive")]
        self.positive = [j for j in self.gaussian if types[j] == "positive"]
        self.zeros = [j for j in self.positive if j in set(zero_columns)]
        self.log_scale = [i for i, j in enumerate(self.gaussian) if types[j] == "positive"]
        self.zero_scale = [self.gaussian.index(j) for j in self.zeros]
        self.real = [i for i, j in enumerate(self.gaussian) if types[j] == "real"]
        families = [(Bernoulli, self.zeros, {"zeros": True}),
                    (Bernoulli, [j for j, t in enumerate(kept) if t == "binary"], {}),
                    (Poisson, [j for j, t in enumerate(types) if t == "count"], {})]
        families += [(Categorical, [j], {"n_levels": int(level_counts[j]), "ordered": t == "ordinal"})
                     for j, t in enumerate(kept) if t in ("categorical", "ordinal")]
        start, blocks = len(self.gaussian), []
        for family, columns, options in families:
            if columns:
                blocks.append(FamilyBlock(family, tuple(columns), slice(start, start + len(columns)), **options))
                start += len(columns)
        for columns, seen in groups:
            blocks.append(JointLevels(columns, [max(1, int(level_counts[j])) for j in columns], seen,
                                      slice(start, start + len(columns)), [types[j] == "ordinal" for j in columns]))
            start += len(columns)
        self.blocks = tuple(blocks)
        self.groups = [(b, block) for b, block in enumerate(blocks) if isinstance(block, JointLevels)]
        self.width = start
        #: the level columns in table order: (column, block index, position in the block)
        self.levels = sorted((j, b, i) for b, block in enumerate(self.blocks) if block.levels
                             for i, j in enumerate(block.columns))

    @property
    def n_gaussian(self) -> int:
        return len(self.gaussian)

    @property
    def transformed(self) -> bool:
        """Whether a column reaches the Gaussian block through a map (``log``, normal scores)."""
        return bool(self.positive) or self.scores is not None

    def natural(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` with each positive column as ``log x`` (NaN where ``x = 0``) and each
        normal-score column as its score: the Gaussian block's scale."""
        if self.scores is not None:
            X = self.scores.forward(X)
        if not self.positive:
            return X
        X = X.clone()
        x = X[:, self.positive]
        X[:, self.positive] = torch.where(x > 0, torch.log(x), torch.full((), math.nan, dtype=X.dtype, device=X.device))
        return X

    def rows(self, X: torch.Tensor, center: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Model rows (n, width) of encoded table rows ``X`` (n, n_features), in ``dtype``.

        The Gaussian values are centred in ``X``'s precision, then cast (float32 EM
        never rounds raw values far from the origin).
        """
        if not self.blocks and not self.transformed:  # a numeric array, as it is
            return (X - center).to(dtype)
        gaussian = (self.natural(X)[:, self.gaussian] - center).to(dtype)
        cells = [X[:, list(block.columns)] for block in self.blocks]
        if self.zeros:  # the first block: is each such positive cell 0
            x = cells[0]
            cells[0] = torch.where(torch.isnan(x), x, (x == 0).to(x.dtype))
        return torch.cat([gaussian] + [c.to(dtype) for c in cells], dim=1)

    def log_jacobian(self, X: torch.Tensor) -> torch.Tensor:
        """``-sum_j log x_j`` over each row's observed positive cells ``x_j > 0``, plus
        ``sum_j log T_j'(x_j)`` over its observed normal-score cells (n,): from the
        density on the Gaussian block's scale to that in the user's units. A sum per row."""
        x = X[:, self.positive]
        out = torch.where(x > 0, -torch.log(torch.where(x > 0, x, torch.ones_like(x))),
                          torch.zeros_like(x)).sum(1)
        return out if self.scores is None else out + self.scores.log_jacobian(X)

    def from_scores(self, out: torch.Tensor) -> torch.Tensor:
        """Rows ``out`` (..., n_features) whose normal-score columns hold scores, with
        those columns back in the user's units (in place; returned)."""
        if self.scores is not None:
            out[..., self.scores.columns] = self.scores.inverse(out[..., self.scores.columns])
        return out

    def unseen_zeros(self, X: torch.Tensor) -> torch.Tensor:
        """Per row, the zeros in positive columns that had none at fit (n,)."""
        plain = [j for j in self.positive if j not in self.zeros]
        return (X[:, plain] == 0).sum(1).to(X.dtype)

    def family_log_prob(self, rows: torch.Tensor, parameters) -> torch.Tensor | None:
        """``sum_b log p_kb`` of every family block (n, K), or ``None`` without one."""
        return families_log_prob(tuple((block, rows[:, block.cells]) for block in self.blocks), parameters)[0]

    def parameter_shapes(self) -> list[tuple]:
        """The shape of each family block's parameter, without the components."""
        return [block.parameter_shape for block in self.blocks]

    def family_attributes(self, parameters: list[np.ndarray], n_components: int) -> dict:
        """The fitted attributes of the family blocks from their float64 parameters:
        ``level_probabilities_`` (one (K, L) array per level column, in column order,
        rows normalised in float64), ``zero_probabilities_`` (K, positive columns; 0 for
        a column without zeros), ``count_rates_`` (K, count columns) and
        ``level_group_probabilities_`` (one (K, L_1, ..., L_m) joint table per level group)."""
        tables = {j: block.level_probabilities(torch.as_tensor(p))[:, i]
                  for block, p in zip(self.blocks, parameters) for i, j in enumerate(block.columns) if block.levels}
        tables.update({j: t for b, block in self.groups
                       for j, t in zip(block.columns, block.marginal_tables(torch.as_tensor(parameters[b])))})
        zeros = np.zeros((n_components, len(self.positive)))
        rates = np.zeros((n_components, 0))
        for block, p in zip(self.blocks, parameters):
            if block.zeros:
                zeros[:, [self.positive.index(j) for j in block.columns]] = 1 / (1 + np.exp(-p))
            elif block.family is Poisson:
                rates = np.exp(p)
        joint = [torch.exp(block.combination_log_probs(torch.as_tensor(parameters[b]))).reshape(
            (n_components,) + block.sizes).numpy() for b, block in self.groups]
        return {"level_probabilities_": [(t / t.sum(1, keepdim=True)).numpy() for _, t in sorted(tables.items())],
                "zero_probabilities_": zeros, "count_rates_": rates, "level_group_probabilities_": joint}

    def n_parameters(self, n_components: int, covariance_type: str) -> int:
        """Free parameters of a mixture with this layout (BIC, AIC)."""
        k, d = n_components, self.n_gaussian
        gaussian = 0
        if d:
            gaussian = k * d + {"full": k * d * (d + 1) // 2, "diag": k * d,
                                "tied": d * (d + 1) // 2, "spherical": k}[covariance_type]
        return k - 1 + gaussian + sum(block.n_parameters(k) for block in self.blocks)


# -------------------------------------------------------------------------- E-step
class MixtureParameters(NamedTuple):
    """What EM carries from one step to the next (tensors in the compute dtype).

    ``precisions_cholesky`` (``P P^T = Sigma^{-1}``) scores rows whose Gaussian entries
    are complete and ``covariances`` the others (``None`` before the first M-step);
    shapes by covariance type, over the Gaussian block's ``D`` columns (possibly 0).
    ``families``: one parameter tensor per :class:`FamilyBlock`, in layout order.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor | None
    precisions_cholesky: torch.Tensor
    families: tuple = ()


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


def mixture_statistics(
    X: torch.Tensor,
    params: MixtureParameters,
    covariance_type: str,
    complete_second_moments: bool = True,
    families: tuple = (),
    levels: LevelCells | None = None,
    tables: dict | None = None,
) -> dict:
    """E-step on a chunk: expected sufficient statistics given the observed cells.

    ``X`` (n, D) holds the Gaussian block's values, NaN where missing (rows with NaN
    need ``params.covariances``; complete rows use ``params.precisions_cholesky``);
    ``families`` pairs each :class:`FamilyBlock` of ``params.families`` with its cells
    of the same rows. With responsibilities ``r_ik = p(k | observed cells of row i)``
    (the Gaussian marginal ``N(x_o; mu_k,o, Sigma_k,oo)`` times each family's
    probability of its observed cells) and, per component, ``x^_ik`` the row with its
    missing entries replaced by ``E[x_m | x_o, k]`` and ``C_ik = Cov[x_m | x_o, k]``
    (zero outside the missing block; Ghahramani & Jordan, 1994):

    - ``log_likelihood = sum_i log sum_k w_k p_k(observed cells of row i)`` (float64),
    - ``n_samples``, the number of rows; ``nk = sum_i r_ik``;
    - ``sx = sum_i r_ik x^_ik`` and ``sxx = sum_i r_ik (x^_ik x^_ik^T + C_ik)`` per
      component (full), summed over components (tied) or its diagonal (diag,
      spherical), when ``D > 0``;
    - ``family<b>``: block ``b``'s weighted statistics of its observed cells
      (:meth:`FamilyBlock.statistics`).

    A complete row has ``x^_ik = x_i`` and ``C_ik = 0``: the plain statistics of
    :func:`gaussian_statistics`. Every entry is a sum over rows (in float64), so the
    statistics of a partition of the rows add up to those of the whole. With
    ``complete_second_moments=False`` a tied model's ``sxx`` leaves out the complete
    rows' ``sum_i x_i x_i^T``, which does not depend on the parameters (EM forms it once).
    ``levels``: ``LevelCells.of(families)``, where the caller has it already; ``tables``:
    the level tables of ``params`` other pieces formed (:meth:`LevelCells.log_prob`).
    """
    offset = torch.log(params.weights)
    if families:
        families_part, levels = families_log_prob(families, params.families, levels, tables)
        offset = offset + families_part
    else:
        levels = None
    parts = []
    if X.shape[1] and has_nan(X):
        incomplete = torch.isnan(X).any(1)
        if bool(incomplete.any()):
            # every row incomplete (the E-step's pieces of them): read in place, not copied
            rows = None if bool(incomplete.all()) else incomplete
            part_offset = offset[incomplete] if offset.dim() == 2 and rows is not None else offset
            if _kernel_applies(X, covariance_type, ("full", "diag", "spherical")):
                norm, resp, moments = _kernel_statistics(X if rows is None else X[rows], params, part_offset,
                                                         covariance_type)
            else:
                conditionals = gaussian_conditionals(X if rows is None else X[rows], params.means,
                                                     params.covariances, covariance_type)
                norm, resp = normalised_responsibilities(conditionals.log_prob + part_offset)
                moments = {"sx": torch.einsum("nk,nkd->kd", resp, conditionals.filled).double(),
                           "sxx": conditionals.weighted_second_moments(resp, covariance_type).double()}
            parts.append(_statistics(norm, resp, families, levels, rows, parameters=params.families) | moments)
            if rows is None:
                X = X[:0]
            else:
                complete = ~incomplete
                X = X[complete]
                offset = offset[complete] if offset.dim() == 2 else offset
                families = tuple((block, cells[complete]) for block, cells in families)
                levels = levels if levels is None or levels.one_hot is None else levels._replace(
                    one_hot=levels.one_hot[complete])
    if X.shape[0] > 0 or not parts:
        if X.shape[1]:
            weighted = estimate_log_gaussian_prob(X, params.means, params.precisions_cholesky, covariance_type)
            norm, resp = normalised_responsibilities(weighted + offset)
            second_moments = complete_second_moments or covariance_type != "tied"
            _, sx, sxx = gaussian_statistics(X, resp, covariance_type, second_moments=second_moments)
            if sxx is None:  # tied, left to the caller
                sxx = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64, device=X.device)
            parts.append(_statistics(norm, resp, families, levels, parameters=params.families)
                         | {"sx": sx.double(), "sxx": sxx.double()})
        else:  # no Gaussian block: the families alone (a latent class model)
            norm, resp = normalised_responsibilities(offset.expand(X.shape[0], -1))
            parts.append(_statistics(norm, resp, families, levels, parameters=params.families))
    total = parts[0]
    for part in parts[1:]:
        total = add_statistics(total, part)
    return total


#: whether CPU rows with missing entries go through the compiled kernels
#: (:mod:`skgenerative._kernels`) where numba is there: the E-step of full, diagonal and
#: spherical covariances, and the scores and point imputations of full ones; tests
#: turn it off to compare them with the torch code
_use_kernel = _kernels.AVAILABLE


def _kernel_applies(X: torch.Tensor, covariance_type: str, kinds=("full",)) -> bool:
    return _use_kernel and covariance_type in kinds and X.device.type == "cpu" and _kernels.usable()


def _float64_array(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _kernel_conditionals(X: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor,
                         offset: torch.Tensor | None = None, accumulate: bool = True) -> tuple:
    """:func:`skgenerative._kernels.incomplete_rows` on tensors (float64 tensors back)."""
    out = _kernels.incomplete_rows(_float64_array(X), _float64_array(means), _float64_array(covariances),
                                   None if offset is None else _float64_array(offset), accumulate)
    if out is None:
        raise ValueError(_COVARIANCE_ERROR.format(extra=""))
    return tuple(None if a is None else torch.from_numpy(a) for a in out)


def _kernel_statistics(X: torch.Tensor, params: MixtureParameters, offset: torch.Tensor,
                       covariance_type: str = "full") -> tuple:
    """``(norm, resp, {"sx", "sxx"})`` of rows with missing entries from the compiled
    kernel: the numbers of :func:`gaussian_conditionals`, :func:`normalised_responsibilities`
    and :meth:`GaussianConditionals.weighted_second_moments`, formed in float64 row by
    row (``resp`` in ``X``'s dtype)."""
    if covariance_type != "full":  # diagonal: the statistics themselves
        k, d = params.means.shape
        variances = params.covariances if covariance_type == "diag" else params.covariances[:, None].expand(k, d)
        norm, resp, sx, sxx = (torch.from_numpy(a) for a in _kernels.incomplete_rows_diagonal(
            *(_float64_array(t) for t in (X, params.means, variances, offset))))
        return norm, resp.to(X.dtype), {"sx": sx, "sxx": sxx}
    _, norm, resp, filled, weighted = _kernel_conditionals(X, params.means, params.covariances, offset)
    moments = {"sx": torch.einsum("nk,nkd->kd", resp, filled),
               "sxx": torch.einsum("nk,nkd,nke->kde", resp, filled, filled) + weighted}
    return norm, resp.to(X.dtype), moments


def families_log_prob(families, parameters, levels: LevelCells | None = None,
                      tables: dict | None = None) -> tuple[torch.Tensor | None, LevelCells | None]:
    """``sum_b log p_kb`` of the ``(block, cells)`` pairs (n, K; ``None`` without one), and
    their :class:`LevelCells` (``levels`` if given, else formed here; ``None`` if the
    level blocks were scored one by one); ``tables`` as in :meth:`LevelCells.log_prob`."""
    levels = LevelCells.of(families) if levels is None else levels
    total = levels.log_prob(families, parameters, tables) if levels.one_hot is not None else None
    if total is None:
        levels = None
    for b, ((block, cells), parameter) in enumerate(zip(families, parameters)):
        if levels is None or b not in levels.blocks:
            part = block.log_prob(cells, parameter)
            total = part if total is None else total + part
    return total, levels


def _statistics(norm, resp, families, levels=None, rows=None, *, parameters) -> dict:
    out = {"log_likelihood": norm.double().sum(), "n_samples": resp.shape[0], "nk": resp.sum(0).double()}
    grouped = levels.statistics(families, resp, rows) if levels is not None and levels.one_hot is not None else {}
    for b, (block, cells) in enumerate(families):
        cells = cells if rows is None else cells[rows]
        out[f"family{b}"] = grouped[b] if b in grouped else block.statistics(cells, resp, parameters[b])
    return out


class _MixtureRows:
    """Training rows as EM reads them: :meth:`MixtureLayout.rows` with a fixed centre and
    dtype. A picklable map of a data source."""

    def __init__(self, layout: MixtureLayout, center: torch.Tensor, dtype: torch.dtype):
        self.layout, self.center, self.dtype = layout, center, dtype

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return self.layout.rows(X, self.center.to(X.device), self.dtype)


#: bytes of E-step pieces an in-memory fit keeps from one pass to the next (a quarter
#: of scikit-learn's default ``working_memory``); chunks beyond are formed at each pass
_KEPT_PIECES_BYTES = 256 * 2**20


class _Piece(NamedTuple):
    """Rows of a chunk that the E-step reads together: their Gaussian values, their
    ``(block, cells)`` pairs and the :class:`LevelCells` of those."""

    gaussian: torch.Tensor
    families: tuple
    levels: LevelCells


class _MixtureStatistics:
    """The E-step on a chunk of model rows (picklable: it travels to dask workers).

    Rows with a missing Gaussian entry go first, ordered by missingness pattern and in
    pieces small enough for their factors (:func:`gaussian_conditionals`), then the
    complete rows; each piece gives :func:`mixture_statistics`, and the pieces add up.
    A tied model's complete rows leave out ``sum x x^T`` (formed once). The
    log-likelihood includes the positive cells' log-Jacobian ``-sum log x`` (constant
    in EM; the normal-score cells' is added once per pass, :class:`_ShiftedEStep`), so
    that it is the training rows' mean score (``lower_bound_``; of the rows spread over
    their grids).

    The pieces and that log-Jacobian depend on the rows alone: they are formed once
    for a chunk and kept while the same chunk comes back (an in-memory source gives
    the same views of its rows at every pass), up to ``_KEPT_PIECES_BYTES`` in all,
    for the chunks of one tensor at a time (a dask block is a new tensor at each pass:
    only the last is kept); never pickled. Forming them at every pass (sorting the
    rows by pattern, the level one-hots) took 5% of the mixed default's time on Adult.
    The stacked level tables of the parameters are formed once a pass, not once a piece
    (kept with the very parameters object the pass gives every chunk).
    """

    def __init__(self, layout: MixtureLayout, covariance_type: str, log_center: torch.Tensor):
        self.layout, self.covariance_type, self.log_center = layout, covariance_type, log_center
        self._kept = {}  # key of a chunk -> (the chunk, its pieces, its log-Jacobian, their bytes)
        self._tables = None  # (the parameters of the last call, their level tables)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_kept": {}, "_tables": None}

    def __call__(self, chunk: torch.Tensor, params: MixtureParameters) -> dict:
        pieces, log_jacobian = self._pieces(chunk, params.weights.shape[0])
        tables = self._tables  # the chunks of one pass share their parameters (this very object)
        if tables is None or tables[0] is not params:
            tables = self._tables = (params, {})
        out = accumulate(pieces, lambda piece: mixture_statistics(
            piece.gaussian, params, self.covariance_type, complete_second_moments=False,
            families=piece.families, levels=piece.levels, tables=tables[1],
        ))
        if log_jacobian is not None:
            out["log_likelihood"] = out["log_likelihood"] - log_jacobian
        return out

    def _pieces(self, chunk: torch.Tensor, k: int) -> tuple[list[_Piece], torch.Tensor | None]:
        """The chunk's pieces and ``sum log x`` over its positive cells (``None`` without
        one), kept for the next call on the same rows: same memory, shape, strides and
        version (unmodified since; the kept reference keeps the memory from being reused)."""
        # an inference tensor (a dask block's) has no version to tell a change: never kept
        key = None if chunk.is_inference() else (chunk.data_ptr(), tuple(chunk.shape), chunk.stride(),
                                                 chunk._version, chunk.dtype, chunk.device, k)
        kept = self._kept.get(key)
        if kept is not None:
            return kept[1], kept[2]
        storage = chunk.untyped_storage().data_ptr()
        if any(entry[0].untyped_storage().data_ptr() != storage for entry in self._kept.values()):
            self._kept = {}  # rows of another tensor
        d, complete, rows = self.layout.n_gaussian, chunk, []
        if d and has_nan(chunk[:, :d]):
            incomplete = torch.isnan(chunk[:, :d]).any(1)
            n_incomplete = int(incomplete.sum())
            if n_incomplete:
                missing = chunk[incomplete]
                missing = missing[_by_pattern(missing[:, :d])]
                size = _conditional_piece_rows(n_incomplete, k, d, chunk.element_size(), chunk.device)
                rows += [missing[sub] for sub in iter_slices(n_incomplete, size)]
                complete = chunk[~incomplete]
        if complete.shape[0] or not rows:
            rows.append(complete)
        pieces = []
        for piece in rows:
            families = tuple((block, piece[:, block.cells]) for block in self.layout.blocks)
            pieces.append(_Piece(piece[:, :d], families, LevelCells.of(families)))
        log_jacobian = None
        if self.layout.positive:
            log_x = torch.cat([piece[:, self.layout.log_scale] for piece in rows]).double() + self.log_center
            log_jacobian = torch.nan_to_num(log_x).sum()
        size = chunk.element_size() * sum(piece.numel() + (p.levels.one_hot.numel() if p.levels.one_hot is not None
                                                           else 0) for piece, p in zip(rows, pieces))
        if key is not None and size + sum(entry[3] for entry in self._kept.values()) <= _KEPT_PIECES_BYTES:
            self._kept[key] = (chunk, pieces, log_jacobian, size)
        return pieces, log_jacobian


class _ScoresLogJacobian:
    """``sum log T'(x)`` of a chunk of training rows, already spread over their grids (picklable)."""

    def __init__(self, scores):
        self.scores = scores

    def __call__(self, chunk: torch.Tensor) -> dict:
        return {"log_jacobian": self.scores.log_jacobian(chunk).double().sum()}


@dataclass(frozen=True)
class _ShiftedEStep(EStep):
    """An E-step whose log-likelihood adds ``constant``: the normal-score cells'
    ``sum log T'(x)``, the same in every pass (summed once, by :func:`prepare_mixture_fit`)."""

    constant: float = 0.0

    def __call__(self, params) -> dict:
        out = super().__call__(params)
        out["log_likelihood"] = out["log_likelihood"] + self.constant
        return out


def _complete_second_moments(chunk: torch.Tensor, d: int) -> dict:
    """``sum x x^T`` over the rows of a chunk with every Gaussian entry observed (float64)."""
    x = chunk[:, :d]
    complete = x[~torch.isnan(x).any(1)].double()
    return {"sxx": complete.T @ complete}


# ----------------------------------------------------------------- initialisation
def _sq_distances(X: torch.Tensor, centers: torch.Tensor, norms: torch.Tensor | None = None) -> torch.Tensor:
    """``|x - c|^2`` (n, m); ``norms``: the rows' ``|x|^2`` (n, 1), where the caller has them.
    ``X @ C^T * 2`` is ``(2 X) @ C^T`` to the bit (a power of two), without the scaled copy of ``X``."""
    norms = X.square().sum(1, keepdim=True) if norms is None else norms
    d2 = (
        norms
        - (X @ centers.T) * 2.0
        + centers.square().sum(1).unsqueeze(0)
    )
    return d2.clamp_min_(0.0)


def _nearest(X: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """The nearest centre of each row: ``argmin_k |c_k|^2 - 2 x.c_k`` (``|x|^2``, the
    same for every centre, left out: one fused product, half the time of the distances).
    ``min(1).indices``: the first of equal minima, as ``argmin``, in half its time on the CPU."""
    return torch.addmm(centers.square().sum(1), X, centers.T, alpha=-2.0).min(1).indices


def _kmeans_plusplus(X: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``k`` seeds chosen by greedy k-means++ (Arthur & Vassilvitskii).

    Each new seed is the best of ``2 + log k`` candidates drawn with probability
    proportional to the squared distance to the nearest seed so far.
    """
    n = X.shape[0]
    trials = 2 + int(math.log(k))
    norms = X.square().sum(1, keepdim=True)  # the same at every step
    first = torch.randint(n, (1,), generator=generator, device=X.device)
    indices = [first]
    closest = _sq_distances(X, X[first], norms).squeeze(1)
    for _ in range(1, k):
        total = closest.sum()
        if float(total) <= 0:  # every point coincides with a seed
            candidates = torch.randint(n, (trials,), generator=generator, device=X.device)
        else:
            candidates = torch.multinomial(closest / total, trials, replacement=True, generator=generator)
        distance = torch.minimum(closest.unsqueeze(1), _sq_distances(X, X[candidates], norms))
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
            labels[rows] = _nearest(X[rows], centers)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=k).to(X.dtype)
        empty = counts == 0
        new = torch.where(empty.unsqueeze(1), centers, sums / counts.clamp_min(1).unsqueeze(1))
        shift = float((new - centers).square().sum())
        centers = new
        if shift <= threshold:
            break
    for rows in iter_slices(n, size):
        labels[rows] = _nearest(X[rows], centers)
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


# ----------------------------------------------------------------- the EM fit
@dataclass
class _MixtureFitData:
    """What one fit prepares once for its EM runs (from the data source)."""

    layout: MixtureLayout
    e_step: EStep
    init_rows: torch.Tensor  # model rows of the initialisation (all, in memory)
    center: torch.Tensor  # the Gaussian block's centre, in the input's dtype
    dtype: torch.dtype  # the training dtype
    has_missing: bool  # whether a Gaussian entry is missing (or a positive cell is 0)
    prior_variance: torch.Tensor  # the Gaussian columns' variances (covariance prior, floor)
    count_mean: torch.Tensor  # the count columns' means (Poisson prior, k-means scale)
    count_scale: torch.Tensor  # and their standard deviations
    tied_second_moments: torch.Tensor | None  # sum x x^T over complete rows (tied)
    init: dict  # validated *_init arrays

    @property
    def floor_variance(self) -> torch.Tensor:
        """The variances the covariance floor is relative to (1 for a constant column)."""
        v = self.prior_variance
        return torch.where(v > 0, v, torch.ones_like(v))


def prepare_mixture_fit(estimator, source, seed: int, resume: bool = False) -> _MixtureFitData:
    """A data source's rows ready for a mixture's EM: one pass of column moments (on
    the Gaussian block's scale: ``log x`` for positive columns), the model rows (a map
    of the source), the initialisation's rows and, for tied covariances, the complete
    rows' ``sum x x^T``.

    EM runs on Gaussian values centred at their mean (the model is translation
    equivariant): it keeps the uncentred second moments well conditioned. ``resume``
    (a warm start) keeps the level groups' combinations of the fit it continues.
    """
    est = estimator
    n, k, cov = source.shape[0], est.n_components_, est.covariance_type
    if n < k:
        raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}")
    types, level_counts = est.schema_.types, est.schema_.level_counts
    scores = getattr(est, "normal_scores_", None)
    layout = MixtureLayout(types, level_counts, scores=scores)
    gaussian, d = layout.gaussian, layout.n_gaussian
    init = check_initial_parameters(est.weights_init, est.means_init, est.precisions_init, k, d, cov)
    raw = source.column_moments()
    # normal-score columns are spread over their grids once: a map of the source, which a
    # dask collection applies in each pass (the spread is a function of the row's bits)
    spread = source if scores is None else source.map(scores.dequantised)
    # rows in memory: one normal-score map of them for their moments and the model rows
    with nullcontext() if scores is None else scores.reused(getattr(spread, "tensor", None)):
        moments = spread.map(layout.natural).column_moments() if layout.transformed else raw
        zeros = [j for j in layout.positive if moments.count[j] < raw.count[j]]  # log 0 is missing
        row_bytes = est._row_bytes(source.shape[1]) * 2
        seen = (tuple((block.columns, block.seen) for _, block in est._layout.groups) if resume
                else _seen_combinations(est, source, row_bytes))
        layout = MixtureLayout(types, level_counts, zeros, seen, scores)
        center = moments.mean[gaussian].to(device=source.device, dtype=source.dtype)
        dtype = est._dtype
        rows = spread.map(_MixtureRows(layout, center, dtype), dtype=dtype, width=layout.width)
    tied = None
    if cov == "tied" and d:  # incomplete rows add expected moments per pass
        tied = rows.reduce(_complete_second_moments, d, row_bytes=row_bytes)["sxx"].to(dtype)
    count = [j for block in layout.blocks if block.family is Poisson for j in block.columns]
    as_t = lambda t: t.to(device=source.device, dtype=dtype)  # noqa: E731
    return _MixtureFitData(
        layout=layout,
        e_step=_ShiftedEStep(rows, _MixtureStatistics(layout, cov, center[layout.log_scale].double()), row_bytes,
                             constant=0.0 if scores is None else float(
                                 spread.reduce(_ScoresLogJacobian(scores), row_bytes=row_bytes)["log_jacobian"])),
        init_rows=rows.sample(random_state=seed),
        center=center,
        dtype=dtype,
        has_missing=d > 0 and moments.has_missing(gaussian),
        prior_variance=as_t(moments.variance[gaussian]),
        count_mean=raw.mean[count].clamp_min(1.0 / n).to(source.device),  # a rate > 0 even for all-zero counts
        count_scale=as_t(raw.variance[count].sqrt()),
        tied_second_moments=tied,
        init=init,
    )


def _seen_combinations(estimator, source, row_bytes: int) -> tuple:
    """``(columns, seen)`` of each of the estimator's level groups: the combinations of
    levels in the source's rows with every member observed (one pass, sums over blocks)."""
    groups = getattr(estimator, "_level_group_columns", [])
    if not groups:
        return ()
    level_counts = estimator.schema_.level_counts
    sized = tuple((columns, tuple(max(1, int(level_counts[j])) for j in columns)) for columns in groups)
    counts = source.reduce(combination_counts, sized, row_bytes=row_bytes)
    return tuple((columns, tuple(torch.nonzero(counts[f"group{g}"] > 0).squeeze(1).tolist()))
                 for g, columns in enumerate(groups))


def _initial_features(data: _MixtureFitData, rows: torch.Tensor) -> torch.Tensor:
    """What k-means reads: the Gaussian values (missing ones at the mean, 0 after
    centring); on a table with other blocks, those standardised, the counts
    standardised, and the level and "is zero" indicators scaled by ``sqrt(1/2)``."""
    layout = data.layout
    g = rows[:, :layout.n_gaussian]
    g = torch.nan_to_num(g, nan=0.0) if data.has_missing else g
    if not layout.blocks:
        return g
    unit = lambda v: torch.where(v > 0, v, torch.ones_like(v))  # noqa: E731
    numbers = [g / unit(data.prior_variance.sqrt())]
    levels = []
    for block in layout.blocks:
        cells = rows[:, block.cells]
        if block.family is Poisson:
            numbers.append(torch.nan_to_num((cells - data.count_mean.to(cells.dtype)) / unit(data.count_scale)))
    members = [(j, b, i, layout.blocks[b].n_levels) for j, b, i in layout.levels]
    members += [(j, b, i, block.sizes[i]) for b, block in layout.groups for i, j in enumerate(block.columns)]
    for j, b, i, n_levels in sorted(members):
        levels.append(_LEVEL_SCALE * Categorical.statistics(rows[:, layout.blocks[b].cells][:, i], max(n_levels, 2)))
    if layout.positive:
        levels.append(_LEVEL_SCALE * Categorical.statistics(rows[:, layout.blocks[0].cells], 2).flatten(1))
    return torch.cat(numbers + levels, dim=1)


# ------------------------------------------------------------------ evaluation
def weighted_log_prob(
    rows: torch.Tensor, params: MixtureParameters, layout: MixtureLayout, covariance_type: str,
    piece_rows: int,
) -> torch.Tensor:
    """``log w_k + log p_k(observed cells)`` of model rows (n, K).

    The Gaussian block scores complete entries with the precision factors and rows
    with missing entries through :func:`gaussian_conditionals`, ordered by pattern
    in pieces of ``piece_rows``; each row's value depends on its own cells only.
    """
    d = layout.n_gaussian
    offset = torch.log(params.weights)
    levels = layout.family_log_prob(rows, params.families)
    offset = offset if levels is None else offset + levels
    if not d:
        return offset.expand(rows.shape[0], -1)
    g = rows[:, :d]
    means, prec_chol = params.means, params.precisions_cholesky
    if not has_nan(g):
        return estimate_log_gaussian_prob(g, means, prec_chol, covariance_type, rowwise=True) + offset
    incomplete = torch.isnan(g).any(1)
    out = torch.empty(rows.shape[0], means.shape[0], dtype=g.dtype, device=g.device)
    if not bool(incomplete.all()):
        out[~incomplete] = estimate_log_gaussian_prob(g[~incomplete], means, prec_chol, covariance_type,
                                                      rowwise=True)
    index = torch.nonzero(incomplete).squeeze(1)
    index = index[_by_pattern(g[index])]
    kernel = _kernel_applies(g, covariance_type)
    for sub in iter_slices(index.numel(), piece_rows):
        rows_sub = index[sub]
        out[rows_sub] = (_kernel_conditionals(g[rows_sub], means, params.covariances, accumulate=False)[0].to(g.dtype)
                         if kernel else
                         gaussian_conditionals(g[rows_sub], means, params.covariances, covariance_type).log_prob)
    return out + offset


def explain_missing(rows: torch.Tensor, params: MixtureParameters, covariance_type: str,
                    piece_rows: int) -> torch.Tensor:
    """``log p(x_j | the row's other observed entries)`` (n, D) of a Gaussian mixture on
    rows with missing entries (NaN; 0 on missing entries), in closed form.

    ``log p(x_o) - log p(x_o without j)``, with ``log p_k(x_o without j) = log p_k(x_o) -
    log N_k(x_j | rest)`` per component (:func:`gaussian_conditionals` with
    ``leave_one_out=True``): one pass instead of one marginal per column, rows ordered
    by pattern in pieces of ``piece_rows``; each row's value depends on its own entries.
    """
    out = torch.zeros_like(rows)
    index = _by_pattern(rows)
    log_weights = torch.log(params.weights)
    for sub in iter_slices(index.numel(), piece_rows):
        at = index[sub]
        c = gaussian_conditionals(rows[at], params.means, params.covariances, covariance_type, leave_one_out=True)
        weighted = c.log_prob + log_weights
        rest = torch.logsumexp(weighted.unsqueeze(2) - c.leave_one_out, dim=1)
        value = torch.logsumexp(weighted, dim=1, keepdim=True) - rest
        out[at] = torch.where(torch.isnan(rows[at]), torch.zeros((), dtype=rows.dtype, device=rows.device), value)
    return out


class _Filled(NamedTuple):
    """The part of :class:`GaussianConditionals` a point imputation reads."""

    log_prob: torch.Tensor
    filled: torch.Tensor


def _posterior(rows, params: MixtureParameters, layout: MixtureLayout, covariance_type: str, factors: bool = True):
    """``p(k | observed cells)`` (n, K) and the Gaussian block's conditionals (or
    ``None``); without ``factors`` (a point imputation), possibly only their
    ``log_prob`` and ``filled`` (:class:`_Filled`, from the compiled kernel)."""
    weighted = torch.log(params.weights)
    levels = layout.family_log_prob(rows, params.families)
    weighted = weighted if levels is None else weighted + levels
    conditionals = None
    if layout.n_gaussian:
        g = rows[:, :layout.n_gaussian]
        if not factors and _kernel_applies(g, covariance_type) and has_nan(g):
            log_prob, _, _, filled, _ = _kernel_conditionals(g, params.means, params.covariances, accumulate=False)
            conditionals = _Filled(log_prob.to(g.dtype), filled.to(g.dtype))
        else:
            conditionals = gaussian_conditionals(g, params.means, params.covariances, covariance_type)
        weighted = conditionals.log_prob + weighted
    return torch.softmax(weighted.expand(rows.shape[0], -1), dim=1), conditionals


def impute_point(
    X: torch.Tensor, rows: torch.Tensor, params: MixtureParameters, center: torch.Tensor,
    layout: MixtureLayout, covariance_type: str, posterior: tuple | None = None, level_probabilities=None,
) -> torch.Tensor:
    """Every cell of the table rows ``X`` (n, n_features) at its conditional point.

    ``posterior``: :func:`_posterior` of ``rows`` when the caller has it already;
    ``level_probabilities``: ``{column: p(level | observed cells)}`` (n, L) of some
    categorical or ordinal columns, when the caller has them (the same numbers as the
    family's mixture of its level probabilities: formed once, not twice).

    With ``r_k = p(k | observed cells)``: a real cell's ``sum_k r_k E_k[x_j | x_o]``; a
    positive cell's :class:`~skgenerative.distributions.ZeroInflatedLogNormal` point of
    its conditional (0 when ``sum_k r_k pi_kj >= 1/2``, else the conditional geometric
    mean ``exp(sum_k r'_k E_k[log x_j | x_o])``, ``r'_k`` proportional to
    ``r_k (1 - pi_kj)``); a level's mode (its median when ordinal) and a count's mean
    of ``sum_k r_k p_kj``. Observed cells come back as well (callers keep their own).
    """
    resp, conditionals = posterior or _posterior(rows, params, layout, covariance_type, factors=False)
    out = X.clone()
    if conditionals is not None:
        filled = conditionals.filled
        mean = sum(resp[:, k, None] * filled[:, k] for k in range(filled.shape[1])) + center
        out[:, [layout.gaussian[i] for i in layout.real]] = mean[:, layout.real]
        out[:, layout.positive] = torch.exp(mean[:, layout.log_scale])  # the geometric mean
        layout.from_scores(out)  # a normal-score cell: T^{-1} of its conditional mean score
    for block, parameter in zip(layout.blocks, params.families):
        if block.zeros:
            log_x = filled[:, :, layout.zero_scale] + center[layout.zero_scale]
            cells = ZeroInflatedLogNormal(parameter, log_x, torch.zeros_like(log_x)).point(resp)
        elif isinstance(block, JointLevels):  # the members' modes given the observed ones
            cells = block.point(rows[:, block.cells], parameter, resp)
        elif block.family is Categorical and block.columns[0] in (level_probabilities or {}):
            probabilities = level_probabilities[block.columns[0]]
            cells = level_point(probabilities, block.ordered).to(probabilities.dtype).unsqueeze(1)
        else:
            cells = block.distribution(parameter).point(resp)
        out[:, list(block.columns)] = cells.to(out.dtype)
    return torch.where(torch.isnan(X), out, X)


def _draw_families(out, gaussian, index, params: MixtureParameters, layout: MixtureLayout, generator, rows=None):
    """Cells of the family blocks drawn in components ``index`` (any shape), into ``out``
    (``index.shape + (n_features,)``); ``gaussian`` the Gaussian block's draws (user's
    scale before ``exp``). Levels by ``torch.multinomial``, column by column in table
    order (the stream of draws the level tables had before the blocks), then each level
    group's members together from its joint table, given the observed members of the
    model ``rows`` (n, width) of ``index``'s first dimension when those are given."""
    for j, b, i in layout.levels:
        probabilities = layout.blocks[b].level_probabilities(params.families[b])[:, i][index]
        levels = torch.multinomial(probabilities.reshape(-1, probabilities.shape[-1]), 1, generator=generator)
        out[..., j] = levels.reshape(index.shape).to(out.dtype)
    for b, block in layout.groups:
        cells = None if rows is None else rows[:, block.cells]
        out[..., list(block.columns)] = block.draw(params.families[b], index, generator, cells).to(out.dtype)
    if layout.positive:
        out[..., layout.positive] = torch.exp(gaussian[..., layout.log_scale])
    if gaussian is not None:
        layout.from_scores(out)
    for block, parameter in zip(layout.blocks, params.families):
        if block.zeros:
            zero = Bernoulli(parameter[index]).sample(generator)
            out[..., list(block.columns)] = torch.where(zero > 0, torch.zeros_like(zero), out[..., list(block.columns)])
        elif block.family is Poisson:
            out[..., list(block.columns)] = Poisson(parameter[index]).sample(generator).to(out.dtype)
    return out


def impute_draws(
    X: torch.Tensor, rows: torch.Tensor, params: MixtureParameters, center: torch.Tensor,
    layout: MixtureLayout, covariance_type: str, n_draws: int, generator: torch.Generator,
) -> torch.Tensor:
    """``n_draws`` draws (n, S, n_features) of every cell from ``p(x_missing | x_observed)``.

    A component ``k ~ p(k | observed cells)`` per draw, then every block given ``k``:
    the Gaussian entries from their conditional Gaussian, each family cell from its
    component's distribution (a positive cell is 0 with probability ``pi_kj``, else
    ``exp`` of its Gaussian draw). Exact: within a component the blocks are independent.
    """
    resp, conditionals = _posterior(rows, params, layout, covariance_type)
    choice = torch.multinomial(resp, n_draws, replacement=True, generator=generator)
    out = X.unsqueeze(1).repeat(1, n_draws, 1)
    gaussian = None
    if conditionals is not None:
        gaussian = draw_conditional_mixture(rows[:, :layout.n_gaussian], conditionals, choice, generator,
                                            covariance_type) + center
        out[..., [layout.gaussian[i] for i in layout.real]] = gaussian[..., layout.real]
    out = _draw_families(out, gaussian, choice, params, layout, generator, rows)
    return torch.where(torch.isnan(X).unsqueeze(1), out, X.unsqueeze(1))


def draw_rows(params: MixtureParameters, layout: MixtureLayout, covariance_type: str, n: int,
              generator: torch.Generator) -> torch.Tensor:
    """``n`` table rows (n, n_features) drawn from the mixture: a component per row, then
    every block given it (``params.means`` uncentred; no precision factors needed)."""
    weights = params.weights
    labels = torch.multinomial(weights, n, replacement=True, generator=generator)
    out = torch.empty(n, layout.n_features, dtype=weights.dtype, device=weights.device)
    gaussian = None
    if layout.n_gaussian:
        gaussian = sample_mixture(weights, params.means, params.covariances, covariance_type, n, generator,
                                  labels=labels)
        out[:, [layout.gaussian[i] for i in layout.real]] = gaussian[:, layout.real]
    return _draw_families(out, gaussian, labels, params, layout, generator)


def _empty_gaussian(k: int, covariance_type: str, like: torch.Tensor):
    """Means, covariances and precision factors of a Gaussian block over no column."""
    shape = {"full": (k, 0, 0), "tied": (0, 0), "diag": (k, 0), "spherical": (k,)}[covariance_type]
    ones = like.new_ones(shape)
    return like.new_zeros(k, 0), ones, ones


# ---------------------------------------------------------------------- estimator
class ComponentChoiceMixin:
    """``n_components="auto"``: the number of components chosen by held-out
    log-likelihood over a doubling grid (see :class:`GaussianMixtureDensity`)."""

    def _choose_n_components(self, source, seed: int) -> int:
        """``n_components="auto"``: the held-out log-likelihood over a doubling grid.

        A fifth of the rows (:data:`AUTO_VALIDATION_FRACTION`, drawn from the seed) is
        held out; mixtures of 1, 2, 4, ... components (at most
        :data:`AUTO_MAX_COMPONENTS`, and at least :data:`AUTO_ROWS_PER_COMPONENT`
        training rows per component) are fitted on the rest, each with this
        estimator's settings (EM to ``tol`` times :data:`AUTO_SEARCH_TOL_FACTOR`), and
        scored on the held-out rows (mean log-likelihood, the user's units). A size
        is *close* to the best when its mean is at most :data:`AUTO_STANDARD_ERRORS`
        standard errors of the paired per-row differences below the best's. The grid
        stops at the first size that is not close; the largest close size is returned,
        to be refitted on every row.
        """
        n = source.shape[0]
        train, held_out = source.split(AUTO_VALIDATION_FRACTION, lambda index: (seed * 1000003 + _AUTO_SPLIT + index) % (2**31 - 1))
        n_train = n - (0 if held_out is None else held_out.shape[0])
        largest = min(AUTO_MAX_COMPONENTS, n_train // AUTO_ROWS_PER_COMPONENT)
        candidates, rows = [], []
        started = time.perf_counter()
        if held_out is not None and held_out.shape[0] and largest >= 2:
            held_out = held_out.cpu().numpy()
            k = 1
            while k <= largest:
                self.n_components_ = k
                self._cache = {}
                with warnings.catch_warnings():  # only the chosen fit's convergence is reported
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    data = prepare_mixture_fit(self, train, seed)
                    self._em_fit(data, n_init=self.n_init, max_iter=self.max_iter,
                                 tol=self.tol * AUTO_SEARCH_TOL_FACTOR,
                                 generator=generator_from(seed, source.device), verbose=self.verbose - 1)
                candidates.append(k)
                rows.append(self._held_out_scores(held_out))
                self._log(f"n_components={k}: held-out log-likelihood {rows[-1].mean():.4f} per row", 2)
                if not _close_to_best(rows)[-1]:
                    break
                k *= 2
        self._cache = {}
        scores = [float(np.mean(r)) for r in rows]
        self.n_components_candidates_ = np.asarray(candidates or [1], dtype=np.int64)
        self.n_components_scores_ = np.asarray(scores or [np.nan], dtype=np.float64)
        chosen = candidates[np.flatnonzero(_close_to_best(rows))[-1]] if rows else 1
        tried = ", ".join(f"{k}: {v:.3f}" for k, v in zip(candidates, scores)) or "too few rows to hold any out"
        self._auto_summary = (f"n_components='auto': {chosen} by held-out log-likelihood per row "
                              f"({tried}; {time.perf_counter() - started:.1f} s)")
        self._log(self._auto_summary, 2)
        return chosen

    def _em_summary(self) -> str:
        return f"; {self._auto_summary}" if self.n_components == "auto" and hasattr(self, "_auto_summary") else ""

    def _held_out_scores(self, rows: np.ndarray) -> np.ndarray:
        """Log-likelihood of each of ``rows`` under the parameters just fitted (evaluation dtype)."""
        self._in_training = False
        try:
            return np.asarray(self._evaluate(self._observed_log_prob, rows), dtype=np.float64)
        finally:
            self._in_training = True
            self._cache = {}


def _close_to_best(scores: list) -> np.ndarray:
    """Whether each candidate's held-out rows score within :data:`AUTO_STANDARD_ERRORS`
    standard errors of the best candidate's (differences paired row by row)."""
    means = np.array([np.mean(s) for s in scores])
    best = int(np.argmax(means))
    close = np.zeros(len(scores), dtype=bool)
    for i, s in enumerate(scores):
        difference = s - scores[best]
        error = np.std(difference, ddof=1) / math.sqrt(len(difference)) if len(difference) > 1 else 0.0
        close[i] = means[i] - means[best] >= -AUTO_STANDARD_ERRORS * error
    return close


def _grid_steps(rows: np.ndarray, columns) -> list:
    """Per column of ``rows`` (numpy, NaN missing), the step of the grid of decimal places
    its values are written on, the width it is spread over; 0 off any grid, with
    dequantisation off, or for a column of at most ``MARGINAL_UNSPREAD_LEVELS`` values."""
    steps = []
    for j in columns:
        values = rows[:, j][~np.isnan(rows[:, j])]
        places = _decimal_places(values) if values.size else None
        spread = MARGINAL_DEQUANTISE and np.unique(values).size > MARGINAL_UNSPREAD_LEVELS
        steps.append(0.0 if places is None or not spread else 10.0 ** -places)
    return steps


class MarginalsMixin:
    """``marginals``: the real columns' normal-score maps (:mod:`skgenerative._marginals`),
    fitted before the components (see :class:`GaussianMixtureDensity`)."""

    def _marginals_used(self) -> str:
        if self.marginals != "auto":
            return self.marginals
        return "normal_scores" if self.n_components == "auto" and self.schema_.from_frame else "gaussian"

    def _fit_marginals(self, source, seed: int, resume: bool = False) -> None:
        """``normal_scores_``: the maps of the real columns from the source's rows (all
        of them in memory; :data:`~skgenerative._sources.INIT_SAMPLE_ROWS` drawn from
        a dask collection), each column spread over its grid of decimal places. A warm
        start keeps the maps of the fit it resumes."""
        if resume:
            return
        self.normal_scores_ = None
        columns = self._real_columns()
        if self._marginals_used() != "normal_scores" or not columns:
            return
        rows = source.sample(random_state=seed).to("cpu", torch.float64).numpy()
        steps = _grid_steps(rows, columns)
        # the synthetic-table call only: a point imputation (the conditional mean) would move
        # a value within its cell with the rest of the row (GenerativeImputer on Wine, 3 seeds:
        # quality's NRMSE 0.823 -> 0.855 at 20% missing, every number's 0.637 -> 0.646)
        ordered = MARGINAL_ORDERED_LEVELS if self.marginals == "auto" else 0
        self.normal_scores_ = NormalScores.fit(rows, columns, steps, seed, MARGINAL_KNOTS, ordered)

    def _real_columns(self) -> list:
        """Positions of the real columns: the ones the normal-score maps read."""
        return [j for j, t in enumerate(self.schema_.types) if t == "real"]

    def _spread_columns(self, X: np.ndarray) -> list:
        """The real columns the normal-score maps spread over their grids (no
        :class:`~skgenerative.DiscreteDataWarning`: their density is bounded)."""
        if self._marginals_used() != "normal_scores":
            return []
        columns = self._real_columns()
        return [j for j, step in zip(columns, _grid_steps(X, columns)) if step > 0]

    def _sample_limits(self, bounds):
        """Normal-score columns are not snapped to their repeated values: the map spreads
        each grid value over its share of the normal scale, so draws rounded onto the grid
        take the values at their training frequencies, rare ones included (snapping moved
        values held by fewer than 5 rows onto their neighbours: Adult's detection AUC
        0.568, 0.572, 0.576 with it, 0.551, 0.565, 0.569 without, seeds 0 to 2)."""
        limits = super()._sample_limits(bounds)
        if getattr(self, "normal_scores_", None) is None:
            return limits
        support = list(limits.support)
        for j in self.normal_scores_.columns:
            support[j] = None
        return dataclasses.replace(limits, support=tuple(support))


class ClusteringMixin:
    """scikit-learn's ``GaussianMixture`` API on the fitted mixture: component
    posteriors, hard labels and the information criteria."""

    def _n_latent(self) -> int:
        return int(self.n_components_)  # transform: the component posteriors

    def predict_proba(self, X):
        """Posterior probability of each component for each sample (``transform``).

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

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better): every block's parameters."""
        n = np.shape(X)[0] if not isinstance(X, torch.Tensor) else X.shape[0]
        return -2 * self.score(X) * n + self._layout.n_parameters(self.n_components_, self.covariance_type) * np.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0] if not isinstance(X, torch.Tensor) else X.shape[0]
        return -2 * self.score(X) * n + 2 * self._layout.n_parameters(self.n_components_, self.covariance_type)


class LevelPosteriorMixin:
    """Level probabilities of a mixed mixture's discrete columns given the observed cells
    of each row (the pooled imputation of ``GenerativeImputer``'s mixed default)."""

    def _families(self) -> tuple:
        """The family blocks' fitted parameters as tensors (cached like ``_tensor``)."""
        key = ("families", str(self._device), self._dtype)
        if key not in self._cache:
            self._cache[key] = tuple(torch.as_tensor(p, dtype=self._dtype, device=self._device)
                                     for p in self._family_parameters)
        return self._cache[key]

    def _level_probabilities(self, X: torch.Tensor, columns: list[int]) -> list[torch.Tensor]:
        """``p(x_j = l | x_obs) = sum_k p(k | x_obs) theta_kj(l)``, exactly (a level group's
        member: the marginal of ``sum_k p(k | x_obs) p_k(c | its observed members)``)."""
        rows = self._evaluation(X)[0] if self._layout.groups else None
        return self._levels_given(torch.softmax(self._weighted_log_prob(X), dim=1), columns, rows)

    def _point_with_level_probabilities(self, X: torch.Tensor, columns: list[int]) -> torch.Tensor:
        """:meth:`_point_imputation` and :meth:`_level_probabilities` of ``columns`` side by
        side (n, n_features + their levels), from one posterior of the rows: the pooled
        imputation of the mixed default needs both, and each took its own pass through
        the Gaussian conditionals (the same numbers, to rounding). A categorical column's
        point is read off its level probabilities (the family's own mixture of them gave
        the same numbers, in a sixth of the pooled imputation's time on Adult)."""
        rows, params, center = self._evaluation(X)
        resp, conditionals = _posterior(rows, params, self._layout, self.covariance_type, factors=False)
        levels = self._levels_given(resp, columns, rows)
        point = impute_point(X, rows, params, center, self._layout, self.covariance_type, (resp, conditionals),
                             dict(zip(columns, levels)))
        return torch.cat([point] + levels, dim=1)

    def _levels_given(self, resp: torch.Tensor, columns: list[int], rows=None) -> list[torch.Tensor]:
        where = {j: (b, i) for j, b, i in self._layout.levels}
        blocks, families = self._layout.blocks, self._families()
        posteriors = {b: block.posterior(rows[:, block.cells], families[b], resp) for b, block in self._layout.groups
                      if any(j in block.columns for j in columns)}
        grouped = {j: (b, i) for b, block in self._layout.groups for i, j in enumerate(block.columns)}
        # a weighted sum per row, not a matrix product (whose rounding follows its shape)
        return [(resp.unsqueeze(2) * blocks[where[j][0]].level_probabilities(families[where[j][0]])[:, where[j][1]]).sum(1)
                if j in where else blocks[grouped[j][0]].member_probabilities(posteriors[grouped[j][0]], grouped[j][1])
                for j in columns]


class LevelGroupsMixin:
    """``level_groups``: the groups chosen at fit (:mod:`skgenerative._level_groups`) and
    the ``verbose`` summary that names them."""

    def _set_level_groups(self, source) -> None:
        """``level_groups_`` (names) and their positions, from ``level_groups``."""
        self._level_group_columns = level_groups_of(self.level_groups, self.schema_, source, self._itemsize,
                                                    type(self).__name__)
        self.level_groups_ = [tuple(self.schema_.names[j] for j in group) for group in self._level_group_columns]

    def _em_summary(self) -> str:
        groups = "" if self.level_groups is None else f"; {summary(self.level_groups_)}"
        return groups + super()._em_summary()


class ChunkSizeMixin:
    """Bytes per row of the mixture's computations, from which the chunks of rows are sized."""

    def _row_bytes(self, n_features: int) -> int:
        k, layout = self.n_components_, MixtureLayout(self.schema_.types, self.schema_.level_counts)
        width = k * layout.n_gaussian if self.covariance_type in ("full", "tied") else k
        width += (k + 1) * (layout.width - layout.n_gaussian) + sum(self.schema_.level_counts)
        width += sum(2 * math.prod(self.schema_.level_counts[j] for j in g)  # masks of the level groups
                     for g in getattr(self, "_level_group_columns", []))
        return self._itemsize * (width + 4 * k + 2 * n_features)

    def _impute_row_bytes(self, n_features: int, n_draws) -> int:
        d, product = self._layout.n_gaussian, sum(block.n_product for _, block in self._layout.groups)
        return self._itemsize * (self.n_components_ * (8 * d * d + 2 * (n_draws or 1) * n_features)
                                 + 2 * (n_draws or 1) * product)  # a group's draws: (S, P) per row


class MixtureParameterFormsMixin:
    """The EM hooks that read a mixture's parameters in other forms: the covariances
    the E-step of rows with missing entries reads, and SQUAREM's coordinates
    (``acceleration="squarem"``, :mod:`skgenerative._em`)."""

    @property
    def _em_accelerated(self) -> bool:
        return getattr(self, "acceleration", None) == "squarem"  # (models pickled before it: plain)

    def _em_expectation_parameters(self, data: _MixtureFitData, params) -> MixtureParameters:
        # rows with missing entries see the covariances of the very precision factors
        # that score the complete rows: one Gaussian per component, to the last bit
        if not data.has_missing:
            return params
        covariances = covariances_from_precision_cholesky(params.precisions_cholesky, self.covariance_type)
        return params._replace(covariances=covariances)

    def _em_coordinates(self, data: _MixtureFitData, params: MixtureParameters) -> tuple:
        """SQUAREM's coordinates (:mod:`skgenerative._em`): log-weights, means,
        covariances and the families' parameters (logits, log-rates)."""
        covariances = params.covariances
        if covariances is None and data.layout.n_gaussian:
            covariances = covariances_from_precision_cholesky(params.precisions_cholesky, self.covariance_type)
        gaussian = (params.means, covariances) if data.layout.n_gaussian else ()
        return (torch.log(params.weights), *gaussian, *params.families)

    def _em_from_coordinates(self, data: _MixtureFitData, coordinates: tuple, params: MixtureParameters):
        """Parameters from SQUAREM's coordinates: normalised weights, covariances
        symmetrised and floored as in the M-step; ``None`` where one is not positive
        definite."""
        weights = torch.softmax(coordinates[0], 0)
        if not data.layout.n_gaussian:
            return params._replace(weights=weights, families=tuple(coordinates[1:]))
        means, covariances = coordinates[1:3]
        cov = self.covariance_type
        if cov in ("full", "tied"):
            covariances = 0.5 * (covariances + covariances.transpose(-1, -2))
        elif bool((covariances <= 0).any()):
            return None
        covariances = floor_covariances(covariances, cov, data.floor_variance, self.covariance_floor)
        try:
            prec_chol = compute_precision_cholesky(covariances, cov)
        except ValueError:
            return None
        return MixtureParameters(weights, means, covariances, prec_chol, tuple(coordinates[3:]))


class GaussianMixtureDensity(LevelGroupsMixin, ComponentChoiceMixin, MarginalsMixin, ClusteringMixin, LevelPosteriorMixin,
                             MixtureParameterFormsMixin, ChunkSizeMixin, EMModel, GenerativeModel):
    """Mixture density of a table fitted by expectation-maximisation in torch.

    Each component is a product of blocks (see Notes): a Gaussian over the real and
    (on the log scale) positive columns, times per-component families over the
    binary, categorical, ordinal and count columns. On numbers alone it is a drop-in
    counterpart of :class:`sklearn.mixture.GaussianMixture` with the skgenerative
    contract: exact ``score_samples``, ``sample``, outlier thresholds, CPU or GPU.

    Parameters
    ----------
    n_components : int or "auto", default=1
        Number of mixture components. ``"auto"`` chooses it by held-out
        log-likelihood: a fifth of the rows (drawn from ``random_state``) is held
        out, mixtures of 1, 2, 4, 8, ... components (at most 128, and at least 25
        training rows per component) are fitted on the rest with the other
        parameters as given and scored by the mean log-likelihood of the held-out
        rows. The chosen size is the largest within one standard error (of the
        row-by-row differences) of the best size's mean, the doubling stopping at
        the first size further below; it is fitted again on every row. The
        candidates cost at most about four fits at the chosen size (on 80% of the
        rows: the grid is geometric), plus the final fit. See Notes.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the Gaussian block's covariances.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood improves by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance (in the units of the Gaussian block).
    covariance_floor : float, default=1e-6
        Least size of a covariance relative to the columns' variances (see
        :func:`floor_covariances`): a component that collapses (duplicated rows, a
        column constant within a group) is lifted to it instead of failing the fit.
        Well-posed covariances are never changed; 0 turns it off.
    covariance_prior : float, default=0.0
        Weight ``c`` (in pseudo-observations) of a conjugate prior that shrinks each
        covariance towards the data's diagonal covariance: ``Sigma_k = (n_k S_k + c
        diag(var)) / (n_k + c)`` (Fraley & Raftery, 2007). 0 is maximum likelihood,
        as scikit-learn; a few pseudo-observations stop a component from collapsing
        onto a handful of points (an outlier, duplicated rows).
    max_iter : int, default=100
        Maximum EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the best final bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How responsibilities are initialised, as in scikit-learn, in torch.
    weights_init, means_init, precisions_init : array-like, default=None
        Starting weights (K,), means (K, D) and precisions (shape by covariance type)
        of the Gaussian block.
    warm_start : bool, default=False
        Start from the previous fit's solution (with one initialisation).
    acceleration : {None, "squarem"}, default=None
        ``"squarem"`` extrapolates EM's steps (SQUAREM, :mod:`skgenerative._em`): the
        same fixed points in fewer E-steps, judged converged on whole cycles. None
        (default): plain EM, whose every step the bounds record.
    level_prior : float > 0, default=0.1
        Pseudo-count of every family parameter at each M-step: each level of a
        discrete column, "zero" and "positive" of a positive column (Dirichlet(1 +
        level_prior) posterior modes), and ``level_prior`` observations of a count
        column's mean for its Poisson rate. No probability is then exactly 0.
    level_groups : None, "auto" or list of column groups, default=None
        Discrete columns that share one table over their combinations of levels per
        component (:mod:`skgenerative._level_groups`; ``"auto"``: strongly dependent
        pairs, linked). ``None``: they change every mixed fit and cost fit time; the
        synthetic-table call uses ``"auto"`` (user guide, "Synthetic tables").
    column_types : dict, list, tuple or None, default=None
        Types of the columns where the pandas dtypes do not say it (see
        :mod:`skgenerative._schema`); they choose the blocks (see Notes).
    marginals : {"auto", "gaussian", "normal_scores"}, default="auto"
        How the Gaussian block reads a real column: ``"gaussian"`` as it is
        (scikit-learn's model); ``"normal_scores"`` through a monotone map onto normal
        scores fitted to its quantiles, values on a grid spread over it first, the
        log-slope in the score (an exact density in the column's units; Notes).
        ``"auto"``: normal scores for ``n_components="auto"`` on a DataFrame (the
        synthetic-table call: better held-out likelihood and samples on Adult and
        Wine, user guide "Synthetic tables"), else ``"gaussian"``; there a column of
        at most 20 values on its grid (a rating) is spread over its cells in the order
        of the rest of the row, not by a hash (:mod:`skgenerative._marginals`, "Columns
        of few values": a classifier trained on synthetic Wine rows finds quality on
        unseen held-out rows with balanced accuracy 0.234 instead of 0.216, real rows
        0.253), which ``"normal_scores"`` does not (a conditional mean would move within
        the cell: imputations of such columns lose accuracy).
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
    dtype : {"auto", "float32", "float64"}, default="auto"
        ``"auto"``: fit in float32 (statistics summed in float64) and evaluate in
        float64; a fit that float32 breaks is redone in float64.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        1: a progress bar and a summary line; 2: a line per iteration.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        The Gaussian block (``D`` real and positive columns, the positive ones as
        ``log x``; ``D`` may be 0); covariances (K, D, D) full, (D, D) tied, (K, D)
        diag, (K,) spherical.
    level_probabilities_ : list of ndarray
        One (n_components, n_levels) array per binary, categorical or ordinal column,
        in column order, rows summing to one.
    zero_probabilities_ : ndarray of shape (n_components, n_positive)
        ``P(x_j = 0 | k)`` of each positive column.
    count_rates_ : ndarray of shape (n_components, n_count)
        The Poisson rate of each count column in each component.
    level_groups_, level_group_probabilities_ : list
        The level groups (tuples of names) and their tables, (n_components, L_1, ..., L_m) each.
    n_components_ : int
        The number of components fitted (``n_components``, or the one ``"auto"`` chose).
    normal_scores_ : NormalScores or None
        The real columns' maps (``columns``, ``knots`` (m, 2) each, ``tails``);
        ``means_`` and ``covariances_`` are then on the normal-score scale.
    n_components_candidates_, n_components_scores_ : ndarray
        With ``n_components="auto"``: the sizes tried and their held-out mean
        log-likelihoods per row (nats; ``[1]`` and ``[nan]`` when the data were too
        few to hold rows out). The choice is also in the ``verbose`` summary line.
    converged_, n_iter_, lower_bound_, lower_bounds_, offset_, device_, n_features_in_, feature_names_in_
        As in every EM model of the package (see :class:`skgenerative._em.EMModel`).

    See Also
    --------
    sklearn.mixture.GaussianMixture : the numpy reference implementation.
    PPCADensity : a single Gaussian with low-rank plus isotropic covariance.

    Notes
    -----
    ``p(x) = sum_k w_k N(y_G; mu_k, Sigma_k) prod_{positive j} |dy_j/dx_j| prod_b
    p_kb(x_b)``, with ``y = x`` on real and ``y = log x`` on positive columns (a zero
    is a point mass ``pi_kj``, and ``1 - pi_kj`` multiplies a positive value);
    binary columns are Bernoulli, categorical and ordinal ones categorical over their
    levels (the order serves the ordinal median), counts Poisson, all independent
    given the component: dependence comes from the components and, among the real
    and positive columns, from the covariance. ``score_samples`` is the exact
    log-density of the observed cells (numbers a density in the user's units, zeros
    and levels a probability); missing cells are marginalised exactly. EM is exact
    (each step never decreases the log-likelihood plus the log-prior); ``impute``,
    ``impute_proba`` and ``impute(n_draws=...)`` use the exact conditional given the
    observed cells: means (geometric for positive cells), levels' modes or medians,
    and draws. On numbers the EM iterations follow scikit-learn's step for step:
    from the same ``*_init`` a ``dtype="float64"`` fit is scikit-learn's model to
    rounding. Normal scores (``marginals``): a real column enters as ``T(x)``, its
    log-slope joins the score, ``T^{-1}`` maps every draw and imputed value back
    (:mod:`skgenerative._marginals`). The maths: ``docs/user_guide/mixture.rst``.

    ``n_components="auto"`` uses held-out log-likelihood rather than BIC: BIC counts
    parameters, and with the family blocks a component carries a level table per
    discrete column (71 parameters per component on the Adult table), so BIC stops
    earlier than held-out rows gain (on 3000 Adult rows BIC is lowest at 16
    components, the held-out log-likelihood highest at 32); held-out likelihood
    measures what a model is used for (new rows), needs no parameter count, and
    works the same on a dask collection (the source's ``split``). Of sizes within
    a standard error of each other it takes the largest: the rows cannot separate
    them, and samples gain from components (figures in the user guide, "Synthetic
    tables").

    References
    ----------
    Dempster, Laird & Rubin (1977), JRSS B 39(1); Ghahramani & Jordan (1994), NIPS 6;
    Fraley & Raftery (2007), J. Classification 24; Hunt & Jorgensen (2003), CSDA 41;
    Aitchison (1955), JASA 50 (the delta-lognormal).

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
        "n_components": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "covariance_floor": [Interval(Real, 0.0, None, closed="left")],
        "covariance_prior": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "warm_start": ["boolean"],
        "acceleration": [StrOptions({"squarem"}), None],
        "level_prior": [Interval(Real, 0.0, None, closed="neither")],
        "level_groups": [StrOptions({"auto"}), list, tuple, None],
        "column_types": [dict, list, tuple, None],
        "marginals": [StrOptions({"auto", "gaussian", "normal_scores"})],
    }

    _supports_missing = True
    _independent_imputation_draws = True  # exact conditionals: draws are independent
    _supported_column_types = frozenset(COLUMN_TYPES)
    _column_families = {**FAMILIES, "positive": ZeroInflatedLogNormal}
    _em_divergence_hint = "scale the input or increase reg_covar"

    def __init__(
        self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, covariance_floor=1e-6,
        covariance_prior=0.0, max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
        means_init=None, precisions_init=None, warm_start=False, acceleration=None, level_prior=0.1,
        level_groups=None, column_types=None, marginals="auto", contamination=0.1, device="auto", dtype="auto",
        random_state=None, verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.covariance_floor = covariance_floor
        self.covariance_prior = covariance_prior
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.warm_start = warm_start
        self.acceleration = acceleration
        self.level_prior = level_prior
        self.level_groups = level_groups
        self.column_types = column_types
        self.marginals = marginals
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ EM
    def _fit(self, source):
        seed = seed_from(self.random_state)
        resume = self.warm_start and hasattr(self, "converged_")
        if not resume:  # a warm start keeps the groups of the fit it continues
            self._set_level_groups(source)
        self._fit_marginals(source, seed, resume)
        if self.n_components != "auto":
            self.n_components_ = int(self.n_components)
        elif not resume:  # a warm start continues the components chosen before
            self.n_components_ = self._choose_n_components(source, seed)
        data = prepare_mixture_fit(self, source, seed, resume)
        # (the candidates of "auto" leave fitted parameters behind: never resumed from)
        self._em_fit(data, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                     warm_start=resume, generator=generator_from(seed, source.device))

    def _gaussian_m_step(self, data: _MixtureFitData, nk, sx, sxx):
        """Weights' counts, means, covariances (MAP with the prior, floored) and precision factors."""
        cov = self.covariance_type
        nk, means, covariances = gaussian_parameters_from_statistics(
            nk, sx, sxx, self.reg_covar, cov, self.covariance_prior, data.prior_variance)
        covariances = floor_covariances(covariances, cov, data.floor_variance, self.covariance_floor)
        return nk, means, covariances

    def _families_m_step(self, data: _MixtureFitData, statistics) -> tuple:
        return tuple(block.m_step(s, self.level_prior, data.count_mean).to(data.dtype)
                     for block, s in zip(data.layout.blocks, statistics))

    def _em_initialize(self, data: _MixtureFitData, generator) -> MixtureParameters:
        """Responsibilities by ``init_params`` (k-means on :func:`_initial_features`), one
        M-step, then the ``*_init`` arrays."""
        rows, layout = data.init_rows, data.layout
        n, d, cov = rows.shape[0], layout.n_gaussian, self.covariance_type
        resp = initial_responsibilities(_initial_features(data, rows), self.n_components_, self.init_params,
                                        generator)
        as_t = lambda a: torch.as_tensor(a, dtype=rows.dtype, device=rows.device)  # noqa: E731
        init = data.init
        if d:
            X = rows[:, :d]
            X = torch.nan_to_num(X, nan=0.0) if data.has_missing else X
            total = accumulate(
                iter_slices(n, chunk_rows(data.e_step.row_bytes, n, X.device)),
                lambda sub: dict(zip(("nk", "sx", "sxx"), (
                    s.double() for s in gaussian_statistics(X[sub], resp[sub], cov)))),
            )
            nk, means, covariances = self._gaussian_m_step(
                data, *(total[key].to(X.dtype) for key in ("nk", "sx", "sxx")))
            # shifted in the centre's precision, then cast to the training dtype
            if "means" in init:
                means = as_t(torch.as_tensor(init["means"], dtype=data.center.dtype) - data.center.cpu())
            if "precisions" in init:
                prec_chol = _precision_cholesky_from_precisions(as_t(init["precisions"]), cov)
            else:
                prec_chol = compute_precision_cholesky(covariances, cov)
        else:
            nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
            means, covariances, prec_chol = _empty_gaussian(self.n_components_, cov, rows)
        weights = as_t(init["weights"]) if "weights" in init else nk / n
        families = self._families_m_step(
            data, [block.statistics(rows[:, block.cells], resp) for block in layout.blocks])
        return MixtureParameters(weights, means, None if d else covariances, prec_chol, families)

    def _em_resume(self, data: _MixtureFitData) -> MixtureParameters:
        as_t = lambda a: torch.as_tensor(a, dtype=data.dtype, device=data.center.device)  # noqa: E731
        shapes = [tuple(p.shape[1:]) for p in self._family_parameters]
        if self.means_.shape[1] != data.layout.n_gaussian or shapes != data.layout.parameter_shapes():
            raise ValueError("warm_start needs the same columns, types and levels as the previous fit; "
                             "fit again with warm_start=False.")
        means = as_t(torch.as_tensor(self.means_, dtype=data.center.dtype) - data.center.cpu())
        return MixtureParameters(as_t(self.weights_), means, None, as_t(self.precisions_cholesky_),
                                 tuple(as_t(p) for p in self._family_parameters))

    def _em_m_step(self, data: _MixtureFitData, statistics: dict, params) -> MixtureParameters:
        cov, layout = self.covariance_type, data.layout
        nk = statistics["nk"].to(data.dtype)
        means, covariances, prec_chol = params.means, params.covariances, params.precisions_cholesky
        if layout.n_gaussian:
            sx, sxx = (statistics[key].to(data.dtype) for key in ("sx", "sxx"))
            sxx = data.tied_second_moments + sxx if cov == "tied" else sxx
            nk, means, covariances = self._gaussian_m_step(data, nk, sx, sxx)
            prec_chol = compute_precision_cholesky(covariances, cov)
        else:
            nk = nk + 10 * torch.finfo(data.dtype).eps
        families = self._families_m_step(data, [statistics[f"family{b}"] for b in range(len(layout.blocks))])
        return MixtureParameters(nk / nk.sum(), means, covariances, prec_chol, families)

    def _em_set_parameters(self, data: _MixtureFitData, params: MixtureParameters) -> None:
        # M-step weights are n_k / n in the compute dtype: in float32 they sum to one
        # only to about 1e-7, so they are normalised again in float64
        weights = params.weights.double()
        self.weights_ = (weights / weights.sum()).cpu().numpy()
        self._layout = layout = data.layout
        covariances = params.covariances
        if covariances is None:  # max_iter == 0: from the starting precisions
            covariances = covariances_from_precision_cholesky(params.precisions_cholesky, self.covariance_type)
        prec_chol = params.precisions_cholesky
        if layout.n_gaussian and prec_chol.dtype != torch.float64:
            # fitted in float32: the model is the float64 covariances, so its
            # precision factors are computed from them in float64 (the factors of the
            # float32 M-step agree with them only to float32 rounding)
            prec_chol = compute_precision_cholesky(covariances.double(), self.covariance_type)
        self.means_ = (params.means + data.center).double().cpu().numpy()
        self.covariances_ = covariances.double().cpu().numpy()
        self.precisions_cholesky_ = prec_chol.double().cpu().numpy()
        self.precisions_ = _precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)
        self._family_parameters = [p.double().cpu().numpy() for p in params.families]
        for name, value in layout.family_attributes(self._family_parameters, self.n_components_).items():
            setattr(self, name, value)

    # ----------------------------------------------------------- evaluation
    def _evaluation(self, X: torch.Tensor):
        """Model rows of ``X``, the fitted parameters, and the centre of the Gaussian block."""
        means = self._tensor("means_")
        center = self._tensor("weights_") @ means  # the mixture mean, for accuracy (as in EM)
        params = MixtureParameters(self._tensor("weights_"), means - center, self._tensor("covariances_"),
                                   self._tensor("precisions_cholesky_"), self._families())
        return self._layout.rows(X, center, X.dtype), params, center

    def _weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """``log w_k + log p_k(observed cells)`` (n, K), in the Gaussian block's units."""
        rows, params, _ = self._evaluation(X)
        d = self._layout.n_gaussian
        size = _conditional_piece_rows(X.shape[0], self.n_components_, d, self._itemsize, self._device)
        return weighted_log_prob(rows, params, self._layout, self.covariance_type, size)

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        scores = self._layout.scores
        with nullcontext() if scores is None else scores.reused(X):  # one map for the rows and the slopes
            score = torch.logsumexp(self._weighted_log_prob(X), dim=1)
            if not self._layout.transformed:
                return score
            # a zero where fit saw none: missing for the Gaussian, times Laplace's 1 / (n + 3)
            unseen = self._layout.unseen_zeros(X) * math.log(1.0 / (self.schema_.n_samples + 3))
            return score + self._layout.log_jacobian(X) + unseen

    def _explain(self, X: torch.Tensor) -> torch.Tensor:
        """Numeric rows: closed forms, the precision's (:mod:`._explain`) when every entry
        is observed, else :func:`explain_missing` (for every row of the batch, so that a
        row's value does not depend on which path its neighbours took)."""
        if self._layout.blocks or self._layout.transformed:
            return super()._explain(X)  # through the marginal of the observed cells
        rows, params, _ = self._evaluation(X)
        if not has_nan(X):
            return gaussian_mixture_conditionals(rows, params.means, params.precisions_cholesky,
                                                 self.covariance_type, self._weighted_log_prob(X))
        size = _conditional_piece_rows(X.shape[0], self.n_components_, X.shape[1], self._itemsize, self._device)
        return explain_missing(rows, params, self.covariance_type, max(1, size // 2))

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self._weighted_log_prob(X), dim=1)

    def _impute(self, X: torch.Tensor, n_draws, generator) -> torch.Tensor:
        """Every block's conditional given the observed cells: points, or draws (n, S, D)."""
        rows, params, center = self._evaluation(X)
        if n_draws is None:
            return impute_point(X, rows, params, center, self._layout, self.covariance_type)
        return impute_draws(X, rows, params, center, self._layout, self.covariance_type, n_draws, generator)

    def _point_imputation(self, X: torch.Tensor) -> torch.Tensor:
        return self._impute(X, None, None)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        params = MixtureParameters(self._tensor("weights_"), self._tensor("means_"), self._tensor("covariances_"),
                                   None, self._families())
        return draw_rows(params, self._layout, self.covariance_type, n, generator)

