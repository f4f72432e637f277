"""The two routes of ``gaussian_conditionals`` (the precision's missing block, the
covariance's observed block) against each other and against a brute-force conditional
per row, on random covariances and missingness patterns."""

import numpy as np
import pytest
import torch

from skgenerative._kernels import AVAILABLE as KERNEL_AVAILABLE
from skgenerative.mixture import gaussian_conditionals

ROUTES = [None, "precision", "covariance"]


def _problem(seed, d, k, n=30):
    rng = np.random.RandomState(seed)
    B = rng.normal(size=(k, d, d))
    S = B @ B.transpose(0, 2, 1) + 0.3 * np.eye(d)
    mu = rng.normal(size=(k, d))
    X = rng.normal(size=(n, d))
    X[rng.uniform(size=X.shape) < rng.uniform(0.1, 0.9)] = np.nan
    X[0] = np.nan  # nothing observed
    X[1] = rng.normal(size=d)  # nothing missing
    X[2, : d - 1] = np.nan  # one entry observed
    X[3] = X[4] = X[5]  # a pattern shared by rows
    return X, mu, S


def _brute(X, mu, S):
    """log N(x_o), E[x_m | x_o] and Cov[x_m | x_o] (embedded) per row and component."""
    n, d = X.shape
    k = mu.shape[0]
    log_prob, filled, cov = np.zeros((n, k)), np.zeros((n, k, d)), np.zeros((n, k, d, d))
    for i in range(n):
        o, m = ~np.isnan(X[i]), np.isnan(X[i])
        for j in range(k):
            Soo, Smo = S[j][np.ix_(o, o)], S[j][np.ix_(m, o)]
            r = X[i, o] - mu[j, o]
            if o.any():
                _, logdet = np.linalg.slogdet(Soo)
                log_prob[i, j] = -0.5 * (o.sum() * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(Soo, r))
            filled[i, j] = np.where(o, X[i], 0)
            filled[i, j, m] = mu[j, m] + (Smo @ np.linalg.solve(Soo, r) if o.any() else 0)
            cond = S[j][np.ix_(m, m)] - (Smo @ np.linalg.solve(Soo, Smo.T) if o.any() else 0)
            cov[i, j][np.ix_(m, m)] = cond
    return log_prob, filled, cov


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("seed,d,k", [(0, 1, 2), (1, 2, 1), (2, 5, 3), (3, 8, 2), (4, 13, 2)])
def test_routes_equal_the_brute_force_conditionals(route, seed, d, k):
    X, mu, S = _problem(seed, d, k)
    log_prob, filled, cov = _brute(X, mu, S)
    c = gaussian_conditionals(torch.as_tensor(X), torch.as_tensor(mu), torch.as_tensor(S), "full", route=route)
    np.testing.assert_allclose(c.log_prob.numpy(), log_prob, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c.filled.numpy(), filled, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c.conditional_covariances()[c.pattern].numpy(), cov, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(c.missing[c.pattern].numpy(), np.isnan(X))
    # tied: the first covariance for every component
    t = gaussian_conditionals(torch.as_tensor(X), torch.as_tensor(mu), torch.as_tensor(S[0]), "tied", route=route)
    tied = _brute(X, mu, np.repeat(S[:1], k, 0))
    np.testing.assert_allclose(t.log_prob.numpy(), tied[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(t.filled.numpy(), tied[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("route", ROUTES)
def test_weighted_second_moments_are_the_sums_over_rows(route, covariance_type):
    X, mu, S = _problem(5, 7, 3)
    _, filled, cov = _brute(X, mu, S if covariance_type == "full" else np.repeat(S[:1], 3, 0))
    resp = np.random.RandomState(0).dirichlet(np.ones(3), size=X.shape[0])
    c = gaussian_conditionals(torch.as_tensor(X), torch.as_tensor(mu),
                              torch.as_tensor(S if covariance_type == "full" else S[0]), covariance_type, route=route)
    want = np.einsum("nk,nkde->kde", resp, filled[..., :, None] * filled[..., None, :] + cov)
    want = want.sum(0) if covariance_type == "tied" else want
    got = c.weighted_second_moments(torch.as_tensor(resp), covariance_type).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_a_rows_numbers_do_not_depend_on_the_other_rows():
    """Each row's pattern picks its route and padding: a subset gives the same bits."""
    X, mu, S = _problem(6, 9, 2, n=60)
    X, mu, S = (torch.as_tensor(a) for a in (X, mu, S))
    whole = gaussian_conditionals(X, mu, S, "full")
    for rows in (slice(0, 7), slice(20, 60), [5, 1, 33]):
        part = gaussian_conditionals(X[rows], mu, S, "full")
        assert torch.equal(part.log_prob, whole.log_prob[rows])
        assert torch.equal(part.filled, whole.filled[rows])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_explain_of_rows_with_missing_entries_equals_the_marginals_path(covariance_type):
    """The closed form (leave_one_out) against log p(x_o) - log p(x_o without j), column by
    column through the model's marginals (GenerativeModel._explain)."""
    from skgenerative import GaussianMixtureDensity
    from skgenerative.base import GenerativeModel

    rng = np.random.RandomState(0)
    d = 7
    X = rng.normal(size=(200, d)) @ rng.normal(size=(d, d))
    X[rng.uniform(size=X.shape) < 0.3] = np.nan
    X[0] = np.nan
    X[0, 2] = 0.5  # one observed entry: its marginal
    X[1] = rng.normal(size=d)  # complete, in the same batch
    model = GaussianMixtureDensity(3, covariance_type=covariance_type, random_state=0, dtype="float64").fit(X)
    fast = model.explain(X)
    slow = np.where(np.isnan(X), np.nan, GenerativeModel._explain(model, torch.as_tensor(X)).numpy())
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(X))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.explain(X[5:40]), fast[5:40], rtol=0, atol=0)


def test_the_e_steps_pieces_give_the_statistics_of_all_rows_at_once():
    """_MixtureStatistics (rows by pattern, in pieces) against mixture_statistics over every row."""
    from skgenerative.mixture import MixtureLayout, MixtureParameters, _MixtureStatistics, mixture_statistics

    X, mu, S = _problem(8, 9, 3, n=120)
    X, mu, S = (torch.as_tensor(a) for a in (X, mu, S))
    params = MixtureParameters(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), mu, S,
                               torch.linalg.cholesky(torch.linalg.inv(S)))
    layout = MixtureLayout(["real"] * 9, {})
    got = _MixtureStatistics(layout, "full", torch.zeros(0, dtype=torch.float64))(X, params)
    want = mixture_statistics(X, params, "full")
    for key in ("log_likelihood", "nk", "sx", "sxx"):
        torch.testing.assert_close(got[key], want[key], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7])
def test_row_products_are_the_matrix_products_and_each_rows_own(width):
    """Term by term (narrow) or summed (wide): the products of each row's matrix and
    vector, a row's bits the same alone as in the batch."""
    from skgenerative.mixture import _row_apply

    gen = torch.Generator().manual_seed(width)
    A = torch.randn(50, 3, 4, width, generator=gen, dtype=torch.float64)
    v = torch.randn(50, 3, width, generator=gen, dtype=torch.float64)
    got = _row_apply(A, v)
    torch.testing.assert_close(got, torch.einsum("nkab,nkb->nka", A, v), rtol=1e-13, atol=1e-13)
    for rows in (slice(0, 1), slice(7, 30), [4, 2]):
        assert torch.equal(_row_apply(A[rows], v[rows]), got[rows])


# --------------------------------------------------------------- compiled kernel
# numba is a dependency; only a platform without its wheels lacks it (the torch code runs there)
needs_numba = pytest.mark.skipif(not KERNEL_AVAILABLE, reason="numba is not installed")


def _kernel_problem(seed, d, k, n=40):
    X, mu, S = _problem(seed, d, k, n)
    rng = np.random.RandomState(seed + 100)
    offset = rng.normal(size=(n, k))
    if k > 1:
        offset[::7, 0] = -np.inf  # a component a row's other blocks rule out (a level it never had)
    return X, mu, S, offset


@needs_numba
@pytest.mark.parametrize("seed,d,k", [(0, 1, 2), (1, 2, 1), (2, 5, 3), (3, 8, 2), (4, 13, 2), (9, 12, 16)])
def test_kernel_equals_the_brute_force_conditionals(seed, d, k):
    """Each row's log N(x_o), E[x_m | x_o], responsibilities, and sum_i r_ik Cov[x_m | x_o, k],
    against the per-row brute force (both of the kernel's blocks: few and many missing)."""
    from skgenerative import _kernels

    X, mu, S, offset = _kernel_problem(seed, d, k)
    log_prob, filled, cov = _brute(X, mu, S)
    got_log_prob, norm, resp, got_filled, weighted = _kernels.incomplete_rows(X, mu, S, offset)
    np.testing.assert_allclose(got_log_prob, log_prob, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got_filled, filled, rtol=0, atol=1e-10)
    joint = offset + log_prob
    want_norm = np.logaddexp.reduce(joint, axis=1)
    np.testing.assert_allclose(norm, want_norm, rtol=0, atol=1e-10)
    np.testing.assert_allclose(resp, np.exp(joint - want_norm[:, None]), rtol=0, atol=1e-12)
    assert k == 1 or (resp[::7, 0] == 0).all()
    np.testing.assert_allclose(weighted, np.einsum("nk,nkde->kde", resp, cov), rtol=0, atol=1e-9)
    # without the weighted sums: the same numbers, none formed
    again = _kernels.incomplete_rows(X, mu, S, offset, accumulate=False)
    for a, b in zip(again[:4], (got_log_prob, norm, resp, got_filled)):
        np.testing.assert_array_equal(a, b)
    assert again[4] is None


@needs_numba
def test_kernel_rows_do_not_depend_on_the_other_rows():
    from skgenerative import _kernels

    X, mu, S, offset = _kernel_problem(6, 9, 2, n=60)
    whole = _kernels.incomplete_rows(X, mu, S, offset)
    for rows in (slice(0, 7), slice(20, 60), [5, 1, 33]):
        part = _kernels.incomplete_rows(X[rows], mu, S, offset[rows])
        for a, b in zip(part[:4], whole[:4]):
            np.testing.assert_array_equal(a, b[rows])


@needs_numba
def test_kernel_refuses_a_covariance_or_block_that_is_not_positive_definite():
    """None from the kernel; the E-step raises the mixture's covariance error, as the torch code does."""
    from skgenerative import _kernels
    from skgenerative.mixture import MixtureParameters, mixture_statistics

    X, mu, S, _ = _kernel_problem(7, 4, 2)
    bad = S.copy()
    bad[1] = np.diag([1.0, 1.0, -1.0, 1.0])
    assert _kernels.incomplete_rows(X, mu, bad) is None
    params = MixtureParameters(torch.tensor([0.5, 0.5], dtype=torch.float64), torch.as_tensor(mu),
                               torch.as_tensor(bad), torch.zeros(2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        mixture_statistics(torch.as_tensor(X[2:]), params, "full")


@needs_numba
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kernel_and_torch_e_steps_give_the_same_fit(monkeypatch):
    """A fit with missing entries, its scores and its imputations: the compiled E-step and
    the torch one agree (float64 throughout: to rounding)."""
    import skgenerative.mixture as mixture
    from skgenerative import GaussianMixtureDensity, _kernels

    rng = np.random.RandomState(1)
    X = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    X[150:] += 4.0
    X[rng.uniform(size=X.shape) < 0.4] = np.nan
    out, calls, kernel = {}, [], _kernels.incomplete_rows
    monkeypatch.setattr(_kernels, "incomplete_rows", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    for use in (True, False):
        monkeypatch.setattr(mixture, "_use_kernel", use)
        model = GaussianMixtureDensity(3, random_state=0, dtype="float64", max_iter=30).fit(X)
        out[use] = (model.means_, model.covariances_, model.score_samples(X), model.impute(X))
        assert bool(calls) == use  # the E-step, the scores and the imputation each took the kernel
        calls.clear()
    for a, b in zip(out[True], out[False]):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-8)


@needs_numba
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_kernel_e_step_equals_the_torch_e_step(monkeypatch, covariance_type):
    """mixture_statistics of rows with missing entries (and complete ones): the compiled
    kernels' statistics are the torch code's."""
    import skgenerative.mixture as mixture
    from skgenerative import _kernels
    from skgenerative.mixture import MixtureParameters, mixture_statistics

    X, mu, S, offset = _kernel_problem(11, 6, 3, n=80)
    cov = {"full": S, "diag": np.diagonal(S, axis1=1, axis2=2).copy(),
           "spherical": np.diagonal(S, axis1=1, axis2=2).mean(1)}[covariance_type]
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    chol = torch.linalg.cholesky(torch.linalg.inv(torch.as_tensor(S)))
    prec_chol = {"full": chol, "diag": 1 / torch.as_tensor(cov).sqrt(),
                 "spherical": 1 / torch.as_tensor(cov).sqrt()}[covariance_type]
    params = MixtureParameters(weights, torch.as_tensor(mu), torch.as_tensor(cov), prec_chol)
    out, calls = {}, []
    for name in ("incomplete_rows", "incomplete_rows_diagonal"):
        kernel = getattr(_kernels, name)
        monkeypatch.setattr(_kernels, name, lambda *a, kernel=kernel, **k: calls.append(1) or kernel(*a, **k))
    for use in (True, False):
        monkeypatch.setattr(mixture, "_use_kernel", use)
        out[use] = mixture_statistics(torch.as_tensor(X), params, covariance_type)
        assert bool(calls) == use
        calls.clear()
    assert out[True].keys() == out[False].keys()
    for key in out[True]:
        torch.testing.assert_close(torch.as_tensor(out[True][key]).double(), torch.as_tensor(out[False][key]).double(),
                                   rtol=1e-12, atol=1e-10)


def test_a_numba_that_does_not_import_leaves_the_torch_code_with_a_warning(monkeypatch):
    """numba installed but broken (built for another NumPy): one warning, and the fit is
    the torch code's, not an ImportError in the middle of it."""
    import sys

    import skgenerative.mixture as mixture
    from skgenerative import GaussianMixtureDensity, _kernels

    rng = np.random.RandomState(2)
    X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    X[rng.uniform(size=X.shape) < 0.3] = np.nan
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.setattr(_kernels, "_imports", None)
    with pytest.warns(RuntimeWarning, match="numba does not import"):
        broken = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X)
    assert _kernels._imports is False
    monkeypatch.setattr(mixture, "_use_kernel", False)
    torch_fit = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X)
    np.testing.assert_array_equal(broken.means_, torch_fit.means_)
    np.testing.assert_array_equal(broken.score_samples(X), torch_fit.score_samples(X))
