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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .distributions import FAMILIES, level_point, support_error

__all__ = [
    "COLUMN_TYPES",
    "DISCRETE_TYPES",
    "NUMERIC_TYPES",
    "TableSchema",
    "is_dataframe",
    "point_levels",
]

NUMERIC_TYPES = ("real", "positive", "count")
DISCRETE_TYPES = ("binary", "categorical", "ordinal")
COLUMN_TYPES = NUMERIC_TYPES + DISCRETE_TYPES


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


@dataclass
class TableSchema:
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
    """

    names: list
    types: list
    levels: dict = field(default_factory=dict)
    dtypes: dict = field(default_factory=dict)
    n_samples: int = 0
    from_frame: bool = False

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
        levels, dtypes = {}, {}
        for position, (name, kind) in enumerate(zip(names, types)):
            series = frame.iloc[:, position]
            dtypes[name] = series.dtype
            if kind in DISCRETE_TYPES:
                values = None if seen is None or name not in seen else seen[name]
                levels[name] = _levels_at_fit(series, kind, name, values)
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
                out[out.columns[position]] = _restored(
                    column.where(~missing, replacement.to_numpy()), self.dtypes.get(name)
                )
        return out


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
