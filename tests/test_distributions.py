"""The column families: one contract test parametrized over every family, then the composition.

Exact answers: scipy's log densities and masses, brute-force sums (or quadrature) of
the log-normalisers, autograd gradients of the log-normalisers and Jacobians of the
unit transforms, and M-steps against the weighted maximum-likelihood / MAP answer
found independently by scipy's optimiser.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, special, stats

from skgenerative.distributions import (
    FAMILIES,
    Bernoulli,
    Categorical,
    ColumnFamilies,
    ExponentialFamily,
    LogNormal,
    Normal,
    OrderedLogistic,
    Poisson,
    Statistics,
    ZeroInflatedLogNormal,
    level_point,
    ordinal_thresholds,
)

T = torch.float64
LEVELS = 4


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=float), dtype=T)


# ------------------------------------------------------------------ the cases
# each case: a family with batch shape (3,) (levels last for categorical ones), valid
# values for it (7, 3), scipy's log-density (values, family) -> (7, 3), the levels of a
# discrete family
def _normal():
    return Normal(_t([0.5, -1.0, 3.0]), _t([0.0, -1.5, 1.2]))


def _lognormal():
    return LogNormal(_t([0.5, -1.0, 2.0]), _t([-0.5, -1.5, 0.3]))


def _poisson():
    return Poisson(_t([0.3, 1.5, -0.7]))


def _bernoulli():
    return Bernoulli(_t([0.3, -1.2, 2.5]))


def _categorical():
    return Categorical(_t(np.random.RandomState(0).normal(size=(3, LEVELS))))


def _ordered():
    raw = np.random.RandomState(1).normal(size=(3, LEVELS))
    return OrderedLogistic.from_unconstrained(_t(raw))


def _values(name, n=7, seed=0):
    rng = np.random.RandomState(seed)
    return {
        "normal": lambda: rng.normal(size=(n, 3)) * 2,
        "lognormal": lambda: np.exp(rng.normal(size=(n, 3))),
        "poisson": lambda: rng.poisson(3.0, size=(n, 3)).astype(float),
        "bernoulli": lambda: rng.randint(2, size=(n, 3)).astype(float),
        "categorical": lambda: rng.randint(LEVELS, size=(n, 3)).astype(float),
        "ordered": lambda: rng.randint(LEVELS, size=(n, 3)).astype(float),
    }[name]()


def _scipy_log_prob(name, family, x):
    if name == "normal":
        return stats.norm.logpdf(x, family.loc.numpy(), np.exp(0.5 * family.log_var.numpy()))
    if name == "lognormal":
        return stats.lognorm.logpdf(x, s=np.exp(0.5 * family.log_var.numpy()), scale=np.exp(family.loc.numpy()))
    if name == "poisson":
        return stats.poisson.logpmf(x, np.exp(family.log_rate.numpy()))
    if name == "bernoulli":
        return stats.bernoulli.logpmf(x, special.expit(family.logits.numpy()))
    if name == "categorical":
        p = special.softmax(family.logits.numpy(), axis=-1)
        return np.log(p[np.arange(3), x.astype(int)])
    # ordered logit by hand: P(x <= k) = logistic cdf of (theta_{k+1} - eta)
    theta, eta = family.cutpoints.numpy(), family.location.numpy()
    cdf = np.column_stack([np.zeros(3), stats.logistic.cdf(theta - eta[:, None]), np.ones(3)])
    p = np.diff(cdf, axis=1)
    return np.log(p[np.arange(3), x.astype(int)])


CASES = {
    "normal": _normal, "lognormal": _lognormal, "poisson": _poisson,
    "bernoulli": _bernoulli, "categorical": _categorical, "ordered": _ordered,
}
DISCRETE = ("bernoulli", "categorical", "ordered")
EXPONENTIAL = ("normal", "lognormal", "poisson", "bernoulli", "categorical")


def _levels(name):
    return 2 if name == "bernoulli" else LEVELS


@pytest.mark.parametrize("name", CASES)
def test_log_prob_is_scipys(name):
    family = CASES[name]()
    x = _values(name)
    np.testing.assert_allclose(family.log_prob(_t(x)).numpy(), _scipy_log_prob(name, family, x), rtol=1e-12)
    # complete cells: the unmasked fast path and the row sums give the same numbers
    np.testing.assert_allclose(family.log_prob(_t(x), masked=False).numpy(), family.log_prob(_t(x)).numpy(),
                               rtol=1e-15)
    for masked in (True, False):
        np.testing.assert_allclose(family.summed_log_prob(_t(x), masked).numpy(),
                                   _scipy_log_prob(name, family, x).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_missing_cells_add_zero_with_finite_gradients(name):
    family = CASES[name]()
    params = [getattr(family, p).clone().requires_grad_(True) for p in family._parameters]
    family = type(family)(*params, **family._options())
    x = _values(name)
    x[[0, 3], [1, 2]] = np.nan
    log_p = family.log_prob(_t(x))
    assert log_p[0, 1] == 0 and log_p[3, 2] == 0
    complete = family.log_prob(_t(np.nan_to_num(x, nan=1.0)))
    observed = ~np.isnan(x)
    np.testing.assert_array_equal(log_p.detach().numpy()[observed], complete.detach().numpy()[observed])
    log_p.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in params)
    # the encoder features of a missing cell are 0
    n_levels = _levels(name)
    features = type(family).features(_t(x), n_levels).reshape(7, 3, -1)
    assert not features[0, 1].any() and not features[3, 2].any()


@pytest.mark.parametrize("name", CASES)
def test_probabilities_sum_to_one(name):
    family = CASES[name]()
    if name in DISCRETE:
        levels = _levels(name)
        codes = _t(np.repeat(np.arange(levels)[:, None], 3, axis=1))
        np.testing.assert_allclose(family.log_prob(codes).exp().sum(0).numpy(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(family.level_log_probs().exp().sum(-1).numpy(), 1.0, rtol=1e-12)
    elif name == "poisson":
        counts = _t(np.repeat(np.arange(200)[:, None], 3, axis=1))
        np.testing.assert_allclose(family.log_prob(counts).exp().sum(0).numpy(), 1.0, rtol=1e-12)
    else:
        for c in range(3):
            one = family.select(c)
            lower = 0.0 if name == "lognormal" else -np.inf
            total = integrate.quad(lambda v: math.exp(float(one.log_prob(_t(v)))), lower, np.inf,
                                   epsabs=1e-13, epsrel=1e-12, limit=200)[0]
            assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_sample_moments_match_the_family(name):
    family = CASES[name]()
    n = 200_000
    draws = torch.stack([family.sample(torch.Generator().manual_seed(s)) for s in range(2)])  # fresh streams
    assert not torch.equal(draws[0], draws[1])
    big = type(family)(*(getattr(family, p).expand((n,) + getattr(family, p).shape)
                         for p in family._parameters), **family._options())
    x = big.sample(torch.Generator().manual_seed(0)).numpy()
    if name in DISCRETE:
        p = family.level_log_probs().exp().numpy()
        for level in range(p.shape[-1]):
            share = (x == level).mean(0)
            se = np.sqrt(p[:, level] * (1 - p[:, level]) / n)
            assert (np.abs(share - p[:, level]) < 5 * se + 1e-7).all()
        return
    if name == "lognormal":  # heavy tails: the moments of log x, then the mean loosely
        logs = np.log(x)
        np.testing.assert_allclose(logs.mean(0), family.loc.numpy(), atol=5 * np.sqrt(family.variance.numpy().max() / n) + 0.01)
        np.testing.assert_allclose(logs.var(0), np.exp(family.log_var.numpy()), rtol=0.02)
        np.testing.assert_allclose(x.mean(0), family.mean.numpy(), rtol=0.05)
        return
    mean, variance = family.mean.numpy(), family.variance.numpy()
    assert (np.abs(x.mean(0) - mean) < 5 * np.sqrt(variance / n)).all()
    np.testing.assert_allclose(x.var(0), variance, rtol=0.03)


@pytest.mark.parametrize("name", CASES)
def test_outside_support(name):
    family = type(CASES[name]())
    bad = {"normal": [], "lognormal": [0.0, -1.0], "poisson": [-1.0, 1.5], "bernoulli": [-0.1, 1.1],
           "categorical": [-1.0, 0.5], "ordered": [-1.0, 2.5]}[name]
    good = _values(name).ravel().tolist() + [np.nan]
    assert not family.outside_support(_t(good)).any()
    assert family.outside_support(_t(bad)).all() if bad else not family.restricts_support
    assert family is FAMILIES[{"normal": "real", "lognormal": "positive", "poisson": "count",
                               "bernoulli": "binary", "categorical": "categorical", "ordered": "ordinal"}[name]]


# ------------------------------------------------------------ exponential families
@pytest.mark.parametrize("name", EXPONENTIAL)
def test_canonical_form_and_its_parts(name):
    """``log p(x) = eta . T(x) - A(eta) + log h(x)``; ``E[T] = grad A``; ``from_natural`` inverts."""
    family = CASES[name]()
    cls, levels = type(family), _levels(name)
    x = _t(_values(name))
    if name == "categorical":
        eta = family.natural.unsqueeze(0)  # (1, 3, L): batch (3,) of one column each
        T = cls.statistics(x, levels)
        canonical = (eta * T).sum(-1) - cls.log_normalizer(eta) + cls.log_base_measure(x)
    else:
        eta = family.natural
        canonical = (eta * cls.statistics(x, levels)).sum(-1) - cls.log_normalizer(eta) + cls.log_base_measure(x)
    np.testing.assert_allclose(canonical.numpy(), family.log_prob(x).numpy(), rtol=1e-12, atol=1e-12)
    natural = family.natural.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(cls.log_normalizer(natural).sum(), natural)
    np.testing.assert_allclose(cls.mean_statistics(family.natural).numpy(), gradient.numpy(), rtol=1e-12)
    back = cls.from_natural(family.natural)
    np.testing.assert_allclose(back.log_prob(x).numpy(), family.log_prob(x).numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", EXPONENTIAL)
def test_log_normalizer_is_the_brute_force_sum(name):
    family = CASES[name]()
    cls = type(family)
    eta = family.natural.numpy()
    got = cls.log_normalizer(family.natural).numpy()
    for c in range(3):
        if name == "bernoulli":
            exact = special.logsumexp([0.0, eta[c, 0]])
        elif name == "categorical":
            exact = special.logsumexp(eta[c])
        elif name == "poisson":
            k = np.arange(400)
            exact = special.logsumexp(eta[c, 0] * k - special.gammaln(k + 1))
        else:
            a, b = eta[c]
            if name == "normal":
                f = lambda v: math.exp(a * v + b * v * v) / math.sqrt(2 * math.pi)  # noqa: E731
                exact = math.log(integrate.quad(f, -np.inf, np.inf, epsrel=1e-12)[0])
            else:
                f = lambda v: math.exp(a * math.log(v) + b * math.log(v) ** 2) / (v * math.sqrt(2 * math.pi))  # noqa: E731
                exact = math.log(integrate.quad(f, 0, np.inf, epsrel=1e-12, limit=200)[0])
        assert got[c] == pytest.approx(exact, rel=1e-9, abs=1e-10)


def _em_data(name, n=40, seed=3):
    rng = np.random.RandomState(seed)
    x = _values(name, n, seed)[:, :2]
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    weights = rng.dirichlet(np.ones(3), size=n)  # responsibilities (n, K = 3)
    return x, weights


PRIORS = {
    "normal": [{}, {"prior_count": 4.0, "prior_variance": 2.0}],
    "lognormal": [{}, {"prior_count": 3.0, "prior_variance": 0.5}],
    "poisson": [{}, {"prior_count": 2.0, "prior_mean": 1.5}],
    "bernoulli": [{}, {"pseudo_count": 0.7}],
    "categorical": [{}, {"pseudo_count": 0.4}],
}


def _log_prior(name, theta, prior):
    """The prior whose posterior mode the M-step claims, as a density in the natural parameters' space."""
    if not prior:
        return 0.0
    if name in ("normal", "lognormal"):  # flat on the mean, IG(c/2 - 1, c Psi / 2) on the variance
        c, psi = prior["prior_count"], prior["prior_variance"]
        return stats.invgamma.logpdf(theta[1], a=c / 2 - 1, scale=c * psi / 2)
    if name == "poisson":
        c, m = prior["prior_count"], prior["prior_mean"]
        return stats.gamma.logpdf(theta, a=c * m + 1, scale=1 / c)
    a = prior["pseudo_count"]
    if name == "bernoulli":
        return stats.beta.logpdf(theta, 1 + a, 1 + a)
    return stats.dirichlet.logpdf(theta, np.full(len(theta), 1 + a))


