"""Column schema: the types of a table's columns, their levels, and the way back.

Fitted on a pandas DataFrame, an estimator records a :class:`TableSchema`: one type
per column, inferred from the pandas dtypes and overridable by the estimator's
``column_types`` parameter,

============  ==========================================  ====================================
type          inferred from                               encoded as
============  ==========================================  ====================================
real          numeric dtypes (float, int, nullable Int)   the number
positive      (declared only) numbers > 0 (>= 0, note)    the number
count         (declared only) integers >= 0               the number
binary        ``bool`` and nullable ``boolean``           level code 0 / 1
categorical   ``category`` (unordered), object, string    level code 0 .. K-1
ordinal       ordered ``category``                        level code 0 .. K-1, in order
============  ==========================================  ====================================

(note: the Gaussian mixture also accepts 0 in a positive column, a point mass) and
the levels of every discrete column (a ``category`` column keeps all its
categories, used or not, in their order; other columns their sorted distinct
values). Models see one float matrix: numbers as they are, level codes for the
discrete columns, NaN for every missing cell (``NaN``, ``None``, ``pd.NA``).

**Levels not seen in fit.** A cross-validation fold can miss a rare level, and a
production table can bring a new one. Such a cell is not an error: the model treats
it as missing (it cannot condition on a level it never saw) and the row's
log-density gets the log-probability of an unseen level by Laplace's rule of
succession, ``log 1 / (n + K + 1)`` for a column with ``K`` levels fitted on ``n``
rows: very low, finite, and the same in every model. A ``UserWarning`` names the
column and the levels. ``impute`` leaves such cells as they are (they are observed).

Whatever returns rows (``sample``, ``impute``, ``inverse_transform``) goes back
through :meth:`TableSchema.to_frame`: the input's column names, order and dtypes
(the same categories in the same order). A numeric column of an integer dtype gets
its values rounded to integers (it cannot hold a fraction).

**The family of each type** is :data:`skgenerative.distributions.FAMILIES`; the
values a type accepts are its family's support (positive: ``> 0``, count: integers
``>= 0``), checked by :meth:`TableSchema.check_support` at fit (a declared type the
data contradict) and by the models on every input. A model may read a type with
another family (the Gaussian mixture's positive columns are zero-inflated, so they
accept 0): it passes its type -> family map. Nothing here knows about estimators.

**Rows like the training rows.** At fit the schema also records, from the encoded
training rows, what ``sample`` needs to give rows a user can use
(:meth:`TableSchema.with_observed`): the range ``[min, max]`` of every numeric
column, the decimal places its values are written with (whole numbers, cents, a
measurement's two decimals), its frequent values (shared by at least 5 rows), and
the missingness patterns
with their frequencies. :meth:`TableSchema.limits`, :meth:`TableSchema.outside` and
:meth:`TableSchema.finish_numbers` turn a model's draws into such rows (see
``GenerativeModel.sample``).

**Identifiers.** A string or category column with a distinct value in (nearly) every
row is an identifier, not a category: a model would keep one level per row and
``sample`` would copy those values into synthetic rows. :meth:`TableSchema.infer`
warns (:class:`IdentifierColumnWarning`, naming the column) unless the column's type
was declared with ``column_types``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .distributions import FAMILIES, level_point, support_error

__all__ = [
    "COLUMN_TYPES",
    "DISCRETE_TYPES",
    "IdentifierColumnWarning",
    "NUMERIC_TYPES",
    "SampleLimits",
    "TableSchema",
    "is_dataframe",
    "point_levels",
]

NUMERIC_TYPES = ("real", "positive", "count")
DISCRETE_TYPES = ("binary", "categorical", "ordinal")
COLUMN_TYPES = NUMERIC_TYPES + DISCRETE_TYPES

#: a categorical column with a distinct value in at least this share of its observed
#: cells (and at least ``IDENTIFIER_MIN_ROWS`` of them) looks like an identifier
IDENTIFIER_SHARE = 0.95
IDENTIFIER_MIN_ROWS = 20
#: the most decimal places a numeric column's grid is recorded with (see TableSchema.with_observed)
MAX_DECIMALS = 8
#: a numeric value shared by at least this many training rows is a "frequent value";
#: when such values make up FREQUENT_COVERAGE of a column, sample snaps drawn numbers to them
FREQUENT_MIN_ROWS = 5
FREQUENT_COVERAGE = 0.9


class IdentifierColumnWarning(UserWarning):
    """A string or category column has a distinct value in (nearly) every row.

    Such a column is an identifier (a name, an account number), not a category: a
    model keeps one level per row, learns nothing it can generalise, and ``sample``
    copies the values of training rows into synthetic ones.
    """


def is_dataframe(X) -> bool:
    return isinstance(X, pd.DataFrame)


def _is_bool(dtype) -> bool:
    return pd.api.types.is_bool_dtype(dtype)


def _inferred_type(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "ordinal" if dtype.ordered else "categorical"
    if _is_bool(dtype):
        return "binary"
    if pd.api.types.is_numeric_dtype(dtype):
        return "real"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return "categorical"
    raise ValueError(
        f"Column {series.name!r} has dtype {dtype}, which no skgenerative model can "
        "represent: convert it to numbers (e.g. a timestamp to seconds) or to a "
        "category, or drop it."
    )


def _sorted_levels(values: pd.Series) -> np.ndarray:
    distinct = pd.unique(values.dropna())
    try:
        return np.asarray(sorted(distinct), dtype=object)
    except TypeError:  # mixed types (e.g. 1 and "a"): order by their text
        return np.asarray(sorted(distinct, key=str), dtype=object)


class ObservedValuesMixin:
    """What the training rows showed (``observed``: ranges, decimals, frequent values,
    missingness patterns) and what ``sample`` makes of it: limits, snapping, zeros
    and holes. Mixed into :class:`TableSchema`, whose ``observed`` field it reads."""

    def with_observed(self, X: np.ndarray, merge: bool = False) -> "TableSchema":
        """The schema with what the encoded training rows ``X`` show, for ``sample``.

        Per numeric column its observed range ``(min, max)``, the decimal places
        its values are written with (0 for whole numbers, at most
        ``MAX_DECIMALS``; none when the values need more, as measurements in
        binary floating point do) and its frequent values (those shared by at
        least ``FREQUENT_MIN_ROWS`` rows, with their counts and the number of
        observed cells); over the rows, the distinct missingness patterns and
        their counts. With ``merge`` (``partial_fit``), combined with what the
        schema already holds: ranges joined, the finer of the two grids, frequent
        values and pattern counts added (a value frequent in neither part alone is
        not kept).
        """
        now = self.observed_of(X)
        observed = merge_observed(self.observed, now) if merge and self.observed else now
        return dataclasses.replace(self, observed=observed)

    def observed_of(self, X: np.ndarray) -> dict:
        """What the encoded rows ``X`` show (see :meth:`with_observed`), for one part of
        the rows: a dask collection's blocks each give one, merged by :func:`merge_observed`."""
        ranges, decimals, frequent = {}, {}, {}
        for j in self.numeric_columns:
            values = X[:, j]
            values = values[~np.isnan(values)]
            if values.size == 0:
                continue
            name = self.names[j]
            ranges[name] = (float(values.min()), float(values.max()))
            places = _decimal_places(values)
            if places is not None:
                decimals[name] = places
            distinct, counts = np.unique(values, return_counts=True)
            shared = counts >= FREQUENT_MIN_ROWS
            frequent[name] = (distinct[shared].astype(np.float64), counts[shared], values.size)
        holes = np.isnan(X)
        missing = None
        if holes.any():
            patterns, counts = _distinct_rows(holes)
            missing = (patterns, counts.astype(np.int64))
        return {"ranges": ranges, "decimals": decimals, "frequent": frequent,
                "missing": missing, "n_rows": int(X.shape[0])}

    def limits(self, bounds="observed") -> "SampleLimits":
        """Where each column's sampled numbers must fall, and how they are rounded.

        ``bounds="observed"``: the range ``[min, max]`` seen at fit, numbers
        rounded to the decimal places the column's training values had (whole
        numbers stay whole, prices keep their cents), and, in a column whose
        values repeat (values shared by at least ``FREQUENT_MIN_ROWS`` training
        rows make up ``FREQUENT_COVERAGE`` of its cells), a number between the
        smallest and largest such value snapped to the nearest one (a number that
        at least that many training rows hold); ``None``: only the column
        type's support (``positive`` above 0, or at least 0 when it held zeros at
        fit, ``count`` at least 0); a dict
        ``{column: (low, high)}``: those columns in that interval (``None`` for an
        open side; the type's support still applies), the others as
        ``"observed"``. ``count`` columns and columns of an integer dtype are
        always rounded to whole numbers. A rounded column accepts a draw that
        rounds into its interval (half a step beyond each end), so its end values
        keep their whole share of probability. Without recorded ranges (a model
        fitted on a dask collection), ``"observed"`` keeps to the supports.
        """
        d = self.n_features
        low, high = np.full(d, -np.inf), np.full(d, np.inf)
        clip_low, clip_high = np.full(d, -np.inf), np.full(d, np.inf)
        decimals = np.full(d, np.nan)
        floor = np.full(d, np.nan)
        observed = getattr(self, "observed", None) or {}
        ranges, places = observed.get("ranges", {}), observed.get("decimals", {})
        frequent = observed.get("frequent", {})
        support = [None] * d
        given = {}
        if isinstance(bounds, dict):
            given = {self._column_name(c): b for c, b in bounds.items()}
        elif bounds is not None and not (isinstance(bounds, str) and bounds == "observed"):
            raise ValueError(f"bounds must be 'observed', None or a dict {{column: (low, high)}}; got {bounds!r}.")
        tiny = np.nextafter(0.0, 1.0)
        for j in self.numeric_columns:
            name, kind = self.names[j], self.types[j]
            dtype = self.dtypes.get(name)
            seen = ranges.get(name)
            if kind == "count" or (dtype is not None and pd.api.types.is_integer_dtype(dtype)):
                decimals[j] = 0
            lo, hi = -np.inf, np.inf
            if name in given:
                lo, hi = _interval(given[name], name)
            elif bounds is not None and seen is not None:
                lo, hi = seen
                if name in places and np.isnan(decimals[j]):
                    decimals[j] = places[name]
                if name in frequent:
                    values, counts, total = frequent[name]
                    if len(values) >= 2 and counts.sum() >= FREQUENT_COVERAGE * total:
                        support[j] = values
            zeros = kind == "positive" and self.held_zeros(name)
            if kind == "count" or zeros:
                lo = max(lo, 0.0)
            elif kind == "positive":  # a draw still at or below 0 becomes the smallest value seen
                lo = max(lo, tiny)
                floor[j] = seen[0] if seen is not None else np.finfo(np.float64).tiny
            clip_low[j], clip_high[j] = lo, hi
            half_step = 0.5 * 10.0 ** -decimals[j] if not np.isnan(decimals[j]) else 0.0
            low[j], high[j] = lo - half_step, hi + half_step
            if kind == "positive" and not zeros:
                low[j] = max(low[j], tiny)
        return SampleLimits(low, high, clip_low, clip_high, decimals, floor, tuple(support))

    def held_zeros(self, name: str) -> bool:
        """Whether a positive column held zeros at fit: a model with a zero mass (the
        Gaussian mixture's) took them, so 0 is one of its values, not outside its support."""
        observed = getattr(self, "observed", None) or {}
        return observed.get("ranges", {}).get(name, (1.0,))[0] == 0

    def _column_name(self, column) -> str:
        """A column named by the user (its name, or its position for an array) -> its name."""
        if str(column) in self.names:
            return str(column)
        if isinstance(column, (int, np.integer)) and not isinstance(column, bool) and 0 <= column < self.n_features:
            return self.names[int(column)]
        raise ValueError(
            f"Column {column!r} is not a column of the fitted data; its columns are "
            f"{self.names[:10]}{' ...' if self.n_features > 10 else ''}"
            + ("" if self.from_frame else " (or their positions 0 .. n_features - 1)") + "."
        )

    @staticmethod
    def outside(X: np.ndarray, drawn: np.ndarray, limits: "SampleLimits") -> np.ndarray:
        """Rows with a drawn cell outside its interval (or not a number): (n,) bool."""
        with np.errstate(invalid="ignore"):
            bad = (X < limits.low) | (X > limits.high) | np.isnan(X)
        return (bad & drawn).any(axis=1)

    @staticmethod
    def finish_numbers(X: np.ndarray, drawn: np.ndarray, limits: "SampleLimits") -> np.ndarray:
        """Drawn cells clipped to their interval and rounded to their column's decimal places.

        In a column whose training values repeat (``support``), a draw between its
        smallest and largest frequent value becomes the nearest frequent value:
        the model discretised on the values the data take, as rounding does on a
        regular grid (a Gaussian draw of 13.07 in a column of 13.0, 13.5 and 14.0
        becomes 13.0); draws beyond them keep their rounded value.

        A ``positive`` cell still at or below 0 takes ``floor`` (the smallest value
        seen at fit) rather than a clip onto 0, which the column cannot hold.
        """
        positive = ~np.isnan(limits.floor)
        with np.errstate(invalid="ignore"):
            finished = np.where(positive & (X <= 0), limits.floor, X)
        finished = np.clip(finished, limits.clip_low, limits.clip_high)
        unrounded = finished.copy()
        for j in np.flatnonzero(~np.isnan(limits.decimals)):
            finished[:, j] = np.round(finished[:, j], int(limits.decimals[j]))
        for j, values in enumerate(limits.support):
            if values is not None:  # from the draw itself, not its rounding (one discretisation)
                inside = (unrounded[:, j] >= values[0]) & (unrounded[:, j] <= values[-1])
                finished[:, j] = np.where(inside, _nearest(unrounded[:, j], values), finished[:, j])
        # rounding may step past an end that is not on the grid: clip once more
        finished = np.clip(finished, limits.clip_low, limits.clip_high)
        return np.where(drawn, finished, X)

    def missing_patterns(self):
        """``(patterns, counts)`` of the training rows' missing cells, or ``None``."""
        return (getattr(self, "observed", None) or {}).get("missing")


