"""Variational autoencoder: the model, its bounds and the MIWAE treatment of missing values.

Model (Kingma & Welling, 2014)::

    z ~ N(0, I_q)                          prior
    x | z ~ p(x | z) = head(decoder(z))    one family per column (normal, Bernoulli, ...)
    q(z | x) = N(mu(x), diag sigma^2(x))   amortised approximate posterior

Training maximises the evidence lower bound with one reparameterised sample
``z = mu(x) + sigma(x) * eps``, ``eps ~ N(0, I)``::

    ELBO(x) = E_q[log p(x | z) + log p(z) - log q(z | x)] <= log p(x)

``score_samples`` is the importance-weighted bound of Burda et al. (2016) with
``S = n_importance_samples`` draws ``z_s`` from ``q(z | x)``::

    L_S(x) = log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s | x)

``L_1`` is the ELBO, ``E[L_S] <= E[L_2S] <= log p(x)``, and ``L_S -> log p(x)`` as
``S`` grows. Both objectives are written once, in :meth:`BaseVAE._log_weights`, on
top of :meth:`BaseVAE._posterior_sample` (draw ``z`` from ``q`` given the noise and
return ``log q``).

Missing values (MIWAE, Mattei & Frellsen 2019): with ``o`` the observed entries of
a row, every likelihood term becomes ``log p(x_o | z)`` (the column families
ignore missing cells), the encoder sees the row zero-filled after standardisation together with
its missingness indicators, and training maximises the ``K``-sample bound
``L_K(x_o)`` (``n_training_samples``). ``impute`` estimates ``E[x_m | x_o] =
sum_s w_s E[x_m | z_s]`` with the self-normalised weights ``w_s`` proportional to
``p(x_o | z_s) p(z_s) / q(z_s | x_o)``, and draws by resampling ``z_s`` with
probabilities ``w_s``. The masking lives in the families and the encoder input,
below the two hooks, so a subclass posterior inherits it.

Columns: a numeric array is a table of normal columns (Bernoulli ones with
``likelihood="bernoulli"``), a DataFrame one family per column type
(:mod:`skgenerative.distributions`); the head (:class:`~skgenerative.nn.ColumnLikelihood`)
reads each family's parameters from its slice of the decoder's output.

Training runs in the loop every minibatch model shares
(:class:`~skgenerative._training.NeuralGenerativeModel`: Adam, early stopping with
the best weights restored, history, ``partial_fit``); the VAE supplies the loss of a
batch, the KL weight of an epoch (warm-up) and its look at the data of a call
(whether they have missing values, hence the training bound). :class:`BaseVAE`
holds all of this over the network; :class:`VariationalAutoencoder` is the
estimator, its parameters and its MLP encoder and decoder (:class:`VAEModule`).

A model with another posterior (``FlowVAE``) subclasses
:class:`VariationalAutoencoder` and overrides:

``_posterior_sample(module, encoded, eps) -> (z, log_q)``
    ``eps`` of shape (n, S, q) is standard normal noise (training draws it from the
    epoch's generator, scoring from the rows' keys); return ``z`` (n, S, q) and
    ``log q(z | x)`` (n, S). Call ``super()`` for the Gaussian base draw, push it
    through the flow and subtract the log-determinants.
``_build_module(n_features, generator) -> nn.Module``
    Call ``super()`` and attach the extra parameters (e.g. ``module.flow``),
    initialised from ``generator``. ``encoded.context`` (width
    ``module.context_dim``) is the encoder's last hidden layer, for amortised flow
    parameters.
``_encode(X)`` and ``_row_bytes(n_features)``
    What ``transform`` returns, and the evaluation memory per row. An override of
    ``_encode`` gets ``q_0``'s parameters for raw rows, missing entries handled,
    from ``self._posterior_parameters(X)``.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._schema import COLUMN_TYPES
from ._torch import has_nan, keyed_normal, row_keys
from ._training import NeuralGenerativeModel
from .distributions import Bernoulli, ColumnFamilies, Poisson
from .nn import ACTIVATIONS, ColumnLikelihood, make_linear, make_mlp, standard_normal_log_prob

__all__ = [
    "NeuralGenerativeModel",
    "BaseVAE",
    "VariationalAutoencoder",
    "VAEModule",
    "Encoded",
    "gaussian_posterior_sample",
    "importance_weighted_bound",
]

_LOG_VAR_RANGE = (-20.0, 10.0)


# --------------------------------------------------------------------- mathematics
class Encoded(NamedTuple):
    """What the encoder returns for a batch of ``n`` rows.

    mean, log_var : tensors of shape (n, q)
        Parameters of the Gaussian ``q0(z | x) = N(mean, diag exp(log_var))``.
    context : tensor of shape (n, h)
        The encoder's last hidden layer (the input itself when there is none), for
        models that amortise more posterior parameters (e.g. flow parameters).

    Examples
    --------
    >>> import torch
    >>> from skgenerative.nn import ColumnLikelihood
    >>> from skgenerative.vae import VAEModule
    >>> head = ColumnLikelihood.for_columns(["real"] * 4)
    >>> module = VAEModule(head, 2, (8,), "elu", torch.Generator().manual_seed(0))
    >>> encoded = module.encode(torch.zeros(3, 4))
    >>> encoded.mean.shape, encoded.log_var.shape, encoded.context.shape
    (torch.Size([3, 2]), torch.Size([3, 2]), torch.Size([3, 8]))
    """

    mean: torch.Tensor
    log_var: torch.Tensor
    context: torch.Tensor


def gaussian_posterior_sample(
    mean: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised draws from ``N(mean, diag exp(log_var))`` and their log-density.

    ``z = mean + exp(log_var / 2) * eps`` and
    ``log q(z) = sum_j [log N(eps_j; 0, 1) - log_var_j / 2]``.

    Parameters
    ----------
    mean, log_var : tensors of shape (n, q)
    eps : tensor of shape (n, S, q)
        Standard normal noise.

    Returns
    -------
    z : tensor of shape (n, S, q)
    log_q : tensor of shape (n, S)
    """
    z = mean.unsqueeze(1) + torch.exp(0.5 * log_var).unsqueeze(1) * eps
    log_q = standard_normal_log_prob(eps) - 0.5 * log_var.sum(-1, keepdim=True)
    return z, log_q