def _independent_fit(name, x, w, prior):
    """argmax over theta of sum_i w_i log p(x_i | theta) + log prior(theta), by scipy's optimiser."""
    x, w = x[~np.isnan(x)], w[~np.isnan(x)]
    if name in ("normal", "lognormal"):
        y = np.log(x) if name == "lognormal" else x

        def loss(z):
            mean, var = z[0], math.exp(z[1])
            return -(w @ stats.norm.logpdf(y, mean, math.sqrt(var)) + _log_prior(name, (mean, var), prior))

        z = optimize.minimize(loss, [y.mean(), math.log(y.var() + 0.1)], method="Nelder-Mead",
                              options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000}).x
        return np.array([z[0], z[1]])  # mean, log-variance
    if name == "poisson":
        loss = lambda z: -(w @ stats.poisson.logpmf(x, math.exp(z)) + _log_prior(name, math.exp(z), prior))  # noqa: E731
        return np.array([optimize.minimize_scalar(loss, bounds=(-10, 5), method="bounded",
                                                  options={"xatol": 1e-11}).x])
    if name == "bernoulli":
        loss = lambda z: -(w @ stats.bernoulli.logpmf(x, special.expit(z)) + _log_prior(name, special.expit(z), prior))  # noqa: E731
        return np.array([optimize.minimize_scalar(loss, bounds=(-20, 20), method="bounded",
                                                  options={"xatol": 1e-11}).x])

    def loss(z):
        p = special.softmax(np.append(z, 0.0))
        return -(w @ np.log(p[x.astype(int)]) + _log_prior(name, p, prior))

    z = optimize.minimize(loss, np.zeros(LEVELS - 1), method="Nelder-Mead",
                          options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 40000}).x
    return special.log_softmax(np.append(z, 0.0))


