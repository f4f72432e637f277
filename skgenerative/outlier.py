"""GenerativeOutlierDetector: a scikit-learn outlier detector around any density model.

A ``Pipeline`` forwards ``predict``, ``decision_function`` and ``score_samples`` to
its last step, and ``GaussianMixtureDensity.predict`` already means component labels.
This wrapper turns any estimator with ``score_samples`` (skgenerative's, or
scikit-learn's ``GaussianMixture`` and ``KernelDensity``) into an outlier detector
whose ``predict`` gives -1 for outliers and +1 for inliers, so that a whole pipeline
predicts outliers.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    OutlierMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ._schema import is_dataframe
from ._sources import DaskSource
from ._torch import to_numpy_input
from .base import (
    OutlierThresholdMixin,
    _all_numeric,
    _input_float_dtype,
    check_magnitude,
    clone_with_verbose,
    fit_wrapped_on_blocks,
    lazy_rows,
    on_blocks,
)

__all__ = ["GenerativeOutlierDetector", "NumericColumnScaler", "default_outlier_estimator", "log_density"]


def default_outlier_estimator(mixed: bool = False, n_features: int | None = None):
    """The estimator ``GenerativeOutlierDetector`` uses when none is given.

    Every numeric column standardised and passed through its own Yeo-Johnson power
    transform (exponent by maximum likelihood; a column with an atom only
    standardised), by :class:`NumericColumnScaler`, then

    - numbers (an array, or a DataFrame of numeric columns): probabilistic PCA with
      2 components (1 for 2 columns; a Gaussian for 1 column), a full-covariance
      Gaussian whose covariance is 2 principal directions plus isotropic noise;
    - a DataFrame with discrete columns (``mixed``): a two-component Gaussian
      mixture with full covariances regularised by a conjugate prior worth 50
      pseudo-observations, whose components also hold each discrete column's level
      probabilities (PPCA models no levels).

    ``GenerativeOutlierDetector`` adds the transform's log-Jacobian to the model's
    log-density, so its score is a log-density of the rows as given. The same
    pipeline serves arrays and tables, in memory and on dask, and marginalises
    missing cells.

    Notes
    -----
    The row is modelled as

        z_j = (psi_j((x_j - mean_j) / std_j) - m_j) / s_j,   z ~ N(mu, W W^T + sigma^2 I)

    with ``psi_j`` the Yeo-Johnson power transform of column ``j`` (Yeo & Johnson
    2000; exponent by maximum likelihood, :class:`NumericColumnScaler`) and ``W`` of
    rank 2 (probabilistic PCA, Tipping & Bishop 1999), and scores it by

        log p(x) = log N(z; mu, W W^T + sigma^2 I) + sum_j log |dz_j / dx_j|,

    a proper log-density of the row in the units it was given in. Why:

    - tables of measurements are skewed (concentrations, counts, durations); a
      Gaussian on the raw columns spends its covariance on the tails, while a
      transformed column is close to normal. The Jacobian term matters as much as
      the transform: without it the score is the density of ``z``, and a
      transform that pulls a long tail in pulls the outliers in that tail with it
      (on ADBench, 85.1 AUCROC with the transform and no Jacobian, 91.0 with it);
    - a column where one value holds more than 20% of the cells (a spike: the zeros
      of a measurement that is rarely non-zero, the floor of a 1-10 scale) has no
      maximum-likelihood exponent: the likelihood grows without bound as the
      exponent squeezes the spike. Such a column is only standardised;
    - two principal directions plus isotropic noise, not a full covariance or a
      mixture: models chosen by held-out likelihood (more components, more
      directions) also fit the anomalies present in the training rows when they are
      clustered (ADBench's cardio) and detect worse; a low rank keeps the
      covariance from following them. Every candidate tried, with its figures,
      is listed in ``benchmarks/results/adbench.md``;
    - on a DataFrame with discrete columns, PPCA cannot model levels: the same
      transform is followed by a two-component full-covariance Gaussian mixture
      (each covariance shrunk towards the identity by a conjugate prior worth 50
      pseudo-observations, Fraley & Raftery 2007) whose components also hold the
      level probabilities. On 2 columns PPCA has 1 direction; 1 column is a Gaussian.
    """
    from .mixture import GaussianMixtureDensity
    from .ppca import PPCADensity

    if mixed:
        density = GaussianMixtureDensity(n_components=2, covariance_prior=50.0, random_state=0)
    elif n_features is not None and n_features < 2:
        density = GaussianMixtureDensity(n_components=1, random_state=0)
    else:
        density = PPCADensity(n_components=2 if n_features is None else min(2, n_features - 1), random_state=0)
    return make_pipeline(NumericColumnScaler(power="yeo-johnson"), density)


def log_density(model, X) -> np.ndarray:
    """``model.score_samples(X)`` plus the log-Jacobians of its pipeline's steps.

    A step of a ``Pipeline`` with a ``log_abs_det_jacobian`` method (per row and
    column, as :meth:`NumericColumnScaler.log_abs_det_jacobian` gives it) has it
    added, cell by cell, at the rows it receives: the score is then the log-density
    of ``X`` as given, not of what the last step sees. Steps without one (a
    ``StandardScaler``: the same constant for every row) add nothing.
    """
    if not isinstance(model, Pipeline):
        return np.asarray(model.score_samples(X), dtype=np.float64)
    total = 0.0
    for _, step in model.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        if hasattr(step, "log_abs_det_jacobian"):
            total = total + step.log_abs_det_jacobian(X).sum(axis=1)
        X = step.transform(X)
    return np.asarray(model.steps[-1][1].score_samples(X), dtype=np.float64) + total


def _scaler_from_moments(moments, names=None) -> StandardScaler:
    """A ``StandardScaler`` fitted from column moments, as ``fit`` on the rows sets it."""
    from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

    scaler = StandardScaler()
    count = moments.count.cpu().numpy()
    scaler.mean_ = moments.mean.cpu().numpy()
    scaler.var_ = moments.variance.cpu().numpy()
    missing = bool((count < moments.n_rows).any())
    scaler.n_samples_seen_ = count.astype(np.int64) if missing else int(moments.n_rows)
    constant = _is_constant_feature(scaler.var_, scaler.mean_, scaler.n_samples_seen_)
    scaler.scale_ = _handle_zeros_in_scale(np.sqrt(scaler.var_), copy=False, constant_mask=constant)
    scaler.n_features_in_ = scaler.mean_.shape[0]
    if names is not None:
        scaler.feature_names_in_ = np.asarray(names, dtype=object)
    return scaler


#: the first pass's candidate Yeo-Johnson exponents (a coarse grid), then the second's
#: offsets around each column's best one: the exponent is found to 0.05
_POWER_GRID = np.linspace(-10.0, 10.0, 21)
_POWER_REFINE = np.linspace(-0.9, 0.9, 19)
#: rows whose most common value per column is the candidate atom of that column
_ATOM_HEAD_ROWS = 5000


def _memory_source(X: np.ndarray):
    """The rows of a numeric array (NaN allowed) as a source, like a dask collection's."""
    import torch

    from ._sources import TensorSource

    X = np.ascontiguousarray(X, dtype=np.float64)
    return TensorSource(torch.from_numpy(X if X.flags.writeable else X.copy()))


def _float_rows(rows) -> np.ndarray:
    if is_dataframe(rows):
        return rows.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(rows, dtype=np.float64)


def _most_common(X: np.ndarray) -> np.ndarray:
    """Per column, its most common observed value (the smallest on a tie; NaN if none)."""
    out = np.full(X.shape[1], np.nan)
    for j in range(X.shape[1]):
        column = X[:, j][~np.isnan(X[:, j])]
        if column.size:
            values, counts = np.unique(column, return_counts=True)
            out[j] = values[np.argmax(counts)]
    return out


def _atom_statistics(x, candidates):
    import torch

    return {"hits": (x == candidates).sum(0).to(torch.float64),
            "count": (~torch.isnan(x)).sum(0).to(torch.float64)}


def _standardised_power_statistics(x, mean, scale, grid):
    from .flows import yeo_johnson_profile_statistics

    return yeo_johnson_profile_statistics((x - mean) / scale, grid)


def _fit_power(source, scaler, candidates, atom_threshold):
    """Per column: the share of its cells at its atom, its Yeo-Johnson exponent, and
    the mean and scale of the transformed standardised column.

    The exponent maximises the profile likelihood of the standardised column
    (:func:`~skgenerative.flows.yeo_johnson_profile_log_likelihood`) over a coarse
    grid, then a fine one around the best point (two passes over the rows). A column
    whose most common value (found in the first rows, counted over all of them)
    holds more than ``atom_threshold`` of its observed cells keeps exponent 1.
    """
    import torch

    from .flows import yeo_johnson_profile_log_likelihood

    p = scaler.mean_.shape[0]
    mean = torch.as_tensor(scaler.mean_, dtype=torch.float64)
    scale = torch.as_tensor(scaler.scale_, dtype=torch.float64)
    atoms = source.reduce(_atom_statistics, torch.as_tensor(candidates), row_bytes=24 * p)
    share = (atoms["hits"] / atoms["count"].clamp_min(1.0)).numpy()
    linear = (share > atom_threshold) | (atoms["count"].numpy() == 0)
    coarse = torch.as_tensor(np.tile(_POWER_GRID, (p, 1)))
    stats = source.reduce(_standardised_power_statistics, mean, scale, coarse,
                          row_bytes=40 * p * coarse.shape[1])
    best = coarse[torch.arange(p), yeo_johnson_profile_log_likelihood(stats, coarse).argmax(1)].numpy()
    best[linear] = 1.0
    fine = torch.as_tensor(best[:, None] + _POWER_REFINE[None, :])
    stats = source.reduce(_standardised_power_statistics, mean, scale, fine, row_bytes=40 * p * fine.shape[1])
    pick = yeo_johnson_profile_log_likelihood(stats, fine).argmax(1).numpy()
    pick[linear] = _POWER_REFINE.size // 2  # offset 0: exponent 1
    rows = np.arange(p)
    lambdas = fine.numpy()[rows, pick]
    count = np.maximum(stats["count"].numpy(), 1.0)
    power_mean = stats["sum"].numpy()[rows, pick] / count
    variance = np.maximum(stats["sum_squares"].numpy()[rows, pick] / count - power_mean ** 2, 0.0)
    from sklearn.preprocessing._data import _handle_zeros_in_scale

    power_scale = _handle_zeros_in_scale(np.sqrt(variance), copy=False)
    return share, lambdas, power_mean, power_scale


class NumericColumnScaler(TransformerMixin, BaseEstimator):
    """Standardise the numeric columns in place, optionally through a power transform;
    keep every other column.

    The first step of the default detector: numeric (non-boolean) columns become
    ``u = (x - mean) / std`` as ``StandardScaler`` computes them (NaN ignored, a
    constant column divided by 1); every column of an array is numeric. With
    ``power="yeo-johnson"``, each numeric column then goes through its own
    Yeo-Johnson transform ``psi`` (exponent by maximum likelihood) and is
    standardised again: ``z = (psi(u) - m) / s``. A column with an atom (one value
    holding more than ``atom_threshold`` of its cells) keeps ``z = u``: see Notes.

    In a DataFrame, categorical, ordinal and boolean columns pass through with their
    dtypes and categories, and the columns keep their names and order, so the
    density model's schema sees the user's table and
    ``GenerativeOutlierDetector.explain`` maps back to it column for column. (A
    ``ColumnTransformer`` with ``remainder="passthrough"`` would move the numeric
    columns first.) A dask array or DataFrame is fitted where its blocks are (column
    moments, then, with the power transform, the atoms' counts and the exponents'
    likelihoods on two grids: four passes, nothing gathered but the first
    5000 rows, which name each column's candidate atom) and transformed lazily.

    Parameters
    ----------
    power : {"yeo-johnson"} or None, default=None
        ``None`` standardises only.
    atom_threshold : float in [0, 1], default=0.2
        With ``power``: a numeric column whose most common value holds more than
        this share of its observed cells is standardised only.

    Attributes
    ----------
    numeric_columns_ : ndarray of str or None
        The numeric columns of a DataFrame; ``None`` for an array (every column).
    scaler_ : StandardScaler or None
        The first standardisation (``None`` when no column is numeric).
    lambdas_ : ndarray of shape (n_numeric,)
        With ``power``: each numeric column's exponent (1 where it has an atom).
    atom_share_ : ndarray of shape (n_numeric,)
        With ``power``: the share of each numeric column's observed cells at its most
        common value.
    power_mean_, power_scale_ : ndarray of shape (n_numeric,)
        With ``power``: the second standardisation.

    Notes
    -----
    The map ``x -> z`` is increasing in each column and acts on each column alone,
    so its Jacobian is diagonal and the density of a row in the units of ``X`` is
    the density of ``z`` times ``exp(sum_j ladj_j)`` with, per numeric cell,

        ladj_j = -log std_j + (lambda_j - 1) sign(u_j) log1p|u_j| - log s_j

    (:meth:`log_abs_det_jacobian`; a missing cell contributes 0: it is marginalised).
    ``GenerativeOutlierDetector`` adds it to its density model's log-density, which
    makes the score a log-density of the rows as given, whatever the transform did:
    without it, a transform that pulls in a long tail would also pull in the
    outliers that live there.

    The exponent maximises the Gaussian likelihood of the transformed column (Yeo &
    Johnson 2000). On a column where one value holds a sizeable share of the cells
    (a spike: zeros of a rarely non-zero measurement, the floor of a scale) that
    likelihood has no maximum: an extreme exponent squeezes the spike towards a
    point, where a continuous density grows without bound (on ADBench's cardio
    the fitted exponents reach -54). Such a column is left linear.
    """

    _parameter_constraints: dict = {
        "power": [StrOptions({"yeo-johnson"}), None],
        "atom_threshold": [Interval(Real, 0.0, 1.0, closed="both")],
    }

    def __init__(self, power=None, atom_threshold=0.2):
        self.power = power
        self.atom_threshold = atom_threshold

    def _fit_on_blocks(self, method, X, arguments):
        source = DaskSource(X)
        meta = source.meta
        if meta is None:
            validate_data(self, X, reset=True, skip_check_array=True)
            self.numeric_columns_ = None
            self.scaler_ = _scaler_from_moments(source.column_moments())
            return self._fit_power(source.head(_ATOM_HEAD_ROWS), source)
        validate_data(self, meta, reset=True, skip_check_array=True)
        names = [name for name in meta.columns if _all_numeric(meta[[name]])]
        self.numeric_columns_ = np.array(names, dtype=object)
        if not names:
            self.scaler_ = None
            return self._fit_power(None, None)
        numeric = DaskSource(X[names])
        self.scaler_ = _scaler_from_moments(numeric.column_moments(), names)
        return self._fit_power(numeric.head(_ATOM_HEAD_ROWS), numeric)

    @_fit_context(prefer_skip_nested_validation=True)
    @on_blocks(_fit_on_blocks)
    def fit(self, X, y=None):
        """Learn the mean and scale of each numeric column of ``X`` (and, with
        ``power``, its exponent and the second mean and scale)."""
        if not is_dataframe(X):
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan")
            self.numeric_columns_ = None
            numbers = X
        else:
            validate_data(self, X, skip_check_array=True)
            self.numeric_columns_ = np.array(
                [name for name in X.columns if _all_numeric(X[[name]])], dtype=object
            )
            numbers = X[list(self.numeric_columns_)].to_numpy(dtype=np.float64, na_value=np.nan) \
                if self.numeric_columns_.size else None
        if numbers is None:
            self.scaler_ = None
            return self._fit_power(None, None)
        if self.power is None:
            self.scaler_ = StandardScaler().fit(
                numbers if self.numeric_columns_ is None else X[list(self.numeric_columns_)])
            return self
        source = _memory_source(numbers)
        self.scaler_ = _scaler_from_moments(source.column_moments(), self.numeric_columns_)
        return self._fit_power(numbers[:_ATOM_HEAD_ROWS], source)

    def _fit_power(self, head, source):
        """With ``power``: the exponents and atoms from ``source``, the candidate atoms
        from ``head`` (the first rows, in memory)."""
        for name in ("lambdas_", "atom_share_", "power_mean_", "power_scale_"):
            self.__dict__.pop(name, None)
        if self.power is None or source is None:
            return self
        import torch

        from ._torch import adaptive_threads

        candidates = _most_common(_float_rows(head))
        with torch.inference_mode(), adaptive_threads():  # torch threads for the machine's load
            self.atom_share_, self.lambdas_, self.power_mean_, self.power_scale_ = _fit_power(
                source, self.scaler_, candidates, self.atom_threshold)
        return self

    def _numbers(self, X) -> np.ndarray:
        """The standardised-then-transformed numeric columns, float64."""
        if not hasattr(self, "lambdas_"):
            return self.scaler_.transform(X)
        import torch

        from .flows import yeo_johnson

        from ._torch import adaptive_threads

        u = self._standardised(X)
        with torch.inference_mode(), adaptive_threads():
            y, _ = yeo_johnson(torch.from_numpy(u), torch.from_numpy(self.lambdas_))
        return (y.numpy() - self.power_mean_) / self.power_scale_

    def _standardised(self, numbers) -> np.ndarray:
        numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan) if is_dataframe(numbers) else numbers
        return (np.asarray(numbers, dtype=np.float64) - self.scaler_.mean_) / self.scaler_.scale_

    @lazy_rows
    def transform(self, X):
        """``X`` with its numeric columns standardised (float64 in a DataFrame)."""
        check_is_fitted(self)
        if self.numeric_columns_ is None:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan")
            return self._numbers(X).astype(X.dtype, copy=False)
        self._check_frame(X)
        validate_data(self, X, reset=False, skip_check_array=True)
        out = X.copy()
        if self.scaler_ is not None:
            names = list(self.numeric_columns_)
            scaled = self._numbers(X[names].astype(np.float64))
            for j, name in enumerate(names):
                out[name] = scaled[:, j]
        return out

    def log_abs_det_jacobian(self, X, *, standardised: bool = False) -> np.ndarray:
        """Per row and column, ``log |d z_j / d x_j|`` of :meth:`transform` (see Notes).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        standardised : bool, default=False
            Leave out the first standardisation's ``-log std_j``: the log-derivative
            of ``z_j`` with respect to ``u_j``, the column in standard deviations.

        Returns
        -------
        ladj : ndarray of shape (n_samples, n_features)
            0 for a missing cell and for a column that is not numeric.
        """
        check_is_fitted(self)
        if self.numeric_columns_ is None:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan")
            numbers, where = np.asarray(X, dtype=np.float64), np.arange(X.shape[1])
        else:
            self._check_frame(X)
            validate_data(self, X, reset=False, skip_check_array=True)
            names = list(self.numeric_columns_)
            numbers = X[names].to_numpy(dtype=np.float64, na_value=np.nan) if names else None
            where = np.array([list(X.columns).index(name) for name in names], dtype=int)
        out = np.zeros((X.shape[0], self.n_features_in_))
        if numbers is None or self.scaler_ is None:
            return out
        ladj = np.broadcast_to(-np.log(self.power_scale_) if hasattr(self, "lambdas_") else 0.0,
                               numbers.shape).copy()
        if not standardised:
            ladj -= np.log(self.scaler_.scale_)
        if hasattr(self, "lambdas_"):
            import torch

            from .flows import yeo_johnson

            from ._torch import adaptive_threads

            u = self._standardised(numbers)
            with torch.inference_mode(), adaptive_threads():
                ladj += yeo_johnson(torch.from_numpy(u), torch.from_numpy(self.lambdas_))[1].numpy()
        ladj[np.isnan(numbers)] = 0.0
        out[:, where] = ladj
        return out

    def _lazy_output(self, method, X, arguments) -> dict:
        if self.numeric_columns_ is None:
            return {"kind": "same", "dtype": _input_float_dtype(X)}
        meta = X._meta.copy()
        for name in self.numeric_columns_:
            meta[name] = meta[name].astype(np.float64)
        return {"kind": "same", "dtype": np.float64, "meta": meta}

    @staticmethod
    def _check_frame(X) -> None:
        if not is_dataframe(X):
            raise TypeError(
                f"This NumericColumnScaler was fitted on a DataFrame (it scales columns by "
                f"their dtype); pass a DataFrame, not {type(X).__name__}."
            )

    def get_feature_names_out(self, input_features=None):
        """The input's column names, unchanged."""
        from sklearn.utils.validation import _check_feature_names_in

        check_is_fitted(self)
        return _check_feature_names_in(self, input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


def _rows(X, index):
    """Rows ``index`` (positions) of an array or a DataFrame."""
    return X.iloc[index] if is_dataframe(X) else X[index]


def _columns(X, index):
    """Columns ``index`` (positions) of an array or a DataFrame."""
    return X.iloc[:, index] if is_dataframe(X) else X[:, index]


def _density_step(estimator):
    """The density model itself: the last step of a pipeline, or the estimator."""
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _can_explain(detector) -> bool:
    if detector.feature_bagging is not None or hasattr(detector, "estimators_"):
        return False  # an ensemble's score is not one density
    fitted = getattr(detector, "estimator_", None)
    if fitted is not None:
        return hasattr(_density_step(fitted), "explain")
    estimator = detector.estimator
    return estimator is None or hasattr(_density_step(estimator), "explain")


class DensityFitsMixin:
    """How the detector fits its density: a clone of the estimator (or the default),
    trimmed-likelihood refits (``robust``), feature-bagged members, the calibration
    split, and the scores these give (log-densities with the pipeline's Jacobians)."""

    def _fit_models(self, estimator, X, random_state) -> None:
        """``estimator_``, or with ``feature_bagging`` the members and their scales."""
        if self.feature_bagging is None:
            self.estimator_ = self._fit_density(estimator, X)
            return
        n_features = X.shape[1]
        width = min(n_features, max(2, int(round(n_features / 2))))
        self.subspaces_, self.estimators_, scales = [], [], []
        for _ in range(int(self.feature_bagging)):
            columns = np.sort(random_state.choice(n_features, width, replace=False))
            model = self._fit_density(estimator, _columns(X, columns))
            scores = log_density(model, _columns(X, columns))
            self._check_scores(scores, "the training data")
            low, median, high = np.percentile(scores, [25, 50, 75])
            spread = high - low if high > low else (np.std(scores) or 1.0)
            self.subspaces_.append(columns)
            self.estimators_.append(model)
            scales.append((median, spread))
        self.member_scales_ = np.array(scales)

    def _describe_default(self) -> None:
        """``default_choice_`` (what the default estimator chose from the data), and at
        ``verbose >= 1`` a line saying it."""
        model = self.__dict__.get("estimator_")
        if self.estimator is not None or model is None:
            return
        scaler, density = model.steps[0][1], model.steps[-1][1]
        names = (list(scaler.numeric_columns_) if scaler.numeric_columns_ is not None
                 else list(getattr(self, "feature_names_in_", range(self.n_features_in_))))
        choice = {"density": repr(density)}
        if hasattr(scaler, "lambdas_"):
            atoms = scaler.atom_share_ > scaler.atom_threshold
            choice.update({
                "yeo_johnson_lambdas": dict(zip(map(str, names), scaler.lambdas_.round(2).tolist())),
                "columns_with_an_atom": [str(n) for n, a in zip(names, atoms) if a],
            })
            text = (f"default density: Yeo-Johnson exponents fitted on {int((~atoms).sum())} of {len(names)} "
                    f"numeric columns ({int(atoms.sum())} with an atom left linear), then {density!r}")
        else:
            text = f"default density: {density!r}"
        self.default_choice_ = choice
        if self.verbose:
            print(f"[{type(self).__name__}] {text}", flush=True)

    def _calibration_split(self, n: int, random_state):
        n_held = int(round(self.calibration * n))
        if n_held < 1 or n - n_held < 2:
            raise ValueError(
                f"calibration={self.calibration} of {n} rows leaves {n_held} rows to "
                f"calibrate on and {n - n_held} to fit on; at least 1 and 2 are needed."
            )
        order = random_state.permutation(n)
        return np.sort(order[n_held:]), np.sort(order[:n_held])

    def _fit_density(self, estimator, X):
        """Fit a clone; with ``robust``, refit on the rows it finds likely (trimmed likelihood).

        Each round drops the ``contamination`` fraction of training rows with the
        lowest log-density under the current fit and refits the clone on the rest,
        until the kept rows stop changing or ``robust`` rounds have run
        (``True`` means 2).
        """
        if estimator is None:
            estimator = default_outlier_estimator(mixed=getattr(self, "_table", False), n_features=X.shape[1])
        model = clone_with_verbose(estimator, self.verbose).fit(X)
        rounds = 2 if self.robust is True else int(self.robust)
        n_trim = int(np.floor(self.contamination * X.shape[0]))
        if rounds == 0 or n_trim == 0 or X.shape[0] - n_trim < 2:
            return model
        kept = None
        for _ in range(rounds):
            scores = log_density(model, X)
            self._check_scores(scores, "the training data")
            keep = np.sort(np.argsort(scores, kind="stable")[n_trim:])
            if kept is not None and np.array_equal(keep, kept):
                break
            kept = keep
            model = clone_with_verbose(estimator, self.verbose).fit(_rows(X, keep))
        return model

    def _scores(self, X) -> np.ndarray:
        if "estimators_" not in self.__dict__:
            return log_density(self.estimator_, X)
        total = np.zeros(X.shape[0])
        for columns, model, (median, spread) in zip(self.subspaces_, self.estimators_, self.member_scales_):
            member = log_density(model, _columns(X, columns))
            total += (member - median) / spread
        return total / len(self.estimators_)


class GenerativeOutlierDetector(
    DensityFitsMixin, OutlierThresholdMixin, MetaEstimatorMixin, OutlierMixin, BaseEstimator
):
    """Outlier detector from any density estimator: low log-density means outlier.

    Parameters
    ----------
    estimator : estimator with ``fit`` and ``score_samples``, default=None
        The density model, cloned at fit. ``None`` uses a per-column power
        transform (Yeo-Johnson) followed by probabilistic PCA with 2 components,
        scored with the transform's log-Jacobian (:func:`default_outlier_estimator`
        says why); on a DataFrame with discrete columns the transform acts on its
        numeric columns only and a regularised two-component Gaussian mixture
        models them all. A pipeline
        step with a ``log_abs_det_jacobian`` method has it added to the score.
        Any skgenerative estimator,
        scikit-learn's ``GaussianMixture`` or ``KernelDensity``, or a ``Pipeline``
        ending in one of them, works.
    contamination : float in (0, 0.5], default=0.1
        Expected fraction of outliers in the training data: ``offset_`` is this
        quantile of the training log-densities. With ``calibration``, the
        false-alarm rate asked for on new normal rows instead.
    calibration : float in (0, 1) or None, default=None
        Fraction of the training rows held out (drawn with ``random_state``) to
        calibrate the threshold: the model is fitted on the others, and the
        held-out scores give conformal p-values (:meth:`p_values`) and an
        ``offset_`` that flags a new normal row with probability at most
        ``contamination`` (split conformal prediction). ``None`` fits on every row
        and thresholds at the training quantile, which a model that fits its
        training rows closely places too high (more false alarms than asked).
    robust : bool or int, default=False
        Trimmed-likelihood refits: fit, drop the ``contamination`` fraction of
        training rows with the lowest log-density, refit on the rest; ``True``
        means 2 rounds, an integer that many (stops early when the kept rows no
        longer change). Resists anomalies in the training data at the cost of a
        refit per round; on ADBench it helps some tables and hurts others (user
        guide, "Anomaly detection"), so it is off by default.
    feature_bagging : int or None, default=None
        Fit that many copies of ``estimator`` on random halves of the columns
        (feature bagging, Lazarevic & Kumar 2005) and score by the mean of their
        log-densities, each standardised by its training median and interquartile
        range. Not a log-density, so ``explain`` is not available. It was the
        opt-in way to IsolationForest's mean on ADBench before the current default
        (user guide, "Anomaly detection").
    random_state : int, RandomState instance or None, default=None
        Seed of the calibration split and of the feature subsets.
    verbose : int, default=0
        Passed down to the density model (its ``verbose``, or its pipeline steps'):
        ``1`` shows a progress bar of its epochs or EM iterations and a summary line,
        ``2`` a line per step. ``0`` leaves the model's own setting.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone of ``estimator`` (or of the default pipeline).
    default_choice_ : dict
        Only for the default estimator: what it chose from the data, the density
        model (``"density"``), each numeric column's Yeo-Johnson exponent
        (``"yeo_johnson_lambdas"``) and the columns with an atom, left linear
        (``"columns_with_an_atom"``). ``verbose=1`` prints it as a line.
    offset_ : float
        Training log-densities below it are outliers;
        ``decision_function = score_samples - offset_``.
    calibration_scores_ : ndarray of shape (n_calibration,)
        Sorted log-densities of the held-out rows (only with ``calibration``).
    estimators_, subspaces_, member_scales_ : lists and ndarray
        With ``feature_bagging``: the fitted members, their columns, and the
        (median, interquartile range) of their training scores. ``estimator_`` is
        then not set.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    sklearn.ensemble.IsolationForest, sklearn.neighbors.LocalOutlierFactor

    Notes
    -----
    The default estimator is :func:`default_outlier_estimator` (its docstring says
    what it models and why); what it chose from the data is in ``default_choice_``
    and, with ``verbose=1``, in a summary line. Pass any ``estimator`` to change it.

    A DataFrame with categorical (``category``, ``object``, string), ordinal
    (ordered ``category``) or ``bool`` columns is handed to the estimator as it is,
    and its column schema encodes it; ``score_samples`` is then the log-density of
    a row's numbers plus the log-probability of its levels. The default's
    :class:`NumericColumnScaler` then transforms the numeric columns in place and
    keeps the others with their dtypes, and the mixture fits per-component level
    probabilities: a combination of levels no component produces, or a level not
    seen in fit (probability ``1 / (n + K + 1)``, with a warning), scores low.
    The default marginalises missing cells (NaN, ``None``, ``pd.NA``) in numbers and
    levels alike; an ``estimator`` that does not accept them gets them refused.
    A dask array or DataFrame is fitted where its blocks are (the default's
    transform from passes over the blocks: moments, atoms, the exponents'
    likelihoods on two grids), methods of rows return lazy dask collections, and
    ``calibration``, ``robust`` and ``feature_bagging`` are refused on it.

    ``explain(X)`` gives, per row and column, ``log p(x_j | x_-j)`` (lower = more
    surprising): the density model's value on the transformed row plus the cell's
    log-Jacobian, exact because the transform acts on each column alone. It is in
    standard deviations of each column (``x_j`` measured from its mean in units of
    its standard deviation), so columns in different units rank fairly; in the
    units of ``X`` each value would shift by ``-log std_j``. ``calibration`` makes the
    false-alarm rate on new normal data the one asked for; ``robust`` refits without
    the least likely rows. Measured on ADBench (``benchmarks/results/adbench.md``)
    and explained in the user guide, "Anomaly detection".

    Examples
    --------
    >>> import numpy as np
    >>> from skgenerative import GenerativeOutlierDetector
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(200, 3)), [[8.0, 8.0, 8.0]]])
    >>> detector = GenerativeOutlierDetector(contamination=0.01).fit(X)
    >>> detector.predict([[0.0, 0.0, 0.0], [8.0, 8.0, 8.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "score_samples"]), None],
        "contamination": [Interval(Real, 0.0, 0.5, closed="right")],
        "calibration": [Interval(Real, 0.0, 1.0, closed="neither"), None],
        "robust": ["boolean", Interval(Integral, 0, None, closed="left")],
        "feature_bagging": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, estimator=None, *, contamination=0.1, calibration=None, robust=False,
                 feature_bagging=None, random_state=None, verbose=0):
        self.estimator = estimator
        self.verbose = verbose
        self.contamination = contamination
        self.calibration = calibration
        self.robust = robust
        self.feature_bagging = feature_bagging
        self.random_state = random_state

    def _fit_on_blocks(self, method, X, arguments):
        """The estimator fits the blocks; ``offset_`` is the exact quantile of the lazy scores."""
        needs_memory = [name for name in ("calibration", "feature_bagging", "robust") if getattr(self, name)]
        for name in ("estimator_", "estimators_", "subspaces_", "member_scales_", "calibration_scores_"):
            self.__dict__.pop(name, None)
        self.__dict__.pop("default_choice_", None)
        fit_wrapped_on_blocks(self, X, self.estimator,
                              lambda mixed: default_outlier_estimator(mixed, self.n_features_in_), needs_memory)
        self._describe_default()
        self._set_offset_on_blocks(X)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    @on_blocks(_fit_on_blocks)
    def fit(self, X, y=None):
        """Fit the density model and set the threshold ``offset_``.

        Parameters
        ----------
        X : array-like or dask collection of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        X = to_numpy_input(X)
        # a DataFrame with discrete columns goes to the estimator as it is: its column
        # schema encodes it (and names a column it cannot model)
        self._table = is_dataframe(X) and not _all_numeric(X)
        X = self._check_input(X, reset=True)
        if not self._table:
            check_magnitude(X, np.float64, getattr(self, "feature_names_in_", None))
        estimator = self.estimator  # None: the default, built for the columns it is fitted on
        random_state = check_random_state(self.random_state)
        for name in ("estimator_", "estimators_", "subspaces_", "member_scales_", "calibration_scores_",
                     "default_choice_"):
            self.__dict__.pop(name, None)  # a refit in another mode leaves nothing stale
        if self.calibration is None:
            self._fit_models(estimator, X, random_state)
            self._describe_default()
            self._set_offset(self._scores(X))
            return self
        train, held_out = self._calibration_split(X.shape[0], random_state)
        self._fit_models(estimator, _rows(X, train), random_state)
        self._describe_default()
        scores = self._scores(_rows(X, held_out))
        self._check_scores(scores, "the calibration rows")
        self.calibration_scores_ = np.sort(scores)
        rank = int(np.floor(self.contamination * (scores.size + 1) + 1e-9))
        if rank < 1:
            warnings.warn(
                f"calibration={self.calibration} holds out {scores.size} rows: too few for a "
                f"false-alarm rate of contamination={self.contamination} (conformal p-values "
                f"are multiples of 1 / {scores.size + 1}), so no row will be flagged. Hold "
                "out more rows or raise contamination.",
                UserWarning,
                stacklevel=2,
            )
            self.offset_ = -np.inf
        else:
            self.offset_ = float(self.calibration_scores_[rank - 1])
        return self

    def _allow_nan(self) -> bool:
        estimator = self.estimator
        if estimator is None:  # the default mixture marginalises missing cells
            return True
        try:
            return bool(estimator.__sklearn_tags__().input_tags.allow_nan)
        except AttributeError:  # pragma: no cover - very old estimators
            return False

    def _validate(self, X):
        check_is_fitted(self)
        return self._check_input(to_numpy_input(X), reset=False)

    def _check_input(self, X, reset: bool):
        """Numbers: a float array, as scikit-learn validates it. A table (a DataFrame
        with discrete columns at fit): the frame itself, its names and width checked,
        missing cells refused unless the estimator accepts NaN (as for numbers)."""
        if not getattr(self, "_table", False):
            return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                                 ensure_all_finite=self._allow_nan() and "allow-nan" or True)
        if not is_dataframe(X):
            raise TypeError(
                "This detector was fitted on a DataFrame with non-numeric columns "
                f"({', '.join(map(str, self.feature_names_in_))}); pass such a DataFrame, "
                f"not {type(X).__name__}."
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        if X.shape[0] < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
        if not self._allow_nan():
            missing = X.columns[X.isna().to_numpy().any(axis=0)]
            if len(missing):
                raise ValueError(
                    f"Input contains missing values (NaN, None or pd.NA) in column(s) "
                    f"{', '.join(map(repr, missing))}; the "
                    f"{'default estimator' if self.estimator is None else 'estimator'} does "
                    "not accept them. Pass one that marginalises missing cells, e.g. "
                    "GenerativeOutlierDetector(GaussianMixtureDensity(...))."
                )
        return X

    @lazy_rows
    def score_samples(self, X):
        """Log-density of each sample under the fitted model (higher = more normal).

        With ``feature_bagging``, the mean over the members of their log-densities
        standardised by their training median and interquartile range (not a
        log-density).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return self._scores(self._validate(X))

    def p_values(self, X):
        """Conformal p-values: how often a normal row scores as low as each row.

        ``p(x) = (1 + #{calibration scores <= s(x)}) / (n_cal + 1)`` with ``s`` the
        log-density and the calibration scores those of the rows held out at fit
        (``calibration``). When the held-out rows and a new normal row are
        exchangeable, ``P(p(x) <= a) <= a`` for every level ``a``, and
        ``predict`` flags exactly the rows with ``p(x) <= contamination``.
        Small is suspicious. Needs ``calibration`` (a fraction) at fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        p : ndarray of shape (n_samples,)
            In ``[1 / (n_cal + 1), 1]``.
        """
        check_is_fitted(self)
        if not hasattr(self, "calibration_scores_"):
            raise AttributeError(
                "p_values needs rows held out at fit: set calibration (e.g. "
                "GenerativeOutlierDetector(calibration=0.2)) and fit again."
            )
        scores = self.score_samples(X)
        below = np.searchsorted(self.calibration_scores_, scores, side="right")
        return (1.0 + below) / (self.calibration_scores_.size + 1.0)

    @available_if(_can_explain)
    @lazy_rows
    def explain(self, X):
        """Per row and column, ``log p(x_j | x_-j)`` under the density model (lower = more surprising).

        The wrapped model's :meth:`~skgenerative.base.GenerativeModel.explain`. When
        it is a pipeline, the rows go through its transformers first; a transformer
        with a ``log_abs_det_jacobian`` (the default's :class:`NumericColumnScaler`)
        adds each cell's log-derivative from the column in standard deviations,
        ``log |dz_j / du_j|`` with ``u_j = (x_j - mean_j) / std_j``, so that the
        value is ``log p(u_j | u_-j)`` for the default: exact (the transform acts on
        each column alone), and independent of the unit the column was measured in,
        so columns can be ranked against each other. (In the units of ``X`` each
        value would shift by ``-log std_j``.) Other transformers' values are in the
        units the density model sees. The transformers must keep the columns
        (scalers do); ``PCA`` does not.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        log_conditional : ndarray or DataFrame of shape (n_samples, n_features)
            A DataFrame with the input's index and column names when ``X`` is one.
        """
        frame = X if is_dataframe(X) else None
        X = self._validate(X)
        model = self.estimator_
        jacobian = 0.0
        if isinstance(model, Pipeline):
            Xt = X
            for _, step in model.steps[:-1]:
                if step is None or step == "passthrough":
                    continue
                if hasattr(step, "log_abs_det_jacobian"):
                    cells = step.log_abs_det_jacobian(Xt, standardised=True)
                    if cells.shape[1] != X.shape[1]:
                        raise ValueError("explain needs the pipeline's transformers to keep the columns.")
                    jacobian = jacobian + cells
                Xt = step.transform(Xt)
            if Xt.shape[1] != X.shape[1]:
                raise ValueError(
                    f"explain needs the pipeline's transformers to keep the columns; they turn "
                    f"{X.shape[1]} columns into {Xt.shape[1]}, which cannot be mapped back."
                )
            model, X = _density_step(model), Xt
        out = model.explain(X)
        if frame is not None and is_dataframe(out) and set(out.columns) == set(frame.columns):
            out = out[list(frame.columns)]  # a transformer that reorders columns, mapped back
        out = np.asarray(out, dtype=np.float64) + jacobian
        if frame is None:
            return out
        import pandas as pd

        return pd.DataFrame(out, index=frame.index, columns=frame.columns)

    def predict(self, X):
        """-1 for outliers, +1 for inliers (the same as :meth:`predict_outlier`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.predict_outlier(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allow_nan()
        return tags
