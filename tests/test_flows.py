"""Normalizing-flow transforms: one contract test over every transform, then the maths
specific to each (planar and radial constraints, IAF's autoregressive ordering).

Log-determinants are checked against the determinant of autograd's Jacobian, at
random parameters well away from the near-identity initialisation.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from skgenerative.flows import (
    FLOW_KINDS,
    AmortizedPlanar,
    AmortizedRadial,
    Compose,
    FlowChain,
    FlowTransform,
    IAFStep,
    Planar,
    Radial,
    make_flow,
    planar_inverse,
    planar_transform,
    planar_u_hat,
    radial_inverse,
    radial_parameters,
    radial_transform,
)

H = 4  # context width
N = 3  # examples
S = 2  # importance samples per example
GATE = torch.sigmoid(torch.tensor(2.0)).item()  # a fresh IAF step scales z by this


def _mixed(d):
    return Compose([AmortizedPlanar(d, H), IAFStep(d, H, 8), Radial(d)])


# name: (factory of latent_dim, context width, fresh flow ~ scale * z)
CASES = {
    "planar": (lambda d: Planar(d), 0, 1.0),
    "amortized_planar": (lambda d: AmortizedPlanar(d, H), H, 1.0),
    "radial": (lambda d: Radial(d), 0, 1.0),
    "amortized_radial": (lambda d: AmortizedRadial(d, H), H, 1.0),
    "iaf": (lambda d: IAFStep(d, hidden_features=8), 0, GATE),
    "iaf_context": (lambda d: IAFStep(d, H, hidden_features=(8, 8)), H, GATE),
    "iaf_context_reversed": (lambda d: IAFStep(d, H, 8, reverse=True), H, GATE),
    "chain_planar": (lambda d: FlowChain("planar", 3, d, H), H, 1.0),
    "chain_planar_free": (lambda d: make_flow("planar", 2, d), 0, 1.0),
    "chain_radial": (lambda d: FlowChain("radial", 3, d, H), H, 1.0),
    "chain_iaf": (lambda d: make_flow("iaf", 3, d, H, hidden_features=8), H, GATE**3),
    "chain_empty": (lambda d: make_flow("iaf", 0, d, H), H, 1.0),
    "compose_mixed": (_mixed, H, GATE),
}
NAMES = list(CASES)


@pytest.fixture(autouse=True)
def _seeded():
    # flows draw their initial parameters from torch's global generator
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def _build(name, d, dtype=torch.float64, perturb=False, seed=0):
    factory, context_dim, _ = CASES[name]
    torch.manual_seed(seed)
    flow = factory(d).to(dtype)
    if perturb:
        _perturb(flow, seed)
    return flow, context_dim


def _perturb(flow, seed, scale=0.5):
    """Move every parameter well away from the near-identity start."""
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))


def _inputs(d, context_dim, shape=(N,), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, d, generator=g, dtype=torch.float64).to(dtype)
    context = None
    if context_dim:
        context = torch.randn(shape[0], context_dim, generator=g, dtype=torch.float64).to(dtype)
    return z, context


def _jacobians(flow, z, context):
    """Per-example Jacobians (n, d, d) of a flow on z (n, d), and the cross-example blocks."""
    full = torch.autograd.functional.jacobian(lambda x: flow(x, context)[0], z)  # (n, d, n, d)
    idx = torch.arange(z.shape[0])
    blocks = full[idx, :, idx, :]
    cross = full.clone()
    cross[idx, :, idx, :] = 0.0
    return blocks, cross


# ---------------------------------------------------------------- the contract
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(N,), (N, S)], ids=["n_d", "n_S_d"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name, shape, dtype):
    d = 3
    flow, context_dim = _build(name, d, dtype)
    z, context = _inputs(d, context_dim, shape, dtype)
    z_out, ladj = flow(z, context)
    assert z_out.shape == z.shape
    assert ladj.shape == z.shape[:-1]
    assert z_out.dtype == dtype and ladj.dtype == dtype
    assert torch.isfinite(z_out).all() and torch.isfinite(ladj).all()


@pytest.mark.parametrize("name", NAMES)
def test_context_broadcasts_over_the_sample_axis(name):
    # (n, S, d) with a context (n, H) must equal S separate (n, d) calls
    d = 3
    flow, context_dim = _build(name, d, perturb=True)
    z, context = _inputs(d, context_dim, (N, S))
    z_out, ladj = flow(z, context)
    for s in range(S):
        z_s, ladj_s = flow(z[:, s], context)
        torch.testing.assert_close(z_out[:, s], z_s, rtol=0, atol=1e-12)
        torch.testing.assert_close(ladj[:, s], ladj_s, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    d = 3
    flow, context_dim = _build(name, d, torch.float32)  # fresh, as training starts
    z, context = _inputs(d, context_dim, (N, S), torch.float32)
    z.requires_grad_(True)
    if context is not None:
        context.requires_grad_(True)
    z_out, ladj = flow(z, context)
    g = torch.Generator().manual_seed(5)
    loss = (z_out * torch.randn(z_out.shape, generator=g)).sum() + (
        ladj * torch.randn(ladj.shape, generator=g)
    ).sum()
    loss.backward()
    named = list(flow.named_parameters())
    assert named or name == "chain_empty"
    for pname, p in named:
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().max() > 0, pname
    assert z.grad.abs().max() > 0
    if context is not None and name != "chain_empty":
        # the encoder is trained through the flow's amortisation
        assert context.grad is not None and context.grad.abs().max() > 0


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("name", NAMES)
def test_ladj_is_log_det_of_autograd_jacobian(name, d):
    flow, context_dim = _build(name, d, perturb=True, seed=d)
    z, context = _inputs(d, context_dim, seed=d)
    _, ladj = flow(z, context)
    blocks, cross = _jacobians(flow, z, context)
    sign, logabsdet = torch.linalg.slogdet(blocks)
    assert (sign > 0).all()  # every flow here preserves orientation
    torch.testing.assert_close(ladj, logabsdet, rtol=0, atol=1e-10)
    assert (cross == 0).all()  # an example's output depends on its own z only
    if name != "chain_empty":
        assert ladj.abs().max() > 1e-2  # the parameters are not the trivial ones


@pytest.mark.parametrize("shape", [(N,), (N, S)], ids=["n_d", "n_S_d"])
@pytest.mark.parametrize("name", NAMES)
def test_inverse_undoes_forward(name, shape):
    d = 4
    flow, context_dim = _build(name, d, perturb=True)
    z, context = _inputs(d, context_dim, shape)
    z_out, _ = flow(z, context)
    if name != "chain_empty":
        assert (z_out - z).abs().max() > 1e-2
    torch.testing.assert_close(flow.inverse(z_out, context), z, rtol=0, atol=1e-10)
    torch.testing.assert_close(flow(flow.inverse(z, context), context)[0], z, rtol=0, atol=1e-10)


def test_every_flow_class_is_in_the_contract_tests():
    """Every transform the module defines (subclasses included) is built by some case,
    so that the tests above, the inverse among them, run on it."""
    import skgenerative.flows as module

    defined = {cls for cls in vars(module).values() if isinstance(cls, type) and issubclass(cls, FlowTransform)
               and cls.__module__ == module.__name__ and not cls.__name__.startswith("_") and cls is not FlowTransform}
    covered = set()
    for name in NAMES:
        flow, _ = _build(name, 3)
        covered |= {type(m) for m in flow.modules()}
    assert {"Planar", "Radial", "IAFStep", "Compose", "FlowChain"} <= {cls.__name__ for cls in defined}
    assert defined <= covered, sorted(cls.__name__ for cls in defined - covered)


@pytest.mark.parametrize("name", NAMES)
def test_fresh_flow_is_close_to_the_identity(name):
    # planar and radial start within ~1e-2 of the identity; IAF steps start at
    # z' = sigmoid(gate_bias) z + small shift (Kingma et al.'s gate initialisation)
    d = 5
    flow, context_dim = _build(name, d, torch.float32)
    scale = CASES[name][2]
    z, context = _inputs(d, context_dim, (64,), torch.float32)
    z_out, ladj = flow(z, context)
    assert (z_out - scale * z).norm() <= 0.05 * z.norm()
    torch.testing.assert_close(ladj, torch.full_like(ladj, d * math.log(scale)), rtol=0, atol=0.05)


def test_large_gate_bias_starts_iaf_at_the_identity():
    flow = FlowChain("iaf", 2, 4, H, gate_bias=8.0)
    z, context = _inputs(4, H, (64,), torch.float32)
    z_out, ladj = flow(z, context)
    assert (z_out - z).norm() <= 2e-3 * z.norm()
    assert ladj.abs().max() < 3e-3


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    d = 3
    flow, context_dim = _build(name, d, perturb=True, seed=1)
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    other, _ = _build(name, d, seed=2)  # different initial parameters
    other.load_state_dict(torch.load(buffer, weights_only=True))
    z, context = _inputs(d, context_dim, (N, S))
    for a, b in zip(flow(z, context), other(z, context)):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name):
    d = 3
    flow, context_dim = _build(name, d, perturb=True)
    z, context = _inputs(d, context_dim, (N, S))
    expected = flow(z, context)
    cuda = torch.device("cuda")
    flow.to(cuda)
    got = flow(z.to(cuda), None if context is None else context.to(cuda))
    for a, b in zip(got, expected):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-10)
    back = flow.inverse(got[0], None if context is None else context.to(cuda))
    torch.testing.assert_close(back.cpu(), z, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------ planar
def _random_planar_parameters(k=400, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(k, d, generator=g, dtype=torch.float64) * torch.exp(
        torch.randn(k, 1, generator=g, dtype=torch.float64)
    )
    u = 3.0 * torch.randn(k, d, generator=g, dtype=torch.float64)
    # a third with u far against w, where the unconstrained map would fold
    third = k // 3
    u[:third] = -torch.rand(third, 1, generator=g, dtype=torch.float64) * 10.0 * w[:third]
    b = torch.randn(k, generator=g, dtype=torch.float64)
    return u, w, b


def test_planar_constraint_keeps_w_dot_u_hat_above_minus_one():
    u, w, _ = _random_planar_parameters()
    wu = (w * u).sum(-1)
    assert (wu < -1).sum() > 100  # many raw pairs violate the condition
    w_u_hat = (w * planar_u_hat(u, w)).sum(-1)
    # -1 + softplus(w.u) rounds to -1 when w.u << 0, and the dot product w.u_hat
    # carries a rounding error of order eps ||w|| ||u||; beyond that, never below -1
    rounding = 4 * torch.finfo(u.dtype).eps * w.norm(dim=-1) * u.norm(dim=-1)
    assert (w_u_hat >= -1 - rounding).all()
    assert (w_u_hat[wu > -10] > -1).all()
    softplus = torch.logaddexp(wu, torch.zeros_like(wu))  # F.softplus cuts off at 20
    assert ((w_u_hat - (softplus - 1.0)).abs() <= rounding + 1e-12).all()


def test_planar_is_monotone_along_w():
    u, w, b = _random_planar_parameters()
    g = torch.Generator().manual_seed(1)
    w_unit = w / w.norm(dim=-1, keepdim=True)
    base = torch.randn(w.shape, generator=g, dtype=torch.float64)
    base = base - (base * w_unit).sum(-1, keepdim=True) * w_unit  # orthogonal to w
    t = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)
    z = base.unsqueeze(1) + t.view(1, -1, 1) * w_unit.unsqueeze(1)  # (k, T, d)
    z_out, ladj = planar_transform(z, u.unsqueeze(1), w.unsqueeze(1), b.unsqueeze(1))
    along = (z_out * w_unit.unsqueeze(1)).sum(-1)
    assert (along.diff(dim=1) > 0).all()
    # the orthogonal component only moves parallel to u_hat: f - z is a multiple of u_hat
    u_hat = planar_u_hat(u, w).unsqueeze(1)
    step = z_out - z
    cross = step - (step * u_hat).sum(-1, keepdim=True) / u_hat.square().sum(-1, keepdim=True) * u_hat
    assert cross.abs().max() < 1e-9
    assert torch.isfinite(ladj).all()


def test_planar_inverse_holds_where_the_map_is_almost_flat():
    """Bisection along w inverts every pair of _random_planar_parameters, including
    those with w . u_hat near -1, where the map's slope along w nearly vanishes."""
    u, w, b = _random_planar_parameters()
    g = torch.Generator().manual_seed(2)
    z = 3.0 * torch.randn(w.shape, generator=g, dtype=torch.float64)
    z_out, ladj = planar_transform(z, u, w, b)
    assert ladj.min() < -5  # some maps shrink volume 150-fold or more here
    back = planar_inverse(z_out, u, w, b)
    torch.testing.assert_close(back, z, rtol=0, atol=1e-12)
    torch.testing.assert_close(planar_transform(back, u, w, b)[0], z_out, rtol=0, atol=1e-12)
    # float32: forward(inverse) reproduces the output to float32 rounding
    u32, w32, b32, out32 = u.float(), w.float(), b.float(), z_out.float()
    again = planar_transform(planar_inverse(out32, u32, w32, b32), u32, w32, b32)[0]
    assert (again - out32).abs().max() < 1e-4