def _fitted_parameters(name, family):
    if name in ("normal", "lognormal"):
        return torch.stack([family.loc, family.log_var], -1).numpy()
    if name == "poisson":
        return family.log_rate.unsqueeze(-1).numpy()
    if name == "bernoulli":
        return family.logits.unsqueeze(-1).numpy()
    return torch.log_softmax(family.logits, -1).numpy()


@pytest.mark.parametrize("which", ["maximum-likelihood", "map"])
@pytest.mark.parametrize("name", EXPONENTIAL)
def test_m_step_is_the_weighted_optimum(name, which):
    x, w = _em_data(name)
    prior = PRIORS[name][which == "map"]
    cls = type(CASES[name]())
    stats_ = cls.weighted_statistics(_t(x), _t(w), n_levels=LEVELS)
    assert stats_.count.shape == (3, 2)
    np.testing.assert_allclose(stats_.count.numpy(), w.T @ ~np.isnan(x), rtol=1e-12)
    options = dict(prior)
    if "prior_variance" in options:
        options["prior_variance"] = _t(options["prior_variance"])
    fitted = _fitted_parameters(name, cls.m_step(stats_, **options))
    assert fitted.shape[:2] == (3, 2)  # batched over the K components and the C columns
    for k in range(3):
        for c in range(2):
            expected = _independent_fit(name, x[:, c], w[:, k], prior)
            np.testing.assert_allclose(fitted[k, c], expected, rtol=1e-5, atol=1e-6)


