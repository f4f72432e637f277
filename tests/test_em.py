"""The EM driver (skgenerative._em) and the missing-data E-steps against brute force."""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning

from skgenerative import GaussianMixtureDensity, PPCADensity
from skgenerative._em import EMModel, EStep, accumulate, add_statistics, mean_log_likelihood
from skgenerative._sources import TensorSource
from skgenerative.mixture import (
    MixtureParameters,
    compute_precision_cholesky,
    estimate_log_gaussian_prob,
    gaussian_parameters_from_statistics,
    gaussian_statistics,
    mixture_statistics,
)
from skgenerative.ppca import PPCAParameters, ppca_m_step, ppca_statistics

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


# ------------------------------------------------------------------ the driver
class ScriptedEM(EMModel):
    """A model whose bound follows a script: ``bounds[init][step]`` at step ``step``.

    Parameters are ``(init, step)``; the M-step advances ``step``; the data are ten
    rows in a source read in chunks of four, each contributing its share of the
    scripted bound.
    """

    def __init__(self, bounds, verbose=0):
        self.bounds = bounds
        self.verbose = verbose
        self.initialisations = 0

    def _log(self, message, level=1):
        if self.verbose >= level:
            print(message)

    def _em_initialize(self, data, generator):
        self.initialisations += 1
        return (self.initialisations - 1, 0)

    def _em_resume(self, data):
        return self.params_

    def _statistics(self, chunk, params):
        init, step = params
        return {"log_likelihood": self.bounds[init][step] * len(chunk), "n_samples": len(chunk)}

    def _em_m_step(self, data, statistics, params):
        return (params[0], params[1] + 1)

    def _em_set_parameters(self, data, params):
        self.params_ = params


class _Data:
    """A fit's data as the driver sees it: the E-step over a source of ten rows."""

    def __init__(self, model):
        self.e_step = EStep(TensorSource(torch.zeros(10, 1)), model._statistics, row_bytes=2**20)


def _fit(model, **kw):
    model._em_fit(_Data(model), **kw)


