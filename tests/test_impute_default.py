"""The default GenerativeImputer on numeric tables: mixtures stacked by held-out likelihood.

Exact answers where there are some: the stacking weights of densities whose mixture
is known, the stacked conditional mean against the closed form of a mixture of
mixtures, the held-out scores against folds fitted by hand.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal, norm
from sklearn.model_selection import KFold

from skgenerative import GaussianMixtureDensity, GenerativeImputer, PPCADensity
from skgenerative.impute import (
    MIN_ROWS_TO_CHOOSE,
    NUMERIC_CANDIDATE_COMPONENTS,
    SELECTION_FIT_PARAMS,
    collapsed_columns,
    held_out_conditional_log_likelihood,
    refit,
    _row_sums,
    select_by_held_out_likelihood,
    stacking_weights,
)


def _clusters(n=240, seed=0, rate=0.2):
    """Three curved clusters in 3-D with MCAR holes."""
    rng = np.random.RandomState(seed)
    z = rng.randint(3, size=n)
    t = rng.normal(size=n)
    X = np.column_stack([t + 4 * z, np.sin(t) + 0.3 * rng.normal(size=n) - 2 * z, t**2 * 0.5 + z])
    Xm = X.copy()
    Xm[rng.uniform(size=X.shape) < rate] = np.nan
    return X, Xm


def test_stacking_weights_recover_the_proportions_of_a_known_mixture():
    rng = np.random.RandomState(0)
    n = 4000
    x = np.where(rng.uniform(size=n) < 0.3, rng.normal(-2, 1, n), rng.normal(2, 1, n))
    L = np.column_stack([norm.logpdf(x, -2, 1), norm.logpdf(x, 2, 1), norm.logpdf(x, 0, 0.3)])
    w = stacking_weights(L)
    assert w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, [0.3, 0.7, 0.0], atol=0.03)
    # the optimum: no other weights give a larger mean log density
    best = logsumexp(L + np.log(np.maximum(w, 1e-300)), axis=1).mean()
    for other in ([0.25, 0.75, 0.0], [0.35, 0.65, 0.0], [0.3, 0.6, 0.1]):
        assert logsumexp(L + np.log(np.maximum(other, 1e-300)), axis=1).mean() < best
    # one model better on every row takes all the weight
    np.testing.assert_allclose(stacking_weights(np.column_stack([L[:, 1], L[:, 1] - 1.0])), [1, 0], atol=1e-6)


def test_row_sums_are_numpys_to_the_bit():
    """The stacking iterations' row sums, column by column: numpy's sum's numbers, signed zeros too."""
    rng = np.random.default_rng(0)
    for n_columns in range(1, 10):
        x = rng.uniform(size=(500, n_columns)) * np.exp(4 * rng.normal(size=(500, n_columns)))
        x[rng.uniform(size=x.shape) < 0.2] = 0.0
        x[rng.uniform(size=x.shape) < 0.2] = -0.0
        x[:5] = -0.0
        expected, got = x.sum(1, keepdims=True), _row_sums(x)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def test_held_out_scores_are_folds_fitted_by_hand():
    _, Xm = _clusters()
    model = GaussianMixtureDensity(2, covariance_prior=2.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = held_out_conditional_log_likelihood(model, Xm, 4, random_state=3)
        expected = np.empty(Xm.shape)
        for train, test in KFold(4, shuffle=True, random_state=3).split(Xm):
            fitted = GaussianMixtureDensity(2, covariance_prior=2.0, random_state=0).fit(Xm[train])
            expected[test] = fitted.explain(Xm[test])
            # log p(x_j | x_-j) = log p(x_o) - log p(x_o without j), by hand for one row
            i = test[np.flatnonzero(~np.isnan(Xm[test]).any(1))[0]]
            without = Xm[[i]].copy()
            without[0, 1] = np.nan
            assert expected[i, 1] == pytest.approx(
                fitted.score_samples(Xm[[i]])[0] - fitted.score_samples(without)[0], rel=1e-9)
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.isnan(got), np.isnan(Xm))  # a missing cell has nothing to predict


