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
    GenerativeOutlierDetector(feature_bagging=3, robust=1, random_state=0),
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


# ------------------------------------------------------------------ calibration
def _inliers(n, seed, d=3):
    rng = np.random.RandomState(seed)
    A = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])[:d, :d]
    return rng.standard_t(5, size=(n, d)) @ A  # heavier tails than the Gaussian model


def test_calibrated_false_alarm_rate_on_fresh_inliers_is_what_was_asked():
    det = GenerativeOutlierDetector(contamination=0.05, calibration=0.5, random_state=0).fit(_inliers(4000, 0))
    assert det.calibration_scores_.shape == (2000,)
    fresh = _inliers(20000, 1)
    flagged = np.mean(det.predict(fresh) == -1)
    # the false-alarm rate is exactly floor(a (n+1)) / (n+1) in expectation over calibration sets;
    # for this one calibration set it is within the set's sampling error of 0.05
    n_cal = 2000
    sigma = np.sqrt(0.05 * 0.95 * (1 / n_cal + 1 / len(fresh)))
    assert abs(flagged - 0.05) < 4 * sigma
    p = det.p_values(fresh)
    np.testing.assert_array_equal(det.predict(fresh) == -1, p <= 0.05)
    assert stats.kstest(p, "uniform").statistic < 4 / np.sqrt(n_cal)
    assert p.min() >= 1 / (n_cal + 1) and p.max() <= 1.0


def test_calibrated_flags_match_the_level_over_many_calibration_sets():
    # the conformal guarantee is marginal over the calibration draw: average it
    fresh = _inliers(2000, 99)
    rates = [
        np.mean(GenerativeOutlierDetector(contamination=0.05, calibration=0.3, random_state=s)
                .fit(_inliers(600, s)).predict(fresh) == -1)
        for s in range(20)
    ]
    n_cal = 180
    expected = np.floor(0.05 * (n_cal + 1)) / (n_cal + 1)
    sigma = np.sqrt(expected * (1 - expected) / n_cal / len(rates))
    assert abs(np.mean(rates) - expected) < 4 * sigma + 0.002


def test_uncalibrated_threshold_is_biased_by_the_training_fit():
    # why calibration exists: a flexible model scores its own training rows too high,
    # so the training quantile flags more fresh normal rows than asked
    model = GaussianMixtureDensity(4, covariance_prior=1e-3, random_state=0)
    plain, calibrated = [], []
    for seed in range(20):
        X, fresh = _inliers(300, seed), _inliers(2000, 1000 + seed)
        plain.append(np.mean(GenerativeOutlierDetector(model, contamination=0.05).fit(X).predict(fresh) == -1))
        det = GenerativeOutlierDetector(model, contamination=0.05, calibration=0.5, random_state=seed)
        calibrated.append(np.mean(det.fit(X).predict(fresh) == -1))
    n_cal = 150
    expected = np.floor(0.05 * (n_cal + 1)) / (n_cal + 1)
    assert np.mean(plain) > 1.4 * expected
    # each calibration set's rate is Beta-distributed around the level (sd ~ sqrt(a / n_cal))
    sigma = np.sqrt(expected * (1 - expected) * (1 / n_cal + 1 / 2000) / 20)
    assert abs(np.mean(calibrated) - expected) < 4 * sigma


def test_p_values_formula_and_threshold():
    X, _ = _contaminated()
    det = GenerativeOutlierDetector(contamination=0.1, calibration=0.25, random_state=0).fit(X)
    cal = det.calibration_scores_
    rows = X[:50]
    s = det.score_samples(rows)
    expected = (1 + (cal[None, :] <= s[:, None]).sum(1)) / (cal.size + 1)
    np.testing.assert_allclose(det.p_values(rows), expected)
    k = int(np.floor(0.1 * (cal.size + 1)))
    assert det.offset_ == cal[k - 1]
    # the held-out rows are not the fitted ones, and the split follows random_state
    again = GenerativeOutlierDetector(contamination=0.1, calibration=0.25, random_state=0).fit(X)
    np.testing.assert_array_equal(again.calibration_scores_, cal)
    other = GenerativeOutlierDetector(contamination=0.1, calibration=0.25, random_state=1).fit(X)
    assert not np.array_equal(other.calibration_scores_, cal)


def test_p_values_need_calibration_and_enough_rows():
    X, _ = _contaminated()
    with pytest.raises(AttributeError, match="calibration"):
        GenerativeOutlierDetector().fit(X).p_values(X)
    with pytest.warns(UserWarning, match="too few"):
        det = GenerativeOutlierDetector(contamination=0.01, calibration=0.1, random_state=0).fit(X[:200])
    assert (det.predict(X) == 1).all()
    with pytest.raises(ValueError, match="calibrate on"):
        GenerativeOutlierDetector(calibration=0.001).fit(X[:100])


# ------------------------------------------------------------ trimmed likelihood
def test_robust_fit_refits_without_the_least_likely_rows():
    X, y = _contaminated(n_in=300, n_out=30)
    model = GaussianMixtureDensity(2, covariance_prior=5.0, random_state=0)
    det = GenerativeOutlierDetector(model, contamination=0.1, robust=1).fit(X)
    first = clone(model).fit(X)
    keep = np.sort(np.argsort(first.score_samples(X), kind="stable")[int(0.1 * len(X)):])
    refit = clone(model).fit(X[keep])
    np.testing.assert_allclose(det.score_samples(X), refit.score_samples(X))
    assert det.offset_ == pytest.approx(np.quantile(refit.score_samples(X), 0.1))


# ---------------------------------------------------------------- feature bagging
def test_feature_bagging_averages_standardised_member_scores():
    X, y = _contaminated(d=6)
    det = GenerativeOutlierDetector(feature_bagging=4, random_state=0).fit(X)
    rng = np.random.RandomState(0)
    total = np.zeros(len(X))
    for b in range(4):
        columns = np.sort(rng.choice(6, 3, replace=False))
        np.testing.assert_array_equal(det.subspaces_[b], columns)
        member = GenerativeOutlierDetector().fit(X[:, columns])
        s = member.score_samples(X[:, columns])
        q1, median, q3 = np.percentile(s, [25, 50, 75])
        total += (s - median) / (q3 - q1)
    np.testing.assert_allclose(det.score_samples(X), total / 4)
    assert det.offset_ == pytest.approx(np.quantile(total / 4, 0.1))
    assert _auc(det, X, y) > 0.95
    assert not hasattr(det, "explain")  # an ensemble's score is not one density
    # a refit without bagging leaves nothing of the ensemble behind
    det.set_params(feature_bagging=None).fit(X)
    assert not hasattr(det, "estimators_") and hasattr(det, "explain")
    np.testing.assert_allclose(det.score_samples(X), GenerativeOutlierDetector().fit(X).score_samples(X))


def test_refit_without_calibration_drops_the_calibration_scores():
    X, _ = _contaminated()
    det = GenerativeOutlierDetector(calibration=0.3, random_state=0).fit(X)
    det.set_params(calibration=None).fit(X)
    with pytest.raises(AttributeError, match="calibration"):
        det.p_values(X)
