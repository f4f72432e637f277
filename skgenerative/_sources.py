"""Data sources: the rows a fit reads, in memory or in the blocks of a dask collection.

A fit never asks where its rows are; it asks its source (skorch's dataset, for our
EM driver and training loop). Every source offers the same operations:

``shape``, ``dtype``, ``device``, ``has_missing``
    Rows and columns, the rows' float dtype, where chunks are computed, whether a
    cell is missing (NaN).
``column_moments()``
    Per column: the observed count, mean and centred second moment
    (:class:`ColumnMoments`, float64). Over blocks this is the first pass: it also
    validates every block.
``covariance(dtype, fill_missing=False)``
    The mean and the sample covariance (divisor ``n - 1``) of the rows, missing cells
    filled with their column's mean when asked.
``reduce(statistics, *args, combine=add_statistics, row_bytes=...)``
    ``combine`` of ``statistics(chunk, *args)`` over chunks of rows small enough for
    ``row_bytes`` of temporaries a row: left to right in memory; over blocks, left to
    right within each block and a tree of ``combine`` across blocks, run where the
    blocks are (the user's dask cluster), so that only ``args`` and the statistics
    travel. ``statistics`` and ``combine`` must then be picklable (module-level
    functions, or small objects holding tensors).
``map(fn, local=False, dtype=None, width=None, device=None)``
    A source of ``fn(rows)`` for a function of rows (one output row per input row):
    applied at once in memory, lazily to each block otherwise; ``dtype``, ``width``
    and ``device`` say what ``fn`` changes. ``local=True`` keeps a function that
    should not travel (a bound method of an estimator) on the client: the source then
    brings its blocks to the client one at a time.
``sample(limit=INIT_SAMPLE_ROWS, random_state=None)``
    Rows for an initialisation: all of them when they are in memory or at most
    ``limit``, in order; otherwise ``limit`` rows drawn uniformly without replacement.
``split(fraction, seed_of)``
    ``(training source, validation rows)``: ``floor(fraction m)`` rows of each block of
    ``m`` rows held out by a draw seeded with ``seed_of(block index)`` (one block in
    memory, index 0).
``epoch_batches(batch_size, generator)``
    The minibatches of one epoch: in memory the rows shuffled; over blocks, the blocks
    in an order drawn from ``generator``, each shuffled within, the next block
    computed while the current one trains.
``take(rows)``
    Rows by position.

:class:`TensorSource` holds a tensor; :class:`DaskSource` the blocks of a dask array
or DataFrame (dask is imported only when one arrives). A new kind of storage is one
more class with these methods. Methods of a fitted estimator given a dask collection
map over its blocks lazily (:func:`map_rows`), and ``offset_`` is an exact quantile of
lazy scores in two passes (:func:`quantile`).

Nothing here knows a model: statistics, maps and checks come from the callers.

Reference: Chan, T. F., Golub, G. H. & LeVeque, R. J. (1979). Updating formulae and a
pairwise algorithm for computing sample variances.
https://doi.org/10.1007/978-3-642-51461-6_3
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

from ._torch import adaptive_threads, chunk_rows, has_nan, iter_slices, seed_from

__all__ = [
    "INIT_SAMPLE_ROWS",
    "Cast",
    "ColumnMoments",
    "DaskSource",
    "TensorSource",
    "accumulate",
    "add_statistics",
    "is_dask_collection",
    "map_rows",
    "quantile",
    "sample_covariance",
]

#: rows an initialisation reads from a source that is not in memory (see ``sample``)
INIT_SAMPLE_ROWS = 100_000
#: parts merged by one task of a reduction tree (fewer levels: fewer round trips)
_FAN_IN = 8
#: values kept per block by the first pass of :func:`quantile`
_SKETCH = 1025

Statistics = dict


# --------------------------------------------------------------------- folds
def add_statistics(a: Statistics, b: Statistics) -> Statistics:
    """Entry-wise sum of two dicts of additive statistics (tensors or numbers)."""
    return {key: a[key] + b[key] for key in a}


def accumulate(
    chunks: Iterable,
    statistics: Callable[[object], Statistics],
    combine: Callable[[Statistics, Statistics], Statistics] = add_statistics,
) -> Statistics:
    """``combine`` of ``statistics(chunk)`` over ``chunks``, left to right."""
    total = None
    for chunk in chunks:
        stats = statistics(chunk)
        total = stats if total is None else combine(total, stats)
    if total is None:
        raise ValueError("EM needs at least one chunk of data.")
    return total


def _combine_present(combine, a, b):
    """``combine``, where an empty block contributes nothing (``None``)."""
    if a is None or b is None:
        return a if b is None else b
    return combine(a, b)


# ------------------------------------------------------------------ moments
class ColumnMoments(NamedTuple):
    """Per column: observed ``count``, ``mean`` and centred second moment ``m2`` (float64)."""

    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor
    n_rows: int

    @property
    def variance(self) -> torch.Tensor:
        """``m2 / count``: the variance of the observed cells (divisor ``count``)."""
        return self.m2 / self.count.clamp_min(1)

    def has_missing(self, columns=slice(None)) -> bool:
        """Whether a cell of ``columns`` is missing."""
        return bool((self.count[columns] < self.n_rows).any())


def _chan(a: dict, b: dict, outer) -> dict:
    """Pairwise merge of (count, mean, centred second moment) records (Chan et al.).

    ``n = n_a + n_b``, ``delta = mean_b - mean_a``, ``mean = mean_a + delta n_b / n``,
    ``M2 = M2_a + M2_b + outer(delta) n_a n_b / n`` (per column, or the full matrix);
    other entries add up, lists of block lengths concatenate.
    """
    na, nb = a["count"], b["count"]
    n = na + nb
    safe = torch.where(n > 0, n, torch.ones_like(n))
    delta = b["mean"] - a["mean"]
    mean = a["mean"] + delta * (nb / safe)
    m2 = a["m2"] + b["m2"] + outer(delta, na * nb / safe)
    out = {key: a[key] + b[key] for key in a if key not in ("count", "mean", "m2")}
    out.update(count=n, mean=mean, m2=m2)
    return out


def _outer_columns(delta, weight):
    return weight * delta.square()


def _outer_full(delta, weight):
    return weight * torch.outer(delta, delta)


def _merge_columns(a, b):
    return _chan(a, b, _outer_columns)


def _merge_full(a, b):
    return _chan(a, b, _outer_full)


def _column_record(x: torch.Tensor) -> dict:
    """A block's per-column moments of its observed cells, and its length."""
    x = x.double()
    observed = ~torch.isnan(x)
    count = observed.sum(0).double()
    zero = torch.zeros_like(x)
    mean = torch.where(observed, x, zero).sum(0) / count.clamp_min(1)
    centred = torch.where(observed, x - mean, zero)
    return {"count": count, "mean": mean, "m2": centred.square().sum(0), "lengths": [x.shape[0]]}