def test_fold_fits_take_the_selection_parameters_and_are_handed_back():
    _, Xm = _clusters()
    model = GaussianMixtureDensity(2, covariance_prior=2.0, n_init=2, random_state=0)
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = held_out_conditional_log_likelihood(model, Xm, 3, random_state=1, fit_params={"n_init": 1, "tol": 0.05},
                                                  models=models)
        expected = np.empty(Xm.shape)
        for fold, (train, test) in enumerate(KFold(3, shuffle=True, random_state=1).split(Xm)):
            fitted = GaussianMixtureDensity(2, covariance_prior=2.0, tol=0.05, random_state=0).fit(Xm[train])
            expected[test] = fitted.explain(Xm[test])
            np.testing.assert_array_equal(models[fold].means_, fitted.means_)
    np.testing.assert_array_equal(got, expected)
    assert len(models) == 3 and all(m.n_init == 1 and m.tol == 0.05 for m in models)
    assert model.n_init == 2 and model.tol == 1e-3 and not hasattr(model, "means_")  # the candidate untouched
    # the choice keeps the first fold's model of each candidate scored
    candidates = [GaussianMixtureDensity(k, covariance_prior=2.0, n_init=2, random_state=0) for k in (1, 2)]
    kept = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, scores = select_by_held_out_likelihood(candidates, Xm, fit_params=SELECTION_FIT_PARAMS, fold_models=kept)
    assert sorted(kept) == sorted(scores) == [0, 1]
    assert all(kept[i].n_components == k and kept[i].n_init == SELECTION_FIT_PARAMS["n_init"]
               and kept[i].tol == SELECTION_FIT_PARAMS["tol"] for i, k in enumerate((1, 2)))


def test_the_refit_resumes_em_from_the_fold_fit_on_every_row(monkeypatch):
    import skgenerative.impute as impute

    monkeypatch.setattr(impute, "SELECTION_WARM_REFIT", True)
    _, Xm = _clusters()
    candidate = GaussianMixtureDensity(3, covariance_prior=2.0, n_init=2, random_state=0)
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held_out_conditional_log_likelihood(candidate, Xm, 3, random_state=0, fit_params=SELECTION_FIT_PARAMS,
                                            models=models)
        fold = models[0]
        before = fold.score(Xm)
        # by hand: EM on every row started from the fold's parameters, at the candidate's tolerance
        by_hand = GaussianMixtureDensity(3, covariance_prior=2.0, weights_init=fold.weights_, means_init=fold.means_,
                                         precisions_init=fold.precisions_, random_state=0).fit(Xm)
        model = refit(candidate, fold, Xm)
    assert model.get_params() == candidate.get_params()  # the candidate's own tol and n_init, no warm_start
    assert model.converged_ and model.n_iter_ == by_hand.n_iter_
    np.testing.assert_allclose(model.means_, by_hand.means_, atol=1e-5)
    np.testing.assert_allclose(model.covariances_, by_hand.covariances_, atol=1e-5)
    assert model.score(Xm) > before  # EM went on over every row from where the fold stopped
    # switched off (the default): a fit from scratch, the fold's model untouched
    monkeypatch.setattr(impute, "SELECTION_WARM_REFIT", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = refit(candidate, models[1], Xm)
        expected = GaussianMixtureDensity(3, covariance_prior=2.0, n_init=2, random_state=0).fit(Xm)
    assert fresh is not models[1] and models[1].n_init == SELECTION_FIT_PARAMS["n_init"]
    np.testing.assert_array_equal(fresh.means_, expected.means_)


def test_a_fold_fit_with_a_collapsed_column_is_refitted_from_scratch():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    X[:100, 2] = 0.0  # constant on the fold's rows: the fold fit's variance is at the floor
    X[150:, 1] = 5.0  # constant on other rows only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fold = GaussianMixtureDensity(1, random_state=0).fit(X[:100])
        model = refit(GaussianMixtureDensity(1, random_state=0), fold, X)
        expected = GaussianMixtureDensity(1, random_state=0).fit(X)
    share = np.diagonal(fold.covariances_, axis1=1, axis2=2)[0] / X.var(0)
    assert share[2] < 1e-5 and share[:2].min() > 0.1  # by hand
    np.testing.assert_array_equal(collapsed_columns(fold, X), [False, False, True])
    np.testing.assert_array_equal(model.covariances_, expected.covariances_)  # from scratch, not resumed
    assert not collapsed_columns(expected, X).any()
    # a candidate of two starts: refitted from one, the warm refits' number of starts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        two = refit(GaussianMixtureDensity(2, n_init=2, random_state=0), fold, X)
        one = GaussianMixtureDensity(2, n_init=1, random_state=0).fit(X)
    assert two.n_init == SELECTION_FIT_PARAMS["n_init"] == 1
    np.testing.assert_array_equal(two.means_, one.means_)


def test_a_failing_candidate_is_recorded_and_never_chosen():
    _, Xm = _clusters()
    candidates = [PPCADensity(n_components=7), GaussianMixtureDensity(1, random_state=0),
                  GaussianMixtureDensity(2, covariance_prior=2.0, random_state=0)]
    index, record, scores = select_by_held_out_likelihood(candidates, Xm, n_splits=3)
    assert record[0]["status"].startswith("failed: ValueError") and 0 not in scores
    assert index in (1, 2) and record[index]["status"] == "chosen"
    assert record[index]["held_out_conditional_log_likelihood"] == pytest.approx(np.mean(scores[index]))
    assert record[index]["held_out_conditional_log_likelihood"] == max(r["held_out_conditional_log_likelihood"] for r in record[1:])


def test_the_search_stops_after_candidates_that_do_not_improve():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 2))  # one Gaussian: more components only overfit
    X[rng.uniform(size=X.shape) < 0.1] = np.nan
    candidates = [GaussianMixtureDensity(k, random_state=0) for k in (1, 4, 6, 8)]
    index, record, _ = select_by_held_out_likelihood(candidates, X, n_splits=3, patience=2)
    assert index == 0
    assert record[3]["status"].startswith("not tried") and record[3]["held_out_conditional_log_likelihood"] is None


