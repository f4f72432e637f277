"""VariationalAutoencoder, its training loop and the nn building blocks.

The sharp tests use a linear VAE, whose marginal is Gaussian: with the encoder set
to the exact posterior every importance weight equals p(x), so the score must be
the exact log-density for any number of samples; with a wrong encoder the bound
must climb towards it as samples grow and never pass it.
"""

from __future__ import annotations

import itertools
import math
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from scipy.special import expit, log_expit
from scipy.stats import multivariate_normal, norm
from sklearn.base import clone

from skgenerative import VariationalAutoencoder
from skgenerative._sources import TensorSource
from skgenerative.nn import ColumnLikelihood, make_linear, make_mlp, softplus
from skgenerative.vae import gaussian_posterior_sample, importance_weighted_bound

QUICK = dict(
    n_components=2,
    hidden_layer_sizes=(16,),
    learning_rate=1e-2,
    max_iter=30,
    kl_warmup_epochs=2,
    n_importance_samples=8,
    random_state=0,
    device="cpu",
)


def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def _gaussian_data(n=300, d=4, seed=0):
    rng = np.random.RandomState(seed)
    Z = rng.normal(size=(n, 2))
    return Z @ rng.normal(size=(2, d)) * 2 + 5 + 0.5 * rng.normal(size=(n, d))


# ---------------------------------------------------------------- building blocks
@pytest.mark.parametrize("conditional", [False, True])
def test_gaussian_head_is_a_floored_normal_log_density(conditional):
    torch.manual_seed(0)
    head = ColumnLikelihood.for_columns(["real"] * 3, min_variance=1e-3, conditional_variance=conditional).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    mean = torch.randn(5, 3, dtype=torch.float64)
    raw = torch.tensor([-50.0, 0.0, 2.0], dtype=torch.float64)  # -50: below the floor
    if conditional:
        params = torch.cat([mean, raw.expand(5, 3)], dim=1)
    else:
        head.raw_log_variance.data = raw
        params = mean
    floor = math.log(1e-3)
    log_var = floor + np.log1p(np.exp(raw.numpy() - floor))
    assert log_var[0] == pytest.approx(floor)  # floored, never below
    expected = norm.logpdf(x.numpy(), mean.numpy(), np.exp(0.5 * log_var)).sum(1)
    np.testing.assert_allclose(head.log_prob(x, params).detach().numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(head.point(params).detach().numpy(), mean.numpy())
    # importance-sample axis broadcasts: x (n, 1, D) against params (n, S, D)
    stacked = torch.stack([params, params], dim=1)
    out = head.log_prob(x.unsqueeze(1), stacked).detach().numpy()
    np.testing.assert_allclose(out, np.stack([expected, expected], 1), rtol=1e-12)


def test_bernoulli_head_sums_to_one_over_all_binary_vectors():
    head = ColumnLikelihood.for_columns(["real"] * 4, likelihood="bernoulli")
    logits = torch.tensor([[-2.0, 0.3, 1.5, 40.0]], dtype=torch.float64)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    log_p = head.log_prob(states, logits)
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-12)
    l = logits.numpy()[0]
    manual = (states.numpy() * log_expit(l) + (1 - states.numpy()) * log_expit(-l)).sum(1)
    np.testing.assert_allclose(log_p.numpy(), manual, rtol=1e-12)
    np.testing.assert_allclose(head.point(logits).numpy(), expit(logits.numpy()))


def test_posterior_sample_and_bound_formulas():
    rng = np.random.RandomState(0)
    mean, log_var = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    eps = rng.normal(size=(3, 5, 2))
    z, log_q = gaussian_posterior_sample(*(torch.from_numpy(a) for a in (mean, log_var, eps)))
    np.testing.assert_allclose(z.numpy(), mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps)
    for i, s in itertools.product(range(3), range(5)):
        cov = np.diag(np.exp(log_var[i]))
        expected = multivariate_normal(mean[i], cov).logpdf(z.numpy()[i, s])
        assert float(log_q[i, s]) == pytest.approx(expected, rel=1e-12)
    w = rng.normal(size=(4, 7)) * 30
    expected = np.log(np.mean(np.exp(w - w.max(1, keepdims=True)), 1)) + w.max(1)
    np.testing.assert_allclose(importance_weighted_bound(torch.from_numpy(w)).numpy(), expected)


