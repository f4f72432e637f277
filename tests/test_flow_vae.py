"""FlowVAE: the VAE with a normalizing-flow posterior.

The sharp tests: with no flow steps it *is* the VAE (bit for bit); its log q_K agrees
with the log-determinant of autograd's Jacobian of the whole map eps -> z_K; on the
linear-Gaussian VAE of test_vae.py, whose marginal is known exactly, an IAF step
that is affine can turn a wrong Gaussian into the exact posterior (every importance
weight is then p(x), and transform is the exact posterior mean), and any other flow
gives a bound that stays below log p(x) and climbs towards it with more samples.
"""

from __future__ import annotations

import functools
import itertools
import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skgenerative import FlowVAE, VariationalAutoencoder
from skgenerative.flows import FLOW_KINDS, FlowChain
from skgenerative.nn import standard_normal_log_prob
from test_vae import QUICK, _fit, _gaussian_data, _linear_marginal, _linear_vae, _recomputed_validation_loss


def _perturb_flow(model, scale, seed=0):
    """Move every flow parameter away from its near-identity start."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.module_.flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.fixture(scope="module")
def curve_model():
    rng = np.random.RandomState(0)
    t = rng.uniform(-3, 3, size=(400, 1))
    X = np.hstack([t, np.sin(t), np.cos(t)]) + 0.05 * rng.normal(size=(400, 3))
    model = FlowVAE(
        n_components=2, flow="iaf", n_flows=2, hidden_layer_sizes=(32, 32),
        learning_rate=3e-3, max_iter=80, random_state=0, device="cpu",
    )
    return _fit(model, X[:300]), X


# ------------------------------------------------------------ the VAE inside
@pytest.mark.parametrize("flow", FLOW_KINDS)
def test_without_flow_steps_it_is_the_vae(flow):
    X = _gaussian_data()
    vae = _fit(VariationalAutoencoder(**QUICK), X)
    model = _fit(FlowVAE(flow=flow, n_flows=0, **QUICK), X)
    assert [h["train_loss"] for h in model.history_] == [h["train_loss"] for h in vae.history_]
    np.testing.assert_array_equal(model.score_samples(X), vae.score_samples(X))
    assert model.offset_ == vae.offset_
    np.testing.assert_array_equal(model.sample(7, random_state=1), vae.sample(7, random_state=1))
    np.testing.assert_array_equal(model.transform(X), vae.transform(X))
    Z = vae.transform(X[:5])
    np.testing.assert_array_equal(model.inverse_transform(Z), vae.inverse_transform(Z))


# --------------------------------------------------------- the flowed density
@pytest.mark.parametrize("flow", FLOW_KINDS)
def test_log_q_is_base_density_over_the_jacobian_of_the_whole_map(flow):
    """log q_K(z_K) = log N(eps) - log|det dz_K/deps|, with autograd's Jacobian."""
    q = 3
    X = _gaussian_data(60, 4)
    model = _fit(  # float64: the perturbed flow below is then far from the identity
        FlowVAE(**{**QUICK, "n_components": q, "flow": flow, "n_flows": 3, "max_iter": 2,
                   "dtype": "float64"}), X
    )
    _perturb_flow(model, 0.4)
    module = model.module_
    x = model._preprocess(torch.as_tensor(X[:4]))
    eps = torch.randn(4, 2, q, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        encoded = module.encode(x)
        z, log_q = model._posterior_sample(module, encoded, eps)
    for i, s in itertools.product(range(4), range(2)):
        sd, context = torch.exp(0.5 * encoded.log_var[i]), encoded.context[i : i + 1]

        def whole_map(e, i=i, sd=sd, context=context):
            return module.flow((encoded.mean[i] + sd * e).unsqueeze(0), context)[0][0]

        jacobian = torch.autograd.functional.jacobian(whole_map, eps[i, s])
        sign, logabsdet = torch.linalg.slogdet(jacobian)
        assert sign > 0
        expected = standard_normal_log_prob(eps[i, s]) - logabsdet
        assert float(log_q[i, s]) == pytest.approx(float(expected), abs=1e-10)
        torch.testing.assert_close(z[i, s], whole_map(eps[i, s]), rtol=0, atol=1e-12)
    # and the flow is far from the identity here: log q_K is not log q_0
    log_q0 = standard_normal_log_prob(eps) - 0.5 * encoded.log_var.sum(-1, keepdim=True)
    assert (log_q - log_q0).abs().min() > 1e-2


def test_an_affine_iaf_step_makes_a_wrong_gaussian_the_exact_posterior():
    # base: twice the exact posterior mean minus a shift m, twice its standard
    # deviation; an IAF step with constant gate 1/2 and shift m (zero output weights)
    # maps it to the exact posterior, so every importance weight is exactly p(x)
    cls = functools.partial(FlowVAE, flow="iaf", n_flows=1)
    model, X, exact = _linear_vae(encoder_var_factor=4.0, cls=cls)
    module, q = model.module_, model.n_components
    shift = np.array([0.7, -1.3])
    with torch.no_grad():
        exact_mean = module.encode(model._preprocess(torch.as_tensor(X))).mean.clone()
        module.encoder_mean.weight.mul_(2.0)
        module.encoder_mean.bias.mul_(2.0).sub_(torch.from_numpy(shift))
        output = module.flow.transforms[0].made.output
        output.weight.zero_()
        output.bias[:q] = torch.from_numpy(shift)
        output.bias[q:] = 0.0  # sigmoid(0) = 1/2
    for samples in (1, 7):
        model.set_params(n_importance_samples=samples)
        np.testing.assert_allclose(model.score_samples(X), exact, rtol=0, atol=1e-9)
    # transform is the mean of the flowed posterior: here the exact posterior mean,
    # not the base mean (which is about twice it)
    np.testing.assert_allclose(model.transform(X), exact_mean.numpy(), rtol=0, atol=1e-10)
    assert np.abs(module.encode(model._preprocess(torch.as_tensor(X))).mean.detach().numpy()
                  - exact_mean.numpy()).max() > 0.5
    # a gate of 0.6 instead: the proposal is wrong, the bound falls below p(x)
    with torch.no_grad():
        output.bias[q:] = math.log(0.6 / 0.4)
    model.set_params(n_importance_samples=1)
    assert np.mean(model.score_samples(X) - exact) < -0.05


@pytest.mark.parametrize("flow", FLOW_KINDS)
def test_bound_stays_below_the_exact_log_likelihood_and_climbs_with_samples(flow):
    cls = functools.partial(FlowVAE, flow=flow, n_flows=2)
    model, X, exact = _linear_vae(encoder_shift=0.4, encoder_var_factor=2.5, cls=cls)
    _perturb_flow(model, 0.1, seed=2)
    gaps = []
    for samples in (1, 10, 100, 1000):
        gap = model.set_params(n_importance_samples=samples).score_samples(X) - exact
        gaps.append(gap.mean())
        assert gap.mean() < 3 * gap.std() / math.sqrt(len(gap))  # never above p(x)
    assert gaps[0] < -0.3  # a wrong proposal costs at S = 1 (the ELBO) ...
    assert all(a < b for a, b in zip(gaps, gaps[1:])), gaps  # ... less with every 10x
    assert abs(gaps[-1]) < 0.02  # ... and almost nothing at S = 1000


def test_trained_bound_is_below_the_exact_marginal_and_tightens():
    # a linear decoder with a shared variance: p(x) is Gaussian, known exactly
    X = _gaussian_data(400, 4, seed=1)
    model = _fit(
        FlowVAE(
            n_components=2, flow="iaf", n_flows=2, hidden_layer_sizes=(),
            decoder_variance="shared", learning_rate=1e-2, max_iter=60,
            random_state=0, device="cpu",
        ),
        X,
    )
    exact = multivariate_normal(*_linear_marginal(model)).logpdf(X)
    means = []
    for samples in (1, 10, 100, 1000):
        gap = model.set_params(n_importance_samples=samples).score_samples(X) - exact
        means.append(gap.mean())
        assert gap.mean() < 3 * gap.std() / math.sqrt(len(gap))
    assert all(a < b + 1e-3 for a, b in zip(means, means[1:])), means
    assert means[-1] > -0.05


def test_bound_does_not_decrease_with_more_samples(curve_model):
    model, X = curve_model
    means = [model.set_params(n_importance_samples=s).score(X) for s in (1, 4, 32, 256)]
    model.set_params(n_importance_samples=50)
    assert all(a < b + 1e-3 for a, b in zip(means, means[1:])), means
    assert means[-1] > means[0] + 0.05


def test_bernoulli_mass_sums_to_one():
    # exp(score) = the mean importance weight, an unbiased estimate of p(x): over
    # all 16 states it estimates a total mass of exactly 1
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(300, 4)) < np.array([0.1, 0.5, 0.8, 0.3])).astype(float)
    X[:, 3] = X[:, 0]
    model = _fit(FlowVAE(**{**QUICK, "likelihood": "bernoulli", "flow": "planar", "n_flows": 4}), X)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=4)))
    mass = np.exp(model.set_params(n_importance_samples=4000).score_samples(states)).sum()
    assert mass == pytest.approx(1.0, abs=0.01)