def test_the_stacked_imputation_is_the_exact_conditional_mean_of_the_pool():
    """sum_m w_m p_m(x_m | x_o): each p_m a mixture of Gaussians, by the closed form."""
    X, Xm = _clusters(n=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GenerativeImputer().fit(Xm)
        models = [GaussianMixtureDensity(k, covariance_prior=2.0, random_state=0).fit(Xm) for k in (1, 3)]
    imputer.estimators_, imputer.weights_ = models, np.array([0.35, 0.65])
    got = imputer.transform(Xm)
    expected = Xm.copy()
    for i in np.flatnonzero(np.isnan(Xm).any(1)):
        o, m = ~np.isnan(Xm[i]), np.isnan(Xm[i])
        pooled = 0.0
        for w, model in zip(imputer.weights_, models):
            logs, means = [], []
            for pi, mu, S in zip(model.weights_, model.means_, model.covariances_):
                log, mean = np.log(pi), mu[m]
                if o.any():
                    log += multivariate_normal(mu[o], S[np.ix_(o, o)]).logpdf(Xm[i, o])
                    mean = mu[m] + S[np.ix_(m, o)] @ np.linalg.solve(S[np.ix_(o, o)], Xm[i, o] - mu[o])
                logs.append(log)
                means.append(mean)
            pooled = pooled + w * (softmax(np.array(logs)) @ np.array(means))
        expected[i, m] = pooled
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-9)
    observed = ~np.isnan(Xm)
    assert np.array_equal(got[observed], Xm[observed])  # bit for bit
    # draws: a model by its posterior weight, then a draw from it; observed cells kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draws = GenerativeImputer(sample_posterior=True, random_state=0).fit(Xm)
    draws.estimators_, draws.weights_ = models, imputer.weights_
    one = draws.transform(Xm)
    assert np.array_equal(one[observed], Xm[observed]) and not np.isnan(one).any()
    np.testing.assert_array_equal(one, draws.transform(Xm))  # a fixed seed: fixed draws


