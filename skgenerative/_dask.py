"""Dask collections: lazy evaluation and fits from per-block statistics.

Imported by :mod:`skgenerative.base` for :func:`is_dask_collection` only; dask itself is
imported when a dask collection actually arrives, so the package works without it.

Evaluation (``score_samples``, ``decision_function``, ``predict_outlier``, ``predict``,
``transform``, ``predict_proba``, ``impute``) maps the fitted estimator's own method over
the blocks (``map_blocks`` / ``map_partitions``): the result is lazy, has the input's
row partitioning, and every block gets exactly what an in-memory call on it would give
(scores are per row, so the same row gets the same score in any block). A copy of the
estimator, made at call time, travels once to each worker as one graph key.

Fits (:func:`fit`) read the data block by block and never gather it:

- a first pass validates every block and reduces per-column counts, means and centred
  second moments (and the full centred cross moments) with the pairwise update of
  Chan, Golub & LeVeque (1979);
- :class:`~skgenerative.GaussianMixtureDensity`: each EM iteration sends only the
  parameters; each block computes its E-step statistics about its own column mean,
  turns them into per-component weights, means and centred second moments, and the
  blocks are merged as a tree of pairwise Chan updates (precision does not degrade with
  the number of rows); the client runs the model's own M-step. The start is the model's
  own initialisation on a sample of rows (all of them up to :data:`INIT_SAMPLE_ROWS`, so
  that a small collection starts exactly where the in-memory fit starts);
- :class:`~skgenerative.PPCADensity`: the closed form from the merged mean and
  covariance; with missing values, EM whose statistics (already taken about the
  current parameters) are summed as a tree;
- the VAEs: the in-memory training loop over a :class:`BlockStream` (blocks in a seeded
  order, shuffled within), standardised by the first pass's moments;
- ``offset_``: the exact training-score quantile from two passes (:func:`quantile`).

Reference: Chan, Golub & LeVeque (1979), "Updating formulae and a pairwise algorithm for
computing sample variances", https://doi.org/10.1007/978-3-642-51461-6_3
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

__all__ = ["INIT_SAMPLE_ROWS", "fit", "is_dask_collection", "map_rows", "score"]

#: rows drawn (uniformly, without replacement) for an EM model's initialisation; a
#: collection with at most this many rows is initialised on all of them, in order
INIT_SAMPLE_ROWS = 100_000

#: output of each mapped method: "rows" (one value per row) or "wide" (a matrix)
_ROW_METHODS = {"score_samples", "decision_function", "predict_outlier", "predict"}
_INT_METHODS = {"predict_outlier", "predict"}


def is_dask_collection(X) -> bool:
    """Whether ``X`` is a dask collection (array, DataFrame, Series), without importing dask."""
    return hasattr(X, "__dask_graph__") and type(X).__module__.split(".")[0] in ("dask", "dask_expr")


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as error:  # pragma: no cover - a dask collection implies dask
        raise ImportError(
            "skgenerative needs dask to handle dask collections: "
            "pip install 'skgenerative[dask]' (dask[array,dataframe] and distributed)."
        ) from error
    return dask, da


def _is_frame(X) -> bool:
    return hasattr(X, "map_partitions") and hasattr(X, "columns")


def _as_2d_array(X):
    """Rows in blocks, all columns in one chunk (a block is a set of whole rows)."""
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D dask array, got {X.ndim} dimension(s).")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    return X


# ------------------------------------------------------------------ evaluation
def _frozen(estimator):
    """A copy of the fitted estimator as one graph key (later refits do not leak in)."""
    dask, _ = _dask()
    return dask.delayed(copy.deepcopy(estimator), pure=False)


def _output_dtype(estimator, method: str, X) -> np.dtype:
    if method in _INT_METHODS:
        return np.dtype(np.int64)
    if method == "impute" or type(estimator).__name__ == "GenerativeImputer":
        # imputation keeps the input's float dtype (observed entries bit for bit)
        dtype = np.dtype(getattr(X, "dtype", np.float64)) if not _is_frame(X) else np.dtype(np.float64)
        return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return np.dtype(getattr(estimator, "_fit_dtype", "float64"))


def _width(estimator, method: str, n_features: int) -> int:
    if method == "impute":
        return n_features
    return int(len(estimator.get_feature_names_out()))  # transform (predict_proba is one)


def _apply(block, estimator, method, kwargs):
    return getattr(estimator, method)(block, **kwargs)


def _apply_draws(block, estimator, kwargs, seed, block_info=None):
    index = block_info[0]["chunk-location"][0] if block_info else 0
    state = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    return np.asarray(estimator.impute(block, random_state=state, **kwargs))


def _apply_frame(part, estimator, method, kwargs, kind, names, dtype):
    import pandas as pd

    if len(part) == 0:  # empty partitions exist in dask DataFrames
        if kind == "rows":
            return pd.Series(np.empty(0, dtype=dtype), index=part.index, name=method)
        return pd.DataFrame(np.empty((0, len(names)), dtype=dtype), index=part.index, columns=names)
    out = getattr(estimator, method)(part, **kwargs)
    if isinstance(out, (pd.DataFrame, pd.Series)):
        return out.set_axis(part.index, axis=0)
    if kind == "rows":
        return pd.Series(np.asarray(out, dtype=dtype), index=part.index, name=method)
    return pd.DataFrame(np.asarray(out), index=part.index, columns=names)


def map_rows(estimator, method: str, X, **kwargs):
    """``estimator.<method>`` over the blocks of ``X``, lazily, with ``X``'s partitioning.

    A dask array gives a dask array (1-D for per-row methods, ``(n, width)`` else; with
    ``impute(n_draws=m)``, ``(m, n, D)`` whose draws are seeded per block from
    ``random_state`` and the block's index); a dask DataFrame gives a dask Series (per-row
    methods) or DataFrame with the partitions' index.
    """
    _dask()  # a clear ImportError when dask is missing
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    dtype = _output_dtype(estimator, method, X)
    frozen = _frozen(estimator)
    kind = "rows" if method in _ROW_METHODS else "wide"
    if _is_frame(X):
        import pandas as pd

        if kwargs.get("n_draws") is not None:
            raise ValueError(
                "impute(n_draws=...) of a dask DataFrame is not supported: pass "
                "X.to_dask_array(lengths=True) for an array of draws, or n_draws=None."
            )
        if kind == "rows":
            names = None
            meta = pd.Series(np.empty(0, dtype=dtype), name=method)
        else:
            names = list(X.columns) if method == "impute" else [
                str(name) for name in estimator.get_feature_names_out()
            ]
            meta = X._meta if method == "impute" else pd.DataFrame(
                {name: np.empty(0, dtype=dtype) for name in names}
            )
        return X.map_partitions(_apply_frame, frozen, method, kwargs, kind, names, dtype, meta=meta)
    X = _as_2d_array(X)
    if kwargs.get("n_draws") is not None:
        if method != "impute":  # pragma: no cover - only impute draws
            raise ValueError(method)
        from ._torch import seed_from

        seed = seed_from(kwargs.pop("random_state", None))
        n_draws = int(kwargs["n_draws"])
        return X.map_blocks(
            _apply_draws, frozen, kwargs, seed, dtype=dtype, new_axis=0,
            chunks=((n_draws,),) + X.chunks, meta=np.empty((0, 0, 0), dtype=dtype),
        )
    if kind == "rows":
        return X.map_blocks(_apply, frozen, method, kwargs, dtype=dtype, drop_axis=1,
                            meta=np.empty((0,), dtype=dtype))
    width = _width(estimator, method, X.shape[1])
    return X.map_blocks(_apply, frozen, method, kwargs, dtype=dtype,
                        chunks=(X.chunks[0], (width,)), meta=np.empty((0, 0), dtype=dtype))


def score(estimator, X) -> float:
    """Mean log-density over the rows of a dask collection (computed: a number)."""
    return float(map_rows(estimator, "score_samples", X).mean().compute())


# ------------------------------------------------------------- block reductions
#: parts merged by one task of the reduction tree (fewer levels: fewer round trips)
_FAN_IN = 8


def _fold(combine, *parts):
    total = parts[0]
    for part in parts[1:]:
        total = combine(total, part)
    return total


def _tree_reduce(dask, parts: list, combine):
    """Merge delayed ``parts`` as a tree (each task folds up to 8 pairwise), then compute."""
    fold = dask.delayed(_fold, pure=True)
    while len(parts) > 1:
        parts = [fold(combine, *parts[i:i + _FAN_IN]) if len(parts[i:i + _FAN_IN]) > 1 else parts[i]
                 for i in range(0, len(parts), _FAN_IN)]
    return dask.compute(parts[0])[0]


def _blocks(X):
    return list(X.to_delayed().ravel())


def _block_tensor(block) -> torch.Tensor:
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(block))


def _chan(a: dict, b: dict, outer) -> dict:
    """Pairwise merge of (count, mean, centred second moment) records (Chan et al.).

    ``n = n_a + n_b``, ``delta = mean_b - mean_a``, ``mean = mean_a + delta n_b / n``,
    ``M2 = M2_a + M2_b + outer(delta) n_a n_b / n``. A count per component (K,) goes
    with means (K, D); a count per column (D,) with means (D,); a scalar with (D,).
    """
    na, nb = a["count"], b["count"]
    n = na + nb
    safe = torch.where(n > 0, n, torch.ones_like(n))
    delta = b["mean"] - a["mean"]
    weight = nb / safe
    mean = a["mean"] + delta * (weight.unsqueeze(-1) if weight.dim() < delta.dim() else weight)
    m2 = a["m2"] + b["m2"] + outer(delta, na * nb / safe)
    out = {key: a[key] + b[key] for key in a if key not in ("count", "mean", "m2")}
    out.update(count=n, mean=mean, m2=m2)
    return out


def _outer_full(delta, weight):  # (..., D) -> (..., D, D)
    return weight[..., None, None] * delta.unsqueeze(-1) * delta.unsqueeze(-2)


def _outer_tied(delta, weight):  # (K, D) -> (D, D), summed over components
    return torch.einsum("k,kd,ke->de", weight, delta, delta)


def _outer_diag(delta, weight):  # elementwise: (K, D) with (K,), or (D,) with (D,)
    return (weight.unsqueeze(-1) if weight.dim() < delta.dim() else weight) * delta.square()


_OUTER = {"full": _outer_full, "tied": _outer_tied, "diag": _outer_diag, "spherical": _outer_diag}


def _merge_moments(a, b):
    out = {"columns": _chan(a["columns"], b["columns"], _outer_diag)}
    out["rows"] = _chan(a["rows"], b["rows"], _outer_full) if a["rows"] is not None and b["rows"] is not None else None
    out["complete"] = a["complete"] and b["complete"]
    return out


def _block_moments(block, allow_nan: bool, dtype: str, fill, names):
    """Validate a block; its per-column and (complete or filled) full centred moments."""
    from sklearn.utils.validation import check_array

    from .base import check_magnitude

    block = check_array(block, dtype=[np.float64, np.float32], ensure_min_samples=0,
                        ensure_all_finite="allow-nan" if allow_nan else True)
    check_magnitude(block, dtype, names)
    x = torch.from_numpy(np.ascontiguousarray(block)).double()
    observed = ~torch.isnan(x)
    count = observed.sum(0).double()
    zero = torch.zeros_like(x)
    mean = torch.where(observed, x, zero).sum(0) / count.clamp_min(1)
    centred = torch.where(observed, x - mean, zero)
    columns = {"count": count, "mean": mean, "m2": centred.square().sum(0)}
    complete = bool(observed.all())
    rows = None
    if complete or fill is not None:
        filled = x if complete else torch.where(observed, x, torch.as_tensor(fill, dtype=x.dtype))
        n = torch.tensor(float(x.shape[0]), dtype=torch.float64)
        row_mean = filled.mean(0) if x.shape[0] else torch.zeros(x.shape[1], dtype=x.dtype)
        c = filled - row_mean
        rows = {"count": n, "mean": row_mean, "m2": c.T @ c}
    return {"columns": columns, "rows": rows, "complete": complete}


def _moments(estimator, X, fill=None) -> dict:
    """One validating pass: merged column and full moments of every block."""
    dask, _ = _dask()
    allow_nan = estimator._supports_missing
    dtype = estimator._resolved_dtypes()[0]
    names = getattr(estimator, "feature_names_in_", None)
    moments = dask.delayed(_block_moments, pure=True)
    parts = [moments(block, allow_nan, dtype, fill, names) for block in _blocks(X)]
    return _tree_reduce(dask, parts, _merge_moments)


class DistributedData:
    """A model's fit data whose E-step statistics come from dask blocks.

    Attribute reads go to ``local`` (the model's own fit data, built on a sample); the
    EM driver calls :meth:`reduce_statistics` instead of folding local chunks.
    """

    def __init__(self, local, reduce):
        self.local = local
        self._reduce = reduce

    def reduce_statistics(self, params):
        return self._reduce(params)

    def __getattr__(self, name):
        return getattr(self.__dict__["local"], name)


def _row_blocks(estimator, X):
    """Validate a dask collection's metadata on its first rows; a dask array of rows.

    The first block (up to 5000 rows) sets ``n_features_in_``, feature names and the
    column schema as an in-memory fit would; every block is validated in the first pass.
    """
    _dask()  # a clear ImportError when dask is missing
    if _is_frame(X):
        head = X.partitions[0].compute()
        estimator._validate_X(head.iloc[:5000], reset=True)
        if estimator.schema_.has_discrete:
            raise ValueError(
                f"{type(estimator).__name__}.fit of a dask DataFrame takes numeric columns "
                f"only; columns {[n for n, t in zip(estimator.schema_.names, estimator.schema_.types) if t not in ('real',)]} "
                "are discrete (their levels would have to be known in every partition): "
                "encode them first, e.g. with the codes of a known categorical dtype."
            )
        X = X.to_dask_array(lengths=True)
    else:
        X = _as_2d_array(X)
        estimator._validate_X(X.blocks[0][:5000].compute(), reset=True)
    return X


def fit(estimator, X):
    """``estimator.fit`` of a dask collection (the model's ``_fit_blocks`` hook)."""
    from ._torch import adaptive_threads

    fit_blocks = fit_blocks_of(estimator)
    if fit_blocks is None:
        raise TypeError(
            f"{type(estimator).__name__} cannot be fitted on a dask collection; fit it on "
            "a sample in memory, or train it block by block with partial_fit (for instance "
            "under dask_ml.wrappers.Incremental)."
        )
    X = _row_blocks(estimator, X)
    with adaptive_threads():
        estimator._begin_fit()
        try:
            with estimator._training_phase():
                fit_blocks(X)
        except (FloatingPointError, ValueError, RuntimeError) as error:
            if not estimator._retry_in_float64(error):
                raise
            estimator._train_dtype = "float64"
            with estimator._training_phase():
                fit_blocks(X)
    estimator._n_features_out = estimator._n_latent()
    estimator._move_modules(estimator._device)
    _set_offset(estimator, map_rows(estimator, "score_samples", X))
    return estimator


#: values kept per block by the first pass of :func:`quantile`
_SKETCH = 1025


def _sketch(scores):
    values = np.sort(np.asarray(scores, dtype=np.float64))
    m = values.size
    ranks = np.unique(np.round(np.linspace(0, m - 1, min(m, _SKETCH))).astype(np.int64)) if m else np.zeros(0, np.int64)
    return {"n": m, "nan": bool(np.isnan(values).any()), "values": values[ranks], "ranks": ranks}


def _between(scores, lo, hi):
    values = np.asarray(scores, dtype=np.float64)
    return int((values < lo).sum()), np.sort(values[(values >= lo) & (values <= hi)])


def quantile(scores, q: float):
    """The exact ``np.quantile(scores, q)`` (linear interpolation) of a 1-D dask array.

    Two passes, no gathering: each block first sends a sorted sketch (1025 of its values
    with their ranks), which brackets the two order statistics the quantile needs between
    sketch values ``lo`` and ``hi``; the second pass counts the values below ``lo`` and
    sends those in ``[lo, hi]`` (about two in a thousand of the rows).
    """
    dask, _ = _dask()
    sketches = dask.compute(*[dask.delayed(_sketch, pure=True)(b) for b in scores.to_delayed().ravel()])
    if any(s["nan"] for s in sketches):
        return math.nan
    sketches = [s for s in sketches if s["n"]]
    n = sum(s["n"] for s in sketches)
    h = (n - 1) * q
    r0 = int(math.floor(h))
    r1 = min(r0 + 1, n - 1)
    candidates = np.unique(np.concatenate([s["values"] for s in sketches]))
    upper = np.zeros(candidates.size, dtype=np.int64)  # at least count(< c)
    lower = np.zeros(candidates.size, dtype=np.int64)  # at most count(<= c)
    for s in sketches:
        ranks = np.append(s["ranks"], s["n"])
        upper += ranks[np.searchsorted(s["values"], candidates, side="left")]
        j = np.searchsorted(s["values"], candidates, side="right") - 1
        lower += np.where(j >= 0, s["ranks"][np.maximum(j, 0)] + 1, 0)
    ok_lo = np.flatnonzero(upper <= r0)
    lo = candidates[ok_lo[-1]] if ok_lo.size else -np.inf
    ok_hi = np.flatnonzero(lower >= r1 + 1)
    hi = candidates[ok_hi[0]] if ok_hi.size else np.inf
    parts = dask.compute(*[dask.delayed(_between, pure=True)(b, lo, hi) for b in scores.to_delayed().ravel()])
    below = sum(p[0] for p in parts)
    values = np.sort(np.concatenate([p[1] for p in parts]))
    a, b = values[r0 - below], values[r1 - below]
    t = h - r0
    return float(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))  # numpy's lerp


def _set_offset(estimator, scores) -> None:
    """``offset_`` of an estimator from lazy training scores (exact, bounded memory)."""
    offset = quantile(scores, estimator.contamination)
    if math.isnan(offset):
        estimator._check_scores(np.array([np.nan]), "the training data")
    estimator.offset_ = offset


def fit_meta(meta, X, default):
    """``fit`` of GenerativeOutlierDetector / GenerativeImputer on a dask collection.

    The wrapped estimator (an skgenerative model: sklearn's own steps do not take dask
    collections) is fitted on the blocks; the detector's ``offset_`` is the exact
    ``contamination`` quantile of its training scores.
    """
    from .base import clone_with_verbose

    if getattr(meta, "add_indicator", False):
        raise ValueError("GenerativeImputer(add_indicator=True) cannot be fitted on a dask collection.")
    unsupported = [name for name in ("calibration", "feature_bagging") if getattr(meta, name, None) is not None]
    if getattr(meta, "robust", False):
        unsupported.append("robust")
    if unsupported:
        raise ValueError(
            f"{type(meta).__name__}({', '.join(unsupported)}=...) cannot be fitted on a dask "
            "collection yet (they need several fits or held-out rows in memory); fit on the "
            "in-memory array (X.compute()) or leave them at their defaults."
        )
    estimator = default() if meta.estimator is None else meta.estimator
    if not _fits_dask(estimator):
        raise TypeError(
            f"{type(meta).__name__}.fit of a dask collection needs an skgenerative estimator "
            "that fits dask collections (GaussianMixtureDensity, PPCADensity, the VAEs), or a "
            "Pipeline of steps that take dask collections (dask-ml's scalers) ending in one; "
            f"got {type(estimator).__name__} (scikit-learn's own steps would gather the data)."
        )
    meta.estimator_ = clone_with_verbose(estimator, getattr(meta, "verbose", 0)).fit(X)
    meta.n_features_in_ = meta.estimator_.n_features_in_
    if hasattr(meta.estimator_, "feature_names_in_"):
        meta.feature_names_in_ = meta.estimator_.feature_names_in_
    if hasattr(meta, "contamination"):
        _set_offset(meta, map_rows(meta.estimator_, "score_samples", X))
    else:
        meta.indicator_ = None
    return meta


def _fits_dask(estimator) -> bool:
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        middle = [step for _, step in steps[:-1] if step not in (None, "passthrough")]
        return all(not type(step).__module__.startswith("sklearn.") for step in middle) and _fits_dask(steps[-1][1])
    return fit_blocks_of(estimator) is not None


def fit_blocks_of(estimator):
    return getattr(estimator, "_fit_blocks", None)


def partial_fit(estimator, X):
    """``partial_fit`` of each block of a dask collection in turn (computed on the client).

    The same as calling ``partial_fit`` on the blocks one after the other (what
    ``dask_ml.wrappers.Incremental(shuffle_blocks=False)`` does); ``offset_`` then comes
    from the last block's scores, as ``partial_fit`` sets it.
    """
    blocks = X.to_delayed() if _is_frame(X) else _as_2d_array(X).to_delayed().ravel()
    for block in blocks:
        estimator.partial_fit(block.compute())
    return estimator


def _empty_columns(estimator, columns: dict) -> None:
    from .base import check_no_empty_column

    empty = (columns["count"] == 0).numpy()
    if empty.any():
        check_no_empty_column(np.where(empty, np.nan, 0.0)[None, :], getattr(estimator, "feature_names_in_", None))


def _sample_rows(X, n: int, seed: int) -> np.ndarray:
    if n <= INIT_SAMPLE_ROWS:
        return np.asarray(X.compute())
    rows = np.sort(np.random.default_rng(seed).choice(n, INIT_SAMPLE_ROWS, replace=False))
    return np.asarray(X[rows].compute())


# ------------------------------------------------------------------ mixture EM
def _mixture_block(block, center, params, covariance_type, dtype, chunk, incomplete_chunk):
    """E-step statistics of one block as per-component (count, mean, centred moments).

    The block is centred like the in-memory fit (at the data's centre, then cast to the
    training dtype) and shifted again by its own column mean ``s``; the model is
    translation equivariant, so the means move by ``s`` and the precisions stay.
    """
    from ._em import add_statistics
    from ._torch import adaptive_threads, iter_slices
    from .mixture import mixture_statistics

    x = _block_tensor(block)
    xc = (x - center.to(x.dtype)).to(dtype)
    if xc.shape[0] == 0:
        return None
    s = torch.nan_to_num(torch.nanmean(xc.double(), 0)).to(dtype)
    xs = xc - s
    shifted = params._replace(means=params.means - s)
    incomplete = torch.isnan(xs).any(1)
    pieces = []
    if bool(incomplete.any()):
        rows = xs[incomplete]
        pieces += [rows[sl] for sl in iter_slices(rows.shape[0], incomplete_chunk)]
        xs = xs[~incomplete]
    pieces += [xs[sl] for sl in iter_slices(xs.shape[0], chunk)] if xs.shape[0] else []
    total = None
    with torch.inference_mode(), adaptive_threads():
        for piece in pieces:  # sums about the block's own mean s (float64)
            st = mixture_statistics(piece, shifted, covariance_type)
            total = st if total is None else add_statistics(total, st)
    nk, sx, sxx = total["nk"], total["sx"], total["sxx"]
    safe = torch.where(nk > 0, nk, torch.ones_like(nk))
    mean_shift = sx / safe.unsqueeze(1)
    m2 = sxx - _OUTER[covariance_type](mean_shift, nk)  # centred at the block's component means
    return {"log_likelihood": total["log_likelihood"], "n_samples": total["n_samples"],
            "count": nk, "mean": mean_shift + s.double(), "m2": m2}


def _merge_mixture(covariance_type):
    outer = _OUTER[covariance_type]

    def merge(a, b):
        if a is None or b is None:
            return a if b is None else b
        return _chan(a, b, outer)

    return merge


def _mixture_sums(record: dict, covariance_type: str) -> dict:
    """Merged centred moments back to the sums about the centre that the M-step reads."""
    nk, mean = record["count"], record["mean"]
    sxx = record["m2"] + _OUTER[covariance_type](mean, nk)
    return {"log_likelihood": record["log_likelihood"], "n_samples": record["n_samples"],
            "nk": nk, "sx": nk.unsqueeze(1) * mean, "sxx": sxx}


def fit_mixture(estimator, X) -> None:
    """EM of a :class:`~skgenerative.GaussianMixtureDensity` over the blocks of ``X``."""
    from ._torch import chunk_rows, generator_from, seed_from
    from .mixture import _incomplete_chunk_rows, _MixtureFitData, check_initial_parameters

    dask, _ = _dask()
    est = estimator
    n, d = X.shape
    k = est.n_components
    if n < k:
        raise ValueError(f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}")
    init = check_initial_parameters(est.weights_init, est.means_init, est.precisions_init, k, d, est.covariance_type)
    moments = _moments(est, X)
    columns = moments["columns"]
    _empty_columns(est, columns)
    has_missing = not moments["complete"]
    input_dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    dtype = est._dtype
    center = columns["mean"].to(input_dtype)
    prior_variance = (columns["m2"] / columns["count"]).to(dtype)
    seed = seed_from(est.random_state)
    sample = torch.from_numpy(np.ascontiguousarray(_sample_rows(X, n, seed)))
    device = torch.device("cpu")
    local = _MixtureFitData(
        X=(sample.to(input_dtype) - center).to(dtype),
        center=center,
        chunk_size=chunk_rows(est._row_bytes(d) * 2, sample.shape[0], device),
        has_missing=has_missing,
        prior_variance=prior_variance,
        tied_second_moments=torch.zeros(d, d, dtype=dtype),  # in every block's statistics
        init=init,
    )
    cov = est.covariance_type
    chunk = chunk_rows(est._row_bytes(d) * 2, 1 << 40, device)
    incomplete_chunk = _incomplete_chunk_rows(1 << 40, d, torch.finfo(dtype).bits // 8, device)
    statistics = dask.delayed(_mixture_block, pure=True)
    merge = _merge_mixture(cov)

    def reduce(params):
        shipped = dask.delayed(params, pure=False)  # one key: the parameters travel once
        parts = [statistics(block, center, shipped, cov, dtype, chunk, incomplete_chunk) for block in _blocks(X)]
        return _mixture_sums(_tree_reduce(dask, parts, merge), cov)

    est._em_fit(
        DistributedData(local, reduce),
        n_init=est.n_init, max_iter=est.max_iter, tol=est.tol, warm_start=est.warm_start,
        generator=generator_from(seed, device),
    )


# --------------------------------------------------------------------- PPCA
def _ppca_block(block, params, dtype, chunk):
    from ._em import add_statistics
    from ._torch import adaptive_threads, iter_slices
    from .ppca import ppca_statistics

    x = _block_tensor(block).to(dtype)
    total = None
    with torch.inference_mode(), adaptive_threads():
        for sl in iter_slices(x.shape[0], chunk):
            st = ppca_statistics(x[sl], params)
            total = st if total is None else add_statistics(total, st)
    return total


def _add_or_skip(a, b):
    from ._em import add_statistics

    if a is None or b is None:
        return a if b is None else b
    return add_statistics(a, b)


def fit_ppca(estimator, X) -> None:
    """:class:`~skgenerative.PPCADensity` from merged moments (EM over blocks when data are missing)."""
    from ._torch import chunk_rows
    from .ppca import _em_row_bytes, _PPCAFitData

    dask, _ = _dask()
    est = estimator
    n, d = X.shape
    est._check_dimensions(n, d)
    moments = _moments(est, X)
    _empty_columns(est, moments["columns"])
    has_missing = not moments["complete"]
    if has_missing:  # the start: the closed form of the data imputed by column means
        moments = _moments(est, X, fill=moments["columns"]["mean"].numpy())
    rows = moments["rows"]
    dtype = est._dtype
    mean = rows["mean"].to(dtype)
    cov = (rows["m2"] / (n - 1)).to(dtype)
    def em_data(start):  # EM over the blocks, from the closed form of the imputed data
        q = start.loadings.shape[1]
        chunk = chunk_rows(_em_row_bytes(d, q, torch.finfo(dtype).bits // 8), 1 << 40, torch.device("cpu"))
        statistics = dask.delayed(_ppca_block, pure=True)

        def reduce(params):
            shipped = dask.delayed(params, pure=False)
            return _tree_reduce(dask, [statistics(b, shipped, dtype, chunk) for b in _blocks(X)], _add_or_skip)

        return DistributedData(_PPCAFitData(torch.empty(0, d, dtype=dtype), start), reduce)

    est._fit_from_covariance(mean, cov, n, d, em_data if has_missing else None)



# ------------------------------------------------------------ minibatch training
class BlockStream:
    """The training rows of a dask array, read block by block (one at a time, on the client).

    Stands for the training tensor in :class:`skgenerative._training.MinibatchModel`'s
    loop: ``shape`` (the training rows, validation rows left out), ``device``,
    ``has_missing`` (from the first pass) and ``epoch_batches``, which visits the blocks in
    an order drawn from the epoch's generator and shuffles the rows within each block
    (the next block is computed while the current one trains).
    """

    def __init__(self, estimator, X, holdout: list, has_missing: bool):
        self.estimator, self.X, self.holdout = estimator, X, holdout
        self.blocks = _blocks(X)
        n_train = X.shape[0] - sum(len(h) for h in holdout)
        self.shape = (n_train, X.shape[1])
        self.device = torch.device("cpu")
        self.dtype = estimator._dtype
        self.has_missing = has_missing

    def block(self, index: int) -> torch.Tensor:
        """Block ``index``'s training rows, as the model trains on them."""
        x = _block_tensor(self.blocks[index].compute())
        keep = self.holdout[index]
        if len(keep):
            mask = torch.ones(x.shape[0], dtype=torch.bool)
            mask[keep] = False
            x = x[mask]
        return self.estimator._training_data(x).to(self.dtype)

    def epoch_batches(self, batch_size: int, generator: torch.Generator):
        from concurrent.futures import ThreadPoolExecutor

        from ._torch import iter_slices

        order = torch.randperm(len(self.blocks), generator=generator).tolist()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.block, order[0])
            for position in range(len(order)):
                data = pending.result()
                if position + 1 < len(order):
                    pending = pool.submit(self.block, order[position + 1])
                rows = torch.randperm(data.shape[0], generator=generator)
                for sl in iter_slices(data.shape[0], batch_size):
                    yield data[rows[sl]]


def _holdout(estimator, X) -> list:
    """Per block, the row indices held out for validation (seeded by the block's index)."""
    fraction = estimator.validation_fraction
    n = X.shape[0]
    if not estimator.early_stopping or int(math.floor(fraction * n)) < 1 or n - int(math.floor(fraction * n)) < 1:
        return [[] for _ in X.chunks[0]]
    out = []
    for index, m in enumerate(X.chunks[0]):
        generator = torch.Generator().manual_seed(estimator._seed(estimator._SPLIT, index))
        out.append(torch.randperm(m, generator=generator)[: int(math.floor(fraction * m))].tolist())
    return out


def _validation_rows(estimator, X, holdout) -> torch.Tensor | None:
    if not any(len(h) for h in holdout):
        return None
    dask, _ = _dask()
    take = dask.delayed(lambda block, rows: np.asarray(block)[rows], pure=True)
    parts = dask.compute(*[take(b, h) for b, h in zip(_blocks(X), holdout) if len(h)])
    rows = _block_tensor(np.concatenate(parts))
    return estimator._training_data(rows).to(estimator._dtype)


def fit_minibatch(estimator, X) -> None:
    """A neural model trained by streaming over the blocks of ``X``.

    The first pass validates every block and gives the columns' moments, from which the
    standardisation is set (statistics of all the data, not of the first block). Each
    block holds out ``validation_fraction`` of its rows (seeded by its index) when
    ``early_stopping`` is on; they are gathered on the client and early stopping runs as
    in memory. The loop is the in-memory one (:mod:`._training`), given a
    :class:`BlockStream` for its training tensor.
    """
    est = estimator
    n, d = X.shape
    moments = _moments(est, X)
    columns = moments["columns"]
    if est._supports_missing:
        _empty_columns(est, columns)
    input_dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    head = _block_tensor(X[: min(n, 1000)].compute()).to(input_dtype)
    est._initialize(head)  # the seeds and the module (its shapes)
    if getattr(est, "likelihood", None) == "gaussian" and hasattr(est, "_set_standardisation"):
        scale = torch.sqrt(columns["m2"] / columns["count"].clamp_min(1))
        est._set_standardisation(columns["mean"], scale, input_dtype)
        est._cache.clear()
    holdout = _holdout(est, X)
    valid = _validation_rows(est, X, holdout)
    train = BlockStream(est, X, holdout, has_missing=not moments["complete"])
    est._fit_loop(train, valid, est._n_epochs(train.shape[0]))
