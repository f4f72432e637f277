"""explain(X): log p(x_j | x_-j) per cell, against exact answers (#16)."""

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.decomposition import PCA

from skgenerative import (
    BernoulliRBM,
    FlowVAE,
    GaussianMixtureDensity,
    GenerativeOutlierDetector,
    PPCADensity,
    VariationalAutoencoder,
)


def _correlated(n=400, d=4, seed=0):
    rng = np.random.RandomState(seed)
    A = rng.normal(size=(d, d)) + 2 * np.eye(d)
    X = rng.normal(size=(n, d)) @ A
    X[: n // 2] += 5.0
    return X


def _gaussian_conditional(x, mean, cov, j):
    """log N(x_j; conditional mean, conditional variance) of one Gaussian: the textbook formula."""
    rest = [k for k in range(len(x)) if k != j]
    gain = np.linalg.solve(cov[np.ix_(rest, rest)], cov[rest, j])
    mu = mean[j] + gain @ (x[rest] - mean[rest])
    var = cov[j, j] - cov[j, rest] @ gain
    return stats.norm(mu, np.sqrt(var)).logpdf(x[j])


def _mixture_conditional(x, weights, means, covs, j):
    """log p(x) - log p(x_-j) of a Gaussian mixture, each marginal from scipy."""
    rest = [k for k in range(len(x)) if k != j]
    full = logsumexp([np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
                      for w, m, c in zip(weights, means, covs)])
    marginal = logsumexp([np.log(w) + stats.multivariate_normal(m[rest], c[np.ix_(rest, rest)]).logpdf(x[rest])
                          for w, m, c in zip(weights, means, covs)])
    return full - marginal


def test_one_gaussian_matches_the_conditional_normal_formula():
    X = _correlated()
    model = GaussianMixtureDensity(1, dtype="float64").fit(X)
    E = model.explain(X[:20])
    for i, j in itertools.product(range(20), range(X.shape[1])):
        expected = _gaussian_conditional(X[i], model.means_[0], model.covariances_[0], j)
        assert E[i, j] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_mixture_matches_scipy_marginals(covariance_type):
    X = _correlated()
    model = GaussianMixtureDensity(3, covariance_type=covariance_type, random_state=0, dtype="float64").fit(X)
    covs = model.covariances_ if covariance_type == "full" else [np.diag(c) for c in model.covariances_]
    E = model.explain(X[:15])
    for i, j in itertools.product(range(15), range(X.shape[1])):
        expected = _mixture_conditional(X[i], model.weights_, model.means_, covs, j)
        assert E[i, j] == pytest.approx(expected, abs=1e-8)


def test_ppca_matches_the_conditional_of_scikit_learns_pca_covariance():
    X = _correlated(d=5)
    model = PPCADensity(2).fit(X)
    pca = PCA(2).fit(X)
    E = model.explain(X[:15])
    for i, j in itertools.product(range(15), range(X.shape[1])):
        expected = _gaussian_conditional(X[i], pca.mean_, pca.get_covariance(), j)
        assert E[i, j] == pytest.approx(expected, abs=1e-7)


def test_rbm_matches_brute_force_enumeration():
    rng = np.random.RandomState(0)
    X = (rng.uniform(size=(200, 6)) < rng.uniform(0.2, 0.8, size=6)).astype(float)
    model = BernoulliRBM(n_components=3, max_iter=20, learning_rate=0.1, random_state=0).fit(X)
    assert model.log_partition_method_ == "exact"
    states = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
    log_p = dict(zip(map(tuple, states), model.score_samples(states)))
    assert logsumexp(list(log_p.values())) == pytest.approx(0.0, abs=1e-10)  # a distribution
    E = model.explain(states)
    for i, j in itertools.product(range(len(states)), range(6)):
        flipped = states[i].copy()
        flipped[j] = 1 - flipped[j]
        own, other = log_p[tuple(states[i])], log_p[tuple(flipped)]
        assert E[i, j] == pytest.approx(own - np.logaddexp(own, other), abs=1e-10)


def test_rbm_with_binarize_explains_the_binarised_units():
    rng = np.random.RandomState(1)
    X = rng.uniform(size=(150, 5))
    model = BernoulliRBM(n_components=2, max_iter=5, binarize=0.5, random_state=0).fit(X * 3)
    np.testing.assert_allclose(model.explain(X * 3), model.explain((X > 0.5 / 3) * 1.0 * 3), atol=0)


@pytest.mark.parametrize("cls", [VariationalAutoencoder, FlowVAE])
def test_vaes_explain_by_differences_of_their_deterministic_bounds(cls):
    X = _correlated(n=200)
    kwargs = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=10, n_importance_samples=8, random_state=0)
    if cls is FlowVAE:
        kwargs.update(flow="iaf", n_flows=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls(**kwargs).fit(X)
    rows = X[:10]
    E = model.explain(rows)
    full = model.score_samples(rows)
    for j in range(X.shape[1]):
        masked = rows.copy()
        masked[:, j] = np.nan
        np.testing.assert_allclose(E[:, j], full - model.score_samples(masked), rtol=0, atol=1e-10)
    # deterministic per row: the same row in another batch gets the same values
    np.testing.assert_allclose(model.explain(X[5:40])[:5], E[5:], rtol=0, atol=1e-10)


def test_missing_cells_have_nothing_to_explain_and_a_lone_cell_gets_its_marginal():
    X = _correlated()
    model = GaussianMixtureDensity(2, random_state=0, dtype="float64").fit(X)
    rows = X[:3].copy()
    rows[0, 1] = np.nan
    rows[1, 1:] = np.nan  # only column 0 observed
    E = model.explain(rows)
    assert np.isnan(E[0, 1]) and np.isfinite(np.delete(E[0], 1)).all()
    assert np.isnan(E[1, 1:]).all()
    marginal = logsumexp([np.log(w) + stats.norm(m[0], np.sqrt(c[0, 0])).logpdf(rows[1, 0])
                          for w, m, c in zip(model.weights_, model.means_, model.covariances_)])
    assert E[1, 0] == pytest.approx(marginal, abs=1e-9)
    # an observed cell of a row with a missing one: the conditional given what is observed
    expected = _mixture_conditional(rows[0, [0, 2, 3]], model.weights_, model.means_[:, [0, 2, 3]],
                                    model.covariances_[:, [0, 2, 3]][:, :, [0, 2, 3]], 0)
    assert E[0, 0] == pytest.approx(expected, abs=1e-9)


def _with_one_corrupted_column(seed=0, n=600, d=5):
    """Strongly correlated columns; each test row has one column replaced by a value
    that is ordinary on its own (within 1.5 marginal standard deviations) but
    contradicts the rest of the row."""
    rng = np.random.RandomState(seed)
    z = rng.normal(size=(n + 40, 1))
    X = z @ rng.uniform(1, 3, size=(1, d)) + 0.2 * rng.normal(size=(n + 40, d))
    train, test = X[:n], X[n:].copy()
    columns = rng.randint(d, size=len(test))
    for i, j in enumerate(columns):
        sign = -np.sign(test[i, j] - train[:, j].mean()) or 1.0
        test[i, j] = train[:, j].mean() + sign * 1.5 * train[:, j].std()
    return train, test, columns


@pytest.mark.parametrize("model", [
    GaussianMixtureDensity(2, random_state=0),
    PPCADensity(1),
    GenerativeOutlierDetector(),
], ids=["gmm", "ppca", "detector"])
def test_the_corrupted_column_ranks_first(model):
    train, test, columns = _with_one_corrupted_column()
    E = model.fit(train).explain(test)
    assert (np.argmin(E, axis=1) == columns).mean() >= 0.95


def test_dataframes_keep_their_names_and_index():
    X = _correlated()
    frame = pd.DataFrame(X, columns=["amount", "age", "balance", "hour"], index=np.arange(len(X)) * 10)
    for model in (GaussianMixtureDensity(2, random_state=0), GenerativeOutlierDetector()):
        model.fit(frame)
        E = model.explain(frame.iloc[:5])
        assert isinstance(E, pd.DataFrame)
        assert list(E.columns) == list(frame.columns)
        assert list(E.index) == list(frame.index[:5])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an array for a frame-fitted model
            np.testing.assert_allclose(E.to_numpy(), model.explain(X[:5]))
            assert isinstance(model.explain(X[:5]), np.ndarray)


def test_detector_explains_in_standardised_units_so_units_do_not_matter():
    X = _correlated()
    scales = np.array([1e-3, 1.0, 1e3, 1e5])
    det = GenerativeOutlierDetector().fit(X)
    scaled = GenerativeOutlierDetector().fit(X * scales)
    np.testing.assert_allclose(scaled.explain(X[:20] * scales), det.explain(X[:20]), rtol=1e-6, atol=1e-6)
    # the density model's own explanation of the transformed rows, plus each cell's
    # log-Jacobian from its standardised column (the transform acts per column)
    Xt = det.estimator_[:-1].transform(X[:20])
    np.testing.assert_allclose(det.explain(X[:20]), det.estimator_[-1].explain(Xt)
                               + det.estimator_[0].log_abs_det_jacobian(X[:20], standardised=True))


def test_detector_explain_needs_a_model_that_explains():
    from sklearn.mixture import GaussianMixture

    assert not hasattr(GenerativeOutlierDetector(GaussianMixture()), "explain")
    assert hasattr(GenerativeOutlierDetector(), "explain")
    X = _correlated()
    from sklearn.pipeline import make_pipeline

    det = GenerativeOutlierDetector(make_pipeline(PCA(2), GaussianMixtureDensity(1))).fit(X)
    with pytest.raises(ValueError, match="keep the columns"):
        det.explain(X[:3])


def test_mixed_table_levels_and_unseen_levels():
    """Through the column schema: discrete cells get log-probabilities of their levels,
    an unseen level its Laplace penalty, in the toy model whose every number is known."""
    from test_schema import IndependentColumns, _table

    df = _table(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few distinct values in the count columns
        model = IndependentColumns().fit(df)
    new = _table(6, seed=1)
    new["country"] = new["country"].astype(object)
    new.loc[2, "country"] = "IT"  # a level not seen in fit
    new.loc[3, "amount"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        E = model.explain(new)
        X, unseen = model.schema_.encode(new, warn=False)
    import torch

    cells = model._cell_log_prob(torch.as_tensor(X))  # independent columns: conditional = marginal
    expected = np.where(np.isnan(X), np.nan, cells)
    j = list(df.columns).index("country")
    expected[2, j] = model.schema_.unseen_log_probability(j)
    assert list(E.columns) == list(df.columns)
    np.testing.assert_allclose(E.to_numpy(), expected, rtol=0, atol=1e-12)
    assert np.isnan(E.loc[3, "amount"])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_closed_form_equals_the_marginal_path(covariance_type):
    """Complete rows take the precision-matrix closed form; it equals the NaN marginal."""
    import torch

    from skgenerative.base import GenerativeModel

    X = _correlated(d=5)
    model = GaussianMixtureDensity(3, covariance_type=covariance_type, random_state=0).fit(X)
    rows = torch.as_tensor(X[:40])
    with torch.inference_mode():
        fast = model._explain(rows)
        general = GenerativeModel._explain(model, rows)
    np.testing.assert_allclose(fast.numpy(), general.numpy(), rtol=0, atol=1e-9)
    # a batch with one incomplete row: every row by the marginal path, the same values
    mixed = X[:40].copy()
    mixed[0, 2] = np.nan
    E = model.explain(mixed)
    np.testing.assert_allclose(E[1:], fast.numpy()[1:], rtol=0, atol=1e-9)