def _full_record(x: torch.Tensor, fill) -> dict:
    """A block's mean and centred cross moments (missing cells set to ``fill``)."""
    x = x.double()
    if fill is not None:
        x = torch.where(torch.isnan(x), fill.to(x.dtype), x)
    n = x.shape[0]
    mean = x.mean(0) if n else torch.zeros(x.shape[1], dtype=x.dtype)
    centred = x - mean
    count = torch.tensor(float(n), dtype=torch.float64)
    return {"count": count, "mean": mean, "m2": centred.T @ centred}


def sample_covariance(X: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Sample covariance (divided by ``n - 1``), as fast as the numerics allow.

    First ``(X^T X - n mu mu^T) / (n - 1)``, one product in torch. Its relative error
    on feature ``j`` is about ``eps (1 + mu_j^2 / var_j)``; when that could exceed
    1e-10 (data far from the origin relative to its spread, or float32) the covariance
    is accumulated from centred chunks instead.
    """
    n, d = X.shape
    gram = X.T @ X
    cov = (gram - n * torch.outer(mean, mean)) / (n - 1)
    variance = torch.diagonal(cov).clamp_min(torch.finfo(X.dtype).tiny)
    worst = float((mean.square() * n / ((n - 1) * variance)).max())
    if torch.finfo(X.dtype).eps * (1.0 + worst) <= 1e-10:
        return cov
    cov = torch.zeros(d, d, dtype=X.dtype, device=X.device)
    for rows in iter_slices(n, chunk_rows(X.element_size() * d, n, X.device)):
        centred = X[rows] - mean
        cov.addmm_(centred.T, centred)
    return cov / (n - 1)


class Cast:
    """A map of rows to another float dtype or device (picklable: it travels with a source)."""

    def __init__(self, dtype: torch.dtype | None = None, device: torch.device | None = None):
        self.dtype, self.device = dtype, device

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        return X.to(device=self.device or X.device, dtype=self.dtype or X.dtype)


# ------------------------------------------------------------------ in memory
class TensorSource:
    """Rows held in one tensor (on the estimator's device).

    ``array``, when given, is the validated numpy array the tensor shares memory with
    (what an in-memory fit keeps for its deferred ``offset_``).
    """

    def __init__(self, tensor: torch.Tensor, array: np.ndarray | None = None):
        self.tensor = tensor
        self.array = array
        self._has_missing = None
        self._moments = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.tensor.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.tensor.dtype

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @property
    def has_missing(self) -> bool:
        if self._has_missing is None:
            self._has_missing = has_nan(self.tensor)
        return self._has_missing

    def column_moments(self) -> ColumnMoments:
        if self._moments is None:
            X = self.tensor
            n = X.shape[0]
            if not self.has_missing:
                count = torch.full((X.shape[1],), float(n), dtype=torch.float64, device=X.device)
                mean = X.mean(0, dtype=torch.float64)
            else:
                observed = ~torch.isnan(X)
                count = observed.sum(0).double()
                mean = torch.nan_to_num(torch.nanmean(X.double(), 0))
            m2 = torch.zeros_like(mean)
            for rows in iter_slices(n, chunk_rows(16 * X.shape[1], n, X.device)):
                m2 += torch.nan_to_num(X[rows].double() - mean).square().sum(0)
            self._moments = ColumnMoments(count, mean, m2, n)
        return self._moments

    def covariance(self, dtype: torch.dtype, fill_missing: bool = False):
        X = self.tensor.to(dtype)
        if fill_missing and self.has_missing:
            X = torch.where(torch.isnan(X), torch.nanmean(X, 0).expand_as(X), X)
        mean = X.mean(0)
        return mean, sample_covariance(X, mean)

    def reduce(self, statistics, *args, combine=add_statistics, row_bytes: int) -> Statistics:
        n = self.tensor.shape[0]
        size = chunk_rows(row_bytes, n, self.device)
        chunks = (self.tensor[rows] for rows in iter_slices(n, size))
        return accumulate(chunks, lambda chunk: statistics(chunk, *args), combine)

    def map(self, fn, *, local: bool = False, dtype=None, width=None, device=None) -> TensorSource:
        # whether the rows have NaN is found again: a map may introduce some (a mixture
        # reads a positive column's zeros as missing on its log scale) or remove them
        return TensorSource(fn(self.tensor))

    def sample(self, limit: int | None = None, random_state=None) -> torch.Tensor:
        return self.tensor  # rows in memory are read whole

    def split(self, fraction: float, seed_of: Callable[[int], int]):
        n = self.tensor.shape[0]
        n_valid = int(math.floor(fraction * n))
        generator = torch.Generator().manual_seed(seed_of(0))
        order = torch.randperm(n, generator=generator).to(self.device)
        return TensorSource(self.tensor[order[n_valid:]]), self.tensor[order[:n_valid]]

    def epoch_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        n = self.tensor.shape[0]
        order = torch.randperm(n, generator=generator, device=self.device)
        for rows in iter_slices(n, batch_size):
            yield self.tensor[order[rows]]

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return self.tensor[rows]


# ---------------------------------------------------------------- dask blocks
def is_dask_collection(X) -> bool:
    """Whether ``X`` is a dask collection (array, DataFrame, Series), without importing dask."""
    return hasattr(X, "__dask_graph__") and type(X).__module__.split(".")[0] in ("dask", "dask_expr")


def _dask():
    try:
        import dask
    except ImportError as error:  # pragma: no cover - a dask collection implies dask
        raise ImportError(
            "skgenerative needs dask to handle dask collections: "
            "pip install 'skgenerative[dask]' (dask[array,dataframe] and distributed)."
        ) from error
    return dask


def is_frame(X) -> bool:
    """Whether a dask collection is a DataFrame (partitions of rows with named columns)."""
    return hasattr(X, "map_partitions") and hasattr(X, "columns")


def _as_float(block) -> np.ndarray:
    if hasattr(block, "to_numpy"):  # a pandas partition of numbers (nullable ones too)
        return block.to_numpy(dtype=np.float64, na_value=np.nan)
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    return block


def _tensor_of(block, context, holdout=None) -> torch.Tensor:
    """A raw block as the source's rows: encoded, held-out rows dropped, mapped."""
    encode, maps = context
    x = torch.from_numpy(np.ascontiguousarray(encode(block)))
    if holdout is not None and len(holdout):
        keep = torch.ones(x.shape[0], dtype=torch.bool)
        keep[holdout] = False
        x = x[keep]
    for fn in maps:
        x = fn(x)
    return x


def _selected(block, context, rows) -> np.ndarray:
    """Rows ``rows`` of a raw block, encoded and mapped (numpy, to travel)."""
    encode, maps = context
    x = torch.from_numpy(np.ascontiguousarray(encode(block)))[torch.as_tensor(rows, dtype=torch.long)]
    for fn in maps:
        x = fn(x)
    return x.numpy()


def _block_statistics(block, context, holdout, job):
    """A block's ``combine`` of ``statistics(chunk, *args)`` over its chunks (or ``None``)."""
    statistics, args, combine, row_bytes = job
    with torch.inference_mode(), adaptive_threads():
        x = _tensor_of(block, context, holdout)
        if x.shape[0] == 0:
            return None
        size = chunk_rows(row_bytes, x.shape[0], x.device)
        return accumulate((x[rows] for rows in iter_slices(x.shape[0], size)),
                          lambda chunk: statistics(chunk, *args), combine)


def _block_record(block, context, holdout, kind, fill):
    with torch.inference_mode(), adaptive_threads():
        x = _tensor_of(block, context, holdout)
        return _column_record(x) if kind == "columns" else _full_record(x, fill)


def _fold(combine, *parts):
    total = parts[0]
    for part in parts[1:]:
        total = _combine_present(combine, total, part)
    return total


def _tree_reduce(parts: list, combine):
    """Merge delayed ``parts`` as a tree (each task folds up to 8, in order), then compute."""
    dask = _dask()
    fold = dask.delayed(_fold, pure=True)
    while len(parts) > 1:
        parts = [fold(combine, *parts[i:i + _FAN_IN]) if len(parts[i:i + _FAN_IN]) > 1 else parts[i]
                 for i in range(0, len(parts), _FAN_IN)]
    return dask.compute(parts[0])[0]


def _distinct(part, columns):
    import pandas as pd

    if not hasattr(part, "columns"):  # a numpy block: columns by position
        return {j: pd.unique(pd.Series(np.asarray(part)[:, j]).dropna()) for j in columns}
    return {name: pd.unique(part[name].dropna()) for name in columns}


def _merge_distinct(a, b):
    import pandas as pd

    return {name: pd.unique(np.concatenate([np.asarray(a[name], dtype=object),
                                            np.asarray(b[name], dtype=object)])) for name in a}


class DaskSource:
    """Rows in the blocks of a dask array or DataFrame, read where the blocks are.

    ``encode`` turns a raw block (a numpy block, a pandas partition) into a float
    matrix and checks it (the estimator's validation, supplied by
    :mod:`skgenerative.base`; by default a float conversion), producing ``dtype``.
    Block lengths are known from a dask array's chunks, else from the first pass
    (:meth:`column_moments`). Data are read again on every pass, as dask computes
    them. Sources derived by ``map`` and ``split`` share the blocks, their lengths
    and whether cells are missing with the source they come from.
    """

    def __init__(self, collection, *, encode=None, dtype=None):
        _dask()
        self.collection = collection
        self.frame = is_frame(collection)
        if self.frame:
            self._blocks = list(collection.to_delayed())
            self._lengths = None
            width = len(collection.columns)
        else:
            if collection.ndim != 2:
                raise ValueError(f"Expected a 2D dask array, got {collection.ndim} dimension(s).")
            if collection.numblocks[1] > 1:  # a block is a set of whole rows
                collection = self.collection = collection.rechunk({1: -1})
            self._blocks = list(collection.to_delayed().ravel())
            chunks = collection.chunks[0]
            self._lengths = None if any(math.isnan(m) for m in chunks) else [int(m) for m in chunks]
            width = collection.shape[1]
        self._encode = encode or _as_float
        self._width = int(width)
        if dtype is None:
            dtype = torch.float32 if getattr(collection, "dtype", None) == np.float32 else torch.float64
        self.dtype = dtype
        self.device = torch.device("cpu")
        self._remote: tuple = ()  # maps applied where a block is computed
        self._local: tuple = ()  # maps applied on the client
        self._holdout: list | None = None  # per block, raw row positions held out
        self._moments: ColumnMoments | None = None
        self._root = self  # the encoded rows this source derives from

    def _derived(self, **changes) -> DaskSource:
        out = copy.copy(self)
        out._moments = None
        out.__dict__.update(changes)
        return out

    # ------------------------------------------------------------ shape
    @property
    def lengths(self) -> list[int]:
        """Rows of each block (before any are held out); known after the first pass."""
        root = self._root
        if root._lengths is None:
            root.column_moments()
        return root._lengths

    @property
    def shape(self) -> tuple[int, int]:
        held = [len(h) for h in self._holdout] if self._holdout is not None else [0] * len(self._blocks)
        return (int(sum(self.lengths) - sum(held)), self._width)

    @property
    def has_missing(self) -> bool:
        return self._root.column_moments().has_missing()

    # ---------------------------------------------------------- passes
    def _context(self):
        """What every block task needs (encoder, maps), as one graph key: it travels once."""
        return _dask().delayed((self._encode, self._remote), pure=False, traverse=False)

    def _holdout_of(self, index: int):
        return None if self._holdout is None else self._holdout[index]

    def _client_blocks(self, order=None) -> Iterator[torch.Tensor]:
        """The blocks (in ``order``) as the source's rows on the client, the next one prefetched."""
        dask = _dask()
        order = range(len(self._blocks)) if order is None else order
        remote, context = dask.delayed(_tensor_of, pure=True), self._context()
        parts = [remote(self._blocks[i], context, self._holdout_of(i)) for i in order]

        def fetch(position):
            x = dask.compute(parts[position])[0]
            for fn in self._local:
                x = fn(x)
            return x

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(fetch, 0) if parts else None
            for position in range(len(parts)):
                x = pending.result()
                if position + 1 < len(parts):
                    pending = pool.submit(fetch, position + 1)
                yield x

    def _per_block(self, fn, *args) -> list:
        dask = _dask()
        task, context = dask.delayed(fn, pure=True), self._context()
        return [task(b, context, self._holdout_of(i), *args) for i, b in enumerate(self._blocks)]

    def column_moments(self) -> ColumnMoments:
        """Per-column moments merged over the blocks (Chan et al.); on the rows as encoded,
        the first pass, which validates every block."""
        if self._moments is None:
            if self._local:
                record = None
                for x in self._client_blocks():
                    part = _column_record(x)
                    record = part if record is None else _merge_columns(record, part)
            else:
                record = _tree_reduce(self._per_block(_block_record, "columns", None), _merge_columns)
            if self._root is self and self._lengths is None:
                self._lengths = [int(m) for m in record["lengths"]]
            n = int(sum(record["lengths"]))
            self._moments = ColumnMoments(record["count"], record["mean"], record["m2"], n)
        return self._moments

    def covariance(self, dtype: torch.dtype, fill_missing: bool = False):
        moments = self.column_moments()
        fill = moments.mean if fill_missing and moments.has_missing() else None
        if self._local:
            record = None
            for x in self._client_blocks():
                part = _full_record(x, fill)
                record = part if record is None else _merge_full(record, part)
        else:
            record = _tree_reduce(self._per_block(_block_record, "full", fill), _merge_full)
        n = moments.n_rows
        return record["mean"].to(dtype), (record["m2"] / (n - 1)).to(dtype)

    def reduce(self, statistics, *args, combine=add_statistics, row_bytes: int) -> Statistics:
        if self._local:
            total = None
            for x in self._client_blocks():
                size = chunk_rows(row_bytes, x.shape[0], x.device)
                for rows in iter_slices(x.shape[0], size):
                    total = _combine_present(combine, total, statistics(x[rows], *args))
        else:
            dask = _dask()
            job = dask.delayed((statistics, args, combine, row_bytes), pure=False, traverse=False)
            total = _tree_reduce(self._per_block(_block_statistics, job), combine)
        if total is None:
            raise ValueError("EM needs at least one chunk of data.")
        return total

    # ------------------------------------------------------ derived sources
    def map(self, fn, *, local: bool = False, dtype=None, width=None, device=None) -> DaskSource:
        if local or self._local:  # once on the client, every later map stays there
            changes = {"_local": self._local + (fn,)}
        else:
            changes = {"_remote": self._remote + (fn,)}
        if device is not None:  # only a map on the client moves rows to a device
            changes["device"] = torch.device(device)
        if dtype is not None:
            changes["dtype"] = dtype
        if width is not None:
            changes["_width"] = int(width)
        return self._derived(**changes)

    def split(self, fraction: float, seed_of: Callable[[int], int]):
        holdout = []
        for index, m in enumerate(self.lengths):
            generator = torch.Generator().manual_seed(seed_of(index))
            holdout.append(torch.randperm(m, generator=generator)[: int(math.floor(fraction * m))].tolist())
        train = self._derived(_holdout=holdout)
        return train, self._gather([(i, rows) for i, rows in enumerate(holdout) if len(rows)])

    def _gather(self, selections: list) -> torch.Tensor | None:
        """Rows ``rows`` (raw positions) of block ``index`` for each ``(index, rows)``, in order."""
        if not selections:
            return None
        dask = _dask()
        select, context = dask.delayed(_selected, pure=True), self._context()
        parts = dask.compute(*[select(self._blocks[i], context, rows) for i, rows in selections])
        x = torch.from_numpy(np.concatenate(parts))
        for fn in self._local:
            x = fn(x)
        return x

    def _raw_positions(self, positions: np.ndarray) -> list:
        """Sorted positions among the kept rows -> ``(block, raw rows)`` selections."""
        kept = []
        for index, m in enumerate(self.lengths):
            rows = np.arange(m)
            if self._holdout is not None and len(self._holdout[index]):
                rows = np.delete(rows, self._holdout[index])
            kept.append(rows)
        starts = np.cumsum([0] + [len(r) for r in kept])
        block = np.searchsorted(starts, positions, side="right") - 1
        return [(int(b), kept[b][positions[block == b] - starts[b]].tolist()) for b in np.unique(block)]

    def sample(self, limit: int | None = None, random_state=None) -> torch.Tensor:
        n = self.shape[0]
        limit = INIT_SAMPLE_ROWS if limit is None else limit
        if n <= limit:
            positions = np.arange(n)
        else:
            rng = np.random.default_rng(seed_from(random_state))
            positions = np.sort(rng.choice(n, limit, replace=False))
        return self._gather(self._raw_positions(positions))

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        positions = np.asarray(rows.cpu(), dtype=np.int64)
        unique, inverse = np.unique(positions, return_inverse=True)
        return self._gather(self._raw_positions(unique))[torch.as_tensor(inverse)]

    def epoch_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self._blocks), generator=generator).tolist()
        for data in self._client_blocks(order):
            rows = torch.randperm(data.shape[0], generator=generator)
            for sl in iter_slices(data.shape[0], batch_size):
                yield data[rows[sl]]

    # ------------------------------------------------------- raw partitions
    def head(self, n: int):
        """The first ``n`` rows as given (numpy, or a pandas DataFrame)."""
        if self.frame:
            return self.collection.head(n, npartitions=-1, compute=True)
        return np.asarray(self.collection[:n].compute())

    def raw_blocks(self) -> Iterator:
        """The blocks as given (numpy arrays, pandas DataFrames), computed one at a time."""
        dask = _dask()
        for block in self._blocks:
            yield dask.compute(block)[0]

    def distinct(self, columns: list) -> dict:
        """Distinct observed values of some DataFrame columns (one pass, unordered)."""
        dask = _dask()
        task = dask.delayed(_distinct, pure=True)
        return _tree_reduce([task(b, list(columns)) for b in self._blocks], _merge_distinct)

    def known_categories(self, column) -> bool:
        """Whether a DataFrame column is categorical with categories known to dask."""
        import pandas as pd

        series = self.collection[column]
        return isinstance(series.dtype, pd.CategoricalDtype) and bool(series.cat.known)

    @property
    def meta(self):
        """An empty pandas DataFrame with the columns and dtypes (frames), else ``None``."""
        return self.collection._meta if self.frame else None


