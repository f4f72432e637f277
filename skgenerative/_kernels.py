"""Compiled CPU kernels of the Gaussian E-step on rows with missing entries (numba).

A row with missing entries needs, for every component, a factorisation of a block of
its own size (:func:`skgenerative.mixture.gaussian_conditionals`). In torch those are
batches of small matrices (2 to 6 columns on Wine at 50% missing), whose cost is the
calls and the tensors between them, not the arithmetic: on Wine at 50% missing an
E-step of 16 full components took 63 ms in torch, 20 ms with this kernel. It does one
row at a time, all its components, in a few small buffers: the conditional Gaussians,
the responsibilities and the responsibility-weighted conditional covariances, in one
pass and in float64. Diagonal covariances need no factorisation, but torch forms a
dozen (rows, components, columns) tensors for them; their kernel adds the statistics
directly (32 diagonal components on Wine at 50%: 15 ms to 4.3 ms an E-step).

They are used on the CPU where numba imports; elsewhere (a GPU, or numba absent) the
torch code does the same arithmetic (:func:`usable`; ``skgenerative.mixture``'s
``_use_kernel`` turns them off for tests that compare both).
"""

from __future__ import annotations

import importlib.util
import math
import threading
import warnings

import numpy as np

#: numba is a dependency; a platform without its wheels falls back to the torch code.
#: It is imported, and the kernel compiled (or read from numba's cache beside this
#: file), at the first call: ``import skgenerative`` does not pay for it.
AVAILABLE = importlib.util.find_spec("numba") is not None
_compiled = None
_compiling = threading.Lock()  # threads of a dask worker may reach the first call together
_imports = None  # whether numba imported (tried once): None before the first try


def usable() -> bool:
    """Whether the kernels can run here: numba is installed and imports. An installed
    numba that does not import (one built for another NumPy, say) warns once and
    leaves the torch code to do the work, instead of failing the fit."""
    global _imports
    if _imports is None:
        with _compiling:
            if _imports is None:
                try:
                    import numba  # noqa: F401
                    _imports = True
                except Exception as error:  # ImportError, or numba's own check of NumPy's version
                    warnings.warn(f"numba does not import ({type(error).__name__}: {error}); skgenerative's "
                                  "E-step of rows with missing entries runs in torch instead", RuntimeWarning,
                                  stacklevel=2)
                    _imports = False
    return _imports

_LOG_2PI = math.log(2.0 * math.pi)


def _cholesky(A, p):
    """Lower Cholesky factor of ``A[:p, :p]`` in place (lower triangle read); False if not positive definite."""
    for j in range(p):
        s = A[j, j]
        for q in range(j):
            s -= A[j, q] * A[j, q]
        if not s > 0.0:
            return False
        s = math.sqrt(s)
        A[j, j] = s
        for i in range(j + 1, p):
            t = A[i, j]
            for q in range(j):
                t -= A[i, q] * A[j, q]
            A[i, j] = t / s
    return True


def _forward(L, p, v):
    """``v <- L^{-1} v`` for lower triangular ``L[:p, :p]``."""
    for i in range(p):
        t = v[i]
        for q in range(i):
            t -= L[i, q] * v[q]
        v[i] = t / L[i, i]


def _lower_inverse(L, p, out):
    """``out[:p, :p] <- L^{-1}`` (lower triangular, zero above the diagonal)."""
    for c in range(p):
        for i in range(c):
            out[i, c] = 0.0
        out[c, c] = 1.0 / L[c, c]
        for i in range(c + 1, p):
            t = 0.0
            for q in range(c, i):
                t -= L[i, q] * out[q, c]
            out[i, c] = t / L[i, i]


def _normalise(weighted, resp):
    """``resp <- exp(w - norm)`` and ``norm = log sum_k exp(w_k)`` of one row's ``w`` (K,), as
    :func:`skgenerative.mixture.normalised_responsibilities` forms them (one exponential
    an entry; a row every component rules out gives NaN)."""
    top = -math.inf
    for k in range(weighted.shape[0]):
        if weighted[k] > top:
            top = weighted[k]
    if not math.isfinite(top):
        top = 0.0
    total = 0.0
    for k in range(weighted.shape[0]):
        resp[k] = math.exp(weighted[k] - top)
        total += resp[k]
    for k in range(weighted.shape[0]):
        resp[k] /= total
    return top + math.log(total)