def test_statistics_of_chunks_add_up_and_variance_floor_adds():
    x, w = _em_data("normal", n=60)
    whole = Normal.weighted_statistics(_t(x), _t(w))
    parts = Normal.weighted_statistics(_t(x[:25]), _t(w[:25])) + Normal.weighted_statistics(_t(x[25:]), _t(w[25:]))
    np.testing.assert_allclose(parts.sums.numpy(), whole.sums.numpy(), rtol=1e-12)
    np.testing.assert_allclose(parts.count.numpy(), whole.count.numpy(), rtol=1e-12)
    plain, floored = Normal.m_step(whole), Normal.m_step(whole, min_variance=0.25)
    np.testing.assert_allclose(floored.variance.numpy(), plain.variance.numpy() + 0.25, rtol=1e-12)
    one = Normal.weighted_statistics(_t(x))  # no weights: one component of weight 1
    assert one.count.shape == (1, 2)
    np.testing.assert_allclose(Normal.m_step(one).loc.numpy()[0], np.nanmean(x, 0), rtol=1e-12)
    np.testing.assert_allclose(Normal.m_step(one).variance.numpy()[0], np.nanvar(x, 0), rtol=1e-10)


def test_components_broadcast_against_rows():
    """Parameters (K, C) and rows (n, 1, C): ``log_prob`` (n, K, C), as a mixture's E-step needs."""
    x, w = _em_data("normal")
    family = Normal.m_step(Normal.weighted_statistics(_t(x), _t(w)))
    log_p = family.log_prob(_t(x).unsqueeze(1))
    assert log_p.shape == (40, 3, 2)
    for k in range(3):
        expected = stats.norm.logpdf(x, family.loc[k].numpy(), np.sqrt(family.variance[k].numpy()))
        np.testing.assert_allclose(log_p[:, k].numpy(), np.nan_to_num(expected, nan=0.0), rtol=1e-12)
    chosen = family.select(torch.tensor([2, 0, 1]))
    np.testing.assert_array_equal(chosen.loc.numpy(), family.loc.numpy()[[2, 0, 1]])
    categorical = Categorical(_t(np.random.RandomState(0).normal(size=(3, 2, LEVELS))))  # (K, C, L)
    codes = _t(np.random.RandomState(1).randint(LEVELS, size=(5, 1, 2)))
    assert categorical.log_prob(codes).shape == (5, 3, 2)
    assert categorical.select(torch.tensor([1, 1, 0, 2, 2])).logits.shape == (5, 2, LEVELS)