def test_softplus_is_exact_where_torchs_cuts_off():
    x = torch.tensor([-800.0, -50.0, -1.0, 0.0, 1e-8, 3.0, 25.0, 30.0, 50.0, 800.0], dtype=torch.float64)
    reference = torch.logaddexp(x, torch.zeros_like(x))  # log(e^x + e^0), exact to rounding
    np.testing.assert_allclose(softplus(x).numpy(), reference.numpy(), rtol=2e-16, atol=0)
    # torch's drops e^-x above 20; the exact value keeps it (e^-30 > one float64 step at 30)
    assert float(torch.nn.functional.softplus(x[7:8])) == 30.0 < float(softplus(x[7:8]))
    assert float(softplus(torch.tensor([-800.0], dtype=torch.float64))) == 0.0


def test_mlp_initialisation_uses_only_the_given_generator():
    state = torch.get_rng_state()
    a = make_mlp(3, [5, 4], 2, "elu", torch.Generator().manual_seed(1))
    b = make_mlp(3, [5, 4], 2, "elu", torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)  # global generator untouched
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert [m.out_features for m in a if isinstance(m, torch.nn.Linear)] == [5, 4, 2]


# ------------------------------------------------------------- linear-Gaussian VAE
def _linear_vae(encoder_shift=0.0, encoder_var_factor=1.0, seed=0, cls=VariationalAutoencoder):
    """A fitted linear VAE whose weights are then set to a known PPCA.

    Decoder ``x_s = W z + b + N(0, sigma^2 I)`` on the standardised scale with
    orthogonal columns of ``W``, so the exact posterior is diagonal with constant
    variance: a linear encoder with a constant log-variance represents it exactly.
    """
    rng = np.random.RandomState(seed)
    d, q, sigma2 = 5, 2, 0.3
    X = _gaussian_data(200, d, seed)
    vae = _fit(
        cls(
            n_components=q, hidden_layer_sizes=(), decoder_variance="shared",
            max_iter=1, early_stopping=False, random_state=seed, device="cpu",
        ),
        X,
    )
    W = np.linalg.qr(rng.normal(size=(d, q)))[0] * np.array([2.0, 1.2])
    b = 0.3 * rng.normal(size=d)
    post_var = 1.0 / (1.0 + (W**2).sum(0) / sigma2)  # diag of (I + W^T W / s2)^-1
    gain = post_var[:, None] * W.T / sigma2  # E[z | x_s] = gain (x_s - b)
    m = vae.module_
    with torch.no_grad():
        m.decoder[0].weight.copy_(torch.from_numpy(W))
        m.decoder[0].bias.copy_(torch.from_numpy(b))
        m.encoder_mean.weight.copy_(torch.from_numpy(gain))
        m.encoder_mean.bias.copy_(torch.from_numpy(-gain @ b + encoder_shift))
        m.encoder_log_var.weight.zero_()
        m.encoder_log_var.bias.copy_(torch.from_numpy(np.log(post_var * encoder_var_factor)))
        floor = m.likelihood.log_min_variance
        raw = floor + np.log(np.expm1(np.log(sigma2) - floor))  # inverse softplus
        m.likelihood.raw_log_variance.fill_(raw)
    # the exact marginal, in the units of X
    scale = vae.scale_
    cov = (W @ W.T + sigma2 * np.eye(d)) * np.outer(scale, scale)
    exact = multivariate_normal(vae.mean_ + scale * b, cov).logpdf(X)
    return vae, X, exact


