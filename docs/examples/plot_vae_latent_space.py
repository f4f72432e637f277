"""
A VAE's two-dimensional latent space
====================================

With ``n_components=2`` the encoder mean (``transform``) places every digit in the
plane; colouring by the true digit shows that the unsupervised model separates most
classes. The grid on the right decodes evenly spaced latent points
(``inverse_transform``).
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skgenerative import VariationalAutoencoder

data = load_digits()
rng = np.random.RandomState(0)
X = (data.data + rng.uniform(size=data.data.shape)) / 17.0

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    vae = VariationalAutoencoder(n_components=2, random_state=0).fit(X)
Z = vae.transform(X)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
points = left.scatter(Z[:, 0], Z[:, 1], c=data.target, cmap="tab10", s=6)
left.legend(*points.legend_elements(), title="digit", loc="best", fontsize=7)
left.set(title="encoder means of 1797 digits", xlabel="z1", ylabel="z2")

grid = np.linspace(-2, 2, 12)
canvas = np.ones((12 * 9, 12 * 9))
for i, y in enumerate(grid[::-1]):
    images = vae.inverse_transform(np.column_stack([grid, np.full(12, y)]))
    for j, image in enumerate(images):
        canvas[i * 9 : i * 9 + 8, j * 9 : j * 9 + 8] = np.clip(image, 0, 1).reshape(8, 8)
right.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
right.set(title="decoded grid over [-2, 2]^2", xticks=[], yticks=[])
fig.tight_layout()
plt.show()
