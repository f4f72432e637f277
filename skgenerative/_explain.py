"""Closed forms of ``log p(x_j | x_-j)`` for every column at once (``explain``).

The general path (``GenerativeModel._explain``) sets each column missing in turn and
scores the row's marginal. For a Gaussian the leave-one-out conditional has a closed
form through the precision matrix ``L = Sigma^{-1}``:

    x_j | x_-j  ~  N(x_j - (L (x - mu))_j / L_jj,  1 / L_jj),

so ``log N(x_j | x_-j) = 0.5 log(L_jj / 2 pi) - 0.5 (L (x - mu))_j^2 / L_jj`` for every
``j`` from one product ``L (x - mu)``: ``O(n D^2)`` per component instead of one
factorisation per row and column. For a mixture, ``log p(x_-j) = logsumexp_k (log w_k
+ log N_k(x) - log N_k(x_j | x_-j))``, and ``log p(x_j | x_-j) = log p(x) - log p(x_-j)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["gaussian_mixture_conditionals"]


def gaussian_mixture_conditionals(
    X: torch.Tensor, means: torch.Tensor, precisions_cholesky: torch.Tensor, covariance_type: str,
    weighted_log_prob: torch.Tensor,
) -> torch.Tensor:
    """``log p(x_j | x_-j)`` (n, D) of a Gaussian mixture for complete rows.

    Parameters
    ----------
    X : tensor of shape (n, D)
        Complete rows (no NaN), in the same frame as ``means``.
    means : tensor of shape (K, D)
    precisions_cholesky : tensor
        scikit-learn's convention: ``P`` with precision ``P P^T``; (K, D, D) full,
        (D, D) tied, (K, D) diag, (K,) spherical.
    covariance_type : {"full", "tied", "diag", "spherical"}
    weighted_log_prob : tensor of shape (n, K)
        ``log w_k + log N_k(x)`` of the rows, as the model scores them.
    """
    n, d = X.shape
    residual = X.unsqueeze(1) - means.unsqueeze(0)  # (n, K, D)
    if covariance_type in ("full", "tied"):
        P = precisions_cholesky if covariance_type == "full" else precisions_cholesky.expand(means.shape[0], d, d)
        precision = P @ P.transpose(-1, -2)  # (K, D, D)
        projected = torch.einsum("nkd,kde->nke", residual, precision)  # L (x - mu)
        diagonal = torch.diagonal(precision, dim1=-2, dim2=-1)  # (K, D)
    else:
        diagonal = precisions_cholesky.square()
        diagonal = diagonal.expand(means.shape[0], d) if covariance_type == "diag" else (
            diagonal.unsqueeze(1).expand(means.shape[0], d))
        projected = residual * diagonal
    log_conditional = 0.5 * torch.log(diagonal / (2 * math.pi)) - 0.5 * projected.square() / diagonal
    log_rest = torch.logsumexp(weighted_log_prob.unsqueeze(2) - log_conditional, dim=1)  # (n, D)
    return torch.logsumexp(weighted_log_prob, dim=1, keepdim=True) - log_rest