def test_the_e_step_folds_the_statistics_of_the_sources_chunks():
    seen = []

    def statistics(chunk, params):
        seen.append(chunk.shape[0])
        return {"log_likelihood": chunk.sum() * params, "n_samples": chunk.shape[0]}

    source = TensorSource(torch.arange(10.0).unsqueeze(1))
    total = EStep(source, statistics, row_bytes=2**22 // 4)(2.0)  # chunks of 4 rows on the CPU
    assert seen == [4, 4, 2] and float(total["log_likelihood"]) == 90.0 and total["n_samples"] == 10


def test_driver_keeps_the_best_final_bound_and_warns_when_it_did_not_converge():
    bounds = [
        [-5.0, -4.0, -3.99995],  # converges at step 3 (|change| < 1e-3), final -3.99995
        [-9.0, -2.0, -1.5, -1.2, -1.1, -1.0],  # best final bound, stopped by max_iter
        [-3.0, -2.5, -2.49999],  # converges, final -2.49999
    ]
    model = ScriptedEM(bounds)
    with pytest.warns(ConvergenceWarning, match="Best performing initialization did not converge"):
        _fit(model, n_init=3, max_iter=5, tol=1e-3)
    assert model.initialisations == 3
    assert not model.converged_ and model.n_iter_ == 5
    assert model.lower_bounds_ == pytest.approx(bounds[1][:5])
    assert model.lower_bound_ == pytest.approx(-1.1)
    assert model.params_ == (1, 5)  # parameters after the M-step of the last iteration


def test_driver_converges_on_the_absolute_change_and_stops_after_that_m_step():
    bounds = [[-5.0, -4.0, -4.0005, -4.1], [-6.0, -5.0, -4.5, -4.4]]
    model = ScriptedEM(bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        _fit(model, n_init=2, max_iter=3, tol=1e-3)
    # init 0: a decrease of 5e-4 is a change below tol; init 1 ends lower (-4.5)
    assert model.converged_ and model.n_iter_ == 3
    assert model.lower_bound_ == pytest.approx(-4.0005)
    assert model.params_ == (0, 3)


def test_warm_start_resumes_with_one_initialisation():
    bounds = [[-5.0, -4.0, -3.0, -2.0, -1.0, -0.5, -0.4999]]
    model = ScriptedEM(bounds)
    with pytest.warns(ConvergenceWarning):
        _fit(model, n_init=1, max_iter=3, tol=1e-3)
    assert model.params_ == (0, 3)
    _fit(model, n_init=5, max_iter=4, tol=1e-3, warm_start=True)
    assert model.initialisations == 1  # no new start: n_init is ignored
    # the first change is measured from the previous fit's bound (-3.0)
    assert model.lower_bounds_ == pytest.approx([-2.0, -1.0, -0.5, -0.4999])
    assert model.converged_ and model.n_iter_ == 4 and model.params_ == (0, 7)


def test_max_iter_zero_keeps_the_last_start_without_a_warning():
    model = ScriptedEM([[-1.0], [-2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        _fit(model, n_init=2, max_iter=0, tol=1e-3)
    assert model.params_ == (1, 0)
    assert model.n_iter_ == 0 and model.lower_bound_ == -math.inf and model.lower_bounds_ == []


def test_verbose_levels(capsys):
    bounds = [[-2.0, -1.0, -1.0]]
    _fit(ScriptedEM(bounds, verbose=1), n_init=1, max_iter=5, tol=1e-3)
    lines = capsys.readouterr().out.splitlines()
    # verbose=1 in a log: the one-line summary (#18) and nothing else (#24)
    assert len(lines) == 1 and re.fullmatch(
        r"done: 3 EM iterations in \d+\.\d\ds; 1 initialization, best lower bound -1\.000000 "
        r"\(converged after 3 iterations\)", lines[0])
    _fit(ScriptedEM(bounds, verbose=2), n_init=1, max_iter=5, tol=1e-3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Initialization 0" and lines[-2] == "Initialization converged: lower bound -1.000000"
    assert len(lines) == 6 and lines[-1].startswith("done: 3 EM iterations")
    assert re.fullmatch(r"  Iteration 2\t lower bound -1\.000000\t change 1\.000e\+00", lines[2])


def test_non_finite_bound_raises_naming_the_model():
    with pytest.raises(FloatingPointError, match="ScriptedEM: EM produced a non-finite"):
        _fit(ScriptedEM([[-1.0, float("nan")]]), n_init=1, max_iter=5, tol=1e-3)


class LinearEM(EMModel):
    """EM whose step is a contraction to ``a``: ``F(theta) = a + rho (theta - a)`` per
    coordinate, bound ``-|theta - a|^2``; SQUAREM (``_em_accelerated``) lands on ``a``
    in one cycle, exactly (``alpha = -1 / (1 - rho)``). ``refuse``: the coordinates of
    an extrapolated point give no parameters."""

    verbose = 0

    def __init__(self, rho, accelerated, refuse=False):
        self.a, self.rho = torch.tensor([1.0, -2.0], dtype=torch.float64), rho
        self._em_accelerated, self.refuse = accelerated, refuse

    def _log(self, message, level=1):
        pass

    def _em_initialize(self, data, generator):
        return torch.tensor([5.0, 3.0], dtype=torch.float64)

    def _statistics(self, chunk, params):
        return {"log_likelihood": -float((params - self.a).square().sum()) * len(chunk), "n_samples": len(chunk)}

    def _em_m_step(self, data, statistics, params):
        return self.a + self.rho * (params - self.a)

    def _em_coordinates(self, data, params):
        return (params,)

    def _em_from_coordinates(self, data, coordinates, params):
        return None if self.refuse else coordinates[0]

    def _em_set_parameters(self, data, params):
        self.params_ = params


def test_squarem_lands_on_a_linear_maps_fixed_point_in_one_cycle():
    plain, fast = LinearEM(0.9, False), LinearEM(0.9, True)
    _fit(plain, n_init=1, max_iter=500, tol=1e-12)
    _fit(fast, n_init=1, max_iter=500, tol=1e-12)
    # two EM steps and the extrapolated point (a, to rounding), then a cycle or two of
    # (nearly) zero change: at most 7 E-steps against plain EM's 143 at rho = 0.9
    assert fast.lower_bounds_[2] == pytest.approx(0.0, abs=1e-20) and fast.n_iter_ <= 7
    assert plain.n_iter_ > 100
    np.testing.assert_allclose(fast.params_.numpy(), plain.params_.numpy(), atol=1e-5)
    np.testing.assert_allclose(fast.params_.numpy(), [1.0, -2.0], atol=1e-12)
    assert (np.diff(fast.lower_bounds_) >= 0).all() and (np.diff(plain.lower_bounds_) >= 0).all()


def test_squarem_without_a_valid_extrapolation_is_plain_em():
    plain, refused = LinearEM(0.5, False), LinearEM(0.5, True, refuse=True)
    with pytest.warns(ConvergenceWarning):
        _fit(plain, n_init=1, max_iter=6, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        _fit(refused, n_init=1, max_iter=6, tol=0.0)
    # each refused point costs nothing (no E-step): the same six steps, bounds and end
    assert refused.lower_bounds_ == plain.lower_bounds_ and refused.n_iter_ == 6
    assert torch.equal(refused.params_, plain.params_)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_squarem_mixture_reaches_plain_ems_fixed_point_in_fewer_e_steps(covariance_type):
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(0, 1, (150, 3)), rng.normal(1.5, 0.7, (150, 3))])
    X[rng.uniform(size=X.shape) < 0.25] = np.nan
    fits = {}
    for acceleration in (None, "squarem"):
        fits[acceleration] = GaussianMixtureDensity(
            2, covariance_type=covariance_type, tol=1e-10, max_iter=5000, dtype="float64", random_state=0,
            acceleration=acceleration).fit(X)
    plain, fast = fits[None], fits["squarem"]
    assert plain.converged_ and fast.converged_ and fast.n_iter_ < 0.6 * plain.n_iter_  # 19 vs 37 (diag)
    assert fast.lower_bound_ == pytest.approx(plain.lower_bound_, abs=1e-8)
    np.testing.assert_allclose(fast.means_, plain.means_, atol=1e-4)
    np.testing.assert_allclose(fast.covariances_, plain.covariances_, atol=1e-4)
    np.testing.assert_allclose(fast.weights_, plain.weights_, atol=1e-4)
    assert (np.diff(fast.lower_bounds_) >= -1e-9).all()  # the safeguard: the bound never drops


def test_squarem_on_a_table_reaches_plain_ems_fixed_point():
    """Levels and a count beside the numbers (the families' logits and log-rates are
    coordinates too), and levels alone (a latent class model: no Gaussian block)."""
    import pandas as pd

    rng = np.random.RandomState(1)
    z = rng.randint(2, size=400)
    frame = pd.DataFrame({
        "x": rng.normal(2.0 * z, 1.0),
        "n": rng.poisson(np.where(z, 6.0, 2.0)).astype(np.int64),
        "c": pd.Categorical(np.where(rng.uniform(size=400) < 0.8, z, 1 - z).astype(str)),
        "d": pd.Categorical(np.array(["a", "b", "c"])[np.clip(z + rng.randint(0, 2, 400), 0, 2)]),
    })
    frame.loc[rng.uniform(size=400) < 0.2, "x"] = np.nan
    # the table: a fast EM (SQUAREM saves little there); levels alone are weakly
    # identified: plain EM creeps (1965 E-steps to tol 1e-13, SQUAREM 868)
    for columns, tol in ((["x", "n", "c", "d"], 1e-10), (["c", "d"], 1e-13)):
        types = {"n": "count"} if "n" in columns else None
        fits = [GaussianMixtureDensity(2, tol=tol, max_iter=5000, dtype="float64", random_state=0, column_types=types,
                                       acceleration=a).fit(frame[columns]) for a in (None, "squarem")]
        assert fits[0].converged_ and fits[1].converged_
        assert fits[1].lower_bound_ == pytest.approx(fits[0].lower_bound_, abs=1e-7)
        assert len(columns) > 2 or fits[1].n_iter_ < 0.6 * fits[0].n_iter_
        np.testing.assert_allclose(fits[1].weights_, fits[0].weights_, atol=1e-4)
        for got, want in zip(fits[1]._family_parameters, fits[0]._family_parameters):
            np.testing.assert_allclose(got, want, atol=1e-3)


def test_accumulate_folds_left_to_right():
    parts = [{"a": 1.0, "n": 1}, {"a": 2.0, "n": 2}, {"a": 4.0, "n": 3}]
    seen = []

    def combine(x, y):
        seen.append((x["a"], y["a"]))
        return add_statistics(x, y)

    total = accumulate(parts, lambda s: s, combine)
    assert total == {"a": 7.0, "n": 6} and seen == [(1.0, 2.0), (3.0, 4.0)]
    assert mean_log_likelihood({"log_likelihood": torch.tensor(6.0), "n_samples": 4}) == 1.5
    with pytest.raises(ValueError, match="at least one chunk"):
        accumulate([], lambda s: s)


# ---------------------------------------------------- GMM: Ghahramani & Jordan E-step
def _gmm_parameters(covariance_type, seed=0, k=2, d=3):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.ones(k) * 3)
    means = rng.normal(size=(k, d)) * 2
    full = []
    for _ in range(k):
        A = rng.normal(size=(d, d))
        full.append(A @ A.T / d + 0.5 * np.eye(d))
    full = np.array(full)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.array([np.diag(c) for c in full]),
        "spherical": np.array([np.diag(c).mean() for c in full]),
    }[covariance_type]
    return weights, means, cov


def _as_full(cov, covariance_type, k, d):
    return {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        "diag": lambda: np.array([np.diag(c) for c in cov]),
        "spherical": lambda: np.array([c * np.eye(d) for c in cov]),
    }[covariance_type]()


def _torch_parameters(weights, means, cov, covariance_type):
    cov_t = torch.as_tensor(cov)
    return MixtureParameters(
        torch.as_tensor(weights), torch.as_tensor(means), cov_t, compute_precision_cholesky(cov_t, covariance_type)
    )


def _incomplete_data(n=40, d=3, seed=1):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d)) * 2
    X[rng.rand(n, d) < 0.4] = np.nan
    X[0] = np.nan  # nothing observed
    X[1] = rng.normal(size=d)  # everything observed
    X[2, :2] = np.nan
    return X


def _gmm_brute_force(X, weights, means, full):
    """Per row and component, by explicit Schur complements: log p(x_o) and statistics."""
    n, d = X.shape
    k = len(weights)
    log_joint = np.zeros((n, k))
    filled = np.zeros((n, k, d))
    cond = np.zeros((n, k, d, d))
    for i in range(n):
        o, m = ~np.isnan(X[i]), np.isnan(X[i])
        for c in range(k):
            S, mu = full[c], means[c]
            if o.any():
                S_oo_inv = np.linalg.inv(S[np.ix_(o, o)])
                log_p = stats.multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(X[i, o])
                gain = S[np.ix_(m, o)] @ S_oo_inv
            else:
                log_p, gain = 0.0, np.zeros((m.sum(), 0))
            log_joint[i, c] = np.log(weights[c]) + log_p
            filled[i, c, o] = X[i, o]
            filled[i, c, m] = mu[m] + gain @ (X[i, o] - mu[o])
            cond[i, c][np.ix_(m, m)] = S[np.ix_(m, m)] - gain @ S[np.ix_(o, m)]
    log_lik = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_lik[:, None])
    nk = resp.sum(0)
    sx = np.einsum("ik,ikd->kd", resp, filled)
    sxx = np.einsum("ik,ikd,ike->kde", resp, filled, filled) + np.einsum("ik,ikde->kde", resp, cond)
    return log_lik, nk, sx, sxx


