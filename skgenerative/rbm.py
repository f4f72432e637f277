"""Restricted Boltzmann machine with a true log-likelihood, in torch.

Visible units ``v`` (``D`` of them) and binary hidden units ``h`` (``H``), energy

    E(v, h) = -h W v - b.v - c.h - log mu(v),     p(v, h) = exp(-E(v, h)) / Z,

with ``W`` of shape (H, D) (``components_``), visible biases ``b``
(``intercept_visible_``), hidden biases ``c`` (``intercept_hidden_``) and the base
measure ``mu`` of the visible units (counting measure for binary and one-hot units).
Summing out ``h`` gives the free energy in closed form,

    F(v) = -b.v - log mu(v) - sum_j softplus(c_j + W_j.v),    log p(v) = -F(v) - log Z,

and summing out ``v`` gives ``F(h) = -c.h - A(b + h W)`` with ``A`` the visible
layer's log-normaliser, ``Z = sum_v exp(-F(v)) = sum_h exp(-F(h))``. ``log Z`` is
computed exactly by enumerating the layer with fewer states when it has at most
2**20 of them, otherwise estimated by annealed importance sampling (Salakhutdinov &
Murray, 2008).

**Visible layers.** Everything the model needs from its visible units is one object:
given the units' input ``x = b + h W`` they are an exponential family,
``p(v | x) = exp(x.v - A(x)) mu(v)``, with conditional mean ``grad A(x)``. A layer
gives ``log_potential(v, b) = b.v + log mu(v)``, ``log_normalizer(x) = A(x)``,
``mean(x)``, ``sample(mean, generator)``, the base-rate model of AIS
(``base_rate_bias``: the layer's biases that reproduce the data marginals, whose
log-partition is ``A(b_A)`` and which ``sample`` draws exactly), the enumeration of
its states for the exact ``log Z`` (``n_states``, ``states(codes)``) and its
``check_values``. :class:`BernoulliVisible` is a block of binary units,
:class:`SoftmaxVisible` one categorical variable as ``K`` one-hot units, and
:class:`VisibleBlocks` lays blocks side by side (e.g. binary columns next to
categorical ones); the functions below take a ``visible`` layer (binary units of
``W``'s width by default), so another kind of unit is one new class.

Training is minibatch contrastive divergence: the log-likelihood gradient
``<v h^T>_data - <v h^T>_model`` with the model expectation replaced by ``k`` block
Gibbs steps started at the data (CD-k) or continued from persistent chains (PCD,
Tieleman 2008). The updates are :func:`gibbs_from_hidden`, :func:`hidden_means`,
:func:`cd_gradient` and :func:`momentum_step_`, the same functions the tests check
against brute force, run by the shared minibatch loop (:mod:`._training`).

Bernoulli draws compare float32 uniforms ``u`` with the probabilities (``u < p``):
float32 uniforms cost about half as much as float64 ones, and their 2**-24 grid
biases a draw's probability by less than 6e-8.
"""

from __future__ import annotations

import math
import time
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._progress import Progress
from ._torch import adaptive_threads, chunk_rows, generator_from, iter_slices, seed_from
from ._training import MinibatchModel
from .distributions import Bernoulli, Categorical, ColumnFamilies, Statistics, softplus

__all__ = [
    "BernoulliRBM",
    "BaseRBM",
    "BernoulliVisible",
    "SoftmaxVisible",
    "VisibleBlocks",
    "softplus",
    "bernoulli_conditional_log_prob",
    "column_free_energies",
    "conditional_log_prob",
    "free_energy",
    "hidden_free_energy",
    "log_partition_exact",
    "ais_betas",
    "ais_log_partition",
    "base_rate_bias",
    "bernoulli",
    "hidden_means",
    "sample_hidden",
    "sample_visible",
    "gibbs_step",
    "gibbs_from_hidden",
    "CDGradient",
    "cd_gradient",
    "cd_gradients",
    "momentum_step_",
]

#: most states ``partition_method="auto"`` enumerates (2**20)
EXACT_MAX_UNITS = 20
#: most states ``partition_method="exact"`` agrees to enumerate (2**26)
_EXACT_HARD_LIMIT = 26
#: max_iter="auto": at least this many updates, and this many epochs
_AUTO_MIN_UPDATES = 5000
_AUTO_MIN_EPOCHS = 10


def _count(n_states: int) -> str:
    """``2**m`` when the count is a power of two (binary layers), else the number."""
    return f"2**{n_states.bit_length() - 1}" if n_states & (n_states - 1) == 0 else str(n_states)