def _linear_marginal(vae):
    """Mean and covariance, in the units of X, of a VAE with a linear decoder."""
    m = vae.module_
    W = m.decoder[0].weight.detach().numpy()
    b = m.decoder[0].bias.detach().numpy()
    log_var = m.likelihood.families(torch.zeros(W.shape[0], dtype=torch.float64))[0].log_var
    scale = vae.scale_
    cov = (W @ W.T + np.diag(np.exp(log_var.detach().numpy()))) * np.outer(scale, scale)
    return vae.mean_ + scale * b, cov


@pytest.mark.parametrize("samples", [1, 7])
def test_exact_posterior_gives_the_exact_log_likelihood(samples):
    vae, X, exact = _linear_vae()
    vae.set_params(n_importance_samples=samples)
    np.testing.assert_allclose(vae.score_samples(X), exact, rtol=0, atol=1e-9)


def test_bound_approaches_the_exact_log_likelihood_from_below():
    vae, X, exact = _linear_vae(encoder_shift=0.4, encoder_var_factor=2.5)
    gaps, errors = [], []
    for samples in (1, 10, 100, 1000):
        gap = vae.set_params(n_importance_samples=samples).score_samples(X) - exact
        gaps.append(gap.mean())
        errors.append(gap.std() / math.sqrt(len(gap)))
        # never above the exact value beyond Monte Carlo error
        assert gap.mean() < 3 * errors[-1]
    assert gaps[0] < -0.3  # a wrong posterior costs at S = 1 (the ELBO) ...
    assert all(a < b for a, b in zip(gaps, gaps[1:]))  # ... less with every 10x
    assert abs(gaps[-1]) < 0.02  # ... and almost nothing at S = 1000


def test_trained_linear_vae_bound_is_below_its_exact_marginal():
    X = _gaussian_data(400, 4, seed=1)
    vae = _fit(
        VariationalAutoencoder(
            n_components=2, hidden_layer_sizes=(), decoder_variance="shared",
            learning_rate=1e-2, max_iter=150, n_importance_samples=2000,
            random_state=0, device="cpu",
        ),
        X,
    )
    exact = multivariate_normal(*_linear_marginal(vae)).logpdf(X)
    gap = vae.score_samples(X) - exact
    error = gap.std() / math.sqrt(len(gap))
    assert -0.05 < gap.mean() < 3 * error  # a tight bound, not above beyond MC error
    # training found about the maximum-likelihood Gaussian (the sample covariance)
    best = multivariate_normal(X.mean(0), np.cov(X.T, bias=True)).logpdf(X).mean()
    assert exact.mean() == pytest.approx(best, abs=0.05)


class AffinePosteriorVAE(VariationalAutoencoder):
    """A flow posterior through the subclass hooks: ``z = z0 * exp(a(c)) + b(c)``.

    ``a`` and ``b`` are linear in the encoder's context ``c``; ``log q`` loses
    ``sum a`` (the log-determinant). What FlowVAE does, with the simplest flow.
    """

    def _build_module(self, n_features, generator):
        module = super()._build_module(n_features, generator)
        for name in ("flow_log_scale", "flow_shift"):
            setattr(module, name, make_linear(module.context_dim, module.n_latent, generator))
        return module

    def _posterior_sample(self, module, encoded, eps):
        z, log_q = super()._posterior_sample(module, encoded, eps)
        log_scale = module.flow_log_scale(encoded.context).unsqueeze(1)
        z = z * torch.exp(log_scale) + module.flow_shift(encoded.context).unsqueeze(1)
        return z, log_q - log_scale.sum(-1)