def _reduce_second_moments(sxx, covariance_type):
    if covariance_type == "full":
        return sxx
    if covariance_type == "tied":
        return sxx.sum(0)
    return np.diagonal(sxx, axis1=1, axis2=2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixture_statistics_equal_the_schur_complement_brute_force(covariance_type):
    weights, means, cov = _gmm_parameters(covariance_type)
    X = _incomplete_data()
    k, d = means.shape
    log_lik, nk, sx, sxx = _gmm_brute_force(X, weights, means, _as_full(cov, covariance_type, k, d))
    got = mixture_statistics(torch.as_tensor(X), _torch_parameters(weights, means, cov, covariance_type), covariance_type)
    assert got["n_samples"] == len(X)
    assert got["log_likelihood"].item() == pytest.approx(log_lik.sum(), rel=1e-12)
    np.testing.assert_allclose(got["nk"].numpy(), nk, rtol=1e-12)
    np.testing.assert_allclose(got["sx"].numpy(), sx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["sxx"].numpy(), _reduce_second_moments(sxx, covariance_type), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixture_statistics_of_complete_rows_are_the_plain_statistics(covariance_type):
    weights, means, cov = _gmm_parameters(covariance_type, seed=2)
    X = torch.as_tensor(np.random.RandomState(3).normal(size=(30, 3)))
    params = _torch_parameters(weights, means, cov, covariance_type)
    got = mixture_statistics(X, params, covariance_type)
    weighted = estimate_log_gaussian_prob(X, params.means, params.precisions_cholesky, covariance_type)
    weighted = weighted + torch.log(params.weights)
    norm = torch.logsumexp(weighted, 1)
    expected = gaussian_statistics(X, torch.exp(weighted - norm[:, None]), covariance_type)
    # the E-step normalises with one exponential (normalised_responsibilities), not
    # logsumexp then exp: equal to rounding
    assert got["log_likelihood"].item() == pytest.approx(norm.sum().item(), rel=1e-14)
    for key, value in zip(("nk", "sx", "sxx"), expected):
        torch.testing.assert_close(got[key], value, rtol=1e-14, atol=1e-14)
    # tied: leaving out the complete rows' second moments drops exactly sum x x^T
    if covariance_type == "tied":
        partial = mixture_statistics(X, params, covariance_type, complete_second_moments=False)
        assert torch.count_nonzero(partial["sxx"]) == 0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mixture_statistics_add_over_a_partition_of_the_rows(covariance_type):
    weights, means, cov = _gmm_parameters(covariance_type, seed=4)
    X = torch.as_tensor(_incomplete_data(seed=5))
    params = _torch_parameters(weights, means, cov, covariance_type)
    whole = mixture_statistics(X, params, covariance_type)
    halves = add_statistics(
        mixture_statistics(X[:17], params, covariance_type), mixture_statistics(X[17:], params, covariance_type)
    )
    assert halves["n_samples"] == whole["n_samples"] == len(X)
    for key in ("log_likelihood", "nk", "sx", "sxx"):
        torch.testing.assert_close(halves[key], whole[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_from_expected_statistics_increases_the_observed_likelihood(covariance_type):
    weights, means, cov = _gmm_parameters(covariance_type, seed=6)
    X = _incomplete_data(n=60, seed=7)
    k, d = means.shape
    previous = -np.inf
    for _ in range(5):
        exact = _gmm_brute_force(X, weights, means, _as_full(cov, covariance_type, k, d))[0].sum()
        assert exact > previous  # strict: these parameters are far from a fixed point
        previous = exact
        s = mixture_statistics(torch.as_tensor(X), _torch_parameters(weights, means, cov, covariance_type), covariance_type)
        assert s["log_likelihood"].item() == pytest.approx(exact, rel=1e-12)
        nk, means_t, cov_t = gaussian_parameters_from_statistics(s["nk"], s["sx"], s["sxx"], 0.0, covariance_type)
        weights, means, cov = (nk / nk.sum()).numpy(), means_t.numpy(), cov_t.numpy()


# ------------------------------------------------------------- PPCA: latent E-step
def _ppca_problem(seed=0, n=30, d=6, q=2):
    rng = np.random.RandomState(seed)
    W = rng.normal(size=(d, q))
    mean = rng.normal(size=d)
    X = rng.normal(size=(n, q)) @ W.T * 1.5 + mean + 0.5 * rng.normal(size=(n, d))
    X[rng.rand(n, d) < 0.35] = np.nan
    X[0] = np.nan
    X[1] = rng.normal(size=d)
    return X, mean + 0.3 * rng.normal(size=d), W * 0.7, 0.6


def _ppca_posteriors(X, mean, W, noise):
    q = W.shape[1]
    out = []
    for x in X:
        o = ~np.isnan(x)
        Wo = W[o]
        M = Wo.T @ Wo + noise * np.eye(q)
        z = np.linalg.solve(M, Wo.T @ (x[o] - mean[o]))
        out.append((o, z, noise * np.linalg.inv(M)))
    return out


def _ppca_exact_log_likelihood(X, mean, W, noise):
    C = W @ W.T + noise * np.eye(len(mean))
    total = 0.0
    for x in X:
        o = ~np.isnan(x)
        if o.any():
            total += stats.multivariate_normal(mean[o], C[np.ix_(o, o)]).logpdf(x[o])
    return total


def test_ppca_statistics_equal_the_per_row_posterior_moments():
    X, mean, W, noise = _ppca_problem()
    d, q = W.shape
    expected = {
        "count": np.zeros(d), "residual": np.zeros(d), "squared_residual": 0.0,
        "latent": np.zeros((d, q)), "residual_latent": np.zeros((d, q)),
        "latent_moments": np.zeros((d, q, q)), "latent_covariance": np.zeros((d, q, q)),
    }
    for x, (o, z, cov_z) in zip(X, _ppca_posteriors(X, mean, W, noise)):
        for j in np.flatnonzero(o):
            e = x[j] - mean[j] - W[j] @ z
            expected["count"][j] += 1
            expected["residual"][j] += e
            expected["squared_residual"] += e * e
            expected["latent"][j] += z
            expected["residual_latent"][j] += e * z
            expected["latent_moments"][j] += np.outer(z, z)
            expected["latent_covariance"][j] += cov_z
    params = PPCAParameters(torch.as_tensor(mean), torch.as_tensor(W), noise)
    got = ppca_statistics(torch.as_tensor(X), params)
    assert got["n_samples"] == len(X)
    assert got["log_likelihood"].item() == pytest.approx(_ppca_exact_log_likelihood(X, mean, W, noise), rel=1e-12)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].numpy(), value, rtol=1e-10, atol=1e-12, err_msg=key)


def test_ppca_statistics_of_complete_rows_use_one_posterior_covariance():
    X, mean, W, noise = _ppca_problem(seed=1)
    X = np.nan_to_num(X, nan=0.5)
    got = ppca_statistics(torch.as_tensor(X), PPCAParameters(torch.as_tensor(mean), torch.as_tensor(W), noise))
    n, q = len(X), W.shape[1]
    M = W.T @ W + noise * np.eye(q)
    Z = np.linalg.solve(M, W.T @ (X - mean).T).T  # E[z | x] = M^{-1} W^T (x - mu)
    np.testing.assert_allclose(got["count"].numpy(), n)
    np.testing.assert_allclose(got["latent_covariance"].numpy(), np.broadcast_to(n * noise * np.linalg.inv(M), (6, q, q)), rtol=1e-12)
    np.testing.assert_allclose(got["latent"].numpy(), np.broadcast_to(Z.sum(0), (6, q)), rtol=1e-10)
    np.testing.assert_allclose(got["latent_moments"].numpy(), np.broadcast_to(Z.T @ Z, (6, q, q)), rtol=1e-10)
    np.testing.assert_allclose(got["residual_latent"].numpy(), (X - mean - Z @ W.T).T @ Z, rtol=1e-9, atol=1e-12)


def test_ppca_statistics_add_over_a_partition_of_the_rows():
    X, mean, W, noise = _ppca_problem(seed=2)
    params = PPCAParameters(torch.as_tensor(mean), torch.as_tensor(W), noise)
    X = torch.as_tensor(X)
    whole = ppca_statistics(X, params)
    halves = add_statistics(ppca_statistics(X[:11], params), ppca_statistics(X[11:], params))
    for key in whole:
        if key == "n_samples":
            assert halves[key] == whole[key]
        else:
            torch.testing.assert_close(halves[key], whole[key], rtol=1e-12, atol=1e-12)


def test_ppca_m_step_is_the_sequential_update_and_increases_the_likelihood():
    X, mean, W, noise = _ppca_problem(seed=3)
    d, q = W.shape
    previous = _ppca_exact_log_likelihood(X, mean, W, noise)
    for _ in range(4):
        # the update written per row and column, from the posteriors
        posteriors = _ppca_posteriors(X, mean, W, noise)
        observed = ~np.isnan(X)
        new_mean = np.array([
            np.mean([X[i, j] - W[j] @ posteriors[i][1] for i in np.flatnonzero(observed[:, j])]) for j in range(d)
        ])
        new_W = np.zeros_like(W)
        for j in range(d):
            rows = np.flatnonzero(observed[:, j])
            A = sum(np.outer(posteriors[i][1], posteriors[i][1]) + posteriors[i][2] for i in rows)
            b = sum(posteriors[i][1] * (X[i, j] - new_mean[j]) for i in rows)
            new_W[j] = np.linalg.solve(A, b)
        total = sum(
            (X[i, j] - new_mean[j] - new_W[j] @ posteriors[i][1]) ** 2 + new_W[j] @ posteriors[i][2] @ new_W[j]
            for i, j in zip(*np.nonzero(observed))
        )
        new_noise = total / observed.sum()

        s = ppca_statistics(torch.as_tensor(X), PPCAParameters(torch.as_tensor(mean), torch.as_tensor(W), noise))
        got = ppca_m_step(s, PPCAParameters(torch.as_tensor(mean), torch.as_tensor(W), noise))
        np.testing.assert_allclose(got.mean.numpy(), new_mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.loadings.numpy(), new_W, rtol=1e-10, atol=1e-12)
        assert got.noise_variance == pytest.approx(new_noise, rel=1e-10)

        mean, W, noise = new_mean, new_W, new_noise
        current = _ppca_exact_log_likelihood(X, mean, W, noise)
        assert current > previous
        previous = current


def test_ppca_m_step_noise_floor():
    X, mean, W, noise = _ppca_problem(seed=4)
    params = PPCAParameters(torch.as_tensor(mean), torch.as_tensor(W), noise)
    got = ppca_m_step(ppca_statistics(torch.as_tensor(X), params), params, min_noise=1e3)
    assert got.noise_variance == 1e3


# ------------------------------------------------------------ the models on the driver
def test_gmm_n_init_keeps_the_best_of_the_printed_runs(capsys):
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(c, 1.0, size=(80, 2)) for c in ([0, 0], [5, 0], [0, 5], [5, 5])])
    est = GaussianMixtureDensity(4, n_init=4, init_params="random_from_data", random_state=3, verbose=2).fit(X)
    out = capsys.readouterr().out
    finals = [float(v) for v in re.findall(r"Initialization (?:converged|did not converge): lower bound (-?[\d.]+)", out)]
    assert len(finals) == 4 and len(set(finals)) > 1  # the starts differ
    assert est.lower_bound_ == pytest.approx(max(finals), abs=1e-6)
    assert est.lower_bounds_[-1] == est.lower_bound_
    # the first start is the single-start fit: more starts can only help
    single = GaussianMixtureDensity(4, n_init=1, init_params="random_from_data", random_state=3).fit(X)
    assert single.lower_bound_ == pytest.approx(finals[0], abs=1e-6)
    assert est.lower_bound_ >= single.lower_bound_


