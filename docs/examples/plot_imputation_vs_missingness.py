"""
Imputation error as missingness grows
=====================================

Entries of the (standardised) breast cancer table are removed completely at random, at
rates from 10% to 60%. Each imputer is fitted on the incomplete table and scored by the
root mean squared error on the removed entries. :class:`skgenerative.GenerativeImputer`
learns a Gaussian mixture from the incomplete rows by EM and fills each gap with its
conditional expectation.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.preprocessing import StandardScaler

from skgenerative import GenerativeImputer, PPCADensity

X = StandardScaler().fit_transform(load_breast_cancer().data)
rates = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
imputers = {
    "SimpleImputer (mean)": lambda: SimpleImputer(),
    "KNNImputer": lambda: KNNImputer(),
    "IterativeImputer": lambda: IterativeImputer(random_state=0, max_iter=25),
    "GenerativeImputer (default)": lambda: GenerativeImputer(),
    "GenerativeImputer (PPCA)": lambda: GenerativeImputer(PPCADensity()),
}
errors = {name: [] for name in imputers}
rng = np.random.RandomState(0)
for rate in rates:
    mask = rng.rand(*X.shape) < rate
    X_missing = np.where(mask, np.nan, X)
    for name, make in imputers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            filled = make().fit_transform(X_missing)
        errors[name].append(np.sqrt(np.mean((filled - X)[mask] ** 2)))

fig, ax = plt.subplots(figsize=(6, 4))
for name, values in errors.items():
    ax.plot(np.array(rates) * 100, values, marker="o", label=name)
ax.set(xlabel="missing entries (%)", ylabel="RMSE on missing entries (std. units)",
       title="Imputation on breast cancer (30 features)")
ax.legend()
fig.tight_layout()
plt.show()
