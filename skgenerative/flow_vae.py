"""Variational autoencoder whose approximate posterior is refined by a normalizing flow.

Model: the :class:`~skgenerative.VariationalAutoencoder`'s prior and decoder. The
approximate posterior is the encoder's Gaussian pushed through ``K = n_flows``
invertible maps whose parameters depend on the encoder's last hidden layer ``h(x)``
(Rezende & Mohamed 2015; Kingma et al. 2016)::

    z_0 = mu(x) + sigma(x) * eps,  eps ~ N(0, I)
    z_K = f_K o ... o f_1(z_0; h(x))
    log q_K(z_K | x) = log q_0(z_0 | x) - sum_k log|det df_k / dz_{k-1}|

Training maximises the ELBO with one reparameterised draw,
``E_q0[log p(x | z_K) + log p(z_K) - log q_0(z_0 | x) + sum_k ladj_k]``;
``score_samples`` is the importance-weighted bound of Burda et al. (2016) with
``q_K`` as the proposal. Both come from the VAE, through the one hook
:meth:`FlowVAE._posterior_sample`; the flows themselves live in :mod:`.flows`.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._torch import keyed_normal, row_keys
from .flows import FLOW_KINDS, _hidden_widths, make_flow
from .vae import Encoded, VariationalAutoencoder

__all__ = ["FlowVAE", "flowed_posterior_sample"]


# --------------------------------------------------------------------- mathematics
def flowed_posterior_sample(
    flow: nn.Module, z0: torch.Tensor, log_q0: torch.Tensor, context: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Push base draws through ``flow``: ``(z_K, log q_K(z_K))``.

    ``log q_K(z_K) = log q_0(z_0) - sum_k log|det J_k|`` (change of variables).

    Parameters
    ----------
    flow : nn.Module
        ``flow(z0, context) -> (z_K, sum_ladj)``, e.g. a :class:`~.flows.FlowChain`.
    z0 : tensor of shape (n, S, q)
        Draws from the base posterior ``q_0``.
    log_q0 : tensor of shape (n, S)
        Their log-densities under ``q_0``.
    context : tensor of shape (n, h)
        Per-example conditioning of the flow (broadcast over ``S``).

    Returns
    -------
    z : tensor of shape (n, S, q)
    log_q : tensor of shape (n, S)
    """
    z, ladj = flow(z0, context)
    return z, log_q0 - ladj


