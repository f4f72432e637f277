"""
Choosing the number of components by held-out log-likelihood
============================================================

``score`` is the mean log-likelihood, so ``GridSearchCV`` needs no ``scoring``
argument: it keeps the ``n_components`` whose held-out data are most likely. Here the
data have a known structure (four clusters for the mixture, a three-dimensional
subspace for PPCA) and the search finds it.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from skgenerative import GaussianMixtureDensity, PPCADensity

rng = np.random.RandomState(0)
centers = rng.uniform(-6, 6, size=(4, 5))
X_mix = np.vstack([c + rng.normal(size=(150, 5)) for c in centers])
X_low = rng.normal(size=(600, 3)) @ rng.normal(size=(3, 12)) * 2 + 0.5 * rng.normal(size=(600, 12))

searches = {
    "GaussianMixtureDensity (4 clusters)": GridSearchCV(
        GaussianMixtureDensity(random_state=0), {"n_components": range(1, 9)}, cv=5).fit(X_mix),
    "PPCADensity (3-dimensional subspace)": GridSearchCV(
        PPCADensity(), {"n_components": range(1, 10)}, cv=5).fit(X_low),
}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, (title, search) in zip(axes, searches.items()):
    grid = search.cv_results_["param_n_components"].data.astype(int)
    mean = search.cv_results_["mean_test_score"]
    std = search.cv_results_["std_test_score"]
    ax.errorbar(grid, mean, yerr=std, marker="o", capsize=3)
    ax.axvline(search.best_params_["n_components"], color="C3", ls="--", label="chosen")
    ax.set(title=title, xlabel="n_components", ylabel="held-out log-likelihood (nats)")
    ax.legend()
    print(f"{title}: chose n_components={search.best_params_['n_components']}")
fig.tight_layout()
plt.show()