def test_the_default_choice_is_visible_and_deterministic(capsys):
    X, Xm = _clusters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = GenerativeImputer(verbose=1).fit(Xm)
        again = GenerativeImputer().fit(Xm)
        other_seed = GenerativeImputer(random_state=1).fit(Xm)
    out = capsys.readouterr().out
    assert "[GenerativeImputer] stacked" in out and "held-out log p(cell | rest of row)" in out
    record = first.selection_
    assert len(record) == len(NUMERIC_CANDIDATE_COMPONENTS)
    assert [r["held_out_conditional_log_likelihood"] for r in record] == [r["held_out_conditional_log_likelihood"] for r in again.selection_]
    kept = [r["weight_kept"] for r in record if "weight_kept" in r]
    assert sum(kept) == pytest.approx(1.0)
    np.testing.assert_allclose(sorted([w for w in kept if w > 0], reverse=True), first.weights_)
    assert first.estimator_ is first.estimators_[0]
    assert sum(r["status"] == "chosen" for r in record) == 1
    np.testing.assert_array_equal(first.transform(Xm), again.transform(Xm))
    assert other_seed.selection_ is not None and not np.isnan(other_seed.transform(Xm)).any()
    # curved clusters: the stack imputes better than one Gaussian (the classical EM imputer)
    mask = np.isnan(Xm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = GenerativeImputer(GaussianMixtureDensity(1)).fit_transform(Xm)
    rmse = lambda Y: np.sqrt(np.mean((Y - X)[mask] ** 2))  # noqa: E731
    assert rmse(first.transform(Xm)) < 0.8 * rmse(one)


def test_small_tables_and_given_estimators_make_no_choice():
    X, Xm = _clusters(n=MIN_ROWS_TO_CHOOSE - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = GenerativeImputer().fit(Xm)
        given = GenerativeImputer(GaussianMixtureDensity(1)).fit(_clusters()[1])
    assert small.selection_ is None and len(small.estimators_) == 1 and small.estimator_.n_components == 2
    assert given.selection_ is None and given.weights_.tolist() == [1.0]


def test_float32_and_frames_keep_their_dtypes_through_the_stack():
    X, Xm = _clusters()
    frame = pd.DataFrame(Xm, columns=["a", "b", "c"]).astype({"b": np.float32})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = GenerativeImputer().set_output(transform="pandas").fit(frame).transform(frame)
        single = GenerativeImputer().fit_transform(Xm.astype(np.float32))
    assert out.dtypes.equals(frame.dtypes) and not out.isna().any().any()
    assert single.dtype == np.float32 and not np.isnan(single).any()
    observed = frame.notna()
    for column in frame.columns:
        pd.testing.assert_series_equal(out[column][observed[column]], frame[column][observed[column]])


def _tables():
    """scikit-learn's bundled tables and the ADBench ones beside the repository (if any)."""
    from pathlib import Path

    from sklearn import datasets

    out = {name: getattr(datasets, f"load_{name}")().data for name in
           ("digits", "breast_cancer", "wine", "iris", "diabetes")}
    root = next((p / "shared" / "data" / "adbench" for p in Path(__file__).resolve().parents
                 if (p / "shared" / "data" / "adbench").is_dir()), None)
    for path in sorted(root.glob("*.npz")) if root is not None else ():
        out[path.stem] = np.load(path)["X"]
    return out


@pytest.mark.parametrize("name", list(_tables()))
def test_the_default_never_fails_on_the_benchmarks_tables(name):
    """Every numeric table of benchmarks/ (ADBench's, when present), 20% MCAR, at most
    600 rows, digits 300 (its 64 columns make every row a missingness pattern of its
    own: the slowest case; ADBench: duplicated rows, discrete columns)."""
    X = _tables()[name].astype(np.float64)
    X = X[np.random.RandomState(0).permutation(len(X))[:300 if name == "digits" else 600]]
    X = X[:, np.nanstd(X, axis=0) > 0] if name == "digits" else X  # an always-blank pixel has no scale
    Xm = X.copy()
    mask = np.random.RandomState(1).uniform(size=X.shape) < 0.2
    Xm[mask] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GenerativeImputer().fit(Xm)
    out = imputer.transform(Xm)
    assert not np.isnan(out).any() and np.array_equal(out[~mask], X[~mask])
    # a choice was made, or (a wide table on a slow machine) the clock stopped it first
    statuses = [r["status"] for r in imputer.selection_]
    assert "chosen" in statuses or any("time budget" in status for status in statuses), statuses
    scale = np.nanstd(Xm, axis=0)
    scale[scale == 0] = 1.0
    ours = np.sqrt(np.mean(((out - X) / scale)[mask] ** 2))
    means = np.sqrt(np.mean(((np.nanmean(Xm, axis=0) - X) / scale)[mask] ** 2))
    assert ours < means, (ours, means)
