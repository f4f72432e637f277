"""Column families: the distribution of each column type, written once.

Every model describes a table's columns with the families below. A family is an
object built from its parameters (tensors that broadcast over any leading batch
dimensions, e.g. rows, importance samples or mixture components) that gives

``log_prob(x)``
    ``log p(x)`` per cell. A missing cell (NaN) contributes exactly 0 and a finite
    gradient (the missing values are replaced before any arithmetic, as pyro's
    ``NanMasked*``): callers never branch on "has missing". A caller that knows a
    batch is complete may pass ``masked=False`` to skip the masking (the same values,
    three elementwise passes fewer: a training loop's hot path).
``sample(generator)``, ``mean``, ``point(weights)``
    Draws from a ``torch.Generator``, the mean, and the point estimate that
    imputation uses, of the distribution or of a finite mixture of it (``weights``
    over the batch dimension just before the column dimension).
``outside_support(x)``, ``support``
    Which observed values the family cannot take, and its support in words: the
    value checks of the whole package.
``features(x, n_levels)``
    What a variational autoencoder's encoder sees of a column.

==============================  ==================  ================  ==============================
family                          column type         support           ``point`` (imputation)
==============================  ==================  ================  ==============================
:class:`Normal`                 real                real numbers      mean
:class:`LogNormal`              positive            x > 0             geometric mean ``exp(E log x)``
:class:`ZeroInflatedLogNormal`  positive (mixture)  x >= 0            0 if ``P(x = 0) >= 1/2``, else the geometric mean of x > 0
:class:`Poisson`                count               integers >= 0     mean
:class:`Bernoulli`              binary              values in [0, 1]  mode
:class:`Categorical`            categorical         codes 0 .. L-1    mode (median when ``ordered``)
:class:`OrderedLogistic`        ordinal             codes 0 .. L-1    median
==============================  ==================  ================  ==============================

:data:`FAMILIES` maps each column type to its family: the one place that decides.

**Exponential families** (every family but the ordered logit) are written as
``p(x) = h(x) exp(eta . T(x) - A(eta))`` and also give the sufficient statistics
``statistics(x) = T(x)``, the natural parameters ``natural``, the log-normaliser
``log_normalizer(eta) = A(eta)`` (what a restricted Boltzmann machine's visible
layer needs), its gradient ``mean_statistics(eta) = E[T(x)]``, the weighted
statistics of EM (:meth:`ExponentialFamily.weighted_statistics`, with
responsibilities of shape ``(n, K)``) and the closed-form M-step with a conjugate
prior (:meth:`m_step`), batched over ``K`` components.

:class:`ColumnFamilies` composes families over a table's columns: blocks of
columns of one family, each a slice of a parameter vector (what a VAE's decoder
outputs, or an RBM's visible input), the encoder features, the RBM's visible
statistics (one-hot levels), draws, points and level probabilities, and the
standardisation of the columns with a location and a scale.

Everything here is torch; nothing knows about numpy, pandas or estimators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "FAMILIES",
    "LEVEL_TYPES",
    "ORDINAL_MIN_GAP",
    "Family",
    "ExponentialFamily",
    "Normal",
    "LogNormal",
    "ZeroInflatedLogNormal",
    "Poisson",
    "Bernoulli",
    "Categorical",
    "OrderedLogistic",
    "Statistics",
    "ColumnFamilies",
    "level_point",
    "ordinal_log_probs",
    "ordinal_thresholds",
    "sample_levels",
    "softplus",
    "support_error",
]

LOG_2PI = math.log(2.0 * math.pi)

#: column types whose cells are level codes (imputed by a mode or a median)
LEVEL_TYPES = ("binary", "categorical", "ordinal")

#: least gap between consecutive ordinal thresholds (logit scale)
ORDINAL_MIN_GAP = 1e-3


# ------------------------------------------------------------------ pure functions
def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)`` computed as ``max(x, 0) + log1p(e^-|x|)``, exact to rounding for every ``x``.

    ``torch.nn.functional.softplus`` returns ``x`` itself above ``x = 20``, dropping
    ``e^-x`` (2e-9): more than float64 resolves, an error that an RBM's exact
    partition function would accumulate over its units and that would break a
    planar flow's constraint ``w . u_hat = -1 + softplus(w . u)``. It is the
    Bernoulli log-normaliser (:meth:`Bernoulli.log_normalizer`); the log
    probabilities keep torch's version, whose cut-off costs nothing in a loss.
    """
    return x.clamp_min(0.0) + torch.log1p(torch.exp(-x.abs()))


def _zero(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=x.dtype, device=x.device)


def broadcast_shapes(*shapes) -> torch.Size:
    """``torch.broadcast_shapes`` by numpy's rule (the same answer): torch's first call
    imports its primitives, 1.9 s of a process's first imputation at load 5, and each
    call after costs 80 us against numpy's 2 us."""
    try:
        return torch.Size(np.broadcast_shapes(*(tuple(s) for s in shapes)))
    except ValueError as error:  # torch's type for shapes that do not broadcast
        raise RuntimeError(str(error)) from None


def _missing(x: torch.Tensor, masked: bool = True) -> torch.Tensor | None:
    """The missing cells of ``x`` (NaN); ``None`` when the caller vouches for none (``masked=False``)."""
    return torch.isnan(x) if masked else None


def _filled(x: torch.Tensor, missing: torch.Tensor | None, value: float = 0.0) -> torch.Tensor:
    """``x`` with ``value`` where ``missing``: a NaN in the discarded branch of a later
    ``where`` would still poison the gradient (``0 * NaN``), so it goes first."""
    if missing is None:
        return x
    return torch.where(missing, torch.full((), value, dtype=x.dtype, device=x.device), x)


def _dropped(terms: torch.Tensor, missing: torch.Tensor | None) -> torch.Tensor:
    return terms if missing is None else torch.where(missing, _zero(terms), terms)