# ---------------------------------------------------------------- evaluation
def _apply(block, owner, method, kwargs, dtype):
    if len(block) == 0:  # dask arrays and DataFrames can have empty blocks
        return None
    return getattr(owner, method)(block, **kwargs)


def _apply_array(block, owner, method, kwargs, dtype, empty_shape):
    out = _apply(block, owner, method, kwargs, dtype)
    return np.empty(empty_shape, dtype=dtype) if out is None else np.asarray(out)


def _apply_draws(block, owner, kwargs, seed, dtype, block_info=None):
    index = block_info[0]["chunk-location"][0] if block_info else 0
    state = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    if len(block) == 0:
        return np.empty((kwargs["n_draws"], 0, block.shape[1]), dtype=dtype)
    return np.asarray(owner.impute(block, random_state=state, **kwargs))


def _apply_frame(part, owner, method, kwargs, kind, names, dtype):
    import pandas as pd

    out = _apply(part, owner, method, kwargs, dtype)
    if out is None:
        if kind == "rows":
            return pd.Series(np.empty(0, dtype=dtype), index=part.index, name=method)
        if kind == "same":
            return part
        return pd.DataFrame(np.empty((0, len(names)), dtype=dtype), index=part.index, columns=names)
    if isinstance(out, (pd.DataFrame, pd.Series)):
        return out.set_axis(part.index, axis=0)
    if kind == "rows":
        return pd.Series(np.asarray(out, dtype=dtype), index=part.index, name=method)
    return pd.DataFrame(np.asarray(out), index=part.index, columns=names if kind == "wide" else part.columns)


