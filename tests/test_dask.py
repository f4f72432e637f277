"""Dask collections on a real distributed cluster: lazy outputs and block-wise fits (#15, #21).

One ``LocalCluster`` (two worker processes, one thread each, 1 GiB each) serves the
module. Fits on dask collections are compared with in-memory fits of the same data
(float64, same start: parameters to 1e-10 relative); lazy outputs with in-memory
outputs, block for block; the task stream shows that both workers ran tasks. Mixed
DataFrames, the default wrappers and the RBM fit through the same data-source layer;
the per-estimator contract on dask input runs in test_common.py (no cluster).
"""

import contextlib
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from skgenerative.impute import default_imputation_estimator  # noqa: E402
from skgenerative import (  # noqa: E402
    DiscreteDataWarning,
    BernoulliRBM,
    FlowVAE,
    GaussianMixtureDensity,
    GenerativeImputer,
    GenerativeOutlierDetector,
    PPCADensity,
    VariationalAutoencoder,
    _sources,
)


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
            dashboard_address=None,
        )
        c = distributed.Client(cluster)
        c.run(lambda: __import__("skgenerative") and None)  # workers import torch once, here
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _data(n=900, d=4, missing=0.0, seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(-2, 1, (n // 2, d)), rng.normal(2, 0.5, (n - n // 2, d))])
    X[:, 1] += 0.3 * X[:, 0]
    X = X[rng.permutation(n)]
    if missing:
        X[rng.rand(n, d) < missing] = np.nan
        X[np.isnan(X).all(1), 0] = 0.0
    return X


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _workers(stream) -> set:
    return {task["worker"] for task in stream.data}


_PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


@pytest.mark.parametrize("covariance_type, missing, n_init", [
    ("full", 0.0, 2), ("full", 0.1, 1), ("tied", 0.1, 1), ("diag", 0.1, 1), ("spherical", 0.1, 1),
])
def test_mixture_em_equals_in_memory(client, covariance_type, missing, n_init):
    # with 10% of entries missing a third of the rows are incomplete: both E-step paths
    X = _data(missing=missing)
    kw = dict(n_components=2, covariance_type=covariance_type, dtype="float64", n_init=n_init,
              tol=0.0, max_iter=6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        memory = GaussianMixtureDensity(**kw).fit(X)
        with distributed.get_task_stream(client) as stream:
            blocks = GaussianMixtureDensity(**kw).fit(da.from_array(X, chunks=(150, 2)))
    assert _workers(stream) == set(client.scheduler_info()["workers"])  # both ran tasks
    for name in _PARAMS:
        assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
    assert blocks.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(blocks.lower_bounds_, memory.lower_bounds_, rtol=1e-12)
    assert blocks.offset_ == pytest.approx(memory.offset_, rel=1e-12)


def test_mixture_sampled_init_user_start_and_warm_start(client, monkeypatch):
    """Above INIT_SAMPLE_ROWS the start comes from a sample; user parameters override it."""
    monkeypatch.setattr(_sources, "INIT_SAMPLE_ROWS", 200)
    X = _data(n=1200)
    ref = GaussianMixtureDensity(2, covariance_type="full", dtype="float64", random_state=0).fit(X)
    kw = dict(n_components=2, dtype="float64", tol=0.0, max_iter=5, random_state=1,
              weights_init=ref.weights_, means_init=ref.means_ + 0.3, precisions_init=ref.precisions_)
    dX = da.from_array(X, chunks=(300, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        memory = GaussianMixtureDensity(**kw).fit(X)
        blocks = GaussianMixtureDensity(**kw).fit(dX)
        for name in _PARAMS:
            assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
        # warm start continues from the fitted parameters, on both paths
        memory.set_params(warm_start=True, max_iter=3).fit(X)
        blocks.set_params(warm_start=True, max_iter=3).fit(dX)
    for name in _PARAMS:
        assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
    # k-means on a 200-row sample still finds the two clusters
    sampled = GaussianMixtureDensity(2, dtype="float64", random_state=0).fit(dX)
    np.testing.assert_allclose(np.sort(sampled.means_[:, 0]), np.sort(ref.means_[:, 0]), rtol=1e-6)


@pytest.mark.parametrize("missing", [0.0, 0.1])
def test_ppca_equals_in_memory(client, missing):
    X = _data(missing=missing, d=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        memory = PPCADensity(n_components=2, max_iter=8).fit(X)
        blocks = PPCADensity(n_components=2, max_iter=8).fit(da.from_array(X, chunks=(200, 5)))
    for name in ("mean_", "components_", "explained_variance_", "noise_variance_"):
        assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
    assert blocks.n_iter_ == memory.n_iter_
    if missing:
        return
    # n_components=None: Minka's choice from the same spectrum
    assert PPCADensity().fit(da.from_array(X, chunks=200)).n_components_ == PPCADensity().fit(X).n_components_


def test_lazy_outputs_same_partitioning(client):
    X = _data(missing=0.05)
    model = GaussianMixtureDensity(3, random_state=0).fit(X)
    dX = da.from_array(X, chunks=(200, 4))
    cases = {
        "score_samples": model.score_samples, "decision_function": model.decision_function,
        "predict_outlier": model.predict_outlier, "predict": model.predict,
        "transform": model.transform, "predict_proba": model.predict_proba, "impute": model.impute,
    }
    with distributed.get_task_stream(client) as stream:
        for name, method in cases.items():
            lazy = method(dX)
            assert isinstance(lazy, da.Array), name
            assert lazy.chunks[0] == dX.chunks[0], name
            got = lazy.compute()
            expected = method(X)
            assert got.dtype == expected.dtype and got.shape == expected.shape, name
            # per-row results: the same as in memory up to the batch-invariance of scores
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=name)
    assert len(_workers(stream)) == 2
    assert model.score(dX) == pytest.approx(model.score(X), rel=1e-12)
    assert isinstance(model.score(dX), float)
    draws = model.impute(dX, n_draws=2, random_state=0)
    assert draws.shape == (2,) + X.shape and draws.chunks[1] == dX.chunks[0]
    values = draws.compute()
    observed = ~np.isnan(X)
    assert np.array_equal(values[:, observed], np.broadcast_to(X[observed], (2, observed.sum())))
    assert not np.isnan(values).any()
    np.testing.assert_array_equal(values, model.impute(dX, n_draws=2, random_state=0).compute())


def test_dataframe_fit_and_lazy_series(client):
    X = _data()
    frame = pd.DataFrame(X, columns=list("abcd"))
    ddf = dd.from_pandas(frame, npartitions=4)
    kw = dict(n_components=2, dtype="float64", random_state=0)
    memory = GaussianMixtureDensity(**kw).fit(frame)
    blocks = GaussianMixtureDensity(**kw).fit(ddf)
    assert list(blocks.feature_names_in_) == list("abcd")
    for name in _PARAMS:
        assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
    scores = blocks.score_samples(ddf)
    assert isinstance(scores, dd.Series) and scores.npartitions == ddf.npartitions
    pd.testing.assert_index_equal(scores.compute().index, frame.index)
    np.testing.assert_allclose(scores.compute().to_numpy(), memory.score_samples(frame), rtol=1e-12)
    Z = blocks.transform(ddf)
    assert isinstance(Z, dd.DataFrame) and Z.npartitions == ddf.npartitions
    np.testing.assert_allclose(Z.compute().to_numpy(), memory.transform(frame), rtol=1e-9, atol=1e-12)
    # unknown divisions (e.g. after a filter) are fine too
    filtered = ddf[ddf["a"] > -100].clear_divisions()
    assert blocks.score(filtered) == pytest.approx(memory.score(frame), rel=1e-12)


def test_fitted_model_pickles_and_scores_numpy(client):
    X = _data()
    model = GaussianMixtureDensity(2, random_state=0).fit(da.from_array(X, chunks=300))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(again.score_samples(da.from_array(X, chunks=100)).compute(),
                                  model.score_samples(X))


def test_detector_and_imputer(client):
    X = _data(missing=0.1)
    dX = da.from_array(X, chunks=(300, 4))
    gmm = GaussianMixtureDensity(2, dtype="float64", random_state=0)
    memory = GenerativeOutlierDetector(gmm, contamination=0.05).fit(X)
    blocks = GenerativeOutlierDetector(gmm, contamination=0.05).fit(dX)
    assert blocks.offset_ == pytest.approx(memory.offset_, rel=1e-10)
    labels = blocks.predict(dX)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), memory.predict(X))
    imputer = GenerativeImputer(gmm).fit(dX)
    filled = imputer.transform(dX)
    assert isinstance(filled, da.Array) and filled.chunks == dX.chunks
    np.testing.assert_allclose(filled.compute(), GenerativeImputer(gmm).fit(X).transform(X), rtol=1e-10)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(TypeError, match="dask collection"):  # scikit-learn's scaler would gather
        GenerativeOutlierDetector(make_pipeline(StandardScaler(), gmm)).fit(dX)


def _table(n=600, seed=0, missing=0.1):
    """Every column type a mixture takes, missing cells in each; strings get their levels in one pass."""
    rng = np.random.RandomState(seed)
    t = rng.normal(size=n)
    df = pd.DataFrame({
        "a": t + 0.3 * rng.normal(size=n),
        "inc": np.where(rng.uniform(size=n) < 0.2, 0.0, np.exp(1.0 + 0.5 * t + 0.3 * rng.normal(size=n))),
        "k": pd.array(rng.poisson(np.exp(0.5 * t + 1.0)), dtype="Int64"),
        "flag": pd.array((t + 0.5 * rng.normal(size=n)) > 0, dtype="boolean"),
        "shop": pd.Categorical(np.array(["hi", "lo", "mid"])[np.where(rng.uniform(size=n) < 0.8, (t > 0) * 1, 2)],
                               categories=["hi", "lo", "mid", "never"]),  # a category never used
        "size": pd.Categorical(np.digitize(t + 0.3 * rng.normal(size=n), [-1.0, 0.0, 1.0]).astype(str),
                               categories=["0", "1", "2", "3"], ordered=True),
        "city": np.array(["Oslo", "Lima", "Pune"], dtype=object)[rng.randint(3, size=n)],
    })
    for column in df.columns:
        df.loc[rng.uniform(size=n) < missing, column] = None
    return df


def test_mixed_dataframe_fits_like_the_table_in_memory(client):
    """Categorical (known categories), ordinal, boolean and string columns with missing cells."""
    df = _table()
    ddf = dd.from_pandas(df, npartitions=4)
    assert ddf["shop"].cat.known
    kw = dict(n_components=3, dtype="float64", tol=0.0, max_iter=6, random_state=0,
              column_types={"inc": "positive", "k": "count"})  # a zero mass in inc, a Poisson k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        memory = GaussianMixtureDensity(**kw).fit(df)
        blocks = GaussianMixtureDensity(**kw).fit(ddf)
    for name in df.columns:  # the levels of the whole table: known categories, or one pass
        if name in memory.schema_.levels:
            assert list(blocks.schema_.levels[name]) == list(memory.schema_.levels[name]), name
    assert list(blocks.schema_.levels["shop"]) == ["hi", "lo", "mid", "never"]
    assert blocks.schema_.types == memory.schema_.types and blocks.schema_.n_samples == len(df)
    for name in _PARAMS:
        assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
    for a, b in zip(blocks.level_probabilities_ + [blocks.zero_probabilities_, blocks.count_rates_],
                    memory.level_probabilities_ + [memory.zero_probabilities_, memory.count_rates_]):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert memory.zero_probabilities_.min() > 0 and memory.count_rates_.shape == (3, 1)
    assert blocks.offset_ == pytest.approx(memory.offset_, rel=1e-10)
    scores = blocks.score_samples(ddf)
    assert isinstance(scores, dd.Series)
    np.testing.assert_allclose(scores.compute().to_numpy(), memory.score_samples(df), rtol=1e-10)
    explained = blocks.explain(ddf)
    assert isinstance(explained, dd.DataFrame) and list(explained.columns) == list(df.columns)
    np.testing.assert_allclose(explained.compute().to_numpy(), memory.explain(df).to_numpy(), rtol=1e-9)
    filled = blocks.impute(ddf)
    assert isinstance(filled, dd.DataFrame)
    expected = memory.impute(df)
    got = filled.compute()
    for name in df.columns:
        if name in ("a", "inc", "k"):
            np.testing.assert_allclose(got[name].to_numpy(dtype=float), expected[name].to_numpy(dtype=float), rtol=1e-9)
        else:
            assert got[name].astype(object).tolist() == expected[name].astype(object).tolist(), name
    with pytest.raises(ValueError, match="positive"):  # a block breaking a declared type is found
        bad = df.copy()
        bad.loc[599, "inc"] = -1.0
        GaussianMixtureDensity(**kw).fit(dd.from_pandas(bad, npartitions=4))


def test_default_detector_and_imputer_on_dask_arrays_and_frames(client):
    """The defaults fit dask input as they fit it in memory (float32 training: equal to its rounding)."""
    X = _data(missing=0.05)
    df = _table(n=400)
    for data, lazy in ((X, da.from_array(X, chunks=(300, 4))), (df, dd.from_pandas(df, npartitions=2))):
        # the table's integer column 'k' (12 values, not declared count) is modelled as real: the user is told
        def expect():
            return pytest.warns(DiscreteDataWarning, match="'k'") if data is df else contextlib.nullcontext()

        with expect():
            memory = GenerativeOutlierDetector().fit(data)
        with expect():
            blocks = GenerativeOutlierDetector().fit(lazy)
        assert blocks.offset_ == pytest.approx(memory.offset_, rel=1e-5)
        decision = blocks.decision_function(lazy).compute()
        np.testing.assert_allclose(np.asarray(decision), memory.decision_function(data), rtol=1e-4, atol=1e-4)
        scaler = blocks.estimator_[0].scaler_  # from the blocks' column moments
        np.testing.assert_allclose(scaler.scale_, memory.estimator_[0].scaler_.scale_, rtol=1e-12)
        # the power transform's exponents and atoms, from passes over the blocks
        np.testing.assert_array_equal(blocks.estimator_[0].lambdas_, memory.estimator_[0].lambdas_)
        np.testing.assert_allclose(blocks.estimator_[0].atom_share_, memory.estimator_[0].atom_share_)
        assert blocks.default_choice_ == memory.default_choice_
        explained = blocks.explain(lazy).compute()
        np.testing.assert_allclose(np.asarray(explained, dtype=float), np.asarray(memory.explain(data), dtype=float),
                                   rtol=1e-4, atol=1e-4)
        with expect():
            imputer = GenerativeImputer().fit(lazy)
        filled = imputer.transform(lazy).compute()
        # the blocks are not gathered for held-out folds or cells: a dask fit is the fixed
        # model (numbers: one the in-memory default chooses among; tables: the former
        # mixed default, without the stack and the zero-inflation rule; see the Notes)
        assert imputer.selection_ is None and len(imputer.estimators_) == 1
        fixed = default_imputation_estimator(mixed=isinstance(data, pd.DataFrame))
        with expect():
            expected = GenerativeImputer(fixed).fit(data).transform(data)
        if isinstance(expected, pd.DataFrame):
            assert list(filled.columns) == list(expected.columns) and not filled.isna().any().any()
            numbers = ["a", "inc"]
            np.testing.assert_allclose(filled[numbers].to_numpy(float), expected[numbers].to_numpy(float), rtol=1e-4)
        else:
            np.testing.assert_allclose(filled, expected, rtol=1e-4, atol=1e-4)


def test_pipeline_with_dask_ml_scaler(client):
    """A Pipeline whose other steps take dask (dask-ml's scaler) runs end to end, lazily."""
    preprocessing = pytest.importorskip("dask_ml.preprocessing")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = _data(n=600, d=3) * 5 + 100
    dX = da.from_array(X, chunks=(200, 3))
    gmm = GaussianMixtureDensity(2, dtype="float64", random_state=0)
    lazy = make_pipeline(preprocessing.StandardScaler(), gmm).fit(dX)
    memory = make_pipeline(StandardScaler(), gmm).fit(X)
    scores = lazy.score_samples(dX)
    assert isinstance(scores, da.Array) and scores.chunks[0] == dX.chunks[0]
    np.testing.assert_allclose(scores.compute(), memory.score_samples(X), rtol=1e-10)
    detector = GenerativeOutlierDetector(make_pipeline(preprocessing.StandardScaler(), gmm)).fit(dX)
    assert detector.offset_ == pytest.approx(GenerativeOutlierDetector(memory).fit(X).offset_, rel=1e-10)
    np.testing.assert_array_equal(detector.predict(dX).compute(),
                                  GenerativeOutlierDetector(memory).fit(X).predict(X))


def test_incremental_partial_fit(client):
    """dask-ml's Incremental feeds the blocks to partial_fit, in order without shuffling."""
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X = (np.random.RandomState(0).rand(400, 6) > 0.5).astype(float)
    dX = da.from_array(X, chunks=(100, 6))
    rbm = BernoulliRBM(n_components=3, random_state=0, dtype="float64")
    inc = wrappers.Incremental(rbm, shuffle_blocks=False).fit(dX)
    manual = BernoulliRBM(n_components=3, random_state=0, dtype="float64")
    for start in range(0, 400, 100):
        manual.partial_fit(X[start:start + 100])
    np.testing.assert_array_equal(inc.estimator_.components_, manual.components_)
    np.testing.assert_array_equal(inc.estimator_.score_samples(X), manual.score_samples(X))
    # partial_fit of a dask array itself: the same calls, block by block
    direct = BernoulliRBM(n_components=3, random_state=0, dtype="float64").partial_fit(dX)
    np.testing.assert_array_equal(direct.components_, manual.components_)


def test_rbm_fits_the_blocks(client):
    """BernoulliRBM.fit of a dask array: epochs stream over the blocks, as the VAEs do."""
    X = (np.random.RandomState(0).rand(400, 6) > 0.5).astype(float)
    dX = da.from_array(X, chunks=(100, 6))
    kw = dict(n_components=3, max_iter=4, batch_size=10, random_state=0, dtype="float64")
    rbm = BernoulliRBM(**kw).fit(dX)
    memory = BernoulliRBM(**kw).fit(X)
    np.testing.assert_array_equal(rbm.visible_marginals_, X.mean(0))  # over all the blocks
    assert rbm.n_samples_seen_ == 400 and rbm.n_updates_ == memory.n_updates_ == 4 * 40
    assert rbm.log_partition_method_ == "exact" and np.isfinite(rbm.score_samples(X)).all()
    assert rbm.offset_ == pytest.approx(np.quantile(rbm.score_samples(X), 0.1), rel=1e-12)
    again = BernoulliRBM(**kw).fit(dX)  # seeded block order and shuffles: reproducible
    np.testing.assert_array_equal(again.components_, rbm.components_)
    # the first 5000 rows set the encoding (binarize='auto': these lie in [0, 1], so
    # they are used as they are); a later block outside [0, 1] is found where it is
    late = np.vstack([np.tile(X, (13, 1)), [[2.0] * 6]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BernoulliRBM(**kw).fit(da.from_array(late, chunks=(1000, 6)))


@pytest.mark.parametrize("cls", [VariationalAutoencoder, FlowVAE])
def test_neural_training_streams_over_blocks(client, cls):
    X = _data(n=400, missing=0.05) * 3 + 10
    kw = dict(n_components=2, hidden_layer_sizes=(8,), random_state=0)
    # one block, no validation: the very loop of the in-memory fit, step for step
    one = cls(max_iter=3, early_stopping=False, batch_size=50, **kw).fit(da.from_array(X, chunks=400))
    memory = cls(max_iter=3, early_stopping=False, batch_size=50, **kw).fit(X)
    assert [h["train_loss"] for h in one.history_] == [h["train_loss"] for h in memory.history_]
    np.testing.assert_allclose(one.score_samples(X), memory.score_samples(X), rtol=1e-12)
    # four blocks, early stopping on held-out rows of every block
    dX = da.from_array(X, chunks=(100, 4))
    blocks = cls(max_iter=4, **kw).fit(dX)
    np.testing.assert_allclose(blocks.mean_, memory.mean_, rtol=1e-12)  # standardised by all rows
    np.testing.assert_allclose(blocks.scale_, memory.scale_, rtol=1e-12)
    assert blocks.n_iter_ == 4 and all(np.isfinite(h["validation_loss"]) for h in blocks.history_)
    assert np.isfinite(blocks.offset_)
    # seeded block order, shuffles and flow initialisation: reproducible, FlowVAE included
    again = cls(max_iter=4, **kw).fit(dX)
    assert [h["train_loss"] for h in again.history_] == [h["train_loss"] for h in blocks.history_]
    for key, value in blocks.module_.state_dict().items():
        assert torch.equal(value, again.module_.state_dict()[key]), key


def test_gridsearch_on_the_cluster(client):
    import joblib
    from sklearn.model_selection import GridSearchCV

    X = _data(n=300)
    grid = GridSearchCV(GaussianMixtureDensity(random_state=0), {"n_components": [1, 2, 3]}, cv=3)
    with distributed.get_task_stream(client) as stream, joblib.parallel_config("dask"):
        grid.fit(X)
    # the 9 fits ran on the workers, in joblib's batches of calls
    batches = [task for task in stream.data if "batch_of" in str(task["key"])]
    assert batches and {task["worker"] for task in batches} <= set(client.scheduler_info()["workers"])
    local = GridSearchCV(GaussianMixtureDensity(random_state=0), {"n_components": [1, 2, 3]}, cv=3).fit(X)
    assert grid.best_params_ == local.best_params_
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])


def test_import_without_dask():
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None\n"
        "import numpy as np, skgenerative\n"
        "m = skgenerative.GaussianMixtureDensity(2, random_state=0).fit(np.random.rand(50, 2))\n"
        "print(m.score(np.random.rand(5, 2)) < 10)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("sketch", [1025, 3])
def test_offset_quantile_is_exact(client, monkeypatch, sketch):
    """offset_'s two-pass quantile equals np.quantile, ties and tiny sketches included."""
    monkeypatch.setattr(_sources, "_SKETCH", sketch)
    rng = np.random.RandomState(0)
    x = rng.normal(size=3000)
    x[rng.rand(3000) < 0.3] = 0.5
    for q in (0.0, 0.05, 0.1, 0.37, 1.0):
        assert _sources.quantile(da.from_array(x, chunks=700), q) == np.quantile(x, q)


def test_detector_options_that_need_memory_are_refused_by_name(client):
    X = da.from_array(np.random.RandomState(0).normal(size=(200, 3)), chunks=100)
    for option in (dict(calibration=0.2), dict(robust=True), dict(feature_bagging=3)):
        name = next(iter(option))
        with pytest.raises(ValueError, match=name):
            GenerativeOutlierDetector(GaussianMixtureDensity(2, random_state=0), **option).fit(X)


def test_column_types_on_a_dask_array():
    """column_types on a dask array: levels of the declared columns from one pass, as in memory."""
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.normal(size=300), rng.normal(size=300), rng.choice([3.0, 7.0, 9.0], size=300)])
    X[:, 0] += X[:, 2]
    kw = dict(n_components=2, column_types={2: "categorical"}, random_state=0, dtype="float64")
    import dask

    with dask.config.set(scheduler="synchronous"):
        memory = GaussianMixtureDensity(**kw).fit(X)
        blocks = GaussianMixtureDensity(**kw).fit(da.from_array(X, chunks=(100, 3)))
        assert list(blocks.schema_.levels["2"]) == [3.0, 7.0, 9.0] and not blocks.schema_.from_frame
        for name in _PARAMS:
            assert _rel(getattr(blocks, name), getattr(memory, name)) < 1e-10, name
        np.testing.assert_allclose(blocks.score_samples(da.from_array(X, chunks=100)).compute(),
                                   memory.score_samples(X), rtol=1e-12)