# ------------------------------------------------------------------------ radial
def test_radial_constraint_keeps_beta_at_least_minus_alpha():
    g = torch.Generator().manual_seed(0)
    alpha_raw = 10.0 * torch.randn(2000, generator=g, dtype=torch.float64)
    beta_raw = 10.0 * torch.randn(2000, generator=g, dtype=torch.float64)
    alpha, beta = radial_parameters(alpha_raw, beta_raw)
    assert (alpha > 0).all()
    assert (beta >= -alpha).all()
    assert (beta < 0).sum() > 500 and (beta > 0).sum() > 500


@pytest.mark.parametrize("beta_raw", [-30.0, -2.0, 0.0, 3.0])
def test_radial_is_monotone_along_rays_and_inverts(beta_raw):
    # even with beta at its bound -alpha the radius r -> r (c + r) / (alpha + r) increases
    d = 3
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(d, generator=g, dtype=torch.float64)
    direction = F.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
    r = torch.linspace(1e-3, 5.0, 500, dtype=torch.float64)
    z = z0 + r.unsqueeze(1) * direction
    alpha_raw, beta_raw = torch.tensor(0.3, dtype=torch.float64), torch.tensor(beta_raw, dtype=torch.float64)
    z_out, ladj = radial_transform(z, z0, alpha_raw, beta_raw)
    radius = (z_out - z0).norm(dim=-1)
    assert (radius.diff() > 0).all()
    assert torch.isfinite(ladj).all()
    torch.testing.assert_close(radial_inverse(z_out, z0, alpha_raw, beta_raw), z, rtol=0, atol=1e-10)