def map_rows(X, owner, method: str, *, kind: str, dtype, names=None, meta=None, **kwargs):
    """``owner.<method>`` over the blocks of the dask collection ``X``, lazily.

    ``kind`` says what the method returns per row: ``"rows"`` one value (a dask array
    of shape ``(n,)``, or a dask Series), ``"wide"`` the columns ``names`` (an array
    ``(n, len(names))`` or a DataFrame), ``"same"`` a row like the input (same columns
    and, for DataFrames, the input's dtypes), ``"draws"`` ``n_draws`` rows like the input
    (an array ``(n_draws, n, D)``, drawn with seeds from ``random_state`` and the
    block's index). ``meta``: an empty DataFrame like the output of ``"same"`` (the
    input's by default). The result keeps ``X``'s row partitioning. A copy of ``owner``
    taken now travels once to each worker (one graph key), so a later refit does not
    reach an uncomputed result.
    """
    dask = _dask()
    frozen = dask.delayed(copy.deepcopy(owner), pure=False)
    dtype = np.dtype(dtype)
    if is_frame(X):
        import pandas as pd

        if kind == "draws":
            raise ValueError(
                "impute(n_draws=...) of a dask DataFrame is not supported: pass "
                "X.to_dask_array(lengths=True) for an array of draws, or n_draws=None."
            )
        if kind == "rows":
            meta = pd.Series(np.empty(0, dtype=dtype), name=method)
        elif kind == "same":
            meta = X._meta if meta is None else meta
        else:
            meta = pd.DataFrame({name: np.empty(0, dtype=dtype) for name in names})
        return X.map_partitions(_apply_frame, frozen, method, kwargs, kind, names, dtype, meta=meta)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D dask array, got {X.ndim} dimension(s).")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    if kind == "draws":
        seed = seed_from(kwargs.pop("random_state", None))
        n_draws = int(kwargs["n_draws"])
        return X.map_blocks(
            _apply_draws, frozen, kwargs, seed, dtype, dtype=dtype, new_axis=0,
            chunks=((n_draws,),) + X.chunks, meta=np.empty((0, 0, 0), dtype=dtype),
        )
    if kind == "rows":
        return X.map_blocks(_apply_array, frozen, method, kwargs, dtype, (0,), dtype=dtype,
                            drop_axis=1, meta=np.empty((0,), dtype=dtype))
    width = X.shape[1] if kind == "same" else len(names)
    return X.map_blocks(_apply_array, frozen, method, kwargs, dtype, (0, width), dtype=dtype,
                        chunks=(X.chunks[0], (width,)), meta=np.empty((0, 0), dtype=dtype))