def _incomplete_rows(X, means, covariances, offset, accumulate, log_prob, norm, resp, filled, weighted):
    """Every component's Gaussian given each row's observed entries, in one pass.

    ``X`` (n, D) float64 with NaN missing; ``means`` (K, D); ``covariances`` (K, D, D);
    ``offset`` (n, K) ``log w_k`` plus the other blocks' log-probabilities. Writes
    ``log_prob`` (n, K) ``log N(x_o; mu_k,o, S_k,oo)`` (0 where nothing is observed),
    ``norm`` (n,) ``log sum_k exp(offset_ik + log_prob_ik)``, ``resp`` (n, K) and
    ``filled`` (n, K, D) (the row with ``E[x_m | x_o, k]`` in its missing entries) and,
    with ``accumulate``, adds ``sum_i r_ik Cov[x_m | x_o, k]`` to ``weighted`` (K, D, D).

    Per row and component, the smaller of two blocks is factorised, as the torch
    code does: with ``m <= o`` missing entries the precision's ``Lambda_mm``
    (``Cov = Lambda_mm^{-1}``, ``E = mu_m - Lambda_mm^{-1} Lambda_mo r_o``, ``log det
    S_oo = log det S + log det Lambda_mm``), otherwise the covariance's ``S_oo``
    (``W = L^{-1} S_om``, ``Cov = S_mm - W^T W``, ``E = mu_m + W^T L^{-1} r_o``).
    Returns -1, or -2 where a component's covariance is not positive definite, or
    the first row whose block is not.
    """
    n, d = X.shape
    k_count = means.shape[0]
    precisions = np.empty((k_count, d, d))
    log_det = np.empty(k_count)
    factor = np.empty((d, d))
    inverse = np.empty((d, d))
    for k in range(k_count):  # S = L L^T, Lambda = L^{-T} L^{-1}, log det S
        for a in range(d):
            for b in range(a + 1):
                factor[a, b] = covariances[k, a, b]
        if not _cholesky(factor, d):
            return -2
        _lower_inverse(factor, d, inverse)
        log_det[k] = 0.0
        for a in range(d):
            log_det[k] += 2.0 * math.log(factor[a, a])
            for b in range(a + 1):
                t = 0.0
                for q in range(a, d):
                    t += inverse[q, a] * inverse[q, b]
                precisions[k, a, b] = t
                precisions[k, b, a] = t
    seen = np.empty(d, np.int64)
    missing = np.empty(d, np.int64)
    block = np.empty((d, d))
    r = np.empty(d)
    v = np.empty(d)
    weighted_log_prob = np.empty(k_count)
    conditional = np.empty((k_count, d, d))
    for i in range(n):
        o = 0
        m = 0
        for j in range(d):
            if math.isnan(X[i, j]):
                missing[m] = j
                m += 1
            else:
                seen[o] = j
                o += 1
        for k in range(k_count):
            for a in range(o):
                r[a] = X[i, seen[a]] - means[k, seen[a]]
                filled[i, k, seen[a]] = X[i, seen[a]]
            C = conditional[k]
            if m <= o:  # Lambda_mm = L L^T
                for a in range(m):
                    for b in range(a + 1):
                        block[a, b] = precisions[k, missing[a], missing[b]]
                if not _cholesky(block, m):
                    return i
                _lower_inverse(block, m, inverse)
                quad = 0.0
                for a in range(o):
                    t = 0.0
                    for b in range(o):
                        t += precisions[k, seen[a], seen[b]] * r[b]
                    quad += t * r[a]
                logdet = log_det[k]
                for a in range(m):  # y = L^{-1} Lambda_mo r_o
                    t = 0.0
                    for b in range(o):
                        t += precisions[k, missing[a], seen[b]] * r[b]
                    v[a] = t
                    logdet += 2.0 * math.log(block[a, a])
                for a in range(m - 1, -1, -1):
                    t = 0.0
                    for q in range(a + 1):
                        t += inverse[a, q] * v[q]
                    v[a] = t
                for a in range(m):
                    quad -= v[a] * v[a]
                for a in range(m):  # E = mu_m - L^{-T} y; Cov = L^{-T} L^{-1}
                    t = 0.0
                    for q in range(a, m):
                        t += inverse[q, a] * v[q]
                    filled[i, k, missing[a]] = means[k, missing[a]] - t
                    for b in range(a + 1 if accumulate else 0):
                        t = 0.0
                        for q in range(a, m):
                            t += inverse[q, a] * inverse[q, b]
                        C[a, b] = t
            else:  # S_oo = L L^T
                for a in range(o):
                    for b in range(a + 1):
                        block[a, b] = covariances[k, seen[a], seen[b]]
                if not _cholesky(block, o):
                    return i
                logdet = 0.0
                for a in range(o):
                    logdet += 2.0 * math.log(block[a, a])
                _forward(block, o, r)
                quad = 0.0
                for a in range(o):
                    quad += r[a] * r[a]
                for c in range(m):  # W = L^{-1} S_om, column by column (kept in inverse)
                    for a in range(o):
                        v[a] = covariances[k, seen[a], missing[c]]
                    _forward(block, o, v)
                    t = means[k, missing[c]]
                    for a in range(o):
                        inverse[a, c] = v[a]
                        t += v[a] * r[a]
                    filled[i, k, missing[c]] = t
                for a in range(m if accumulate else 0):
                    for b in range(a + 1):
                        t = covariances[k, missing[a], missing[b]]
                        for q in range(o):
                            t -= inverse[q, a] * inverse[q, b]
                        C[a, b] = t
            log_prob[i, k] = -0.5 * (o * _LOG_2PI + logdet + quad)
            weighted_log_prob[k] = offset[i, k] + log_prob[i, k]
        norm[i] = _normalise(weighted_log_prob, resp[i])
        for k in range(k_count if accumulate else 0):
            w = resp[i, k]
            C = conditional[k]
            for a in range(m):  # missing in increasing order: the lower triangle of weighted
                for b in range(a + 1):
                    weighted[k, missing[a], missing[b]] += w * C[a, b]
    for k in range(k_count if accumulate else 0):
        for a in range(d):
            for b in range(a):
                weighted[k, b, a] = weighted[k, a, b]
    return -1