# ----------------------------------------------------------------------- points
def test_points_of_mixtures():
    rng = np.random.RandomState(0)
    w = rng.dirichlet(np.ones(3), size=5)  # (n, S)
    loc, log_var = rng.normal(size=(5, 3, 2)), rng.normal(size=(5, 3, 2))
    mean = np.einsum("ns,nsc->nc", w, loc)
    np.testing.assert_allclose(Normal(_t(loc), _t(log_var)).point(_t(w)).numpy(), mean, rtol=1e-12)
    # log-normal: the geometric mean exp(E[log x]) of the mixture
    np.testing.assert_allclose(LogNormal(_t(loc), _t(log_var)).point(_t(w)).numpy(), np.exp(mean), rtol=1e-12)
    np.testing.assert_allclose(Poisson(_t(loc)).point(_t(w)).numpy(), np.einsum("ns,nsc->nc", w, np.exp(loc)),
                               rtol=1e-12)
    logits = rng.normal(size=(5, 3, 2, LEVELS)) * 2
    mixture = np.einsum("ns,nscl->ncl", w, special.softmax(logits, axis=-1))
    np.testing.assert_array_equal(Categorical(_t(logits)).point(_t(w)).numpy(), mixture.argmax(-1))
    median = (np.cumsum(mixture, -1) < 0.5).sum(-1)
    np.testing.assert_array_equal(Categorical(_t(logits), ordered=True).point(_t(w)).numpy(), median)
    p = np.einsum("ns,nsc->nc", w, special.expit(loc))
    np.testing.assert_array_equal(Bernoulli(_t(loc)).point(_t(w)).numpy(), (p > 0.5).astype(float))
    ordered = OrderedLogistic.from_unconstrained(_t(logits))
    probabilities = np.einsum("ns,nscl->ncl", w, ordered.level_log_probs().exp().numpy())
    np.testing.assert_array_equal(ordered.point(_t(w)).numpy(), (np.cumsum(probabilities, -1) < 0.5).sum(-1))


