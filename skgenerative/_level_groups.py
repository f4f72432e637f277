"""Level groups: discrete columns that share one categorical per mixture component.

In :class:`~skgenerative.GaussianMixtureDensity` every discrete column is, inside a
component, an independent categorical; the dependence between two such columns is
carried only by the components. A **level group** ``G = (j_1, ..., j_m)`` of binary,
categorical or ordinal columns instead follows one categorical over the combinations
``c = (x_j1, ..., x_jm)`` of their levels in each component (a joint level table):

    p_k(x_G = c) = theta_k(s(c)) / M(s(c)),

where ``s(c)`` is the combination's *slot*: its own for each of the ``S`` combinations
seen at fit (in complete rows), and one shared slot ``"other"`` for the ``U`` others
of the product of the levels (when ``U > 0``), whose mass is spread uniformly over
them (``M`` = 1 for a seen combination, ``U`` for the others). The M-step is the
categorical's over the slots with ``level_prior`` pseudo-counts (Dirichlet(1 + a)
posterior modes): a combination never seen keeps a probability of at least about
``a / (n_k + a (S + 1)) / U`` in each component, so that it scores finitely, while
the mass of all of them together is one pseudo-count ``a``, not ``a U``. A table over
the whole product would give each impossible combination (a "husband" who is
"female") ``a`` pseudo-counts in every component: on Adult (84 combinations of
marital status x relationship x sex, 26 seen in 3000 rows) 58 of them, so that a
component of 20 rows would put a fifth of its mass on combinations that never occur.

A row that misses some members of a group is scored by the exact marginal
``p_k(x_o) = sum_{c consistent with x_o} p_k(c)``, one product of the rows'
consistency masks (n, P) with the table (P, K) over the ``P`` combinations of the
product. EM's expected counts of the slots are ``sum_i r_ik q_ik(c)``, with
``q_ik(c) = [c consistent] p_k(c) / p_k(x_o)`` the posterior of the combination given
the component and the observed members (a row missing every member drops out, as a
missing cell of a single column does: its factor is 1 whatever the parameters).

:func:`choose_level_groups` is the ``level_groups="auto"`` rule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._torch import row_matmul
from .distributions import Categorical, Statistics, level_point, sample_levels

__all__ = ["JointLevels", "choose_level_groups", "combination_counts", "level_groups_of", "pair_counts",
           "resolve_level_groups", "summary"]

#: ``level_groups="auto"``: an edge between two discrete columns needs an uncertainty
#: coefficient ``I(a; b) / min(H(a), H(b))`` of at least this much (see
#: :func:`choose_level_groups`)
AUTO_GROUP_DEPENDENCE = 0.3
#: and a group at most this many combinations seen at fit, and at least this many
#: training rows per seen combination
AUTO_GROUP_MAX_COMBINATIONS = 256
AUTO_GROUP_ROWS_PER_COMBINATION = 10
#: the most combinations of a group's product (its rows' consistency masks are (n, P))
MAX_PRODUCT = 4096

_LEVEL_TYPES = ("binary", "categorical", "ordinal")


class JointLevels:
    """One level group of a :class:`~skgenerative.mixture.MixtureLayout`: its parameter
    is the logits (K, 1, slots) of a categorical over the slots (see the module).

    Parameters
    ----------
    columns : tuple of int
        The members' positions in the table (increasing).
    sizes : tuple of int
        Their numbers of levels.
    seen : tuple of int
        The combinations seen at fit, as indices of the product (row-major: the first
        member varies slowest), increasing.
    cells : slice
        The members' cells in the model rows.
    ordered : tuple of bool
        Whether each member is ordinal (its point imputation is a median).
    """

    family = None  # none of the single-column families: the layout tells them apart
    zeros = False
    levels = False  # the members are not single level blocks (MixtureLayout.levels)

    def __init__(self, columns, sizes, seen, cells: slice, ordered=()):
        self.columns, self.sizes = tuple(int(j) for j in columns), tuple(int(s) for s in sizes)
        self.seen, self.cells = tuple(int(c) for c in seen), cells
        self.ordered = tuple(ordered) or (False,) * len(self.columns)
        self.n_product = int(np.prod(self.sizes))
        self.n_unseen = self.n_product - len(self.seen)
        self.n_levels = len(self.seen) + (1 if self.n_unseen else 0)  # the slots
        self._cache = {}

    def __getstate__(self):
        return {key: value for key, value in self.__dict__.items() if key != "_cache"}

    def __setstate__(self, state):
        self.__dict__.update(state, _cache={})

    def __repr__(self) -> str:
        return f"JointLevels(columns={self.columns}, slots={self.n_levels} of {self.n_product})"

    # ------------------------------------------------------------- the product
    def _product(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each combination's member codes (P, m) and slot (P,) (long tensors; cached per
        device: EM asks for them in every chunk of every iteration)."""
        key = ("product", str(device))
        if key not in self._cache:
            self._cache[key] = self._make_product(device)
        return self._cache[key]

    def _log_spread(self, like: torch.Tensor) -> torch.Tensor:
        """``log M(slot)`` (slots,): 0 for a seen combination's, ``log U`` for "other"."""
        key = ("spread", str(like.device), like.dtype)
        if key not in self._cache:
            spread = torch.zeros(self.n_levels, dtype=like.dtype, device=like.device)
            if self.n_unseen:
                spread[-1] = math.log(self.n_unseen)
            self._cache[key] = spread
        return self._cache[key]

    def _make_product(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(self.n_product, device=device)
        codes, rest = [], index
        for size in reversed(self.sizes):
            codes.append(rest % size)
            rest = rest // size
        slot = torch.full((self.n_product,), len(self.seen), dtype=torch.long, device=device)
        slot[torch.as_tensor(self.seen, dtype=torch.long, device=device)] = torch.arange(len(self.seen), device=device)
        return torch.stack(codes[::-1], 1), slot

    def combination_index(self, cells: torch.Tensor) -> torch.Tensor:
        """Product index (n,) of rows whose members are all observed (others: anything)."""
        key = ("strides", str(cells.device))
        if key not in self._cache:
            strides = np.cumprod((1,) + self.sizes[:0:-1])[::-1].copy()
            self._cache[key] = (torch.as_tensor(strides, device=cells.device),
                                torch.as_tensor(self.sizes, device=cells.device) - 1)
        strides, top = self._cache[key]
        code = torch.minimum(torch.nan_to_num(cells, nan=0.0).long().clamp_min(0), top)
        return (code * strides).sum(1)

    def consistent(self, cells: torch.Tensor) -> torch.Tensor:
        """``[combination c agrees with row i's observed members]`` (n, P), in ``cells``' dtype."""
        codes, _ = self._product(cells.device)
        out = None
        for i in range(len(self.sizes)):
            code = cells[:, i]
            observed = torch.nan_to_num(code, nan=-1.0).long().unsqueeze(1)
            match = (codes[:, i] == observed) | torch.isnan(code).unsqueeze(1)
            out = match if out is None else out & match
        return out.to(cells.dtype)

    def slot_codes(self, cells: torch.Tensor) -> torch.Tensor:
        """The slot (n, 1) of rows whose members are all observed, in ``cells``' dtype."""
        _, slot = self._product(cells.device)
        return slot[self.combination_index(cells)].to(cells.dtype).unsqueeze(1)

    def slot_log_probs(self, parameter: torch.Tensor) -> torch.Tensor:
        """``log p_k(c)`` (K, slots) of a combination in each slot."""
        return torch.log_softmax(parameter[:, 0], dim=-1) - self._log_spread(parameter)

    def combination_log_probs(self, parameter: torch.Tensor) -> torch.Tensor:
        """``log p_k(c)`` (K, P) of every combination of the product."""
        _, slot = self._product(parameter.device)
        return self.slot_log_probs(parameter)[:, slot]

    def distribution(self, parameter: torch.Tensor) -> Categorical:
        """The categorical over the slots (K, 1, slots)."""
        return Categorical(parameter)

    # ------------------------------------------------------------- the E-step
    def log_prob(self, cells: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
        """``log p_k(observed members)`` (n, K): the table's entry of a complete row, the
        marginal ``log sum_c [c consistent] p_k(c)`` of a row with missing members (0
        when all are missing), each row's value independent of the other rows."""

        table = self.combination_log_probs(parameter)  # (K, P)
        out = table.T[self.combination_index(cells)]
        missing = torch.isnan(cells).any(1)
        if bool(missing.any()):
            rows = torch.nonzero(missing).squeeze(1)
            marginal = row_matmul(self.consistent(cells[rows]), torch.exp(table).T)
            out[rows] = torch.log(marginal)
        return out

    def _posterior_weights(self, cells: torch.Tensor, parameter: torch.Tensor | None, resp: torch.Tensor):
        """``r_ik / p_k(x_o)`` (n, K), the consistency masks (n, P) and ``p_k(c)`` (K, P)
        (uniform over the product without a parameter: EM's initialisation)."""

        mask = self.consistent(cells).to(resp.dtype)
        if parameter is None:
            probs = resp.new_full((resp.shape[1], self.n_product), 1.0 / self.n_product)
        else:
            probs = torch.exp(self.combination_log_probs(parameter.to(resp.dtype)))
        return resp / row_matmul(mask, probs.T), mask, probs

    def statistics(self, cells: torch.Tensor, resp: torch.Tensor, parameter: torch.Tensor | None = None) -> Statistics:
        """Expected counts of the slots per component (float64): a complete row adds
        ``r_ik`` at its combination's slot, a row with missing members ``r_ik q_ik(c)``
        over the consistent combinations, a row with none observed nothing."""
        _, slot = self._product(cells.device)
        sums = resp.new_zeros(resp.shape[1], self.n_levels)
        missing = torch.isnan(cells)
        if not bool(missing.any()):  # complete rows: a count at each row's slot
            sums.index_add_(1, slot[self.combination_index(cells)], resp.T)
            return Statistics(resp.sum(0).double().unsqueeze(1), sums.double().unsqueeze(1))
        complete, partial = ~missing.any(1), missing.any(1) & ~missing.all(1)
        sums.index_add_(1, slot[self.combination_index(cells)], (resp * complete.to(resp.dtype).unsqueeze(1)).T)
        if bool(partial.any()):
            rows = torch.nonzero(partial).squeeze(1)
            weights, mask, probs = self._posterior_weights(cells[rows], parameter, resp[rows])
            expected = (weights.T @ mask) * probs  # (K, P)
            sums = sums + torch.zeros_like(sums).index_add_(1, slot, expected)
        count = (resp * (~missing.all(1)).to(resp.dtype).unsqueeze(1)).sum(0)
        return Statistics(count.double().unsqueeze(1), sums.double().unsqueeze(1))

    def m_step(self, statistics: Statistics, level_prior: float, count_mean=None) -> torch.Tensor:
        """Logits (K, 1, slots): ``(S + a) / (n + a slots)`` (:meth:`Categorical.m_step`)."""
        return Categorical.m_step(statistics, pseudo_count=level_prior).logits

    @property
    def parameter_shape(self) -> tuple:
        """The parameter's shape without the components: logits (1, slots)."""
        return (1, self.n_levels)

    def n_parameters(self, n_components: int) -> int:
        return n_components * (self.n_levels - 1)

    # ------------------------------------------------------- posteriors, draws
    def posterior(self, cells: torch.Tensor, parameter: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
        """``p(c | the row's observed cells)`` (n, P): ``sum_k r_ik q_ik(c)`` with
        ``r_ik = p(k | observed cells)``."""

        weights, mask, probs = self._posterior_weights(cells, parameter, resp)
        out = mask * row_matmul(weights, probs)
        return out / out.sum(1, keepdim=True)

    def member_probabilities(self, posterior: torch.Tensor, i: int) -> torch.Tensor:
        """``p(x_ji = l | ...)`` (n, L_i): the posterior over combinations summed per level."""

        codes, _ = self._product(posterior.device)
        one_hot = torch.nn.functional.one_hot(codes[:, i], self.sizes[i]).to(posterior.dtype)
        return row_matmul(posterior, one_hot)

    def marginal_tables(self, parameter: torch.Tensor) -> list[torch.Tensor]:
        """Each member's level probabilities per component (K, L_i)."""
        probs = torch.exp(self.combination_log_probs(parameter))
        return [self.member_probabilities(probs, i) for i in range(len(self.columns))]

    def point(self, cells: torch.Tensor, parameter: torch.Tensor, resp: torch.Tensor) -> torch.Tensor:
        """Each member's mode (median when ordinal) of its posterior marginal (n, m)."""
        posterior = self.posterior(cells, parameter, resp)
        return torch.stack([level_point(self.member_probabilities(posterior, i), ordered)
                            for i, ordered in enumerate(self.ordered)], 1)

    def draw(self, parameter: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
             cells: torch.Tensor | None = None) -> torch.Tensor:
        """Member codes (index.shape + (m,)) drawn in components ``index`` (n, ...), from
        ``p_k(c | observed members of cells)`` when ``cells`` (n, m) are given."""
        probs = torch.exp(self.combination_log_probs(parameter))[index]  # (*index, P)
        if cells is not None:
            mask = self.consistent(cells).to(probs.dtype)
            probs = probs * mask.reshape((mask.shape[0],) + (1,) * (index.dim() - 1) + (-1,))
            probs = probs / probs.sum(-1, keepdim=True)
        codes, _ = self._product(parameter.device)
        return codes[sample_levels(probs, generator)]


# ----------------------------------------------------------- counts over a source
def combination_counts(chunk: torch.Tensor, groups: tuple) -> dict:
    """``{g: counts (P_g,)}`` of the combinations of each group ``(columns, sizes)`` in
    the chunk's rows with every member observed (float64: sums over chunks add up)."""
    out = {}
    for g, (columns, sizes) in enumerate(groups):
        cells = chunk[:, list(columns)]
        complete = ~torch.isnan(cells).any(1)
        index = JointLevels(columns, sizes, (), slice(0)).combination_index(cells[complete])
        out[f"group{g}"] = torch.bincount(index, minlength=int(np.prod(sizes))).double()
    return out


def pair_counts(chunk: torch.Tensor, columns: tuple, sizes: tuple) -> dict:
    """Contingency tables (flattened) of every pair of ``columns`` over the rows where
    both are observed (float64)."""
    return combination_counts(chunk, tuple(((a, b), (sizes[i], sizes[j])) for i, a in enumerate(columns)
                                           for j, b in enumerate(columns) if i < j))


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def choose_level_groups(source, types, level_counts, row_bytes: int) -> list[tuple]:
    """``level_groups="auto"``: groups of strongly dependent discrete columns.

    One pass gives the contingency table of every pair of discrete columns (binary,
    categorical, ordinal; rows where both are observed). A pair is an *edge* when its
    uncertainty coefficient ``U = I(a; b) / min(H(a), H(b))`` (the share of the less
    uncertain column's entropy that the other explains; 0 when independent, 1 when one
    determines the other) is at least :data:`AUTO_GROUP_DEPENDENCE` and the dependence
    is more than noise by BIC (``n I > log(n) / 2`` times the parameters the pair's
    joint table adds over its two marginals, counting seen cells). Edges are merged
    strongest first (union of groups, deterministic), each merge kept only when the
    merged group's combinations seen at fit stay within
    :data:`AUTO_GROUP_MAX_COMBINATIONS` and ``n /``
    :data:`AUTO_GROUP_ROWS_PER_COMBINATION` and its product within
    :data:`MAX_PRODUCT`. On Adult (3000 rows) ``U`` is .56 for marital status x
    relationship and .45 for relationship x sex, then at most .17 (occupation x sex,
    marital status x sex; education x occupation .12): the rule groups marital
    status x relationship x sex. Independent columns have ``U`` of order
    ``(L_a - 1)(L_b - 1) / (2 n min H)``. Returns sorted tuples of positions.
    """
    columns = [j for j, t in enumerate(types) if t in _LEVEL_TYPES and level_counts[j] >= 2]
    if len(columns) < 2:
        return []
    n = source.shape[0]
    sizes = [int(level_counts[j]) for j in columns]
    tables = source.reduce(pair_counts, tuple(columns), tuple(sizes), row_bytes=row_bytes)
    edges, g = [], 0
    for i, a in enumerate(columns):
        for j, b in enumerate(columns):
            if i >= j:
                continue
            counts = tables[f"group{g}"].cpu().numpy().reshape(sizes[i], sizes[j])
            g += 1
            total = counts.sum()
            if total <= 0:
                continue
            p = counts / total
            h_a, h_b = _entropy(p.sum(1)), _entropy(p.sum(0))
            if min(h_a, h_b) <= 0:
                continue
            information = h_a + h_b - _entropy(p.ravel())
            extra = (counts > 0).sum() - (p.sum(1) > 0).sum() - (p.sum(0) > 0).sum() + 1
            strength = information / min(h_a, h_b)
            if strength >= AUTO_GROUP_DEPENDENCE and total * information > 0.5 * math.log(total) * extra:
                edges.append((-strength, a, b))
    cap = min(AUTO_GROUP_MAX_COMBINATIONS, n // AUTO_GROUP_ROWS_PER_COMBINATION)
    group_of = {j: (j,) for j in columns}
    for _, a, b in sorted(edges):
        if group_of[a] == group_of[b]:
            continue
        merged = tuple(sorted(group_of[a] + group_of[b]))
        member_sizes = tuple(int(level_counts[j]) for j in merged)
        if int(np.prod(member_sizes)) > MAX_PRODUCT:
            continue
        seen = int((source.reduce(combination_counts, ((merged, member_sizes),), row_bytes=row_bytes)
                    ["group0"] > 0).sum())
        if seen > cap:
            continue
        for j in merged:
            group_of[j] = merged
    return sorted({group for group in group_of.values() if len(group) > 1})


def level_groups_of(level_groups, schema, source, itemsize: int, name: str) -> list[tuple]:
    """The groups (sorted tuples of positions) that ``level_groups`` (None, "auto" or a
    list of column groups) gives on a source of encoded rows."""
    if level_groups is None:
        return []
    if isinstance(level_groups, str):  # "auto"
        return choose_level_groups(source, schema.types, schema.level_counts, itemsize * 4 * source.shape[1])
    return resolve_level_groups(level_groups, schema, name)


def summary(groups) -> str:
    """The groups of a fit for the ``verbose`` summary line."""
    return "level groups: " + (", ".join(" x ".join(map(str, g)) for g in groups) or "none")


def resolve_level_groups(level_groups, schema, name: str = "GaussianMixtureDensity") -> list[tuple]:
    """A user's list of column groups (names or positions) -> sorted tuples of positions,
    checked: discrete columns only, each in one group, at least two per group, products
    within :data:`MAX_PRODUCT` combinations. Errors name the columns."""
    out, used = [], set()
    for group in level_groups:
        if isinstance(group, (str, bytes)) or not hasattr(group, "__iter__"):
            raise ValueError(f"Each entry of level_groups of {name} must be a list of columns; got {group!r}.")
        positions = sorted({schema.names.index(schema._column_name(c)) for c in group})
        names = [schema.names[j] for j in positions]
        if len(positions) < 2:
            raise ValueError(f"A level group of {name} needs at least two columns; got {names}.")
        for j in positions:
            if schema.types[j] not in _LEVEL_TYPES:
                raise ValueError(f"Column {schema.names[j]!r} of level group {names} is {schema.types[j]}: a level "
                                 f"group holds binary, categorical or ordinal columns only.")
            if j in used:
                raise ValueError(f"Column {schema.names[j]!r} is in more than one level group.")
        used.update(positions)
        product = int(np.prod([max(1, schema.level_counts[j]) for j in positions]))
        if product > MAX_PRODUCT:
            raise ValueError(f"Level group {names} has {product} combinations of levels, more than {MAX_PRODUCT}.")
        out.append(tuple(positions))
    return sorted(out)