class FlowVAE(VariationalAutoencoder):
    """Variational autoencoder with a normalizing-flow posterior (planar, radial, IAF).

    The decoder and prior are those of :class:`VariationalAutoencoder`; the
    approximate posterior is the encoder's diagonal Gaussian ``q_0(z_0 | x)``
    transformed by ``n_flows`` invertible maps ``z_K = f_K o ... o f_1(z_0)`` whose
    parameters are computed from the encoder's last hidden layer (amortised). The
    flowed posterior can be skewed, curved or correlated, which tightens the
    evidence lower bound and so trains a better decoder. ``score_samples``
    estimates ``log p(x)`` by importance sampling with the flowed posterior as the
    proposal.

    Parameters
    ----------
    n_components : int, default=8
        Latent dimension ``q``.
    flow : {"iaf", "planar", "radial"}, default="iaf"
        The transforms of the posterior, all amortised over the encoder's last
        hidden layer. ``"iaf"``: inverse autoregressive flow steps (a masked MLP
        per step gives a shift and a gate for every coordinate, each depending on
        the coordinates before it; orderings alternate between steps).
        ``"planar"``: ``z + u tanh(w . z + b)``, a rank-one change per step.
        ``"radial"``: contractions and expansions around a point.
    n_flows : int, default=4
        Number of flow steps ``K``; 0 gives exactly a
        :class:`VariationalAutoencoder`.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        ``"gaussian"``: a learned, floored variance per feature on internally
        standardised data; ``"bernoulli"``: independent Bernoulli features in
        [0, 1] (see :class:`VariationalAutoencoder`).
    decoder_variance : {"conditional", "shared"}, default="conditional"
        Gaussian likelihood only: whether the decoder outputs each feature's
        variance or one variance per feature is shared by every ``z``.
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Widths of the encoder's hidden layers (the last one is the flows'
        context); the decoder uses them reversed.
    activation : {"tanh", "relu", "elu", "gelu", "silu", "softplus", \
"leaky_relu", "identity"}, default="elu"
        Hidden-layer nonlinearity of the encoder and decoder.
    learning_rate : float, default=3e-3
        Adam's step size.
    batch_size : int or "auto", default="auto"
        Rows per gradient step; ``"auto"`` is a sixteenth of the training rows,
        clipped to [32, 256].
    max_iter : int, default=500
        Maximum number of epochs (passes over the training data).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their loss (the
        negative ELBO) has not improved for ``n_iter_no_change`` epochs and restore
        the best weights.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default=20
        Patience of early stopping, in epochs.
    kl_warmup_epochs : int, default=10
        The weight of ``log p(z) - log q(z | x)`` rises linearly to 1 over this many
        epochs; 0 disables the warm-up.
    n_importance_samples : int, default=50
        Samples ``S`` of the importance-weighted bound in ``score_samples``, and of
        the estimate of the posterior mean in ``transform``; read at evaluation
        time, so it can be raised after fitting.
    n_training_samples : int or "auto", default="auto"
        Importance samples ``K`` per row in the training objective, the bound
        ``L_K`` with the flowed posterior as the proposal (1 is the ELBO).
        ``"auto"``: 20 when the training data have missing values (MIWAE), 1
        otherwise.
    n_imputation_samples : int, default=1000
        Importance samples per incomplete row in ``impute`` (self-normalised
        estimate of ``E[x_missing | x_observed]`` and sampling importance
        resampling for draws), with the flowed posterior as the proposal.
    column_types : dict, list, tuple or None, default=None
        Types of a DataFrame's columns where the dtypes do not say them
        (``{"items": "count", "income": "positive"}``, or one per column; see
        :mod:`skgenerative._schema`). Every type is modelled, each by its own head
        (``real``: Gaussian, ``positive``: log-normal, ``count``: Poisson,
        ``binary``: Bernoulli, ``categorical``: softmax, ``ordinal``: ordered
        logit; see Notes). A numeric array is all real.
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
    dtype : {"auto", "float32", "float64"}, default="auto"
        ``"auto"``: fit in float32 and evaluate (``score_samples``, ``transform``,
        ``impute``, ``sample``) in float64, so that training costs float32 and
        scores stay exact and batch-invariant. ``"float32"`` or ``"float64"``: that
        precision for both.
    random_state : int, RandomState instance or None, default=None
        Seed of the initial weights (flows included), the validation split, the
        training noise and the evaluation noise.
    verbose : int, default=0
        1: a progress bar of the epochs where a terminal or notebook shows it, then
        one summary line (best epoch, why training stopped); 2: also a line per epoch.

    Attributes
    ----------
    module_ : VAEModule
        The trained encoder, decoder and likelihood head; ``module_.flow`` is the
        posterior's :class:`~skgenerative.flows.FlowChain`.
    mean_, scale_ : ndarray of shape (n_features,)
        The internal standardisation ``(x - mean_) / scale_``.
    noise_seed_ : int
        Seed of the keyed noise of ``score_samples`` and ``transform``.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``validation_loss`` (mean negative
        ELBO per held-out row), ``kl_weight`` and ``duration`` (seconds).
    n_iter_ : int
        Epochs trained, over ``fit`` and ``partial_fit`` calls.
    best_epoch_ : int or None
        Epoch (0-based) whose weights were kept by early stopping.
    best_validation_loss_ : float or None
        Its validation loss.
    offset_ : float
        The ``contamination`` quantile of the training log-densities.
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    VariationalAutoencoder : the same model with the diagonal Gaussian posterior
        (``n_flows=0``).
    skgenerative.flows.FlowChain : the transforms, usable on their own.
    PPCADensity : the linear-Gaussian special case, with an exact density.

    Notes
    -----
    Training maximises

    ``ELBO(x) = E_q0[log p(x | z_K) + log p(z_K) - log q_0(z_0 | x) + sum_k log|det J_k|]``

    with one reparameterised draw per row, where ``log q_K(z_K | x) = log q_0(z_0 |
    x) - sum_k log|det J_k|``. The flowed family contains the Gaussian one (planar
    and radial steps can be the identity, IAF steps approach it as their gates
    open), so the best bound over it is at least the VAE's.

    ``score_samples`` is the importance-weighted lower bound of Burda et al.
    (2016), ``log (1/S) sum_s p(x, z_K^s) / q_K(z_K^s | x)`` with ``S =
    n_importance_samples``. It is a bound, not the exact log-density: it never
    exceeds ``log p(x)`` on average and tightens as ``S`` grows (``S = 1`` is the
    ELBO). The noise of each row is a function of its values and ``noise_seed_``
    alone, so a row gets the same score in any batch.

    ``transform`` returns the mean of the flowed posterior, ``E_qK[z_K | x]``,
    estimated from ``n_importance_samples`` keyed draws (rounded up to an even
    number) taken in antithetic pairs ``(eps, -eps)``: deterministic per row like
    the score, and exact when the flow is affine. With ``n_flows=0`` it is the
    encoder mean ``mu(x)``, as for the VAE.
    ``inverse_transform`` decodes, ``sample`` draws from the prior and the decoder,
    as for the VAE: the flow only changes the posterior.

    Default flow: IAF, four steps. IAF's shift and gate for every coordinate come
    from a masked MLP, so one step can reshape all latent dimensions at once,
    whereas a planar or radial step changes the density along one direction or
    around one point; on binarised MNIST (``benchmarks/bench_flow_vae.py``) four
    IAF steps tighten the bound more than many planar steps, for a few percent of
    the decoder's cost. Planar flows invert only numerically and radial ones are
    weak in many dimensions; both are here chiefly for comparison with Rezende &
    Mohamed.

    References
    ----------
    Rezende, D. J. & Mohamed, S. (2015). Variational inference with normalizing
    flows. ICML.
    Kingma, D. P., Salimans, T., Jozefowicz, R., Chen, X., Sutskever, I. &
    Welling, M. (2016). Improved variational inference with inverse
    autoregressive flow. NeurIPS.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted
    autoencoders. ICLR.
    Kingma, D. P. & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.

    Examples
    --------
    >>> import numpy as np
    >>> from skgenerative import FlowVAE
    >>> rng = np.random.RandomState(0)
    >>> t = rng.uniform(-3, 3, size=(300, 1))
    >>> X = np.hstack([t, np.sin(t), np.cos(t)]) + 0.05 * rng.normal(size=(300, 3))
    >>> model = FlowVAE(n_components=2, flow="iaf", n_flows=2, hidden_layer_sizes=(32, 32),
    ...                 max_iter=40, random_state=0).fit(X)
    >>> model.transform(X[:2]).shape
    (2, 2)
    >>> elbo = model.set_params(n_importance_samples=1).score(X)
    >>> bound = model.set_params(n_importance_samples=100).score(X)
    >>> bool(bound > elbo)  # more samples, a tighter bound
    True
    >>> model.sample(2, random_state=0).shape
    (2, 3)
    """

    _parameter_constraints: dict = {
        **VariationalAutoencoder._parameter_constraints,
        "flow": [StrOptions(set(FLOW_KINDS))],
        "n_flows": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=8,
        *,
        flow="iaf",
        n_flows=4,
        likelihood="gaussian",
        decoder_variance="conditional",
        hidden_layer_sizes=(128, 128),
        activation="elu",
        learning_rate=3e-3,
        batch_size="auto",
        max_iter=500,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        kl_warmup_epochs=10,
        n_importance_samples=50,
        n_training_samples="auto",
        n_imputation_samples=1000,
        column_types=None,
        contamination=0.1,
        device="auto",
        dtype="auto",
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            n_components,
            likelihood=likelihood,
            decoder_variance=decoder_variance,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_iter=max_iter,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            kl_warmup_epochs=kl_warmup_epochs,
            n_importance_samples=n_importance_samples,
            n_training_samples=n_training_samples,
            n_imputation_samples=n_imputation_samples,
            column_types=column_types,
            contamination=contamination,
            device=device,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
        )
        self.flow = flow
        self.n_flows = n_flows

    # ------------------------------------------------------------ the model
    def _build_module(self, n_features: int, generator: torch.Generator) -> nn.Module:
        module = super()._build_module(n_features, generator)
        # the flows initialise from torch's global generator: seed a private copy
        # of it from the training generator, leaving the user's global state alone
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module.flow = make_flow(
                self.flow, int(self.n_flows), int(self.n_components), module.context_dim
            )
        return module

    def _posterior_sample(
        self, module: nn.Module, encoded: Encoded, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_K`` and ``log q_K(z_K | x) = log q_0(z_0 | x) - sum_k ladj_k``."""
        z0, log_q0 = super()._posterior_sample(module, encoded, eps)
        return flowed_posterior_sample(module.flow, z0, log_q0, encoded.context)

    # ------------------------------------------------------------ evaluation
    def _n_transform_pairs(self) -> int:
        return max(1, math.ceil(int(self.n_importance_samples) / 2))

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        # E[z_K | x] from keyed antithetic pairs (eps, -eps): the same row, the
        # same estimate; unbiased, and exact for an affine flow
        module = self.module_
        encoded = self._posterior_parameters(X)  # missing entries handled as in training
        if int(self.n_flows) == 0:  # no steps: the posterior mean is mu(x) exactly
            return encoded.mean
        half = keyed_normal(
            row_keys(X, self.noise_seed_), (self._n_transform_pairs(), int(self.n_components)),
            X.dtype, stream=1,
        )
        eps = torch.cat([half, -half], dim=1)
        z, _ = self._posterior_sample(module, encoded, eps)
        return z.mean(dim=1)

    def _row_bytes(self, n_features: int) -> int:
        base = super()._row_bytes(n_features)
        n_flows = int(self.n_flows)
        if n_flows == 0:
            return base
        itemsize = self._itemsize
        q = int(self.n_components)
        samples = max(int(self.n_importance_samples), 2 * self._n_transform_pairs())
        # per step and sample: the new z, its ladj and the step's temporaries
        # (IAF: the MADE's hidden layers and its shift and gate outputs)
        per_step = 6 * q + 2
        if self.flow == "iaf":
            per_step += sum(_hidden_widths(q, None)) + 2 * q
        context = sum(self._hidden_layer_sizes()[-1:]) or n_features
        amortised = n_flows * (2 * q + 2 + context)
        return base + itemsize * (samples * n_flows * per_step + amortised)