def test_subclass_posterior_hook_is_used_for_scores_and_training():
    # base posterior: half the exact mean plus 0.25, half the exact standard
    # deviation; the flow (x2, then -0.5) makes it the exact posterior again, so
    # every importance weight is exactly p(x)
    vae, X, exact = _linear_vae(encoder_shift=0.5, encoder_var_factor=0.25, cls=AffinePosteriorVAE)
    m = vae.module_
    with torch.no_grad():
        m.encoder_mean.weight.mul_(0.5)
        m.encoder_mean.bias.mul_(0.5)
        m.flow_log_scale.weight.zero_()
        m.flow_log_scale.bias.fill_(math.log(2.0))
        m.flow_shift.weight.zero_()
        m.flow_shift.bias.fill_(-0.5)
    vae.set_params(n_importance_samples=3)
    np.testing.assert_allclose(vae.score_samples(X), exact, rtol=0, atol=1e-9)
    # the loop trains the extra parameters like any others
    data = _gaussian_data()
    fitted = _fit(AffinePosteriorVAE(**QUICK), data)
    assert np.isfinite(fitted.score_samples(data)).all()
    assert fitted.module_.flow_shift.weight.abs().sum() > 0
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.score_samples(data), fitted.score_samples(data))


# -------------------------------------------------------------------- the bound
@pytest.fixture(scope="module")
def curve_vae():
    rng = np.random.RandomState(0)
    t = rng.uniform(-3, 3, size=(400, 1))
    X = np.hstack([t, np.sin(t), np.cos(t)]) + 0.05 * rng.normal(size=(400, 3))
    vae = VariationalAutoencoder(
        n_components=1, hidden_layer_sizes=(32, 32), learning_rate=3e-3,
        max_iter=120, random_state=0, device="cpu",
    )
    return _fit(vae, X[:300]), X


def test_bound_does_not_decrease_with_more_samples(curve_vae):
    vae, X = curve_vae
    means = [vae.set_params(n_importance_samples=s).score(X) for s in (1, 4, 32, 256)]
    vae.set_params(n_importance_samples=8)
    assert all(a < b + 1e-3 for a, b in zip(means, means[1:])), means


def _recomputed_validation_loss(model, X):
    """The held-out loss as the loop computed it: training dtype, the same split."""
    with model._training_phase():
        model._move_modules(torch.device("cpu"))
        data = model._training_data(torch.as_tensor(X)).to(model._dtype)
        _, held_out = model._split_validation(TensorSource(data))
        loss = model._validation_loss(held_out)
    model._move_modules(torch.device("cpu"))  # back to the evaluation dtype
    return loss


def test_training_lowers_the_validation_loss_and_keeps_the_best(curve_vae):
    vae, X = curve_vae
    valid = [h["validation_loss"] for h in vae.history_]
    assert valid[-1] < valid[0] - 1.0
    assert vae.best_validation_loss_ == min(valid)
    assert valid[vae.best_epoch_] == vae.best_validation_loss_
    # the weights kept are the best epoch's: recomputing its validation loss agrees
    assert _recomputed_validation_loss(vae, X[:300]) == pytest.approx(vae.best_validation_loss_, rel=1e-12)
    # and it beats a single Gaussian by a wide margin on this curve
    gauss = multivariate_normal(X[:300].mean(0), np.cov(X[:300].T)).logpdf(X[300:]).mean()
    assert vae.score(X[300:]) > gauss + 2.0


def test_gaussian_density_integrates_to_at_most_one():
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(-2, 0.5, 150), rng.normal(1.5, 1.0, 150)])[:, None] * 3
    vae = _fit(VariationalAutoencoder(**{**QUICK, "n_components": 1, "max_iter": 60}), X)
    grid = np.linspace(-25, 25, 4001)[:, None]
    density = np.exp(vae.set_params(n_importance_samples=200).score_samples(grid))
    mass = np.trapezoid(density[:, 0] if density.ndim > 1 else density, grid[:, 0])
    assert 0.95 < mass <= 1.0 + 1e-3


def test_bernoulli_mass_sums_to_at_most_one():
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(300, 4)) < np.array([0.1, 0.5, 0.8, 0.3])).astype(float)
    X[:, 3] = X[:, 0]  # a dependency the latent must carry
    vae = _fit(VariationalAutoencoder(**{**QUICK, "likelihood": "bernoulli"}), X)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=4)))
    mass = np.exp(vae.set_params(n_importance_samples=500).score_samples(states)).sum()
    assert 0.97 < mass <= 1.0 + 1e-3
    assert vae.mean_.tolist() == [0.0] * 4 and vae.scale_.tolist() == [1.0] * 4
    draws = vae.sample(4000, random_state=0)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(0), X.mean(0), atol=0.06)