def test_level_point_mode_and_median():
    p = _t([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.0, 0.5], [0.3, 0.1, 0.1, 0.5], [0.4, 0.4, 0.1, 0.1]])
    assert level_point(p).tolist() == [3, 0, 3, 0]
    # the first level whose cumulative probability reaches 1/2 (0.5 exactly counts)
    assert level_point(p, ordered=True).tolist() == [2, 0, 2, 1]


def test_ordinal_thresholds_increase_for_any_raw_values():
    raw = _t([[3.0, -40.0, 0.0, 25.0], [-2.0, 5.0, -5.0, 1.0]])
    theta = ordinal_thresholds(raw)
    assert bool((theta.diff(dim=-1) > 0).all())
    family = OrderedLogistic(_t([0.5, -30.0]), theta)
    np.testing.assert_allclose(family.level_log_probs().exp().sum(-1).numpy(), 1.0, rtol=1e-12)
    assert torch.isfinite(family.level_log_probs()).all()


# ------------------------------------------------------------------ composition
KINDS = ["real", "positive", "count", "binary", "categorical", "ordinal"]
N_LEVELS = [0, 0, 0, 2, 3, LEVELS]


def _table_rows(n=6, seed=0):
    rng = np.random.RandomState(seed)
    x = np.column_stack([rng.normal(size=n) * 3 + 10, np.exp(rng.normal(size=n)), rng.poisson(2, n),
                         rng.randint(2, size=n), rng.randint(3, size=n), rng.randint(LEVELS, size=n)]).astype(float)
    x[1, [0, 4]] = np.nan
    x[4, [1, 2, 5]] = np.nan
    return x


def test_composition_sums_its_families_over_the_observed_cells():
    columns = ColumnFamilies(KINDS, N_LEVELS)
    assert [b.family for b in columns.blocks] == [Normal, Poisson, Bernoulli, Categorical, OrderedLogistic]
    assert columns.blocks[0].columns == [0, 1] and columns.location_scale == [0, 1] and columns.log_normal == [1]
    rng = np.random.RandomState(0)
    params = _t(rng.normal(size=(6, columns.n_params)))
    families = [Normal(params[:, 0:2], params[:, 0:2] * 0 - 0.3), Poisson(params[:, 2:3]),
                Bernoulli(params[:, 3:4]), Categorical(params[:, 4:7].unsqueeze(-2)),
                OrderedLogistic.from_unconstrained(params[:, 7:11].unsqueeze(-2))]
    x = _t(_table_rows())
    cells = columns.cell_log_prob(x, families).numpy()
    for family, block in zip(families, columns.blocks):
        np.testing.assert_allclose(cells[:, block.columns], family.log_prob(x[:, block.columns]).numpy(), rtol=1e-12)
    assert cells[1, 0] == 0 and cells[4, 5] == 0
    np.testing.assert_allclose(columns.log_prob(x, families).numpy(), cells.sum(1), rtol=1e-12)
    features = columns.features(x)
    assert features.shape == (6, columns.feature_width) == (6, 2 + 1 + 1 + 3 + LEVELS)
    assert not features[1, [0, 4, 5, 6]].any()  # the missing real cell and the missing category's one-hot
    np.testing.assert_allclose(features[0, 2].item(), math.log1p(x[0, 2].item()))


