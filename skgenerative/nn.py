"""Building blocks of the neural models: MLPs and likelihood heads.

Everything here is a plain ``torch.nn.Module`` or a pure torch function; nothing
knows about numpy or scikit-learn.

Initialisation never touches torch's global random state: layers are created
without initialisation (``torch.nn.utils.skip_init``) and filled from an explicit
``torch.Generator``, so that building a model neither depends on nor advances the
user's global seed, and the same seed gives the same weights on any device.

Likelihood heads turn a decoder's output ``params`` (``n_params`` values: one or
two per feature) into a distribution over ``x``. Each exposes
``log_prob(x, params, observed=None)``, summed over the features (over the observed
ones only when a boolean mask ``observed`` is given: the log-likelihood of the
observed entries, for data with missing values), ``mean(params)`` and
``sample(params, generator)``. ``params`` may carry extra leading dimensions (e.g.
importance samples) that broadcast against ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "make_mlp",
    "make_linear",
    "init_linear",
    "GaussianLikelihood",
    "BernoulliLikelihood",
    "make_likelihood",
    "MixedLikelihood",
    "MIXED_KINDS",
    "ORDINAL_MIN_GAP",
    "ordinal_log_probs",
    "ordinal_thresholds",
    "poisson_log_prob",
    "fill_missing",
    "softplus",
    "standard_normal_log_prob",
]

#: activation name -> module class (``"identity"`` gives a linear network)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}

_LOG_2PI = math.log(2.0 * math.pi)


def init_linear(layer: nn.Linear, generator: torch.Generator) -> nn.Linear:
    """Glorot-uniform weights and zero bias, drawn from ``generator``.

    ``W ~ U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` keeps the variance
    of activations and gradients roughly constant through tanh-like layers.
    """
    fan_out, fan_in = layer.weight.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def make_linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """A ``nn.Linear`` initialised by :func:`init_linear` from ``generator`` only.

    ``skip_init`` builds it without torch's default initialisation, which would
    draw from (and advance) the global generator.
    """
    return init_linear(nn.utils.skip_init(nn.Linear, n_in, n_out), generator)


def make_mlp(
    n_in: int,
    hidden_layer_sizes: Sequence[int],
    n_out: int | None,
    activation: str,
    generator: torch.Generator,
) -> nn.Sequential:
    """``Linear -> activation`` for each hidden width, then a linear output layer.

    Parameters
    ----------
    n_in : int
        Input width.
    hidden_layer_sizes : sequence of int
        Widths of the hidden layers; empty for an affine map.
    n_out : int or None
        Output width of a final linear layer (no activation). ``None`` ends the
        network at the last hidden activation (a feature extractor; with no hidden
        layers it is then the identity).
    activation : str
        A key of :data:`ACTIVATIONS`.
    generator : torch.Generator
        CPU generator the weights are drawn from.
    """
    layers: list[nn.Module] = []
    width = n_in
    for size in hidden_layer_sizes:
        layers += [make_linear(width, int(size), generator), ACTIVATIONS[activation]()]
        width = int(size)
    if n_out is not None:
        layers.append(make_linear(width, n_out, generator))
    return nn.Sequential(*layers)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)`` computed as ``max(x, 0) + log1p(e^-|x|)``, exact to rounding for every ``x``.

    ``torch.nn.functional.softplus`` returns ``x`` itself above ``x = 20``, dropping
    ``e^-x`` (2e-9): more than float64 resolves, an error that an RBM's exact
    partition function would accumulate over its units and that would break a
    planar flow's constraint ``w . u_hat = -1 + softplus(w . u)``. The likelihood
    heads below keep torch's version, whose cut-off costs nothing in a training loss.
    """
    return x.clamp_min(0.0) + torch.log1p(torch.exp(-x.abs()))


def fill_missing(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """``x`` with 0 where ``observed`` is false (NaN or not)."""
    return torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device))


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * _LOG_2PI)


class GaussianLikelihood(nn.Module):
    """``p(x | params) = N(x; mean, diag v)`` with a learned, floored variance per feature.

    With ``conditional=False`` the variance ``v`` is one free parameter per feature,
    shared by every latent value, and ``params`` is the mean (``n_params = D``).
    With ``conditional=True`` the decoder outputs it too: ``params`` is
    ``[mean, r]`` (``n_params = 2 D``) and the variance depends on ``z``.

    Either way the log-variance is ``log v = log v_min + softplus(r - log v_min)``
    for an unconstrained ``r`` (0 at initialisation, i.e. ``v`` about 1): smooth,
    trainable everywhere, and never below ``v_min``. The floor keeps the likelihood
    bounded, so that a decoder cannot collapse a variance onto a training value
    and the log-densities stay those of a real density.

    Parameters
    ----------
    n_features : int
    min_variance : float, default=1e-3
        The floor ``v_min``, in the units the head models (the VAE's standardised
        units: a thousandth of each feature's variance).
    conditional : bool, default=False
        Whether the decoder outputs the variance (heteroscedastic) or it is shared.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.nn import GaussianLikelihood
    >>> head = GaussianLikelihood(n_features=2).double()  # variance about 1 at start
    >>> x = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    >>> mean = torch.zeros(1, 2, dtype=torch.float64)
    >>> exact = torch.distributions.Normal(0.0, head.mean_and_log_variance(mean)[1].exp().sqrt())
    >>> bool(torch.isclose(head.log_prob(x, mean)[0], exact.log_prob(x).sum()))
    True
    >>> observed = torch.tensor([[True, False]])  # the second entry is missing
    >>> bool(torch.isclose(head.log_prob(x, mean, observed)[0], exact.log_prob(x)[0, 0]))
    True
    """

    def __init__(self, n_features: int, min_variance: float = 1e-3, conditional: bool = False):
        super().__init__()
        self.n_features = n_features
        self.conditional = conditional
        self.n_params = 2 * n_features if conditional else n_features
        self.log_min_variance = math.log(min_variance)
        if not conditional:
            self.raw_log_variance = nn.Parameter(torch.zeros(n_features))

    def mean_and_log_variance(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean (same shape as ``x``) and the floored log-variance."""
        if self.conditional:
            mean, raw = params[..., : self.n_features], params[..., self.n_features :]
        else:
            mean, raw = params, self.raw_log_variance
        floor = self.log_min_variance
        return mean, floor + F.softplus(raw - floor)

    def log_prob(
        self, x: torch.Tensor, params: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_d log N(x_d; mean_d, v_d)``; ``params`` broadcasts against ``x``.

        With a boolean ``observed`` (broadcasting against ``x``) the sum runs over the
        observed entries only; the others may hold anything, NaN included.
        """
        mean, log_var = self.mean_and_log_variance(params)
        if observed is None:
            terms = (x - mean).square() * torch.exp(-log_var) + log_var
            return -0.5 * (terms.sum(-1) + self.n_features * _LOG_2PI)
        # zero-fill first: a NaN in the discarded branch of where() would still
        # poison the gradient (0 * NaN)
        x = fill_missing(x, observed)
        terms = (x - mean).square() * torch.exp(-log_var) + (log_var + _LOG_2PI)
        return -0.5 * torch.where(observed, terms, torch.zeros((), dtype=terms.dtype, device=terms.device)).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return self.mean_and_log_variance(params)[0]

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, log_var = self.mean_and_log_variance(params)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * log_var) * noise


class BernoulliLikelihood(nn.Module):
    """``p(x | params) = prod_d sigmoid(l_d)^x_d (1 - sigmoid(l_d))^(1 - x_d)``.

    ``params`` are the logits ``l``. ``log_prob`` is ``-BCE(l, x)`` computed
    stably; for ``x`` in {0, 1} it is a log-probability mass.

    Examples
    --------
    The probabilities of the four binary vectors of two features sum to one:

    >>> import torch
    >>> from skgenerative.nn import BernoulliLikelihood
    >>> head = BernoulliLikelihood(n_features=2)
    >>> logits = torch.tensor([0.3, -1.2])
    >>> x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> round(float(head.log_prob(x, logits).exp().sum()), 6)
    1.0
    """

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features
        self.n_params = n_features

    def log_prob(
        self, x: torch.Tensor, params: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_d [x_d l_d - log(1 + exp(l_d))]``; ``params`` broadcasts against ``x``.

        With a boolean ``observed`` the sum runs over the observed entries only.
        """
        if observed is None:
            return (x * params - F.softplus(params)).sum(-1)
        terms = fill_missing(x, observed) * params - F.softplus(params)
        return torch.where(observed, terms, torch.zeros((), dtype=terms.dtype, device=terms.device)).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(params.shape, generator=generator, dtype=params.dtype, device=params.device)
        return (u < torch.sigmoid(params)).to(params.dtype)


def make_likelihood(name: str, n_features: int, conditional_variance: bool = False) -> nn.Module:
    """The head for ``likelihood=name`` (``"gaussian"`` or ``"bernoulli"``).

    Its ``n_params`` is the width the decoder must output.
    """
    if name == "gaussian":
        return GaussianLikelihood(n_features, conditional=conditional_variance)
    if name == "bernoulli":
        return BernoulliLikelihood(n_features)
    raise ValueError(f"Unknown likelihood {name!r}: use 'gaussian' or 'bernoulli'.")


# ------------------------------------------------------------ mixed-type heads
#: column types of :class:`MixedLikelihood` (those of :mod:`skgenerative._schema`)
MIXED_KINDS = ("real", "positive", "count", "binary", "categorical", "ordinal")
_GAUSSIAN_KINDS = ("real", "positive")
_LEVEL_KINDS = ("categorical", "ordinal")


def poisson_log_prob(x: torch.Tensor, log_rate: torch.Tensor) -> torch.Tensor:
    """``log Poisson(x; exp(log_rate)) = x log_rate - exp(log_rate) - log x!``, elementwise."""
    return x * log_rate - torch.exp(log_rate) - torch.lgamma(x + 1.0)


#: least gap between consecutive ordinal thresholds (logit scale)
ORDINAL_MIN_GAP = 1e-3


def ordinal_thresholds(raw: torch.Tensor) -> torch.Tensor:
    """Strictly increasing thresholds ``theta_1 < ... < theta_{K-1}`` from unconstrained ``raw``.

    ``theta_1 = raw_1`` and ``theta_k = theta_{k-1} + softplus(raw_k) + delta`` with
    ``delta = 1e-3`` (:data:`ORDINAL_MIN_GAP`): a cumulative sum of positive
    increments, so the order holds for any ``raw`` (last dimension), and it
    survives rounding (an increment ``softplus(raw_k)`` alone underflows for very
    negative ``raw_k``, and two equal thresholds would give a level probability
    exactly 0, a log-likelihood of ``-inf``).
    """
    if raw.shape[-1] <= 1:
        return raw
    steps = F.softplus(raw[..., 1:]) + ORDINAL_MIN_GAP
    return torch.cat([raw[..., :1], raw[..., :1] + steps.cumsum(-1)], dim=-1)


def ordinal_log_probs(location: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the ``K`` levels of an ordered logit, shape (..., K).

    ``P(x <= k) = sigmoid(theta_{k+1} - eta)`` for the location ``eta`` (..., 1) and
    increasing thresholds ``theta`` (..., K - 1), so ``P(x = k) = sigmoid(b) -
    sigmoid(a)`` with ``a = theta_k - eta`` and ``b = theta_{k+1} - eta`` (``theta_0 =
    -inf``, ``theta_K = +inf``). Computed as ``log sigmoid(b) + log sigmoid(-a) +
    log(1 - exp(a - b))``, an identity that stays accurate in both tails.
    """
    n_levels = thresholds.shape[-1] + 1
    if n_levels == 1:
        return torch.zeros_like(location)
    cut = thresholds - location  # (..., K - 1)
    zero = torch.zeros_like(location)
    # a_k (lower cut of level k) and b_k (upper cut), with the open ends at 0 (masked)
    lower = torch.cat([zero, cut], dim=-1)
    upper = torch.cat([cut, zero], dim=-1)
    first = torch.zeros(n_levels, dtype=torch.bool, device=cut.device)
    first[0] = True
    last = torch.zeros_like(first)
    last[-1] = True
    log_upper = torch.where(last, zero, F.logsigmoid(upper))
    log_lower = torch.where(first, zero, F.logsigmoid(-lower))
    inner = first | last
    gap = torch.where(inner, -torch.ones_like(upper), lower - upper)  # a - b < 0
    log_gap = torch.where(inner, zero, torch.log(-torch.expm1(gap)))
    return log_upper + log_lower + log_gap


class MixedLikelihood(nn.Module):
    """One likelihood head per column type: a table's columns given ``z`` (HI-VAE style).

    Columns are independent given the decoder's output ``params`` (Nazabal et al.
    2020). Each column ``j`` of ``layout`` is ``(kind, n_levels)`` and the head models
    the value the estimator hands it:

    ===========  ============================  ======================================
    kind         the value                     ``p(x_j | params)``
    ===========  ============================  ======================================
    real         standardised number ``u``     ``N(u; m, v)`` (floored variance)
    positive     standardised ``log x``        ``N(u; m, v)``: log-normal in ``x``
    count        the count ``x`` in 0, 1, ...  ``Poisson(x; exp(l + o))``
    binary       code 0 / 1                    ``Bernoulli(sigmoid(l))``
    categorical  code 0 .. K-1                 ``softmax(l_1 .. l_K)``
    ordinal      code 0 .. K-1                 ordered logit, increasing thresholds
    ===========  ============================  ======================================

    The log-Jacobians of the standardisation and of ``log x`` are the estimator's
    (the head is a density in its own units). ``o`` is a fixed offset per count
    column (the log of its mean count at fit), so a fresh decoder starts at the
    data's rate. Gaussian variances follow :class:`GaussianLikelihood`
    (``conditional``: the decoder outputs them). ``params`` is laid out as: the
    Gaussian means, (their raw log-variances when conditional), the count log-rates,
    the binary logits, then ``K`` values per categorical or ordinal column (logits;
    for an ordinal column the location ``eta`` and ``K - 1`` raw thresholds, see
    :func:`ordinal_thresholds`).

    The encoder sees each row as ``encoder_features``: Gaussian values as they are,
    ``log(1 + x)`` for counts, binary codes, one-hot vectors for categorical and
    ordinal columns, 0 for every missing cell (the indicators go in beside them).

    Parameters
    ----------
    layout : sequence of (str, int)
        ``(kind, n_levels)`` per column (``n_levels`` ignored for numeric kinds).
    conditional : bool, default=False
    min_variance : float, default=1e-3
    count_offsets : sequence of float or None
        ``o`` per count column (0 by default).

    Examples
    --------
    The probabilities of every level combination of a categorical and an ordinal
    column sum to one:

    >>> import itertools, torch
    >>> from skgenerative.nn import MixedLikelihood
    >>> head = MixedLikelihood([("categorical", 3), ("ordinal", 4)]).double()
    >>> params = torch.randn(head.n_params, generator=torch.Generator().manual_seed(0),
    ...                      dtype=torch.float64)
    >>> x = torch.tensor(list(itertools.product(range(3), range(4))), dtype=torch.float64)
    >>> round(float(head.log_prob(x, params).exp().sum()), 12)
    1.0
    """

    def __init__(self, layout, conditional: bool = False, min_variance: float = 1e-3,
                 count_offsets=None):
        super().__init__()
        layout = [(str(kind), int(levels)) for kind, levels in layout]
        for kind, levels in layout:
            if kind not in MIXED_KINDS:
                raise ValueError(f"Unknown column kind {kind!r}: use one of {MIXED_KINDS}.")
            if kind in _LEVEL_KINDS and levels < 1:
                raise ValueError(f"A {kind} column needs at least one level, got {levels}.")
        self.layout = layout
        self.n_features = len(layout)
        self.conditional = conditional
        self.log_min_variance = math.log(min_variance)
        kinds = [kind for kind, _ in layout]
        self.gaussian = [j for j, k in enumerate(kinds) if k in _GAUSSIAN_KINDS]
        self.positive = [j for j, k in enumerate(kinds) if k == "positive"]
        self.count = [j for j, k in enumerate(kinds) if k == "count"]
        self.binary = [j for j, k in enumerate(kinds) if k == "binary"]
        self.levels = [j for j, k in enumerate(kinds) if k in _LEVEL_KINDS]
        self.discrete = [j for j, k in enumerate(kinds) if k in ("binary",) + _LEVEL_KINDS]
        g, c, b = len(self.gaussian), len(self.count), len(self.binary)
        start = 0
        self._mean_slice = slice(start, start + g)
        start += g
        if conditional:
            self._raw_var_slice = slice(start, start + g)
            start += g
        else:
            self.raw_log_variance = nn.Parameter(torch.zeros(g))
        self._count_slice = slice(start, start + c)
        start += c
        self._binary_slice = slice(start, start + b)
        start += b
        self._level_slices = []
        for j in self.levels:
            self._level_slices.append(slice(start, start + layout[j][1]))
            start += layout[j][1]
        self.n_params = start
        offsets = torch.zeros(c, dtype=torch.float64) if count_offsets is None else torch.as_tensor(
            [float(o) for o in count_offsets], dtype=torch.float64)
        self.register_buffer("count_offsets", offsets)
        # indices as buffers move with the module; integer buffers keep their dtype
        for name in ("gaussian", "count", "binary", "levels"):
            self.register_buffer(f"_{name}_index", torch.tensor(getattr(self, name), dtype=torch.int64),
                                 persistent=False)
        self.input_width = g + c + b + sum(layout[j][1] for j in self.levels)

    # ------------------------------------------------------------ parameters
    def gaussian_mean_and_log_variance(self, params: torch.Tensor):
        """Means and floored log-variances (..., G) of the real and positive columns."""
        mean = params[..., self._mean_slice]
        raw = params[..., self._raw_var_slice] if self.conditional else self.raw_log_variance
        floor = self.log_min_variance
        return mean, floor + F.softplus(raw - floor)

    def log_rates(self, params: torch.Tensor) -> torch.Tensor:
        """``log`` of the Poisson rates (..., C) of the count columns."""
        return params[..., self._count_slice] + self.count_offsets.to(params.dtype)

    def binary_logits(self, params: torch.Tensor) -> torch.Tensor:
        return params[..., self._binary_slice]

    def level_log_probs(self, params: torch.Tensor) -> list[torch.Tensor]:
        """``log p(x_j = k | params)`` (..., K_j) for each discrete column, in column order."""
        by_column = {}
        for j, s in zip(self.levels, self._level_slices):
            values = params[..., s]
            if self.layout[j][0] == "categorical":
                by_column[j] = torch.log_softmax(values, dim=-1)
            else:
                by_column[j] = ordinal_log_probs(values[..., :1], ordinal_thresholds(values[..., 1:]))
        if self.binary:
            logits = self.binary_logits(params)
            for position, j in enumerate(self.binary):
                l = logits[..., position : position + 1]
                by_column[j] = torch.cat([F.logsigmoid(-l), F.logsigmoid(l)], dim=-1)
        return [by_column[j] for j in self.discrete]

    def thresholds(self, params: torch.Tensor) -> list[torch.Tensor]:
        """The ordinal columns' increasing thresholds (..., K - 1), in column order."""
        return [
            ordinal_thresholds(params[..., s][..., 1:])
            for j, s in zip(self.levels, self._level_slices) if self.layout[j][0] == "ordinal"
        ]

    # -------------------------------------------------------------- the density
    def column_log_probs(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x_j | params)`` per cell, shape ``broadcast(x, params[..., :D])``.

        ``x`` must hold valid values everywhere (zero-fill missing cells first).
        """
        shape = torch.broadcast_shapes(x.shape[:-1], params.shape[:-1]) + (self.n_features,)
        out = torch.zeros(shape, dtype=params.dtype, device=params.device)
        x = x.expand(shape)
        if self.gaussian:
            mean, log_var = self.gaussian_mean_and_log_variance(params)
            u = x[..., self._gaussian_index]
            out[..., self._gaussian_index] = -0.5 * (
                (u - mean).square() * torch.exp(-log_var) + log_var + _LOG_2PI
            )
        if self.count:
            out[..., self._count_index] = poisson_log_prob(x[..., self._count_index], self.log_rates(params))
        if self.binary:
            logits = self.binary_logits(params)
            out[..., self._binary_index] = x[..., self._binary_index] * logits - F.softplus(logits)
        if self.levels:
            level_log_probs = dict(zip(self.discrete, self.level_log_probs(params)))
            for j in self.levels:
                table = level_log_probs[j].expand(shape[:-1] + level_log_probs[j].shape[-1:])
                code = x[..., j : j + 1].long().clamp(0, table.shape[-1] - 1)
                out[..., j] = torch.gather(table, -1, code).squeeze(-1)
        return out

    def log_prob(
        self, x: torch.Tensor, params: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_j log p(x_j | params)``, over the observed cells when ``observed`` is given."""
        if observed is None:
            return self.column_log_probs(x, params).sum(-1)
        terms = self.column_log_probs(fill_missing(x, observed), params)
        return torch.where(observed, terms, torch.zeros((), dtype=terms.dtype, device=terms.device)).sum(-1)

    def encoder_features(self, x: torch.Tensor, missing: torch.Tensor | None = None) -> torch.Tensor:
        """What the encoder sees of rows ``x`` (n, D): see the class description.

        ``missing`` (n, D), 1 where a cell is missing (``x`` holds 0 there).
        """
        parts = []
        if self.gaussian:
            parts.append(x[..., self._gaussian_index])
        if self.count:
            parts.append(torch.log1p(x[..., self._count_index].clamp_min(0.0)))
        if self.binary:
            parts.append(x[..., self._binary_index])
        for j in self.levels:
            n_levels = self.layout[j][1]
            one_hot = F.one_hot(x[..., j].long().clamp(0, n_levels - 1), n_levels).to(x.dtype)
            if missing is not None:
                one_hot = one_hot * (1.0 - missing[..., j : j + 1])
            parts.append(one_hot)
        return torch.cat(parts, dim=-1)

    # ------------------------------------------------------- draws and means
    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draws of every column given ``params`` (..., P), in the head's units (..., D)."""
        shape = params.shape[:-1] + (self.n_features,)
        out = torch.zeros(shape, dtype=params.dtype, device=params.device)
        if self.gaussian:
            mean, log_var = self.gaussian_mean_and_log_variance(params)
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            out[..., self._gaussian_index] = mean + torch.exp(0.5 * log_var) * noise
        if self.count:
            rates = torch.exp(self.log_rates(params))
            out[..., self._count_index] = torch.poisson(rates, generator=generator)
        for j, log_p in zip(self.discrete, self.level_log_probs(params)):
            flat = torch.exp(log_p).reshape(-1, log_p.shape[-1])
            codes = torch.multinomial(flat, 1, generator=generator).reshape(shape[:-1])
            out[..., j] = codes.to(params.dtype)
        return out

    def numeric_means(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(gaussian mean, gaussian log-variance, count rate)`` in the head's units."""
        mean, log_var = self.gaussian_mean_and_log_variance(params)
        return mean, log_var, torch.exp(self.log_rates(params))