def test_radial_gradients_are_finite_at_its_centre():
    flow = Radial(3).double()
    _perturb(flow, 0)
    z = flow.z0.detach().clone().unsqueeze(0).requires_grad_(True)
    z_out, ladj = flow(z)
    (z_out.sum() + ladj.sum()).backward()
    assert torch.isfinite(z.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters())


# --------------------------------------------------------------------------- IAF
def _single_jacobian(flow, z, context):
    return torch.autograd.functional.jacobian(lambda x: flow(x, context)[0], z)[0, :, 0, :]


def test_iaf_steps_are_triangular_in_opposite_orderings():
    d = 4
    flow = FlowChain("iaf", 2, d, H, hidden_features=8).double()
    _perturb(flow, 0)
    z, context = _inputs(d, H, (1,))
    first, second = flow.transforms
    assert torch.equal(first.degrees, torch.arange(1, d + 1))
    assert torch.equal(second.degrees, torch.arange(d, 0, -1))

    J1 = _single_jacobian(first, z, context)
    z_mid = first(z, context)[0]
    J2 = _single_jacobian(second, z_mid, context)
    below, above = torch.tril(torch.ones(d, d, dtype=torch.bool), -1), torch.triu(torch.ones(d, d, dtype=torch.bool), 1)
    # step 1: z'_i depends on z_j only for j < i (lower triangular), every such entry used
    assert (J1[above] == 0).all() and (J1[below] != 0).all()
    # step 2, reversed: upper triangular
    assert (J2[below] == 0).all() and (J2[above] != 0).all()
    # diagonal: the gates sigma_i
    _, gate_logit = first.made(z, context)
    torch.testing.assert_close(torch.diagonal(J1), torch.sigmoid(gate_logit)[0], rtol=0, atol=1e-12)
    # together every output depends on every input
    assert (_single_jacobian(flow, z, context) != 0).all()


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_jacobian_respects_degrees_and_context_reaches_every_coordinate(reverse):
    d = 5
    step = IAFStep(d, H, hidden_features=(8, 8), reverse=reverse).double()
    _perturb(step, 1)
    z, context = _inputs(d, H, (1,))
    J = _single_jacobian(step, z, context)
    deg = step.degrees
    later = deg.unsqueeze(0) > deg.unsqueeze(1)  # J[i, j] with deg[j] > deg[i]
    earlier = deg.unsqueeze(0) < deg.unsqueeze(1)
    assert (J[later] == 0).all() and (J[earlier] != 0).all()
    # even the first coordinate in the ordering is conditioned on the context
    dz_dh = torch.autograd.functional.jacobian(lambda h: step(z, h)[0], context)[0, :, 0, :]
    assert (dz_dh.abs().sum(-1) > 0).all()