@dataclass
class TableSchema(ObservedValuesMixin):
    """Types, levels and dtypes of a table's columns (fitted; see the module docstring).

    Attributes
    ----------
    names : list of str
        Column names, in order.
    types : list of str
        One of ``COLUMN_TYPES`` per column.
    levels : dict
        Column name -> ndarray of levels (discrete columns only), code ``k`` being
        ``levels[k]``.
    dtypes : dict
        Column name -> the pandas dtype the column had at fit (for the way back).
    n_samples : int
        Rows the schema was fitted on (for the probability of an unseen level).
    from_frame : bool
        Whether it was fitted on a DataFrame (rows are then returned as one).
    observed : dict
        What the training rows showed, for ``sample`` (:meth:`with_observed`):
        ``"ranges"`` (column name -> ``(min, max)`` of its observed numbers),
        ``"decimals"`` (column name -> the decimal places its values are written
        with, for numeric columns on such a grid: 0 for whole numbers) and
        ``"missing"`` (``(patterns, counts)``: the distinct missingness patterns of
        the rows, a bool array (P, D), and how many rows had each; ``None`` when
        no cell was missing). Empty when the model was fitted without seeing
        every row in memory (a dask collection).
    """

    names: list
    types: list
    levels: dict = field(default_factory=dict)
    dtypes: dict = field(default_factory=dict)
    n_samples: int = 0
    from_frame: bool = False
    observed: dict = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------ building
    @classmethod
    def numeric(cls, n_features: int, n_samples: int = 0, names=None) -> "TableSchema":
        """The schema of a numeric array: every column real."""
        names = list(names) if names is not None else [f"x{j}" for j in range(n_features)]
        return cls(names=names, types=["real"] * n_features, n_samples=n_samples)

    @classmethod
    def infer(cls, frame: pd.DataFrame, column_types=None, seen=None, families=None) -> "TableSchema":
        """Infer the schema of ``frame``; ``column_types`` overrides it per column.

        Parameters
        ----------
        frame : DataFrame
        column_types : dict, sequence or None
            ``{column name: type}`` for some columns, or one type per column.
        seen : dict or None
            ``{column name: distinct values}`` observed in the whole table when
            ``frame`` holds only its first rows (the partitions of a dask DataFrame):
            those columns get the sorted values as levels, as a whole frame would.
        families : dict or None
            Column type -> family whose support a declared column must respect (the
            model's, e.g. a mixture's zero-inflated positive columns); by default
            :data:`~skgenerative.distributions.FAMILIES`.
        """
        names = [str(c) for c in frame.columns]
        types = cls.column_types_of(frame, column_types)
        overrides = _overrides(column_types, names)
        levels, dtypes = {}, {}
        for position, (name, kind) in enumerate(zip(names, types)):
            series = frame.iloc[:, position]
            dtypes[name] = series.dtype
            if kind in DISCRETE_TYPES:
                values = None if seen is None or name not in seen else seen[name]
                levels[name] = _levels_at_fit(series, kind, name, values)
                if kind == "categorical" and name not in overrides:
                    _warn_if_identifier(series, name)
        schema = cls(names, types, levels, dtypes, n_samples=len(frame), from_frame=True)
        restricted = schema._restricted_numeric(families)
        if restricted:
            values = np.column_stack([_numeric_values(frame.iloc[:, j], names[j]) for j in restricted])
            schema.check_support(values, [(families or FAMILIES)[types[j]] for j in restricted],
                                 columns=restricted, verb="declared")
        return schema

    @staticmethod
    def column_types_of(frame: pd.DataFrame, column_types=None) -> list:
        """The type of each column of ``frame``: declared in ``column_types``, else inferred."""
        names = [str(c) for c in frame.columns]
        overrides = _overrides(column_types, names)
        return [overrides.get(name) or _inferred_type(frame.iloc[:, j]) for j, name in enumerate(names)]

    def _restricted_numeric(self, families=None) -> list[int]:
        """Positions of numeric columns whose family restricts its support (positive, count)."""
        families = families or FAMILIES
        return [j for j, t in enumerate(self.types)
                if t in NUMERIC_TYPES and families[t].restricts_support]

    def check_numbers(self, X, families=None) -> None:
        """Observed numbers of an encoded matrix ``X`` (n, D) inside their families' support.

        Positive columns > 0 (>= 0 for a model whose positive family has a zero mass)
        and count columns whole numbers >= 0; otherwise a ``ValueError`` naming the
        first column that breaks it (what a block of a dask collection is checked
        against, as a whole frame is at fit). ``families``: the model's type ->
        family map (default :data:`~skgenerative.distributions.FAMILIES`).
        """
        families = families or FAMILIES
        restricted = self._restricted_numeric(families)
        if restricted:
            self.check_support(np.asarray(X)[:, restricted], [families[self.types[j]] for j in restricted],
                               columns=restricted, verb="declared")

    # ---------------------------------------------------------- properties
    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def has_discrete(self) -> bool:
        return any(t in DISCRETE_TYPES for t in self.types)

    @property
    def discrete(self) -> list[int]:
        """Positions of the discrete columns."""
        return [j for j, t in enumerate(self.types) if t in DISCRETE_TYPES]

    @property
    def numeric_columns(self) -> list[int]:
        """Positions of the numeric columns."""
        return [j for j, t in enumerate(self.types) if t in NUMERIC_TYPES]

    def n_levels(self, position: int) -> int:
        return len(self.levels[self.names[position]])

    @property
    def level_counts(self) -> list[int]:
        """The number of levels of each column (0 for numeric ones)."""
        return [self.n_levels(j) if t in DISCRETE_TYPES else 0 for j, t in enumerate(self.types)]

    def check_support(self, X, families, *, columns=None, advice: str | None = None,
                      verb: str = "modelled") -> None:
        """Raise ``ValueError`` naming the first column with an observed value outside its family's support.

        Parameters
        ----------
        X : ndarray or tensor of shape (n, len(families))
            Encoded cells (NaN where missing).
        families : sequence of family classes
            One per column of ``X`` (:class:`skgenerative.distributions.Family`).
        columns : sequence of int, optional
            The schema positions of ``X``'s columns (all of them by default).
        advice : str, optional
            What to do; by default the type to declare instead.
        """
        columns = range(self.n_features) if columns is None else columns
        for family in dict.fromkeys(families):
            if not family.restricts_support:
                continue
            where = [i for i, f in enumerate(families) if f is family]
            part = X if len(where) == X.shape[1] else X[:, where]
            x = part if torch.is_tensor(part) else torch.as_tensor(np.ascontiguousarray(part))
            bad = family.outside_support(x)
            if bool(bad.any()):
                first = int(bad.any(0).nonzero()[0])
                j = columns[where[first]]
                kind = self.types[j]
                described = f"declared {kind}" if verb == "declared" else kind
                raise ValueError(support_error(
                    self.names[j], described, family, x[:, first][bad[:, first]],
                    _ADVICE.get(kind, "") if advice is None else advice,
                ))

    def unseen_log_probability(self, position: int) -> float:
        """``log 1 / (n + K + 1)``: Laplace's rule for a level never seen in ``n`` rows."""
        return -float(np.log(self.n_samples + self.n_levels(position) + 1.0))

    def types_by_column(self) -> dict:
        return dict(zip(self.names, self.types))

    # ------------------------------------------------------------ encoding
    def encode(self, frame: pd.DataFrame, dtype=np.float64, warn: bool = True):
        """``frame`` as one float matrix, and the mask of cells with unseen levels.

        Returns
        -------
        X : ndarray of shape (n, D)
            Numbers as they are, level codes for discrete columns, NaN where missing
            (and where a level was not seen in fit).
        unseen : ndarray of bool of shape (n, D) or None
            ``None`` when every level was seen.
        """
        n = len(frame)
        X = np.empty((n, self.n_features), dtype=dtype)
        unseen = None
        for position, (name, kind) in enumerate(zip(self.names, self.types)):
            series = frame.iloc[:, position]
            if kind in DISCRETE_TYPES:
                codes, new = _codes(series, self.levels[name])
                X[:, position] = np.where(codes >= 0, codes, np.nan)
                if new.any():
                    if unseen is None:
                        unseen = np.zeros((n, self.n_features), dtype=bool)
                    unseen[:, position] = new
                    if warn:
                        shown = ", ".join(repr(v) for v in pd.unique(series[new])[:5])
                        warnings.warn(
                            f"Column {name!r} has level(s) not seen in fit ({shown}): "
                            "each such cell is scored as missing times the probability "
                            f"of an unseen level, 1 / (n + K + 1) = "
                            f"{np.exp(self.unseen_log_probability(position)):.2g}, and "
                            "left as it is by impute.",
                            UserWarning,
                            stacklevel=4,
                        )
            else:
                X[:, position] = _numeric_values(series, name)
        return X, unseen

    def encode_values(self, X: np.ndarray, dtype=np.float64, warn: bool = True):
        """An array (e.g. an object array of levels) encoded position by position."""
        frame = pd.DataFrame(np.asarray(X, dtype=object), columns=self.names)
        for name, kind in zip(self.names, self.types):
            if kind in NUMERIC_TYPES:
                frame[name] = pd.to_numeric(frame[name], errors="raise")
        return self.encode(frame, dtype=dtype, warn=warn)

    def unseen_penalty(self, unseen: np.ndarray | None, n: int) -> np.ndarray:
        """Per row, the summed log-probabilities of its unseen levels (0 without)."""
        if unseen is None:
            return np.zeros(n)
        log_p = np.array([
            self.unseen_log_probability(j) if self.types[j] in DISCRETE_TYPES else 0.0
            for j in range(self.n_features)
        ])
        return unseen @ log_p

    # -------------------------------------------------------- the way back
    def to_frame(self, X: np.ndarray, index=None) -> pd.DataFrame:
        """Encoded rows (numbers and level codes) as a DataFrame of the fitted dtypes."""
        columns = {}
        for position, (name, kind) in enumerate(zip(self.names, self.types)):
            values = X[:, position]
            dtype = self.dtypes.get(name)
            if kind in DISCRETE_TYPES:
                columns[name] = _levels_series(values, self.levels[name], dtype, index)
            else:
                columns[name] = _numbers_series(values, kind, dtype, index)
        return pd.DataFrame(columns, index=index)

    def to_values(self, X: np.ndarray) -> np.ndarray:
        """Encoded rows as an array of the user's values (a model fitted on an array).

        Level codes become the levels themselves: a float array when every level is a
        number (the values given at fit, exactly), an object array otherwise; numeric
        columns pass through. Without discrete columns ``X`` is returned as it is.
        """
        if not self.has_discrete:
            return X
        out = X.astype(object) if not self._numeric_levels() else X.copy()
        for j in self.discrete:
            levels = np.asarray(self.levels[self.names[j]], dtype=object)
            codes = X[:, j]
            known = ~np.isnan(codes)
            column = np.full(codes.shape, np.nan, dtype=object)
            column[known] = levels[codes[known].astype(np.intp)]
            out[:, j] = column.astype(np.float64) if out.dtype != object else column
        return out

    def _numeric_levels(self) -> bool:
        return all(
            isinstance(level, (int, float, np.integer, np.floating, bool, np.bool_))
            for j in self.discrete for level in self.levels[self.names[j]]
        )

    def fill_frame(self, frame: pd.DataFrame, filled: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its missing cells taken from ``filled``; observed cells untouched."""
        out = frame.copy()
        for position, name in enumerate(self.names):
            column = frame.iloc[:, position]
            missing = column.isna().to_numpy()
            if missing.any():
                replacement = filled.iloc[:, position]
                if isinstance(column.dtype, pd.CategoricalDtype) and replacement.dtype == column.dtype:
                    # the same categories: the codes merged (``where`` maps every level back
                    # to its code, a tenth of the mixed default's transform on Adult)
                    codes = np.where(missing, replacement.cat.codes.to_numpy(), column.cat.codes.to_numpy())
                    merged = pd.Series(pd.Categorical.from_codes(codes, dtype=column.dtype), index=column.index,
                                       name=column.name)
                else:
                    merged = column.where(~missing, replacement.to_numpy())
                out[out.columns[position]] = _restored(merged, self.dtypes.get(name))
        return out


@dataclass(frozen=True)
class SampleLimits:
    """Per column (arrays of shape (D,)): a draw is redrawn when outside ``[low, high]``,
    then clipped to ``[clip_low, clip_high]`` and rounded to ``decimals`` places (NaN:
    not rounded); a ``positive`` column's draw at or below 0 becomes ``floor`` (NaN:
    other columns); ``support`` (per column, sorted values or None): a draw between
    its first and last value becomes the nearest of them."""

    low: np.ndarray
    high: np.ndarray
    clip_low: np.ndarray
    clip_high: np.ndarray
    decimals: np.ndarray
    floor: np.ndarray
    support: tuple = ()


def _interval(bound, name: str) -> tuple[float, float]:
    try:
        lo, hi = bound
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds for column {name!r} must be a pair (low, high) of numbers or None; got {bound!r}."
        ) from None
    if not lo <= hi:
        raise ValueError(f"bounds for column {name!r} have low > high: {bound!r}.")
    return lo, hi


def _nearest(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each of ``x`` between ``values[0]`` and ``values[-1]`` (sorted) as the nearest of ``values``."""
    i = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
    left, right = values[i - 1], values[i]
    snapped = np.where(np.abs(x - left) <= np.abs(right - x), left, right)
    with np.errstate(invalid="ignore"):
        return np.where((x >= values[0]) & (x <= values[-1]), snapped, x)