def _sketch(scores):
    values = np.sort(np.asarray(scores, dtype=np.float64))
    m = values.size
    ranks = np.unique(np.round(np.linspace(0, m - 1, min(m, _SKETCH))).astype(np.int64)) if m else np.zeros(0, np.int64)
    return {"n": m, "nan": bool(np.isnan(values).any()), "values": values[ranks], "ranks": ranks}


def _between(scores, lo, hi):
    values = np.asarray(scores, dtype=np.float64)
    return int((values < lo).sum()), np.sort(values[(values >= lo) & (values <= hi)])


def _score_blocks(scores) -> list:
    blocks = scores.to_delayed()  # an array of keys (dask array), or a list (dask Series)
    return list(blocks.ravel()) if isinstance(blocks, np.ndarray) else list(blocks)


def quantile(scores, q: float) -> float:
    """The exact ``np.quantile(scores, q)`` (linear interpolation) of lazy 1-D scores.

    ``scores``: a 1-D dask array or a dask Series. Two passes, no gathering: each
    block first sends a sorted sketch (1025 of its values with their ranks), which
    brackets the two order statistics the quantile needs between sketch values ``lo``
    and ``hi``; the second pass counts the values below ``lo`` and sends those in
    ``[lo, hi]`` (about two in a thousand of the rows). NaN when a score is NaN.
    """
    dask = _dask()
    blocks = _score_blocks(scores)
    sketches = dask.compute(*[dask.delayed(_sketch, pure=True)(b) for b in blocks])
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
    parts = dask.compute(*[dask.delayed(_between, pure=True)(b, lo, hi) for b in blocks])
    below = sum(p[0] for p in parts)
    values = np.sort(np.concatenate([p[1] for p in parts]))
    a, b = values[r0 - below], values[r1 - below]
    t = h - r0
    return float(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))  # numpy's lerp