def _incomplete_rows_diagonal(X, means, variances, offset, norm, resp, sx, sxx):
    """:func:`_incomplete_rows` for diagonal covariances ``variances`` (K, D): the observed
    entries are scored alone and the missing ones keep their component's mean and
    variance, so the kernel adds the statistics themselves: ``sx`` (K, D) ``sum_i r_ik
    x^_ik`` and ``sxx`` (K, D) ``sum_i r_ik (x^_ik^2 + Var[x_m | k])`` (float64)."""
    n, d = X.shape
    k_count = means.shape[0]
    inverse = np.empty((k_count, d))
    log_norm = np.empty((k_count, d))
    weighted_log_prob = np.empty(k_count)
    for k in range(k_count):
        for j in range(d):
            inverse[k, j] = 1.0 / variances[k, j]
            log_norm[k, j] = math.log(2.0 * math.pi * variances[k, j])
    for i in range(n):
        for k in range(k_count):
            t = 0.0
            for j in range(d):
                x = X[i, j]
                if not math.isnan(x):
                    r = x - means[k, j]
                    t += r * r * inverse[k, j] + log_norm[k, j]
            weighted_log_prob[k] = offset[i, k] - 0.5 * t
        norm[i] = _normalise(weighted_log_prob, resp[i])
        for k in range(k_count):
            w = resp[i, k]
            for j in range(d):
                x = X[i, j]
                if math.isnan(x):
                    x = means[k, j]
                    sxx[k, j] += w * (x * x + variances[k, j])
                else:
                    sxx[k, j] += w * x * x
                sx[k, j] += w * x
    return -1


def _kernel():
    """The compiled :func:`_incomplete_rows` (its helpers compiled first: it calls them
    as the module's globals)."""
    global _compiled, _cholesky, _forward, _lower_inverse, _normalise
    with _compiling:
        if _compiled is None:
            from numba import njit

            def jit(function):  # numpy's error model: 0 / 0 is NaN, as in torch, not an exception
                return njit(cache=True, nogil=True, error_model="numpy")(function)

            _cholesky, _forward, _lower_inverse, _normalise = (jit(f) for f in (_cholesky, _forward, _lower_inverse,
                                                                                 _normalise))
            _compiled = {"full": jit(_incomplete_rows), "diag": jit(_incomplete_rows_diagonal)}
    return _compiled


def incomplete_rows(X: np.ndarray, means: np.ndarray, covariances: np.ndarray, offset: np.ndarray | None = None,
                    accumulate: bool = True):
    """:func:`_incomplete_rows` on float64 copies: ``(log_prob (n, K), norm (n,), resp
    (n, K), filled (n, K, D), weighted (K, D, D) or None)``, or ``None`` where a
    component's covariance or a row's block is not positive definite (the caller
    raises its error). ``offset`` (n, K) or (K,), default 0."""
    n, d = X.shape
    k = means.shape[0]
    offset = np.zeros(k) if offset is None else offset
    log_prob = np.empty((n, k))
    norm = np.empty(n)
    resp = np.empty((n, k))
    filled = np.empty((n, k, d))
    weighted = np.zeros((k, d, d) if accumulate else (0, 0, 0))
    failed = _kernel()["full"](
        np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(means, dtype=np.float64),
        np.ascontiguousarray(covariances, dtype=np.float64),
        np.ascontiguousarray(np.broadcast_to(offset, (n, k)), dtype=np.float64), accumulate,
        log_prob, norm, resp, filled, weighted)
    if failed != -1:
        return None
    return log_prob, norm, resp, filled, weighted if accumulate else None


def incomplete_rows_diagonal(X: np.ndarray, means: np.ndarray, variances: np.ndarray,
                             offset: np.ndarray | None = None):
    """:func:`_incomplete_rows_diagonal` on float64 copies: ``(norm (n,), resp (n, K), sx
    (K, D), sxx (K, D))``."""
    n, d = X.shape
    k = means.shape[0]
    offset = np.zeros(k) if offset is None else offset
    norm = np.empty(n)
    resp = np.empty((n, k))
    sx = np.zeros((k, d))
    sxx = np.zeros((k, d))
    _kernel()["diag"](np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(means, dtype=np.float64),
                      np.ascontiguousarray(variances, dtype=np.float64),
                      np.ascontiguousarray(np.broadcast_to(offset, (n, k)), dtype=np.float64), norm, resp, sx, sxx)
    return norm, resp, sx, sxx