def test_iaf_inverse_is_exact_for_one_dimension():
    step = IAFStep(1, H, 8).double()
    _perturb(step, 0)
    z, context = _inputs(1, H, (N, S))
    torch.testing.assert_close(step.inverse(step(z, context)[0], context), z, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- construction
def test_chain_builds_the_steps_its_configuration_names():
    assert [type(t) for t in FlowChain("planar", 2, 3, H).transforms] == [AmortizedPlanar] * 2
    assert [type(t) for t in FlowChain("planar", 2, 3).transforms] == [Planar] * 2
    assert [type(t) for t in FlowChain("radial", 2, 3, H).transforms] == [AmortizedRadial] * 2
    assert [type(t) for t in FlowChain("radial", 1, 3).transforms] == [Radial]
    steps = FlowChain("iaf", 3, 3, H).transforms
    assert [t.reverse for t in steps] == [False, True, False]
    assert all(t.context_dim == H for t in steps)
    for kind in FLOW_KINDS:
        chain = make_flow(kind, 2, 3, H)
        assert (chain.kind, chain.n_flows, chain.latent_dim, chain.context_dim, len(chain)) == (kind, 2, 3, H, 2)


def test_numpy_integers_are_accepted():
    # FlowVAE's sizes may come from a parameter grid such as np.arange(1, 5)
    np = pytest.importorskip("numpy")
    flow = make_flow("iaf", np.int64(2), np.int64(3), np.int64(H), hidden_features=np.int64(8))
    assert (flow.n_flows, flow.latent_dim, flow.context_dim) == (2, 3, H)
    assert type(flow.latent_dim) is int
    z, context = _inputs(3, H, dtype=torch.float32)
    assert flow(z, context)[0].shape == z.shape


def test_empty_chain_is_the_identity():
    flow = make_flow("planar", 0, 3, H)
    z, context = _inputs(3, H, (N, S))
    z_out, ladj = flow(z, context)
    assert torch.equal(z_out, z) and torch.equal(ladj, torch.zeros(N, S, dtype=z.dtype))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: make_flow("maf", 2, 3), "kind must be one of 'planar', 'radial', 'iaf'; got 'maf'"),
        (lambda: make_flow("iaf", -1, 3), "n_flows must be an integer >= 0"),
        (lambda: make_flow("iaf", 2, 0), "latent_dim must be an integer >= 1"),
        (lambda: make_flow("iaf", 2, 3, 2.5), "context_dim must be an integer >= 0"),
        (lambda: make_flow("iaf", 2, 3, hidden_features=[]), "at least one hidden layer"),
    ],
)
def test_bad_configuration_is_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_inputs_are_rejected():
    flow = make_flow("iaf", 2, 3, H)
    z, context = _inputs(3, H, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"expects z of shape \(\.\.\., 3\)"):
        flow(z[:, :2], context)
    with pytest.raises(ValueError, match="context=None"):
        flow(z, None)
    with pytest.raises(ValueError, match=r"expects context of shape \(n, 4\)"):
        flow(z, context[:, :3])
    with pytest.raises(ValueError, match="does not match z"):
        flow(torch.zeros(N, S, 3), torch.zeros(N, 1, 1, H))
