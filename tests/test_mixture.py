"""GaussianMixtureDensity against scikit-learn's numbers and exact identities."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from skgenerative import DiscreteDataWarning, GaussianMixtureDensity
from skgenerative.mixture import (
    compute_precision_cholesky,
    estimate_gaussian_parameters,
    estimate_log_gaussian_prob,
)

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _data(seed=0, n=400):
    rng = np.random.RandomState(seed)
    a = rng.randn(n // 2, 4) @ rng.randn(4, 4) + 5
    b = rng.randn(n - n // 2, 4) * [0.5, 2, 1, 0.3] - 3
    X = np.vstack([a, b])
    return X[rng.permutation(n)]


def _matched_pair(covariance_type, X, **kwargs):
    """sklearn and ours started from the same parameters."""
    start = GaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start.fit(X)
    init = dict(
        weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_
    )
    ref = GaussianMixture(3, covariance_type=covariance_type, **init, **kwargs)
    # float64 EM throughout, as scikit-learn's (dtype="auto" would fit in float32)
    ours = GaussianMixtureDensity(3, covariance_type=covariance_type, dtype="float64", **init, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X)
        ours.fit(X)
    return ref, ours


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_sklearn_from_same_start(covariance_type):
    X = _data()
    ref, ours = _matched_pair(covariance_type, X, max_iter=40, tol=0)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-6)
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-6)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.precisions_, ref.precisions_, rtol=1e-6, atol=1e-9)
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-9)
    assert ours.n_iter_ == ref.n_iter_ == 40
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-9)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_convergence_with_tol_matches_sklearn(covariance_type):
    X = _data(1)
    ref, ours = _matched_pair(covariance_type, X, max_iter=500, tol=1e-6)
    assert ours.converged_ and ref.converged_
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-6)


def test_float32_close_to_float64():
    X = _data()
    ref, _ = _matched_pair("full", X, max_iter=30, tol=0)
    init = dict(weights_init=ref.weights_init, means_init=ref.means_init, precisions_init=ref.precisions_init)
    with pytest.warns(ConvergenceWarning):  # tol=0: always the 30 iterations asked
        ours = GaussianMixtureDensity(3, max_iter=30, tol=0, dtype="float32", **init).fit(X)
    assert abs(ours.score(X) - ref.score(X)) < 1e-4


def test_chunked_em_equals_one_chunk():
    X = _data()
    est = GaussianMixtureDensity(3, max_iter=20, tol=0, random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = est.fit(X).score_samples(X)
        with config_context(working_memory=0.0005):  # chunks of a few rows
            chunked = clone(est).fit(X)
    np.testing.assert_allclose(chunked.score_samples(X), full, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_prob_against_scipy(covariance_type):
    """Each component's log-density equals scipy's multivariate normal."""
    X = _data()
    est = GaussianMixtureDensity(3, covariance_type=covariance_type, random_state=0).fit(X)
    cov = est.covariances_
    d = X.shape[1]
    full = {
        "full": lambda k: cov[k],
        "tied": lambda k: cov,
        "diag": lambda k: np.diag(cov[k]),
        "spherical": lambda k: cov[k] * np.eye(d),
    }[covariance_type]
    log_comp = np.column_stack(
        [stats.multivariate_normal(est.means_[k], full(k)).logpdf(X) for k in range(3)]
    )
    expected = np.log(np.exp(log_comp) @ est.weights_)
    np.testing.assert_allclose(est.score_samples(X), expected, rtol=1e-9)
    # and through the module-level function
    got = estimate_log_gaussian_prob(
        torch.as_tensor(X), torch.as_tensor(est.means_), torch.as_tensor(est.precisions_cholesky_), covariance_type
    ).numpy()
    np.testing.assert_allclose(got, log_comp, rtol=1e-9)


def test_estimate_gaussian_parameters_is_the_weighted_mle():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 3)
    resp = rng.dirichlet(np.ones(2), size=50)
    nk, means, cov = estimate_gaussian_parameters(torch.as_tensor(X), torch.as_tensor(resp), 0.0, "full")
    for k in range(2):
        w = resp[:, k]
        mu = w @ X / w.sum()
        expected = (w[:, None] * (X - mu)).T @ (X - mu) / w.sum()
        np.testing.assert_allclose(means[k].numpy(), mu, rtol=1e-12)
        np.testing.assert_allclose(cov[k].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_precision_cholesky_inverts_covariance():
    rng = np.random.RandomState(0)
    A = rng.randn(2, 4, 4)
    cov = torch.as_tensor(A @ A.transpose(0, 2, 1) + np.eye(4))
    P = compute_precision_cholesky(cov, "full")
    np.testing.assert_allclose((P @ P.transpose(1, 2) @ cov).numpy(), np.broadcast_to(np.eye(4), (2, 4, 4)), atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_density_integrates_to_one_in_1d_and_2d(covariance_type):
    rng = np.random.RandomState(0)
    X1 = np.concatenate([rng.normal(-2, 0.5, 200), rng.normal(1, 1.0, 200)])[:, None]
    est = GaussianMixtureDensity(2, covariance_type=covariance_type, random_state=0).fit(X1)
    grid = np.linspace(-10, 10, 20001)[:, None]
    assert np.trapezoid(np.exp(est.score_samples(grid)), grid[:, 0]) == pytest.approx(1.0, abs=1e-6)

    X2 = np.vstack([rng.normal([-2, 0], [0.7, 0.4], (200, 2)), rng.normal([1, 1], 0.8, (200, 2))])
    est = GaussianMixtureDensity(2, covariance_type=covariance_type, random_state=0).fit(X2)
    g = np.linspace(-8, 8, 801)
    xx, yy = np.meshgrid(g, g)
    density = np.exp(est.score_samples(np.column_stack([xx.ravel(), yy.ravel()]))).reshape(xx.shape)
    step = g[1] - g[0]
    assert density.sum() * step * step == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_moments_match_the_model(covariance_type):
    X = _data()
    est = GaussianMixtureDensity(3, covariance_type=covariance_type, random_state=0).fit(X)
    S = est.sample(200_000, random_state=1, bounds=None)  # the model's draws, not truncated
    cov = est.covariances_
    d = X.shape[1]
    comp_cov = {
        "full": lambda k: cov[k],
        "tied": lambda k: cov,
        "diag": lambda k: np.diag(cov[k]),
        "spherical": lambda k: cov[k] * np.eye(d),
    }[covariance_type]
    mean = est.weights_ @ est.means_
    second = sum(est.weights_[k] * (comp_cov(k) + np.outer(est.means_[k], est.means_[k])) for k in range(3))
    covariance = second - np.outer(mean, mean)
    scale = np.sqrt(np.diag(covariance))
    np.testing.assert_allclose(S.mean(0), mean, atol=0.02 * scale.max())
    np.testing.assert_allclose(np.cov(S.T), covariance, atol=0.03 * np.outer(scale, scale).max())
    # for x drawn from the model, E_x[p(k | x)] = w_k exactly
    np.testing.assert_allclose(est.predict_proba(S).mean(0), est.weights_, atol=0.005)


def test_sample_is_not_grouped_by_component():
    X = _data()
    est = GaussianMixtureDensity(3, random_state=0).fit(X)
    labels = est.predict(est.sample(5000, random_state=0))
    switches = np.mean(labels[1:] != labels[:-1])
    expected = 1 - np.sum(est.weights_**2)  # independent draws in random order
    assert switches == pytest.approx(expected, abs=0.03)


def test_init_params_all_find_separated_clusters():
    rng = np.random.RandomState(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    X = np.vstack([c + rng.randn(100, 2) for c in centers])
    # random responsibilities start every component at the global mean, where the
    # bound moves slowly: with tol=1e-3 EM stops there (scikit-learn's does too)
    for init in ["kmeans", "k-means++", "random", "random_from_data"]:
        est = GaussianMixtureDensity(3, init_params=init, random_state=0, n_init=3, tol=1e-6).fit(X)
        found = est.means_[np.argsort(est.means_[:, 0] + 2 * est.means_[:, 1])]
        np.testing.assert_allclose(found, centers[[0, 1, 2]], atol=0.4, err_msg=init)


def test_warm_start_continues_the_same_run():
    X = _data()
    start = dict(random_state=0, tol=0, dtype="float64")  # float32 would resume to its rounding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ten = GaussianMixtureDensity(3, max_iter=10, **start).fit(X)
        warm = GaussianMixtureDensity(3, max_iter=5, warm_start=True, **start).fit(X)
        warm.fit(X)
    np.testing.assert_allclose(warm.score_samples(X), ten.score_samples(X), rtol=1e-8)


def test_convergence_warning_and_attributes():
    X = _data()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est = GaussianMixtureDensity(3, max_iter=2, tol=0, random_state=0).fit(X)
    assert not est.converged_ and est.n_iter_ == 2 and len(est.lower_bounds_) == 2
    est = GaussianMixtureDensity(3, random_state=0).fit(X)
    assert est.converged_
    np.testing.assert_allclose(est.predict_proba(X).sum(1), 1.0)
    np.testing.assert_array_equal(est.predict(X), est.predict_proba(X).argmax(1))
    np.testing.assert_allclose(est.transform(X), est.predict_proba(X))


def test_max_iter_zero_keeps_the_initial_parameters():
    X = _data()
    means = X[:3]
    est = GaussianMixtureDensity(3, max_iter=0, means_init=means, random_state=0).fit(X)
    np.testing.assert_allclose(est.means_, means)
    assert est.n_iter_ == 0 and np.isfinite(est.score_samples(X)).all()
    np.testing.assert_allclose(
        est.precisions_ @ est.covariances_, np.broadcast_to(np.eye(4), (3, 4, 4)), atol=1e-8
    )


def test_singular_covariance_points_to_reg_covar():
    X = np.repeat(np.array([[0.0, 1.0], [2.0, 3.0]]), 10, axis=0)  # two values a column: warned
    with pytest.warns(DiscreteDataWarning), pytest.raises(ValueError, match="reg_covar"):
        # float32 rounding can hide the singularity; the covariance floor (#21) would lift it
        GaussianMixtureDensity(2, reg_covar=0.0, covariance_floor=0.0, random_state=0, dtype="float64").fit(X)
    # the floor alone (relative to the columns' variances) keeps the fit defined
    with pytest.warns(DiscreteDataWarning):
        floored = GaussianMixtureDensity(2, reg_covar=0.0, random_state=0, dtype="float64").fit(X)
    scale = np.sqrt(np.var(X, axis=0))
    relative = floored.covariances_ / np.outer(scale, scale)
    np.testing.assert_allclose(np.linalg.eigvalsh(relative).min(axis=-1), 1e-6, rtol=1e-6)
    # the default regularisation copes with collapsed components
    with pytest.warns(DiscreteDataWarning):
        est = GaussianMixtureDensity(2, random_state=0).fit(X)
    assert np.isfinite(est.score_samples(X)).all()


def test_bad_parameters_and_data():
    X = _data()
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixtureDensity(5).fit(X[:3])
    with pytest.raises(ValueError, match="normalized"):
        GaussianMixtureDensity(2, weights_init=[0.5, 0.6]).fit(X)
    with pytest.raises(ValueError, match="shape"):
        GaussianMixtureDensity(2, means_init=np.zeros((3, 4))).fit(X)
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixtureDensity(2, precisions_init=np.arange(32.0).reshape(2, 4, 4)).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixtureDensity(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="init_params"):
        GaussianMixtureDensity(2, init_params="kmeans+++").fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_covariance_prior_is_the_map_shrinkage(covariance_type):
    """Sigma_k = (n_k S_k + c Psi) / (n_k + c), S_k the ML covariance."""
    from skgenerative.mixture import gaussian_parameters_from_statistics, gaussian_statistics

    rng = np.random.RandomState(0)
    X = torch.as_tensor(rng.randn(60, 3) * [1.0, 2.0, 0.5])
    resp = torch.as_tensor(rng.dirichlet(np.ones(2), size=60))
    psi = torch.as_tensor([0.7, 1.3, 2.0])
    stats_ = gaussian_statistics(X, resp, covariance_type)
    nk, _, ml = gaussian_parameters_from_statistics(*stats_, 0.0, covariance_type)
    _, _, map_ = gaussian_parameters_from_statistics(*stats_, 0.0, covariance_type, 4.0, psi)
    n = nk.numpy()
    if covariance_type == "full":
        expected = [(n[k] * ml[k].numpy() + 4.0 * np.diag(psi.numpy())) / (n[k] + 4.0) for k in range(2)]
    elif covariance_type == "tied":
        expected = (n.sum() * ml.numpy() + 4.0 * np.diag(psi.numpy())) / (n.sum() + 4.0)
    elif covariance_type == "diag":
        expected = [(n[k] * ml[k].numpy() + 4.0 * psi.numpy()) / (n[k] + 4.0) for k in range(2)]
    else:
        _, _, ml_diag = gaussian_parameters_from_statistics(*gaussian_statistics(X, resp, "diag"), 0.0, "diag")
        expected = [((n[k] * ml_diag[k].numpy() + 4.0 * psi.numpy()) / (n[k] + 4.0)).mean() for k in range(2)]
    np.testing.assert_allclose(map_.numpy(), np.array(expected), rtol=1e-10)


def test_covariance_prior_stops_a_component_collapsing_on_an_outlier():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(size=(200, 3)), [[8.0, 8.0, 8.0]]])
    plain = GaussianMixtureDensity(2, covariance_type="diag", random_state=0).fit(X)
    # maximum likelihood: one component sits on the outlier with variance reg_covar
    assert plain.covariances_.min() < 1e-4
    assert plain.score_samples(X[-1:])[0] > np.median(plain.score_samples(X))
    shrunk = GaussianMixtureDensity(2, covariance_type="diag", covariance_prior=10, random_state=0).fit(X)
    # with 10 pseudo-observations the component keeps about the data's spread, so the
    # outlier's density drops from the highest of all to the bottom 2 percent
    assert shrunk.covariances_.min() > 0.5
    assert shrunk.score_samples(X[-1:])[0] < np.quantile(shrunk.score_samples(X), 0.02)


# ------------------------------------------------- fits that never fail for lack of data
def test_covariance_floor_lifts_only_the_covariances_below_it():
    from skgenerative.mixture import floor_covariances

    rng = np.random.RandomState(0)
    variances = torch.as_tensor([4.0, 0.25, 9.0], dtype=torch.float64)
    A = torch.as_tensor(rng.normal(size=(3, 3, 3)))
    well = A @ A.transpose(1, 2) + torch.eye(3)
    collapsed = torch.zeros(3, 3, dtype=torch.float64)
    collapsed[0, 0] = 1e-9  # rows on a point in two columns
    cov = torch.stack([well[0], collapsed, well[1]])
    floored = floor_covariances(cov, "full", variances, 1e-6)
    assert torch.equal(floored[[0, 2]], cov[[0, 2]])  # bit for bit
    scale = variances.sqrt()
    smallest = torch.linalg.eigvalsh(floored[1] / torch.outer(scale, scale))[0]
    assert float(smallest) == pytest.approx(1e-6, rel=1e-6)
    assert torch.equal(floor_covariances(cov, "full", variances, 0.0), cov)
    diag = torch.as_tensor([[1.0, 1e-12, 2.0], [3.0, 0.2, 0.1]], dtype=torch.float64)
    np.testing.assert_array_equal(floor_covariances(diag, "diag", variances, 1e-6).numpy(),
                                  [[1.0, 0.25e-6, 2.0], [3.0, 0.2, 0.1]])
    spherical = torch.as_tensor([1e-15, 2.0], dtype=torch.float64)
    np.testing.assert_allclose(floor_covariances(spherical, "spherical", variances, 1e-6).numpy(),
                               [1e-6 * variances.mean().item(), 2.0])


def credit_card_table(n=1500, seed=0):
    """24 columns like the credit-card default table: amounts with many zeros (and all
    zero for cards never used), payment columns mostly zero, status codes constant
    within groups, 5% duplicated rows."""
    rng = np.random.RandomState(seed)
    limit = np.round(np.exp(rng.normal(11.5, 0.8, n)), -4)
    status = rng.choice([-2, -1, 0, 1, 2], size=(n, 1), p=[0.15, 0.2, 0.5, 0.1, 0.05])
    pay = np.clip(status + rng.choice([-1, 0, 0, 0, 1], size=(n, 6)), -2, 8)
    bills = np.round(limit[:, None] * rng.uniform(size=(n, 1)) * np.exp(rng.normal(0, 0.3, (n, 6))))
    bills[status[:, 0] == -2] = 0
    bills[rng.uniform(size=(n, 6)) < 0.1] = 0
    pays = np.round(bills * rng.uniform(0, 0.2, (n, 6)))
    pays[rng.uniform(size=(n, 6)) < 0.4] = 0
    X = np.column_stack([limit, rng.randint(1, 3, n), rng.randint(1, 5, n), rng.randint(1, 4, n),
                         rng.randint(21, 75, n), pay, bills, pays]).astype(float)
    X[-n // 20:] = X[rng.choice(n, n // 20)]
    import pandas as pd

    names = (["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE"] + [f"PAY_{i}" for i in range(6)]
             + [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)])
    return pd.DataFrame(X, columns=names)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sixteen_components_fit_a_credit_card_table_at_the_defaults(covariance_type):
    """Before the covariance floor this raised "ill-defined empirical covariance"."""
    df = credit_card_table()
    amounts = {c: "positive" for c in df.columns if c.startswith(("BILL", "PAY_AMT"))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few distinct values in the status columns
        for column_types in (None, amounts):
            est = GaussianMixtureDensity(16, covariance_type=covariance_type, column_types=column_types,
                                         random_state=0).fit(df)
            scores = est.score_samples(df)
            assert np.isfinite(scores).all()
            assert est.lower_bound_ == pytest.approx(scores.mean(), rel=0.02)  # a float32 fit's mean score
    assert est.zero_probabilities_.shape == (16, 12) and est.zero_probabilities_.max() > 0.5


def test_default_fits_on_the_shared_tables():
    """Adult and Wine (declared types: positive columns with zeros, counts) and the ADBench
    tables: no default fit fails (skipped where the shared data are absent)."""
    import json
    from pathlib import Path

    import pandas as pd

    from skgenerative import GenerativeImputer, GenerativeOutlierDetector

    root = next((p / "shared" / "data" for p in Path(__file__).resolve().parents
                 if (p / "shared" / "data" / "mixed").is_dir()), None)
    if root is None:
        pytest.skip("no shared data beside the repository")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("adult", "wine"):
            types = json.loads((root / "mixed" / f"{name}.types.json").read_text())
            df = pd.read_csv(root / "mixed" / f"{name}.csv").sample(2000, random_state=0)
            for column, kind in types.items():
                if kind in ("categorical", "ordinal"):
                    df[column] = df[column].astype(str).where(df[column].notna()).astype("category")
            declared = {c: k for c, k in types.items() if k in ("positive", "count")}
            for est in (GaussianMixtureDensity(column_types=declared), GaussianMixtureDensity(16, column_types=declared),
                        GaussianMixtureDensity(16)):
                assert np.isfinite(est.fit(df).score_samples(df)).all(), (name, est)
            holes = df.mask(np.random.RandomState(0).uniform(size=df.shape) < 0.2)
            assert not GenerativeImputer().fit_transform(holes).isna().any().any()
            assert np.isfinite(GenerativeOutlierDetector().fit(holes).score_samples(holes)).all()
        for path in sorted((root / "adbench").glob("*.npz")):
            X = np.load(path)["X"][:3000].astype(float)
            for est in (GaussianMixtureDensity(), GaussianMixtureDensity(16)):
                assert np.isfinite(est.fit(X).score_samples(X)).all(), (path.name, est)