# ------------------------------------------------------------------ visible layers
def bernoulli(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Binary draws with probabilities ``p``: the Bernoulli family's (float32 uniforms ``u < p``)."""
    return Bernoulli.sample_statistics(p, generator)


def base_rate_bias(marginals: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Visible biases of the base-rate model: logits of the smoothed marginals.

    ``b_A = log(p / (1 - p))`` with ``p = (n m + 1/2) / (n + 1)`` for marginals
    ``m`` over ``n`` rows: the Bernoulli family's M-step with half a pseudo-count
    each way (:meth:`~skgenerative.distributions.Bernoulli.m_step`), which keeps the
    logits finite for columns that are always 0 or always 1. Also the initial
    visible biases.
    """
    return BernoulliVisible(marginals.shape[-1]).base_rate_bias(marginals, n_samples)


class _FamilyVisible:
    """Visible units that are the statistics of one exponential family's columns.

    Given their input ``x`` (the natural parameters ``b + h W``) the units are
    ``T(v)`` of independent cells ``p(v | x) = h(v) exp(x . T(v) - A(x))``: the
    layer's log-normaliser, conditional mean and draws are the family's
    (:mod:`skgenerative.distributions`), with the counting base measure.
    """

    family: type

    def __init__(self, n_units: int):
        self.n_units = int(n_units)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.n_units})"

    def log_potential(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The units' own term of ``-E``: ``b.v`` (``log mu(v) = 0``)."""
        return v @ b

    def _natural(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def log_normalizer(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x) = log sum_v exp(x.v)`` over the last dimension (the family's log-normaliser)."""
        return self.family.log_normalizer(self._natural(x)).reshape(x.shape[:-1] + (-1,)).sum(-1)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """``E[v | x] = grad A(x)``."""
        return self.family.mean_statistics(self._natural(x)).reshape(x.shape)

    def sample(self, mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draws with conditional mean ``mean`` (the family's sampler)."""
        return self.family.sample_statistics(mean, generator)

    def base_rate_bias(self, marginals: torch.Tensor, n_samples: int) -> torch.Tensor:
        """The natural parameters of the family fitted to the marginals (half a pseudo-count per level)."""
        sums = (marginals * n_samples).reshape(self._natural(marginals).shape)
        count = torch.full(sums.shape[:-1], float(n_samples), dtype=sums.dtype, device=sums.device)
        return self.family.m_step(Statistics(count, sums), pseudo_count=0.5).natural.reshape(marginals.shape)


class BernoulliVisible(_FamilyVisible):
    """A block of ``n_units`` binary visible units, ``v_i`` in {0, 1}: Bernoulli columns.

    Given their input ``x``, the units are independent with ``P(v_i = 1) =
    sigmoid(x_i)``: ``A(x) = sum_i softplus(x_i)``, counting base measure.

    Parameters
    ----------
    n_units : int

    Examples
    --------
    >>> import torch
    >>> from skgenerative.rbm import BernoulliVisible
    >>> layer = BernoulliVisible(2)
    >>> layer.n_states, layer.states(torch.arange(4), torch.float64).tolist()
    (4, [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> x = torch.tensor([0.3, -1.0], dtype=torch.float64)
    >>> states = layer.states(torch.arange(4), torch.float64)
    >>> bool(torch.isclose(torch.logsumexp(states @ x, 0), layer.log_normalizer(x)))
    True
    """

    family = Bernoulli

    def _natural(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1)

    @property
    def n_states(self) -> int:
        return 2**self.n_units

    def states(self, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The states with integer codes ``codes`` (bit ``i`` of the code is ``v_i``)."""
        bits = torch.arange(self.n_units, device=codes.device, dtype=torch.int64)
        return ((codes.unsqueeze(1) >> bits) & 1).to(dtype)

    def column_states(self, dtype: torch.dtype, device) -> list[tuple[slice, torch.Tensor]]:
        """Per column: its units and its states, ``[0]`` and ``[1]``."""
        states = torch.tensor([[0.0], [1.0]], dtype=dtype, device=device)
        return [(slice(i, i + 1), states) for i in range(self.n_units)]

    def check_values(self, X: np.ndarray, advice: str = "") -> None:
        """Values must lie in [0, 1] (binary, or probabilities of being 1): the family's support."""
        x = torch.as_tensor(np.ascontiguousarray(X))
        if x.numel() and bool(Bernoulli.outside_support(x).any()):
            raise ValueError(
                "Binary visible units expect values in [0, 1] (binary data, or "
                f"probabilities of being 1); got values in [{float(x.min()):g}, {float(x.max()):g}]. "
                f"{advice}".rstrip()
            )


class SoftmaxVisible(_FamilyVisible):
    """One categorical column with ``n_levels`` levels, as one-hot (softmax) units.

    ``v`` is a one-hot vector of length ``L``; given the input ``x``, ``P(v = e_k) =
    softmax(x)_k``: ``A(x) = logsumexp(x)``, the categorical family's. The
    base-rate biases are the logs of the level frequencies, smoothed by half a
    pseudo-count per level.

    Parameters
    ----------
    n_levels : int

    Examples
    --------
    >>> import torch
    >>> from skgenerative.rbm import SoftmaxVisible
    >>> layer = SoftmaxVisible(3)
    >>> layer.states(torch.arange(3), torch.float64).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """

    family = Categorical

    def _natural(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def n_states(self) -> int:
        return self.n_units

    def states(self, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.nn.functional.one_hot(codes, self.n_units).to(dtype)

    def column_states(self, dtype: torch.dtype, device) -> list[tuple[slice, torch.Tensor]]:
        """One column: all the units, and the one-hot states."""
        return [(slice(0, self.n_units), torch.eye(self.n_units, dtype=dtype, device=device))]

    def check_values(self, X: np.ndarray, advice: str = "") -> None:
        """Rows must be probability vectors over the levels (one-hot for observed levels)."""
        if X.size == 0:
            return
        sums = X.sum(1)
        if X.min() < 0.0 or X.max() > 1.0 or np.abs(sums - 1.0).max() > 1e-6 * self.n_units:
            raise ValueError(
                f"Softmax visible units expect one-hot rows over {self.n_units} levels "
                f"(values in [0, 1] summing to 1); got row sums in [{sums.min():g}, "
                f"{sums.max():g}]. {advice}".rstrip()
            )


class VisibleBlocks:
    """Visible blocks side by side: the units of ``blocks[0]``, then ``blocks[1]``, ...

    The blocks are independent given the hidden units, so every quantity is the
    blocks' own, on their slices of ``v`` and ``x``: ``A(x) = sum_k A_k(x_k)``, the
    means and draws are concatenated, and the states are every combination of the
    blocks' states (a mixed-radix code, ``blocks[0]`` the fastest digit).
    :meth:`from_columns` builds the layer of a table's column families.

    Parameters
    ----------
    blocks : sequence of visible layers

    Examples
    --------
    Two binary columns and a categorical one with three levels: 4 * 3 states.

    >>> from skgenerative.rbm import BernoulliVisible, SoftmaxVisible, VisibleBlocks
    >>> layer = VisibleBlocks([BernoulliVisible(2), SoftmaxVisible(3)])
    >>> layer.n_units, layer.n_states
    (5, 12)
    """

    def __init__(self, blocks):
        self.blocks = list(blocks)
        widths = [block.n_units for block in self.blocks]
        ends = np.cumsum([0] + widths).tolist()
        self.slices = [slice(a, b) for a, b in zip(ends[:-1], ends[1:])]
        self.n_units = ends[-1]

    @classmethod
    def from_columns(cls, columns: ColumnFamilies):
        """The visible layer of ``columns`` (Bernoulli and categorical blocks, in column
        order); a single block is returned as it is."""
        blocks = []
        for block in columns.blocks:
            if block.family is Bernoulli:
                blocks.append(BernoulliVisible(len(block.columns)))
            elif block.family is Categorical:
                blocks.append(SoftmaxVisible(block.n_levels))
            else:
                raise ValueError(f"An RBM's visible units are Bernoulli or categorical, not {block.family.__name__}.")
        return blocks[0] if len(blocks) == 1 else cls(blocks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.blocks!r})"

    @property
    def n_states(self) -> int:
        return math.prod(block.n_states for block in self.blocks)

    def log_potential(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return sum(k.log_potential(v[..., s], b[s]) for k, s in zip(self.blocks, self.slices))

    def log_normalizer(self, x: torch.Tensor) -> torch.Tensor:
        return sum(k.log_normalizer(x[..., s]) for k, s in zip(self.blocks, self.slices))

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([k.mean(x[..., s]) for k, s in zip(self.blocks, self.slices)], dim=-1)

    def sample(self, mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.cat([k.sample(mean[..., s], generator) for k, s in zip(self.blocks, self.slices)], dim=-1)

    def base_rate_bias(self, marginals: torch.Tensor, n_samples: int) -> torch.Tensor:
        return torch.cat([k.base_rate_bias(marginals[s], n_samples) for k, s in zip(self.blocks, self.slices)])

    def states(self, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        parts = []
        for block in self.blocks:
            parts.append(block.states(codes % block.n_states, dtype))
            codes = codes // block.n_states
        return torch.cat(parts, dim=1)

    def column_states(self, dtype: torch.dtype, device) -> list[tuple[slice, torch.Tensor]]:
        """Per column, in order: its units (a slice of ``v``) and its states."""
        return [
            (slice(s.start + units.start, s.start + units.stop), states)
            for block, s in zip(self.blocks, self.slices)
            for units, states in block.column_states(dtype, device)
        ]

    def check_values(self, X: np.ndarray, advice: str = "") -> None:
        for block, s in zip(self.blocks, self.slices):
            block.check_values(X[:, s], advice)


def _default_visible(visible, n_visible: int):
    return BernoulliVisible(n_visible) if visible is None else visible


# --------------------------------------------------------------------- mathematics
def free_energy(
    v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, visible=None
) -> torch.Tensor:
    """Free energy of visible vectors, ``F(v) = -b.v - log mu(v) - sum_j softplus(c_j + W_j.v)``.

    ``exp(-F(v)) = sum_h exp(-E(v, h))``, so ``log p(v) = -F(v) - log Z``.

    Parameters
    ----------
    v : tensor of shape (n, D)
    W : tensor of shape (H, D)
    b : tensor of shape (D,)
    c : tensor of shape (H,)
    visible : visible layer, default=None
        ``None``: ``D`` binary units (:class:`BernoulliVisible`).

    Returns
    -------
    tensor of shape (n,)
    """
    visible = _default_visible(visible, W.shape[1])
    return -visible.log_potential(v, b) - softplus(torch.addmm(c, v, W.T)).sum(1)


def column_free_energies(
    v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, visible=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-F(v)`` (n,) and, per column ``j``, ``log sum_s exp(-F(v with column j in state s))`` (n, J).

    A column is one binary unit (states 0 and 1) or the one-hot units of a
    categorical column (its ``L`` levels), in the visible layer's column order
    (``visible.column_states``). With ``a = c + W v``, setting column ``j``'s units
    ``v_j`` to ``s`` moves the hidden input to ``a - W_j v_j + W_j s`` and the
    visible term to ``b.v - b_j.v_j + b_j.s``: ``O(n H L_j)`` per column.
    """
    visible = _default_visible(visible, W.shape[1])
    pre = torch.addmm(c, v, W.T)  # (n, H)
    potential = v @ b
    neg_free = potential + softplus(pre).sum(1)
    out = []
    for units, states in visible.column_states(v.dtype, v.device):
        W_j = W[:, units]
        off = pre - v[:, units] @ W_j.T  # hidden input with the column's units at 0
        rest = potential - v[:, units] @ b[units]
        shifted = off.unsqueeze(1) + (states @ W_j.T).unsqueeze(0)  # (n, L_j, H)
        energies = (rest.unsqueeze(1) + (states @ b[units]).unsqueeze(0)) + softplus(shifted).sum(2)
        out.append(torch.logsumexp(energies, 1))
    return neg_free, torch.stack(out, 1)


def conditional_log_prob(
    v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, visible=None
) -> torch.Tensor:
    """``log p(x_j | x_-j)`` of every column, shape (n, J), exactly.

    ``log Z`` cancels: ``log p(x_j | x_-j) = -F(v) - log sum_s exp(-F(v^(j=s)))`` over
    the states ``s`` of column ``j`` (:func:`column_free_energies`): a bit for a
    binary unit, a level for a categorical column's one-hot block.
    """
    neg_free, normalizers = column_free_energies(v, W, b, c, visible)
    return neg_free.unsqueeze(1) - normalizers


def bernoulli_conditional_log_prob(
    v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """``log p(v_j | v_-j)`` of every binary unit, shape (n, D): :func:`conditional_log_prob`
    of binary units."""
    return conditional_log_prob(v, W, b, c)


def hidden_free_energy(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, visible=None
) -> torch.Tensor:
    """Free energy of hidden vectors, ``F(h) = -c.h - A(b + h W)``.

    ``exp(-F(h)) = sum_v exp(-E(v, h))``; for binary units ``A(x) = sum_i softplus(x_i)``.
    """
    visible = _default_visible(visible, W.shape[1])
    return -(h @ c) - visible.log_normalizer(torch.addmm(b, h, W))


def log_partition_exact(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, visible=None) -> float:
    """``log Z`` by enumerating every state of the layer with fewer states, in float64.

    With ``2**H`` hidden states and ``N`` visible ones,

        log Z = logsumexp over h in {0,1}^H of -F(h)   (2**H <= N), or
        log Z = logsumexp over the visible states of -F(v)   (otherwise),

    evaluated over chunks of states (memory stays bounded) and combined by a
    log-sum-exp of the chunks' log-sum-exps, which is stable for any magnitude.
    Cost ``O(min(2**H, N) * H * D)``.

    Parameters
    ----------
    W : tensor of shape (H, D)
    b : tensor of shape (D,)
    c : tensor of shape (H,)
    visible : visible layer, default=None
        ``None``: ``D`` binary units.

    Returns
    -------
    float
    """
    W, b, c = W.double(), b.double(), c.double()
    n_hidden, n_visible = W.shape
    visible = _default_visible(visible, n_visible)
    if 2**n_hidden <= visible.n_states:
        layer, other = BernoulliVisible(n_hidden), n_visible
        fn = lambda s: -hidden_free_energy(s, W, b, c, visible)  # noqa: E731
    else:
        layer, other = visible, n_hidden
        fn = lambda s: -free_energy(s, W, b, c, visible)  # noqa: E731
    total = layer.n_states
    if total > 2**_EXACT_HARD_LIMIT:
        raise ValueError(
            f"The exact partition function enumerates {_count(total)} states of the "
            f"smaller layer; at most 2**{_EXACT_HARD_LIMIT} are allowed. Use AIS instead."
        )
    m = layer.n_units
    size = max(chunk_rows(8 * (3 * other + 2 * m + 4), total, W.device), min(total, 1024))
    parts = []
    for s in iter_slices(total, size):
        codes = torch.arange(s.start, s.stop, device=W.device, dtype=torch.int64)
        parts.append(torch.logsumexp(fn(layer.states(codes, W.dtype)), 0))
    return float(torch.logsumexp(torch.stack(parts), 0))


def ais_betas(n_temperatures: int) -> torch.Tensor:
    """Inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` for ``K = n_temperatures``.

    Piecewise linear with the proportions of Salakhutdinov & Murray (2008), who
    spaced 500 steps over [0, 0.5], 4,000 over [0.5, 0.9] and 10,000 over
    [0.9, 1]: most steps go where the model is close to the target and the
    intermediate distributions change fastest. float64, shape (K + 1,).
    """
    K = int(n_temperatures)
    if K < 3:
        return torch.linspace(0.0, 1.0, K + 1, dtype=torch.float64)
    n1 = max(1, round(K * 500 / 14500))
    n2 = max(1, round(K * 4000 / 14500))
    n3 = K - n1 - n2
    return torch.cat([
        torch.linspace(0.0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
        torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
        torch.linspace(0.9, 1.0, n3 + 1, dtype=torch.float64),
    ])


def hidden_means(v: torch.Tensor, W: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``P(h_j = 1 | v) = sigmoid(c_j + W_j.v)``, shape (n, H)."""
    return torch.sigmoid(torch.addmm(c, v, W.T))


def sample_hidden(v: torch.Tensor, W: torch.Tensor, c: torch.Tensor, generator) -> torch.Tensor:
    """``h ~ p(h | v)``: ``h_j ~ Bernoulli(sigmoid(c_j + W_j.v))``."""
    return bernoulli(hidden_means(v, W, c), generator)


def sample_visible(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, generator, visible=None
) -> torch.Tensor:
    """``v ~ p(v | h)``: the visible layer at input ``b + h W``."""
    visible = _default_visible(visible, W.shape[1])
    return visible.sample(visible.mean(torch.addmm(b, h, W)), generator)


def gibbs_step(
    v: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    generator: torch.Generator,
    visible=None,
) -> torch.Tensor:
    """One block Gibbs step ``v -> h -> v'``.

    ``h_j ~ Bernoulli(sigmoid(c_j + W_j.v))``, then ``v' ~ p(v | h)`` (for binary
    units ``v'_i ~ Bernoulli(sigmoid(b_i + (h W)_i))``). Leaves ``p(v)`` invariant.
    """
    return sample_visible(sample_hidden(v, W, c, generator), W, b, generator, visible)


def gibbs_from_hidden(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    generator: torch.Generator,
    n_steps: int = 1,
    visible=None,
) -> torch.Tensor:
    """``n_steps`` block Gibbs steps from hidden states, ending at a visible state.

    ``v_1 ~ p(v | h)``, then ``h ~ p(h | v_t)``, ``v_{t+1} ~ p(v | h)`` until
    ``v_{n_steps}``, which is returned: the negative phase of CD-k started from
    ``h ~ p(h | v_data)``, or of PCD from the persistent chains. The last hidden
    draw is left to the caller, which computes the hidden means of the model's
    visible states anyway (for the gradient, in one product with the data's).
    """
    for step in range(n_steps):
        v = sample_visible(h, W, b, generator, visible)
        if step + 1 < n_steps:
            h = sample_hidden(v, W, c, generator)
    return v


class CDGradient(NamedTuple):
    """Contrastive-divergence gradient, the weights' part as a product of two factors.

    ``weights = hidden.T @ visible`` with ``hidden = [q_data / n; -q_model / m]``
    (n + m, H) and ``visible = [v_data; v_model]`` (n + m, D): one matrix product
    for both phases, which an update can fuse into its step (:func:`momentum_step_`).
    """

    hidden: torch.Tensor
    visible: torch.Tensor
    visible_bias: torch.Tensor
    hidden_bias: torch.Tensor

    @property
    def weights(self) -> torch.Tensor:
        return self.hidden.T @ self.visible


def cd_gradient(
    v_data: torch.Tensor,
    v_model: torch.Tensor,
    W: torch.Tensor,
    c: torch.Tensor,
    *,
    stacked: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> CDGradient:
    """Contrastive-divergence estimate of the mean log-likelihood gradient.

    With ``q(v) = sigmoid(c + W v)`` (the hidden units' conditional means),

        dW = mean_data q(v) v^T - mean_model q(v) v^T,
        db = mean_data v - mean_model v,
        dc = mean_data q(v) - mean_model q(v),

    the gradient of ``mean_data(-F(v)) - mean_model(-F(v))``: the exact
    log-likelihood gradient when ``v_model`` are exact samples of the model (for
    any visible layer: ``v`` is the sufficient statistic of ``b``).

    Parameters
    ----------
    v_data, v_model : tensors of shape (n, D) and (m, D)
    W, c : tensors of shape (H, D) and (H,)
    stacked : (tensor of shape (n + m, D), tensor of shape (n + m, H)), optional
        ``[v_data; v_model]`` and its hidden means ``q`` when the caller has them
        already (training computes ``q`` in one product over both phases);
        otherwise computed so.

    Returns
    -------
    CDGradient
    """
    n_data, n_model = v_data.shape[0], v_model.shape[0]
    if stacked is None:
        visible = torch.cat([v_data, v_model])
        q = hidden_means(visible, W, c)
    else:
        visible, q = stacked
    hidden = torch.cat([q[:n_data] * (1.0 / n_data), q[n_data:] * (-1.0 / n_model)])
    return CDGradient(hidden, visible, v_data.mean(0) - v_model.mean(0), hidden.sum(0))


def cd_gradients(
    v_data: torch.Tensor,
    v_model: torch.Tensor,
    W: torch.Tensor,
    c: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dW, db, dc)`` of :func:`cd_gradient`, with the shapes of ``(W, b, c)``."""
    gradient = cd_gradient(v_data, v_model, W, c)
    return gradient.weights, gradient.visible_bias, gradient.hidden_bias


def momentum_step_(
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    velocity: list[torch.Tensor],
    gradient: CDGradient,
    learning_rate: float,
    momentum: float,
    weight_decay: float,
) -> None:
    """One ascent step with momentum, in place on ``params = (W, b, c)`` and ``velocity``.

    ``u <- momentum u + learning_rate (g - weight_decay W)`` (the decay for the
    weights only), then ``theta <- theta + u``. The weights' gradient enters as its
    two factors (one ``addmm``, no (H, D) temporary); without momentum the velocity
    of the weights is not kept: ``W <- (1 - learning_rate weight_decay) W +
    learning_rate dW``.
    """
    W, b, c = params
    vW, vb, vc = velocity
    lr = learning_rate
    if momentum:
        vW.addmm_(gradient.hidden.T, gradient.visible, beta=momentum, alpha=lr)
        if weight_decay:
            vW.add_(W, alpha=-lr * weight_decay)
        W.add_(vW)
    else:
        W.addmm_(gradient.hidden.T, gradient.visible, beta=1.0 - lr * weight_decay, alpha=lr)
    vb.mul_(momentum).add_(gradient.visible_bias, alpha=lr)
    vc.mul_(momentum).add_(gradient.hidden_bias, alpha=lr)
    b.add_(vb)
    c.add_(vc)


def ais_log_partition(
    W: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    base_visible_bias: torch.Tensor,
    *,
    n_chains: int = 100,
    n_temperatures: int = 1000,
    generator: torch.Generator,
    visible=None,
    progress=None,
) -> tuple[float, float]:
    """Annealed importance sampling estimate of ``log Z`` and its standard error.

    The base model ``A`` has visible biases ``b_A`` (``base_visible_bias``, e.g. the
    layer's base-rate biases of the data marginals) and no weights, so ``log Z_A =
    H log 2 + A(b_A)`` (for binary units ``A(b_A) = sum_i softplus(b_A_i)``) and it
    is sampled exactly. The intermediate distributions, for ``beta_0 = 0 < ... <
    beta_K = 1`` (:func:`ais_betas`), are

        log p*_k(v) = (1 - beta_k) b_A.v + beta_k b.v + log mu(v)
                      + sum_j softplus(beta_k (c_j + W_j.v)),

    equal to ``log p*_A`` at ``beta = 0`` and to ``-F(v)`` at ``beta = 1``. Each
    chain starts at ``v_1 ~ p_A``, adds ``log p*_k(v_k) - log p*_{k-1}(v_k)`` to its
    log-weight and moves ``v_k -> v_{k+1}`` by one block Gibbs step that leaves
    ``p_k`` invariant (``h_j ~ sigmoid(beta_k (c_j + W_j.v))``, then ``v`` from the
    visible layer at input ``(1 - beta_k) b_A + beta_k (b + h W)``). With
    log-weights ``w_1..w_M``,

        log Z_hat = log Z_A + log mean_m exp(w_m),

    an unbiased estimate of ``Z`` (so ``E[log Z_hat] <= log Z``: on average AIS
    underestimates ``log Z`` and overestimates log-likelihoods). The standard
    error is the delta method on the mean of the importance weights:
    ``se(log Z_hat) = std(exp(w)) / (sqrt(M) mean(exp(w)))`` (sample std with
    ``M - 1`` degrees of freedom). It measures the Monte Carlo spread between the
    chains, not the bias of too few temperatures.

    Parameters
    ----------
    W, b, c : tensors of shapes (H, D), (D,), (H,)
    base_visible_bias : tensor of shape (D,)
    n_chains : int, default=100
        ``M``, independent annealing runs (at least 2).
    n_temperatures : int, default=1000
        ``K``, the number of annealing steps.
    generator : torch.Generator
        Source of randomness (on ``W``'s device); fixes the result.
    visible : visible layer, default=None
        ``None``: ``D`` binary units.
    progress : :class:`~skgenerative._progress.Progress` or None, default=None
        Told of each annealing step.

    Returns
    -------
    log_z, std_error : float
    """
    if n_chains < 2:
        raise ValueError(f"AIS needs at least 2 chains for an error estimate, got {n_chains}.")
    n_hidden, n_visible = W.shape
    visible = _default_visible(visible, n_visible)
    dtype, device = W.dtype, W.device
    b_A = base_visible_bias.to(dtype)
    betas = ais_betas(n_temperatures).tolist()
    log_z_base = float(visible.log_normalizer(b_A.double())) + n_hidden * math.log(2.0)
    WT = W.T
    bias_gap = b - b_A
    v = visible.sample(visible.mean(b_A).expand(n_chains, n_visible), generator)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=device)
    K = len(betas) - 1
    for k in range(1, K + 1):
        beta, previous = betas[k], betas[k - 1]
        a = torch.addmm(c, v, WT)
        x = a * beta
        gain = (softplus(x) - softplus(a * previous)).sum(1)
        log_w += gain.add_(v @ bias_gap, alpha=beta - previous)
        if k < K:
            h = bernoulli(torch.sigmoid(x), generator)
            visible_bias = torch.add(b_A, bias_gap, alpha=beta)
            v = visible.sample(visible.mean(torch.addmm(visible_bias, h, W, alpha=beta)), generator)
        if progress is not None:
            progress.update()
    shift = log_w.max()
    weights = torch.exp(log_w - shift)
    mean = weights.mean()
    log_z = log_z_base + float(shift + torch.log(mean))
    std_error = float(weights.std() / (math.sqrt(n_chains) * mean))
    return log_z, std_error


# ---------------------------------------------------------------------- estimators
class BaseRBM(MinibatchModel):
    """An RBM with binary hidden units, trained by contrastive divergence in the shared loop.

    Everything that does not depend on the kind of visible unit: the training
    hooks of :class:`~skgenerative._training.MinibatchModel` (persistent chains,
    ``fit``'s step-size schedule, the CD update, divergence checks), ``log Z``
    (exact or AIS), scoring, ``transform``, sampling and Gibbs steps. A subclass
    declares the parameters in ``__init__`` (those of ``_parameter_constraints``
    and the common ones) and supplies

    ``_visible_layer()``
        Its visible layer (a :class:`BernoulliVisible`, :class:`VisibleBlocks`, ...).
    ``_visible_units(X)`` (optional)
        Raw rows -> the values of the visible units (identity by default).

    The parameters are numpy attributes (``components_``, ``intercept_visible_``,
    ``intercept_hidden_``); a training call works on tensor copies and writes them
    back at its end.

    ``fit`` only fits: ``log Z`` and ``offset_`` (which needs the training rows'
    scores, so ``log Z``) are computed when first used (see
    :meth:`_set_log_partition`).
    """

    # the training rows' scores need log Z (an AIS run for a large model): offset_
    # is computed on first use, like the neural models' (GenerativeModel._end_fit)
    _defer_offset = True

    _parameter_constraints: dict = {
        **MinibatchModel._parameter_constraints,
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"linear", "constant"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "cd_steps": [Interval(Integral, 1, None, closed="left")],
        "persistent": ["boolean"],
        "momentum": [Interval(Real, 0.0, 1.0, closed="left")],
        "weight_decay": [Interval(Real, 0.0, None, closed="left")],
        "burn_in": [Interval(Integral, 0, None, closed="left")],
        "partition_method": [StrOptions({"auto", "exact", "ais"})],
        "n_ais_chains": [Interval(Integral, 2, None, closed="left")],
        "n_ais_temperatures": [Interval(Integral, 1, None, closed="left")],
    }

    def _visible_layer(self):  # pragma: no cover
        raise NotImplementedError  # abstract hook

    def _visible_units(self, X: torch.Tensor) -> torch.Tensor:
        return X

    def _visible_values(self, v: torch.Tensor) -> torch.Tensor:
        """Visible states -> rows in the model's columns (the identity by default)."""
        return v

    def _row_bytes(self, n_features: int) -> int:
        return self._itemsize * (3 * n_features + 4 * int(self.n_components) + 8)

    # --------------------------------------------------- the loop's steps
    def _training_data(self, X: torch.Tensor) -> torch.Tensor:
        return self._visible_units(X)

    def _initialize_parameters(self, X: torch.Tensor, random_state) -> None:
        """``W ~ N(0, 0.01^2)``, ``b`` the base-rate biases of the data (:meth:`base_rate_bias`), ``c = 0``."""
        X = self._visible_units(X)
        generator = generator_from(self._training_seed, X.device)
        shape = (int(self.n_components), X.shape[1])
        dtype = self._dtype  # the training dtype
        W = 0.01 * torch.randn(shape, generator=generator, dtype=dtype, device=X.device)
        marginals = X.mean(0, dtype=torch.float64)
        b = self._visible_layer().base_rate_bias(marginals, X.shape[0]).to(dtype)
        c = torch.zeros(shape[0], dtype=dtype, device=X.device)
        self._store(W, b, c, [torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)], None)
        self.n_samples_seen_ = 0
        self.n_updates_ = 0

    def _n_epochs(self, n_train: int) -> int:
        max_iter = self.max_iter
        if max_iter != "auto":
            return int(max_iter)
        per_epoch = math.ceil(n_train / self._batch_size(n_train))
        return max(_AUTO_MIN_EPOCHS, math.ceil(_AUTO_MIN_UPDATES / per_epoch))

    def _batch_size(self, n_train: int) -> int:
        return min(int(self.batch_size), n_train)

    def _prepare_training(self, train: torch.Tensor, valid: torch.Tensor | None) -> None:
        """Refuse a hopeless exact ``log Z`` before training; update the running marginals."""
        n_states = min(2 ** int(self.n_components), self._visible_layer().n_states)
        if self.partition_method == "exact" and n_states > 2**_EXACT_HARD_LIMIT:
            raise ValueError(
                f"partition_method='exact' would enumerate {_count(n_states)} states of the "
                f"smaller layer; at most 2**{_EXACT_HARD_LIMIT} are allowed. Use "
                "partition_method='auto' or 'ais'."
            )
        n_old, n_new = self.n_samples_seen_, train.shape[0]
        batch_mean = train.column_moments().mean.cpu().numpy()
        if n_old == 0:
            self.visible_marginals_ = batch_mean
        else:
            self.visible_marginals_ = (n_old * self.visible_marginals_ + n_new * batch_mean) / (n_old + n_new)
        self.n_samples_seen_ = n_old + n_new

    def _start_training(self, train: torch.Tensor, n_epochs: int | None) -> None:
        """The parameters as tensors, the call's random stream, the chains, the schedule.

        A training call draws everything from one stream: the training seed for
        ``fit``, shifted by the number of updates so far for a ``partial_fit`` call
        (no call replays another's noise). The chains start (or restart, when
        ``batch_size`` changed) at hidden states driven by random training rows.
        ``fit`` decays the step linearly over its ``n_epochs`` epochs, ending at
        ``learning_rate / total`` so that the last update counts; ``partial_fit``
        (``n_epochs=None``) steps at ``learning_rate``.
        """
        seed = self._training_seed
        if n_epochs is None:
            seed = (seed + 7919 * self.n_updates_) % (2**31 - 1)
        generator = generator_from(seed, train.device)
        as_t = lambda a: torch.tensor(a, dtype=train.dtype, device=train.device)  # noqa: E731
        W, b, c = as_t(self.components_), as_t(self.intercept_visible_), as_t(self.intercept_hidden_)
        chains, n_chains = None, int(self.batch_size)
        if self.persistent:
            if self.h_samples_ is not None and self.h_samples_.shape[0] == n_chains:
                chains = as_t(self.h_samples_)
            else:
                rows = torch.randint(train.shape[0], (n_chains,), generator=generator, device=train.device)
                chains = sample_hidden(train.take(rows), W, c, generator)
        schedule = None
        if self.learning_rate_schedule == "linear" and n_epochs is not None:
            n_batches = math.ceil(train.shape[0] / self._batch_size(train.shape[0]))
            schedule = (self.n_updates_, n_epochs * n_batches)
        velocity = [as_t(v) for v in self._velocity]
        self._cd = _CDState((W, b, c), velocity, chains, self._visible_layer(), schedule, seed, generator)

    def _epoch_generator(self, epoch: int, device: torch.device) -> torch.Generator:
        return self._cd.generator  # the call's stream continues across its epochs

    def _step_size(self) -> float:
        """The step of the next update: ``learning_rate``, decayed linearly in ``fit``."""
        if self._cd.schedule is None:
            return float(self.learning_rate)
        first, total = self._cd.schedule
        return float(self.learning_rate) * (1.0 - (self.n_updates_ - first) / total)

    def _epoch_settings(self, epoch: int) -> dict:
        return {"learning_rate": self._step_size()}

    def _train_step(self, batch: torch.Tensor, generator: torch.Generator) -> None:
        """One CD-k or PCD-k update of the parameters, in place.

        With persistent chains the model's visible draw does not depend on the
        minibatch, so both phases' hidden means come from one product over the
        stacked ``[v_data; v_model]``: a PCD-1 update costs three matrix products
        (visible draw, hidden means, weight gradient), CD-1 four.
        """
        state = self._cd
        (W, b, c), visible, k, n = state.params, state.visible, int(self.cd_steps), batch.shape[0]
        if self.persistent:
            v_model = gibbs_from_hidden(state.chains, W, b, c, generator, k, visible)
            v = torch.cat([batch, v_model])
            q = hidden_means(v, W, c)
            state.chains = bernoulli(q[n:], generator)
        else:
            q_data = hidden_means(batch, W, c)
            v_model = gibbs_from_hidden(bernoulli(q_data, generator), W, b, c, generator, k, visible)
            v, q = torch.cat([batch, v_model]), torch.cat([q_data, hidden_means(v_model, W, c)])
        gradient = cd_gradient(batch, v_model, W, c, stacked=(v, q))
        momentum_step_(
            state.params, state.velocity, gradient, self._step_size(),
            float(self.momentum), float(self.weight_decay),
        )
        self.n_updates_ += 1
        return None

    def _parameters_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self._cd.params)

    def _divergence_advice(self) -> str:
        return (
            f"Lower learning_rate (now {self.learning_rate}) or momentum (now "
            f"{self.momentum}), or raise weight_decay."
        )

    def _progress(self, train: torch.Tensor) -> dict:
        return {"reconstruction_error": _reconstruction_error(train, *self._cd.params, self._cd.visible)}

    def _end_training(self, stopper) -> None:
        """Write the parameters back as numpy arrays, then compute ``log Z``."""
        state = self.__dict__.pop("_cd")
        self._store(*state.params, state.velocity, state.chains)
        self._set_log_partition(state.params[0].shape[0], state.visible, (state.seed + 1) % (2**31 - 1))

    def _store(self, W, b, c, velocity, chains) -> None:
        to_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        self.components_, self.intercept_visible_, self.intercept_hidden_ = to_np(W), to_np(b), to_np(c)
        self._velocity = [to_np(v) for v in velocity]
        self.h_samples_ = None if chains is None else to_np(chains)

    def _set_log_partition(self, n_hidden: int, visible, seed: int) -> None:
        """Choose how ``log Z`` is computed; compute it when first needed.

        ``fit`` only fits: ``log Z`` (an AIS run of ``n_ais_temperatures`` steps
        when the model is large) is only needed to score, so it is computed on the
        first ``score_samples``, ``offset_``, access to ``log_partition_`` or
        pickling, from a seed drawn at fit (deterministic under ``random_state``),
        and cached in a dict created here (prediction leaves the attributes as
        they were, as scikit-learn's checks require).
        """
        method = self.partition_method
        if method == "auto":
            few = min(2**n_hidden, visible.n_states) <= 2**EXACT_MAX_UNITS
            method = "exact" if few else "ais"
        self.log_partition_method_ = method
        self.__dict__["_partition"] = {"seed": int(seed)}

    @property
    def log_partition_(self) -> float:
        """``log Z``: exact, or the AIS estimate (computed on first use)."""
        return self._log_partition()[0]

    @property
    def log_partition_std_(self) -> float:
        """Standard error of ``log_partition_`` (0.0 when exact)."""
        return self._log_partition()[1]

    def _log_partition(self) -> tuple[float, float]:
        partition = self.__dict__.get("_partition")
        if partition is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'log_partition_'")
        if "value" not in partition:
            partition["value"] = self._compute_log_partition(partition["seed"])
        return partition["value"]

    def _compute_log_partition(self, seed: int) -> tuple[float, float]:
        W = self._tensor("components_", torch.float64)
        b = self._tensor("intercept_visible_", torch.float64)
        c = self._tensor("intercept_hidden_", torch.float64)
        visible = self._visible_layer()
        if self.log_partition_method_ == "exact":
            value, std = log_partition_exact(W, b, c, visible), 0.0
        else:
            generator = generator_from(seed, W.device)
            marginals = self._tensor("visible_marginals_", torch.float64)
            base = visible.base_rate_bias(marginals, self.n_samples_seen_)
            progress = Progress(type(self).__name__, "AIS step", int(self.n_ais_temperatures),
                                self.verbose, line_level=None, log=self._log)
            # float32 halves the cost; its rounding, the log-weights being summed
            # in float64, is far below the Monte Carlo error
            with adaptive_threads(), progress:
                value, std = ais_log_partition(
                    W.float(), b.float(), c.float(), base,
                    n_chains=int(self.n_ais_chains),
                    n_temperatures=int(self.n_ais_temperatures),
                    generator=generator,
                    visible=visible,
                    progress=progress,
                )
                effective = 1.0 / (std**2 + 1.0 / self.n_ais_chains)
                progress.close(f"AIS log Z = {value:.3f} +- {std:.3f} (about {effective:.0f} "
                               f"effective chains of {self.n_ais_chains})")
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{type(self).__name__}'s log partition function is not finite: the weights are "
                "too large. Lower learning_rate or raise weight_decay, and fit again."
            )
        return float(value), float(std)

    def __getstate__(self):
        if "_partition" in self.__dict__:
            self._log_partition()  # a pickle carries log Z, so it never changes on load
        return super().__getstate__()

    # ----------------------------------------------------------- evaluation
    def _params(self):
        return (
            self._tensor("components_"),
            self._tensor("intercept_visible_"),
            self._tensor("intercept_hidden_"),
        )

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """``-F(v) - log Z``; a row with unseen levels: ``log sum`` over their levels (exact).

        The marginal probability of the row's other cells: the unseen cells are
        summed out by enumerating their levels (``score_samples`` then adds the
        unseen-level penalty of :mod:`skgenerative._schema`).
        """
        scores = self._complete_log_prob(X)
        for i in self._rows_with_unseen_levels(X):
            scores[i] = torch.logsumexp(self._complete_log_prob(self._completions(X[i])), 0)
        return scores

    def _complete_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        W, b, c = self._params()
        return -free_energy(self._visible_units(X), W, b, c, self._visible_layer()) - self.log_partition_

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        """``P(h = 1 | v)``; a row with unseen levels: ``E[P(h = 1 | v)]`` over their levels given the rest."""
        W, _, c = self._params()
        means = hidden_means(self._visible_units(X), W, c)
        for i in self._rows_with_unseen_levels(X):
            rows = self._completions(X[i])
            weights = torch.softmax(self._complete_log_prob(rows), 0)
            means[i] = weights @ hidden_means(self._visible_units(rows), W, c)
        return means

    def _explain(self, X: torch.Tensor) -> torch.Tensor:
        """``log p(x_j | x_-j)`` of every column (:func:`conditional_log_prob`), exactly.

        A binary or binarised column conditions on its bit, a categorical one on its
        level (its one-hot block). A row with unseen levels sums them out on both
        sides: ``log sum_u p(x, u) - log sum_u sum_s p(x_(j=s), u)``.
        """
        W, b, c = self._params()
        visible = self._visible_layer()
        neg_free, normalizers = column_free_energies(self._visible_units(X), W, b, c, visible)
        out = neg_free.unsqueeze(1) - normalizers
        for i in self._rows_with_unseen_levels(X):
            neg_free, normalizers = column_free_energies(
                self._visible_units(self._completions(X[i])), W, b, c, visible
            )
            out[i] = torch.logsumexp(neg_free, 0) - torch.logsumexp(normalizers, 0)
        return out


    # ------------------------------------------- levels not seen in fit
    def _rows_with_unseen_levels(self, X: torch.Tensor) -> list[int]:
        """Rows with a level not seen in fit (NaN: an RBM takes no missing value)."""
        if not self.schema_.discrete:
            return []
        return torch.nonzero(torch.isnan(X).any(1)).flatten().tolist()

    def _completions(self, x: torch.Tensor) -> torch.Tensor:
        """Every completion of a row ``x`` (D,) whose NaN cells (unseen levels) take each level."""
        columns = torch.nonzero(torch.isnan(x)).flatten().tolist()
        grids = [torch.arange(self.schema_.n_levels(j), dtype=x.dtype, device=x.device) for j in columns]
        combos = torch.cartesian_prod(*grids).reshape(-1, len(columns))
        rows = x.repeat(combos.shape[0], 1)
        rows[:, columns] = combos
        return rows

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        W, b, c = self._params()
        visible = self._visible_layer()
        marginals = self._tensor("visible_marginals_")
        v = visible.sample(marginals.expand(n, marginals.shape[0]), generator)
        for _ in range(int(self.burn_in)):
            v = gibbs_step(v, W, b, c, generator, visible)
        return self._visible_values(v)

    def gibbs(self, v, random_state=None):
        """One block Gibbs step from ``v``: ``h ~ p(h | v)``, then ``v' ~ p(v | h)``.

        Parameters
        ----------
        v : array-like of shape (n_samples, n_features)
            Visible states to start from.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws; ``None`` draws fresh randomness each call.

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
            Binary visible states after one step; for a model fitted on a table, a
            DataFrame of the fitted dtypes (levels for the softmax blocks). A row with
            a level not seen in fit raises ``ValueError``.
        """
        check_is_fitted(self)
        X = self._validate_X(v, reset=False)
        generator = generator_from(seed_from(random_state), self._device)

        def step(x):
            W, b, c = self._params()
            v = gibbs_step(self._visible_units(x), W, b, c, generator, self._visible_layer())
            return self._visible_values(v)

        self._check_complete(X, "gibbs")
        out = self._evaluate(step, X)
        return self._rows(out) if self.schema_.has_discrete else out

    def _check_complete(self, X: np.ndarray, what: str) -> None:
        """A visible state is needed whole: a level not seen in fit names its column."""
        columns = np.flatnonzero(np.isnan(X).any(axis=0))
        if columns.size:
            names = ", ".join(repr(self.schema_.names[j]) for j in columns[:5])
            raise ValueError(
                f"{what} needs every visible unit's state, but column(s) {names} hold "
                "levels not seen in fit. Replace them by seen levels first."
            )


class BernoulliRBM(BaseRBM):
    r"""Bernoulli restricted Boltzmann machine with an exact or AIS log-likelihood.

    Binary visible and hidden units, energy ``E(v, h) = -h W v - b.v - c.h``,
    trained by minibatch contrastive divergence (CD-k) or persistent CD. Unlike
    :class:`sklearn.neural_network.BernoulliRBM`, whose ``score_samples`` is a
    random pseudo-likelihood, ``score_samples`` here is ``log p(v)`` itself, so the
    model can set an outlier threshold, be chosen by ``GridSearchCV`` and be
    compared with other density models.

    Parameters
    ----------
    n_components : int, default=256
        Number of hidden units ``H``.
    learning_rate : float, default=0.05
        Step size; multiplies the gradient averaged over the minibatch (the
        meaning of scikit-learn's ``learning_rate``).
    learning_rate_schedule : {"linear", "constant"}, default="linear"
        ``"linear"``: ``fit`` decays the step size linearly from ``learning_rate``
        towards 0 over its updates (Tieleman 2008), which lets the persistent
        chains catch up with the model at the end of training. ``"constant"``:
        the same step throughout, as in scikit-learn. ``partial_fit`` always uses
        ``learning_rate``.
    batch_size : int, default=20
        Rows per minibatch, and number of persistent chains.
    max_iter : int or "auto", default="auto"
        Number of epochs (passes over the training data) of ``fit``. ``"auto"``: enough
        epochs for at least 5000 minibatch updates, and at least 10 (25 epochs
        for 4000 rows in minibatches of 20; 250 for 400 rows). Small data sets
        need many epochs to get past the slow start from tiny random weights.
    cd_steps : int, default=1
        ``k``, block Gibbs steps per update for the model statistics.
    persistent : bool, default=True
        Persistent contrastive divergence (Tieleman 2008): the negative chains
        continue from one update to the next instead of restarting at the data.
        Gives better likelihoods than CD-k.
    momentum : float, default=0.5
        Momentum of the parameter updates, in [0, 1).
    weight_decay : float, default=1e-4
        L2 penalty on the weights (not the biases): ``weight_decay * W`` is
        subtracted from the weight gradient.
    binarize : "auto", float or None, default="auto"
        How real columns become binary units. ``"auto"``: a column whose training
        values all lie in [0, 1] is used as it is (binary data, or probabilities
        of being 1 as in scikit-learn); a column with values outside [0, 1] is
        binarised as ``x > (min + max) / 2`` of its training values, with a
        ``UserWarning`` that names it (``binarize_threshold_`` keeps the
        thresholds). A float ``t``: every real column is binarised as ``x > t``,
        and any finite real input is accepted. ``None``: inputs must lie in
        [0, 1]; anything else raises ``ValueError``. Thresholds apply in fit and in
        every later call (scoring, ``transform``, ``gibbs``, ``explain``).
    burn_in : int, default=1000
        Block Gibbs steps each chain of :meth:`sample` runs before its state is
        returned.
    partition_method : {"auto", "exact", "ais"}, default="auto"
        How ``log_partition_`` is computed (when first needed: the first
        ``score_samples``, ``offset_``, or pickling; not in ``fit``). ``"auto"``:
        exactly when ``min(n_components, n_features) <= 20``, otherwise by AIS.
        ``"exact"`` enumerates up to 2**26 states of the smaller layer;
        ``"ais"`` always estimates.
    n_ais_chains : int, default=50
        Independent AIS runs.
    n_ais_temperatures : int, default=1000
        Intermediate distributions of each AIS run. More reduces the estimate's
        bias (see Notes); the cost grows linearly.
    column_types : dict, list, tuple or None, default=None
        Types of a DataFrame's columns where the dtypes do not say them (see
        :mod:`skgenerative._schema`). Real columns (values in [0, 1]) and binary
        ones are bits; categorical and ordinal columns (the order unused) are
        softmax blocks of one-hot units; positive and count columns are refused.
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
    dtype : {"auto", "float32", "float64"}, default="auto"
        ``"auto"``: fit in float32 and evaluate (``score_samples``, ``transform``,
        ``impute``, ``sample``) in float64, so that training costs float32 and
        scores stay exact and batch-invariant. ``"float32"`` or ``"float64"``: that
        precision for both. The exact partition function is always summed in
        float64.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order, the Gibbs chains and AIS.
    verbose : int, default=0
        1: a progress bar of the epochs where a terminal or notebook shows it (with
        the mean-field reconstruction error, computed only then), then one summary
        line, and one line for the AIS estimate when ``log Z`` is first needed; 2: also
        a line per epoch.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Weights ``W``.
    intercept_visible_ : ndarray of shape (n_features,)
        Visible biases ``b``.
    intercept_hidden_ : ndarray of shape (n_components,)
        Hidden biases ``c``.
    log_partition_ : float
        ``log Z``, exact or the AIS estimate.
    log_partition_std_ : float
        Standard error of ``log_partition_``: 0.0 when exact; for AIS the delta-
        method standard error of the log mean importance weight (see Notes).
    log_partition_method_ : {"exact", "ais"}
        Which of the two ``log_partition_`` is.
    binarize_threshold_ : ndarray of shape (n_features,)
        The threshold ``t`` of each real column binarised as ``x > t``; NaN for
        columns used as they are (binary, categorical, or real within [0, 1]).
    visible_marginals_ : ndarray of shape (n_features,)
        Mean of each (binarised) input column over all data seen. Starts the
        chains of :meth:`sample` and defines the AIS base model.
    h_samples_ : ndarray of shape (batch_size, n_components) or None
        Hidden states of the persistent chains (None when ``persistent=False``).
    n_samples_seen_ : int
        Rows seen by ``fit`` or by all ``partial_fit`` calls.
    n_updates_ : int
        Parameter updates (minibatches) so far.
    n_iter_ : int
        Epochs run, over ``fit`` and ``partial_fit`` calls.
    history_ : list of dict
        Per epoch: ``epoch``, ``learning_rate`` (the step size of its first
        update) and ``duration`` (seconds). There is no training loss: CD does
        not compute the likelihood it follows.
    offset_ : float
        The ``contamination`` quantile of the training log-densities.
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    sklearn.neural_network.BernoulliRBM : the numpy RBM, scored by pseudo-likelihood.
    GaussianMixtureDensity : an exact density for continuous data.

    Notes
    -----
    ``score_samples(v) = -F(v) - log_partition_`` with the free energy
    ``F(v) = -b.v - sum_j softplus(c_j + W_j.v)`` in closed form (the visible
    layer is a :class:`BernoulliVisible`).

    - When the smaller layer has at most 20 units (``n_components <= 20`` or
      ``n_features <= 20``), ``log_partition_`` is exact: a float64 log-sum-exp
      over all 2**m states of that layer, and ``score_samples`` is the exact
      log-probability; ``log_partition_std_`` is 0.
    - Otherwise ``log_partition_`` is an annealed importance sampling estimate
      (Salakhutdinov & Murray, 2008): ``n_ais_chains`` runs of
      ``n_ais_temperatures`` annealing steps from a base-rate model (no weights,
      visible biases the logits of ``visible_marginals_``) to the RBM. It is
      computed once, when first needed, from a seed drawn at fit (so under
      ``random_state`` scores are deterministic), and every score carries the
      same additive error. The defaults (50 chains, 1000 steps) cost about as
      much as a few epochs of training; the user guide measures their bias
      against longer runs. AIS
      runs in float32, its log-weights summed in float64: its rounding is far
      below its Monte Carlo error.

      ``log_partition_std_`` is the standard error of that estimate by the delta
      method on the mean importance weight, ``std(exp w) / (sqrt(M) mean(exp
      w))`` over the ``M`` chains: scores are uncertain by about that much. It
      measures the spread between chains only. It leaves out the bias of a finite
      annealing schedule, which makes AIS underestimate ``log Z`` on average (and
      so overestimate log-likelihoods); and it is itself estimated from the same
      weights: values approaching 1 mean that one chain carries most of the
      weight (about ``1 / (std**2 + 1 / M)`` effective chains), and the true error
      can be larger: raise ``n_ais_temperatures`` when the estimate moves as you
      do.

    Differences between scores (outlier ranking, ``decision_function``) are exact
    in both cases. For inputs with fractional values the same formula is used,
    a "soft" free energy that is not a probability.

    Binary units cannot model values outside [0, 1]: at the default
    ``binarize="auto"`` such a column is binarised at the middle of its training
    range, and says so (a ``UserWarning``); ``binarize=None`` raises instead. A
    later input outside [0, 1] in a column fitted as it is raises ``ValueError``.

    **Tables.** Fitted on a DataFrame with categorical (or ordinal) columns, each
    such column of ``K`` levels is a :class:`SoftmaxVisible` block of ``K`` one-hot
    units beside the bits (:class:`VisibleBlocks`; ``components_`` has one column
    per unit). The free energy keeps its form, the exact ``log Z`` enumerates every
    level combination (or the hidden states), Gibbs steps draw each block from its
    softmax and AIS starts from each block's base-rate model. ``sample`` and
    ``gibbs`` return the user's DataFrame. A level not seen in fit is summed out
    exactly (its row scores the marginal of its other cells, plus the unseen-level
    penalty); ``gibbs`` refuses such rows.

    Every minibatch update is ``theta += velocity`` with ``velocity = momentum *
    velocity + learning_rate * gradient`` (:func:`momentum_step_`); the gradient
    (:func:`cd_gradient`) is averaged over the minibatch. ``partial_fit`` runs
    one epoch over the rows it gets, continuing
    the persistent chains and the velocity; ``log_partition_`` (exact, or an AIS
    run) and ``offset_`` (on the rows of the last call) are then computed again
    when first used: ``fit`` and ``partial_fit`` only fit, and a model that is
    never scored never pays for AIS.

    The initial weights are ``N(0, 0.01^2)``, the visible biases the logits of the
    smoothed data marginals, the hidden biases zero. :meth:`sample` runs
    ``burn_in`` block Gibbs steps from vectors drawn from the data marginals and
    returns binary vectors (the binarised units of binarised columns).
    ``transform`` gives ``P(h = 1 | v) = sigmoid(c + W v)``.

    References
    ----------
    Hinton, G. E. (2002). Training products of experts by minimizing contrastive
    divergence. Neural Computation, 14(8), 1771-1800.
    Tieleman, T. (2008). Training restricted Boltzmann machines using
    approximations to the likelihood gradient. ICML.
    Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis of deep
    belief networks. ICML.
    Hinton, G. E. (2010). A practical guide to training restricted Boltzmann
    machines. UTML TR 2010-003.

    Examples
    --------
    >>> import numpy as np
    >>> from skgenerative import BernoulliRBM
    >>> rng = np.random.RandomState(0)
    >>> prototypes = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]])
    >>> X = prototypes[rng.randint(2, size=300)]
    >>> X = np.abs(X - (rng.uniform(size=X.shape) < 0.05))   # 5% of bits flipped
    >>> rbm = BernoulliRBM(n_components=2, max_iter=50, batch_size=10, random_state=0).fit(X)
    >>> rbm.log_partition_method_, rbm.log_partition_std_
    ('exact', 0.0)
    >>> all_states = (np.arange(64)[:, None] >> np.arange(6)) & 1
    >>> round(float(np.exp(rbm.score_samples(all_states)).sum()), 6)
    1.0
    >>> bool(rbm.score_samples([[1, 1, 1, 0, 0, 0]])[0] > rbm.score_samples([[1, 0, 1, 0, 1, 0]])[0])
    True
    >>> rbm.transform(X[:2]).shape
    (2, 2)
    """

    # binary or [0, 1] data are probabilities, not a density; binarize thresholds
    # the input and the [0, 1] check bounds it, so no value overflows
    _squares_input = False
    # bits (real columns in [0, 1], binary ones) and one-hot blocks (categorical;
    # ordinal columns too, their order unused); positive and count columns have no unit
    _supported_column_types = frozenset({"real", "binary", "categorical", "ordinal"})

    _parameter_constraints: dict = {
        **BaseRBM._parameter_constraints,
        "binarize": [Interval(Real, None, None, closed="neither"), StrOptions({"auto"}), None],
        "column_types": [dict, list, tuple, None],
    }

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.05,
        learning_rate_schedule="linear",
        batch_size=20,
        max_iter="auto",
        cd_steps=1,
        persistent=True,
        momentum=0.5,
        weight_decay=1e-4,
        binarize="auto",
        burn_in=1000,
        partition_method="auto",
        n_ais_chains=50,
        n_ais_temperatures=1000,
        column_types=None,
        contamination=0.1,
        device="auto",
        dtype="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.cd_steps = cd_steps
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.binarize = binarize
        self.burn_in = burn_in
        self.partition_method = partition_method
        self.n_ais_chains = n_ais_chains
        self.n_ais_temperatures = n_ais_temperatures
        self.column_types = column_types
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------- input
    def _continuous_likelihood(self) -> bool:
        return False

    # ------------------------------------------------------------- input
    def _visible_columns(self) -> ColumnFamilies:
        """The columns as visible units: real (values in [0, 1]) and binary columns are
        Bernoulli units, categorical and ordinal ones (the order unused) softmax blocks."""
        schema = self.schema_
        return ColumnFamilies(schema.types, schema.level_counts, families=_VISIBLE_FAMILIES, order="column")

    def _visible_layer(self):
        return VisibleBlocks.from_columns(self._visible_columns())

    _fit_encoding_attributes = ("binarize_threshold_",)

    def _fit_input_encoding(self, X: np.ndarray) -> None:
        """``binarize_threshold_``: how each real column becomes binary units (see ``binarize``).

        On a dask collection the thresholds come from its first rows (up to 5000),
        which set the schema too, and apply to every block.
        """
        self.binarize_threshold_ = binarize_thresholds(X, self.schema_, self.binarize, type(self).__name__)

    def _check_values(self, X: np.ndarray) -> None:
        """Real columns used as they are must lie in [0, 1] (the Bernoulli family's support)."""
        real = np.array([t == "real" for t in self.schema_.types])
        as_is = np.flatnonzero(real & np.isnan(self.binarize_threshold_))
        if as_is.size:
            self.schema_.check_support(
                X if as_is.size == X.shape[1] else X[:, as_is], [Bernoulli] * as_is.size, columns=as_is,
                advice="Scale the data to [0, 1], or set binarize=<threshold> to binarise it as "
                "X > threshold (binarize='auto' chooses thresholds when fitting on such data).",
            )

    def _visible_units(self, X: torch.Tensor) -> torch.Tensor:
        """Rows -> the visible units: real columns binarised where ``binarize_threshold_``
        says, then each column's statistics (:meth:`ColumnFamilies.statistics`): bits as
        they are, one-hot vectors of levels (zeros for a level not seen in fit)."""
        columns = np.flatnonzero(~np.isnan(self.binarize_threshold_))
        if columns.size:
            thresholds = torch.as_tensor(self.binarize_threshold_[columns], device=X.device)
            X = X.clone()
            X[:, columns] = torch.gt(X[:, columns], thresholds).to(X.dtype)
        # only a categorical cell can be NaN (a level not seen in fit): arrays skip the masking
        return self._visible_columns().statistics(X, masked=bool(self.schema_.discrete))

    def _visible_values(self, v: torch.Tensor) -> torch.Tensor:
        """Visible states -> rows: bits as they are, each one-hot block as its level code."""
        return self._visible_columns().values(v)

    def _n_units(self, n_features: int) -> int:
        if getattr(self, "schema_", None) is None:
            return n_features
        return self._visible_columns().n_statistics

    def _row_bytes(self, n_features: int) -> int:
        return super()._row_bytes(self._n_units(n_features))


#: the family of each column type an RBM's visible layer has units for
_VISIBLE_FAMILIES = {"real": Bernoulli, "binary": Bernoulli, "categorical": Categorical, "ordinal": Categorical}


def binarize_thresholds(X: np.ndarray, schema, binarize, owner: str = "BernoulliRBM") -> np.ndarray:
    """Per column, the threshold ``t`` that binarises a real column as ``x > t`` (NaN: as it is).

    ``binarize=None``: none. A float: that threshold for every real column.
    ``"auto"``: a real column whose values all lie in [0, 1] is used as it is
    (binary, or probabilities of being 1); any other real column is binarised at
    the middle of its range at fit, ``(min + max) / 2`` (what scaling it to [0, 1]
    and thresholding at 1/2 does), with a ``UserWarning`` naming the columns: the
    model never trains silently on values its units cannot take.
    """
    thresholds = np.full(X.shape[1], np.nan)
    real = [j for j, t in enumerate(schema.types) if t == "real"]
    if binarize is None or not real:
        return thresholds
    if binarize != "auto":
        thresholds[real] = float(binarize)
        return thresholds
    values = X if len(real) == X.shape[1] else X[:, real]  # an RBM's input has no missing value
    low, high = values.min(axis=0), values.max(axis=0)
    outside = (low < 0.0) | (high > 1.0)
    if outside.any():
        columns = np.asarray(real)[outside]
        thresholds[columns] = 0.5 * (low[outside] + high[outside])
        shown = ", ".join(
            f"{schema.names[j]!r} in [{lo:g}, {hi:g}] at {t:g}"
            for j, lo, hi, t in zip(columns[:5], low[outside], high[outside], thresholds[columns])
        )
        warnings.warn(
            f"{owner} has binary visible units, but {len(columns)} real column(s) have values "
            f"outside [0, 1]: binarize='auto' binarises each as x > (min + max) / 2 of its "
            f"training values ({shown}{' ...' if len(columns) > 5 else ''}), in fit and in every "
            "later call. Scale X to [0, 1] to model values as they are, set binarize=<threshold> "
            "to choose, or binarize=None to raise an error instead.",
            UserWarning,
            stacklevel=7,  # the caller of fit (through validation and sklearn's fit context)
        )
    return thresholds


class _CDState:
    """What the updates of one training call work on (tensors changed in place).

    ``params`` is ``(W, b, c)``, ``velocity`` their momentum, ``chains`` the
    persistent hidden states (or None), ``schedule`` ``(first update, number of
    updates)`` of ``fit``'s linear decay (or None), ``seed`` and ``generator`` the
    call's random stream.
    """

    def __init__(self, params, velocity, chains, visible, schedule, seed, generator):
        self.params, self.velocity, self.chains = params, velocity, chains
        self.visible, self.schedule = visible, schedule
        self.seed, self.generator = seed, generator


def _squared_reconstruction_error(v, W, b, c, visible) -> dict:
    q = hidden_means(v, W, c)
    return {"error": (visible.mean(torch.addmm(b, q, W)) - v).square().sum().double()}


def _reconstruction_error(train, W, b, c, visible) -> float:
    """Mean squared error of the mean-field reconstruction ``E[v | h = q(v)]`` of a source's rows."""
    n, d = train.shape
    row_bytes = W.element_size() * (2 * d + W.shape[0])
    total = train.reduce(_squared_reconstruction_error, W, b, c, visible, row_bytes=row_bytes)
    return float(total["error"]) / (n * d)
