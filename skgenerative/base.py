"""The contract every skgenerative estimator shares, written once.

:class:`GenerativeModel` owns the scikit-learn side: parameter and data validation,
conversion of numpy / pandas / list / torch input, device and dtype, evaluation in
bounded chunks, the outlier threshold, sampling, feature names, pickling across
devices and tags. Its parts are mixins in this module, each one idea:
:class:`TorchBackendMixin` (device, dtypes, tensors, chunked evaluation),
:class:`TableColumnsMixin` (the column schema: tables in and back),
:class:`ImputationMixin` (impute, impute_proba, explain) and
:class:`OutlierThresholdMixin` (offset_, decision_function, predict_outlier, shared
with :class:`~skgenerative.GenerativeOutlierDetector`). A model file supplies only its mathematics through a few hooks
(template method):

``_fit(source)``
    Fit on the training rows, read through their data source
    (:mod:`skgenerative._sources`: a tensor in memory, or the blocks of a dask
    collection) and never by asking which: column moments, reductions of per-chunk
    statistics, minibatches, a sample of rows. The rows are validated and encoded
    (level codes for discrete columns, NaN where missing) in their own float dtype
    (tensors may share memory with the caller's array: hooks never modify them in
    place); the model casts to the compute dtype after centring. May return the
    training log-densities (a tensor) when they come for free; otherwise the base
    scores the training data to set ``offset_``.
``_log_prob(X)``
    Log-density of each row of a chunk, in nats, in the units of the input.
``_encode(X)``
    The latent representation that ``transform`` returns.
``_sample(n, generator)``
    ``n`` draws from the fitted model.
``_decode(Z)`` (optional)
    Map latent vectors back to data space; enables ``inverse_transform``.
``_n_latent()``
    Width of ``transform``'s output (``n_components`` unless overridden).
``_fit_input_encoding(X)`` (optional)
    At fit, on the validated input, learn how the model reads raw values (the RBM's
    binarisation thresholds); runs before ``_check_values``.
``_check_values(X)`` (optional)
    Model-specific checks on validated input (values in each column family's support).
``_row_bytes(n_features)`` (optional)
    Temporary memory one row needs while it is evaluated; sets the chunk size.
``_impute(X, n_draws, generator)`` (models with ``_supports_missing = True``)
    For rows with NaN: the conditional mean of the missing entries given the observed
    ones, shape (n, D), or ``n_draws`` draws from that conditional, shape
    (n, n_draws, D). Observed entries are restored by the base afterwards. Such models
    also accept NaN in ``_fit``, ``_log_prob`` (the log-density of the observed entries)
    and ``_encode``.
``_explain(X)`` (optional)
    ``log p(x_j | x_-j)`` for every cell of a chunk, shape (n, D). The default sets
    each column missing in turn (one pass per column over the whole chunk) and
    subtracts: models with ``_supports_missing`` get it for free; a model without
    NaN support (the RBM) supplies its own closed form.
``_partial_fit(X, first)`` (optional)
    Continue fitting on a chunk of data (``first`` on the call that starts the
    model); enables ``partial_fit``. Returns like ``_fit``.

**Dask.** :func:`on_blocks` is the one place that tells a dask collection from data
in memory: ``fit`` of a dask collection reads it through a
:class:`~skgenerative._sources.DaskSource` whose blocks are validated where they are,
as ``fit`` validates data in memory, and the methods of rows return lazy dask
collections (:func:`lazy_rows`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    DensityMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._progress import Progress
from ._schema import DISCRETE_TYPES, NUMERIC_TYPES, TableSchema, is_dataframe, merge_observed, point_levels
from ._sources import DaskSource, TensorSource, is_dask_collection, map_rows, quantile
from ._torch import (
    adaptive_threads,
    chunk_rows,
    generator_from,
    has_nan,
    iter_slices,
    resolve_device,
    resolve_dtype,
    seed_from,
    to_numpy_input,
)
from .distributions import FAMILIES

__all__ = [
    "DiscreteDataWarning",
    "GenerativeModel",
    "OutlierThresholdMixin",
    "check_magnitude",
    "check_no_empty_column",
    "fit_wrapped_on_blocks",
    "lazy_rows",
    "on_blocks",
    "warn_if_discrete",
]


# ------------------------------------------------------------------ dask input
def on_blocks(lazy):
    """Decorator: the one place that tells a dask collection from data in memory.

    A method ``method(self, X, ...)`` so decorated runs as written on data in memory;
    given a dask collection ``X`` it returns ``lazy(self, "method", X, arguments)``
    instead (``lazy`` a function, or the name of a method of ``self`` called as
    ``self.<lazy>("method", X, arguments)``), with ``arguments`` the method's other
    arguments by name.
    """

    def decorate(method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def dispatch(self, X, *args, **kwargs):
            if not is_dask_collection(X):
                return method(self, X, *args, **kwargs)
            bound = signature.bind(self, X, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(list(bound.arguments.items())[2:])
            arguments.pop("y", None)
            if isinstance(lazy, str):
                return getattr(self, lazy)(method.__name__, X, arguments)
            return lazy(self, method.__name__, X, arguments)

        return dispatch

    return decorate


#: rows of a dask collection that set the features, names and column schema
_HEAD_ROWS = 5000
#: methods that give one value per row, and those whose value is an integer label
_ROW_METHODS = {"score_samples", "decision_function", "predict_outlier", "predict"}
_LABEL_METHODS = {"predict_outlier", "predict"}


def _input_float_dtype(X) -> np.dtype:
    dtype = np.dtype(getattr(X, "dtype", np.float64)) if hasattr(X, "ndim") else np.dtype(np.float64)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def lazy_output(owner, method: str, X, arguments: dict) -> dict:
    """What ``owner.<method>`` gives per row (see :func:`._sources.map_rows`).

    Per-row scores in the fitted evaluation dtype, labels as integers, ``transform``
    the columns of ``get_feature_names_out()``, ``impute`` rows like the input (or
    ``n_draws`` of them) in the input's float dtype. A class whose method gives
    something else defines ``_lazy_output(method, X, arguments)``.
    """
    own = getattr(owner, "_lazy_output", None)
    spec = own(method, X, arguments) if own is not None else None
    if spec is not None:
        return spec
    dtype = np.dtype(getattr(owner, "_fit_dtype", "float64"))
    if method in _ROW_METHODS:
        return {"kind": "rows", "dtype": np.int64 if method in _LABEL_METHODS else dtype}
    if method == "impute":
        kind = "same" if arguments.get("n_draws") is None else "draws"
        return {"kind": kind, "dtype": _input_float_dtype(X)}
    if method == "explain":  # one value per cell, named like the input's columns
        names = list(X.columns) if hasattr(X, "columns") else list(range(X.shape[1]))
        return {"kind": "wide", "dtype": np.float64, "names": names}
    names = [str(name) for name in owner.get_feature_names_out()]
    return {"kind": "wide", "dtype": dtype, "names": names}


def _map_rows_lazily(owner, method, X, arguments):
    check_is_fitted(owner)
    return map_rows(X, owner, method, **lazy_output(owner, method, X, arguments), **arguments)


#: decorator of the methods of rows: a dask collection gets a lazy map over its blocks
lazy_rows = on_blocks(_map_rows_lazily)


def _mean_score_lazily(owner, method, X, arguments):
    check_is_fitted(owner)
    return float(_map_rows_lazily(owner, "score_samples", X, {}).mean().compute())


class _TorchPayload:
    """A torch object serialised to bytes with its storages on the CPU.

    Pickling a module that lives on a GPU would record CUDA storages that cannot be
    restored on a machine without one; this payload is loaded with
    ``map_location="cpu"`` and moved to the evaluation device on first use.
    """

    def __init__(self, obj):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        self.data = buffer.getvalue()

    def load(self):
        return torch.load(io.BytesIO(self.data), map_location="cpu", weights_only=False)


def check_no_empty_column(X: np.ndarray, feature_names=None) -> None:
    """A column with every entry missing cannot be modelled: raise, naming it."""
    empty = np.flatnonzero(np.isnan(X).all(axis=0))
    if empty.size:
        which = [f"{feature_names[j]!r}" if feature_names is not None else str(j) for j in empty[:5]]
        raise ValueError(
            f"Column(s) {', '.join(which)}{' ...' if empty.size > 5 else ''} of X have every "
            "entry missing (NaN); drop them before fitting."
        )


_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
#: training rows up to this size are copied while offset_ waits for its first use
_DEFER_COPY_BYTES = 64 * 2**20
#: ``sample``: times a row with a number outside ``bounds`` is drawn again before clipping
_SAMPLE_REDRAWS = 10


def _fingerprint(X: np.ndarray) -> tuple:
    """Shape, column sums and a hash of up to 256 evenly spaced rows (one pass, no copy)."""
    sums = np.add.reduce(X, axis=0, dtype=np.float64)
    step = max(1, X.shape[0] // 256)
    return X.shape, sums.tobytes(), hash(np.ascontiguousarray(X[::step]).tobytes())


def check_magnitude(X: np.ndarray, dtype, feature_names=None) -> None:
    """Raise when entries of ``X`` are so large that their squares overflow ``dtype``.

    Sums of squares over rows and columns (covariances, distances, Gaussian
    exponents) overflow long before the values themselves: the limit is
    ``sqrt(max) / 1e4`` of the compute dtype (about 1e150 in float64, 2e15 in
    float32), so that ``n * D * x^2`` stays finite for up to 1e8 entries. Two
    reductions over ``X`` (no copy); the offending column is found only on error.
    """
    if X.size == 0:
        return
    limit = float(np.sqrt(np.finfo(np.dtype(dtype)).max)) * 1e-4
    # fmax/fmin skip NaN without nanmax's warning on an all-missing X
    largest = max(abs(float(np.fmax.reduce(X, axis=None))), abs(float(np.fmin.reduce(X, axis=None))))
    if not largest > limit:  # also False for an all-NaN X
        return
    column = int(np.argmax(np.fmax.reduce(np.abs(X), axis=0)))
    name = f"{feature_names[column]!r}" if feature_names is not None else str(column)
    raise ValueError(
        f"X has entries as large as {largest:.3g} in magnitude (column {name}): "
        f"their squares overflow {np.dtype(dtype).name} arithmetic (the limit is about "
        f"{limit:.1g}). Scale the data first, e.g. with StandardScaler, or divide by a "
        "power of ten"
        + (" (or fit with dtype='float64')." if np.dtype(dtype) == np.float32 else ".")
    )


class DiscreteDataWarning(UserWarning):
    """Continuous density model fitted to columns that take few distinct values.

    Raised by ``fit`` when a real-valued column takes at most 20 distinct values,
    each seen five times on average or more (over the first 5000 rows), unless the
    model spreads the column over its grid itself (``GaussianMixtureDensity``'s
    normal-score marginals: whole numbers over their unit cells). A density on
    such a column is unbounded: the model can concentrate on the values and report
    ever larger log-likelihoods, which then mean nothing. Dequantise the column (add
    uniform noise of one step), declare its type (``column_types``, or a pandas
    ``category`` dtype), or use a Bernoulli model for binary data.

    Examples
    --------
    Counts stored as floats warn; the same counts dequantised do not:

    >>> import warnings
    >>> import numpy as np
    >>> from skgenerative import DiscreteDataWarning, GaussianMixtureDensity
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randint(0, 4, size=(200, 2)).astype(float)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = GaussianMixtureDensity(n_components=1).fit(X)
    >>> [w.category.__name__ for w in caught]
    ['DiscreteDataWarning']
    >>> print(caught[0].message)
    GaussianMixtureDensity: column(s) 0, 1 take at most 4 distinct values in 200 rows. ...
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", DiscreteDataWarning)
    ...     model = GaussianMixtureDensity(n_components=1).fit(X + rng.uniform(size=X.shape))
    """


#: columns with at most this many distinct values (and each repeated) look discrete
_DISCRETE_MAX_LEVELS = 20
#: rows read to count the distinct values of a column
_DISCRETE_PROBE_ROWS = 5000


def warn_if_discrete(X: np.ndarray, schema, owner: str, spread=()) -> None:
    """Warn once per fit when real-valued columns look discrete.

    A column looks discrete when, over the first rows (at most 5000), it takes at
    most 20 distinct values, each seen five times on average or more. A density
    on such a column is unbounded: a model can concentrate on the values and its
    log-likelihood grows without limit (a VAE on ``load_digits().data / 16``
    reported large positive log-likelihoods after loss spikes). The columns in
    ``spread`` are dequantised by the model itself (spread over their grid cells:
    a bounded density) and never warn.
    """
    probe = X[:_DISCRETE_PROBE_ROWS]
    if probe.shape[0] < 5 * 2:
        return
    found = []
    for j, kind in enumerate(schema.types):
        if kind != "real" or j in spread:
            continue
        values = probe[:, j]
        values = values[~np.isnan(values)]
        distinct = np.unique(values).size
        if 1 < distinct <= min(_DISCRETE_MAX_LEVELS, values.size // 5):
            found.append((schema.names[j] if schema.from_frame else j, distinct))
    if not found:
        return
    names = ", ".join(repr(name) for name, _ in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    most = max(distinct for _, distinct in found)
    warnings.warn(
        f"{owner}: column(s) {names}{more} take at most {most} distinct values in "
        f"{probe.shape[0]} rows. A continuous density on such data grows without bound "
        "as the model concentrates on the values, so log-likelihoods become large and "
        "meaningless. Dequantise them (add uniform noise of one step), declare them as "
        "count, ordinal or categorical columns (column_types, or a pandas category "
        "dtype), or use a Bernoulli model for binary data.",
        DiscreteDataWarning,
        stacklevel=4,
    )


def _all_numeric(frame) -> bool:
    import pandas as pd

    return all(
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        for dtype in frame.dtypes
    )


def clone_with_verbose(estimator, verbose):
    """A clone of ``estimator`` that reports progress at ``verbose`` (the wrappers' pass-down).

    ``verbose=0`` leaves the estimator's own setting alone; otherwise every
    ``verbose`` parameter it has, its own or a pipeline step's (``step__verbose``),
    gets the wrapper's value, so that one switch on ``GenerativeImputer`` or
    ``GenerativeOutlierDetector`` shows the wrapped model's epochs or EM iterations.
    """
    from sklearn.pipeline import Pipeline

    model = clone(estimator)
    if verbose:
        params = model.get_params(deep=True)
        wanted = {key: verbose for key in params if key.endswith("__verbose")}
        # a pipeline's own ``verbose`` is a bool that times its steps: not progress
        if "verbose" in params and not isinstance(model, Pipeline):
            wanted["verbose"] = verbose
        wanted = {key: value for key, value in wanted.items()
                  if not (key.endswith("__verbose") and isinstance(params[key[:-9]], Pipeline))}
        if wanted:
            model.set_params(**wanted)
    return model


def _fits_blocks(estimator) -> bool:
    """Whether ``estimator`` fits a dask collection without gathering it: an
    skgenerative model, alone or after steps that are not scikit-learn's own."""
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        middle = [step for _, step in steps[:-1] if step not in (None, "passthrough")]
        return all(not type(step).__module__.startswith("sklearn.") for step in middle) and _fits_blocks(steps[-1][1])
    return isinstance(estimator, GenerativeModel)


def fit_wrapped_on_blocks(wrapper, X, estimator, default, needs_memory=()):
    """``fit`` of a wrapper of a density model (the detector, the imputer) on a dask collection.

    Refuses by name the options ``needs_memory`` (set ones that need the rows in
    memory). Sets what ``validate_data`` sets (``n_features_in_``,
    ``feature_names_in_``) and ``_table`` (a DataFrame with discrete columns) as an
    in-memory fit does, then fits a clone of ``estimator`` (``default(mixed)`` when
    ``None``) on the blocks: a table as the DataFrame, numbers as a dask array (in
    memory they reach it as an array).
    """
    if needs_memory:
        raise ValueError(
            f"{type(wrapper).__name__}({', '.join(needs_memory)}=...) cannot be fitted on a dask "
            "collection yet (it needs several fits or held-out rows in memory); fit on the "
            "in-memory array (X.compute()) or leave it at its default."
        )
    source = DaskSource(X)
    meta = source.meta
    table = meta is not None and not _all_numeric(meta)
    validate_data(wrapper, meta if meta is not None else X, reset=True, skip_check_array=True)
    estimator = default(mixed=table) if estimator is None else estimator
    if not _fits_blocks(estimator):
        raise TypeError(
            f"{type(wrapper).__name__}.fit of a dask collection needs an skgenerative estimator, "
            "or a Pipeline of steps that take dask collections (dask-ml's scalers, "
            "skgenerative.outlier.NumericColumnScaler) ending in one; got "
            f"{type(estimator).__name__} (scikit-learn's own steps would gather the data)."
        )
    wrapper._table = table
    data = X if table or meta is None else X.to_dask_array()
    wrapper.estimator_ = clone_with_verbose(estimator, getattr(wrapper, "verbose", 0)).fit(data)


def _observed_part(chunk: torch.Tensor, schema: TableSchema) -> dict:
    """What a chunk of encoded rows shows for ``sample`` (a block task: module level)."""
    return schema.observed_of(chunk.detach().cpu().double().numpy())


def _merge_observed_parts(a: dict | None, b: dict | None) -> dict | None:
    return merge_observed(a, b)


def _same_rows(rows: np.ndarray) -> bool:
    """Whether every row equals the first (NaN equal to NaN)."""
    first = rows[:1]
    return bool(((rows == first) | (np.isnan(rows) & np.isnan(first))).all())


def _empty_dtype(schema, name):
    """A dtype that holds only missing cells of the column ``name`` (for given frames)."""
    return np.float64 if schema.types[schema.names.index(name)] in NUMERIC_TYPES else object


def _names_at(estimator, columns):
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else np.asarray(names)[columns]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def public_estimators(predicate) -> list[str]:
    """Names of the package's public estimators (no base class, no private module) that satisfy ``predicate``.

    Read from the subclasses of :class:`GenerativeModel`, so this module never imports the
    package above it; error messages use it to name the estimators that can do what was asked.
    """
    return sorted({
        cls.__name__ for cls in _subclasses(GenerativeModel)
        if not cls.__name__.startswith(("_", "Base")) and cls.__module__.startswith("skgenerative.")
        and not cls.__module__.startswith("skgenerative._") and predicate(cls)
    })


def _has_decoder(estimator) -> bool:
    return getattr(type(estimator), "_decode", None) is not None


def _has_explain(estimator) -> bool:
    return estimator._supports_missing or type(estimator)._explain is not GenerativeModel._explain


def _has_partial_fit(estimator) -> bool:
    return getattr(type(estimator), "_partial_fit", None) is not None


class _BlockValidator:
    """``fit``'s validation of one block of a dask collection: a float matrix, or an error.

    Holds a parameter copy of the estimator and what the first rows set (features,
    names, column schema), so that it pickles small and checks each block where it
    is: types and levels encoded, NaN only where the model accepts it, magnitudes
    against the training dtype, positive and count columns, the model's own checks.
    """

    def __init__(self, estimator):
        checker = clone(estimator)
        for name in ("n_features_in_", "feature_names_in_", "schema_") + estimator._fit_encoding_attributes:
            if hasattr(estimator, name):
                setattr(checker, name, getattr(estimator, name))
        checker._fit_dtype = estimator._resolved_dtypes()[0]
        self.checker = checker

    def __call__(self, block) -> np.ndarray:
        checker = self.checker
        if len(block) == 0:
            return np.empty((0, checker.n_features_in_), dtype=np.dtype(checker._fit_dtype))
        X = checker._validate_table(block, reset=False)[0]
        checker.schema_.check_numbers(X, checker._column_families)
        return X


class OutlierThresholdMixin:
    """The outlier threshold, written once for estimators and detectors alike.

    A class with ``score_samples`` and a ``contamination`` parameter gets
    ``offset_`` (the ``contamination`` quantile of the training log-densities, set
    by :meth:`_set_offset`), ``decision_function = score_samples - offset_`` and
    ``predict_outlier`` (-1 below the threshold, +1 otherwise, scikit-learn's
    convention). :class:`GenerativeModel` and
    :class:`~skgenerative.GenerativeOutlierDetector` both use it.
    """

    def _check_scores(self, scores: np.ndarray, what: str) -> None:
        if np.isnan(scores).any():
            raise FloatingPointError(
                f"{type(self).__name__} produced NaN log-densities on {what}: the fit "
                "diverged. Scale the input (e.g. StandardScaler), raise the "
                "regularisation, or lower the learning rate."
            )

    def _set_offset(self, scores: np.ndarray) -> None:
        """``offset_`` from the log-densities of the training rows."""
        self._check_scores(scores, "the training data")
        self.offset_ = float(np.quantile(scores, self.contamination))

    def _set_offset_on_blocks(self, X) -> None:
        """``offset_`` of training rows in a dask collection: the exact quantile of their
        lazy scores, in two passes over the blocks (:func:`._sources.quantile`)."""
        offset = quantile(self.score_samples(X), self.contamination)
        if np.isnan(offset):
            self._check_scores(np.array([np.nan]), "the training data")
        self.offset_ = offset

    # offset_ lives in a dict created at fit (``_threshold``): a model whose training
    # scores are costly fills it on first use (see GenerativeModel._defer_offset),
    # and filling a dict in place leaves the estimator's attributes as they were,
    # as scikit-learn's checks require of prediction methods
    @property
    def offset_(self) -> float:
        """The ``contamination`` quantile of the training log-densities."""
        threshold = self.__dict__.get("_threshold")
        if threshold is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'offset_'")
        if "offset" not in threshold:
            self._set_deferred_offset(threshold)
        return threshold["offset"]

    @offset_.setter
    def offset_(self, value: float) -> None:
        self.__dict__["_threshold"] = {"offset": float(value)}

    def _set_deferred_offset(self, threshold: dict) -> None:  # pragma: no cover
        raise AttributeError("offset_")  # only GenerativeModel defers it

    @lazy_rows
    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    @lazy_rows
    def predict_outlier(self, X):
        """-1 for outliers, +1 for inliers (scikit-learn's outlier convention).

        A row is an outlier when its log-density is below ``offset_``, the
        ``contamination`` quantile of the training log-densities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,) of int
        """
        return np.where(self.decision_function(X) < 0, -1, 1)


class TableColumnsMixin:
    """The column schema side of the contract: tables in, tables back.

    Fitted on a DataFrame, an estimator records ``schema_`` (:class:`._schema.TableSchema`:
    a type per column, the levels of each discrete one), encodes every table it is
    given to numbers (discrete columns as level codes, unseen levels as missing with
    the schema's smoothed penalty), refuses column types the model does not represent
    (naming the columns and the estimators that do), and returns rows as a DataFrame
    with the user's names, order and dtypes. Mixed into :class:`GenerativeModel`.
    """

    def _validate_table(self, X, *, reset: bool, seen=None, whole: bool = True):
        """``(X, unseen)``: the validated float matrix and the cells with unseen levels.

        A DataFrame with a non-numeric column (or any DataFrame when ``column_types``
        is given) goes through the column schema (:mod:`._schema`); so does any
        input to a model fitted with discrete columns. Numeric arrays and frames take
        scikit-learn's ``validate_data`` as they always did. ``seen`` and
        ``whole=False``: ``X`` is the first rows of a dask collection, ``seen`` the
        distinct values of its discrete columns over all rows (their levels); an
        empty column is then found by the first pass, not in these rows.
        """
        X = to_numpy_input(X)
        column_types = getattr(self, "column_types", None)
        array_with_types = reset and column_types is not None and not is_dataframe(X)
        if array_with_types:
            # column_types on an array: the schema reads it as a table with columns
            # named by position ({0: "categorical"} or one type per column); rows
            # come back as arrays of the user's values
            X = self._array_as_table(X)
        if reset:
            tabular = is_dataframe(X) and (
                column_types is not None or not _all_numeric(X)
            )
        else:
            tabular = self.schema_.has_discrete or (
                self.schema_.from_frame and is_dataframe(X) and not _all_numeric(X)
            )
        unseen = None
        if tabular:
            X, unseen = self._encode_table(X, reset, seen)
            if array_with_types:
                self.schema_ = dataclasses.replace(self.schema_, from_frame=False)
        else:
            frame = X if is_dataframe(X) else None
            X = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan" if self._supports_missing else True,
            )
            if reset:
                self.schema_ = (
                    TableSchema.infer(frame) if frame is not None
                    else TableSchema.numeric(X.shape[1], X.shape[0])
                )
        if reset:
            self._check_column_types()
            if self._supports_missing and whole:
                self._check_no_empty_column(X)
            if self._continuous_likelihood():
                warn_if_discrete(X, self.schema_, type(self).__name__,
                                 self._spread_columns(X[:_DISCRETE_PROBE_ROWS]))
            self._fit_input_encoding(X)
        if self._squares_input:
            dtype = self._resolved_dtypes()[0] if reset else getattr(self, "_fit_dtype", "float64")
            numeric = self.schema_.numeric_columns if self.schema_.has_discrete else slice(None)
            check_magnitude(X[:, numeric], dtype, _names_at(self, numeric))
        self._check_values(X)
        return X, unseen

    @staticmethod
    def _array_as_table(X):
        import pandas as pd

        values = np.asarray(X)
        if values.ndim != 2:
            raise ValueError(f"Expected a 2D array, got an array of shape {values.shape}.")
        if values.dtype.kind in "fiub":
            values = values.astype(np.float64)
        return pd.DataFrame(values)

    def _encode_table(self, X, reset: bool, seen=None):
        """A table (DataFrame, or rows of levels) encoded by the column schema."""
        if is_dataframe(X):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if reset:
                self.schema_ = TableSchema.infer(X, getattr(self, "column_types", None), seen,
                                                 families=self._column_families)
            encoded, unseen = self.schema_.encode(X, warn=not reset)
        else:
            X = np.asarray(X, dtype=object)
            if X.ndim != 2:
                raise ValueError(f"Expected a 2D table, got an array of shape {X.shape}.")
            validate_data(self, X, reset=False, skip_check_array=True)
            encoded, unseen = self.schema_.encode_values(X)
        # scikit-learn's own messages for empty input and infinite numbers
        encoded = check_array(encoded, ensure_all_finite="allow-nan", estimator=self)
        if not self._supports_missing:
            # a level not seen in fit is encoded as NaN too, but it is not a missing
            # cell: the model must marginalise it (the unseen-level policy)
            missing = np.isnan(encoded) if unseen is None else np.isnan(encoded) & ~unseen
            columns = np.flatnonzero(missing.any(axis=0))
            if columns.size:
                names = ", ".join(repr(self.schema_.names[j]) for j in columns[:5])
                raise ValueError(
                    f"Input X contains NaN (missing cells) in column(s) {names}; "
                    f"{type(self).__name__} does not accept missing values. Impute them "
                    "first (e.g. skgenerative.GenerativeImputer) or use a model that "
                    "accepts them."
                )
        return encoded, unseen

    def _check_column_types(self) -> None:
        """A column type the model does not model: an error naming the columns."""
        schema = self.schema_
        bad = [(n, t) for n, t in zip(schema.names, schema.types)
               if t not in self._supported_column_types]
        if not bad:
            return
        others = public_estimators(lambda cls: all(t in cls._supported_column_types for _, t in bad))
        listed = ", ".join(f"{n!r} ({t})" for n, t in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise ValueError(
            f"{type(self).__name__} models {', '.join(sorted(self._supported_column_types))} "
            f"columns only; X has column(s) {listed}. "
            + (f"Estimators that model them: {', '.join(others)}. " if others else "")
            + "Or encode or drop those columns first."
        )

    def _rows(self, X: np.ndarray):
        """Rows the model produced (numbers and level codes), as the user's table.

        A model fitted on a DataFrame gets a DataFrame back with its column names,
        order and dtypes; one fitted on an array gets the array.
        """
        if not self.schema_.from_frame:
            return self.schema_.to_values(X)
        return self.schema_.to_frame(X)

    def _filled_frame(self, imputed: np.ndarray, frame):
        """Imputed rows as the user's table; a given frame keeps its observed cells."""
        filled = self.schema_.to_frame(imputed, index=None if frame is None else frame.index)
        return filled if frame is None else self.schema_.fill_frame(frame, filled)


class ImputationMixin:
    """What the marginal of the observed entries gives: imputation and explanations.

    ``impute`` (conditional means, most probable levels, or draws), ``impute_proba``
    (conditional level probabilities) and ``explain`` (``log p(x_j | x_-j)`` per
    cell) all come from the model's hooks for rows with missing entries
    (``_observed_log_prob``, ``_point_imputation``, ``_level_probabilities``).
    Mixed into :class:`GenerativeModel`.
    """

    def _impute_row_bytes(self, n_features: int, n_draws: int | None) -> int:
        """Temporary bytes one incomplete row needs in ``_impute``."""
        return self._row_bytes(n_features) * (n_draws or 1)

    @available_if(_has_explain)
    @lazy_rows
    def explain(self, X):
        """How surprising each cell is given the rest of its row: ``log p(x_j | x_-j)``.

        For row ``i`` and column ``j``::

            log p(x_ij | x_i,-j) = log p(x_i) - log p(x_i,-j)

        where ``log p(x_i,-j)`` is the log-density of the row with column ``j``
        marginalised out: the same marginal that scores rows with missing values
        (see :meth:`score_samples`), so the value is exact wherever the scores are
        (mixtures, PPCA; the RBM uses its closed form through free energies) and an
        estimate where they are (the difference of two importance-weighted bounds
        for the variational autoencoders, deterministic per row like the scores).
        Lower means more surprising; the column with the lowest value is the one
        that explains a low score best. Numbers are in nats, in the units of ``X``
        (a density for numeric cells, a log-probability for discrete ones), so
        comparing numeric columns in different units compares their units too:
        standardise first (``GenerativeOutlierDetector`` does) to rank them.
        See the user guide, "Outlier detection", for the maths.

        Parameters
        ----------
        X : array-like, DataFrame or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        log_conditional : ndarray or DataFrame of shape (n_samples, n_features)
            A DataFrame with the input's index and column names when ``X`` is one.
            A missing cell has nothing to explain: NaN. A level unseen in fit gets
            its log-probability ``log 1 / (n + K + 1)``.
        """
        check_is_fitted(self)
        frame = X if is_dataframe(X) else None
        X, unseen = self._validate_table(X, reset=False)
        missing = np.isnan(X)
        n_features = X.shape[1]
        out = self._evaluate(
            self._explain, X, row_bytes=self._row_bytes(n_features) + 2 * 8 * n_features
        )
        if unseen is not None:
            log_p = self.schema_.unseen_penalty(np.eye(n_features, dtype=bool), n_features)
            out = np.where(unseen, log_p[None, :], out)
            missing &= ~unseen
        out[missing] = np.nan
        self._check_scores(out[~missing], "this input")
        if frame is None:
            return out
        import pandas as pd

        return pd.DataFrame(out, index=frame.index, columns=frame.columns)

    def _explain(self, X: torch.Tensor) -> torch.Tensor:
        """``log p(x) - log p(x with column j missing)`` for each ``j``: (n, D)."""
        full = self._observed_log_prob(X)
        masked = X.clone()
        out = torch.empty(X.shape, dtype=full.dtype, device=full.device)
        for j in range(X.shape[1]):
            masked[:, j] = float("nan")
            out[:, j] = full - self._observed_log_prob(masked)
            masked[:, j] = X[:, j]
        return out

    def _has_missing_support(self) -> bool:
        return self._supports_missing

    @available_if(_has_missing_support)
    @lazy_rows
    def impute(self, X, n_draws=None, random_state=None):
        """Fill the missing entries of ``X`` from the model's conditional distribution.

        Parameters
        ----------
        X : array-like, DataFrame or torch.Tensor of shape (n_samples, n_features)
            Data with missing cells (NaN, or ``None`` / ``pd.NA`` in a DataFrame).
            Observed entries are returned unchanged, bit for bit.
        n_draws : int or None, default=None
            ``None``: a point imputation: the conditional expectation
            ``E[x_missing | x_observed]`` of numeric cells, and the most probable
            level (categorical, binary) or the median level (ordinal) of discrete
            ones. An integer: that many draws from ``p(x_missing | x_observed)``
            (multiple imputation).
        random_state : int, RandomState instance or None, default=None
            Seed of the draws (and of any Monte Carlo estimate the model needs,
            unless the model keys its noise on the rows, as the variational
            autoencoders do for the conditional mean: see the model's Notes).

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features), or
            (n_draws, n_samples, n_features) when ``n_draws`` is given. A model
            fitted on a DataFrame returns a DataFrame with the input's columns and
            dtypes (a list of ``n_draws`` of them when ``n_draws`` is given).
        """
        check_is_fitted(self)
        frame = X if is_dataframe(X) else None
        X, unseen = self._validate_table(X, reset=False)
        if n_draws is not None and (
            not isinstance(n_draws, Integral) or isinstance(n_draws, bool) or n_draws < 1
        ):
            raise ValueError(f"n_draws must be None or a positive integer, got n_draws={n_draws!r}.")
        missing = np.isnan(X)
        if unseen is not None:  # observed, with a level the model cannot represent
            missing &= ~unseen
        out = X.copy() if n_draws is None else np.repeat(X[None], n_draws, axis=0)
        rows = np.flatnonzero(missing.any(axis=1))
        if rows.size:
            generator = generator_from(seed_from(random_state), self._device)
            row_bytes = self._impute_row_bytes(X.shape[1], n_draws)
            if n_draws is None:
                filled = self._evaluate(self._point_imputation, X[rows], row_bytes=row_bytes)
                out[rows] = np.where(missing[rows], filled, X[rows])
            else:
                filled = self._evaluate(
                    lambda x: self._impute(x, n_draws, generator), X[rows], row_bytes=row_bytes
                )
                filled = np.moveaxis(filled, 1, 0)  # (n_draws, rows, D)
                out[:, rows] = np.where(missing[rows][None], filled, X[rows][None])
        if not self.schema_.from_frame:  # level codes back to the user's values
            if n_draws is None:
                return self.schema_.to_values(out)
            return np.stack([self.schema_.to_values(draw) for draw in out])
        if n_draws is None:
            return self._filled_frame(out, frame)
        return [self._filled_frame(draw, frame) for draw in out]

    def _point_imputation(self, X: torch.Tensor) -> torch.Tensor:
        """Conditional means of numeric cells; mode or median level of discrete ones."""
        filled = self._impute(X, None, None)
        discrete = self.schema_.discrete
        if not discrete:
            return filled
        filled = filled.clone()
        for j, probabilities in zip(discrete, self._level_probabilities(X, discrete)):
            codes = point_levels(probabilities.detach().cpu().numpy(), self.schema_.types[j])
            filled[:, j] = torch.as_tensor(codes, dtype=filled.dtype, device=filled.device)
        return filled

    def _has_level_support(self) -> bool:
        return self._supports_missing and any(
            t in self._supported_column_types for t in ("binary", "categorical", "ordinal")
        )

    @available_if(_has_level_support)
    def impute_proba(self, X):
        """Conditional probabilities of every level of each discrete column.

        For row ``i`` and discrete column ``j``: ``p(x_ij = level | the other
        observed entries of row i)``, whether ``x_ij`` itself is observed or not
        (for a missing cell, the distribution :meth:`impute` takes its level from;
        for an observed one, how expected its level was given the rest of the row).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        probabilities : dict
            Column name -> DataFrame of shape (n_samples, n_levels) whose columns
            are the column's levels; rows sum to one.
        """
        import pandas as pd

        check_is_fitted(self)
        index = X.index if is_dataframe(X) else None
        X, _ = self._validate_table(X, reset=False)
        out = {}
        for j in self.schema_.discrete:
            without = X.copy()
            without[:, j] = np.nan
            probabilities = self._evaluate(lambda x: self._level_probabilities(x, [j])[0], without)
            name = self.schema_.names[j]
            out[name] = pd.DataFrame(
                probabilities, columns=pd.Index(self.schema_.levels[name]), index=index
            )
        return out

    def _level_probabilities(self, X: torch.Tensor, columns: list[int]) -> list[torch.Tensor]:
        """Hook: ``p(x_j = k | x_observed)`` (n, K_j) for each discrete column ``j`` listed."""
        raise NotImplementedError  # abstract hook of models with discrete columns


class DataSourceMixin:
    """The data-source side of the contract: ``fit`` reads its rows through a source.

    Rows in memory become a :class:`~._sources.TensorSource`; a dask collection a
    :class:`~._sources.DaskSource` validated as ``fit`` validates data in memory
    (:meth:`_block_source`: the discrete columns' levels from their known categories
    or one pass). Either goes through the same ``_fit`` (:meth:`_fit_source`, with
    its float64 retry); ``partial_fit`` takes a dask collection's blocks in turn.
    Mixed into :class:`GenerativeModel`.
    """

    def _fit_source(self, source):
        """``_fit`` on a data source, refitted in float64 when float32 breaks it; ``offset_``."""
        with adaptive_threads():
            try:
                with self._training_phase():
                    scores = self._fit(source)
            except (FloatingPointError, ValueError, RuntimeError) as error:
                if not self._retry_in_float64(error):
                    raise
                self._train_dtype = "float64"
                with self._training_phase():
                    scores = self._fit(source)
            self._end_fit(source, scores)
        return self

    def _retry_in_float64(self, error: Exception) -> bool:
        """Whether a failed ``dtype="auto"`` fit in float32 is refitted in float64.

        float32 buys speed, not a different model: when its rounding breaks the fit
        (a covariance that is no longer positive definite, a loss that overflows),
        ``"auto"`` fits again in float64 rather than failing. Errors about the
        input itself (a ``ValueError`` that does not point at the precision) are
        raised as they are.
        """
        if self.dtype != "auto" or self._train_dtype != "float32":
            return False
        numerical = isinstance(error, (FloatingPointError, torch.linalg.LinAlgError)) or (
            "float64" in str(error) or "overflow" in str(error)
        )
        if numerical:
            self._log(f"float32 training failed ({error}); fitting again in float64")
        return numerical

    def _fit_on_blocks(self, method, X, arguments):
        return self._fit_source(self._block_source(X))

    def _block_source(self, X) -> DaskSource:
        """The rows of a dask collection, validated as ``fit`` validates data in memory.

        The first rows (up to 5000) set ``n_features_in_``, the feature names and the
        column schema; the levels of discrete columns come from their known categories
        or from one pass over the data. Every block is then validated where it is, in
        the first pass (:meth:`~._sources.DaskSource.column_moments`), which also finds
        a column with every entry missing.
        """
        raw = DaskSource(X)
        head = raw.head(_HEAD_ROWS)
        head_X = self._validate_table(head, reset=True, seen=self._seen_levels(raw, head), whole=False)[0]
        self._begin_fit()
        dtype = torch.float32 if head_X.dtype == np.float32 else torch.float64
        source = DaskSource(raw.collection, encode=_BlockValidator(self), dtype=dtype)
        moments = source.column_moments()
        # what sample needs (ranges, decimals, frequent values such as zeros, holes):
        # one more pass, each block's part merged as the parts of partial_fit are
        observed = source.reduce(_observed_part, self.schema_, combine=_merge_observed_parts,
                                 row_bytes=16 * max(1, self.n_features_in_))
        self.schema_ = dataclasses.replace(self.schema_, n_samples=moments.n_rows, observed=observed)
        if self._supports_missing:
            self._check_no_empty_column(np.where(moments.count.numpy() == 0, np.nan, 0.0)[None, :])
        return source

    def _seen_levels(self, raw: DaskSource, head) -> dict | None:
        """Levels of a dask collection's discrete columns over all its rows (one pass).

        Categorical columns whose categories dask knows keep them (they are in every
        partition's dtype); other discrete columns get their distinct values.
        """
        import pandas as pd

        column_types = getattr(self, "column_types", None)
        frame = head if is_dataframe(head) else (self._array_as_table(head) if column_types is not None else None)
        if frame is None or (column_types is None and _all_numeric(frame)):
            return None
        types = TableSchema.column_types_of(frame, column_types)
        wanted = [j for j, kind in enumerate(types) if kind in DISCRETE_TYPES
                  and not pd.api.types.is_bool_dtype(frame.iloc[:, j].dtype)  # levels False, True
                  and not (raw.frame and raw.known_categories(frame.columns[j]))]
        if not wanted:
            return None
        keys = [frame.columns[j] for j in wanted] if raw.frame else wanted
        values = raw.distinct(keys)
        return {str(frame.columns[j]): values[key] for j, key in zip(wanted, keys)}

    def _partial_fit_on_blocks(self, method, X, arguments):
        """``partial_fit`` of each block in turn (computed on the client), as
        ``dask_ml.wrappers.Incremental(shuffle_blocks=False)`` calls it."""
        for block in DaskSource(X).raw_blocks():
            self.partial_fit(block)
        return self


class TorchBackendMixin:
    """The torch side of the contract: device, dtypes, tensors, chunked evaluation.

    Resolves ``device`` and ``dtype`` (training and evaluation dtypes of
    ``dtype="auto"``), converts validated arrays to tensors, moves modules, caches
    fitted numpy attributes as tensors (``_tensor``) and evaluates functions of rows
    in memory-bounded chunks with the thread count following the load. Mixed into
    :class:`GenerativeModel`.
    """

    # ------------------------------------------------------------- plumbing
    @property
    def _device(self) -> torch.device:
        """Where evaluation runs: the ``device`` parameter, resolved now.

        A model fitted on a GPU and unpickled on a machine without one falls back to
        the CPU with a warning rather than failing.
        """
        return resolve_device(self.device, fallback=True)

    @property
    def _dtype(self) -> torch.dtype:
        """The compute dtype now: the training dtype inside ``fit``, else the evaluation one.

        ``dtype="auto"`` trains iterative models in float32 (``_auto_training_dtype``)
        and evaluates in float64; ``"float32"`` and ``"float64"`` use one dtype for
        both (see the class docstring).
        """
        if getattr(self, "_in_training", False):
            return resolve_dtype(self._train_dtype)
        return resolve_dtype(self._fit_dtype)

    @property
    def _itemsize(self) -> int:
        """Bytes per number in the compute dtype now (for memory budgets)."""
        if not hasattr(self, "_fit_dtype"):
            return np.dtype(self._resolved_dtypes()[0]).itemsize
        return _NUMPY_DTYPES[self._dtype].itemsize

    def _resolved_dtypes(self) -> tuple[str, str]:
        """``(training, evaluation)`` dtype names for the ``dtype`` parameter."""
        if self.dtype == "auto":
            return self._auto_training_dtype, "float64"
        return self.dtype, self.dtype

    def _to_tensor(self, X: np.ndarray, device=None, dtype=None) -> torch.Tensor:
        """``X`` as a tensor on the device in the compute dtype (or ``dtype``).

        On the CPU, a writeable C-contiguous array of the compute dtype is shared,
        not copied (hooks never modify their input in place). Otherwise it is
        copied: torch cannot alias read-only memory, and ``ascontiguousarray``
        removes negative strides (``X[::-1]``), which torch rejects.
        """
        device = device or self._device
        dtype = dtype or self._dtype
        if (
            device.type == "cpu"
            and X.dtype == _NUMPY_DTYPES[dtype]
            and X.flags.writeable
            and X.flags.c_contiguous
        ):
            return torch.from_numpy(X)
        return torch.tensor(np.ascontiguousarray(X), dtype=dtype, device=device)

    def _input_tensor(self, X: np.ndarray) -> torch.Tensor:
        """Training data as a tensor in its own float dtype (shared, not copied, on the CPU).

        ``_fit`` computes the data's statistics (centre, scale) from the values as
        given and casts to the training dtype ``self._dtype`` after centring, so
        float32 training never rounds raw values far from the origin.
        """
        dtype = torch.float32 if X.dtype == np.float32 else torch.float64
        return self._to_tensor(X, dtype=dtype)

    def _move_modules(self, device: torch.device) -> None:
        """Put every fitted ``nn.Module`` on ``device`` in the compute dtype now.

        In place (no new attributes). A module trained in float32 under
        ``dtype="auto"`` is evaluated in float64 and cast back when training resumes
        (``partial_fit``, ``warm_start``): float32 -> float64 -> float32 is exact.
        """
        dtype = self._dtype
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(device=device, dtype=dtype)

    def _evaluate(
        self, fn, X: np.ndarray, n_features: int | None = None, row_bytes: int | None = None
    ) -> np.ndarray:
        """Apply ``fn`` (tensor -> tensor) to ``X`` chunk by chunk; numpy out.

        At most one chunk of rows, sized from ``working_memory``, is on the device at
        a time, so memory stays bounded however many rows are evaluated.
        """
        device = self._device
        self._move_modules(device)
        n = X.shape[0]
        row_bytes = row_bytes or self._row_bytes(n_features or X.shape[1])
        size = chunk_rows(row_bytes, n, device)
        out = None
        n_chunks = -(-n // size)
        # a bar (never a line per chunk) for inputs long enough to wait for
        progress = Progress(type(self).__name__, "chunk", n_chunks,
                            min(int(self.verbose or 0), 1) if n_chunks >= 50 else 0)
        with torch.inference_mode(), adaptive_threads(), progress:
            for rows in iter_slices(n, size):
                result = fn(self._to_tensor(X[rows], device)).detach().to("cpu").numpy()
                if out is None:
                    out = np.empty((n,) + result.shape[1:], dtype=result.dtype)
                out[rows] = result
                progress.update(rows=rows.stop)
            progress.close(f"{n} rows evaluated")
        return out

    def _log(self, message: str, level: int = 1) -> None:
        if self.verbose >= level:
            print(f"[{type(self).__name__}] {message}", flush=True)

    def _tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Fitted numpy attribute ``name`` as a tensor on the evaluation device.

        In the compute dtype now, or ``dtype``. Cached per (name, device, dtype) in a
        dict created at fit, so evaluation does not add attributes to the estimator.
        """
        device, dtype = self._device, dtype or self._dtype
        key = (name, str(device), dtype)
        cache = self._cache
        if key not in cache:
            cache[key] = torch.as_tensor(
                np.asarray(getattr(self, name)), dtype=dtype, device=device
            )
        return cache[key]


class SamplingMixin:
    """``sample``: new rows, or rows drawn given some of their values, as the user's
    table (written once for every model; the models supply ``_sample`` and the
    conditional draws of ``_impute``)."""

    def sample(self, n_samples=1, random_state=None, given=None, *, bounds="observed", missing=False):
        """Draw rows from the fitted model, or from its conditional given some values.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows. With ``given`` a table of partial rows, one row comes
            back per row given: ``n_samples`` must then be 1 (the default) or that
            number of rows.
        random_state : int, RandomState instance or None, default=None
            Seed of the draw; ``None`` draws fresh randomness each call.
        given : dict, DataFrame, array-like or None, default=None
            Sample from the model's conditional distribution instead of its joint:

            - a dict ``{column: value}``: ``n_samples`` rows that all share these
              values (columns by name, or by position for a model fitted on an
              array); the other columns are drawn from
              ``p(other columns | given values)``;
            - a DataFrame (or an array) of partial rows: its missing cells (NaN,
              ``None``, ``pd.NA``) are drawn from ``p(missing | observed cells of
              the row)``, its observed cells come back unchanged, and a column it
              lacks is drawn in every row.

            Exact for :class:`~skgenerative.GaussianMixtureDensity` and
            :class:`~skgenerative.PPCADensity` (the conditional that ``impute``
            uses); approximate for the variational autoencoders (sampling
            importance resampling over ``n_imputation_samples`` posterior draws per
            row, the draws of ``impute(X, n_draws=...)``). Never rejection: a rare
            condition costs what a common one does. Models that cannot marginalise
            a column (the RBM) raise. A level not seen in fit, an unknown column, a
            number outside the column type's support (a negative count) or a
            condition the model gives probability zero raises a ``ValueError``
            naming the column and value.
        bounds : {"observed"}, dict or None, default="observed"
            Where drawn numbers may fall. ``"observed"``: within the range each
            numeric column had at fit, rounded to the decimal places its values
            had (whole numbers stay whole, cents stay cents), and, in a column
            whose values repeat (values shared by at least 5 training rows make up
            90% of it), snapped to the nearest such value: the model discretised
            on the values the data take, as real tables are (a classifier tells
            13.07 from a column of 13.0, 13.5 and 14.0; the mixture's normal-score
            columns are only rounded: their draws take the grid values at their
            training frequencies already). ``None``: the model's
            draws, kept only
            to the column type's support (``positive`` above 0, ``count``
            non-negative). A dict ``{column: (low, high)}`` (``None`` for an open
            side) sets those columns' intervals; the others are ``"observed"``. A
            row with a drawn number outside is drawn again from the model (or the
            conditional), up to 10 times, then clipped: the rows follow the model
            restricted to the box, with a small remainder clipped onto its faces.
            ``count`` columns and columns of an integer dtype always come back
            as integers. Given cells are never changed.
        missing : bool, default=False
            Leave cells missing as the training rows did: each row takes the
            missingness pattern of a training row drawn at random (the table's own
            rates and co-occurrence, independent of the values drawn). Given
            cells stay as given. A NumPy integer or bool column with holes comes
            back as float or pandas' ``boolean``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features), or DataFrame
            A model fitted on a DataFrame returns a DataFrame with its column
            names, order, dtypes and categories (levels are fitted ones), indexed
            like ``given`` when ``given`` is a table.

        Notes
        -----
        Synthetic rows are new draws from a model, not copies, but the model was
        fitted on the training rows: this is not differential privacy. A model
        with as many components as rows, a level per row of an identifier
        column, or the recorded ranges (each end is a training value) can reveal
        training values; see the user guide, "Synthetic tables".

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from skgenerative import GaussianMixtureDensity
        >>> rng = np.random.RandomState(0)
        >>> table = pd.DataFrame({"age": rng.randint(18, 80, 300),
        ...                       "smoker": rng.choice(["yes", "no"], 300)})
        >>> model = GaussianMixtureDensity(2, random_state=0).fit(table)
        >>> rows = model.sample(4, random_state=0, given={"smoker": "yes"})
        >>> list(rows["smoker"]), bool(rows["age"].between(18, 79).all()), str(rows["age"].dtype)
        (['yes', 'yes', 'yes', 'yes'], True, 'int64')
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(
                f"n_samples must be a positive integer, got n_samples={n_samples!r}."
            )
        if not isinstance(missing, (bool, np.bool_)):
            raise ValueError(f"missing must be True or False, got missing={missing!r}.")
        limits = self._sample_limits(bounds)
        generator = generator_from(seed_from(random_state), self._device)
        index = None
        if given is None:
            partial = None
            out = self._draw(n_samples, generator)
            drawn = np.ones(out.shape, dtype=bool)
        else:
            partial, index = self._given_rows(given, n_samples)
            drawn = np.isnan(partial)
            out = self._draw_given(partial, drawn, generator)
        for _ in range(_SAMPLE_REDRAWS):
            rows = np.flatnonzero(self.schema_.outside(out, drawn, limits))
            if not rows.size:
                break
            out[rows] = (self._draw(rows.size, generator) if partial is None
                         else self._draw_given(partial[rows], drawn[rows], generator))
        if np.isnan(out[drawn]).any():
            raise FloatingPointError(
                f"{type(self).__name__}.sample drew NaN values: the fitted model is not "
                "finite. Refit it (scale the input, raise the regularisation)."
            )
        out = self.schema_.finish_numbers(out, drawn, limits)
        if missing:
            out = self._with_missing_cells(out, drawn, generator)
        if not self.schema_.from_frame:
            return self.schema_.to_values(out)
        return self.schema_.to_frame(out, index=index)

    def _sample_limits(self, bounds):
        """Where ``sample``'s numbers must fall and how they are rounded
        (:meth:`TableSchema.limits`); a model whose draws need less may relax them."""
        return self.schema_.limits(bounds)

    def _draw(self, n_samples: int, generator: torch.Generator) -> np.ndarray:
        """``n_samples`` draws of the ``_sample`` hook, chunk by chunk: (n, D) encoded."""
        device = self._device
        self._move_modules(device)
        n_features = self.n_features_in_
        size = chunk_rows(self._row_bytes(n_features), n_samples, device)
        out = np.empty((n_samples, n_features), dtype=np.dtype(self._fit_dtype))
        with torch.inference_mode(), adaptive_threads():
            for rows in iter_slices(n_samples, size):
                draws = self._sample(rows.stop - rows.start, generator)
                out[rows] = draws.detach().to("cpu").numpy()
        return out

    def _draw_given(self, partial: np.ndarray, drawn: np.ndarray, generator) -> np.ndarray:
        """One draw per row from ``p(drawn cells | the other cells)`` (the ``_impute`` hook)."""
        out = partial.copy()
        rows = np.flatnonzero(drawn.any(axis=1))
        failure = None
        if rows.size:
            try:
                if rows.size > 1 and self._independent_imputation_draws and _same_rows(partial[rows]):
                    # one condition shared by every row (given a dict): one conditional, its draws
                    filled = self._evaluate(
                        lambda x: self._impute(x, rows.size, generator), partial[rows[:1]],
                        row_bytes=self._impute_row_bytes(partial.shape[1], rows.size),
                    )[0]
                else:
                    filled = self._evaluate(
                        lambda x: self._impute(x, 1, generator)[:, 0], partial[rows],
                        row_bytes=self._impute_row_bytes(partial.shape[1], 1),
                    )
                out[rows] = np.where(drawn[rows], filled, partial[rows])
            except RuntimeError as error:  # torch.multinomial of NaN probabilities
                failure = error
        if failure is None and not np.isnan(np.where(drawn, out, 0.0)).any():
            return out
        # a draw failed: a condition of probability zero, or a model that is not finite
        scores = self._evaluate(self._observed_log_prob, partial[rows])
        impossible = rows[~(scores > -np.inf)]
        if not impossible.size:
            if failure is not None:
                raise failure
            return out  # NaN draws of a finite condition: reported by sample
        row = partial[impossible[0]]
        shown = {self.schema_.names[j]: self.schema_.to_values(row[None])[0, j]
                 if self.schema_.types[j] not in NUMERIC_TYPES else row[j]
                 for j in np.flatnonzero(~np.isnan(row))}
        raise ValueError(
            f"{type(self).__name__} gives the condition {shown} probability zero "
            f"(in {impossible.size} row(s)), so nothing can be drawn given it: "
            "condition on values the model can produce (see score_samples of the "
            "partial row), or fit with more regularisation (e.g. level_prior)."
        ) from failure

    def _given_rows(self, given, n_samples: int):
        """``given`` as encoded partial rows (NaN: cells to draw) and the output's index."""
        if not self._supports_missing:
            capable = public_estimators(lambda cls: cls._supports_missing)
            raise ValueError(
                f"{type(self).__name__} cannot sample given some columns (given=...): it has "
                "no conditional distribution of some columns given the others. Estimators "
                f"that have one: {', '.join(capable)}."
            )
        schema = self.schema_
        if isinstance(given, dict):
            row = np.full(schema.n_features, np.nan)
            for column, value in given.items():
                name = schema._column_name(column)
                row[schema.names.index(name)] = self._given_value(name, value)
            return np.repeat(row[None], n_samples, axis=0), None
        import pandas as pd

        frame = given if is_dataframe(given) else None
        if frame is not None:
            unknown = [c for c in frame.columns if str(c) not in schema.names]
            if unknown or not schema.from_frame:
                raise ValueError(
                    f"given has column(s) {unknown or list(frame.columns)} that the fitted "
                    f"data do not have; its columns are {schema.names[:10]}"
                    f"{' ...' if schema.n_features > 10 else ''}."
                )
            table = pd.DataFrame(
                {name: frame[name] if name in frame.columns
                 else pd.Series(np.nan, index=frame.index, dtype=_empty_dtype(schema, name))
                 for name in schema.names},
                index=frame.index,
            )
            index = frame.index
        else:
            table, index = given, None
        if n_samples not in (1, len(table)):
            raise ValueError(
                f"given has {len(table)} partial rows, one row is drawn per row given; "
                f"n_samples={n_samples} must then be 1 (the default) or {len(table)}. For "
                "n_samples rows sharing one condition, pass given as a dict {column: value}."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # unseen levels: an error below
            X, unseen = self._validate_table(table, reset=False)
        if unseen is not None:
            i, j = np.argwhere(unseen)[0]
            self._given_value(schema.names[j], np.asarray(table, dtype=object)[i, j])
        for j in schema.numeric_columns:  # a number the column type cannot hold
            values = X[:, j]
            kind = schema.types[j]
            with np.errstate(invalid="ignore"):
                bad = (values <= 0) if kind == "positive" else (
                    (values < 0) | (values != np.round(values)) if kind == "count" else np.zeros(len(values), bool))
            bad &= ~np.isnan(values)
            if bad.any():
                self._given_value(schema.names[j], values[np.flatnonzero(bad)[0]])
        return X, index

    def _given_value(self, name: str, value) -> float:
        """One given cell encoded (a number, or a level's code); errors name the column."""
        schema = self.schema_
        j = schema.names.index(name)
        kind = schema.types[j]
        if np.ndim(value) != 0:
            raise ValueError(f"given[{name!r}] must be one value (all rows share it); got {value!r}.")
        import pandas as pd

        if pd.isna(value):
            raise ValueError(
                f"given[{name!r}] is missing ({value!r}): leave the column out to have it drawn."
            )
        if kind not in NUMERIC_TYPES:
            levels = schema.levels[name]
            codes = pd.Index(levels).get_indexer([value])
            if codes[0] < 0:
                shown = ", ".join(repr(v) for v in levels[:10]) + (" ..." if len(levels) > 10 else "")
                raise ValueError(
                    f"given[{name!r}] = {value!r} is not a level seen in fit, so the model "
                    f"has no conditional given it; the levels are {shown}."
                )
            return float(codes[0])
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"given[{name!r}] = {value!r} is not a number; the column is {kind}.") from None
        positive = number > 0 or number == 0 and schema.held_zeros(name)  # a zero mass, fitted
        if kind == "positive" and not positive or kind == "count" and (number < 0 or number != round(number)):
            raise ValueError(
                f"given[{name!r}] = {value!r} is impossible for a {kind} column "
                f"({'above 0' if kind == 'positive' else 'a whole number >= 0'})."
            )
        if not np.isfinite(number):
            raise ValueError(f"given[{name!r}] = {value!r} is not a finite number.")
        return number

    def _with_missing_cells(self, X: np.ndarray, drawn: np.ndarray, generator) -> np.ndarray:
        """Drawn cells set missing by the training rows' missingness patterns."""
        found = self.schema_.missing_patterns()
        if found is None:
            return X
        patterns, counts = found
        weights = torch.as_tensor(counts, dtype=torch.float64, device=generator.device)
        pick = torch.multinomial(weights, X.shape[0], replacement=True, generator=generator)
        holes = patterns[pick.cpu().numpy()] & drawn
        return np.where(holes, np.nan, X)


class GenerativeModel(
    DataSourceMixin,
    SamplingMixin,
    ImputationMixin,
    TorchBackendMixin,
    TableColumnsMixin,
    OutlierThresholdMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    DensityMixin,
    BaseEstimator,
):
    """Base class of skgenerative's density estimators.

    Subclasses declare their parameters in ``__init__`` (keyword only, stored
    unchanged) and implement the hooks listed in the module docstring. Everything a
    user calls lives here.

    The common parameters are ``n_components``, ``contamination``, ``device``,
    ``dtype``, ``random_state`` and ``verbose``:

    - ``contamination`` : float in [0, 0.5]. ``offset_`` is this quantile of the
      training log-densities; ``decision_function`` is ``score_samples - offset_``.
    - ``device`` : ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``,
      ``"cuda:1"`` or a ``torch.device``. Read at fit and again at every evaluation,
      so a fitted model can be moved with ``set_params(device=...)``.
    - ``dtype`` : ``"auto"`` (default): fit in the model's training dtype
      (``_auto_training_dtype``: float32 for iterative fits) and evaluate in
      float64, so scores agree across batches to about 1e-12 while training costs
      float32; ``"float64"``: float64 throughout; ``"float32"``: float32
      throughout (half the memory; scores then agree across batches only to
      float32 rounding, about 1e-6 relative).

    Examples
    --------
    A complete estimator from the hooks alone: independent Gaussian features.

    >>> import math
    >>> import numpy as np
    >>> import torch
    >>> from skgenerative.base import GenerativeModel
    >>> class DiagonalGaussian(GenerativeModel):
    ...     def __init__(self, *, contamination=0.1, device="auto", dtype="float64"):
    ...         self.contamination, self.device, self.dtype = contamination, device, dtype
    ...         self.n_components, self.random_state, self.verbose = 1, None, 0
    ...     def _fit(self, source):  # in memory or in dask blocks alike
    ...         moments = source.column_moments()
    ...         self.mean_ = moments.mean.cpu().numpy()
    ...         self.var_ = moments.variance.cpu().numpy() + 1e-9
    ...     def _log_prob(self, X):
    ...         var = self._tensor("var_")
    ...         terms = (X - self._tensor("mean_")).square() / var + torch.log(2 * math.pi * var)
    ...         return -0.5 * terms.sum(1)
    ...     def _encode(self, X):
    ...         return self._log_prob(X).unsqueeze(1)
    ...     def _sample(self, n, generator):
    ...         noise = torch.randn(n, len(self.mean_), generator=generator, dtype=self._dtype)
    ...         return self._tensor("mean_") + self._tensor("var_").sqrt() * noise
    >>> X = np.random.RandomState(0).normal(size=(500, 2))
    >>> model = DiagonalGaussian().fit(X)
    >>> model.score_samples(X[:2]).shape, model.sample(3, random_state=0).shape
    ((2,), (3, 2))
    >>> float((model.predict_outlier(X) == -1).mean())  # contamination=0.1
    0.1
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "contamination": [Interval(Real, 0.0, 0.5, closed="both")],
        "device": [str, torch.device],
        "dtype": [StrOptions({"auto", "float32", "float64"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    #: whether ``fit`` and the evaluation methods accept NaN (missing entries)
    _supports_missing = False
    #: whether ``_impute(x, n_draws)`` gives independent draws of ``p(missing | x)`` (so
    #: rows sharing one condition are drawn from one row's conditional at once);
    #: importance resampling reuses its particles and is not
    _independent_imputation_draws = False
    #: whether ``offset_`` waits for its first use (models whose scores are costly)
    _defer_offset = False
    #: the training dtype of ``dtype="auto"`` (evaluation is float64): float32 for
    #: iterative fits, where it halves the cost; closed forms may keep float64
    _auto_training_dtype = "float32"
    #: column types (see :mod:`._schema`) the model represents; others raise at fit
    _supported_column_types = frozenset(NUMERIC_TYPES)
    #: the family of each column type whose support declared columns must respect
    _column_families = FAMILIES
    #: whether the model's arithmetic squares its input (so huge values overflow);
    #: a model that only thresholds its input sets it to False
    _squares_input = True
    #: set by subclasses that have a decoder (enables ``inverse_transform``)
    _decode = None
    #: set by subclasses that can be trained incrementally (enables ``partial_fit``)
    _partial_fit = None
    #: fitted attributes that ``_fit_input_encoding`` sets from the first rows and
    #: every later block of a dask collection is encoded with
    _fit_encoding_attributes: tuple = ()

    # ------------------------------------------------------------------ hooks
    def _fit(self, source) -> torch.Tensor | None:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _encode(self, X: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _n_latent(self) -> int:
        return int(self.n_components)

    def _fit_input_encoding(self, X: np.ndarray) -> None:
        """Learn at fit how the model reads raw values (e.g. thresholds); before ``_check_values``."""

    def _check_values(self, X: np.ndarray) -> None:
        """Model-specific checks of validated input; raise ``ValueError``."""

    def _continuous_likelihood(self) -> bool:
        """Whether real columns get a density (not a probability): warn on discrete data."""
        return True

    def _spread_columns(self, X: np.ndarray) -> list:
        """Real columns of the rows ``X`` (the discrete-data check's probe of the training
        rows) the model dequantises itself (no warning on discrete data for them); none
        by default."""
        return []

    def _row_bytes(self, n_features: int) -> int:
        """Temporary bytes one row needs during evaluation (sets the chunk size)."""
        return 8 * 16 * (n_features + self._n_latent() + 1)

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """Validated input as one float matrix (level codes for discrete columns)."""
        return self._validate_table(X, reset=reset)[0]

    def _check_no_empty_column(self, X: np.ndarray) -> None:
        check_no_empty_column(X, getattr(self, "feature_names_in_", None))

    # ------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    @on_blocks("_fit_on_blocks")
    def fit(self, X, y=None):
        """Fit the model to ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Training data: numpy array, pandas DataFrame, list of lists, a CPU or
            CUDA tensor, or a dask array or DataFrame (read block by block where it
            is; see the user guide, "Beyond one machine: Dask").
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = self._validate_X(X, reset=True)
        self.schema_ = self.schema_.with_observed(X)  # ranges etc. for sample
        self._begin_fit()
        return self._fit_source(TensorSource(self._input_tensor(X), X))

    @available_if(_has_partial_fit)
    @_fit_context(prefer_skip_nested_validation=True)
    @on_blocks("_partial_fit_on_blocks")
    def partial_fit(self, X, y=None):
        """Continue fitting on ``X`` (the first call starts the model).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            A chunk of training data (see ``fit``); a dask collection is fed block
            by block. ``offset_`` then comes from the last block's scores.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The updated estimator. ``offset_`` is set from the scores of ``X``.
        """
        first = not hasattr(self, "device_")
        X = self._validate_X(X, reset=first)
        self.schema_ = self.schema_.with_observed(X, merge=not first)
        with adaptive_threads():
            if first:
                self._begin_fit()
            else:
                self._cache.clear()  # the fitted parameters are about to change
            source = TensorSource(self._input_tensor(X), X)
            with self._training_phase():
                scores = self._partial_fit(source.tensor, first)
            self._end_fit(source, scores)
        return self

    def _begin_fit(self) -> None:
        resolve_device(self.device)  # a bad device fails before any work
        self._train_dtype, self._fit_dtype = self._resolved_dtypes()
        self.device_ = self._device
        self._cache = {}

    @contextmanager
    def _training_phase(self):
        """Inside: ``_dtype`` is the training dtype (hooks fit in it)."""
        self._in_training = True
        try:
            yield
        finally:
            self._in_training = False

    def _end_fit(self, source, scores: torch.Tensor | None) -> None:
        """Set what every fitted model has: output width and the outlier threshold.

        A model whose training scores cost much (``_defer_offset``: the neural
        models' importance sampling) computes ``offset_`` when it is first used:
        a ``GridSearchCV`` never pays for it, and fit only fits. The rows are kept
        until then (a copy below 64 MiB, else a reference with a fingerprint that
        catches data modified in place) and dropped after, or when pickling. Rows
        that are not in memory (a dask collection) give the exact quantile of their
        lazy scores, in two passes.
        """
        self._n_features_out = self._n_latent()
        self._move_modules(self._device)  # a fitted module is in the evaluation dtype
        X = getattr(source, "array", None)
        if X is None:  # rows in blocks
            self._set_offset_on_blocks(source.collection)
            return
        if scores is None and self._defer_offset:
            rows = X.copy() if X.nbytes <= _DEFER_COPY_BYTES else X
            self.__dict__["_threshold"] = {"rows": rows, "fingerprint": _fingerprint(rows)}
            return
        if scores is None:
            scores = self._evaluate(self._observed_log_prob, X)
        elif isinstance(scores, torch.Tensor):
            scores = scores.detach().to("cpu").numpy()
        self._set_offset(scores)

    def _set_deferred_offset(self, threshold: dict) -> None:
        """Score the kept training rows once; keep the quantile, drop the rows."""
        rows = threshold["rows"]
        if _fingerprint(rows) != threshold["fingerprint"]:
            raise RuntimeError(
                f"The training data of this {type(self).__name__} were modified in place "
                "after fit, so offset_ (computed on first use from the training rows) "
                "cannot be computed. Fit again, or fit on a copy (fit(X.copy()))."
            )
        scores = self._evaluate(self._observed_log_prob, rows)
        self._check_scores(scores, "the training data")
        threshold["offset"] = float(np.quantile(scores, self.contamination))
        del threshold["rows"], threshold["fingerprint"]

    # ------------------------------------------------------------ evaluation
    @lazy_rows
    def score_samples(self, X):
        """Log-density of each sample, in nats, in the units of ``X`` as given.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``log p(x)`` for each row. Exact or an estimate depending on the model
            (see its Notes). The same row always gets the same value, whatever batch
            it arrives in. For a table with discrete columns, the log-density of the
            numeric cells plus the log-probability of the levels; a level not seen
            in fit adds ``log 1 / (n + K + 1)`` (see :mod:`skgenerative._schema`).
        """
        check_is_fitted(self)
        X, unseen = self._validate_table(X, reset=False)
        scores = self._evaluate(self._observed_log_prob, X)
        if unseen is not None:
            scores = scores + self.schema_.unseen_penalty(unseen, X.shape[0]).astype(scores.dtype)
        self._check_scores(scores, "this input")
        return scores

    def _observed_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """``_log_prob`` of a chunk, with rows that have nothing observed at exactly 0.

        The marginal of no entries is the probability of the sure event, 1, under
        every model. Models compute it through their general path (a log-sum-exp of
        mixture weights, a determinant of an identity), which in float32 leaves a
        rounding residue of about 1e-7 that would depend on the dtype, the thread
        count and the library versions; the identity is imposed here, once.
        """
        scores = self._log_prob(X)
        if self._supports_missing and has_nan(X):
            empty = torch.isnan(X).all(1)
            scores = torch.where(empty, torch.zeros_like(scores), scores)
        return scores

    @on_blocks(_mean_score_lazily)
    def score(self, X, y=None):
        """Mean log-density of the samples (higher is better).

        This is what ``GridSearchCV`` maximises when no ``scoring`` is given, so a
        grid over ``n_components`` picks the best held-out log-likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    @lazy_rows
    def transform(self, X):
        """Latent representation of ``X`` (see the estimator's description).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._evaluate(self._encode, X)

    @available_if(_has_decoder)
    def inverse_transform(self, X):
        """Map latent vectors back to data space.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_components)
            Latent vectors, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        Z = check_array(to_numpy_input(X), dtype=[np.float64, np.float32])
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"X has {Z.shape[1]} features, but {type(self).__name__}.inverse_transform "
                f"is expecting {self._n_features_out} latent features as input."
            )
        return self._rows(self._evaluate(self._decode, Z, n_features=self.n_features_in_))

    # ----------------------------------------------------- sklearn integration
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._supports_missing
        tags.transformer_tags.preserves_dtype = (
            [self.dtype] if self.dtype in ("float32", "float64") else ["float64"]
        )  # "auto" evaluates in float64
        return tags

    def __getstate__(self):
        if "_threshold" in self.__dict__:
            self.offset_  # noqa: B018 - a deferred offset is computed, its rows dropped
        state = dict(super().__getstate__())
        if "_cache" in state:
            state["_cache"] = {}
        for key, value in state.items():
            if isinstance(value, (torch.nn.Module, torch.Tensor)):
                state[key] = _TorchPayload(value)
        return state

    def __setstate__(self, state):
        state = {
            key: value.load() if isinstance(value, _TorchPayload) else value
            for key, value in state.items()
        }
        super().__setstate__(state)