def ordinal_thresholds(raw: torch.Tensor) -> torch.Tensor:
    """Strictly increasing thresholds ``theta_1 < ... < theta_{L-1}`` from unconstrained ``raw``.

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
    """Log-probabilities of the ``L`` levels of an ordered logit, shape (..., L).

    ``P(x <= k) = sigmoid(theta_{k+1} - eta)`` for the location ``eta`` (..., 1) and
    increasing thresholds ``theta`` (..., L - 1), so ``P(x = k) = sigmoid(b) -
    sigmoid(a)`` with ``a = theta_k - eta`` and ``b = theta_{k+1} - eta`` (``theta_0 =
    -inf``, ``theta_L = +inf``). Computed as ``log sigmoid(b) + log sigmoid(-a) +
    log(1 - exp(a - b))``, an identity that stays accurate in both tails.
    """
    n_levels = thresholds.shape[-1] + 1
    if n_levels == 1:
        return torch.zeros_like(location)
    cut = thresholds - location  # (..., L - 1)
    zero = torch.zeros_like(location).expand(cut.shape[:-1] + (1,))
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


def level_point(probabilities: torch.Tensor, ordered: bool = False) -> torch.Tensor:
    """The point imputation of a level cell from its level probabilities (..., L).

    The mode for unordered levels (the most probable one: fewest
    misclassifications), the median for ordered ones (the first level whose
    cumulative probability reaches 1/2: the smallest expected rank shift). The one
    place this rule is written. Integer codes of shape (...).
    """
    if ordered:
        below = probabilities.cumsum(-1) < 0.5 - 1e-12
        return below.sum(-1).clamp_max(probabilities.shape[-1] - 1)
    return probabilities.argmax(-1)


def sample_levels(probabilities: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Level codes (...) drawn with ``probabilities`` (..., L): the inverse CDF of one uniform each.

    float32 uniforms cost about half as much as float64 ones; their 2**-24 grid
    moves a level's probability by less than 6e-8.
    """
    u = torch.rand(probabilities.shape[:-1] + (1,), generator=generator, dtype=torch.float32,
                   device=probabilities.device)
    level = torch.lt(probabilities.cumsum(-1), u).sum(-1)
    return level.clamp_max(probabilities.shape[-1] - 1)


def _mixture(values: torch.Tensor, weights: torch.Tensor | None, dim: int) -> torch.Tensor:
    """``sum_s w_s values_s`` over batch dimension ``dim`` (negative); ``values`` itself without weights."""
    if weights is None:
        return values
    w = weights.reshape(weights.shape + (1,) * (-dim - 1))
    return (w * values).sum(dim)


def support_error(name: str, described: str, family: type, values: torch.Tensor, advice: str = "") -> str:
    """The one message for values outside a family's support (``values``: the offending ones)."""
    shown = ", ".join(f"{float(v):g}" for v in values[:3].tolist())
    more = f" and {values.numel() - 3} more" if values.numel() > 3 else ""
    return (f"Column {name!r} ({described}) is modelled by {family.__name__}, whose support is "
            f"{family.support}, but has values outside it ({shown}{more}). {advice}").rstrip()