def test_ppca_closed_form_bound_is_the_training_log_likelihood():
    X, _, _, _ = _ppca_problem(seed=5, n=400, d=7, q=3)
    X = np.nan_to_num(X, nan=0.1)
    for q in (1, 3, 5):
        est = PPCADensity(q).fit(X)
        assert est.n_iter_ == 1 and est.converged_
        assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-10)
        assert est.lower_bounds_ == [est.lower_bound_]
    wide = np.random.RandomState(0).normal(size=(10, 30))  # n < D: the Gram-matrix path
    est = PPCADensity(4).fit(wide)
    assert est.lower_bound_ == pytest.approx(est.score(wide), rel=1e-10)


def test_ppca_em_records_its_bounds_and_warns_through_the_driver():
    X, _, _, _ = _ppca_problem(seed=6, n=300, d=7, q=2)
    est = PPCADensity(2, tol=1e-8, acceleration=None).fit(X)  # plain EM: every E-step recorded
    assert est.converged_ and est.n_iter_ == len(est.lower_bounds_) > 2
    assert np.all(np.diff(est.lower_bounds_) > -1e-12)
    assert est.lower_bound_ == est.lower_bounds_[-1]
    # the last bound is that of the parameters before the final M-step: the fit scores higher
    observed_score = est.score(X)
    assert observed_score >= est.lower_bound_ - 1e-12
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        short = PPCADensity(2, max_iter=2).fit(X)
    assert not short.converged_ and short.n_iter_ == 2


