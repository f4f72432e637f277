"""``GaussianMixtureDensity(n_components="auto")``: the held-out choice of the number of
components, and fits on real tables that never fail for lack of data in a component."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from skgenerative import GaussianMixtureDensity
from skgenerative._torch import seed_from
from skgenerative.mixture import (
    AUTO_MAX_COMPONENTS, AUTO_ROWS_PER_COMPONENT, AUTO_STANDARD_ERRORS, AUTO_VALIDATION_FRACTION, _AUTO_SPLIT,
    _close_to_best,
)

from test_mixture import credit_card_table


def _clusters(k=4, n=2000, d=3, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(0, 10, (k, d))
    return centres[rng.randint(k, size=n)] + rng.normal(size=(n, d))


def _held_out_split(n, random_state):
    """The rows ``"auto"`` holds out, computed as the in-memory source computes them."""
    seed = seed_from(random_state)
    generator = torch.Generator().manual_seed((seed * 1000003 + _AUTO_SPLIT) % (2**31 - 1))
    order = torch.randperm(n, generator=generator).numpy()
    n_valid = int(np.floor(AUTO_VALIDATION_FRACTION * n))
    return order[n_valid:], order[:n_valid]


@parametrize_with_checks([GaussianMixtureDensity(n_components="auto", random_state=0)])
def test_sklearn_compatible_with_auto(estimator, check):
    check(estimator)


def test_auto_finds_the_number_of_separated_clusters():
    X = _clusters(k=4)
    est = GaussianMixtureDensity("auto", random_state=0).fit(X)
    assert est.n_components == "auto" and est.n_components_ == 4  # the parameter stays as given
    np.testing.assert_array_equal(est.n_components_candidates_, [1, 2, 4, 8])
    scores = est.n_components_scores_
    assert scores[0] < scores[1] < scores[2] and scores[3] <= scores[2]
    assert est.weights_.shape == (4,) and est.transform(X[:5]).shape == (5, 4)


def test_candidate_scores_are_the_held_out_log_likelihoods_of_plain_fits():
    """Each candidate's score is exactly ``GaussianMixtureDensity(k).fit(train).score(held_out)``
    with the same random_state: the same split, seed and EM."""
    X = _clusters(k=3, n=600)
    est = GaussianMixtureDensity("auto", random_state=3).fit(X)
    train, held_out = _held_out_split(len(X), 3)
    for k, score in zip(est.n_components_candidates_, est.n_components_scores_):
        plain = GaussianMixtureDensity(int(k), random_state=3).fit(X[train])
        assert score == pytest.approx(plain.score(X[held_out]), rel=1e-9, abs=1e-9), k
    # the chosen size refitted on every row is the plain fit on every row
    again = GaussianMixtureDensity(est.n_components_, random_state=3).fit(X)
    np.testing.assert_allclose(est.means_, again.means_)


def _paired_choice(rows, errors):
    """The rule by hand: the largest size whose mean is within ``errors`` standard errors
    of the per-row differences from the best size's mean."""
    means = [np.mean(r) for r in rows]
    best = int(np.argmax(means))
    close = []
    for r in rows:
        d = np.asarray(r) - np.asarray(rows[best])
        se = np.sqrt(np.sum((d - d.mean()) ** 2) / (len(d) - 1) / len(d))
        close.append(d.mean() >= -errors * se)
    return close


def test_close_to_best_is_the_paired_standard_error_rule():
    rng = np.random.RandomState(0)
    base = rng.normal(-10, 3, 200)
    noise = lambda sd: (lambda e: e - e.mean())(rng.normal(0, sd, 200))  # noqa: E731 (mean exactly 0)
    rows = [base - 1.0 + noise(0.1),   # 1 nat below, standard error ~0.007: far
            base,                      # the best
            base - 0.01 + noise(0.5)]  # 0.01 below, standard error ~0.035: close
    np.testing.assert_array_equal(_close_to_best(rows), _paired_choice(rows, AUTO_STANDARD_ERRORS))
    np.testing.assert_array_equal(_close_to_best(rows), [False, True, True])