# ------------------------------------------------------------------ training
def test_training_lowers_the_validation_loss_and_keeps_the_best_flow(curve_model):
    model, X = curve_model
    valid = [h["validation_loss"] for h in model.history_]
    assert valid[-1] < valid[0] - 1.0
    assert model.best_validation_loss_ == min(valid)
    # the restored weights, flow included, are the best epoch's
    assert _recomputed_validation_loss(model, X[:300]) == pytest.approx(
        model.best_validation_loss_, rel=1e-12
    )


def test_the_trained_flow_is_used_and_tightens_the_elbo(curve_model):
    model, X = curve_model
    module = model.module_
    x = model._preprocess(torch.as_tensor(X))
    eps = torch.randn(len(X), 64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        encoded = module.encode(x)
        z, _ = model._posterior_sample(module, encoded, eps)
        z0 = encoded.mean.unsqueeze(1) + torch.exp(0.5 * encoded.log_var).unsqueeze(1) * eps
        flowed = model._log_weights(module, x, eps).mean()
        trained_flow = module.flow
        try:  # the same encoder and decoder with the flow taken out
            module.flow = FlowChain("iaf", 0, 2, module.context_dim)
            base_only = model._log_weights(module, x, eps).mean()
        finally:
            module.flow = trained_flow
    # the flow moves the samples by a sizeable fraction of the posterior spread
    assert float((z - z0).norm(dim=-1).mean() / (z0 - encoded.mean.unsqueeze(1)).norm(dim=-1).mean()) > 0.2
    assert float(flowed) > float(base_only) + 0.5  # the encoder relies on its flow


@pytest.mark.parametrize("flow", FLOW_KINDS)
def test_every_flow_kind_fits_trains_its_flow_and_scores(flow):
    X = _gaussian_data()
    model = _fit(FlowVAE(**{**QUICK, "flow": flow, "n_flows": 3}), X)
    scores = model.score_samples(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    Z = model.transform(X)
    assert Z.shape == (len(X), 2) and np.isfinite(Z).all()
    assert model.inverse_transform(Z).shape == X.shape
    assert model.sample(5, random_state=0).shape == (5, X.shape[1])
    assert set(np.unique(model.predict_outlier(X))) == {-1, 1}
    chain = model.module_.flow
    assert (chain.kind, chain.n_flows, chain.context_dim) == (flow, 3, 16)
    # every flow parameter moved from its initial value (rebuilt from the same seed)
    fresh = model._build_module(X.shape[1], torch.Generator().manual_seed(model._seed(model._INIT)))
    for (name, trained), (_, start) in zip(chain.named_parameters(), fresh.flow.named_parameters()):
        assert not torch.equal(trained.detach(), start.to(trained.dtype)), name


def test_transform_is_the_mean_of_the_flowed_posterior(curve_model):
    model, X = curve_model
    module = model.module_
    x = model._preprocess(torch.as_tensor(X[:20]))
    eps = torch.randn(20, 20000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        encoded = module.encode(x)
        z, _ = model._posterior_sample(module, encoded, eps)
    mc_mean, mc_error = z.mean(1).numpy(), z.std(1).numpy() / math.sqrt(eps.shape[1])
    estimate = model.set_params(n_importance_samples=2000).transform(X[:20])
    # both estimates have Monte Carlo error; 2000 antithetic draws have less than
    # 2000 independent ones
    assert (np.abs(estimate - mc_mean) < 5 * mc_error * math.sqrt(1 + 20000 / 2000)).all()
    # the flowed mean is not the base mean mu(x) here
    assert np.abs(estimate - encoded.mean.numpy()).max() > 0.05
    model.set_params(n_importance_samples=50)
    # keyed: a row's estimate does not depend on its batch
    np.testing.assert_allclose(model.transform(X[5:6]), model.transform(X[:20])[5:6], rtol=0, atol=1e-12)


# --------------------------------------------------------------- plumbing
def test_same_seed_same_model_and_global_rng_untouched():
    X = _gaussian_data()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = _fit(FlowVAE(**QUICK), X)
    assert torch.equal(torch.get_rng_state(), state)
    b = _fit(FlowVAE(**QUICK), X)
    for p, q in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(p, q)
    c = FlowVAE(**{**QUICK, "random_state": 1, "max_iter": 1})
    c = _fit(c, X)
    first = next(iter(a.module_.flow.parameters()))
    assert not torch.equal(first, next(iter(c.module_.flow.parameters())))


def test_pickle_round_trip_keeps_the_flow():
    X = _gaussian_data()
    model = _fit(FlowVAE(**{**QUICK, "flow": "radial", "n_flows": 2}), X)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.module_.flow.kind == "radial" and len(restored.module_.flow) == 2
    np.testing.assert_array_equal(restored.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(restored.transform(X), model.transform(X))
    restored.partial_fit(X)  # training resumes, flow included
    assert restored.n_iter_ == model.n_iter_ + 1


@pytest.mark.parametrize(
    "params, match",
    [
        ({"flow": "maf"}, "'flow' parameter of FlowVAE must be"),
        ({"n_flows": -1}, "'n_flows' parameter of FlowVAE must be"),
        ({"n_flows": 1.5}, "'n_flows' parameter of FlowVAE must be"),
    ],
)
def test_bad_flow_parameters(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        FlowVAE(**{**QUICK, **params}).fit(_gaussian_data(30))


def test_parameters_are_the_vaes_plus_the_flow():
    vae_params = VariationalAutoencoder().get_params()
    params = FlowVAE().get_params()
    assert set(params) == set(vae_params) | {"flow", "n_flows"}
    assert {k: params[k] for k in vae_params} == vae_params
    assert clone(FlowVAE(flow="planar", n_flows=7)).get_params()["n_flows"] == 7


# ------------------------------------------------------------ missing values
def _mask(X, rate, seed=7):
    rng = np.random.RandomState(seed)
    Xm = X.copy()
    Xm[rng.rand(*X.shape) < rate] = np.nan
    return Xm


def test_without_flow_steps_it_is_the_miwae_vae():
    Xm = _mask(_gaussian_data(), 0.3)
    vae = _fit(VariationalAutoencoder(**QUICK), Xm)
    model = _fit(FlowVAE(n_flows=0, **QUICK), Xm)
    assert [h["train_loss"] for h in model.history_] == [h["train_loss"] for h in vae.history_]
    for method in ("score_samples", "impute", "transform"):
        np.testing.assert_array_equal(getattr(model, method)(Xm), getattr(vae, method)(Xm))
    np.testing.assert_array_equal(
        model.impute(Xm, n_draws=3, random_state=0), vae.impute(Xm, n_draws=3, random_state=0)
    )


@pytest.mark.parametrize("flow", FLOW_KINDS)
def test_every_flow_trains_on_incomplete_rows(flow):
    X = _gaussian_data(150, 5)
    Xm = _mask(X, 0.3, seed=2)
    Xm[0] = np.nan
    initial = FlowVAE(flow=flow, n_flows=2, **{**QUICK, "max_iter": 1})
    initial = _fit(initial, Xm)
    model = _fit(FlowVAE(flow=flow, n_flows=2, **QUICK), Xm)
    assert model._n_training_samples() == 20  # the MIWAE bound
    moved = [
        float((a - b).detach().abs().max())
        for a, b in zip(model.module_.flow.parameters(), initial.module_.flow.parameters())
    ]
    assert max(moved) > 1e-3  # the flow was trained
    observed = ~np.isnan(Xm)
    imputed = model.impute(Xm)
    assert np.array_equal(imputed[observed], Xm[observed]) and np.isfinite(imputed).all()
    scores = model.score_samples(Xm)
    assert scores[0] == 0.0 and np.isfinite(scores).all()
    perm = np.random.RandomState(0).permutation(len(Xm))
    for method in (model.score_samples, model.impute, model.transform):
        full = method(Xm)
        np.testing.assert_allclose(method(Xm[perm]), full[perm], rtol=1e-10, atol=1e-10)
        singles = np.concatenate([method(Xm[i : i + 1]) for i in range(4)])
        np.testing.assert_allclose(singles, full[:4], rtol=1e-10, atol=1e-10)
    # the encoder sees the indicators, and transform goes through them
    assert model.module_.encoder_missing.weight.abs().sum() > 0
    filled = np.where(observed, Xm, 0.0)
    assert not np.allclose(model.transform(Xm[1:]), model.transform(filled[1:]))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.impute(Xm), imputed)


def test_linear_flow_miwae_imputes_near_the_bayes_optimal_conditional_mean():
    rng = np.random.RandomState(0)
    W = rng.normal(size=(8, 3)) * 2
    X = rng.normal(size=(2000, 3)) @ W.T + 0.3 * rng.normal(size=(2000, 8)) + 1.0
    cov = W @ W.T + 0.09 * np.eye(8)
    Xm = _mask(X, 0.3, seed=1)
    model = FlowVAE(
        n_components=3, flow="iaf", n_flows=2, hidden_layer_sizes=(), decoder_variance="shared",
        learning_rate=1e-2, random_state=0, device="cpu",
    )
    model = _fit(model, Xm)
    missing = np.isnan(Xm)
    bayes = Xm.copy()
    for i in np.flatnonzero(missing.any(1)):
        o, m = ~missing[i], missing[i]
        gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T
        bayes[i, m] = 1.0 + gain @ (Xm[i, o] - 1.0)
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[missing] ** 2))  # noqa: E731
    mean_imputation = np.where(missing, np.nanmean(Xm, 0), Xm)
    assert rmse(model.impute(Xm)) < 1.2 * rmse(bayes)
    assert rmse(model.impute(Xm)) < 0.3 * rmse(mean_imputation)
