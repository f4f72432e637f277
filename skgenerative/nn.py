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