def test_auto_chooses_the_largest_size_within_one_standard_error():
    """From plain fits on the same split: the candidates' per-row held-out scores, the
    best size, and the largest size whose paired difference is within one standard error."""
    X = _clusters(k=3, n=600)
    est = GaussianMixtureDensity("auto", random_state=3).fit(X)
    train, held_out = _held_out_split(len(X), 3)
    rows = [GaussianMixtureDensity(int(k), random_state=3).fit(X[train]).score_samples(X[held_out])
            for k in est.n_components_candidates_]
    close = _paired_choice(rows, AUTO_STANDARD_ERRORS)
    assert est.n_components_ == est.n_components_candidates_[np.flatnonzero(close)[-1]]
    # the grid went on while each new size was close to the best so far, and stopped at
    # the first that was not (or at the largest allowed)
    assert all(_paired_choice(rows[:i + 1], AUTO_STANDARD_ERRORS)[-1] for i in range(len(rows) - 1))


def test_auto_is_deterministic_and_bounded():
    X = _clusters(k=6, n=1500, d=4, seed=1)
    a = GaussianMixtureDensity("auto", random_state=0).fit(X)
    b = GaussianMixtureDensity("auto", random_state=0).fit(X)
    assert a.n_components_ == b.n_components_
    np.testing.assert_array_equal(a.n_components_scores_, b.n_components_scores_)
    np.testing.assert_array_equal(a.means_, b.means_)
    n_train = len(X) - int(np.floor(AUTO_VALIDATION_FRACTION * len(X)))
    assert a.n_components_candidates_.max() <= min(AUTO_MAX_COMPONENTS, n_train // AUTO_ROWS_PER_COMPONENT)
    # the grid doubles and stops at the first size far below the best (or at the largest)
    cand = a.n_components_candidates_
    assert list(cand) == [2**i for i in range(len(cand))]
    largest = min(AUTO_MAX_COMPONENTS, n_train // AUTO_ROWS_PER_COMPONENT)
    scores = a.n_components_scores_
    assert a.n_components_ in cand and (cand[-1] * 2 > largest or scores[-1] < scores.max())


def test_auto_with_too_few_rows_is_one_component():
    X = np.random.RandomState(0).normal(size=(30, 2))
    est = GaussianMixtureDensity("auto", random_state=0).fit(X)
    assert est.n_components_ == 1 and np.isnan(est.n_components_scores_).all()
    np.testing.assert_allclose(est.means_[0], X.mean(0), rtol=1e-5)  # a float32 fit


def test_auto_is_in_the_verbose_summary_line(capsys):
    GaussianMixtureDensity("auto", random_state=0, verbose=1).fit(_clusters(k=2, n=500))
    lines = [line for line in capsys.readouterr().out.splitlines() if "n_components='auto': 2" in line]
    assert len(lines) == 1 and "held-out log-likelihood" in lines[0] and "best lower bound" in lines[0]


def test_warm_start_keeps_the_chosen_size():
    X = _clusters(k=4, n=800)
    est = GaussianMixtureDensity("auto", warm_start=True, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
        k = est.n_components_
        est.fit(X)
    assert est.n_components_ == k and est.weights_.shape == (k,)


def test_auto_rejects_other_strings():
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixtureDensity("many").fit(_clusters())


def test_auto_and_many_components_fit_a_credit_card_table():
    df = credit_card_table(n=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in ("auto", 32, 64):
            est = GaussianMixtureDensity(k, random_state=0).fit(df)
            assert np.isfinite(est.score_samples(df)).all(), k
            sample = est.sample(500, random_state=0)
            assert sample.shape == (500, df.shape[1])
            assert ((sample >= df.min()) & (sample <= df.max())).all().all(), k  # bounds="observed"


def _shared_adult(rows=3000):
    import pandas as pd

    root = next((p / "shared" / "data" for p in Path(__file__).resolve().parents
                 if (p / "shared" / "data" / "mixed").is_dir()), None)
    if root is None:
        pytest.skip("no shared data beside the repository")
    types = json.loads((root / "mixed" / "adult.types.json").read_text())
    df = pd.read_csv(root / "mixed" / "adult.csv").dropna().sample(rows, random_state=0)
    for column, kind in types.items():
        if kind in ("categorical", "ordinal"):
            df[column] = df[column].astype(str).astype("category")
    return df


def test_many_components_fit_adult():
    """Before the covariance floor and prior, GMM(32) on Adult could fail in a component
    that held a handful of rows."""
    df = _shared_adult()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in (16, 32, 64, "auto"):
            est = GaussianMixtureDensity(k, random_state=0).fit(df)
            assert np.isfinite(est.score_samples(df.iloc[:500])).all(), k
            given = est.sample(200, random_state=0, given={"sex": df["sex"].iloc[0]})
            assert (given["sex"] == df["sex"].iloc[0]).all()
