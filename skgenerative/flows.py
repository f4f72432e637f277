"""Normalizing-flow transforms: planar, radial and inverse autoregressive (IAF).

Every transform is a small :class:`torch.nn.Module` with

``forward(z, context=None) -> (z_out, ladj)``
    the transformed sample and ``ladj = log|det df/dz|``, one value per sample;

``inverse(z_out, context=None) -> z``
    (IAF exactly in ``d`` passes, radial in closed form, planar by a scalar root
    search along ``w``).

Transforms compose (:class:`Compose`, :class:`FlowChain`): the log-determinants of
the steps add up. A posterior refined by a flow ``z_K = f_K o ... o f_1(z_0)`` has
density ``log q_K(z_K) = log q_0(z_0) - sum_k ladj_k`` (Rezende & Mohamed, 2015).

Shapes. ``z`` is ``(*batch, d)``: ``(n, d)`` for one sample per example, or
``(n, S, d)`` for ``S`` importance samples per example. ``context`` (the encoder's
hidden state for each example) is ``(n, H)`` and is broadcast over the sample axis;
a context with as many axes as ``z`` is used as it is. ``ladj`` has ``z``'s shape
without the last axis. Masks are buffers and nothing here is device specific, so
``.to(device, dtype)`` moves a flow to CUDA or to float64.

Initialisation. A fresh flow is close to the identity (planar and radial to about
1e-2; an IAF step is ``sigma_0 z`` plus a small shift, ``sigma_0 = sigmoid(gate_bias)``)
but not exactly at it, so that every parameter gets a gradient from the first step.
Parameters are drawn from torch's global generator, as for any ``nn.Module``: seed
it (or use :func:`torch.random.fork_rng`) for reproducible flows.

This module is the torch layer only: no numpy, no scikit-learn.

References
----------
.. [1] D. J. Rezende and S. Mohamed, "Variational inference with normalizing
   flows", ICML 2015 (planar and radial flows, amortised flow parameters).
.. [2] D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever and
   M. Welling, "Improved variational inference with inverse autoregressive flow",
   NeurIPS 2016.
.. [3] M. Germain, K. Gregor, I. Murray and H. Larochelle, "MADE: masked
   autoencoder for distribution estimation", ICML 2015.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn import softplus

__all__ = [
    "FLOW_KINDS",
    "FlowTransform",
    "Planar",
    "AmortizedPlanar",
    "Radial",
    "AmortizedRadial",
    "MaskedLinear",
    "MADE",
    "IAFStep",
    "Compose",
    "FlowChain",
    "make_flow",
    "planar_u_hat",
    "planar_transform",
    "planar_inverse",
    "radial_parameters",
    "radial_transform",
    "radial_inverse",
    "iaf_transform",
    "iaf_step_inverse",
    "yeo_johnson",
    "yeo_johnson_profile_statistics",
    "yeo_johnson_profile_log_likelihood",
]

FLOW_KINDS = ("planar", "radial", "iaf")

# softplus(LOG_E_MINUS_1) == 1: the raw value of a softplus-constrained parameter
# whose constrained value is 1, and the w.u at which planar's m(w.u) is 0.
_LOG_E_MINUS_1 = math.log(math.e - 1.0)
# scale of the weights that start a flow near the identity (relative to the default)
_NEAR_ZERO = 1e-2


# --------------------------------------------------------------------- mathematics
def yeo_johnson(x: Tensor, lmbda: Tensor) -> tuple[Tensor, Tensor]:
    """The Yeo-Johnson power transform, elementwise, and its log-derivative.

    For ``x >= 0``: ``psi(x) = ((1 + x)^l - 1) / l`` (``log1p(x)`` at ``l = 0``); for
    ``x < 0``: ``psi(x) = -((1 - x)^(2 - l) - 1) / (2 - l)`` (``-log1p(-x)`` at
    ``l = 2``) (Yeo & Johnson, 2000). It is increasing and smooth for every ``l``,
    with

        ladj = log psi'(x) = (l - 1) sign(x) log1p(|x|)

    (``sign(0) = +1``), so a density ``p_Y`` of ``y = psi(x)`` gives ``x`` the density
    ``p_Y(psi(x)) exp(ladj)``. ``l = 1`` is the identity. ``x`` and ``lmbda``
    broadcast; NaN stays NaN. Computed as ``expm1(a log1p|x|) / a`` (``a`` is ``l`` or
    ``2 - l``) so that it is accurate near ``a = 0`` and finite for every ``|x|``
    below about ``exp(700 / |a|)``.

    References
    ----------
    I.-K. Yeo and R. A. Johnson, "A new family of power transformations to improve
    normality or symmetry", Biometrika 87(4), 2000.
    """
    positive = x >= 0
    log1p_abs = torch.log1p(torch.where(positive, x, -x))  # |x|, differentiable at 0 from the right
    lmbda = torch.as_tensor(lmbda, dtype=x.dtype, device=x.device)
    a = torch.where(positive, lmbda, 2.0 - lmbda)
    small = a.abs() < 1e-8
    a_safe = torch.where(small, torch.ones_like(a), a)
    magnitude = torch.where(small, log1p_abs, torch.expm1(a_safe * log1p_abs) / a_safe)
    y = torch.where(positive, magnitude, -magnitude)
    ladj = (lmbda - 1.0) * torch.where(positive, log1p_abs, -log1p_abs)
    return y, ladj


def yeo_johnson_profile_statistics(x: Tensor, grid: Tensor) -> dict[str, Tensor]:
    """Additive statistics of ``x`` (``(n, p)``, NaN = missing) for every candidate
    ``grid[j, g]`` of column ``j``'s Yeo-Johnson exponent: the observed count, the sum
    and the sum of squares of ``psi(x)``, and ``sum sign(x) log1p|x|`` (``(p,)``).
    Sums over chunks of rows add up (a reduction over data blocks)."""
    observed = ~torch.isnan(x)
    x0 = torch.where(observed, x, torch.zeros_like(x))
    log1p_abs = torch.log1p(x0.abs())
    positive = x0 >= 0
    sign = torch.where(positive, 1.0, -1.0).to(x.dtype) * observed
    # psi = sign (exp(a log1p|x|) - 1) / a with a = lambda or 2 - lambda, written in
    # place on one (n, p, G) buffer; a = 0 is nudged to 1e-12 (psi off by ~1e-12 |psi|)
    a = torch.where(positive.unsqueeze(-1), grid.unsqueeze(0), 2.0 - grid.unsqueeze(0))
    a = torch.where(a.abs() < 1e-12, torch.full_like(a, 1e-12), a)
    y = torch.mul(a, log1p_abs.unsqueeze(-1)).expm1_().div_(a).mul_(sign.unsqueeze(-1))
    total = y.sum(0)
    return {
        "count": observed.sum(0).to(torch.float64),
        "sum": total.to(torch.float64),
        "sum_squares": y.square_().sum(0).to(torch.float64),
        "signed_log": (sign * log1p_abs).sum(0).to(torch.float64),
    }


def yeo_johnson_profile_log_likelihood(statistics: dict[str, Tensor], grid: Tensor) -> Tensor:
    """Per column and candidate exponent, the Gaussian log-likelihood of the column
    after the transform, mean and variance profiled out (up to a constant)::

        l(lambda) = -n/2 log var(psi_lambda(x)) + (lambda - 1) sum sign(x) log1p|x|

    (the maximum-likelihood criterion of Yeo & Johnson; scikit-learn's
    ``PowerTransformer`` maximises the same function). ``-inf`` where the transformed
    column has no spread."""
    n = statistics["count"].unsqueeze(-1).clamp_min(1.0)
    mean = statistics["sum"] / n
    variance = statistics["sum_squares"] / n - mean.square()
    log_variance = torch.where(variance > 0, variance.clamp_min(1e-300).log(),
                               torch.full_like(variance, math.inf))
    return -0.5 * n * log_variance + (grid - 1.0) * statistics["signed_log"].unsqueeze(-1)


def planar_u_hat(u: Tensor, w: Tensor) -> Tensor:
    """Planar flow's constrained ``u``: ``w . u_hat = m(w . u) > -1``.

    ``u_hat = u + (m(w.u) - w.u) w / ||w||^2`` with ``m(a) = -1 + softplus(a)``,
    written ``m(a) - a = softplus(-a) - 1`` to avoid cancelling for large ``a``.
    ``u`` and ``w`` have shape ``(..., d)`` and broadcast together.

    ``||w||^2`` is floored at the dtype's smallest normal number so that ``w = 0``
    gives ``u_hat = u`` instead of NaN (then ``f`` is a shift).
    """
    wu = (w * u).sum(-1, keepdim=True)
    w_sq = w.square().sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return u + (softplus(-wu) - 1.0) * w / w_sq


def planar_transform(z: Tensor, u: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Planar flow ``f(z) = z + u_hat tanh(w . z + b)`` and its ``log|det J|``.

    Parameters
    ----------
    z : Tensor of shape (*batch, d)
    u, w : Tensor broadcastable to (*batch, d)
        ``u`` unconstrained; :func:`planar_u_hat` makes the map invertible.
    b : Tensor broadcastable to batch

    Returns
    -------
    z_out : Tensor of shape (*batch, d)
    ladj : Tensor of shape batch

    Notes
    -----
    ``det J = 1 + u_hat . psi(z)`` with ``psi = h'(w.z + b) w`` and ``h = tanh``, so with
    ``t = tanh(w.z + b)`` and ``w . u_hat = -1 + softplus(w.u)``::

        det J = 1 + (1 - t^2)(w . u_hat) = t^2 + (1 - t^2) softplus(w . u) > 0,

    a sum of non-negative terms, evaluated as such (no cancellation near ``-1``).
    Along ``w`` the map is ``a -> a + (w . u_hat) tanh(a)`` (``a = w.z + b``), whose
    slope ``1 + (w . u_hat)(1 - t^2)`` is positive: the map is monotone along ``w`` and
    the identity across it, hence invertible; the inverse needs a scalar root
    search (:func:`planar_inverse`), not a closed form.
    """
    u_hat = planar_u_hat(u, w)
    t = torch.tanh((w * z).sum(-1) + b)
    z_out = z + u_hat * t.unsqueeze(-1)
    t_sq = t.square()
    ladj = torch.log(t_sq + (1.0 - t_sq) * softplus((w * u).sum(-1)))
    return z_out, ladj