def test_ppca_squarem_reaches_plain_ems_fixed_point_in_fewer_e_steps():
    """The default SQUAREM and plain EM, both run to a tight tolerance from the same
    start, stop at the fixed point of a much longer plain run; SQUAREM in a sixth of
    the E-steps and closer to it (plain EM stops short along its slow directions,
    where its steps fall under the tolerance), its recorded bounds never decreasing."""
    X, _, _, _ = _ppca_problem(seed=7, n=400, d=8, q=3)
    fast = PPCADensity(3, tol=1e-11, max_iter=20000).fit(X)
    plain = PPCADensity(3, tol=1e-11, max_iter=20000, acceleration=None).fit(X)
    limit = PPCADensity(3, tol=1e-14, max_iter=200000, acceleration=None).fit(X)
    assert fast.converged_ and plain.converged_ and limit.converged_ and fast.n_iter_ < plain.n_iter_ / 4
    assert np.all(np.diff(fast.lower_bounds_) > -1e-10)
    assert fast.score(X) == pytest.approx(limit.score(X), abs=1e-11)
    np.testing.assert_allclose(fast.mean_, limit.mean_, atol=1e-5)
    np.testing.assert_allclose(fast.explained_variance_, limit.explained_variance_, rtol=1e-5)
    assert fast.noise_variance_ == pytest.approx(limit.noise_variance_, rel=1e-5)
    np.testing.assert_allclose(np.abs(fast.components_ @ limit.components_.T), np.eye(3), atol=1e-5)
    assert np.abs(fast.mean_ - limit.mean_).max() < np.abs(plain.mean_ - limit.mean_).max()