def test_bernoulli_rejects_data_outside_the_unit_interval():
    X = np.random.RandomState(0).uniform(size=(20, 3))
    vae = _fit(VariationalAutoencoder(**{**QUICK, "likelihood": "bernoulli"}), X)  # [0, 1]: fine
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.score_samples(X * 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clone(vae).fit(X - 0.5)


# -------------------------------------------------------------- units and noise
def test_scores_are_in_the_units_of_x():
    X = _gaussian_data()
    a = _fit(VariationalAutoencoder(**QUICK), X)
    # scaling by a power of two standardises to the very same numbers: same network
    b = _fit(VariationalAutoencoder(**QUICK), 8.0 * X)
    np.testing.assert_array_equal(b.transform(8.0 * X), a.transform(X))
    # densities differ by the Jacobian (the noise, keyed on raw rows, differs)
    for est in (a, b):
        est.set_params(n_importance_samples=2000)
    shift = b.score(8.0 * X) - a.score(X)
    assert shift == pytest.approx(-X.shape[1] * math.log(8.0), abs=0.01)


def test_constant_feature_and_tiny_data():
    X = _gaussian_data(30)
    X[:, 1] = 7.0
    vae = _fit(VariationalAutoencoder(**QUICK), X)
    assert vae.scale_[1] == 1.0 and vae.mean_[1] == 7.0
    assert np.isfinite(vae.score_samples(X)).all()
    # too few rows for a validation split: trains every epoch, no early stopping
    tiny = _fit(VariationalAutoencoder(**{**QUICK, "max_iter": 4}), X[:5])
    assert tiny.n_iter_ == 4 and tiny.best_epoch_ is None
    assert all(math.isnan(h["validation_loss"]) for h in tiny.history_)


def test_score_noise_is_keyed_on_rows_and_samples_read_at_scoring_time():
    X = _gaussian_data()
    vae = _fit(VariationalAutoencoder(**QUICK), X)
    full = vae.score_samples(X)
    np.testing.assert_array_equal(vae.score_samples(X[::-1])[::-1], full)
    more = vae.set_params(n_importance_samples=64).score_samples(X)
    assert not np.allclose(more, full)  # no refit needed to change S
    assert more.mean() > full.mean()
    # a refit with another random_state draws other noise
    other = _fit(clone(vae).set_params(random_state=1), X)
    assert other.noise_seed_ != vae.noise_seed_


# ------------------------------------------------------------------ the loop
def test_kl_warmup_and_history():
    X = _gaussian_data()
    vae = _fit(
        VariationalAutoencoder(**{**QUICK, "kl_warmup_epochs": 3, "max_iter": 6, "early_stopping": False}),
        X,
    )
    assert [h["kl_weight"] for h in vae.history_] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [h["epoch"] for h in vae.history_] == list(range(6))
    assert vae.n_iter_ == 6 and vae.best_epoch_ is None


def test_early_stopping_patience_counts_after_the_warmup():
    X = _gaussian_data(120)
    vae = _fit(
        VariationalAutoencoder(
            **{**QUICK, "hidden_layer_sizes": (128, 128), "learning_rate": 3e-2,
               "max_iter": 300, "n_iter_no_change": 4, "kl_warmup_epochs": 5}
        ),
        X,
    )
    assert vae.n_iter_ < 300
    # epochs 0-4 are the warm-up (kl weight below 1): they may set the best but use no
    # patience, so training stops 4 counted epochs after the best or after epoch 4
    assert vae.n_iter_ - 1 - max(vae.best_epoch_, 4) == 4


def test_same_seed_same_model_and_global_rng_untouched():
    X = _gaussian_data()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = _fit(VariationalAutoencoder(**QUICK), X)
    assert torch.equal(torch.get_rng_state(), state)
    b = _fit(VariationalAutoencoder(**QUICK), X)
    assert [h["train_loss"] for h in a.history_] == [h["train_loss"] for h in b.history_]
    for p, q in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(p, q)


def test_partial_fit_continues_and_survives_pickling():
    X = _gaussian_data()
    a = VariationalAutoencoder(**QUICK)
    for _ in range(3):
        a.partial_fit(X)
    assert a.n_iter_ == 3 and len(a.history_) == 3
    losses = [h["train_loss"] for h in a.history_]
    assert losses[-1] < losses[0]
    b = pickle.loads(pickle.dumps(a))  # optimizer state travels with the model
    a.partial_fit(X)
    b.partial_fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    # fit then partial_fit keeps training the same network
    c = _fit(VariationalAutoencoder(**QUICK), X)
    module = c.module_
    assert c.best_epoch_ is not None
    c.partial_fit(X)
    assert c.module_ is module and c.n_iter_ == len(c.history_)
    assert c.best_epoch_ is None  # the weights are now the last epoch's
    with pytest.raises(ValueError, match="features"):
        c.partial_fit(X[:, :2])


def test_non_finite_loss_stops_training_with_advice():
    class Diverging(VariationalAutoencoder):
        def _batch_loss(self, module, batch, generator):
            loss = super()._batch_loss(module, batch, generator)
            return loss * float("nan") if self.n_iter_ >= 2 else loss

    with pytest.raises(FloatingPointError, match="learning_rate"):
        Diverging(**QUICK).fit(_gaussian_data())


def test_verbose_prints_one_line_per_epoch_at_2_and_only_the_summary_at_1(capsys):
    _fit(VariationalAutoencoder(**{**QUICK, "max_iter": 3, "verbose": 2}), _gaussian_data(60))
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if "] epoch " in line]
    assert len(lines) == 3 and "validation loss" in lines[0]
    summary = [line for line in out if " done: 3 epochs in " in line]
    assert len(summary) == 1 and "best epoch" in summary[0] and "reached max_iter" in summary[0]
    _fit(VariationalAutoencoder(**{**QUICK, "max_iter": 3, "verbose": 1}), _gaussian_data(60))
    out = capsys.readouterr().out.splitlines()
    untimed = lambda line: re.sub(r" in \d+\.\d+s;", "", line)  # noqa: E731
    assert len(out) == 1 and untimed(out[0]) == untimed(summary[0])  # the same fit, one line


