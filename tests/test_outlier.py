"""GenerativeOutlierDetector: an sklearn outlier detector around any density model."""

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.neighbors import KernelDensity
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import ESTIMATORS, data_for
from skgenerative import GaussianMixtureDensity, GenerativeOutlierDetector, PPCADensity

WRAPPED = [
    GenerativeOutlierDetector(),
    GenerativeOutlierDetector(GaussianMixture(2, random_state=0)),
    GenerativeOutlierDetector(KernelDensity(bandwidth=0.5)),
] + [GenerativeOutlierDetector(clone(e)) for e in ESTIMATORS if not np.isin(data_for(e), (0, 1)).all()]


@parametrize_with_checks(WRAPPED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _contaminated(n_in=300, n_out=15, d=4, seed=0, scales=None, return_oracle=False):
    """Inliers on two correlated clusters; outliers scattered in a wide box.

    With ``return_oracle`` also the AUC of the true inlier density: the best any
    detector can do on this draw (some box points land inside the clusters).
    """
    rng = np.random.RandomState(seed)
    A = rng.normal(size=(d, d))
    inliers = np.vstack([
        rng.normal(size=(n_in // 2, d)) @ A + 3,
        rng.normal(size=(n_in - n_in // 2, d)) @ A * 0.5 - 3,
    ])
    outliers = rng.uniform(-15, 15, size=(n_out, d))
    X = np.vstack([inliers, outliers])
    y = np.r_[np.zeros(n_in), np.ones(n_out)]  # 1 = anomaly
    perm = rng.permutation(len(X))
    X, y = X[perm], y[perm]
    true_density = 0.5 * stats.multivariate_normal(np.full(d, 3.0), A.T @ A).pdf(X) + 0.5 * (
        stats.multivariate_normal(np.full(d, -3.0), 0.25 * A.T @ A).pdf(X))
    oracle = roc_auc_score(y, -true_density)
    if scales is not None:
        X = X * scales
    return (X, y, oracle) if return_oracle else (X, y)


def _auc(detector, X, y):
    return roc_auc_score(y, -detector.decision_function(X))


def test_threshold_and_labels():
    X, y, oracle = _contaminated(return_oracle=True)
    det = GenerativeOutlierDetector(contamination=0.05).fit(X)
    scores = det.score_samples(X)
    assert det.offset_ == pytest.approx(np.quantile(scores, 0.05))
    np.testing.assert_allclose(det.decision_function(X), scores - det.offset_)
    labels = det.predict(X)
    np.testing.assert_array_equal(labels, np.where(scores < det.offset_, -1, 1))
    np.testing.assert_array_equal(det.fit_predict(X), labels)
    assert _auc(det, X, y) > oracle - 0.02


def test_wrapping_sklearn_density_keeps_its_scores():
    X, _ = _contaminated()
    gm = GaussianMixture(2, random_state=0).fit(X)
    det = GenerativeOutlierDetector(GaussianMixture(2, random_state=0)).fit(X)
    np.testing.assert_allclose(det.score_samples(X), gm.score_samples(X))
    kde = GenerativeOutlierDetector(KernelDensity(bandwidth=1.0)).fit(X)
    np.testing.assert_allclose(kde.score_samples(X), KernelDensity(bandwidth=1.0).fit(X).score_samples(X))


@pytest.mark.parametrize("estimator", [
    None,
    # without the prior one of two ML components absorbs the scattered outliers
    # (AUC 0.8 here): test_mixture covers that collapse
    GaussianMixtureDensity(2, covariance_prior=5.0, random_state=0),
    PPCADensity(2),
], ids=["default", "gmm", "ppca"])
def test_whole_pipeline_predicts_outliers(estimator):
    X, y = _contaminated()
    pipe = make_pipeline(StandardScaler(), GenerativeOutlierDetector(estimator, contamination=0.05))
    labels = pipe.fit(X).predict(X)
    assert set(np.unique(labels)) == {-1, 1}
    # most flagged rows are the planted outliers, most planted outliers are flagged
    assert np.mean(y[labels == -1]) > 0.6
    assert np.mean(labels[y == 1] == -1) >= 0.8
    assert roc_auc_score(y, -pipe.decision_function(X)) > 0.95


def test_grid_search_by_roc_auc_on_labelled_validation_data():
    X_train, _ = _contaminated(seed=0)
    X_val, y_val = _contaminated(seed=1)
    X = np.vstack([X_train, X_val])
    # roc_auc ranks by decision_function, which is high for inliers: label inliers 1
    y = np.r_[np.zeros(len(X_train)), 1 - y_val]
    fold = np.r_[-np.ones(len(X_train)), np.zeros(len(X_val))]  # fit on train, score on val

    class TrainOnly(PredefinedSplit):
        pass

    pipe = make_pipeline(StandardScaler(), GenerativeOutlierDetector(GaussianMixtureDensity(random_state=0)))
    search = GridSearchCV(
        pipe, {"generativeoutlierdetector__estimator__n_components": [1, 2, 3]},
        scoring="roc_auc", cv=TrainOnly(fold), refit=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and scores.max() > 0.97
    best = search.best_params_["generativeoutlierdetector__estimator__n_components"]
    assert scores[best - 1] == scores.max()


# ------------------------------------------------------------------- robustness
def test_constant_and_duplicated_columns_and_rows():
    X, y = _contaminated()
    X = np.column_stack([X, np.full(len(X), 7.0), X[:, 0]])  # a constant and a duplicated column
    X = np.vstack([X, np.repeat(X[:1], 30, axis=0)])  # 30 duplicated rows
    y = np.r_[y, np.repeat(y[:1], 30)]
    det = GenerativeOutlierDetector().fit(X)
    assert np.isfinite(det.score_samples(X)).all()
    assert _auc(det, X, y) > 0.95


def test_features_on_very_different_scales():
    scales = np.array([1e-6, 1.0, 1e3, 1e6])
    X, y, oracle = _contaminated(scales=scales, return_oracle=True)
    det = GenerativeOutlierDetector().fit(X)
    assert _auc(det, X, y) > oracle - 0.02
    unit = GenerativeOutlierDetector().fit(X / scales)
    # standardising inside: the ranking does not depend on the units
    assert roc_auc_score(y, -det.decision_function(X)) == pytest.approx(_auc(unit, X / scales, y), abs=1e-9)


def test_heavy_contamination():
    X, y, oracle = _contaminated(n_in=200, n_out=200, return_oracle=True)
    det = GenerativeOutlierDetector(contamination=0.5).fit(X)
    assert _auc(det, X, y) > oracle - 0.1
    assert abs(np.mean(det.predict(X) == -1) - 0.5) < 0.02


def test_tiny_data():
    X, y, oracle = _contaminated(n_in=95, n_out=5, return_oracle=True)
    det = GenerativeOutlierDetector(contamination=0.05).fit(X)
    assert len(X) == 100
    assert _auc(det, X, y) > oracle - 0.05


def test_rejects_estimators_without_score_samples():
    from sklearn.linear_model import LinearRegression

    X, _ = _contaminated()
    with pytest.raises(ValueError, match="estimator"):
        GenerativeOutlierDetector(LinearRegression()).fit(X)