def test_unit_transform_and_its_jacobian_against_autograd():
    columns = ColumnFamilies(KINDS, N_LEVELS)
    loc, scale = _t([10.0, 0.2, 0, 0, 0, 0]), _t([3.0, 0.7, 1, 1, 1, 1])
    x = _t(_table_rows())
    u = columns.to_model_units(x, loc, scale)
    np.testing.assert_allclose(u[:, 1].numpy(), (np.log(x[:, 1].numpy()) - 0.2) / 0.7, rtol=1e-12)
    np.testing.assert_allclose(columns.to_user_units(u, loc, scale).numpy(), x.numpy(), rtol=1e-12)
    observed = ~torch.isnan(x)
    got = columns.log_jacobian(observed, scale, u, loc).numpy()
    for i in range(6):
        row = torch.nan_to_num(x[i], nan=1.0)
        jacobian = torch.autograd.functional.jacobian(lambda r: columns.to_model_units(r, loc, scale), row)
        diagonal = torch.diagonal(jacobian)[observed[i]]
        assert got[i] == pytest.approx(float(torch.log(diagonal.abs()).sum()), rel=1e-12)


def test_visible_statistics_round_trip_in_column_order():
    columns = ColumnFamilies(["real", "categorical", "binary", "ordinal"], [0, 3, 2, LEVELS],
                             families={"real": Bernoulli, "ordinal": Categorical}, order="column")
    assert [(b.family, b.columns) for b in columns.blocks] == [
        (Bernoulli, [0]), (Categorical, [1]), (Bernoulli, [2]), (Categorical, [3])]
    x = _t([[1, 2, 0, 3], [0, 0, 1, 1]])
    v = columns.statistics(x)
    assert v.tolist() == [[1, 0, 0, 1, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0, 1, 0, 0]]
    assert torch.equal(columns.values(v), x)
    assert columns.n_statistics == 9


def test_composition_points_and_level_probabilities_of_a_particle_mixture():
    columns = ColumnFamilies(KINDS, N_LEVELS)
    rng = np.random.RandomState(2)
    params = _t(rng.normal(size=(4, 5, columns.n_params)))  # (n, S, P)
    w = _t(rng.dirichlet(np.ones(5), size=4))
    families = [Normal(params[..., 0:2], params[..., 0:2] * 0), Poisson(params[..., 2:3]), Bernoulli(params[..., 3:4]),
                Categorical(params[..., 4:7].unsqueeze(-2)),
                OrderedLogistic.from_unconstrained(params[..., 7:11].unsqueeze(-2), )]
    point = columns.point(families, w).numpy()
    weights = w.numpy()
    np.testing.assert_allclose(point[:, :2], np.einsum("ns,nsc->nc", weights, params[..., 0:2].numpy()), rtol=1e-12)
    np.testing.assert_allclose(point[:, 2], np.einsum("ns,ns->n", weights, np.exp(params[..., 2].numpy())), rtol=1e-12)
    levels = columns.level_probabilities(families, w)
    assert sorted(levels) == [3, 4, 5]
    p_binary = np.einsum("ns,ns->n", weights, special.expit(params[..., 3].numpy()))
    np.testing.assert_allclose(levels[3].numpy(), np.column_stack([1 - p_binary, p_binary]), rtol=1e-12)
    np.testing.assert_array_equal(point[:, 3], levels[3].numpy().argmax(1))
    np.testing.assert_array_equal(point[:, 4], levels[4].numpy().argmax(1))
    np.testing.assert_array_equal(point[:, 5], (np.cumsum(levels[5].numpy(), 1) < 0.5).sum(1))
    for j in (3, 4, 5):
        np.testing.assert_allclose(levels[j].sum(-1).numpy(), 1.0, rtol=1e-12)
    draws = columns.sample(families, torch.Generator().manual_seed(0))
    assert draws.shape == (4, 5, 6)
    assert not columns.outside_support(columns.to_user_units(draws, torch.zeros(6, dtype=T), torch.ones(6, dtype=T))).any()