def test_bad_hidden_layer_sizes():
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        VariationalAutoencoder(**{**QUICK, "hidden_layer_sizes": (8, 0)}).fit(_gaussian_data(30))


# ------------------------------------------------------ encoder, decoder, samples
def test_transform_decode_and_sample_statistics():
    rng = np.random.RandomState(0)
    X = rng.multivariate_normal([1.0, -2.0, 0.5], [[4.0, 1.8, 0.0], [1.8, 1.0, 0.2], [0.0, 0.2, 0.3]], size=1500)
    vae = _fit(
        VariationalAutoencoder(
            n_components=2, hidden_layer_sizes=(32,), learning_rate=3e-3,
            max_iter=100, random_state=0, device="cpu",
        ),
        X,
    )
    Z = vae.transform(X)
    manual = vae.module_.encode(torch.as_tensor((X - vae.mean_) / vae.scale_)).mean
    np.testing.assert_allclose(Z, manual.detach().numpy(), rtol=1e-12)
    # the decoder mean of the encoder mean reconstructs most of the variance
    residual = X - vae.inverse_transform(Z)
    assert (residual.var(0) / X.var(0)).mean() < 0.3
    draws = vae.sample(8000, random_state=0)
    np.testing.assert_allclose(draws.mean(0), X.mean(0), atol=0.1)
    np.testing.assert_allclose(np.cov(draws.T), np.cov(X.T), atol=0.25)
    np.testing.assert_array_equal(draws, vae.sample(8000, random_state=0))