def _distinct_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(mask, axis=0, return_counts=True)`` of a boolean matrix: its distinct
    rows in lexicographic order (False first) and how often each occurs. Up to 63
    columns a row is one integer, its first column the highest bit (the same order):
    ``np.unique(axis=0)`` sorts rows as records, 5 ms on Adult's 3000 x 12 holes, a
    fifth of that way (each fit reads its rows' missingness patterns)."""
    n, d = mask.shape
    if d > 63:
        return np.unique(mask, axis=0, return_counts=True)
    shifts = np.arange(d - 1, -1, -1, dtype=np.int64)
    keys, counts = np.unique(mask.astype(np.int64) @ (np.int64(1) << shifts), return_counts=True)
    return ((keys[:, None] >> shifts) & 1).astype(bool), counts


def _decimal_places(values: np.ndarray):
    """The fewest decimal places (0 .. MAX_DECIMALS) that write every value, or None.

    ``0.27 * 100`` is ``27.000000000000004`` in binary floating point: a value is on
    the grid of ``k`` places when it is within a relative 1e-11 of it.
    """
    def on_grid(part, places):
        scaled = part * 10.0**places
        return bool(np.all(np.abs(scaled - np.round(scaled)) <= 1e-11 * np.maximum(np.abs(scaled), 1.0)))

    head = values[:64]  # a grid the first values miss is missed by the column: one full pass at most
    for places in range(MAX_DECIMALS + 1):
        if on_grid(head, places) and on_grid(values, places):
            return places
    return None


def _warn_if_identifier(series: pd.Series, name: str) -> None:
    if isinstance(series.dtype, pd.CategoricalDtype):  # from the codes: a third of dropna's and nunique's time
        codes = series.cat.codes.to_numpy()
        observed = codes[codes >= 0]
        n, distinct = observed.size, (lambda: np.unique(observed).size)
    else:
        observed = series.dropna()
        n, distinct = len(observed), observed.nunique
    if n < IDENTIFIER_MIN_ROWS:
        return
    distinct = distinct()
    if distinct < IDENTIFIER_SHARE * n:
        return
    warnings.warn(
        f"Column {name!r} has a distinct value in {distinct} of its {n} rows: it looks like "
        "an identifier (a name, an id), not a category. A model keeps one level per row, "
        "learns nothing from it, and sample() would copy training values into synthetic "
        "rows. Drop it before fitting (and give synthetic rows new identifiers "
        f"afterwards), or, if it is a category, declare it: column_types={{{name!r}: "
        "'categorical'}.",
        IdentifierColumnWarning,
        stacklevel=5,
    )


def merge_observed(before: dict | None, now: dict | None) -> dict | None:
    """What two parts of the rows show together (:meth:`TableSchema.observed_of` of
    each): ranges joined, the finer of the two grids where both parts had a grid,
    frequent values' counts added (a value frequent in neither part alone is not
    kept), missingness patterns' counts added."""
    if not before:
        return now
    if not now:
        return before
    ranges, decimals, frequent = now["ranges"], now["decimals"], dict(now["frequent"])
    old_ranges, old_decimals = before.get("ranges", {}), before.get("decimals", {})
    joined, grid = {}, {}
    for name in set(ranges) | set(old_ranges):
        parts = [r for r in (ranges.get(name), old_ranges.get(name)) if r is not None]
        joined[name] = (min(p[0] for p in parts), max(p[1] for p in parts))
        places = [d.get(name) for d, r in ((decimals, ranges), (old_decimals, old_ranges)) if name in r]
        if None not in places:
            grid[name] = max(places)
    for name, (values, counts, total) in before.get("frequent", {}).items():
        if name in frequent:  # values frequent in either part (rare ones are not kept)
            now_values, now_counts, now_total = frequent[name]
            merged = pd.Series(counts, index=values).add(pd.Series(now_counts, index=now_values), fill_value=0)
            frequent[name] = (merged.index.to_numpy(dtype=np.float64), merged.to_numpy(np.int64), total + now_total)
        else:
            frequent[name] = (values, counts, total)
    n_before, n_now = before.get("n_rows", 0), now["n_rows"]
    return {"ranges": joined, "decimals": grid, "frequent": frequent,
            "missing": _merged_patterns(before.get("missing"), now["missing"], n_before, n_now),
            "n_rows": n_before + n_now}


def _merged_patterns(before, now, n_before: int, n_now: int):
    """Missingness patterns of two parts of the rows, counts added (``None``: no hole)."""
    parts = [p for p in (before, now) if p is not None]
    if not parts:
        return None
    d = parts[0][0].shape[1]
    patterns = [p[0] for p in parts]
    counts = [p[1] for p in parts]
    # the rows of a part without holes are all the complete pattern
    for rows, part in ((n_before, before), (n_now, now)):
        if part is None and rows:
            patterns.append(np.zeros((1, d), dtype=bool))
            counts.append(np.array([rows], dtype=np.int64))
    stacked = np.concatenate(patterns)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    total = np.zeros(len(unique), dtype=np.int64)
    np.add.at(total, inverse.reshape(-1), np.concatenate(counts))
    return unique, total


# ------------------------------------------------------------------ helpers
def _restored(column: pd.Series, fitted_dtype) -> pd.Series:
    """A filled column back in the dtype it had at fit, when its values allow it.

    A bool or integer column with missing cells arrives as object or float (NaN needs
    it); once every cell is filled it can hold the fitted dtype again, unless the
    filled values are not of that kind (a conditional mean of a count column).
    """
    if fitted_dtype is None or column.dtype == fitted_dtype or column.isna().any():
        return column
    kind = getattr(fitted_dtype, "kind", "")
    try:
        if kind == "b" and column.map(lambda v: isinstance(v, (bool, np.bool_))).all():
            return column.astype(fitted_dtype)
        if kind and kind in "iu" and np.all(np.mod(column.to_numpy(dtype=np.float64), 1) == 0):
            return column.astype(fitted_dtype)
    except (TypeError, ValueError):
        pass
    return column


def _overrides(column_types, names: list) -> dict:
    if column_types is None:
        return {}
    if isinstance(column_types, dict):
        unknown = [c for c in column_types if str(c) not in names]
        if unknown:
            raise ValueError(
                f"column_types names column(s) {unknown} that X does not have; X has "
                f"columns {names[:10]}{' ...' if len(names) > 10 else ''}."
            )
        result = {str(c): t for c, t in column_types.items()}
    else:
        column_types = list(column_types)
        if len(column_types) != len(names):
            raise ValueError(
                f"column_types has {len(column_types)} entries but X has {len(names)} "
                "columns; give one type per column or a dict {column: type}."
            )
        result = {name: t for name, t in zip(names, column_types) if t is not None}
    bad = {c: t for c, t in result.items() if t not in COLUMN_TYPES}
    if bad:
        raise ValueError(
            f"column_types gives unknown type(s) {bad}; each must be one of {list(COLUMN_TYPES)}."
        )
    return result


def _levels_at_fit(series: pd.Series, kind: str, name: str, seen=None) -> np.ndarray:
    dtype = series.dtype
    if _is_bool(dtype):
        levels = np.asarray([False, True], dtype=object)
    elif seen is not None:  # the distinct values of the whole column, given
        levels = _sorted_levels(pd.Series(np.asarray(seen, dtype=object)))
    elif isinstance(dtype, pd.CategoricalDtype):
        levels = np.asarray(dtype.categories, dtype=object)
    else:
        levels = _sorted_levels(series)
    if len(levels) == 0:
        raise ValueError(f"Column {name!r} has no observed level: drop it before fitting.")
    if kind == "binary" and len(levels) > 2:
        raise ValueError(
            f"Column {name!r} is declared binary but has {len(levels)} levels "
            f"({', '.join(map(repr, levels[:5]))}); declare it categorical."
        )
    return levels


_ADVICE = {"positive": "Declare it real.", "count": "Declare it real or positive."}


def _numeric_values(series: pd.Series, name: str) -> np.ndarray:
    dtype = series.dtype
    if _is_bool(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Column {name!r} was fitted as numeric but holds values that are not "
            f"numbers ({exc})."
        ) from None


def _codes(series: pd.Series, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level codes (-1 for missing or unseen) and the mask of unseen cells."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) and np.array_equal(
        np.asarray(dtype.categories, dtype=object), levels
    ):
        codes = series.cat.codes.to_numpy().astype(np.int64)
        return codes, np.zeros(len(series), dtype=bool)
    values = series.astype(object).where(series.notna(), None)
    codes = pd.Index(levels).get_indexer(values.to_numpy(dtype=object)).astype(np.int64)
    present = series.notna().to_numpy()
    return np.where(present, codes, -1), present & (codes < 0)


def _levels_series(values: np.ndarray, levels: np.ndarray, dtype, index) -> pd.Series:
    codes = np.where(np.isnan(values), -1, np.rint(np.nan_to_num(values, nan=-1.0))).astype(np.int64)
    codes = np.clip(codes, -1, len(levels) - 1)
    if isinstance(dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=index)
    picked = np.empty(len(codes), dtype=object)
    picked[:] = None
    picked[codes >= 0] = levels[codes[codes >= 0]]
    series = pd.Series(picked, index=index, dtype=object)
    if dtype is not None and not pd.api.types.is_object_dtype(dtype):
        if _is_bool(dtype) and (codes < 0).any() and dtype == np.bool_:
            return series.astype("boolean")
        return series.astype(dtype)
    return series


def _numbers_series(values: np.ndarray, kind: str, dtype, index) -> pd.Series:
    if kind == "count":
        values = np.maximum(np.rint(values), 0.0)
    if dtype is None:
        return pd.Series(values, index=index)
    if pd.api.types.is_integer_dtype(dtype) or _is_bool(dtype):
        if np.isnan(values).any() and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
            return pd.Series(np.rint(values), index=index)  # float: cannot hold NaN as int
        rounded = np.rint(values)
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            return pd.Series(pd.array(np.where(np.isnan(rounded), None, rounded), dtype=dtype), index=index)
        return pd.Series(rounded.astype(dtype), index=index)
    return pd.Series(values, index=index).astype(dtype)


def point_levels(probabilities: np.ndarray, kind: str) -> np.ndarray:
    """:func:`skgenerative.distributions.level_point` (the mode, or the median of an
    ordinal column) for numpy level probabilities (n, K)."""
    return level_point(torch.as_tensor(probabilities), kind == "ordinal").numpy()