def test_every_exponential_family_is_one():
    for name in EXPONENTIAL:
        assert issubclass(type(CASES[name]()), ExponentialFamily)
    assert not issubclass(OrderedLogistic, ExponentialFamily)
    assert isinstance(Normal.weighted_statistics(_t([[1.0]])), Statistics)


# ------------------------------------------------ the mixture's positive columns with zeros
def _zero_lognormal():
    return ZeroInflatedLogNormal(_t([-1.0, 0.5, 2.0]), _t([0.5, -1.0, 2.0]), _t([-0.5, -1.5, 0.3]))


def test_zero_inflated_lognormal_is_a_point_mass_plus_a_lognormal():
    """log p(0) = log pi, log p(x) = log(1 - pi) + scipy's lognormal for x > 0; total mass one."""
    family = _zero_lognormal()
    pi = special.expit(family.zero_logits.numpy())
    x = np.exp(np.random.RandomState(0).normal(size=(7, 3)))
    x[[1, 4], [0, 2]] = 0.0
    expected = np.where(x == 0, np.log(pi), np.log1p(-pi) + stats.lognorm.logpdf(
        np.where(x == 0, 1.0, x), s=np.exp(0.5 * family.log_var.numpy()), scale=np.exp(family.loc.numpy())))
    np.testing.assert_allclose(family.log_prob(_t(x)).numpy(), expected, rtol=1e-12)
    x[2, 1] = np.nan
    assert family.log_prob(_t(x))[2, 1] == 0  # a missing cell adds 0
    for c in range(3):
        one = family.select(c)
        positive = integrate.quad(lambda v: math.exp(float(one.log_prob(_t(v)))), 0.0, np.inf,
                                  epsabs=1e-13, epsrel=1e-12, limit=200)[0]
        assert positive + pi[c] == pytest.approx(1.0, abs=1e-9)
    assert family.outside_support(_t([-1e-9, -2.0])).all()
    assert not family.outside_support(_t([0.0, 3.0, np.nan])).any()


def test_zero_inflated_lognormal_point_and_draws():
    family = _zero_lognormal()
    pi = special.expit(family.zero_logits.numpy())
    # one distribution: 0 when P(0) >= 1/2 (the third column), else the geometric mean
    np.testing.assert_allclose(family.point().numpy(), np.where(pi >= 0.5, 0.0, np.exp(family.loc.numpy())))
    # a mixture over 2 particles: P(0) = sum w pi; given x > 0 the weights w (1 - pi)
    two = ZeroInflatedLogNormal(_t([[-3.0, 0.0], [-1.0, 1.5]]), _t([[0.0, 1.0], [2.0, -1.0]]), _t(np.zeros((2, 2))))
    w = _t([[0.3, 0.7]])
    p0 = special.expit(np.array([[-3.0, 0.0], [-1.0, 1.5]]))
    weights = 0.3 * (1 - p0[0]), 0.7 * (1 - p0[1])
    geometric = np.exp((weights[0] * np.array([0.0, 1.0]) + weights[1] * np.array([2.0, -1.0]))
                       / (weights[0] + weights[1]))
    zero = 0.3 * p0[0] + 0.7 * p0[1]
    np.testing.assert_allclose(two.point(w).numpy()[0], np.where(zero >= 0.5, 0.0, geometric), rtol=1e-12)
    # draws: the share of zeros, then the moments of log x among the positive ones
    n = 200_000
    big = ZeroInflatedLogNormal(*(getattr(family, p).expand(n, 3) for p in family._parameters))
    x = big.sample(torch.Generator().manual_seed(0)).numpy()
    zeros = x == 0
    assert (np.abs(zeros.mean(0) - pi) < 5 * np.sqrt(pi * (1 - pi) / n)).all()
    logs = [np.log(x[~zeros[:, c], c]) for c in range(3)]
    variance = np.exp(family.log_var.numpy())
    se = np.sqrt(variance / np.array([len(v) for v in logs]))
    assert (np.abs(np.array([v.mean() for v in logs]) - family.loc.numpy()) < 5 * se).all()
    np.testing.assert_allclose([v.var() for v in logs], variance, rtol=0.05)
