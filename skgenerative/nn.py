"""Building blocks of the neural models: MLPs and the likelihood head.

Everything here is a plain ``torch.nn.Module`` or a pure torch function; nothing
knows about numpy or scikit-learn.

Initialisation never touches torch's global random state: layers are created
without initialisation (``torch.nn.utils.skip_init``) and filled from an explicit
``torch.Generator``, so that building a model neither depends on nor advances the
user's global seed, and the same seed gives the same weights on any device.

The likelihood head (:class:`ColumnLikelihood`) turns a decoder's output ``params``
into one family of :mod:`skgenerative.distributions` per column: the column
families are written once there, and the head only reads its slices of
``params`` (with the variance floor, the shared variances and the count offsets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .distributions import (
    Bernoulli,
    Categorical,
    ColumnFamilies,
    Family,
    Normal,
    OrderedLogistic,
    Poisson,
    softplus,
)

__all__ = [
    "ACTIVATIONS",
    "make_mlp",
    "make_linear",
    "init_linear",
    "ColumnLikelihood",
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


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * _LOG_2PI)


class ColumnLikelihood(nn.Module):
    """``p(x | params)``: one family per column over slices of a decoder's output.

    Columns are independent given the decoder's output ``params`` (Nazabal et al.
    2020); each block of :class:`~skgenerative.distributions.ColumnFamilies` reads
    its slice and becomes its family, in model units (real columns standardised,
    positive ones standardised on the log scale, the rest as they are):

    ===========  ==================================  ==================================
    family       the slice                           the family
    ===========  ==================================  ==================================
    Normal       means ``m``, then raw ``r``         ``N(u; m, v)``, floored variance
    Poisson      raw ``l``                           ``Poisson(exp(l + o))``
    Bernoulli    logits ``l``                        ``Bernoulli(sigmoid(l))``
    Categorical  ``L`` logits                        ``softmax``
    Ordered      location, ``L - 1`` raw thresholds  ordered logit, increasing thresholds
    ===========  ==================================  ==================================

    The variance ``v`` of a normal (real or positive) column is ``log v = log v_min
    + softplus(r - log v_min)`` for an unconstrained ``r`` (0 at initialisation, i.e.
    ``v`` about 1): smooth, trainable everywhere and never below ``v_min``, so that
    a decoder cannot collapse a variance onto a training value and the
    log-densities stay those of a real density. With ``conditional_variance`` the
    decoder outputs ``r`` (two outputs per normal column), otherwise ``r`` is one
    free parameter per column (``raw_log_variance``), shared by every ``z``. ``o``
    is a fixed offset per count column (the log of its mean count at fit), so a
    fresh decoder starts at the data's rate.

    Every method takes ``params`` (..., n_params), whose leading dimensions (rows,
    importance samples) broadcast against ``x``; missing cells (NaN) of ``x`` are
    ignored by the families (0 log-probability, finite gradients).

    Parameters
    ----------
    columns : ColumnFamilies
        The columns, in the decoder's layout (``order="family"``, ``normal_width``
        2 for a conditional variance).
    conditional_variance : bool, default=False
    min_variance : float, default=1e-3
        ``v_min`` in model units (a thousandth of each column's variance).
    count_offsets : sequence of float or None
        ``o`` per count column (0 by default).

    Examples
    --------
    The probabilities of every level combination of a categorical and an ordinal
    column sum to one:

    >>> import itertools, torch
    >>> from skgenerative.nn import ColumnLikelihood
    >>> head = ColumnLikelihood.for_columns(["categorical", "ordinal"], [3, 4]).double()
    >>> params = torch.randn(head.n_params, generator=torch.Generator().manual_seed(0),
    ...                      dtype=torch.float64)
    >>> x = torch.tensor(list(itertools.product(range(3), range(4))), dtype=torch.float64)
    >>> round(float(head.log_prob(x, params).exp().sum()), 12)
    1.0
    """

    def __init__(self, columns: ColumnFamilies, conditional_variance: bool = False,
                 min_variance: float = 1e-3, count_offsets=None):
        super().__init__()
        self.columns = columns
        self.n_features = columns.n_features
        self.n_params = columns.n_params
        self.input_width = columns.feature_width
        self.conditional = conditional_variance
        self.log_min_variance = math.log(min_variance)
        n_normal = len(columns.location_scale)
        if n_normal and not conditional_variance:
            self.raw_log_variance = nn.Parameter(torch.zeros(n_normal))
        n_counts = sum(len(b.columns) for b in columns.blocks if b.family is Poisson)
        offsets = [0.0] * n_counts if count_offsets is None else [float(o) for o in count_offsets]
        self.register_buffer("count_offsets", torch.tensor(offsets, dtype=torch.float64))

    @classmethod
    def for_columns(cls, kinds, n_levels=None, *, likelihood: str = "gaussian",
                    conditional_variance: bool = False, min_variance: float = 1e-3,
                    count_offsets=None) -> "ColumnLikelihood":
        """The head of columns of the given types (``likelihood="bernoulli"``: real
        columns are Bernoulli pixels, values in [0, 1], instead of normal)."""
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"Unknown likelihood {likelihood!r}: use 'gaussian' or 'bernoulli'.")
        columns = ColumnFamilies(
            kinds, n_levels, families={"real": Bernoulli} if likelihood == "bernoulli" else None,
            normal_width=2 if conditional_variance else 1,
        )
        return cls(columns, conditional_variance, min_variance, count_offsets)

    # ------------------------------------------------------------ parameters
    def families(self, params: torch.Tensor) -> list[Family]:
        """Each block's family (in model units) from the decoder's output ``params``."""
        out = []
        for block in self.columns.blocks:
            raw = params[..., block.params]
            if block.family is Normal:
                width = len(block.columns)
                mean = raw[..., :width]
                r = raw[..., width:] if self.conditional else self.raw_log_variance
                floor = self.log_min_variance
                out.append(Normal(mean, floor + F.softplus(r - floor)))
            elif block.family is Poisson:
                out.append(Poisson(raw + self.count_offsets.to(params.dtype)))
            elif block.family is Bernoulli:
                out.append(Bernoulli(raw))
            elif block.family is Categorical:
                out.append(Categorical(raw.unsqueeze(-2), ordered=block.ordered))
            else:
                out.append(OrderedLogistic.from_unconstrained(raw.unsqueeze(-2)))
        return out

    # -------------------------------------------------------------- the density
    def log_prob(self, x: torch.Tensor, params: torch.Tensor, observed: torch.Tensor | None = None,
                 masked: bool = True) -> torch.Tensor:
        """``sum_j log p(x_j | params)`` over the observed cells (not NaN, and in ``observed``
        when that mask is given). ``masked=False``: the caller vouches that no cell is
        missing (the same values, without the masking's cost)."""
        if observed is not None:
            x = torch.where(observed, x, torch.full((), math.nan, dtype=x.dtype, device=x.device))
            masked = True
        return self.columns.log_prob(x, self.families(params), masked)

    def cell_log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(x_j | params)`` per cell (..., D); 0 where missing."""
        return self.columns.cell_log_prob(x, self.families(params))

    def encoder_features(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """What the encoder sees of rows ``x`` in model units: numbers, ``log(1 + x)`` for
        counts, one-hot levels, 0 for every missing cell (``masked=False``: none is)."""
        return self.columns.features(x, masked)

    # ------------------------------------------------------- draws and points
    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draws of every column given ``params`` (..., P), in model units (..., D)."""
        return self.columns.sample(self.families(params), generator)

    def point(self, params: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Imputation points (..., D) in model units, of ``p(x | params)`` or of the mixture
        ``sum_s weights_s p(x | params_s)`` over the dimension before the last."""
        return self.columns.point(self.families(params), weights)

    def level_probabilities(self, params: torch.Tensor, weights: torch.Tensor | None = None,
                            columns: list[int] | None = None) -> dict[int, torch.Tensor]:
        """``p(x_j = k)`` (..., L_j) of the level columns (of the mixture with ``weights``)."""
        return self.columns.level_probabilities(self.families(params), weights, columns)
