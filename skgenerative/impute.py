"""GenerativeImputer: fill missing values from a density model's conditional distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, TransformerMixin, _fit_context
from sklearn.impute import MissingIndicator
from sklearn.utils._param_validation import HasMethods
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from ._schema import TableSchema, is_dataframe
from ._torch import seed_from, to_numpy_input
from .base import (
    _all_numeric,
    _input_float_dtype,
    check_magnitude,
    check_no_empty_column,
    clone_with_verbose,
    fit_wrapped_on_blocks,
    lazy_rows,
    on_blocks,
)

__all__ = ["GenerativeImputer"]


def default_imputation_estimator(mixed: bool = False):
    """The estimator ``GenerativeImputer`` uses when none is given (see its Notes).

    ``mixed``: the table has discrete (non-numeric) columns.
    """
    from .mixture import GaussianMixtureDensity

    if mixed:
        return GaussianMixtureDensity(
            n_components=MIXED_DEFAULT_COMPONENTS, covariance_prior=2.0, tol=1e-2, random_state=0
        )
    return GaussianMixtureDensity(n_components=2, covariance_prior=2.0, n_init=2, random_state=0)


#: components of the default model on tables with discrete columns (see the Notes)
MIXED_DEFAULT_COMPONENTS = 16


class GenerativeImputer(MetaEstimatorMixin, TransformerMixin, BaseEstimator):
    """Impute missing values from a generative model fitted on the incomplete data.

    The model learns from the incomplete rows themselves (EM with missing values for
    mixtures and PPCA, MIWAE for the variational autoencoders) and fills each gap
    with the conditional expectation ``E[x_missing | x_observed]``, or with a draw
    from ``p(x_missing | x_observed)`` when ``sample_posterior=True``.

    Parameters
    ----------
    estimator : estimator with ``fit`` and ``impute``, default=None
        The density model, cloned at fit. ``None`` uses a regularised Gaussian
        mixture (see Notes), the mixed one on tables with discrete columns. Any
        skgenerative estimator that accepts NaN (and the table's column types) works.
    sample_posterior : bool, default=False
        Draw each missing entry from the model's conditional distribution instead of
        using its conditional mean (for multiple imputation: call ``transform``
        with different ``random_state`` values).
    add_indicator : bool, default=False
        Append ``MissingIndicator`` columns (features with missing values at fit).
    random_state : int, RandomState instance or None, default=None
        Seed of the draws when ``sample_posterior=True``; a fixed seed gives the same
        draws at every ``transform`` call.
    verbose : int, default=0
        Passed down to the density model (its ``verbose``, or its pipeline steps'):
        ``1`` shows a progress bar of its EM iterations or epochs and a summary line,
        ``2`` a line per step. ``0`` leaves the model's own setting.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone of ``estimator``.
    indicator_ : sklearn.impute.MissingIndicator or None
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    sklearn.impute.IterativeImputer, sklearn.impute.KNNImputer

    Notes
    -----
    The default estimator is a two-component Gaussian mixture with full covariances,
    a conjugate prior worth 2 pseudo-observations and the better of two k-means
    starts (``GaussianMixtureDensity(2, covariance_prior=2, n_init=2)``). With one
    component it would be the classical multivariate-normal EM imputer; the second
    captures clusters and some non-linear structure, and the prior keeps small tables
    from collapsing a component (without it, more components impute worse). It was
    chosen on ``benchmarks/bench_impute.py`` with one setting for all datasets.

    On a DataFrame with discrete (non-numeric) columns the default is the mixed
    mixture (Gaussians over the numbers times level probabilities, see
    :class:`~skgenerative.GaussianMixtureDensity`) with 16 components, the same prior,
    one k-means start and ``tol=1e-2``:
    ``GaussianMixtureDensity(16, covariance_prior=2, tol=1e-2)``. Levels depend on
    each other only through the components, so a mixed table needs more of them than
    a numeric one; 16 full-covariance components imputed Adult's categorical cells
    best among the settings tried on ``benchmarks/bench_mixed.py`` (2 to 48
    components, full and diagonal covariances) at a few seconds per fit on 3000 rows,
    and the looser ``tol`` changed the imputations little while halving the EM
    iterations. ``VariationalAutoencoder`` (per-type likelihood heads) imputed both
    tables better still but took about 20 times as long per fit, so it is not the
    default. Such a table comes back as the user's DataFrame (names, order,
    dtypes, categories, index); so does any DataFrame under
    ``set_output(transform="pandas")``.

    Observed entries are returned unchanged, bit for bit. A row with every entry
    missing is imputed from the model's marginal; a column with every entry missing
    at fit raises an error naming it.

    Examples
    --------
    >>> import numpy as np
    >>> from skgenerative import GenerativeImputer
    >>> rng = np.random.RandomState(0)
    >>> z = rng.normal(size=(300, 1))
    >>> X = np.hstack([z, 2 * z + 0.1 * rng.normal(size=(300, 1))])
    >>> X_missing = X.copy()
    >>> X_missing[:5, 1] = np.nan
    >>> imputer = GenerativeImputer().fit(X_missing)
    >>> np.abs(imputer.transform(X_missing)[:5, 1] - X[:5, 1]).max() < 0.3
    np.True_
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "impute"]), None],
        "sample_posterior": ["boolean"],
        "add_indicator": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, estimator=None, *, sample_posterior=False, add_indicator=False, random_state=None,
                 verbose=0):
        self.estimator = estimator
        self.sample_posterior = sample_posterior
        self.add_indicator = add_indicator
        self.random_state = random_state
        self.verbose = verbose

    def _fit_on_blocks(self, method, X, arguments):
        """The estimator fits the blocks of a dask collection (see ``fit``)."""
        needs_memory = ["add_indicator"] if self.add_indicator else []
        fit_wrapped_on_blocks(self, X, self.estimator, default_imputation_estimator, needs_memory)
        meta = getattr(X, "_meta", None)
        self._schema = TableSchema.infer(meta) if is_dataframe(meta) and not self._table else None
        self.indicator_ = None
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    @on_blocks(_fit_on_blocks)
    def fit(self, X, y=None):
        """Fit the density model on the incomplete data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with NaN where entries are missing; a dask array or DataFrame is
            fitted where its blocks are (the estimator must be an skgenerative model,
            as the defaults are), and ``transform`` of one is lazy.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        X = to_numpy_input(X)
        self._table = is_dataframe(X) and not _all_numeric(X)
        # a numeric frame: its dtypes, for set_output(transform="pandas")
        self._schema = TableSchema.infer(X) if is_dataframe(X) and not self._table else None
        if self._table:  # the estimator's column schema encodes it (and names bad columns)
            validate_data(self, X, skip_check_array=True)
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan")
            check_no_empty_column(X, getattr(self, "feature_names_in_", None))
            check_magnitude(X, np.float64, getattr(self, "feature_names_in_", None))
        estimator = (
            default_imputation_estimator(mixed=self._table) if self.estimator is None else self.estimator
        )
        self.estimator_ = clone_with_verbose(estimator, self.verbose).fit(X)
        self.indicator_ = (
            MissingIndicator(error_on_new=False).fit(self._missing(X)) if self.add_indicator else None
        )
        return self

    @staticmethod
    def _missing(X):
        """NaN where a cell is missing, 0 elsewhere (for the indicator, any column type)."""
        if is_dataframe(X):
            return np.where(X.isna().to_numpy(), np.nan, 0.0)
        return X

    @lazy_rows
    def transform(self, X):
        """Impute the missing entries of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_imputed : ndarray or DataFrame of shape (n_samples, n_features + n_indicators)
            A DataFrame with the input's columns, order, dtypes and categories (and
            index) when the imputer was fitted on a DataFrame with non-numeric
            columns, or on any DataFrame under ``set_output(transform="pandas")``;
            otherwise an array. Indicator columns are float 0 / 1.
        """
        check_is_fitted(self)
        X = to_numpy_input(X)
        frame_out = is_dataframe(X) and (getattr(self, "_table", False) or (
            getattr(self, "_schema", None) is not None
            and _get_output_config("transform", self)["dense"] == "pandas"
        ))
        if getattr(self, "_table", False):
            validate_data(self, X, reset=False, skip_check_array=True)
            data = X
        else:
            data = validate_data(self, X, reset=False, dtype=[np.float64, np.float32],
                                 ensure_all_finite="allow-nan")
            if not frame_out:
                X = data
        if self.sample_posterior:
            seed = seed_from(self.random_state)
            imputed = self.estimator_.impute(data, n_draws=1, random_state=seed)[0]
        else:
            imputed = self.estimator_.impute(data)
        if frame_out and not is_dataframe(imputed):  # a model fitted on a numeric frame's values
            imputed = self._schema.to_frame(imputed, index=X.index)
        if self.indicator_ is None:
            return imputed
        indicator = self.indicator_.transform(self._missing(X))
        if not is_dataframe(imputed):
            return np.hstack([imputed, indicator.astype(imputed.dtype)])
        names = self.indicator_.get_feature_names_out(np.asarray(imputed.columns, dtype=object))
        extra = pd.DataFrame(indicator.astype(np.float64), columns=names, index=imputed.index)
        return pd.concat([imputed, extra], axis=1)

    def _lazy_output(self, method, X, arguments) -> dict:
        """Imputed rows keep the input's float dtype (observed cells bit for bit)."""
        if self.indicator_ is None:
            return {"kind": "same", "dtype": _input_float_dtype(X)}
        return {"kind": "wide", "dtype": _input_float_dtype(X), "names": list(self.get_feature_names_out())}

    def get_feature_names_out(self, input_features=None):
        """Input feature names, then ``missingindicator_<name>`` for indicator columns."""
        check_is_fitted(self, "n_features_in_")
        names = _check_feature_names_in(self, input_features)
        if self.indicator_ is None:
            return names
        extra = self.indicator_.get_feature_names_out(names)
        return np.concatenate([names, extra])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
