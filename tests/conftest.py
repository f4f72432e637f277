"""Shared fixtures: one quick configuration per estimator, and data it can fit.

New estimators join the contract tests by adding an entry to ESTIMATORS (a quick
configuration), to data_for (the data it expects) and, when GridSearchCV can find a
true dimension for it, to GRID_CASES.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from skgenerative import (  # noqa: E402
    BernoulliRBM,
    FlowVAE,
    GaussianMixtureDensity,
    PPCADensity,
    VariationalAutoencoder,
)

from skgenerative import _torch  # noqa: E402

CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def one_thread_count_per_test(monkeypatch):
    """Each test keeps the thread count the load gave it when it started.

    Estimators follow the machine's load (fewer torch threads while other processes
    run). Fits at different thread counts agree to the last bit for most models but
    only to rounding (1e-15) for some (FlowVAE), so a test that fits twice and
    compares exactly must not see the count change in between: it is chosen once,
    at the start of each test, from the load then.
    """
    chosen = _torch.threads_for_load(torch.get_num_threads())
    monkeypatch.setattr(_torch, "threads_for_load", lambda cap: min(cap, chosen))

# SKGENERATIVE_TEST_DEVICE=cuda runs the contract tests on the GPU
DEVICE = os.environ.get("SKGENERATIVE_TEST_DEVICE", "cpu")

ESTIMATORS = [
    GaussianMixtureDensity(n_components=2, random_state=0, device=DEVICE),
    PPCADensity(n_components=1, device=DEVICE),
    # as users construct it (binarize="auto": sklearn's checks feed values outside
    # [0, 1], which it binarises with a warning); quick: 4 hidden units (exact log Z),
    # 5 epochs
    BernoulliRBM(n_components=4, max_iter=5, random_state=0, device=DEVICE),
    VariationalAutoencoder(
        n_components=2, hidden_layer_sizes=(16,), max_iter=40, batch_size=32,
        learning_rate=1e-2, n_iter_no_change=5, kl_warmup_epochs=2,
        n_importance_samples=8, random_state=0, device=DEVICE,
    ),
    FlowVAE(
        n_components=2, flow="iaf", n_flows=2, hidden_layer_sizes=(16,), max_iter=40,
        batch_size=32, learning_rate=1e-2, n_iter_no_change=5, kl_warmup_epochs=2,
        n_importance_samples=8, random_state=0, device=DEVICE,
    ),
]


def data_for(estimator, n=120, seed=0):
    """Data an estimator can fit: a 2-cluster, low-rank Gaussian table of 5 columns.

    Bernoulli models get binary data instead: three 16-bit prototypes with 15% of
    the bits flipped (few duplicate rows, so the outlier quantile is not tied).
    """
    rng = np.random.RandomState(seed)
    if isinstance(estimator, BernoulliRBM):
        prototypes = rng.uniform(size=(3, 16)) < 0.5
        X = prototypes[rng.randint(3, size=n)]
        return np.logical_xor(X, rng.uniform(size=X.shape) < 0.15).astype(np.float64)
    Z = rng.normal(size=(n, 2))
    X = Z @ rng.normal(size=(2, 5)) + 0.3 * rng.normal(size=(n, 5))
    X[: n // 2] += 4.0
    return X


def _blobs(seed=0):
    rng = np.random.RandomState(seed)
    centers = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0]], dtype=float)
    X = np.vstack([c + rng.normal(size=(150, 3)) for c in centers])
    return X[rng.permutation(len(X))]


def _low_rank(seed=0):
    rng = np.random.RandomState(seed)
    Z = rng.normal(size=(600, 3))
    return Z @ rng.normal(size=(3, 10)) * 2 + 0.3 * rng.normal(size=(600, 10))


def _curved_plane(seed=0):
    """A 2-dimensional nonlinear manifold in 6 dimensions, with small noise."""
    rng = np.random.RandomState(seed)
    u, v = rng.uniform(-2, 2, size=(2, 600))
    X = np.stack([u, v, np.sin(u) * 2, np.cos(v) * 2, u * v, np.tanh(u + v)], axis=1)
    return X + 0.05 * rng.normal(size=X.shape)


# (estimator, data, n_components grid, predicate on the chosen value)
# BernoulliRBM has no entry: hidden units beyond the true number cost no held-out
# likelihood (they stay idle), so the cross-validated curve is flat past the truth
# and its argmax among the larger values is noise.
GRID_CASES = [
    (GaussianMixtureDensity(random_state=0, device=DEVICE), _blobs(), [1, 2, 3, 4, 5], lambda k: k == 3),
    (PPCADensity(device=DEVICE), _low_rank(), [1, 2, 3, 4, 5, 6], lambda k: k == 3),
    # a VAE's unused latent dimensions collapse onto the prior, so only "at least 2"
    (
        VariationalAutoencoder(
            hidden_layer_sizes=(32, 32), learning_rate=5e-3, max_iter=60,
            kl_warmup_epochs=5, n_importance_samples=16, random_state=0, device=DEVICE,
        ),
        _curved_plane(),
        [1, 2, 3],
        lambda k: k >= 2,
    ),
    # the same model with a flow posterior: the same rule (about 12 s)
    (
        FlowVAE(
            flow="iaf", n_flows=2, hidden_layer_sizes=(32, 32), learning_rate=5e-3,
            max_iter=60, kl_warmup_epochs=5, n_importance_samples=16, random_state=0,
            device=DEVICE,
        ),
        _curved_plane(),
        [1, 2, 3],
        lambda k: k >= 2,
    ),
]