def planar_inverse(z_out: Tensor, u: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Inverse of :func:`planar_transform`, by a bracketed scalar root search.

    With ``s = w . u_hat > -1`` and ``a = w . z + b`` (unknown), the output gives
    ``c = w . z_out + b = a + s tanh(a)``, a strictly increasing function of ``a``
    whose root lies in ``[c - |s|, c + |s|]`` (``|tanh| <= 1``). Bisection on that
    bracket, run until it can no longer shrink in the dtype (an iteration count
    fixed by the dtype's precision, so it is the same for every element), finds
    ``a``; then ``z = z_out - u_hat tanh(a)``. Accurate to a few ulps of ``a``
    however flat the map is (``s`` near -1), where Newton's method could stall.
    """
    u_hat = planar_u_hat(u, w)
    slope = (w * u_hat).sum(-1)
    c = (w * z_out).sum(-1) + b
    c, slope = torch.broadcast_tensors(c, slope)
    lo, hi = c - slope.abs(), c + slope.abs()
    # each step halves the bracket: the mantissa's bits plus 24 take a bracket up
    # to 2^24 times wider than |a| down to the dtype's resolution (further steps
    # would leave it unchanged)
    mantissa_bits = round(-math.log2(torch.finfo(z_out.dtype).eps))
    for _ in range(mantissa_bits + 24):
        mid = 0.5 * (lo + hi)
        below = mid + slope * torch.tanh(mid) < c
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    a = 0.5 * (lo + hi)
    return z_out - u_hat * torch.tanh(a).unsqueeze(-1)


def radial_parameters(alpha_raw: Tensor, beta_raw: Tensor) -> tuple[Tensor, Tensor]:
    """Radial flow's constrained ``alpha = softplus(alpha_raw) > 0`` and
    ``beta = -alpha + softplus(beta_raw) >= -alpha``."""
    alpha = softplus(alpha_raw)
    return alpha, softplus(beta_raw) - alpha


def radial_transform(
    z: Tensor, z0: Tensor, alpha_raw: Tensor, beta_raw: Tensor
) -> tuple[Tensor, Tensor]:
    """Radial flow ``f(z) = z + beta h(alpha, r)(z - z0)`` and its ``log|det J|``.

    ``r = ||z - z0||``, ``h(alpha, r) = 1 / (alpha + r)``, with ``alpha`` and ``beta``
    from :func:`radial_parameters`.

    Parameters
    ----------
    z : Tensor of shape (*batch, d)
    z0 : Tensor broadcastable to (*batch, d)
    alpha_raw, beta_raw : Tensor broadcastable to batch

    Returns
    -------
    z_out : Tensor of shape (*batch, d)
    ladj : Tensor of shape batch

    Notes
    -----
    ``log|det J| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)`` with
    ``h' = -h^2``. Writing ``c = alpha + beta = softplus(beta_raw) >= 0``::

        1 + beta h = (c + r) / (alpha + r),
        1 + beta h + beta h' r = (alpha c + r (2 alpha + r)) / (alpha + r)^2,

    both ratios of non-negative terms, which is how they are evaluated.
    """
    alpha = softplus(alpha_raw)
    c = softplus(beta_raw)
    diff = z - z0
    r = torch.linalg.vector_norm(diff, dim=-1)
    log_ar = torch.log(alpha + r)
    z_out = z + ((c - alpha) / (alpha + r)).unsqueeze(-1) * diff
    d = z.shape[-1]
    ladj = (d - 1) * (torch.log(c + r) - log_ar)
    ladj = ladj + torch.log(alpha * c + r * (2.0 * alpha + r)) - 2.0 * log_ar
    return z_out, ladj


def radial_inverse(z_out: Tensor, z0: Tensor, alpha_raw: Tensor, beta_raw: Tensor) -> Tensor:
    """Inverse of :func:`radial_transform`, in closed form.

    ``z - z0`` is parallel to ``z_out - z0`` and ``rho = ||z_out - z0|| = r (c + r) /
    (alpha + r)`` with ``c = alpha + beta``, so ``r`` is the non-negative root of
    ``r^2 + (c - rho) r - alpha rho = 0`` (one root is >= 0, the other <= 0), and
    ``z = z0 + (z_out - z0)(alpha + r) / (c + r)``. With ``q = rho - c`` and
    ``D = sqrt(q^2 + 4 alpha rho)`` the root is ``(q + D) / 2`` when ``q >= 0`` and
    ``2 alpha rho / (D - q)`` otherwise (the form without cancellation).
    """
    alpha = softplus(alpha_raw)
    c = softplus(beta_raw)
    diff = z_out - z0
    rho = torch.linalg.vector_norm(diff, dim=-1)
    q = rho - c
    disc = torch.sqrt(q.square() + 4.0 * alpha * rho)
    r = torch.where(q >= 0, 0.5 * (q + disc), 2.0 * alpha * rho / (disc + q.abs()))
    return z0 + diff * ((alpha + r) / (c + r)).unsqueeze(-1)


def iaf_transform(z: Tensor, shift: Tensor, gate_logit: Tensor) -> tuple[Tensor, Tensor]:
    """One IAF update ``z' = sigma z + (1 - sigma) m`` and ``log|det J| = sum log sigma``.

    ``sigma = sigmoid(s)`` with ``m = shift`` and ``s = gate_logit`` (shape ``(*batch,
    d)``), computed as ``m + sigma (z - m)``. The determinant is the product of the
    gates because ``m`` and ``s`` at coordinate ``i`` depend only on coordinates that
    come before ``i`` in the ordering (a triangular Jacobian with diagonal ``sigma``).
    """
    z_out = shift + torch.sigmoid(gate_logit) * (z - shift)
    return z_out, F.logsigmoid(gate_logit).sum(-1)


def iaf_step_inverse(z_out: Tensor, shift: Tensor, gate_logit: Tensor) -> Tensor:
    """``z = m + (z' - m) / sigma``, with ``1 / sigma = 1 + exp(-s)``, given ``m`` and ``s``.

    ``m`` and ``s`` must be those computed from ``z`` itself, which is why
    :meth:`IAFStep.inverse` iterates.
    """
    return shift + (z_out - shift) * (1.0 + torch.exp(-gate_logit))


# ----------------------------------------------------------------------- helpers
def _broadcast_to_batch(t: Tensor, z: Tensor) -> Tensor:
    """View per-example values ``(n, k)`` as ``(n, 1, ..., 1, k)`` to broadcast with ``z``.

    A tensor with as many axes as ``z`` (per-sample values) is returned unchanged.
    """
    if t.dim() == z.dim():
        return t
    if t.dim() == 2 and z.dim() > 2:
        return t.reshape(t.shape[0], *([1] * (z.dim() - 2)), t.shape[1])
    raise ValueError(
        f"context of shape {tuple(t.shape)} does not match z of shape {tuple(z.shape)}: "
        "expected (n, context_dim) with n = z.shape[0], or one context per sample."
    )


def _near_zero_(linear: nn.Linear, scale: float = _NEAR_ZERO) -> nn.Linear:
    """Weights uniform in +-scale / sqrt(fan_in): a head whose output barely moves with
    its input at first, so its bias sets the initial transform."""
    bound = scale / math.sqrt(max(linear.in_features, 1))
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


def _random_direction(d: int) -> Tensor:
    """A random ``w`` with ``||w|| ~ 1``, so ``tanh(w . z + b)`` is not saturated for
    ``z ~ N(0, I)``."""
    return torch.randn(d) / math.sqrt(d)


def _planar_identity_u(w: Tensor) -> Tensor:
    """The ``u`` for which ``u_hat = 0`` (planar is the identity): ``log(e-1) w / ||w||^2``.

    Then ``w . u = log(e - 1)``, ``m(w . u) = 0`` and the correction cancels ``u``.
    """
    return _LOG_E_MINUS_1 * w / w.square().sum()


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    # Integral, not int: numpy integers arrive from parameter grids (np.arange)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _hidden_widths(latent_dim: int, hidden_features) -> tuple[int, ...]:
    if hidden_features is None:
        width = max(32, 4 * latent_dim)
        return (width, width)
    if isinstance(hidden_features, Integral) and not isinstance(hidden_features, bool):
        width = _check_positive_int("hidden_features", hidden_features)
        return (width, width)
    widths = tuple(_check_positive_int("every hidden_features width", w) for w in hidden_features)
    if not widths:
        raise ValueError("hidden_features must name at least one hidden layer.")
    return widths


# ----------------------------------------------------------------------- modules
class FlowTransform(nn.Module):
    """A transform ``z -> f(z; context)`` that also returns ``log|det df/dz|``.

    Subclasses set ``latent_dim`` and ``context_dim`` (0: no context) and implement
    :meth:`forward`; :meth:`inverse` where it can be computed.

    Examples
    --------
    A subclass only maps ``z`` and reports its log-determinant; here a fixed scaling:

    >>> import math, torch
    >>> from skgenerative.flows import FlowTransform
    >>> class Scale(FlowTransform):
    ...     latent_dim = 2
    ...     def forward(self, z, context=None):
    ...         return 3.0 * z, torch.full(z.shape[:-1], 2 * math.log(3.0))
    ...     def inverse(self, z_out, context=None):
    ...         return z_out / 3.0
    >>> z, ladj = Scale()(torch.ones(4, 2))
    >>> z[0].tolist(), round(float(ladj[0]), 4)
    ([3.0, 3.0], 2.1972)
    """

    latent_dim: int | None = None
    context_dim: int = 0

    def _check_z(self, z: Tensor) -> None:
        if self.latent_dim is not None and (z.dim() == 0 or z.shape[-1] != self.latent_dim):
            raise ValueError(
                f"{type(self).__name__} expects z of shape (..., {self.latent_dim}); "
                f"got {tuple(z.shape)}."
            )

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(f(z), log|det J_f(z)|)``, shapes ``(*batch, d)`` and ``batch``."""
        raise NotImplementedError  # abstract: every transform here overrides it

    def inverse(self, z_out: Tensor, context: Tensor | None = None) -> Tensor:
        """``f^{-1}(z_out)``."""
        # abstract: every transform here overrides it (a user's subclass may not)
        raise NotImplementedError(f"{type(self).__name__} does not define an inverse.")

    def _check_inputs(self, z: Tensor, context: Tensor | None) -> None:
        """z must end in ``latent_dim``; a context is required when ``context_dim > 0``."""
        self._check_z(z)
        if self.context_dim:
            if context is None:
                raise ValueError(
                    f"{type(self).__name__} is conditioned on a context of width "
                    f"{self.context_dim}; got context=None."
                )
            if context.shape[-1] != self.context_dim:
                raise ValueError(
                    f"{type(self).__name__} expects context of shape (n, {self.context_dim}); "
                    f"got {tuple(context.shape)}."
                )


class _ParametricFlow(FlowTransform):
    """A flow given by a pair of functions of ``(z, *parameters)``: the map and its inverse.

    Subclasses set ``_map`` and ``_inverse_map`` (e.g. :func:`planar_transform` and
    :func:`planar_inverse`) and implement ``_parameters_for(z, context)``, which checks
    the inputs and returns the parameters, free or computed from the context.
    """

    _map = None
    _inverse_map = None

    def _parameters_for(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, ...]:  # pragma: no cover
        raise NotImplementedError  # abstract: every subclass here overrides it

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return type(self)._map(z, *self._parameters_for(z, context))

    def inverse(self, z_out: Tensor, context: Tensor | None = None) -> Tensor:
        return type(self)._inverse_map(z_out, *self._parameters_for(z_out, context))


class Planar(_ParametricFlow):
    """Planar flow with free (not amortised) parameters ``u, w in R^d, b in R``.

    ``f(z) = z + u_hat tanh(w . z + b)``; see :func:`planar_transform` for
    ``u_hat`` and ``log|det J|``. ``context`` is accepted and ignored, so that a chain
    can be called the same way whatever its steps. The inverse is a scalar root
    search (:func:`planar_inverse`).

    Parameters
    ----------
    latent_dim : int

    Examples
    --------
    The log-determinant agrees with autograd's Jacobian:

    >>> import torch
    >>> from skgenerative.flows import Planar
    >>> _ = torch.manual_seed(0)
    >>> flow = Planar(latent_dim=3).double()
    >>> z = torch.randn(3, dtype=torch.float64)
    >>> z_out, ladj = flow(z.unsqueeze(0))
    >>> J = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0))[0][0], z)
    >>> bool(torch.isclose(ladj[0], torch.linalg.slogdet(J)[1]))
    True
    """

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        w = _random_direction(latent_dim)
        u = _planar_identity_u(w) + _NEAR_ZERO * torch.randn(latent_dim) / math.sqrt(latent_dim)
        self.u = nn.Parameter(u)
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(()))

    _map, _inverse_map = staticmethod(planar_transform), staticmethod(planar_inverse)

    def _parameters_for(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        self._check_z(z)
        return self.u, self.w, self.b


class AmortizedPlanar(_ParametricFlow):
    """Planar flow whose ``(u, w, b)`` are a linear function of each example's context.

    ``(u, w, b) = A c + a`` for the context ``c`` (the encoder's hidden state), as in
    Rezende & Mohamed (2015); then ``f(z) = z + u_hat tanh(w . z + b)`` per example
    (:func:`planar_transform`). The head starts with small weights and a bias at
    which ``u_hat = 0``, so a fresh flow is close to the identity.

    Parameters
    ----------
    latent_dim : int
    context_dim : int

    Attributes
    ----------
    head : nn.Linear
        ``context_dim -> 2 latent_dim + 1``: ``u``, then ``w``, then ``b``.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.flows import AmortizedPlanar
    >>> flow = AmortizedPlanar(latent_dim=2, context_dim=5)
    >>> z, h = torch.randn(4, 10, 2), torch.randn(4, 5)  # 10 samples for each of 4 rows
    >>> z_out, ladj = flow(z, h)
    >>> z_out.shape, ladj.shape
    (torch.Size([4, 10, 2]), torch.Size([4, 10]))
    """

    def __init__(self, latent_dim: int, context_dim: int):
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.context_dim = _check_positive_int("context_dim", context_dim)
        self.head = _near_zero_(nn.Linear(context_dim, 2 * latent_dim + 1))
        w = _random_direction(latent_dim)
        with torch.no_grad():
            self.head.bias.copy_(torch.cat([_planar_identity_u(w), w, torch.zeros(1)]))

    _map, _inverse_map = staticmethod(planar_transform), staticmethod(planar_inverse)

    def _parameters_for(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self._check_inputs(z, context)
        params = _broadcast_to_batch(self.head(context), z)
        d = self.latent_dim
        u, w, b = params.split([d, d, 1], dim=-1)
        return u, w, b.squeeze(-1)


class Radial(_ParametricFlow):
    """Radial flow with free parameters ``z0 in R^d`` and raw ``alpha``, ``beta``.

    ``f(z) = z + beta (z - z0) / (alpha + ||z - z0||)`` with ``alpha > 0`` and
    ``beta >= -alpha`` (:func:`radial_parameters`); ``log|det J|`` in
    :func:`radial_transform`. Starts at ``alpha = 1``, ``beta`` about 0.
    ``context`` is accepted and ignored. The inverse is in closed form
    (:func:`radial_inverse`).

    Parameters
    ----------
    latent_dim : int

    Examples
    --------
    Radial maps invert in closed form:

    >>> import torch
    >>> from skgenerative.flows import Radial
    >>> flow = Radial(latent_dim=2)
    >>> z = torch.randn(6, 2)
    >>> z_out, ladj = flow(z)
    >>> torch.allclose(flow.inverse(z_out), z, atol=1e-5)
    True
    """

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.z0 = nn.Parameter(torch.zeros(latent_dim))
        self.alpha_raw = nn.Parameter(torch.tensor(_LOG_E_MINUS_1))
        self.beta_raw = nn.Parameter(torch.tensor(_LOG_E_MINUS_1) + _NEAR_ZERO * torch.randn(()))

    _map, _inverse_map = staticmethod(radial_transform), staticmethod(radial_inverse)

    def _parameters_for(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        self._check_z(z)
        return self.z0, self.alpha_raw, self.beta_raw


class AmortizedRadial(_ParametricFlow):
    """Radial flow whose ``(z0, alpha_raw, beta_raw)`` are linear in each example's context.

    ``(z0, alpha_raw, beta_raw) = A c + a``; then :func:`radial_transform` per example.
    The head starts with small weights and a bias giving ``z0 = 0``, ``alpha = 1``,
    ``beta = 0``. Closed-form inverse (:func:`radial_inverse`).

    Parameters
    ----------
    latent_dim : int
    context_dim : int

    Attributes
    ----------
    head : nn.Linear
        ``context_dim -> latent_dim + 2``: ``z0``, then ``alpha_raw``, ``beta_raw``.

    Examples
    --------
    >>> import torch
    >>> from skgenerative.flows import AmortizedRadial
    >>> flow = AmortizedRadial(latent_dim=2, context_dim=5)
    >>> z, h = torch.randn(4, 2), torch.randn(4, 5)
    >>> z_out, ladj = flow(z, h)
    >>> torch.allclose(flow.inverse(z_out, h), z, atol=1e-4)
    True
    """

    def __init__(self, latent_dim: int, context_dim: int):
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.context_dim = _check_positive_int("context_dim", context_dim)
        self.head = _near_zero_(nn.Linear(context_dim, latent_dim + 2))
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[latent_dim:] = _LOG_E_MINUS_1

    _map, _inverse_map = staticmethod(radial_transform), staticmethod(radial_inverse)

    def _parameters_for(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self._check_inputs(z, context)
        params = _broadcast_to_batch(self.head(context), z)
        z0, alpha_raw, beta_raw = params.split([self.latent_dim, 1, 1], dim=-1)
        return z0, alpha_raw.squeeze(-1), beta_raw.squeeze(-1)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask built from degrees.

    ``mask[j, i] = out_degrees[j] >= in_degrees[i]`` (``> `` when ``strict``): unit
    ``j`` sees input ``i`` only if its degree allows. The mask is a buffer, so it
    follows the module's device and dtype and is saved in the ``state_dict``.

    Parameters
    ----------
    in_degrees, out_degrees : Tensor of int, shapes (in_features,), (out_features,)
    strict : bool
        Use ``>`` (output layer of a MADE) instead of ``>=`` (hidden layers).

    Examples
    --------
    >>> import torch
    >>> from skgenerative.flows import MaskedLinear
    >>> layer = MaskedLinear(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]), strict=True)
    >>> layer.mask
    tensor([[0., 0., 0.],
            [1., 0., 0.],
            [1., 1., 0.]])
    """

    def __init__(self, in_degrees: Tensor, out_degrees: Tensor, *, strict: bool):
        super().__init__(len(in_degrees), len(out_degrees))
        if strict:
            mask = out_degrees.unsqueeze(1) > in_degrees.unsqueeze(0)
        else:
            mask = out_degrees.unsqueeze(1) >= in_degrees.unsqueeze(0)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder giving an IAF step its shift ``m`` and gate logit ``s``.

    Input ``i`` has degree ``degrees[i]`` (a permutation of ``1..d``); hidden units get
    degrees ``0..d-1`` in turn; output ``i`` (for ``m`` and for ``s``) sees hidden unit
    ``j`` only if ``degrees[i] > deg(j)``, and hidden units see inputs of degree at most
    their own. So ``m_i`` and ``s_i`` depend on ``z_j`` only when ``degrees[j] <
    degrees[i]`` (Germain et al., 2015). The context enters the first hidden layer
    through an unmasked linear map; degree-0 hidden units see only the context, which
    is how the first coordinate in the ordering gets a context-dependent ``m, s``.

    Parameters
    ----------
    latent_dim : int
    context_dim : int, default=0
    hidden_features : int or sequence of int, default=None
        Widths of the hidden layers (ELU activations); as in :class:`IAFStep`.
    reverse : bool, default=False
        Degrees ``d, ..., 1`` instead of ``1, ..., d``.

    Attributes
    ----------
    degrees : Tensor of int, shape (latent_dim,)
        The ordering, a buffer.

    Examples
    --------
    Output ``i`` does not depend on inputs ``i, i+1, ...`` of the ordering:

    >>> import torch
    >>> from skgenerative.flows import MADE
    >>> made = MADE(latent_dim=3)
    >>> z = torch.randn(1, 3)
    >>> J = torch.autograd.functional.jacobian(lambda v: made(v)[0], z)[0, :, 0, :]
    >>> bool((J.triu() == 0).all())  # strictly lower triangular
    True
    """

    def __init__(
        self,
        latent_dim: int,
        context_dim: int = 0,
        hidden_features: int | Sequence[int] | None = None,
        *,
        reverse: bool = False,
    ):
        super().__init__()
        d = _check_positive_int("latent_dim", latent_dim)
        hidden_features = _hidden_widths(d, hidden_features)
        degrees = torch.arange(1, d + 1)
        if reverse:
            degrees = degrees.flip(0)
        self.register_buffer("degrees", degrees)
        layers = []
        previous = degrees
        for width in hidden_features:
            hidden_degrees = torch.arange(width) % d
            layers.append(MaskedLinear(previous, hidden_degrees, strict=False))
            previous = hidden_degrees
        self.hidden = nn.ModuleList(layers)
        context_dim = _check_positive_int("context_dim", context_dim, minimum=0)
        self.context = nn.Linear(context_dim, hidden_features[0], bias=False) if context_dim else None
        self.output = MaskedLinear(previous, degrees.repeat(2), strict=True)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(m, s)``, each of ``z``'s shape."""
        x = self.hidden[0](z)
        if self.context is not None:
            x = x + _broadcast_to_batch(self.context(context), x)
        x = F.elu(x)
        for layer in self.hidden[1:]:
            x = F.elu(layer(x))
        shift, gate_logit = self.output(x).chunk(2, dim=-1)
        return shift, gate_logit


class IAFStep(FlowTransform):
    """One inverse autoregressive flow step (Kingma et al., 2016).

    ``(m, s) = MADE(z, h)``, ``sigma = sigmoid(s)``, ``z' = sigma z + (1 - sigma) m``,
    ``log|det J| = sum_i log sigma_i`` (:func:`iaf_transform`). The Jacobian is
    triangular in the step's ordering (:attr:`degrees`); successive steps of a
    :class:`FlowChain` alternate ``reverse`` so that every coordinate comes to depend
    on every other (reversed degrees: a fixed permutation, log-determinant 0, with
    no data movement).

    Parameters
    ----------
    latent_dim : int
    context_dim : int, default=0
        Width of the conditioning vector ``h``; 0 for an unconditioned step.
    hidden_features : int or sequence of int, default=None
        MADE hidden widths; an int ``k`` means two layers of ``k``; ``None`` means two
        layers of ``max(32, 4 latent_dim)``.
    reverse : bool, default=False
        Use the ordering ``d, ..., 1``.
    gate_bias : float, default=2.0
        Initial bias of ``s``: a fresh step is ``z' ~ sigmoid(gate_bias) z`` plus a small
        shift (Kingma et al. suggest ``s`` starting at +1 or +2).

    Notes
    -----
    :meth:`inverse` runs ``d`` passes of the MADE: after pass ``k`` the coordinates of
    degree ``<= k`` are exact, because their ``m, s`` depend only on coordinates of
    lower degree. Sampling a VAE posterior only needs :meth:`forward`.

    Examples
    --------
    The Jacobian is triangular, and the step inverts exactly:

    >>> import torch
    >>> from skgenerative.flows import IAFStep
    >>> step = IAFStep(latent_dim=3, context_dim=4)
    >>> z, h = torch.randn(5, 3), torch.randn(5, 4)
    >>> z_out, ladj = step(z, h)
    >>> torch.allclose(step.inverse(z_out, h), z, atol=1e-5)
    True
    """

    def __init__(
        self,
        latent_dim: int,
        context_dim: int = 0,
        hidden_features: int | Sequence[int] | None = None,
        *,
        reverse: bool = False,
        gate_bias: float = 2.0,
    ):
        super().__init__()
        self.latent_dim = _check_positive_int("latent_dim", latent_dim)
        self.context_dim = _check_positive_int("context_dim", context_dim, minimum=0)
        self.reverse = bool(reverse)
        self.gate_bias = float(gate_bias)
        widths = _hidden_widths(latent_dim, hidden_features)
        self.made = MADE(latent_dim, context_dim, widths, reverse=reverse)
        _near_zero_(self.made.output)
        with torch.no_grad():
            self.made.output.bias.zero_()
            self.made.output.bias[latent_dim:] = self.gate_bias

    @property
    def degrees(self) -> Tensor:
        """The ordering: ``z'_i`` depends on ``z_j`` (``j != i``) only if ``degrees[j] < degrees[i]``."""
        return self.made.degrees

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_inputs(z, context)
        return iaf_transform(z, *self.made(z, context))

    def inverse(self, z_out: Tensor, context: Tensor | None = None) -> Tensor:
        self._check_inputs(z_out, context)
        z = z_out
        for _ in range(self.latent_dim):
            z = iaf_step_inverse(z_out, *self.made(z, context))
        return z


class Compose(FlowTransform):
    """The composition of transforms, applied in order; log-determinants add up.

    ``Compose([f_1, ..., f_K])`` is ``f_K o ... o f_1``.
    ``forward`` applies the transforms in order and returns ``(z_K, sum_k ladj_k)``;
    ``inverse`` undoes them in reverse order (if every step has an inverse). Every
    step receives the same ``context``. An empty composition is the identity.

    Parameters
    ----------
    transforms : iterable of FlowTransform

    Examples
    --------
    >>> import torch
    >>> from skgenerative.flows import Compose, Radial
    >>> first, second = Radial(2), Radial(2)
    >>> flow = Compose([first, second])
    >>> z = torch.randn(3, 2)
    >>> z_out, ladj = flow(z)
    >>> z_mid, ladj_1 = first(z)
    >>> torch.allclose(ladj, ladj_1 + second(z_mid)[1])
    True
    """

    def __init__(self, transforms: Iterable[FlowTransform]):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check_z(z)
        ladj = z.new_zeros(z.shape[:-1])
        for transform in self.transforms:
            z, step_ladj = transform(z, context)
            ladj = ladj + step_ladj
        return z, ladj

    def inverse(self, z_out: Tensor, context: Tensor | None = None) -> Tensor:
        self._check_z(z_out)
        for transform in reversed(self.transforms):
            z_out = transform.inverse(z_out, context)
        return z_out

    def __len__(self) -> int:
        return len(self.transforms)


class FlowChain(Compose):
    """``n_flows`` steps of one kind of flow, amortised over a context when it has one.

    ============  =========================================  ====================
    ``kind``      step with ``context_dim > 0``              ``context_dim = 0``
    ============  =========================================  ====================
    ``"planar"``  :class:`AmortizedPlanar`                   :class:`Planar`
    ``"radial"``  :class:`AmortizedRadial`                   :class:`Radial`
    ``"iaf"``     :class:`IAFStep` conditioned on context    :class:`IAFStep`
    ============  =========================================  ====================

    IAF steps alternate their ordering (``reverse=False, True, False, ...``).

    Parameters
    ----------
    kind : {"planar", "radial", "iaf"}
    n_flows : int
        Number of steps; 0 gives the identity (``ladj = 0``).
    latent_dim : int
    context_dim : int, default=0
    hidden_features : int or sequence of int, default=None
        IAF's MADE widths (see :class:`IAFStep`); ignored by planar and radial, whose
        amortisation heads are linear.
    gate_bias : float, default=2.0
        IAF's initial gate bias (see :class:`IAFStep`).

    Examples
    --------
    >>> import torch
    >>> from skgenerative.flows import FlowChain
    >>> flow = FlowChain("iaf", n_flows=2, latent_dim=3, context_dim=8)
    >>> z0 = torch.randn(5, 10, 3)  # 10 importance samples for each of 5 examples
    >>> h = torch.randn(5, 8)       # the encoder's hidden state of each example
    >>> z, ladj = flow(z0, h)
    >>> z.shape, ladj.shape
    (torch.Size([5, 10, 3]), torch.Size([5, 10]))
    >>> torch.allclose(flow.inverse(z, h), z0, atol=1e-4)
    True
    """

    def __init__(
        self,
        kind: str,
        n_flows: int,
        latent_dim: int,
        context_dim: int = 0,
        hidden_features: int | Sequence[int] | None = None,
        *,
        gate_bias: float = 2.0,
    ):
        if kind not in FLOW_KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, FLOW_KINDS))}; got {kind!r}.")
        n_flows = _check_positive_int("n_flows", n_flows, minimum=0)
        latent_dim = _check_positive_int("latent_dim", latent_dim)
        context_dim = _check_positive_int("context_dim", context_dim, minimum=0)
        if kind == "iaf":
            steps = [
                IAFStep(latent_dim, context_dim, hidden_features, reverse=k % 2 == 1, gate_bias=gate_bias)
                for k in range(n_flows)
            ]
        elif kind == "planar":
            steps = [
                AmortizedPlanar(latent_dim, context_dim) if context_dim else Planar(latent_dim)
                for _ in range(n_flows)
            ]
        else:
            steps = [
                AmortizedRadial(latent_dim, context_dim) if context_dim else Radial(latent_dim)
                for _ in range(n_flows)
            ]
        super().__init__(steps)
        self.kind = kind
        self.n_flows = n_flows
        self.latent_dim = latent_dim
        self.context_dim = context_dim

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, n_flows={self.n_flows}, latent_dim={self.latent_dim}, "
            f"context_dim={self.context_dim}"
        )


def make_flow(
    kind: str,
    n_flows: int,
    latent_dim: int,
    context_dim: int = 0,
    hidden_features: int | Sequence[int] | None = None,
) -> FlowChain:
    """The flow a :class:`FlowVAE` refines its posterior with: a :class:`FlowChain`.

    ``flow(z0, h) -> (z_K, sum_ladj)`` with ``z0`` of shape ``(n, d)`` or ``(n, S, d)``
    and the encoder's hidden state ``h`` of shape ``(n, context_dim)``; then
    ``log q_K(z_K | x) = log q_0(z0 | x) - sum_ladj``.

    Parameters
    ----------
    kind : {"planar", "radial", "iaf"}
    n_flows : int
    latent_dim : int
    context_dim : int, default=0
        0 for flows with free parameters (no amortisation).
    hidden_features : int or sequence of int, default=None
        IAF's MADE widths.

    Returns
    -------
    FlowChain
    """
    return FlowChain(kind, n_flows, latent_dim, context_dim, hidden_features)