# ---------------------------------------------------------------------- families
class Family:
    """A distribution per cell; its parameters broadcast over leading batch dimensions.

    The last batch dimension of a family built for ``C`` columns is the column
    dimension; a categorical family adds its levels after it. Subclasses give
    ``log_prob``, ``sample``, ``mean``, ``point`` and the class-level value side
    (``support``, ``outside_support``, ``features``).
    """

    #: the support, in words (error messages)
    support = "any real number"
    #: whether some real values lie outside the support (checked by the models)
    restricts_support = False
    #: whether cells are level codes (with ``level_log_probs``)
    discrete = False
    #: names of the parameter tensors (for ``select`` and ``repr``)
    _parameters: tuple[str, ...] = ()

    def __repr__(self) -> str:
        shapes = ", ".join(f"{p}: {tuple(getattr(self, p).shape)}" for p in self._parameters)
        return f"{type(self).__name__}({shapes})"

    @property
    def batch_shape(self) -> torch.Size:
        return broadcast_shapes(*(self._batch_part(p) for p in self._parameters))

    def _batch_part(self, name: str) -> torch.Size:
        return getattr(self, name).shape

    def select(self, index) -> Family:
        """The family at ``index`` of its leading batch dimensions (e.g. one component per row)."""
        shape = self.batch_shape
        values = {}
        for name in self._parameters:
            tensor = getattr(self, name)
            extra = tensor.shape[len(self._batch_part(name)):]
            values[name] = tensor.expand(shape + extra)[index]
        return type(self)(**values, **self._options())

    def _options(self) -> dict:
        return {}

    # ------------------------------------------------------------- value side
    @classmethod
    def outside_support(cls, x: torch.Tensor) -> torch.Tensor:
        """Observed values the family cannot take (NaN is missing, never outside)."""
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)

    @classmethod
    def feature_width(cls, n_levels: int = 0) -> int:
        """Encoder features per column."""
        return 1

    @classmethod
    def features(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        """What an encoder sees of cells ``x`` (..., C): the values, 0 where missing."""
        return _filled(x, _missing(x, masked))

    # ---------------------------------------------------------------- the law
    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:  # pragma: no cover
        """``log p(x)`` per cell; 0 for a missing (NaN) cell unless ``masked=False``."""
        raise NotImplementedError

    def summed_log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """``log_prob(x).sum(-1)``: the log-probability of each row's cells of these columns."""
        return self.log_prob(x, masked).sum(-1)

    def sample(self, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def mean(self) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def point(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Imputation point of the family, or of ``sum_s w_s p_s`` over the batch dimension
        before the columns when ``weights`` are given: here the mean."""
        return _mixture(self.mean.expand(self.batch_shape), weights, -2)


class ExponentialFamily(Family):
    """``p(x) = h(x) exp(eta . T(x) - A(eta))``: statistics, log-normaliser, EM.

    Shapes: ``statistics(x)`` maps cells (..., C) to (..., C, m), ``natural`` is
    (..., C, m), ``log_normalizer`` and ``log_base_measure`` are per cell (..., C).
    """

    @classmethod
    def n_statistics(cls, n_levels: int = 0) -> int:
        return 1

    @classmethod
    def statistics(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        """``T(x)`` (..., C, m); 0 for a missing cell."""
        return _filled(x, _missing(x, masked)).unsqueeze(-1)

    @property
    def natural(self) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def from_natural(cls, natural: torch.Tensor) -> ExponentialFamily:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def log_normalizer(cls, natural: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def mean_statistics(cls, natural: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """``E[T(x)] = grad A(eta)``, shape of ``natural``."""
        raise NotImplementedError

    @classmethod
    def log_base_measure(cls, x: torch.Tensor) -> torch.Tensor:
        """``log h(x)`` per cell; 0 for a missing cell."""
        return torch.zeros(x.shape, dtype=x.dtype, device=x.device)

    @classmethod
    def weighted_statistics(cls, x: torch.Tensor, weights: torch.Tensor | None = None,
                            n_levels: int = 0) -> Statistics:
        """EM's E-step sums: ``n_kc = sum_i w_ik [x_ic observed]``, ``S_kc = sum_i w_ik T(x_ic)``.

        Parameters
        ----------
        x : tensor of shape (n, C)
            Cells of ``C`` columns of this family; NaN where missing (left out of
            both sums: the statistics of the observed cells).
        weights : tensor of shape (n, K), optional
            Responsibilities; ``None`` is one component with weight 1.
        n_levels : int
            Levels of a categorical family.
        """
        if weights is None:
            weights = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        observed = (~torch.isnan(x)).to(weights.dtype)
        T = cls.statistics(x, n_levels).to(weights.dtype)
        return Statistics(weights.T @ observed, torch.einsum("nk,ncm->kcm", weights, T))

    @classmethod
    def m_step(cls, statistics: Statistics, **prior) -> ExponentialFamily:  # pragma: no cover
        raise NotImplementedError


@dataclass
class Statistics:
    """Summed statistics of EM: ``count`` (K, C) of observed cells and ``sums`` (K, C, m).

    Statistics of chunks add up (``a + b``), so a data source can reduce them.
    """

    count: torch.Tensor
    sums: torch.Tensor

    def __add__(self, other: Statistics) -> Statistics:
        return Statistics(self.count + other.count, self.sums + other.sums)


def _safe_count(count: torch.Tensor) -> torch.Tensor:
    # as scikit-learn: 10 eps keeps an empty component's moments finite
    return count + 10 * torch.finfo(count.dtype).eps


class Normal(ExponentialFamily):
    """``N(x; loc, exp(log_var))``, parameterised by its log-variance.

    ``log p(x) = -(x - loc)^2 / (2 v) - log v / 2 - log(2 pi) / 2``;
    ``T(x) = (x, x^2)``, ``eta = (loc / v, -1 / (2 v))``,
    ``A(eta) = -eta_1^2 / (4 eta_2) - log(-2 eta_2) / 2``, ``h(x) = (2 pi)^-1/2``.

    Parameters
    ----------
    loc, log_var : tensors broadcasting together

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import Normal
    >>> family = Normal(torch.tensor([0.0, 1.0]), torch.zeros(2))
    >>> family.log_prob(torch.tensor([0.0, float("nan")]))  # a missing cell adds 0
    tensor([-0.9189,  0.0000])
    """

    _parameters = ("loc", "log_var")

    def __init__(self, loc: torch.Tensor, log_var: torch.Tensor):
        self.loc, self.log_var = loc, log_var

    @property
    def variance(self) -> torch.Tensor:
        return torch.exp(self.log_var)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        missing = _missing(x, masked)
        x = _filled(x, missing)
        terms = (x - self.loc).square() * torch.exp(-self.log_var) + (self.log_var + LOG_2PI)
        return -0.5 * _dropped(terms, missing)

    def summed_log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        if masked or type(self) is not Normal:
            return super().summed_log_prob(x, masked)
        # complete rows: the constant once per row, not per cell (two passes fewer)
        terms = (x - self.loc).square() * torch.exp(-self.log_var) + self.log_var
        return -0.5 * (terms.sum(-1) + terms.shape[-1] * LOG_2PI)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        loc = self.loc.expand(self.batch_shape)
        noise = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return loc + torch.exp(0.5 * self.log_var) * noise

    # ------------------------------------------------------ exponential family
    @classmethod
    def n_statistics(cls, n_levels: int = 0) -> int:
        return 2

    @classmethod
    def statistics(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        x = _filled(x, _missing(x, masked))
        return torch.stack([x, x.square()], dim=-1)

    @property
    def natural(self) -> torch.Tensor:
        precision = torch.exp(-self.log_var)
        loc, precision = torch.broadcast_tensors(self.loc, precision)
        return torch.stack([loc * precision, -0.5 * precision], dim=-1)

    @classmethod
    def from_natural(cls, natural: torch.Tensor) -> Normal:
        variance = -0.5 / natural[..., 1]
        return cls(natural[..., 0] * variance, torch.log(variance))

    @classmethod
    def log_normalizer(cls, natural: torch.Tensor) -> torch.Tensor:
        a, b = natural[..., 0], natural[..., 1]
        return -a.square() / (4.0 * b) - 0.5 * torch.log(-2.0 * b)

    @classmethod
    def mean_statistics(cls, natural: torch.Tensor) -> torch.Tensor:
        family = cls.from_natural(natural)  # on the normal scale for a log-normal too
        return torch.stack([family.loc, family.loc.square() + torch.exp(family.log_var)], dim=-1)

    @classmethod
    def log_base_measure(cls, x: torch.Tensor) -> torch.Tensor:
        return _dropped(torch.full_like(x, -0.5 * LOG_2PI), torch.isnan(x))

    @classmethod
    def m_step(cls, statistics: Statistics, *, min_variance: float = 0.0, prior_count: float = 0.0,
               prior_variance: torch.Tensor | None = None) -> Normal:
        """Weighted maximum likelihood, or MAP with a conjugate prior on the variance.

        ``loc = S_1 / n`` and ``v = (n s^2 + c Psi) / (n + c) + min_variance`` with
        ``s^2 = S_2 / n - loc^2`` the weighted variance: the mode of the posterior
        under a flat prior on ``loc`` and an inverse-gamma prior ``IG(c / 2 - 1,
        c Psi / 2)`` on ``v``, as if ``c = prior_count`` pseudo-observations of
        variance ``Psi = prior_variance`` joined (Fraley & Raftery 2007; ``c = 0``:
        the maximum-likelihood answer). ``n`` gets 10 eps added so that an empty
        component stays finite. Statistics of raw data far from 0 lose precision in
        ``S_2 / n - loc^2``: centre the data first.
        """
        n = _safe_count(statistics.count)
        loc = statistics.sums[..., 0] / n
        variance = (statistics.sums[..., 1] / n - loc.square()).clamp_min(0.0)
        if prior_count > 0:
            weight = n / (n + prior_count)
            variance = weight * variance + (1.0 - weight) * prior_variance
        return cls(loc, torch.log(variance + min_variance))


class LogNormal(Normal):
    """``log x ~ N(loc, exp(log_var))``: a normal pushed through ``exp``, its Jacobian inside.

    ``log p(x) = log N(log x; loc, v) - log x`` for ``x > 0``; the Jacobian term
    ``-log x`` (:meth:`log_det`) is the family's own, so no model adds it by hand.
    ``T(x) = (log x, log^2 x)`` and ``h(x) = (2 pi)^-1/2 / x``; the natural
    parameters, log-normaliser and M-step are the normal's on the log scale. The
    point estimate is the geometric mean ``exp(loc)`` (of a mixture:
    ``exp(sum_s w_s loc_s)``, the conditional geometric mean): a log-normal's mean
    ``exp(loc + v / 2)`` grows exponentially with its variance, so one wide
    component would dominate (or overflow) a weighted mean.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import LogNormal
    >>> family = LogNormal(torch.tensor(0.0), torch.tensor(0.0))
    >>> round(float(family.log_prob(torch.tensor(1.0))), 4), float(family.point())
    (-0.9189, 1.0)
    """

    support = "values > 0"
    restricts_support = True

    # the transform to the normal scale, its inverse and its log-Jacobian
    @staticmethod
    def to_normal(x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    @staticmethod
    def from_normal(y: torch.Tensor) -> torch.Tensor:
        return torch.exp(y)

    @staticmethod
    def log_det(y: torch.Tensor) -> torch.Tensor:
        """``log |d log x / dx| = -log x`` at ``x = exp(y)``: ``-y``."""
        return -y

    @classmethod
    def outside_support(cls, x: torch.Tensor) -> torch.Tensor:
        return x <= 0

    @property
    def mean(self) -> torch.Tensor:
        return torch.exp(self.loc + 0.5 * torch.exp(self.log_var))

    @property
    def variance(self) -> torch.Tensor:
        """``(e^v - 1) e^(2 loc + v)``; the normal scale's variance is ``exp(log_var)``."""
        v = torch.exp(self.log_var)
        return torch.expm1(v) * torch.exp(2.0 * self.loc + v)

    def point(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        return torch.exp(_mixture(self.loc.expand(self.batch_shape), weights, -2))

    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        missing = _missing(x, masked)
        y = torch.log(_filled(x, missing, 1.0))
        return _dropped(super().log_prob(y, masked=False) + self.log_det(y), missing)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        return torch.exp(super().sample(generator))

    @classmethod
    def statistics(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        return super().statistics(torch.log(x), n_levels, masked)

    @classmethod
    def log_base_measure(cls, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x)
        return _dropped(-0.5 * LOG_2PI - torch.log(_filled(x, missing, 1.0)), missing)


class ZeroInflatedLogNormal(Family):
    """A positive column with zeros: ``x = 0`` with probability ``pi = sigmoid(zero_logits)``,
    else ``log x ~ N(loc, exp(log_var))`` (Aitchison's delta-lognormal).

    ``log p(0) = log pi`` (a point mass: a log-probability, like a level's) and
    ``log p(x) = log(1 - pi) + log N(log x; loc, v) - log x`` for ``x > 0`` (a
    density). Real tables have such columns (amounts, capital gains: mostly 0, else
    spread over decades). The point estimate follows the two parts: 0 when ``pi >=
    1/2`` (the mode of "is it zero", as for a binary column), else the geometric mean
    ``exp(loc)`` of the positive part (:class:`LogNormal`'s rule). Of a mixture with
    weights ``w_s``: ``pi = sum_s w_s pi_s``, and the positive part's geometric mean
    ``exp(sum_s w'_s loc_s)`` with ``w'_s`` proportional to ``w_s (1 - pi_s)`` (the
    weights given that ``x > 0``).

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import ZeroInflatedLogNormal
    >>> family = ZeroInflatedLogNormal(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))
    >>> family.log_prob(torch.tensor([0.0, 1.0])).exp()  # P(0) = 1/2; half a lognormal at 1
    tensor([0.5000, 0.1995])
    """

    support = "values >= 0"
    restricts_support = True
    _parameters = ("zero_logits", "loc", "log_var")

    def __init__(self, zero_logits: torch.Tensor, loc: torch.Tensor, log_var: torch.Tensor):
        self.zero_logits, self.loc, self.log_var = zero_logits, loc, log_var

    @property
    def zero_probability(self) -> torch.Tensor:
        return torch.sigmoid(self.zero_logits)

    @property
    def positive(self) -> LogNormal:
        """The distribution of ``x`` given ``x > 0``."""
        return LogNormal(self.loc, self.log_var)

    @classmethod
    def outside_support(cls, x: torch.Tensor) -> torch.Tensor:
        return x < 0

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(-self.zero_logits) * self.positive.mean

    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        missing = _missing(x, masked)
        x = _filled(x, missing, 1.0)
        zero = x == 0
        positive = self.positive.log_prob(torch.where(zero, torch.ones_like(x), x), masked=False)
        terms = torch.where(zero, F.logsigmoid(self.zero_logits), F.logsigmoid(-self.zero_logits) + positive)
        return _dropped(terms, missing)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        zero = Bernoulli(self.zero_logits.expand(self.batch_shape)).sample(generator)
        return torch.where(zero > 0, torch.zeros_like(zero), self.positive.sample(generator).expand_as(zero))

    def point(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        shape = self.batch_shape
        pi = self.zero_probability.expand(shape)
        loc = self.loc.expand(shape)
        if weights is None:
            zero, log_scale = pi, loc
        else:
            zero = _mixture(pi, weights, -2)
            given_positive = weights.reshape(weights.shape + (1,)) * (1.0 - pi)
            total = given_positive.sum(-2)
            log_scale = (given_positive * loc).sum(-2) / torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(zero >= 0.5, torch.zeros_like(log_scale), torch.exp(log_scale))


class Poisson(ExponentialFamily):
    """``Poisson(x; exp(log_rate))``: ``log p(x) = x l - e^l - log x!`` for ``x`` in 0, 1, ...

    ``T(x) = x``, ``eta = l``, ``A(eta) = e^eta``, ``h(x) = 1 / x!``.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import Poisson
    >>> round(float(Poisson(torch.tensor(0.0)).log_prob(torch.tensor(0.0))), 6)
    -1.0
    """

    support = "integers >= 0"
    restricts_support = True
    _parameters = ("log_rate",)

    def __init__(self, log_rate: torch.Tensor):
        self.log_rate = log_rate

    @property
    def rate(self) -> torch.Tensor:
        return torch.exp(self.log_rate)

    @property
    def mean(self) -> torch.Tensor:
        return self.rate

    @property
    def variance(self) -> torch.Tensor:
        return self.rate

    @classmethod
    def outside_support(cls, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | (torch.remainder(x, 1.0) > 0)

    @classmethod
    def features(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        """``log(1 + x)``: counts on the scale of their log-rate."""
        return torch.log1p(_filled(x, _missing(x, masked)).clamp_min(0.0))

    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        missing = _missing(x, masked)
        x = _filled(x, missing)
        return _dropped(x * self.log_rate - torch.exp(self.log_rate) - torch.lgamma(x + 1.0), missing)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        return torch.poisson(self.rate, generator=generator)

    @property
    def natural(self) -> torch.Tensor:
        return self.log_rate.unsqueeze(-1)

    @classmethod
    def from_natural(cls, natural: torch.Tensor) -> Poisson:
        return cls(natural[..., 0])

    @classmethod
    def log_normalizer(cls, natural: torch.Tensor) -> torch.Tensor:
        return torch.exp(natural[..., 0])

    @classmethod
    def mean_statistics(cls, natural: torch.Tensor) -> torch.Tensor:
        return torch.exp(natural)

    @classmethod
    def log_base_measure(cls, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x)
        return _dropped(-torch.lgamma(_filled(x, missing) + 1.0), missing)

    @classmethod
    def m_step(cls, statistics: Statistics, *, prior_count: float = 0.0, prior_mean: float = 1.0) -> Poisson:
        """``rate = (S + c m) / (n + c)``: weighted maximum likelihood (``c = 0``) or the
        posterior mode under a ``Gamma(c m + 1, c)`` prior, ``c = prior_count``
        pseudo-observations of mean ``m = prior_mean``."""
        n = _safe_count(statistics.count)
        rate = (statistics.sums[..., 0] + prior_count * prior_mean) / (n + prior_count)
        return cls(torch.log(rate))


class _LevelFamily(Family):
    """What families of level codes share: level probabilities, mode or median, draws."""

    discrete = True
    ordered = False
    support = "level codes 0, 1, ..."

    def level_log_probs(self) -> torch.Tensor:  # pragma: no cover
        """``log p(x = k)`` of every level, shape batch + (L,)."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        table = self.level_log_probs()
        missing = _missing(x, masked)
        shape = broadcast_shapes(x.shape, table.shape[:-1])
        code = _filled(x, missing).long().clamp(0, table.shape[-1] - 1).expand(shape)
        picked = torch.gather(table.expand(shape + table.shape[-1:]), -1, code.unsqueeze(-1)).squeeze(-1)
        return _dropped(picked, None if missing is None else missing.expand(shape))

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        probabilities = torch.exp(self.level_log_probs())
        return sample_levels(probabilities, generator).to(probabilities.dtype)

    def point(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The mode, or the median when ordered, of the (mixture's) level probabilities."""
        probabilities = _mixture(torch.exp(self.level_log_probs()), weights, -3)
        return level_point(probabilities, self.ordered).to(probabilities.dtype)

    @classmethod
    def outside_support(cls, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | (torch.remainder(x, 1.0) > 0)


class _OneHotLevels(_LevelFamily):
    """Levels ``0 .. L-1`` seen as one-hot vectors (encoder features and statistics)."""

    @classmethod
    def feature_width(cls, n_levels: int = 0) -> int:
        return n_levels

    @classmethod
    def features(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        """One-hot vectors (..., C * L), all zero where missing."""
        return cls.statistics(x, n_levels, masked).flatten(-2)

    @classmethod
    def n_statistics(cls, n_levels: int = 0) -> int:
        return n_levels

    @classmethod
    def statistics(cls, x: torch.Tensor, n_levels: int = 0, masked: bool = True) -> torch.Tensor:
        """One-hot vectors (..., C, L) of the codes ``x`` (..., C); zeros where missing."""
        missing = _missing(x, masked)
        code = _filled(x, missing).long().clamp(0, n_levels - 1)
        one_hot = F.one_hot(code, n_levels).to(x.dtype)
        return one_hot if missing is None else one_hot * (~missing).unsqueeze(-1).to(x.dtype)


class Bernoulli(_LevelFamily, ExponentialFamily):
    """``P(x = 1) = sigmoid(logits)``: ``log p(x) = x l - log(1 + e^l)``.

    For ``x`` in [0, 1] (a probability of being 1, as scikit-learn's Bernoulli
    models accept) the same formula is a "soft" log-likelihood. ``T(x) = x``,
    ``eta = l``, ``A(eta) = softplus(eta)`` (exact, :func:`softplus`). The mean is
    ``sigmoid(l)``, the point estimate (a binary level) the mode.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import Bernoulli
    >>> family = Bernoulli(torch.tensor([0.3, -1.2]))
    >>> states = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> round(float(family.log_prob(states).sum(-1).exp().sum()), 6)
    1.0
    """

    support = "values in [0, 1]"
    restricts_support = True
    _parameters = ("logits",)

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def variance(self) -> torch.Tensor:
        p = torch.sigmoid(self.logits)
        return p * (1.0 - p)

    @classmethod
    def outside_support(cls, x: torch.Tensor) -> torch.Tensor:
        return (x < 0) | (x > 1)

    def level_log_probs(self) -> torch.Tensor:
        l = self.logits.unsqueeze(-1)
        return torch.cat([F.logsigmoid(-l), F.logsigmoid(l)], dim=-1)

    def log_prob(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        missing = _missing(x, masked)
        return _dropped(_filled(x, missing) * self.logits - F.softplus(self.logits), missing)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        return self.sample_statistics(self.mean, generator)

    @staticmethod
    def sample_statistics(mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Binary draws with probabilities ``mean``: ``(u < p)`` for float32 uniforms ``u``
        (half the cost of float64 ones; their 2**-24 grid moves ``p`` by < 6e-8)."""
        u = torch.rand(mean.shape, generator=generator, dtype=torch.float32, device=mean.device)
        return torch.lt(u, mean).to(mean.dtype)

    @property
    def natural(self) -> torch.Tensor:
        return self.logits.unsqueeze(-1)

    @classmethod
    def from_natural(cls, natural: torch.Tensor) -> Bernoulli:
        return cls(natural[..., 0])

    @classmethod
    def log_normalizer(cls, natural: torch.Tensor) -> torch.Tensor:
        return softplus(natural[..., 0])

    @classmethod
    def mean_statistics(cls, natural: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(natural)

    @classmethod
    def m_step(cls, statistics: Statistics, *, pseudo_count: float = 0.0) -> Bernoulli:
        """``p = (S + a) / (n + 2 a)``, logits ``log p - log(1 - p)``: weighted maximum
        likelihood (``a = 0``), or the posterior mode under ``Beta(1 + a, 1 + a)``."""
        p = (statistics.sums[..., 0] + pseudo_count) / (statistics.count + 2.0 * pseudo_count)
        return cls(torch.log(p) - torch.log1p(-p))


class Categorical(_OneHotLevels, ExponentialFamily):
    """``P(x = k) = softmax(logits)_k`` over ``L`` levels (logits of shape batch + (L,)).

    ``T(x)`` is the one-hot vector of ``x``, ``eta`` the logits, ``A(eta) =
    logsumexp(eta)``. ``ordered=True`` (an ordinal column modelled as categorical
    over its ordered levels) makes the point estimate the median instead of the
    mode.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import Categorical
    >>> family = Categorical(torch.tensor([0.0, 1.0, 2.0]), ordered=True)
    >>> family.log_prob(torch.tensor(2.0)).exp().round(decimals=4), int(family.point())
    (tensor(0.6652), 2)
    """

    _parameters = ("logits",)

    def __init__(self, logits: torch.Tensor, ordered: bool = False):
        self.logits, self.ordered = logits, ordered

    def _batch_part(self, name: str) -> torch.Size:
        return self.logits.shape[:-1]

    def _options(self) -> dict:
        return {"ordered": self.ordered}

    @property
    def n_levels(self) -> int:
        return self.logits.shape[-1]

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    def level_log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    @staticmethod
    def sample_statistics(mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One-hot draws (..., L) with level probabilities ``mean`` (:func:`sample_levels`)."""
        return F.one_hot(sample_levels(mean, generator), mean.shape[-1]).to(mean.dtype)

    @property
    def natural(self) -> torch.Tensor:
        return self.logits

    @classmethod
    def from_natural(cls, natural: torch.Tensor) -> Categorical:
        return cls(natural)

    @classmethod
    def log_normalizer(cls, natural: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(natural, dim=-1)

    @classmethod
    def mean_statistics(cls, natural: torch.Tensor) -> torch.Tensor:
        return torch.softmax(natural, dim=-1)

    @classmethod
    def m_step(cls, statistics: Statistics, *, pseudo_count: float = 0.0, ordered: bool = False) -> Categorical:
        """``p_l = (S_l + a) / (n + a L)``: weighted maximum likelihood (``a = 0``), or the
        posterior mode under a symmetric ``Dirichlet(1 + a)`` prior."""
        n_levels = statistics.sums.shape[-1]
        p = (statistics.sums + pseudo_count) / (statistics.count.unsqueeze(-1) + pseudo_count * n_levels)
        return cls(torch.log(p), ordered=ordered)


class OrderedLogistic(_OneHotLevels):
    """Ordered logit: ``P(x <= k) = sigmoid(theta_{k+1} - location)`` (McCullagh 1980).

    ``cutpoints`` (batch + (L - 1,)) increase; :meth:`from_unconstrained` builds them
    from any real vector (:func:`ordinal_thresholds`). Not an exponential family
    (no closed-form M-step): models fitted by EM treat ordinal columns as
    ``Categorical(ordered=True)``. The point estimate is the median.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.distributions import OrderedLogistic
    >>> family = OrderedLogistic(torch.tensor(0.0), torch.tensor([-1.0, 1.0]))
    >>> round(float(family.level_log_probs().exp().sum()), 6), int(family.point())
    (1.0, 1)
    """

    _parameters = ("location", "cutpoints")
    ordered = True

    def __init__(self, location: torch.Tensor, cutpoints: torch.Tensor):
        self.location, self.cutpoints = location, cutpoints

    def _batch_part(self, name: str) -> torch.Size:
        tensor = getattr(self, name)
        return tensor.shape[:-1] if name == "cutpoints" else tensor.shape

    @classmethod
    def from_unconstrained(cls, raw: torch.Tensor) -> OrderedLogistic:
        """``raw`` (..., L): the location, then ``L - 1`` raw thresholds."""
        return cls(raw[..., 0], ordinal_thresholds(raw[..., 1:]))

    def level_log_probs(self) -> torch.Tensor:
        return ordinal_log_probs(self.location.unsqueeze(-1), self.cutpoints)



#: the family of each column type: the one place that decides
FAMILIES: dict[str, type[Family]] = {
    "real": Normal,
    "positive": LogNormal,
    "count": Poisson,
    "binary": Bernoulli,
    "categorical": Categorical,
    "ordinal": OrderedLogistic,
}


# ------------------------------------------------------------------- composition
class Block(NamedTuple):
    """Columns of one family, side by side in a :class:`ColumnFamilies`.

    ``family`` is the family the composition evaluates in model units (a
    log-normal column is a normal on its standardised log); ``columns`` their
    positions; ``params``, ``features`` and ``statistics`` their slices of the
    parameter vector, the encoder features and the visible statistics; ``levels``
    whether the cells are level codes, ``ordered`` whether their levels are;
    ``index`` selects the columns (a slice when they are consecutive: a view).
    """

    family: type
    columns: list
    index: object
    n_levels: int
    params: slice
    features: slice
    statistics: slice
    levels: bool
    ordered: bool

    @property
    def width(self) -> int:
        return self.params.stop - self.params.start


class ColumnFamilies:
    """One family per column of a table, in blocks over slices of a parameter vector.

    Parameters
    ----------
    kinds : sequence of str
        The column types (``real``, ``positive``, ``count``, ``binary``,
        ``categorical``, ``ordinal``).
    n_levels : sequence of int, optional
        Levels of each column (0 for numbers).
    families : dict, optional
        Column type -> family, overriding :data:`FAMILIES` (e.g. ``{"real":
        Bernoulli}`` for numbers in [0, 1] modelled as Bernoulli pixels, or
        ``{"ordinal": Categorical}`` for a model whose levels are unordered).
    order : {"family", "column"}, default="family"
        Where the blocks go: ``"family"`` puts the location-scale columns
        (normal and log-normal) first, then the Poisson, then the Bernoulli
        columns, then each level column (a VAE decoder's layout); ``"column"``
        keeps the columns' order, consecutive columns of one family forming one
        block (an RBM's visible units).
    normal_width : int, default=1
        Parameters per location-scale column (2 when a decoder also outputs the
        variance); every other family has one per column, ``L`` per level column.

    Notes
    -----
    In *model units* a real column is standardised, ``u = (x - m) / s``, and a
    positive one is standardised on the log scale, ``u = (log x - m) / s``, both
    with the moments of their observed cells; the other columns are as they are.
    :meth:`to_model_units` and :meth:`to_user_units` convert, and
    :meth:`log_jacobian` gives ``log |du/dx|`` of a row's observed cells, so that a
    density in model units becomes one in the user's units.

    Examples
    --------
    >>> from skgenerative.distributions import ColumnFamilies
    >>> columns = ColumnFamilies(["real", "categorical", "count"], [0, 3, 0])
    >>> [(b.family.__name__, b.columns, b.width) for b in columns.blocks]
    [('Normal', [0], 1), ('Poisson', [2], 1), ('Categorical', [1], 3)]
    >>> columns.feature_width, columns.n_params
    (5, 5)
    """

    def __init__(self, kinds: Sequence[str], n_levels: Sequence[int] | None = None, *,
                 families: dict | None = None, order: str = "family", normal_width: int = 1):
        self.kinds = [str(k) for k in kinds]
        self.n_levels = [0] * len(self.kinds) if n_levels is None else [int(k) for k in n_levels]
        chosen = {**FAMILIES, **(families or {})}
        self.families = [chosen[k] for k in self.kinds]
        self.blocks: list[Block] = []
        starts = [0, 0, 0]  # of the parameters, the features, the statistics
        for family, columns in self._groups(order):
            k, kind = self.n_levels[columns[0]], self.kinds[columns[0]]
            base = Normal if issubclass(family, Normal) else family
            per_column = k if issubclass(base, _OneHotLevels) else (normal_width if base is Normal else 1)
            n_statistics = family.n_statistics(k) if issubclass(family, ExponentialFamily) else 0
            widths = [w * len(columns) for w in (per_column, family.feature_width(k), n_statistics)]
            slices = [slice(s, s + w) for s, w in zip(starts, widths)]
            starts = [s + w for s, w in zip(starts, widths)]
            consecutive = columns == list(range(columns[0], columns[0] + len(columns)))
            index = slice(columns[0], columns[0] + len(columns)) if consecutive else columns
            self.blocks.append(Block(base, columns, index, k, *slices, kind in LEVEL_TYPES, kind == "ordinal"))
        self.n_params, self.feature_width, self.n_statistics = starts
        #: the columns with a location and a scale (normal, log-normal), and the log-normal ones
        self.location_scale = [j for j, f in enumerate(self.families) if issubclass(f, Normal)]
        self.log_normal = [j for j, f in enumerate(self.families) if issubclass(f, LogNormal)]

    def _groups(self, order: str) -> list[tuple[type, list[int]]]:
        """Columns grouped into blocks: one family and one kind of cell (number or level) each."""
        key = [(Normal if issubclass(f, Normal) else f, k in LEVEL_TYPES) for f, k in zip(self.families, self.kinds)]
        alone = [issubclass(f, _OneHotLevels) for f in self.families]  # one block per level column
        if order == "column":  # runs of consecutive columns
            runs: list[list[int]] = []
            for j in range(len(key)):
                if runs and not alone[j] and not alone[runs[-1][0]] and key[j] == key[runs[-1][0]]:
                    runs[-1].append(j)
                else:
                    runs.append([j])
        elif order == "family":  # normal-scale, Poisson, Bernoulli, then each level column
            runs = []
            for family in (Normal, Poisson, Bernoulli):
                for levels in (False, True):
                    columns = [j for j in range(len(key)) if key[j] == (family, levels)]
                    runs += [columns] if columns else []
            runs += [[j] for j in range(len(key)) if alone[j]]
        else:
            raise ValueError(f"order must be 'family' or 'column', got {order!r}.")
        return [(self.families[run[0]], run) for run in runs]

    def __repr__(self) -> str:
        return f"ColumnFamilies({[(b.family.__name__, b.columns) for b in self.blocks]})"

    @property
    def n_features(self) -> int:
        return len(self.kinds)

    # ----------------------------------------------------------------- cells
    @staticmethod
    def take(x: torch.Tensor, block: Block) -> torch.Tensor:
        """The block's cells ``x[..., block.columns]`` (a view when they are consecutive)."""
        return x[..., block.index]

    def _assemble(self, parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """Per-block results (..., C_b) placed at their columns (..., D)."""
        if len(parts) == 1:  # one block over every column, in order
            return parts[0]
        shape = broadcast_shapes(*(p.shape[:-1] for p in parts)) + (self.n_features,)
        out = torch.zeros(shape, dtype=like.dtype, device=like.device)
        for block, part in zip(self.blocks, parts):
            out[..., block.columns] = part.expand(shape[:-1] + part.shape[-1:]).to(like.dtype)
        return out

    def cell_log_prob(self, x: torch.Tensor, families: list[Family], masked: bool = True) -> torch.Tensor:
        """``log p(x_j)`` per cell (..., D), in model units; 0 where missing (NaN)."""
        parts = [f.log_prob(self.take(x, b), masked) for b, f in zip(self.blocks, families)]
        return self._assemble(parts, parts[0])

    def log_prob(self, x: torch.Tensor, families: list[Family], masked: bool = True) -> torch.Tensor:
        """``sum_j log p(x_j)`` over the observed cells of each row, in model units."""
        total = None
        for block, family in zip(self.blocks, families):
            part = family.summed_log_prob(self.take(x, block), masked)
            total = part if total is None else total + part
        return total

    def features(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """Encoder features (..., feature_width) of rows in model units; 0 for missing cells."""
        parts = [b.family.features(self.take(x, b), b.n_levels, masked) for b in self.blocks]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def statistics(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """Sufficient statistics (..., n_statistics), block after block: an RBM's visible units."""
        parts = [b.family.statistics(self.take(x, b), b.n_levels, masked).flatten(-2) for b in self.blocks]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def values(self, statistics: torch.Tensor) -> torch.Tensor:
        """The cells (..., D) whose statistics are ``statistics``: a level's code from its one-hot
        vector, the statistic itself for a family with one (Bernoulli, Poisson)."""
        parts = []
        for block in self.blocks:
            part = statistics[..., block.statistics]
            if issubclass(block.family, (Categorical, OrderedLogistic)):
                part = part.argmax(-1, keepdim=True).to(statistics.dtype)
            parts.append(part)
        return self._assemble(parts, statistics)

    def outside_support(self, x: torch.Tensor) -> torch.Tensor:
        """Observed cells (..., D) outside their column family's support."""
        return torch.stack([f.outside_support(x[..., j]) for j, f in enumerate(self.families)], dim=-1)

    # ------------------------------------------------------ draws and points
    def sample(self, families: list[Family], generator: torch.Generator) -> torch.Tensor:
        """One draw of every cell (..., D), in model units, block after block."""
        parts = [f.sample(generator) for f in families]
        return self._assemble(parts, parts[0])

    def point(self, families: list[Family], weights: torch.Tensor | None = None) -> torch.Tensor:
        """Imputation points (..., D) in model units of the families, or of their mixture.

        ``weights`` (..., S) weigh the batch dimension before the columns (importance
        samples, components). Numbers: the mixture's mean (a log-normal column's
        normal mean: its geometric mean once back in the user's units); levels:
        the mode, or the median of ordered levels (:func:`level_point`).
        """
        parts = []
        for block, family in zip(self.blocks, families):
            if block.levels:
                probabilities = _mixture(torch.exp(family.level_log_probs()), weights, -3)
                parts.append(level_point(probabilities, block.ordered).to(probabilities.dtype))
            else:
                parts.append(_mixture(family.mean.expand(family.batch_shape), weights, -2))
        return self._assemble(parts, parts[0])

    def level_probabilities(self, families: list[Family], weights: torch.Tensor | None = None,
                            columns: list[int] | None = None) -> dict[int, torch.Tensor]:
        """``p(x_j = k)`` (..., L_j) of each level column (of the mixture with ``weights``)."""
        out = {}
        for block, family in zip(self.blocks, families):
            if not block.levels or not (columns is None or set(block.columns) & set(columns)):
                continue
            probabilities = _mixture(torch.exp(family.level_log_probs()), weights, -3)
            for position, j in enumerate(block.columns):
                out[j] = probabilities[..., position, :]
        return out

    # -------------------------------------------------------------- units
    def natural_values(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each log-normal column on its normal scale (``log x``)."""
        if not self.log_normal:
            return x
        x = x.clone()
        x[..., self.log_normal] = LogNormal.to_normal(x[..., self.log_normal])
        return x

    def to_model_units(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``u = (g(x) - loc) / scale`` with ``g = log`` on log-normal columns (``loc`` 0 and
        ``scale`` 1 leave a column as it is)."""
        return (self.natural_values(x) - loc) / scale

    def to_user_units(self, u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_model_units`: ``g^-1(u scale + loc)``."""
        x = u * scale + loc
        if self.log_normal:
            x = x.clone()
            x[..., self.log_normal] = LogNormal.from_normal(x[..., self.log_normal])
        return x

    def log_jacobian(self, observed: torch.Tensor, scale: torch.Tensor, u: torch.Tensor | None = None,
                     loc: torch.Tensor | None = None) -> torch.Tensor:
        """``log |du/dx|`` of each row's observed cells (n,), for rows ``u`` in model units.

        ``-sum_j log scale_j`` over the observed cells plus, on log-normal columns,
        the family's ``log |d log x / dx| = -log x`` with ``log x = u scale + loc``
        (``u`` and ``loc`` are needed for those only). A reduction per row: a
        matrix-vector product may round a row by its position in the batch.
        """
        zero = _zero(scale)
        out = -torch.where(observed, torch.log(scale).to(observed.device), zero).sum(-1)
        if self.log_normal:
            j = self.log_normal
            y = u[..., j] * scale[j] + loc[j]
            out = out + torch.where(observed[..., j], LogNormal.log_det(y), zero).sum(-1)
        return out
