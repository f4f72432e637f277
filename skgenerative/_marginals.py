"""Normal scores: a monotone map of each real column onto a standard normal scale.

A column's map ``z = T(x)`` is piecewise linear between knots: ``x_i``, the column's
empirical quantiles at the probabilities ``p_i = (i + 1/2) / m`` (``m`` knots, at most
:data:`KNOTS`), and ``z_i = Phi^{-1}(p_i)``, the standard normal quantiles. Beyond the
end knots ``T`` goes on linearly, with the slope of the chord over the outer
:data:`TAIL_SHARE` of the knots on each side, so that ``T`` is a bijection of the real
line: a density ``q(z)`` on the normal scale is the density ``q(T(x)) T'(x)`` in the
column's units, which integrates to one, with ``log T'(x)`` (the log-slope of the
piece ``x`` falls in) added to every observed cell's log-density. ``T^{-1}`` is the
same map with the knots' roles swapped: exact (to rounding) on every real ``z``.

**Dequantisation.** A column recorded on a grid (values written with a few decimal
places: ``10^-places`` apart) holds ties; their knots would collapse onto each grid
value and a mixture fitted on the normal scale would put components on them. The
knots are therefore the quantiles of the values spread uniformly over their grid
cell, ``x + u 10^-places`` with ``u`` in ``[-1/2, 1/2)``, and a mixture fits the
spread rows (:func:`grid_jitter`); ``sample`` rounds its draws back onto the grid
(``bounds="observed"``). ``u`` is a hash of the row's bits and of the seed: the same
row gets the same ``u`` in every pass over the data, whichever chunk or dask block
it arrives in (identical rows get identical ``u``).

**Columns of few values.** A column with at most :data:`ORDERED_MAX_LEVELS` values on
its grid (a 1-to-10 rating, Wine's quality: 7 values) is mostly its cells, and where a
row falls inside its cell is all the mixture sees within a level. Spread by the hash,
that position is noise the other columns cannot explain: a component's Gaussian,
linear in the scores, then mixes neighbouring levels up and the synthetic rows
understate the column's dependence on the others (Wine, quality against alcohol:
correlation 0.37 to 0.39 in synthetic rows, 0.43 to 0.46 in the real ones). Such a
column's rows are spread in the order of a draw of a latent score: a linear
prediction of the column's score from the other mapped columns' scores (least squares
on the training rows; a missing score counts as 0, the scores' mean) plus the
residual's standard deviation times a normal draw (the normal quantile of the row's
hash spread). Within a level, ``u`` is the mid-rank of the row's key among the level's
training keys, minus 1/2, so each level still covers its cell uniformly (the same
knots, the same frequencies when rounded back), and a row's position in it follows
the rest of the row as much as the rest predicts it. The prediction alone (no draw)
overstates the dependence (0.55 to 0.57 on Wine); with the draw, 0.44 to 0.48. A
function of the row (the keys of each level's training rows are kept), so the same in
every pass and every chunk; a value no training row held falls back to the hash.
``GaussianMixtureDensity`` does this in the synthetic-table call only
(``marginals="auto"``): a conditional mean, what an imputer returns, would move within
the cell with the rest of the row. On Wine (3000 rows, seeds 0 to 2) a classifier
trained on synthetic rows then finds quality on held-out rows that no training row
repeats with balanced accuracy 0.234 instead of 0.216 (real rows: 0.253), the other
fidelity figures unchanged within noise (``benchmarks/bench_synth.py``).

Torch only at evaluation (float64 inside, the caller's dtype out); knots and slopes
are numpy arrays (picklable, inspected as fitted attributes).

Reference: the quantile normalisation and dequantisation before a mixture of
factorised components are TabPC's (arXiv 2603.23016); scikit-learn's
``QuantileTransformer(output_distribution="normal")`` takes 1000 quantiles by
default, as :data:`KNOTS`.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from scipy.special import ndtri

__all__ = ["KNOTS", "ORDERED_MAX_LEVELS", "TAIL_SHARE", "NormalScores", "grid_jitter"]

#: the most knots of a column (scikit-learn's ``QuantileTransformer`` default): with
#: fewer, the map smooths the frequencies of a grid's values, which a classifier sees
#: (Wine, 3000 rows: detection AUC 0.90 with 64 knots, 0.60 with 1000)
KNOTS = 1000
#: share of the knots on each side whose chord gives the slope of the map's tail
TAIL_SHARE = 0.05
#: a grid column with at most this many values is spread in the order of the rest of the
#: row (module docstring); base.DiscreteDataWarning calls a real column of at most this
#: many values discrete
ORDERED_MAX_LEVELS = 20
#: ridge of the least squares behind that order (scores are standardised: a small one
#: only keeps collinear columns solvable)
ORDER_RIDGE = 1e-6
#: the order's noise, in residual standard deviations of that least squares (0: the
#: prediction alone, which overstates the dependence: Wine's quality-alcohol correlation
#: 0.43 real, 0.55 in synthetic rows)
ORDER_NOISE = 1.0

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every bit of ``h`` (uint64) reaches every bit of the result."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def grid_jitter(X: torch.Tensor, columns, steps, seed: int) -> torch.Tensor:
    """``X`` with each of ``columns`` moved by ``u * step`` (``u`` in ``[-1/2, 1/2)``).

    ``u`` is a function of the row's bits, the column and ``seed`` (a hash: uniform
    for practical purposes, and the same for a row in every pass and every chunk).
    Missing cells stay missing; a step of 0 leaves its column alone.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if not len(columns) or not np.any(steps > 0):
        return X
    values = np.nan_to_num(X.detach().to("cpu", torch.float64).numpy()) + 0.0  # -0.0 -> 0.0
    bits = np.ascontiguousarray(values).view(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(values.shape[0], np.uint64(seed % 2**63) * _GOLDEN, dtype=np.uint64)
        for j in range(bits.shape[1]):
            h = _mix(h ^ bits[:, j])
        shift = np.empty((values.shape[0], len(columns)))
        for i, step in enumerate(steps):
            u = (_mix(h + np.uint64(i + 1) * _GOLDEN) >> np.uint64(11)).astype(np.float64) * 2.0**-53
            shift[:, i] = (u - 0.5) * step
    out = X.clone()
    out[:, list(columns)] = X[:, list(columns)] + torch.as_tensor(shift, dtype=X.dtype, device=X.device)
    return out


def _piecewise(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, last: torch.Tensor, low: torch.Tensor,
               high: torch.Tensor):
    """Per row ``c`` of ``x`` (C, n): the piecewise linear map through the knots
    ``(xs[c, :last[c] + 1], ys[c, :last[c] + 1])`` (increasing; padded with ``inf``),
    linear with slopes ``low[c]`` and ``high[c]`` beyond its ends: ``(y, slope at x)``.
    NaN stays NaN."""
    piece = torch.minimum((torch.searchsorted(xs, x.contiguous(), right=True) - 1).clamp_min(0), (last - 1)[:, None])
    slope = ((ys[:, 1:] - ys[:, :-1]) / (xs[:, 1:] - xs[:, :-1])).gather(1, piece)
    first, end, end_y = xs[:, :1], xs.gather(1, last[:, None]), ys.gather(1, last[:, None])
    slope = torch.where(x < first, low[:, None], torch.where(x > end, high[:, None], slope))
    start = torch.where(x > end, end, xs.gather(1, piece))
    base = torch.where(x > end, end_y, ys.gather(1, piece))
    return base + (x - start) * slope, slope


class NormalScores:
    """The normal-score maps of some columns of a table (see the module docstring).

    Parameters
    ----------
    columns : sequence of int
        The columns mapped (positions in the table's rows).
    knots : list of ndarray of shape (m_j, 2)
        Per column, its knots ``(x_i, z_i)``, both increasing.
    tails : ndarray of shape (n_columns, 2)
        Per column, the slopes ``dz/dx`` below the first knot and above the last.
    steps : ndarray of shape (n_columns,)
        Per column, its grid's step (0: not on a grid); the dequantisation's width.
    seed : int
        The dequantisation's seed.
    orders : dict or None, default=None
        Per position ``i`` (in ``columns``) of a column of few values spread in the order
        of the rest of the row: ``(weights (n_columns,), levels (m,), keys, residual)``,
        the least-squares weights on the other columns' scores (0 on its own), the
        column's values, per value the sorted keys of its training rows (prediction
        plus ``residual`` times the row's normal draw), and the residual's standard
        deviation (times :data:`ORDER_NOISE`).
    """

    def __init__(self, columns, knots, tails, steps, seed: int, orders: dict | None = None):
        self.columns = [int(j) for j in columns]
        self.knots = [np.asarray(k, dtype=np.float64) for k in knots]
        self.tails = np.asarray(tails, dtype=np.float64).reshape(len(self.columns), 2)
        self.steps = np.asarray(steps, dtype=np.float64)
        self.seed = int(seed)
        self.orders = dict(orders or {})
        self.key_maps = None
        self._cache = {}

    @classmethod
    def fit(cls, X: np.ndarray, columns, steps, seed: int, n_knots: int = KNOTS,
            ordered_max_levels: int = ORDERED_MAX_LEVELS) -> "NormalScores | None":
        """The maps of ``columns`` of the rows ``X`` (numpy, NaN missing), spread over
        their grids (``steps``) first; a grid column with at most ``ordered_max_levels``
        values spread in the order of the rest of the row (0: none). A column with fewer
        than two distinct (spread) values has no map and is left out; ``None`` when none
        is left."""
        steps = np.asarray(steps, dtype=np.float64)
        spread = grid_jitter(torch.as_tensor(X, dtype=torch.float64), columns, steps, seed).numpy()
        maps = cls._maps(spread, columns, steps, seed, n_knots)
        if maps is None or ordered_max_levels <= 0:
            return maps
        orders = maps._fit_orders(X, spread, ordered_max_levels)  # the hash spread of the mapped columns
        if not orders:
            return maps
        ordered = maps.dequantised(torch.as_tensor(X, dtype=torch.float64), orders).numpy()
        final = cls._maps(ordered, maps.columns, maps.steps, seed, n_knots, orders)
        final.key_maps = maps  # the keys' scores, as the orders were fitted on (see dequantised)
        return final

    @classmethod
    def _maps(cls, spread: np.ndarray, columns, steps, seed: int, n_knots: int, orders=None):
        kept, knots, tails, kept_steps = [], [], [], []
        for j, step in zip(columns, steps):
            values = spread[:, j]
            values = values[~np.isnan(values)]
            found = _knots(values, n_knots)
            if found is not None:
                kept.append(j)
                knots.append(found[0])
                tails.append(found[1])
                kept_steps.append(step)
        if not kept:
            return None
        return cls(kept, knots, np.array(tails), np.array(kept_steps), seed, orders)

    def _fit_orders(self, X: np.ndarray, spread: np.ndarray, max_levels: int) -> dict:
        """The orders (see the class) of the grid columns with at most ``max_levels``
        values, from the rows ``X`` and their hash-spread copy ``spread``."""
        if len(self.columns) < 2:
            return {}
        scores = self._scores(torch.as_tensor(spread))
        orders = {}
        for i, j in enumerate(self.columns):
            values = X[:, j]
            observed = ~np.isnan(values)
            levels = np.unique(values[observed])
            if self.steps[i] <= 0 or levels.size > max_levels:
                continue
            others = np.arange(len(self.columns)) != i
            Z, y = scores[observed][:, others], scores[observed, i]
            mean = Z.mean(0)
            gram = (Z - mean).T @ (Z - mean)
            coef = np.linalg.solve(gram + ORDER_RIDGE * len(y) * np.eye(len(mean)), (Z - mean).T @ (y - y.mean()))
            weights = np.zeros(len(self.columns))
            weights[others] = coef
            residual = float(np.std(y - y.mean() - (Z - mean) @ coef)) * ORDER_NOISE
            predicted = self._latent(scores, spread, X, i, weights, residual)[observed]
            level = np.searchsorted(levels, values[observed])
            orders[i] = (weights, levels, [np.sort(predicted[level == v]) for v in range(levels.size)], residual)
        return orders

    def _latent(self, scores, spread, X, i, weights, residual):
        """The order's key of every row: its prediction plus ``residual`` times a normal
        draw (a function of the row: the normal quantile of its hash spread)."""
        j, step = self.columns[i], self.steps[i]
        u = np.clip(np.nan_to_num((spread[:, j] - X[:, j]) / step + 0.5, nan=0.5), 1e-12, 1 - 1e-12)
        return scores @ weights + residual * ndtri(u)

    def _scores(self, X: torch.Tensor) -> np.ndarray:
        """The mapped columns' scores of the rows ``X`` (n, n_columns), missing as 0."""
        return np.nan_to_num(self._map(X)[0].T.cpu().numpy())

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state):
        self.key_maps = None  # absent from maps pickled before the keys kept their own
        self.__dict__.update(state)
        self._cache = {}

    def _tensors(self, device) -> tuple:
        """``(x knots, z knots, last index, low slopes, high slopes)`` on ``device``: the
        knots as (C, max m) float64, each row padded with ``inf``."""
        key = str(device)
        if key not in self._cache:
            width = max(len(k) for k in self.knots)
            padded = np.full((2, len(self.knots), width), np.inf)
            for c, k in enumerate(self.knots):
                padded[:, c, :len(k)] = k.T
            as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
            self._cache[key] = (as_t(padded[0]), as_t(padded[1]), as_t(np.array([len(k) - 1 for k in self.knots])),
                                as_t(self.tails[:, 0]), as_t(self.tails[:, 1]))
        return self._cache[key]

    def dequantised(self, X: torch.Tensor, orders: dict | None = None) -> torch.Tensor:
        """Training rows spread over their columns' grids (:func:`grid_jitter`), the
        columns of few values in the order of the rest of the row (``orders``, default
        the fitted ones; see the module docstring). The keys read the other columns'
        scores through the maps the orders were fitted with (``key_maps``, fitted on the
        hash spread), not through these maps refitted on the ordered spread: with two
        or more ordered columns, a key would otherwise read another ordered column's
        slightly moved score, and a training row's place within its cell could differ
        between fit and use."""
        out = grid_jitter(X, self.columns, self.steps, self.seed)
        orders = self.orders if orders is None else orders
        if not orders:
            return out
        scores = (self.key_maps or self)._scores(out)
        values = X.detach().to("cpu", torch.float64).numpy()
        hashed = out.detach().to("cpu", torch.float64).numpy()
        for i, (weights, levels, keys, residual) in orders.items():
            j, step = self.columns[i], self.steps[i]
            x = values[:, j]
            level = np.clip(np.searchsorted(levels, x), 0, levels.size - 1)
            known = np.isclose(levels[level], x, rtol=0, atol=step * 1e-6)  # NaN: False
            if not known.any():
                continue
            predicted = self._latent(scores, hashed, values, i, weights, residual)
            u = np.zeros(len(x))
            for v, sorted_keys in enumerate(keys):
                rows = known & (level == v)
                n = len(sorted_keys)
                ranks = np.searchsorted(sorted_keys, predicted[rows], "left") + \
                    np.searchsorted(sorted_keys, predicted[rows], "right")
                u[rows] = np.clip(ranks / (2.0 * n), 0.5 / n, 1 - 0.5 / n) - 0.5
            moved = torch.as_tensor(np.where(known, x + u * step, out[:, j].detach().cpu().numpy()),
                                    dtype=out.dtype, device=out.device)
            out[:, j] = moved
        return out

    def _map(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``T`` of the mapped columns of ``X`` and its slopes, both (C, n) float64 (not to
        be written to: within :meth:`reused` they serve every call on ``X``)."""
        kept = self._cache.get("reused")
        if kept is not None and kept[0] is X and kept[1] is not None:
            return kept[1]
        xs, zs, last, low, high = self._tensors(X.device)
        out = _piecewise(X[:, self.columns].double().T, xs, zs, last, low, high)
        if kept is not None and kept[0] is X:
            self._cache["reused"] = (X, out)
        return out

    @contextmanager
    def reused(self, X: torch.Tensor):
        """Within the block, the map of the rows ``X`` (this tensor, left unchanged there) is
        formed once: a mixture's score reads it twice (the scores, then the log-slopes)
        and a fit's preparation twice (the moments, then the model rows), and the binary
        searches of the map were 3% of the mixed imputation default's time. Another
        thread's block at the same time only costs this one its reuse."""
        self._cache["reused"] = (X, None)
        try:
            yield
        finally:
            self._cache.pop("reused", None)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` (n, n_features) with the mapped columns on the normal scale."""
        out = X.clone()
        out[:, self.columns] = self._map(X)[0].T.to(X.dtype)
        return out

    def inverse(self, Z: torch.Tensor) -> torch.Tensor:
        """Normal scores ``Z`` (..., n_columns), one per mapped column, in the columns' units."""
        xs, zs, last, low, high = self._tensors(Z.device)
        flat = Z.reshape(-1, Z.shape[-1]).double().T
        x, _ = _piecewise(flat, zs, xs, last, 1.0 / low, 1.0 / high)
        return x.T.reshape(Z.shape).to(Z.dtype)

    def log_jacobian(self, X: torch.Tensor) -> torch.Tensor:
        """``sum_j log T_j'(x_j)`` over each row's observed mapped cells (n,)."""
        _, slope = self._map(X)
        observed = ~torch.isnan(X[:, self.columns].T)
        return torch.where(observed, torch.log(slope), torch.zeros_like(slope)).sum(0).to(X.dtype)


def sorted_quantiles(values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``np.quantile(values, p)`` (its default "linear" method; ``values`` without NaN) from
    one sort, to the bit: numpy partitions the values at both neighbours of every
    quantile, which at a thousand knots took 4 ms a column of 2700 values, where the
    sort takes 0.01 ms (the mixed default's marginals on Adult, 20% missing: 45 -> 7 ms
    a fit). The same order statistics and the same interpolation as numpy's ``_lerp``."""
    ordered = np.sort(values)
    n = ordered.size
    virtual = (n - 1) * p
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1  # the largest value
    previous[above], following[above] = -1, -1
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    gamma = virtual - previous
    low, high = ordered[previous], ordered[following]
    step = high - low
    out = low + step * gamma
    np.subtract(high, step * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _knots(values: np.ndarray, n_knots: int):
    """``(knots (m, 2), (low slope, high slope))`` of one column's values, or ``None``."""
    m = min(n_knots, values.size)
    if m < 2:
        return None
    p = (np.arange(m) + 0.5) / m
    x = sorted_quantiles(values, p)
    distinct, first, counts = np.unique(x, return_index=True, return_counts=True)
    if distinct.size < 2:
        return None
    z = ndtri(p)
    # tied quantiles (values that repeat off any grid) become one knot at their mean score
    z = np.add.reduceat(z, first) / counts
    knots = np.column_stack([distinct, z])
    tail = max(1, int(round(TAIL_SHARE * (len(distinct) - 1))))
    low = (z[tail] - z[0]) / (distinct[tail] - distinct[0])
    high = (z[-1] - z[-1 - tail]) / (distinct[-1] - distinct[-1 - tail])
    return knots, (low, high)
