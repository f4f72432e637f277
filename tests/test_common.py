"""The shared contract, checked over every estimator.

``ESTIMATORS`` holds one quick configuration of each public estimator; everything
here is parametrised over it. Model-specific mathematics lives in test_<module>.py.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import CUDA, ESTIMATORS, data_for

from skgenerative import GaussianMixtureDensity, GenerativeImputer, GenerativeOutlierDetector
from skgenerative._em import EMModel

IDS = [type(e).__name__ for e in ESTIMATORS]


# scikit-learn's checks feed the RBM real values outside [0, 1]; its default
# (binarize="auto") binarises them and says so, which is the behaviour under test
@pytest.mark.filterwarnings("ignore:BernoulliRBM has binary visible units:UserWarning")
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_no_estimator_is_non_deterministic():
    for estimator in ESTIMATORS:
        assert not estimator.__sklearn_tags__().non_deterministic


@pytest.fixture(params=ESTIMATORS, ids=IDS)
def fitted(request):
    estimator = clone(request.param)
    X = data_for(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(X)
    return estimator, X


def test_shapes_and_finite_scores(fitted):
    est, X = fitted
    scores = est.score_samples(X)
    assert scores.shape == (X.shape[0],)
    assert np.isfinite(scores).all()
    Z = est.transform(X[:7])
    assert Z.shape == (7, len(est.get_feature_names_out()))
    S = est.sample(11, random_state=0)
    assert S.shape == (11, X.shape[1])
    assert np.isfinite(S).all()


def test_score_is_mean_of_score_samples(fitted):
    est, X = fitted
    assert est.score(X) == pytest.approx(np.mean(est.score_samples(X)), rel=1e-12)


def test_decision_function_and_outliers(fitted):
    est, X = fitted
    scores = est.score_samples(X)
    np.testing.assert_allclose(est.decision_function(X), scores - est.offset_)
    assert est.offset_ == pytest.approx(np.quantile(scores, est.contamination))
    labels = est.predict_outlier(X)
    assert set(np.unique(labels)) <= {-1, 1}
    np.testing.assert_array_equal(labels == -1, scores < est.offset_)
    # the contamination quantile of the training scores: about that share flagged
    assert abs(np.mean(labels == -1) - est.contamination) <= 2.0 / X.shape[0] + 1e-12


def test_far_point_is_an_outlier(fitted):
    est, X = fitted
    if _is_binary(X):
        # binary rows cannot move far: take the least probable of all 2^16 vectors
        bits = (np.arange(2 ** X.shape[1])[:, None] >> np.arange(X.shape[1])) & 1
        every = bits.astype(X.dtype)
        far = every[[np.argmin(est.score_samples(every))]]
    else:
        far = X.max(0, keepdims=True) + 50 * (X.std(0, keepdims=True) + 1)
    assert est.predict_outlier(far)[0] == -1
    assert est.score_samples(far)[0] < est.score_samples(X).min()


def _is_binary(X):
    return np.isin(X, (0.0, 1.0)).all()


def test_same_random_state_same_model(fitted):
    est, X = fitted
    again = clone(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again.fit(X)
    np.testing.assert_array_equal(est.score_samples(X), again.score_samples(X))
    np.testing.assert_array_equal(est.sample(5, random_state=3), again.sample(5, random_state=3))


def test_scores_do_not_depend_on_the_batch(fitted):
    est, X = fitted
    full = est.score_samples(X)
    perm = np.random.RandomState(0).permutation(X.shape[0])
    np.testing.assert_allclose(est.score_samples(X[perm]), full[perm], rtol=1e-10, atol=1e-10)
    singles = np.array([est.score_samples(X[i : i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(singles, full[:5], rtol=1e-10, atol=1e-10)
    # tiny working memory: many chunks, same numbers
    with config_context(working_memory=0.001):
        np.testing.assert_allclose(est.score_samples(X), full, rtol=1e-10, atol=1e-10)


def test_input_types_agree(fitted):
    est, X = fitted
    expected = est.score_samples(X)
    df = pd.DataFrame(X)
    np.testing.assert_allclose(est.score_samples(df.values), expected)
    np.testing.assert_allclose(est.score_samples(X.tolist()), expected)
    np.testing.assert_allclose(est.score_samples(torch.from_numpy(X)), expected)
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(est.score_samples(torch.from_numpy(X32)), est.score_samples(X32))


def test_pickle_round_trip(fitted):
    est, X = fitted
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.score_samples(X), est.score_samples(X))
    np.testing.assert_array_equal(restored.transform(X), est.transform(X))
    assert restored.offset_ == est.offset_


def test_float32(fitted):
    est, X = fitted
    est32 = clone(est).set_params(dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est32.fit(X)
    scores = est32.score_samples(X)
    assert scores.dtype == np.float32
    assert est32.transform(X).dtype == np.float32
    assert np.isfinite(scores).all()


def test_pipeline_with_scaler(fitted):
    est, X = fitted
    # binary models need inputs in [0, 1]: a min-max scaler keeps them there
    scaler = MinMaxScaler() if _is_binary(X) else StandardScaler()
    pipe = make_pipeline(scaler, clone(est))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X)
        scaled = clone(scaler).fit_transform(X)
        direct = clone(est).fit(scaled)
    np.testing.assert_allclose(pipe.score_samples(X), direct.score_samples(scaled))
    assert pipe.score(X) == pytest.approx(direct.score(scaled))


def test_set_output_pandas(fitted):
    est, X = fitted
    columns = [f"f{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    est = clone(est).set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(df)
    out = est.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(est.get_feature_names_out())
    assert list(est.feature_names_in_) == columns


def test_unfitted_raises(fitted):
    est, X = fitted
    fresh = clone(est)
    for method in ("score_samples", "score", "transform", "decision_function", "predict_outlier"):
        with pytest.raises(NotFittedError):
            getattr(fresh, method)(X)
    with pytest.raises(NotFittedError):
        fresh.sample(2)


def test_bad_input_messages(fitted):
    est, X = fitted
    bad = X.copy()
    bad[0, 0] = np.nan
    if not est.__sklearn_tags__().input_tags.allow_nan:
        with pytest.raises(ValueError, match="NaN"):
            clone(est).fit(bad)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity|inf"):
        clone(est).fit(bad)
    with pytest.raises(ValueError, match="features"):
        est.score_samples(X[:, :-1])
    with pytest.raises(ValueError, match="could not convert|string"):
        clone(est).fit(np.array([["a"] * X.shape[1]] * 5, dtype=object))
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(0)
    with pytest.raises(ValueError, match="contamination"):
        clone(est).set_params(contamination=0.9).fit(X)
    with pytest.raises(ValueError, match="dtype"):
        clone(est).set_params(dtype="float16").fit(X)


def test_bad_device_is_rejected(fitted):
    est, X = fitted
    with pytest.raises(ValueError, match="device"):
        clone(est).set_params(device="tpu").fit(X)
    if not CUDA:
        with pytest.raises(ValueError, match="CUDA is not available"):
            clone(est).set_params(device="cuda").fit(X)


@pytest.mark.skipif(CUDA, reason="checks the fallback on a machine without CUDA")
def test_gpu_model_evaluates_on_cpu_machine(fitted):
    """A model whose device is CUDA (e.g. unpickled from a GPU machine) still scores."""
    est, X = fitted
    expected = est.score_samples(X)
    moved = pickle.loads(pickle.dumps(est))
    moved.device = "cuda"  # as if it had been fitted with device="cuda"
    with pytest.warns(RuntimeWarning, match="not available"):
        np.testing.assert_allclose(moved.score_samples(X), expected)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_matches_cpu(fitted):
    est, X = fitted
    gpu = clone(est).set_params(device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu.fit(torch.as_tensor(X, device="cuda"))
    scores = gpu.score_samples(torch.as_tensor(X, device="cuda"))
    assert isinstance(scores, np.ndarray) and np.isfinite(scores).all()
    restored = pickle.loads(pickle.dumps(gpu))
    restored.set_params(device="cpu")
    np.testing.assert_allclose(restored.score_samples(X), scores, rtol=1e-6, atol=1e-6)


def test_grid_search_selects_the_true_dimension(request):
    """GridSearchCV by held-out log-likelihood (no scoring argument) finds the truth."""
    from conftest import GRID_CASES

    for estimator, X, grid, check in GRID_CASES:
        search = GridSearchCV(clone(estimator), {"n_components": grid}, cv=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search.fit(X)
        chosen = search.best_params_["n_components"]
        assert check(chosen), f"{type(estimator).__name__} chose n_components={chosen}"


MISSING = [e for e in ESTIMATORS if e.__sklearn_tags__().input_tags.allow_nan]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("estimator", MISSING, ids=[type(e).__name__ for e in MISSING])
def test_row_with_nothing_observed_has_log_density_exactly_zero(estimator, dtype):
    """The marginal of no entries is the sure event: log-density 0 in any dtype.

    Computed through a model's general path it leaves a float32 rounding residue
    (a log-sum-exp of mixture weights gave 6e-8); the identity must be exact.
    """
    est = clone(estimator).set_params(dtype=dtype)
    X = data_for(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    empty = np.full((3, X.shape[1]), np.nan)
    batch = np.vstack([X[:4], empty, X[4:6]])
    scores = est.score_samples(batch)
    np.testing.assert_array_equal(scores[4:7], 0.0)
    assert est.score_samples(empty[:1])[0] == 0.0
    np.testing.assert_allclose(scores[[0, 1, 2, 3, 7, 8]], est.score_samples(X[:6]), rtol=1e-5)


CONTINUOUS = [e for e in ESTIMATORS if not _is_binary(data_for(e))]


@pytest.mark.parametrize("estimator", CONTINUOUS + [GenerativeOutlierDetector(), GenerativeImputer()],
                         ids=[type(e).__name__ for e in CONTINUOUS] + ["detector", "imputer"])
def test_values_whose_squares_overflow_get_a_named_error(estimator):
    """|x| near 1e200: an error that names the column and says to scale, not a torch error."""
    X = data_for(GaussianMixtureDensity()) if not hasattr(estimator, "dtype") else data_for(estimator)
    df = pd.DataFrame(X, columns=[f"c{j}" for j in range(X.shape[1])])
    df.iloc[3, 2] = -1e200
    with pytest.raises(ValueError, match=r"1e\+200 in magnitude \(column 'c2'\).*Scale the data"):
        clone(estimator).fit(df)


def test_deferred_offset_is_the_training_quantile_and_survives_pickling():
    """Neural models compute offset_ on first use; it is the same number as eagerly."""
    from skgenerative import VariationalAutoencoder

    est = clone(ESTIMATORS[3])
    assert isinstance(est, VariationalAutoencoder) and est._defer_offset
    X = data_for(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    assert "offset" not in est._threshold  # fit only fitted
    restored = pickle.loads(pickle.dumps(est))  # pickling computes it, rows dropped
    assert set(restored._threshold) == {"offset"} and set(est._threshold) == {"offset"}
    assert restored.offset_ == est.offset_ == pytest.approx(np.quantile(est.score_samples(X), 0.1), rel=1e-12)
    # computing it on first use leaves the attributes (not the dict's contents) as they were
    again = clone(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again.fit(X)
    before = dict(vars(again))
    labels = again.predict_outlier(X)
    assert vars(again) == before and np.mean(labels == -1) == pytest.approx(0.1, abs=0.02)


def test_deferred_offset_refuses_training_data_modified_in_place(monkeypatch):
    import skgenerative.base as base

    monkeypatch.setattr(base, "_DEFER_COPY_BYTES", 0)  # keep a reference, not a copy
    est = clone(ESTIMATORS[3])
    X = data_for(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    X[0, 0] += 1.0
    with pytest.raises(RuntimeError, match="modified in place after fit"):
        est.decision_function(X)


# ------------------------------------------------------- the missing-value contract
def _with_holes(X, rate=0.3, seed=0):
    Xm = X.copy()
    Xm[np.random.RandomState(seed).uniform(size=X.shape) < rate] = np.nan
    return Xm


@pytest.mark.parametrize("dtype", ["auto", "float64", "float32"])
@pytest.mark.parametrize("estimator", MISSING, ids=[type(e).__name__ for e in MISSING])
def test_impute_returns_observed_entries_bit_for_bit(estimator, dtype):
    """Once for every model that accepts NaN (moved from the per-family test files)."""
    X = data_for(estimator)
    Xm = _with_holes(X)
    est = clone(estimator).set_params(dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(Xm)
    for data in (Xm, Xm.astype(np.float32)):
        observed = ~np.isnan(data)
        imputed = est.impute(data)
        assert imputed.dtype == data.dtype
        assert np.array_equal(imputed[observed], data[observed])
        assert np.isfinite(imputed).all()
        draws = est.impute(data, n_draws=4, random_state=0)
        assert draws.shape == (4,) + data.shape
        assert np.array_equal(draws[:, observed], np.broadcast_to(data[observed], (4, observed.sum())))
        assert np.isfinite(draws).all()
    assert np.isfinite(est.score_samples(Xm)).all()
    # a row with every entry missing is filled (from the marginal), never NaN
    assert np.isfinite(est.impute(np.full((1, X.shape[1]), np.nan))).all()
    np.testing.assert_array_equal(est.impute(X), X)  # nothing missing: the identity
    with pytest.raises(ValueError, match="n_draws"):
        est.impute(X, n_draws=0)


@pytest.mark.parametrize("estimator", MISSING, ids=[type(e).__name__ for e in MISSING])
def test_a_column_with_every_entry_missing_is_named(estimator):
    X = data_for(estimator)
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    df["c3"] = np.nan
    with pytest.raises(ValueError, match="'c3'"):
        clone(estimator).fit(df)
    with pytest.raises(ValueError, match="'c3'"):
        GenerativeImputer(clone(estimator)).fit(df)
    Xm = X.copy()
    Xm[:, 2] = np.nan
    with pytest.raises(ValueError, match="Column\\(s\\) 2 "):
        clone(estimator).fit(Xm)


def test_explain_is_the_log_density_minus_the_marginal_of_the_rest(fitted):
    """explain (#16): log p(x) - log p(x_-j), batched, against per-column scores."""
    est, X = fitted
    rows = X[:9]
    E = est.explain(rows)
    assert E.shape == rows.shape and np.isfinite(E).all()
    full = est.score_samples(rows)
    for j in range(rows.shape[1]):
        if est.__sklearn_tags__().input_tags.allow_nan:
            other = rows.copy()
            other[:, j] = np.nan
            expected = full - est.score_samples(other)
        else:  # binary units: the row and the row with bit j flipped
            other = rows.copy()
            other[:, j] = 1 - other[:, j]
            expected = full - np.logaddexp(full, est.score_samples(other))
        np.testing.assert_allclose(E[:, j], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(est.explain(X[4:30])[:5], E[4:], rtol=0, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # names the model was not fitted with
        frame = est.explain(pd.DataFrame(rows, columns=[f"c{j}" for j in range(rows.shape[1])]))
    assert list(frame.columns) == [f"c{j}" for j in range(rows.shape[1])]


# ------------------------------------------------------------ the contract on dask input
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_dask_input_fits_and_evaluates_as_in_memory(estimator):
    """The data source is a layer under every model: a dask array fits and evaluates alike.

    One block without a validation split is the in-memory fit step for step (the
    iterative fits bit for bit; PPCA's closed form to rounding, its covariance being
    merged over the blocks); over four blocks the EM models' statistics are merged across blocks (float64:
    equal to rounding), and every method of rows returns a lazy array equal to the
    in-memory result. (Local synchronous scheduler; tests/test_dask.py uses a cluster.)
    """
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    est = clone(estimator)
    if "early_stopping" in est.get_params():
        est.set_params(early_stopping=False)  # blocks hold out rows of their own
    X = data_for(est)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = clone(est).fit(X)
        one = clone(est).fit(da.from_array(X, chunks=X.shape[0]))
        np.testing.assert_allclose(one.score_samples(X), memory.score_samples(X), rtol=1e-12)
        assert one.offset_ == pytest.approx(memory.offset_, rel=1e-12)
        dX = da.from_array(X, chunks=(X.shape[0] // 4, X.shape[1]))
        if isinstance(est, EMModel):  # statistics merged over the blocks
            e64 = clone(est).set_params(dtype="float64")
            np.testing.assert_allclose(clone(e64).fit(dX).score_samples(X), clone(e64).fit(X).score_samples(X),
                                       rtol=1e-10)
        methods = ["score_samples", "decision_function", "predict_outlier", "transform", "explain"]
        methods += ["impute"] if est.__sklearn_tags__().input_tags.allow_nan else []
        rows = X.copy()
        if "impute" in methods:
            rows[np.random.RandomState(0).uniform(size=X.shape) < 0.2] = np.nan
            rows[np.isnan(rows).all(1), 0] = 0.0
        lazy_rows = da.from_array(rows, chunks=(X.shape[0] // 4, X.shape[1]))
        for method in methods:
            given = rows if method in ("impute", "score_samples", "explain") and "impute" in methods else X
            lazy = getattr(memory, method)(lazy_rows if given is rows else dX)
            assert isinstance(lazy, da.Array), method
            np.testing.assert_allclose(lazy.compute(), getattr(memory, method)(given), rtol=1e-12, err_msg=method)
        assert memory.score(dX) == pytest.approx(memory.score(X), rel=1e-12)


# ------------------------------------------------------------ the contract over tables
def _table_for(estimator, n=160, seed=0):
    """A DataFrame with one column of every type the estimator models, related through a
    latent class (so the models have something to learn), with its column types declared."""
    rng = np.random.RandomState(seed)
    z = rng.randint(2, size=n)
    columns = {
        "real": rng.normal(size=n) + 3.0 * z,
        "positive": np.exp(rng.normal(size=n) + z),
        "count": rng.poisson(2.0 + 4.0 * z),
        "binary": rng.uniform(size=n) < 0.2 + 0.6 * z,
        "categorical": pd.Categorical(np.where(z == 1, rng.choice(["a", "b"], n), rng.choice(["b", "c"], n)),
                                      categories=["a", "b", "c"]),
        "ordinal": pd.Categorical(np.array(["lo", "mid", "hi"])[np.minimum(z + rng.randint(2, size=n), 2)],
                                  categories=["lo", "mid", "hi"], ordered=True),
    }
    supported = estimator._supported_column_types
    frame = pd.DataFrame({name: values for name, values in columns.items() if name in supported})
    declared = {name: name for name in ("positive", "count") if name in frame}
    return frame, declared


@pytest.fixture(params=ESTIMATORS, ids=IDS)
def fitted_table(request):
    estimator = clone(request.param)
    X, declared = _table_for(estimator)
    if declared:
        estimator.set_params(column_types=declared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quick configurations stop before converging
        estimator.fit(X)
    return estimator, X


def test_tables_every_column_type_fits_and_scores(fitted_table):
    est, X = fitted_table
    assert list(est.feature_names_in_) == list(X.columns)
    assert list(est.schema_.types) == [{"real": "real"}.get(c, c) for c in X.columns]
    scores = est.score_samples(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    # deterministic per row: a shuffled subset scores as the whole batch did
    order = np.random.RandomState(1).permutation(len(X))[:37]
    np.testing.assert_allclose(est.score_samples(X.iloc[order]), scores[order], rtol=1e-6, atol=1e-6)
    assert est.score(X) == pytest.approx(scores.mean(), rel=1e-10)
    assert est.transform(X).shape[0] == len(X)


def test_tables_explain_has_one_value_per_column(fitted_table):
    est, X = fitted_table
    parts = est.explain(X.iloc[:25])
    assert isinstance(parts, pd.DataFrame) and list(parts.columns) == list(X.columns)
    assert parts.shape == (25, X.shape[1]) and np.isfinite(parts.to_numpy(float)).all()


def test_tables_sample_keeps_the_dtypes_levels_and_supports(fitted_table):
    est, X = fitted_table
    drawn = est.sample(300, random_state=0)
    if isinstance(drawn, tuple):
        drawn = drawn[0]
    assert list(drawn.columns) == list(X.columns)
    for name in X.columns:
        assert drawn[name].dtype == X[name].dtype, name
        column = drawn[name]
        if isinstance(X[name].dtype, pd.CategoricalDtype):  # the input's categories, only fitted levels
            assert list(column.cat.categories) == list(X[name].cat.categories)
            assert set(column.dropna()) <= set(X[name].dropna()), name
        elif name == "positive":
            assert (column > 0).all()
        elif name == "count":
            assert (column >= 0).all()
    assert set(drawn.columns) and not drawn.isna().any().any()
    again = est.sample(300, random_state=0)
    again = again[0] if isinstance(again, tuple) else again
    pd.testing.assert_frame_equal(drawn, again)  # a seed reproduces the draw


def test_tables_impute_keeps_observed_cells_and_dtypes(fitted_table):
    est, X = fitted_table
    if not est.__sklearn_tags__().input_tags.allow_nan:
        pytest.skip(f"{type(est).__name__} takes no missing cells")
    holes = X.copy()
    rng = np.random.RandomState(2)
    for name in X.columns[:3]:
        holes.loc[rng.uniform(size=len(X)) < 0.2, name] = np.nan
    filled = est.impute(holes)
    assert list(filled.columns) == list(X.columns) and not filled.isna().any().any()
    for name in X.columns:
        assert filled[name].dtype == X[name].dtype, name
        seen = holes[name].notna().to_numpy()
        assert filled[name][seen].tolist() == X[name][seen].tolist(), name


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_tables_on_dask_fit_and_evaluate_as_in_memory(estimator):
    """A dask DataFrame with every column type the model takes: the levels come from the
    known categories, one partition fits as the in-memory table does, and the methods of
    rows return lazy frames equal to the in-memory ones."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    est = clone(estimator)
    X, declared = _table_for(est)
    est.set_params(**({"column_types": declared} if declared else {}),
                   **({"early_stopping": False} if "early_stopping" in est.get_params() else {}))
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = clone(est).fit(X)
        lazy = clone(est).fit(dd.from_pandas(X, npartitions=1))
        assert {k: list(v) for k, v in lazy.schema_.levels.items()} == \
            {k: list(v) for k, v in memory.schema_.levels.items()}
        np.testing.assert_allclose(lazy.score_samples(X), memory.score_samples(X), rtol=1e-6, atol=1e-6)
        parts = dd.from_pandas(X, npartitions=3)
        np.testing.assert_allclose(np.asarray(memory.score_samples(parts).compute()), memory.score_samples(X),
                                   rtol=1e-12)
        explained = memory.explain(parts).compute()
        np.testing.assert_allclose(explained.to_numpy(float), memory.explain(X).to_numpy(float), rtol=1e-12)


def test_a_column_type_the_model_does_not_take_is_named_with_the_public_estimators_that_do():
    from skgenerative import BernoulliRBM, PPCADensity

    X, _ = _table_for(GaussianMixtureDensity())
    with pytest.raises(ValueError, match=r"'cat\w*' \(categorical\)") as info:
        PPCADensity(n_components=1).fit(X)
    named = str(info.value).split("Estimators that model them: ")[1].split(".")[0].split(", ")
    assert named == ["BernoulliRBM", "FlowVAE", "GaussianMixtureDensity", "VariationalAutoencoder"]
    with pytest.raises(ValueError, match=r"'positive' \(positive\), 'count' \(count\)") as info:
        BernoulliRBM(column_types={"positive": "positive", "count": "count"}).fit(X)
    assert "Base" not in str(info.value) and "NeuralGenerativeModel" not in str(info.value)
