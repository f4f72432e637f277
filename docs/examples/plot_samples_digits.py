"""
Samples from every model, side by side
======================================

Each estimator is fitted on scikit-learn's 8x8 digits and draws ten samples. The
continuous models (mixture, PPCA, the two VAEs) see pixels dequantised to [0, 1]; the
RBM sees binarised pixels. The VAE rows show decoder means (``inverse_transform`` of
prior draws), which are smoother than full samples with pixel noise.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skgenerative import BernoulliRBM, FlowVAE, GaussianMixtureDensity, PPCADensity, VariationalAutoencoder

digits = load_digits().data
rng = np.random.RandomState(0)
continuous = (digits + rng.uniform(size=digits.shape)) / 17.0
binary = (digits / 16.0 > 0.5).astype(float)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    models = {
        "Gaussian mixture (10)": GaussianMixtureDensity(10, reg_covar=1e-3, random_state=0).fit(continuous),
        "PPCA": PPCADensity().fit(continuous),
        "Bernoulli RBM (100)": BernoulliRBM(100, random_state=0).fit(binary),
        "VAE": VariationalAutoencoder(random_state=0).fit(continuous),
        "FlowVAE (IAF)": FlowVAE(flow="iaf", random_state=0).fit(continuous),
    }

fig, axes = plt.subplots(len(models), 10, figsize=(10, 1.15 * len(models)))
for row, (name, model) in zip(axes, models.items()):
    if hasattr(model, "inverse_transform") and isinstance(model, VariationalAutoencoder):
        z = np.random.RandomState(1).normal(size=(10, model.n_components))
        images = model.inverse_transform(z)
    else:
        images = model.sample(10, random_state=1)
    for ax, image in zip(row, images):
        ax.imshow(np.clip(image, 0, 1).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
fig.tight_layout()
plt.show()