def test_ppca_degenerate_posterior_is_a_clear_error():
    """Rows observing fewer entries than the latent dimension, with no noise left: the
    latent posterior cannot be factorised, and the error says why (not torch's)."""
    from skgenerative.ppca import ppca_posterior

    W = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # the 2nd direction unused
    X = torch.tensor([[0.3, float("nan"), 0.1]], dtype=torch.float64)
    with pytest.raises(ValueError, match="latent posterior .* degenerate .* scale the columns"):
        ppca_posterior(X, torch.zeros(3, dtype=torch.float64), W, -1e-3)
    log_lik, z, _ = ppca_posterior(X, torch.zeros(3, dtype=torch.float64), W, 1e-2)
    assert torch.isfinite(log_lik).all() and torch.isfinite(z).all()


def _fallback_case(X, missing, seed):
    H = np.array(X, dtype=float)
    H[np.random.default_rng(seed).random(H.shape) < missing] = np.nan
    observed = np.isfinite(H).sum() / len(H)
    return H, observed


def _assert_default_is_the_fit_at_its_dimension(H, capsys):
    default = PPCADensity(verbose=1).fit(H)
    log = capsys.readouterr().out
    explicit = PPCADensity(default.n_components_).fit(H)
    for name in ("mean_", "components_", "explained_variance_", "noise_variance_", "lower_bound_"):
        np.testing.assert_array_equal(getattr(default, name), getattr(explicit, name))
    assert default.converged_ and np.isfinite(default.score_samples(H)).all()
    return default, log