def importance_weighted_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """``log (1/S) sum_s exp(log_weights[:, s])`` per row, computed stably."""
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1])


class VAEModule(nn.Module):
    """Encoder, decoder and likelihood head of a VAE.

    The encoder is an MLP with ``hidden_layer_sizes`` followed by two linear heads
    (posterior mean and log-variance); it reads the head's ``encoder_features`` of
    a row (numbers as they are, ``log(1 + x)`` for counts, one-hot vectors for
    levels). The decoder mirrors it (the widths reversed) and outputs the head's
    parameters, one slice per column family (:class:`~skgenerative.nn.ColumnLikelihood`).

    For rows with missing entries the encoder also sees the missingness
    indicators ``r`` (1 where missing): its first affine map becomes
    ``A x + U r + c``, with the missing entries of ``x`` set to 0. This is the same
    as feeding the concatenation ``[x, r]``, but ``U`` (``encoder_missing``) starts
    at zero, takes no random draws, and is skipped for complete rows, so complete
    data give exactly the network they gave without it (``U`` never leaves 0 when
    the training data are complete). Without hidden layers the first affine maps
    are the two heads, and ``U r`` shifts both.

    Parameters
    ----------
    likelihood : ColumnLikelihood
        The head: ``p(x | decoder output)``, one family per column.
    n_latent : int
    hidden_layer_sizes : sequence of int
    activation : str
    generator : torch.Generator
        CPU generator the initial weights are drawn from.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.nn import ColumnLikelihood
    >>> from skgenerative.vae import VAEModule
    >>> head = ColumnLikelihood.for_columns(["real"] * 5, conditional_variance=True)
    >>> module = VAEModule(head, n_latent=2, hidden_layer_sizes=(16,), activation="elu",
    ...                    generator=torch.Generator().manual_seed(0))
    >>> module.decode(torch.zeros(3, 2)).shape  # a mean and a variance per feature
    torch.Size([3, 10])
    """

    def __init__(
        self,
        likelihood: ColumnLikelihood,
        n_latent: int,
        hidden_layer_sizes,
        activation: str,
        generator: torch.Generator,
    ):
        super().__init__()
        hidden = [int(h) for h in hidden_layer_sizes]
        self.n_latent = n_latent
        n_inputs = likelihood.input_width
        self.context_dim = hidden[-1] if hidden else n_inputs
        self.encoder = make_mlp(n_inputs, hidden, None, activation, generator)
        self.encoder_mean = make_linear(self.context_dim, n_latent, generator)
        self.encoder_log_var = make_linear(self.context_dim, n_latent, generator)
        self.likelihood = likelihood
        self.decoder = make_mlp(n_latent, hidden[::-1], likelihood.n_params, activation, generator)
        first_width = hidden[0] if hidden else 2 * n_latent
        # skip_init, then zeros: no draw from any generator, the global one included
        self.encoder_missing = nn.utils.skip_init(nn.Linear, likelihood.n_features, first_width, bias=False)
        nn.init.zeros_(self.encoder_missing.weight)

    def encode(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> Encoded:
        """Posterior parameters and context for rows ``x`` (n, D) in model units.

        ``missing`` (n, D), optional: 1 where an entry is missing (NaN in ``x``), 0
        where observed; ``None`` for rows with no missing entry. The rows are read
        through the head's ``encoder_features`` (0 for every missing cell).
        """
        x = self.likelihood.encoder_features(x, masked=missing is not None)
        if missing is None:
            context = self.encoder(x)
            mean, log_var = self.encoder_mean(context), self.encoder_log_var(context)
        elif len(self.encoder):
            first = self.encoder[0](x) + self.encoder_missing(missing)
            context = self.encoder[1:](first)
            mean, log_var = self.encoder_mean(context), self.encoder_log_var(context)
        else:  # no hidden layer: the indicators shift the heads
            context = x
            shift_mean, shift_log_var = self.encoder_missing(missing).chunk(2, dim=-1)
            mean = self.encoder_mean(context) + shift_mean
            log_var = self.encoder_log_var(context) + shift_log_var
        # the clamp only guards exp() against overflow early in training
        return Encoded(mean, log_var.clamp(*_LOG_VAR_RANGE), context)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters for latent vectors of shape (..., q)."""
        return self.decoder(z)


# -------------------------------------------------------------------- estimators
class BaseVAE(NeuralGenerativeModel):
    """A VAE once its network is built: the bounds, the training loss, scores, imputation.

    Written over the hooks ``_build_module`` (the network, a :class:`VAEModule` or
    one with the same ``encode``, ``decode`` and ``likelihood``) and
    ``_posterior_sample`` (the approximate posterior): the KL-weighted ``K``-sample
    training bound with its warm-up, the importance-weighted scores, the MIWAE
    treatment of missing values, imputation by self-normalised importance
    sampling, ``transform``, ``inverse_transform`` and ``sample``. The columns are
    one table of families (:class:`~skgenerative.distributions.ColumnFamilies`):
    a numeric array is a table of normal columns (Bernoulli ones with
    ``likelihood="bernoulli"``), so arrays and tables take one path. The families
    work in model units (standardised numbers, positive columns on the log scale);
    the columns convert, and give the log-Jacobian that puts scores in the units
    of ``X``. A subclass declares the parameters in ``__init__`` (those of
    ``_parameter_constraints`` and the network's own) and supplies the network;
    see :class:`VariationalAutoencoder`.
    """

    _supports_missing = True
    # keyed-noise stream of the conditional means (scores use stream 0)
    _IMPUTE_STREAM = 1

    _parameter_constraints: dict = {
        **NeuralGenerativeModel._parameter_constraints,
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "kl_warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
        "n_training_samples": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_imputation_samples": [Interval(Integral, 1, None, closed="left")],
        "column_types": [dict, list, tuple, None],
    }

    # ------------------------------------------------------------ the columns
    def _columns(self) -> ColumnFamilies:
        """The columns' families (real columns Bernoulli with ``likelihood="bernoulli"``).

        Kept in the fitted model's cache while its schema stays the one it was built for.
        """
        cache = self.__dict__.get("_cache")
        entry = None if cache is None else cache.get("columns")
        if entry is None or entry[0] is not self.schema_ or entry[1] != self.likelihood:
            families = {"real": Bernoulli} if self.likelihood == "bernoulli" else None
            entry = (self.schema_, self.likelihood,
                     ColumnFamilies(self.schema_.types, self.schema_.level_counts, families=families))
            if cache is not None:
                cache["columns"] = entry
        return entry[2]

    def _continuous_likelihood(self) -> bool:
        return self.likelihood == "gaussian"

    def _check_values(self, X: np.ndarray) -> None:
        """Every observed cell inside its family's support (positive > 0, counts integers >= 0, ...)."""
        if self.likelihood == "bernoulli":
            if any(t != "real" for t in self.schema_.types):
                raise ValueError(
                    "likelihood='bernoulli' models every column as a Bernoulli pixel, but X has "
                    f"typed columns ({', '.join(sorted(set(self.schema_.types)))}). Keep "
                    "likelihood='gaussian' and declare binary columns as 'binary' (column_types "
                    "or a bool dtype): each column type gets its own head."
                )
            advice = ("likelihood='bernoulli' needs data in [0, 1]: scale the data (e.g. MinMaxScaler, "
                      "or binarise it) or use likelihood='gaussian'.")
        else:
            advice = None
        self.schema_.check_support(X, self._columns().families, advice=advice)

    def _fit_preprocessing(self, X: torch.Tensor) -> None:
        """The model units: the standardisation of the location-scale columns, the count offsets.

        ``mean_`` and ``scale_`` are the moments of ``x`` (real) or ``log x``
        (positive) over each column's observed cells, 0 and 1 for the other columns
        (counts, levels, Bernoulli pixels). The Poisson heads start at ``log(mean
        count + 1/2)`` of their column.
        """
        columns = self._columns()
        values = columns.natural_values(X.detach().double())
        d = X.shape[1]
        mean = torch.zeros(d, dtype=torch.float64, device=X.device)
        scale = torch.ones(d, dtype=torch.float64, device=X.device)
        standard = columns.location_scale
        if standard:
            part = values if len(standard) == d else values[:, standard]
            if has_nan(part):  # moments of each column's observed entries
                centre = torch.nanmean(part, 0)
                spread = torch.sqrt(torch.nanmean((part - centre).square(), 0))
            else:
                centre, spread = part.mean(0), part.std(0, correction=0)
            mean[standard], scale[standard] = centre, spread
        self._set_standardisation(mean, scale, X.dtype)
        counts = [j for block in columns.blocks if block.family is Poisson for j in block.columns]
        self._count_offsets = [math.log(float(torch.nanmean(values[:, j])) + 0.5) for j in counts]

    def _set_standardisation(self, mean: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> None:
        """``mean_`` and ``scale_`` from the columns' (float64) means and spreads."""
        # constant features: scale 1, so that they standardise to 0 (not 0 / 0)
        tiny = 100 * torch.finfo(dtype).eps * torch.clamp(mean.abs(), min=1.0)
        scale = torch.where(scale <= tiny, torch.ones_like(scale), scale)
        self.mean_ = mean.cpu().numpy()
        self.scale_ = scale.cpu().numpy()

    def _preprocess(self, X: torch.Tensor) -> torch.Tensor:
        # in the rows' own precision: training data are standardised before the cast
        # to the training dtype, so float32 never rounds values far from the origin
        return self._columns().to_model_units(X, self._tensor("mean_", X.dtype), self._tensor("scale_", X.dtype))

    def _user_units(self, u: torch.Tensor) -> torch.Tensor:
        """Rows in model units -> the user's (:meth:`ColumnFamilies.to_user_units`)."""
        return self._columns().to_user_units(u, self._tensor("mean_", u.dtype), self._tensor("scale_", u.dtype))

    def _log_jacobian(self, observed: torch.Tensor | None = None, u: torch.Tensor | None = None):
        """``log |du/dx|`` of each row's observed cells, for rows ``u`` in model units (n,).

        ``-sum_j log scale_j`` plus the log-normal columns' ``-log x_j`` (the
        family's Jacobian). A float, the same for every row, when every cell is
        observed (``observed=None``) and no column is log-normal.
        """
        columns = self._columns()
        if observed is None:
            if not columns.log_normal:
                return -float(np.log(self.scale_).sum())
            observed = torch.ones(u.shape, dtype=torch.bool, device=u.device)
        dtype = self._dtype if u is None else u.dtype
        return columns.log_jacobian(observed, self._tensor("scale_", dtype), u, self._tensor("mean_", dtype))

    # ------------------------------------------------------------- training
    def _prepare_training(self, train: torch.Tensor, valid: torch.Tensor | None) -> None:
        """Whether this call's data have missing values: they set the training bound.

        Decided once per call, not per batch: a NaN test needs a device sync.
        """
        self._missing_in_training = has_nan(train) or (valid is not None and has_nan(valid))

    def _kl_weight(self, epoch: int) -> float:
        """Weight of ``log p(z) - log q(z | x)`` at ``epoch``: the linear warm-up."""
        return min(1.0, (epoch + 1) / (self.kl_warmup_epochs + 1))

    def _epoch_settings(self, epoch: int) -> dict:
        return {"kl_weight": float(self._kl_weight(epoch))}

    def _counts_toward_patience(self, epoch: int) -> bool:
        return self._kl_weight(epoch) >= 1.0

    def _n_training_samples(self) -> int:
        """``K`` of the training bound: ``"auto"`` is 20 with missing values, else 1."""
        if self.n_training_samples == "auto":
            return 20 if self._missing_in_training else 1
        return int(self.n_training_samples)

    def _batch_loss(
        self, module: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The loss at the running epoch: its KL weight (:meth:`_kl_weight`)."""
        return self._negative_bound(module, batch, generator, float(self._kl_weight(self._epoch)))

    def _validation_batch_loss(
        self, module: nn.Module, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The loss with the full KL term, comparable across the warm-up."""
        return self._negative_bound(module, batch, generator, 1.0)

    def _negative_bound(
        self, module: nn.Module, batch: torch.Tensor, generator: torch.Generator, kl_weight: float
    ) -> torch.Tensor:
        """Mean negative (KL-weighted) ``K``-sample bound, in nats in the units of X.

        ``K = 1`` is the ELBO. With missing values in the training data, the bound
        on each row's observed entries (MIWAE), with their log-Jacobian.
        """
        k = self._n_training_samples()
        shape = (batch.shape[0], k, int(self.n_components))
        eps = torch.randn(shape, generator=generator, dtype=batch.dtype, device=batch.device)
        observed = ~torch.isnan(batch) if self._missing_in_training else None
        log_weights = self._log_weights(module, batch, eps, kl_weight, observed)
        bound = log_weights.mean() if k == 1 else importance_weighted_bound(log_weights).mean()
        jacobian = self._log_jacobian(observed, batch)
        return -(bound + (jacobian if isinstance(jacobian, float) else jacobian.mean()))

    # ------------------------------------------------------------ inference
    def _log_prior(self, module: nn.Module, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` summed over the latent dimensions (standard normal)."""
        return standard_normal_log_prob(z)

    def _posterior_sample(
        self, module: nn.Module, encoded: Encoded, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws ``z`` from ``q(z | x)`` given standard normal noise, and ``log q(z | x)``.

        The one place the approximate posterior is defined: the training ELBO and
        the importance-weighted score both go through it.

        Parameters
        ----------
        module : nn.Module
            The network (holds any extra posterior parameters).
        encoded : Encoded
            The encoder's output for ``n`` rows.
        eps : tensor of shape (n, S, n_components)
            Standard normal noise.

        Returns
        -------
        z : tensor of shape (n, S, n_components)
        log_q : tensor of shape (n, S)
        """
        return gaussian_posterior_sample(encoded.mean, encoded.log_var, eps)

    def _run_encoder(
        self, module: nn.Module, x: torch.Tensor, observed: torch.Tensor | None
    ) -> Encoded:
        """The encoder on rows in model units, with the missingness indicators when a mask is given.

        A missing cell is 0 in the encoder's features: the column mean of the
        observed entries (the standardisation's centre) for a number, so the
        encoder sees an incomplete row mean-imputed, with the indicators beside it.
        """
        if observed is None:
            return module.encode(x)
        return module.encode(x, (~observed).to(x.dtype))

    def _importance_sample(
        self,
        module: nn.Module,
        x: torch.Tensor,
        eps: torch.Tensor,
        kl_weight: float = 1.0,
        observed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log importance weights (n, S) and the decoder's output for each ``z_s`` (n, S, P).

        ``x`` is in model units; its missing cells (NaN) are ignored by the column
        families, so the likelihood runs over the observed cells only (MIWAE) and
        the weights are those of ``p(x_o | z) p(z) / q(z | x_o)``. A mask
        ``observed`` (n, D) also gives the encoder the missingness indicators.
        """
        encoded = self._run_encoder(module, x, observed)
        z, log_q = self._posterior_sample(module, encoded, eps)
        params = module.decode(z)
        # without a mask the rows are complete: the families may skip their masking
        log_lik = module.likelihood.log_prob(x.unsqueeze(1), params, masked=observed is not None)
        return log_lik + kl_weight * (self._log_prior(module, z) - log_q), params

    def _log_weights(
        self,
        module: nn.Module,
        x: torch.Tensor,
        eps: torch.Tensor,
        kl_weight: float = 1.0,
        observed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``log p(x_o | z_s) + kl_weight * (log p(z_s) - log q(z_s | x))``, shape (n, S).

        ``x`` is in model units; ``observed`` masks its observed entries (``None``:
        all of them). With ``kl_weight=1`` these are the log importance weights,
        whose mean over ``s`` is the ELBO.
        """
        return self._importance_sample(module, x, eps, kl_weight, observed)[0]

    # ------------------------------------------------------------ evaluation
    def _score_noise(self, X: torch.Tensor, n_samples: int, stream: int = 0) -> torch.Tensor:
        """Standard normal noise (n, n_samples, q) keyed on the raw rows of ``X``."""
        return keyed_normal(
            row_keys(X, self.noise_seed_), (n_samples, int(self.n_components)), X.dtype, stream=stream
        )

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        # the noise is keyed on the raw rows: the same row, the same draws
        eps = self._score_noise(X, int(self.n_importance_samples))
        x = self._preprocess(X)
        if not has_nan(X):
            return self._bound(x, eps, None)
        # complete rows take the complete-data path as a batch of their own, so they
        # score bit for bit as they do alone
        observed = ~torch.isnan(X)
        complete = observed.all(1)
        out = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
        if bool(complete.any()):
            out[complete] = self._bound(x[complete], eps[complete], None)
        rows = ~complete
        out[rows] = self._bound(x[rows], eps[rows], observed[rows])
        return out

    def _bound(self, x: torch.Tensor, eps: torch.Tensor, observed: torch.Tensor | None) -> torch.Tensor:
        """The importance-weighted bound on ``log p(x_o)`` in the units of X; 0 when nothing is observed."""
        log_weights = self._log_weights(self.module_, x, eps, observed=observed)
        scores = importance_weighted_bound(log_weights) + self._log_jacobian(observed, x)
        if observed is None:
            return scores
        return torch.where(observed.any(1), scores, torch.zeros_like(scores))

    def _impute(self, X: torch.Tensor, n_draws: int | None, generator: torch.Generator) -> torch.Tensor:
        """Points of ``p(x_m | x_o)`` by self-normalised importance sampling; draws by resampling.

        With ``z_s ~ q(z | x_o)`` and ``w_s`` proportional to ``p(x_o | z_s) p(z_s) /
        q(z_s | x_o)``, each cell's point is that of the particle mixture ``sum_s w_s
        p(x | z_s)`` (noise keyed on the rows, as for the scores): its mean for a
        number, exponentiated on the log scale for a positive column (the
        conditional geometric mean), its mode or median for a level
        (:meth:`ColumnFamilies.point`). A draw picks ``z_s`` with probability
        ``w_s`` and samples ``x ~ p(x | z_s)`` (noise from ``generator``). A row with
        nothing observed uses ``z_s ~ p(z)`` with equal weights: the marginal.
        """
        n, q = X.shape[0], int(self.n_components)
        s = self._n_impute_samples()
        if n_draws is None:
            eps = self._score_noise(X, s, stream=self._IMPUTE_STREAM)
        else:
            eps = torch.randn(n, s, q, generator=generator, dtype=X.dtype, device=X.device)
        weights, params = self._particles(X, eps)
        head = self.module_.likelihood
        if n_draws is None:
            return self._user_units(head.point(params, weights))
        index = torch.multinomial(weights, n_draws, replacement=True, generator=generator)
        chosen = torch.gather(params, 1, index.unsqueeze(2).expand(-1, -1, params.shape[2]))
        return self._user_units(head.sample(chosen, generator))

    def _n_impute_samples(self) -> int:
        return int(self.n_imputation_samples)

    def _particles(self, X: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-normalised weights (n, S) and decoder outputs (n, S, P) of posterior draws.

        ``eps`` is the proposal's noise; by default the keyed noise of :meth:`_impute`'s
        conditional mean (same stream), so point imputations and level probabilities
        agree row by row. A row with nothing observed gets the prior's draws with
        equal weights (its exact posterior).
        """
        module = self.module_
        if eps is None:
            eps = self._score_noise(X, self._n_impute_samples(), stream=self._IMPUTE_STREAM)
        observed = ~torch.isnan(X)
        log_weights, params = self._importance_sample(module, self._preprocess(X), eps, observed=observed)
        empty = ~observed.any(1)
        if bool(empty.any()):  # the exact posterior is the prior: sample it directly
            log_weights = torch.where(empty.unsqueeze(1), torch.zeros_like(log_weights), log_weights)
            params = torch.where(empty[:, None, None], module.decode(eps), params)
        return torch.softmax(log_weights, dim=1), params

    def _point_imputation(self, X: torch.Tensor) -> torch.Tensor:
        return self._impute(X, None, None)  # numbers and levels from one set of particles

    def _level_probabilities(self, X: torch.Tensor, columns: list[int]) -> list[torch.Tensor]:
        """``p(x_j = k | x_o) ~ sum_s w_s p(x_j = k | z_s)``, self-normalised importance weights."""
        weights, params = self._particles(X)
        probabilities = self.module_.likelihood.level_probabilities(params, weights, columns)
        return [probabilities[j] for j in columns]

    def _posterior_parameters(self, X: torch.Tensor) -> Encoded:
        """``q_0(z | x)``'s parameters and context for raw rows (missing entries as in training)."""
        observed = ~torch.isnan(X) if has_nan(X) else None
        return self._run_encoder(self.module_, self._preprocess(X), observed)

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        return self._posterior_parameters(X).mean

    def _decode(self, Z: torch.Tensor) -> torch.Tensor:
        params = self.module_.decode(Z.to(self._dtype)).unsqueeze(1)
        return self._user_units(self.module_.likelihood.point(params, torch.ones_like(params[..., 0])))

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        module = self.module_
        z = torch.randn(n, int(self.n_components), generator=generator, dtype=self._dtype, device=self._device)
        return self._user_units(module.likelihood.sample(module.decode(z), generator))


class VariationalAutoencoder(BaseVAE):
    """Variational autoencoder density estimator (Kingma & Welling).

    An MLP decoder maps a latent ``z ~ N(0, I)`` to a likelihood ``p(x | z)``; an
    MLP encoder gives the approximate posterior ``q(z | x) = N(mu(x), diag
    sigma^2(x))``. Both are trained jointly by maximising the evidence lower bound
    (ELBO) with the reparameterisation trick. ``score_samples`` estimates
    ``log p(x)`` by importance sampling.

    ``fit`` accepts missing values (NaN) and learns from the observed entries
    (MIWAE); ``score_samples`` then bounds the log-density of each row's observed
    entries, and ``impute`` fills the missing ones with their conditional
    expectation or with draws from their conditional distribution.

    Parameters
    ----------
    n_components : int, default=8
        Latent dimension ``q``. Dimensions the data do not need collapse onto the
        prior (their KL term goes to 0), so a generous value costs little.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        ``"gaussian"``: ``N(x; m(z), diag v)`` with a learned variance per feature,
        floored at a thousandth of the feature's variance; the data are
        standardised internally. ``"bernoulli"``: independent Bernoulli pixels with
        logits ``decoder(z)``; the data must lie in [0, 1] (binary for a true
        probability mass).
    decoder_variance : {"conditional", "shared"}, default="conditional"
        Gaussian likelihood only. ``"conditional"``: the decoder outputs each
        feature's variance ``v(z)`` beside its mean, so the noise level can differ
        across the data (a continuous mixture of diagonal Gaussians).
        ``"shared"``: one variance per feature for every ``z``; with
        ``hidden_layer_sizes=()`` the model is then factor analysis.
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Widths of the encoder's hidden layers; the decoder uses them reversed. An
        empty tuple gives a linear encoder and decoder.
    activation : {"tanh", "relu", "elu", "gelu", "silu", "softplus", "leaky_relu", \
"identity"}, default="elu"
        Hidden-layer nonlinearity.
    learning_rate : float, default=3e-3
        Adam's step size.
    batch_size : int or "auto", default="auto"
        Rows per gradient step; ``"auto"`` is a sixteenth of the training rows,
        clipped to [32, 256].
    max_iter : int, default=500
        Maximum number of epochs (passes over the training data).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when their loss has not
        improved for ``n_iter_no_change`` epochs (after the warm-up) and restore
        the best weights. Data too few to split train without it.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default=20
        Patience of early stopping, in epochs.
    kl_warmup_epochs : int, default=10
        The KL term's weight rises linearly from ``1 / (kl_warmup_epochs + 1)`` to
        1 over this many epochs, which keeps the posterior from collapsing onto
        the prior early in training. 0 disables the warm-up.
    n_importance_samples : int, default=50
        Samples ``S`` of the importance-weighted bound in ``score_samples``; read at
        scoring time, so it can be raised after fitting for a tighter bound.
    n_training_samples : int or "auto", default="auto"
        Importance samples ``K`` per row in the training objective, the bound
        ``L_K`` (1 is the ELBO). ``"auto"``: 20 when the training data have
        missing values (MIWAE), 1 otherwise (see Notes). Cost grows with ``K``
        in the decoder only.
    n_imputation_samples : int, default=1000
        Importance samples per incomplete row in ``impute``: the particles of the
        self-normalised estimate of ``E[x_missing | x_observed]`` and of the
        resampling that draws from ``p(x_missing | x_observed)``. Read at
        imputation time.
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
        Seed of the initial weights, the validation split, the training noise and
        the scoring noise.
    verbose : int, default=0
        1: a progress bar of the epochs where a terminal or notebook shows it, then
        one summary line (best epoch, why training stopped); 2: also a line per epoch.

    Attributes
    ----------
    module_ : VAEModule
        The trained encoder, decoder and likelihood head (a ``torch.nn.Module``).
    mean_, scale_ : ndarray of shape (n_features,)
        The internal standardisation ``(x - mean_) / scale_``: the mean and
        standard deviation of each column's observed entries (zeros and ones for
        ``likelihood="bernoulli"``; constant features get scale 1).
    noise_seed_ : int
        Seed of the keyed importance-sampling noise of ``score_samples``.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` (mean loss per row, with the warm-up
        weight), ``validation_loss`` (mean negative training bound per held-out
        row, NaN when there is none), ``kl_weight`` and ``duration`` (seconds).
        Losses are in nats in the units of ``X``; with missing values, of the
        observed entries.
    n_iter_ : int
        Epochs trained, over ``fit`` and ``partial_fit`` calls.
    best_epoch_ : int or None
        Epoch (0-based) whose weights were kept by early stopping; None when the
        last call trained without validation (``partial_fit``, tiny data or
        ``early_stopping=False``).
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
    PPCADensity : the linear-Gaussian special case, with an exact density.
    GaussianMixtureDensity : an exact density for clustered data.
    sklearn.neural_network.MLPRegressor : the source of the naming of the
        optimisation parameters.

    Notes
    -----
    ``score_samples`` is the importance-weighted lower bound of Burda et al. (2016)
    on ``log p(x)``, with ``n_importance_samples`` samples from ``q(z | x)``. It is
    a bound, not the exact log-density: it never exceeds ``log p(x)`` on average and
    tightens as ``n_importance_samples`` grows (``S = 1`` is the ELBO). The noise
    of each row is a function of the row's values and ``noise_seed_`` alone, so a
    row gets the same score in any batch, and ``score_samples`` is deterministic.

    With the Gaussian likelihood the model works on standardised data and
    ``score_samples`` adds the log-Jacobian ``-sum(log scale_)``, so densities are
    in the units of ``X``. ``transform`` returns the posterior mean ``mu(x)``,
    ``inverse_transform`` the decoder mean, and ``sample`` draws ``z`` from the
    prior and ``x`` from ``p(x | z)``. The training loss of complete data is the
    one-sample ELBO with a Monte Carlo KL term (``log q - log p``), the estimator a
    flow posterior needs too (``FlowVAE``).

    **Missing values** (MIWAE, Mattei & Frellsen 2019). With ``o`` the observed
    entries of a row and ``m`` the missing ones, the model is trained on
    ``L_K(x_o) = log (1/K) sum_k p(x_o | z_k) p(z_k) / q(z_k | x_o)``, a lower
    bound on ``log p(x_o)``: the likelihood factorises over features given ``z``,
    so dropping the missing factors gives the exact likelihood of the observed
    entries (valid when data are missing at random). ``score_samples`` of an
    incomplete row is the same bound with ``n_importance_samples`` samples (in
    the units of ``X``: its log-Jacobian counts the observed entries only); a row
    with nothing observed scores exactly 0. Complete rows take the complete-data
    code path, so data without NaN give the very model and scores they gave
    before missing values were supported.

    The encoder sees an incomplete row standardised and zero-filled (the missing
    entries at the mean of the observed ones, as Mattei & Frellsen) and also the
    missingness indicators: its first affine map gets a term ``U r`` for the
    indicator vector ``r``, i.e. the encoder input is ``[x, r]``, with ``U``
    starting at zero and skipped for complete rows so that complete data are
    unaffected. Without them the encoder cannot tell a missing entry from an
    observed one at the mean, so it cannot widen its posterior for the rows that
    say less. ``n_training_samples="auto"`` trains incomplete data on ``L_20``.

    ``impute`` estimates ``E[x_m | x_o]`` by self-normalised importance sampling
    with ``n_imputation_samples`` draws ``z_s ~ q(z | x_o)`` and weights
    ``w_s`` proportional to ``p(x_o | z_s) p(z_s) / q(z_s | x_o)``:
    ``sum_s w_s E[x_m | z_s]``, consistent as the samples grow. Its noise is
    keyed on the rows like the scores', so ``impute(X)`` is deterministic and
    ignores ``random_state``; ``n_draws`` draws resample ``z_s`` with
    probabilities ``w_s`` and sample ``x_m ~ p(x_m | z_s)`` (sampling importance
    resampling, seeded by ``random_state``). A row with nothing observed is
    filled from the marginal: ``z_s`` from the prior, equal weights. With the
    Bernoulli likelihood the conditional mean is a probability. The encoder is
    trained for the bound, not to match ``p(z | x_o)``, so the weights are
    uneven and the estimate needs many more samples than the score.

    **Tables** (a DataFrame with typed columns, HI-VAE, Nazabal et al. 2020): one
    head per column given ``z``: Gaussian on the standardised value (real),
    log-normal (positive: a Gaussian on the standardised ``log x``, with the
    log-Jacobian ``-log s - log x``), Poisson (count; its marginal over ``z`` is
    over-dispersed already), Bernoulli (binary), softmax (categorical) and an
    ordered logit with increasing thresholds (ordinal). Each column adds one
    unweighted log-likelihood term, so ``score_samples`` is the log-density of the
    numeric cells plus the log-probability of the levels; standardisation keeps
    the numeric terms of order 1 beside the categorical ones in ``[-log K, 0]``.
    The encoder reads one-hot vectors for levels, ``log(1 + x)`` for counts.
    ``impute`` fills numbers with their conditional mean (positive columns: the
    conditional geometric mean ``exp(E[log x | x_o])``, robust where a log-normal
    mean is not) and levels with the mode (median for ordinal) of ``sum_s w_s
    p(x_j = k | z_s)``, the same particles' probabilities that ``impute_proba``
    returns.

    For outlier detection on contaminated training data, ``decoder_variance=
    "shared"`` can be the more robust choice: a decoder that outputs variances may
    explain a cluster of outliers by a large variance. The user guide
    (``docs/user_guide/vae.rst``) has the derivations and the measurements behind
    the defaults.

    References
    ----------
    Kingma, D. P. & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
    Rezende, D. J., Mohamed, S. & Wierstra, D. (2014). Stochastic backpropagation
    and approximate inference in deep generative models. ICML.
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted
    autoencoders. ICLR.
    Bowman, S. R. et al. (2016). Generating sentences from a continuous space.
    CoNLL (KL warm-up).
    Mattei, P.-A. & Frellsen, J. (2019). MIWAE: deep generative modelling and
    imputation of incomplete data sets. ICML.
    Nazabal, A., Olmos, P. M., Ghahramani, Z. & Valera, I. (2020). Handling
    incomplete heterogeneous data using VAEs. Pattern Recognition.

    Examples
    --------
    A curve in 3-D: one latent dimension, and a far better density than the best
    linear-Gaussian model (PPCA) on held-out points.

    >>> import numpy as np
    >>> from skgenerative import PPCADensity, VariationalAutoencoder
    >>> rng = np.random.RandomState(0)
    >>> t = rng.uniform(-3, 3, size=(400, 1))
    >>> X = np.hstack([t, np.sin(t), np.cos(t)]) + 0.05 * rng.normal(size=(400, 3))
    >>> vae = VariationalAutoencoder(n_components=1, hidden_layer_sizes=(32, 32),
    ...                              random_state=0).fit(X[:300])
    >>> vae.transform(X[:2]).shape
    (2, 1)
    >>> ppca = PPCADensity(n_components=1).fit(X[:300])
    >>> bool(vae.score(X[300:]) > ppca.score(X[300:]) + 1.0)
    True
    >>> vae.sample(2, random_state=0).shape
    (2, 3)

    Missing values: fit on the incomplete rows, then fill the gaps, here with
    half the error of the column means.

    >>> X_missing = X.copy()
    >>> X_missing[rng.uniform(size=X.shape) < 0.2] = np.nan
    >>> vae = VariationalAutoencoder(n_components=2, hidden_layer_sizes=(32, 32),
    ...                              random_state=0).fit(X_missing)
    >>> filled = vae.impute(X_missing)
    >>> bool(np.isnan(filled).any())
    False
    >>> missing = np.isnan(X_missing)
    >>> error = np.sqrt(np.mean((filled - X)[missing] ** 2))
    >>> bool(error < 0.6 * np.sqrt(np.mean((X - X.mean(0))[missing] ** 2)))
    True
    """

    # every column type has a head (the base class stays numeric: it is no estimator)
    _supported_column_types = frozenset(COLUMN_TYPES)

    _parameter_constraints: dict = {
        **BaseVAE._parameter_constraints,
        "decoder_variance": [StrOptions({"conditional", "shared"})],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
    }

    def __init__(
        self,
        n_components=8,
        *,
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
        self.n_components = n_components
        self.likelihood = likelihood
        self.decoder_variance = decoder_variance
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.kl_warmup_epochs = kl_warmup_epochs
        self.n_importance_samples = n_importance_samples
        self.n_training_samples = n_training_samples
        self.n_imputation_samples = n_imputation_samples
        self.column_types = column_types
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ---------------------------------------------------------------- checks
    def _hidden_layer_sizes(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        if any(not isinstance(s, Integral) or isinstance(s, bool) or s < 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must contain positive integers, got {self.hidden_layer_sizes!r}."
            )
        return tuple(int(s) for s in sizes)

    def _head_width(self, n_features: int) -> int:
        """Per-row width of the decoder's output and the encoder's input (one-hot levels)."""
        if getattr(self, "schema_", None) is None:
            return n_features
        return n_features + sum(self.schema_.level_counts)

    def _row_bytes(self, n_features: int) -> int:
        n_features = self._head_width(n_features)
        itemsize = self._itemsize
        hidden = sum(self._hidden_layer_sizes())
        q, s = int(self.n_components), int(self.n_importance_samples)
        per_sample = itemsize * (4 * n_features + 2 * hidden + 4 * q) + 8 * 6 * q
        return s * per_sample + itemsize * (n_features + 2 * hidden + 4 * q)

    # ------------------------------------------------------------ the model
    def _build_module(self, n_features: int, generator: torch.Generator) -> nn.Module:
        schema = self.schema_
        head = ColumnLikelihood.for_columns(
            schema.types, schema.level_counts, likelihood=self.likelihood,
            conditional_variance=self.decoder_variance == "conditional",
            count_offsets=getattr(self, "_count_offsets", None),
        )
        return VAEModule(head, int(self.n_components), self._hidden_layer_sizes(), self.activation, generator)

    def _impute_row_bytes(self, n_features: int, n_draws: int | None) -> int:
        n_features = self._head_width(n_features)
        itemsize = self._itemsize
        hidden = sum(self._hidden_layer_sizes())
        q, s = int(self.n_components), self._n_impute_samples()
        per_sample = itemsize * (6 * n_features + 2 * hidden + 4 * q) + 8 * 6 * q
        per_draw = itemsize * 4 * n_features + 8
        return s * per_sample + (n_draws or 0) * per_draw + itemsize * (3 * n_features + 2 * hidden)