def test_ppca_default_dimension_falls_back_where_the_noise_would_collapse(capsys):
    """Eight informative columns and two constant ones, a fifth missing: Minka's
    evidence keeps 9 dimensions, leaving zero eigenvalues beyond, so EM's noise variance
    would collapse (``PPCADensity(9)`` raises). The default restarts at
    ``min(9 // 2, m // 2)``, ``m`` the mean observed count of a row, and is exactly
    the fit at that dimension."""
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)), np.zeros((300, 2))])
    H, observed = _fallback_case(X, 0.2, seed=1)
    default, log = _assert_default_is_the_fit_at_its_dimension(H, capsys)
    assert "Minka's evidence chose n_components=9" in log and "beyond it are zero" in log
    assert default.n_components_ == min(9 // 2, int(observed) // 2) == 3
    with pytest.raises(ValueError, match="latent posterior .* degenerate"):
        PPCADensity(9).fit(H)


def test_ppca_default_dimension_fallback_is_the_same_on_dask():
    """The fallback's mean observed count comes from the source's column moments: a
    dask array of the same rows gets the same dimension and parameters."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)), np.zeros((300, 2))])
    H, _ = _fallback_case(X, 0.5, seed=1)
    local = PPCADensity().fit(H)
    lazy = PPCADensity().fit(da.from_array(H, chunks=70))
    assert local.n_components_ == lazy.n_components_ < 9
    np.testing.assert_allclose(lazy.components_, local.components_, atol=1e-8)
    assert lazy.noise_variance_ == pytest.approx(local.noise_variance_, rel=1e-8)


@pytest.mark.filterwarnings("ignore::skgenerative.DiscreteDataWarning")  # the rare columns: 2 values
def test_ppca_default_dimension_falls_back_where_ems_posterior_degenerates(capsys):
    """Eight informative columns and three equal, nearly constant ones (1 in two rows,
    else 0), a fifth missing: Minka's evidence keeps 10 of 11 dimensions with noise
    left beyond them (mean imputation breaks the columns' equality), then EM's noise
    variance collapses until a row's posterior cannot be factorised. The default
    restarts at ``min(10 // 2, m // 2)`` and is exactly the fit at that dimension."""
    rng = np.random.default_rng(0)
    rare = np.zeros((300, 3))
    rare[:2] = 1.0
    X = np.hstack([rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)), rare])
    H, observed = _fallback_case(X, 0.2, seed=1)
    default, log = _assert_default_is_the_fit_at_its_dimension(H, capsys)
    assert "Minka's evidence chose n_components=10" in log and "posterior became degenerate" in log
    assert default.n_components_ == min(10 // 2, int(observed) // 2) == 4
    with pytest.raises(ValueError, match="latent posterior .* degenerate"):
        PPCADensity(10).fit(H)


# ------------------------------------------------- the family blocks in the same E-step
def test_mixture_statistics_with_family_blocks_are_bayes_rule_by_hand():
    """Responsibilities from the Gaussian marginal times each family's observed cells;
    the families' statistics are the responsibility-weighted cell statistics."""
    from skgenerative.distributions import Bernoulli, Categorical, Poisson
    from skgenerative.mixture import FamilyBlock

    weights, means, cov = _gmm_parameters("full", seed=8)
    X = _incomplete_data(seed=9)
    rng = np.random.RandomState(10)
    n, k = len(X), len(weights)
    binary = rng.randint(2, size=(n, 2)).astype(float)
    counts = rng.poisson(2.0, size=(n, 1)).astype(float)
    levels = rng.randint(3, size=(n, 1)).astype(float)
    for cells in (binary, counts, levels):
        cells[rng.uniform(size=cells.shape) < 0.2] = np.nan
    logits, log_rates, table = rng.normal(size=(k, 2)), rng.normal(size=(k, 1)), rng.dirichlet(np.ones(3), size=(k, 1))
    blocks = (FamilyBlock(Bernoulli, (3, 4), slice(0, 2)), FamilyBlock(Poisson, (5,), slice(2, 3)),
              FamilyBlock(Categorical, (6,), slice(3, 4), n_levels=3))
    params = _torch_parameters(weights, means, cov, "full")._replace(
        families=(torch.as_tensor(logits), torch.as_tensor(log_rates), torch.as_tensor(np.log(table))))
    families = tuple((b, torch.as_tensor(c)) for b, c in zip(blocks, (binary, counts, levels)))
    got = mixture_statistics(torch.as_tensor(X), params, "full", families=families)
    log_joint = np.zeros((n, k))
    for i in range(n):
        o = ~np.isnan(X[i])
        for c in range(k):
            log_joint[i, c] = np.log(weights[c]) + (
                stats.multivariate_normal(means[c][o], cov[c][np.ix_(o, o)]).logpdf(X[i, o]) if o.any() else 0.0)
            p = 1 / (1 + np.exp(-logits[c]))
            log_joint[i, c] += np.nansum(np.where(np.isnan(binary[i]), np.nan, stats.bernoulli.logpmf(
                np.nan_to_num(binary[i]), p)))
            if not np.isnan(counts[i, 0]):
                log_joint[i, c] += stats.poisson.logpmf(counts[i, 0], np.exp(log_rates[c, 0]))
            if not np.isnan(levels[i, 0]):
                log_joint[i, c] += np.log(table[c, 0, int(levels[i, 0])])
    resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    assert got["log_likelihood"].item() == pytest.approx(logsumexp(log_joint, axis=1).sum(), rel=1e-12)
    np.testing.assert_allclose(got["nk"].numpy(), resp.sum(0), rtol=1e-12)
    for b, cells in enumerate((binary, counts)):
        statistics = got[f"family{b}"]
        np.testing.assert_allclose(statistics.count.numpy(), resp.T @ ~np.isnan(cells), rtol=1e-12)
        np.testing.assert_allclose(statistics.sums[..., 0].numpy(), resp.T @ np.nan_to_num(cells), rtol=1e-12)
    one_hot = np.stack([(levels[:, 0] == level) for level in range(3)], axis=1).astype(float)
    np.testing.assert_allclose(got["family2"].sums[:, 0].numpy(), resp.T @ one_hot, rtol=1e-12)
    # the Gaussian's expected sums take these responsibilities: sum_i r_ik E[x_i | x_i,o, k]
    filled = np.zeros((n, k, X.shape[1]))
    for i in range(n):
        o, m = ~np.isnan(X[i]), np.isnan(X[i])
        for c in range(k):
            filled[i, c, o] = X[i, o]
            gain = cov[c][np.ix_(m, o)] @ np.linalg.inv(cov[c][np.ix_(o, o)]) if o.any() else np.zeros((m.sum(), 0))
            filled[i, c, m] = means[c][m] + gain @ (X[i, o] - means[c][o])
    np.testing.assert_allclose(got["sx"].numpy(), np.einsum("ik,ikd->kd", resp, filled), rtol=1e-10)
