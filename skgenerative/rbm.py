"""Bernoulli restricted Boltzmann machine with a true log-likelihood, in torch.

Binary visible units ``v`` (``D`` of them) and hidden units ``h`` (``H``), energy

    E(v, h) = -h W v - b.v - c.h,     p(v, h) = exp(-E(v, h)) / Z,

with ``W`` of shape (H, D) (``components_``), visible biases ``b``
(``intercept_visible_``) and hidden biases ``c`` (``intercept_hidden_``). Summing
out ``h`` gives the free energy in closed form,

    F(v) = -b.v - sum_j softplus(c_j + W_j.v),    log p(v) = -F(v) - log Z,

and, symmetrically, summing out ``v`` gives ``F(h) = -c.h - sum_i softplus(b_i +
(h W)_i)`` with ``Z = sum_v exp(-F(v)) = sum_h exp(-F(h))``. ``log Z`` is computed
exactly by enumerating the smaller layer when it has at most 20 units, otherwise
estimated by annealed importance sampling (Salakhutdinov & Murray, 2008).

Training is minibatch contrastive divergence: the log-likelihood gradient
``<v h^T>_data - <v h^T>_model`` with the model expectation replaced by ``k`` block
Gibbs steps started at the data (CD-k) or continued from persistent chains (PCD,
Tieleman 2008).

Bernoulli draws compare float32 uniforms ``u`` with the probabilities (``u < p``):
float32 uniforms cost about half as much as float64 ones, and their 2**-24 grid
biases a draw's probability by less than 6e-8.
"""

from __future__ import annotations

import math
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._torch import chunk_rows, generator_from, iter_slices, seed_from
from .base import GenerativeModel

__all__ = [
    "BernoulliRBM",
    "softplus",
    "free_energy",
    "hidden_free_energy",
    "log_partition_exact",
    "ais_betas",
    "ais_log_partition",
    "base_rate_bias",
    "bernoulli",
    "gibbs_step",
    "cd_gradients",
]

#: largest layer enumerated by ``partition_method="auto"`` (2**20 states)
EXACT_MAX_UNITS = 20
#: largest layer ``partition_method="exact"`` agrees to enumerate
_EXACT_HARD_LIMIT = 26
#: n_iter="auto": at least this many updates, and this many epochs
_AUTO_MIN_UPDATES = 5000
_AUTO_MIN_EPOCHS = 10


# --------------------------------------------------------------------- mathematics
def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))`` computed as ``max(x, 0) + log1p(exp(-|x|))``.

    Exact to rounding for every ``x`` (``torch.nn.functional.softplus`` switches to
    ``x`` above 20, an error of 2e-9 per unit that the exact partition function
    would accumulate).
    """
    return x.clamp_min(0.0) + torch.log1p(torch.exp(-x.abs()))


def free_energy(
    v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """Free energy of visible vectors, ``F(v) = -b.v - sum_j softplus(c_j + W_j.v)``.

    ``exp(-F(v)) = sum_h exp(-E(v, h))``, so ``log p(v) = -F(v) - log Z``.

    Parameters
    ----------
    v : tensor of shape (n, D)
    W : tensor of shape (H, D)
    b : tensor of shape (D,)
    c : tensor of shape (H,)

    Returns
    -------
    tensor of shape (n,)
    """
    return -(v @ b) - softplus(torch.addmm(c, v, W.T)).sum(1)


def hidden_free_energy(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """Free energy of hidden vectors, ``F(h) = -c.h - sum_i softplus(b_i + (h W)_i)``.

    ``exp(-F(h)) = sum_v exp(-E(v, h))``.
    """
    return -(h @ c) - softplus(torch.addmm(b, h, W)).sum(1)


def _states(start: int, stop: int, n_units: int, dtype, device) -> torch.Tensor:
    """Binary vectors whose integer codes run from ``start`` to ``stop - 1``."""
    codes = torch.arange(start, stop, device=device, dtype=torch.int64)
    bits = torch.arange(n_units, device=device, dtype=torch.int64)
    return ((codes.unsqueeze(1) >> bits) & 1).to(dtype)


def log_partition_exact(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    """``log Z`` by enumerating every state of the smaller layer, in float64.

    With ``m = min(H, D)`` units in the smaller layer,

        log Z = logsumexp over h in {0,1}^H of -F(h)   (H <= D), or
        log Z = logsumexp over v in {0,1}^D of -F(v)   (D < H),

    evaluated over chunks of states (memory stays bounded) and combined by a
    log-sum-exp of the chunks' log-sum-exps, which is stable for any magnitude.
    Cost ``O(2**m * max(H, D) * m)``.

    Parameters
    ----------
    W : tensor of shape (H, D)
    b : tensor of shape (D,)
    c : tensor of shape (H,)

    Returns
    -------
    float
    """
    W, b, c = W.double(), b.double(), c.double()
    n_hidden, n_visible = W.shape
    if n_hidden <= n_visible:
        m, other = n_hidden, n_visible
        fn = lambda s: -hidden_free_energy(s, W, b, c)  # noqa: E731
    else:
        m, other = n_visible, n_hidden
        fn = lambda s: -free_energy(s, W, b, c)  # noqa: E731
    if m > _EXACT_HARD_LIMIT:
        raise ValueError(
            f"The exact partition function enumerates 2**{m} states of the smaller "
            f"layer; at most 2**{_EXACT_HARD_LIMIT} are allowed. Use AIS instead."
        )
    total = 2**m
    size = max(chunk_rows(8 * (3 * other + 2 * m + 4), total, W.device), min(total, 1024))
    parts = [torch.logsumexp(fn(_states(s.start, s.stop, m, W.dtype, W.device)), 0)
             for s in iter_slices(total, size)]
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


def base_rate_bias(marginals: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Visible biases of the base-rate model: logits of the smoothed marginals.

    ``b_A = log(p / (1 - p))`` with ``p = (n m + 1/2) / (n + 1)`` for marginals
    ``m`` over ``n`` rows (half a pseudo-count each way keeps the logits finite
    for columns that are always 0 or always 1). Also the initial visible biases.
    """
    p = (marginals * n_samples + 0.5) / (n_samples + 1.0)
    return torch.log(p) - torch.log1p(-p)


def bernoulli(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Binary draws with probabilities ``p``: ``(u < p)`` for float32 uniforms ``u``."""
    u = torch.rand(p.shape, generator=generator, dtype=torch.float32, device=p.device)
    return torch.lt(u, p).to(p.dtype)


def gibbs_step(
    v: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """One block Gibbs step ``v -> h -> v'``.

    ``h_j ~ Bernoulli(sigmoid(c_j + W_j.v))``, then
    ``v'_i ~ Bernoulli(sigmoid(b_i + (h W)_i))``. Leaves ``p(v)`` invariant.
    """
    h = bernoulli(torch.sigmoid(torch.addmm(c, v, W.T)), generator)
    return bernoulli(torch.sigmoid(torch.addmm(b, h, W)), generator)


def cd_gradients(
    v_data: torch.Tensor,
    v_model: torch.Tensor,
    W: torch.Tensor,
    c: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contrastive-divergence estimate of the mean log-likelihood gradient.

    With ``q(v) = sigmoid(c + W v)`` (the hidden units' conditional means),

        dW = mean_data q(v) v^T - mean_model q(v) v^T,
        db = mean_data v - mean_model v,
        dc = mean_data q(v) - mean_model q(v),

    which is the gradient of ``mean_data(-F(v)) - mean_model(-F(v))``: the exact
    log-likelihood gradient when ``v_model`` are exact samples of the model.
    Returns ``(dW, db, dc)`` with the shapes of ``(W, b, c)``.
    """
    q_data = torch.sigmoid(torch.addmm(c, v_data, W.T))
    q_model = torch.sigmoid(torch.addmm(c, v_model, W.T))
    n_data, n_model = v_data.shape[0], v_model.shape[0]
    dW = q_data.T @ v_data / n_data - q_model.T @ v_model / n_model
    return dW, v_data.mean(0) - v_model.mean(0), q_data.mean(0) - q_model.mean(0)


def ais_log_partition(
    W: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    base_visible_bias: torch.Tensor,
    *,
    n_chains: int = 100,
    n_temperatures: int = 1000,
    generator: torch.Generator,
) -> tuple[float, float]:
    """Annealed importance sampling estimate of ``log Z`` and its standard error.

    The base model ``A`` has visible biases ``b_A`` (``base_visible_bias``, e.g. the
    logits of the data marginals) and no weights, so ``Z_A = 2**H prod_i (1 +
    exp(b_A_i))`` and it is sampled exactly. The intermediate distributions, for
    ``beta_0 = 0 < ... < beta_K = 1`` (:func:`ais_betas`), are

        log p*_k(v) = (1 - beta_k) b_A.v + beta_k b.v
                      + sum_j softplus(beta_k (c_j + W_j.v)),

    equal to ``log p*_A`` at ``beta = 0`` and to ``-F(v)`` at ``beta = 1``. Each
    chain starts at ``v_1 ~ p_A``, adds ``log p*_k(v_k) - log p*_{k-1}(v_k)`` to its
    log-weight and moves ``v_k -> v_{k+1}`` by one block Gibbs step that leaves
    ``p_k`` invariant (``h_j ~ sigmoid(beta_k (c_j + W_j.v))``, ``v_i ~
    sigmoid((1 - beta_k) b_A_i + beta_k (b_i + (h W)_i))``). With log-weights
    ``w_1..w_M``,

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

    Returns
    -------
    log_z, std_error : float
    """
    if n_chains < 2:
        raise ValueError(f"AIS needs at least 2 chains for an error estimate, got {n_chains}.")
    n_hidden, n_visible = W.shape
    dtype, device = W.dtype, W.device
    b_A = base_visible_bias.to(dtype)
    betas = ais_betas(n_temperatures).tolist()
    log_z_base = float(softplus(b_A.double()).sum()) + n_hidden * math.log(2.0)
    WT = W.T
    bias_gap = b - b_A
    v = bernoulli(torch.sigmoid(b_A).expand(n_chains, n_visible), generator)
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
            v = bernoulli(torch.sigmoid(torch.addmm(visible_bias, h, W, alpha=beta)), generator)
    shift = log_w.max()
    weights = torch.exp(log_w - shift)
    mean = weights.mean()
    log_z = log_z_base + float(shift + torch.log(mean))
    std_error = float(weights.std() / (math.sqrt(n_chains) * mean))
    return log_z, std_error


# ---------------------------------------------------------------------- estimator
class BernoulliRBM(GenerativeModel):
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
    n_iter : int or "auto", default="auto"
        Number of epochs (passes over the training data). ``"auto"``: enough
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
    binarize : float or None, default=None
        ``None``: inputs must lie in [0, 1] (binary data, or probabilities of being
        1 as in scikit-learn); anything else raises ``ValueError``. A float ``t``:
        inputs are binarised as ``x > t`` before fitting, scoring, ``transform``
        and ``gibbs``, and any finite real input is accepted.
    burn_in : int, default=1000
        Block Gibbs steps each chain of :meth:`sample` runs before its state is
        returned.
    partition_method : {"auto", "exact", "ais"}, default="auto"
        How ``log_partition_`` is computed at the end of fitting. ``"auto"``:
        exactly when ``min(n_components, n_features) <= 20``, otherwise by AIS.
        ``"exact"`` enumerates up to 2**26 states of the smaller layer;
        ``"ais"`` always estimates.
    n_ais_chains : int, default=100
        Independent AIS runs.
    n_ais_temperatures : int, default=3000
        Intermediate distributions of each AIS run. More reduces the estimate's
        bias (see Notes); the cost grows linearly.
    contamination : float, default=0.1
        Fraction of training rows below the outlier threshold ``offset_``.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.
    dtype : {"float64", "float32"}, default="float64"
        Compute precision. ``float32`` is about twice as fast; the exact partition
        function is always summed in float64.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order, the Gibbs chains and AIS.
    verbose : int, default=0
        1 prints the reconstruction error and time of each epoch, and the AIS
        estimate.

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
    visible_marginals_ : ndarray of shape (n_features,)
        Mean of each (binarised) input column over all data seen. Starts the
        chains of :meth:`sample` and defines the AIS base model.
    h_samples_ : ndarray of shape (batch_size, n_components)
        Hidden states of the persistent chains (only when ``persistent=True``).
    n_samples_seen_ : int
        Rows seen by ``fit`` or by all ``partial_fit`` calls.
    n_updates_ : int
        Parameter updates (minibatches) so far.
    n_iter_ : int
        Epochs run.
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
    ``F(v) = -b.v - sum_j softplus(c_j + W_j.v)`` in closed form.

    - When the smaller layer has at most 20 units (``n_components <= 20`` or
      ``n_features <= 20``), ``log_partition_`` is exact: a float64 log-sum-exp
      over all 2**m states of that layer, and ``score_samples`` is the exact
      log-probability; ``log_partition_std_`` is 0.
    - Otherwise ``log_partition_`` is an annealed importance sampling estimate
      (Salakhutdinov & Murray, 2008): ``n_ais_chains`` runs of
      ``n_ais_temperatures`` annealing steps from a base-rate model (no weights,
      visible biases the logits of ``visible_marginals_``) to the RBM. It is
      computed once at the end of fitting, seeded by ``random_state``, so scores
      are deterministic, and every score carries the same additive error. AIS
      runs in float32, its log-weights summed in float64: its rounding (about
      1e-5 nats) is far below its Monte Carlo error.

      ``log_partition_std_`` is the standard error of that estimate by the delta
      method on the mean importance weight, ``std(exp w) / (sqrt(M) mean(exp
      w))`` over the ``M`` chains: scores are uncertain by about that much. It
      measures the spread between chains only. It leaves out the bias of a finite
      annealing schedule, which makes AIS underestimate ``log Z`` on average (and
      so overestimate log-likelihoods); and it is itself estimated from the same
      weights: values approaching 1 mean that one chain carries most of the
      weight (about ``1 / (std**2 + 1 / M)`` effective chains), and the true error
      can be larger. On 256-hidden-unit RBMs trained on MNIST digits the default
      run lands within about 2 nats of a 400-chain, 10,000-temperature reference;
      raise ``n_ais_temperatures`` when the estimate moves as you do.

    Differences between scores (outlier ranking, ``decision_function``) are exact
    in both cases. For inputs with fractional values the same formula is used,
    a "soft" free energy that is not a probability.

    Inputs outside [0, 1] raise ``ValueError`` unless ``binarize`` is set.
    scikit-learn's estimator checks feed values in [0, 3] and no estimator tag
    changes that, so the project runs them with ``binarize=0.5``.

    Every minibatch update is ``theta += velocity`` with ``velocity = momentum *
    velocity + learning_rate * gradient``; the gradient is averaged over the
    minibatch. ``partial_fit`` runs one epoch over the rows it gets, continuing
    the persistent chains and the velocity, then recomputes ``log_partition_``
    (cheap when exact; an AIS run otherwise) and ``offset_`` (on those rows).

    The initial weights are ``N(0, 0.01^2)``, the visible biases the logits of the
    smoothed data marginals, the hidden biases zero. :meth:`sample` runs
    ``burn_in`` block Gibbs steps from vectors drawn from the data marginals and
    returns binary vectors (binarised ones when ``binarize`` is set).
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
    >>> rbm = BernoulliRBM(n_components=2, n_iter=50, batch_size=10, random_state=0).fit(X)
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

    _parameter_constraints: dict = {
        **GenerativeModel._parameter_constraints,
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "cd_steps": [Interval(Integral, 1, None, closed="left")],
        "persistent": ["boolean"],
        "learning_rate_schedule": [StrOptions({"linear", "constant"})],
        "momentum": [Interval(Real, 0.0, 1.0, closed="left")],
        "weight_decay": [Interval(Real, 0.0, None, closed="left")],
        "binarize": [Interval(Real, None, None, closed="neither"), None],
        "burn_in": [Interval(Integral, 0, None, closed="left")],
        "partition_method": [StrOptions({"auto", "exact", "ais"})],
        "n_ais_chains": [Interval(Integral, 2, None, closed="left")],
        "n_ais_temperatures": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.05,
        learning_rate_schedule="linear",
        batch_size=20,
        n_iter="auto",
        cd_steps=1,
        persistent=True,
        momentum=0.5,
        weight_decay=1e-4,
        binarize=None,
        burn_in=1000,
        partition_method="auto",
        n_ais_chains=100,
        n_ais_temperatures=3000,
        contamination=0.1,
        device="auto",
        dtype="float64",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.cd_steps = cd_steps
        self.persistent = persistent
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.binarize = binarize
        self.burn_in = burn_in
        self.partition_method = partition_method
        self.n_ais_chains = n_ais_chains
        self.n_ais_temperatures = n_ais_temperatures
        self.contamination = contamination
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------- input
    def _check_values(self, X: np.ndarray) -> None:
        if self.binarize is not None or X.size == 0:
            return
        low, high = float(np.min(X)), float(np.max(X))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                "BernoulliRBM expects values in [0, 1] (binary data, or probabilities "
                f"of being 1); got values in [{low:g}, {high:g}]. Scale the data to "
                "[0, 1], or set binarize=<threshold> to binarise it as X > threshold."
            )

    def _binarized(self, X: torch.Tensor) -> torch.Tensor:
        if self.binarize is None:
            return X
        return torch.gt(X, float(self.binarize)).to(X.dtype)

    def _row_bytes(self, n_features: int) -> int:
        return np.dtype(self.dtype).itemsize * (3 * n_features + 4 * int(self.n_components) + 8)

    # ------------------------------------------------------------- fitting
    def _check_partition_method(self, n_features: int) -> None:
        smaller = min(int(self.n_components), n_features)
        if self.partition_method == "exact" and smaller > _EXACT_HARD_LIMIT:
            raise ValueError(
                f"partition_method='exact' would enumerate 2**{smaller} states (the "
                f"smaller layer has {smaller} units); at most 2**{_EXACT_HARD_LIMIT} "
                "are allowed. Use partition_method='auto' or 'ais'."
            )

    def _fit(self, X: torch.Tensor) -> None:
        self._check_partition_method(X.shape[1])
        X = self._binarized(X)
        seed = seed_from(self.random_state)
        params = self._initialise(X, generator_from(seed, X.device))
        self.n_samples_seen_ = 0
        self.n_updates_ = 0
        self.n_iter_ = 0
        self._update_marginals(X)
        self._train(X, params, self._n_epochs(X.shape[0]), seed)
        return None

    def _n_epochs(self, n_samples: int) -> int:
        if self.n_iter != "auto":
            return int(self.n_iter)
        per_epoch = math.ceil(n_samples / min(int(self.batch_size), n_samples))
        return max(_AUTO_MIN_EPOCHS, math.ceil(_AUTO_MIN_UPDATES / per_epoch))

    def _partial_fit(self, X: torch.Tensor, first: bool) -> None:
        # one epoch over the rows given, continuing the chains and the velocity
        self._check_partition_method(X.shape[1])
        X = self._binarized(X)
        seed = seed_from(self.random_state)
        if first:
            params = self._initialise(X, generator_from(seed, X.device))
            self.n_samples_seen_ = 0
            self.n_updates_ = 0
            self.n_iter_ = 0
        else:
            params = self._parameters_as_tensors()
        self._update_marginals(X)
        # a fresh stream per call: an int random_state must not replay the same noise
        self._train(X, params, 1, (seed + 7919 * self.n_updates_) % (2**31 - 1), schedule=False)
        return None

    def _initialise(self, X: torch.Tensor, generator: torch.Generator):
        n_features = X.shape[1]
        W = 0.01 * torch.randn(
            (self.n_components, n_features), generator=generator, dtype=X.dtype, device=X.device
        )
        b = base_rate_bias(X.mean(0, dtype=torch.float64), X.shape[0]).to(X.dtype)
        c = torch.zeros(self.n_components, dtype=X.dtype, device=X.device)
        velocity = [torch.zeros_like(W), torch.zeros_like(b), torch.zeros_like(c)]
        return {"W": W, "b": b, "c": c, "velocity": velocity, "h_samples": None}

    def _update_marginals(self, X: torch.Tensor) -> None:
        n_old, n_new = self.n_samples_seen_, X.shape[0]
        batch_mean = X.mean(0, dtype=torch.float64).cpu().numpy()
        if n_old == 0:
            self.visible_marginals_ = batch_mean
        else:
            self.visible_marginals_ = (n_old * self.visible_marginals_ + n_new * batch_mean) / (
                n_old + n_new
            )
        self.n_samples_seen_ = n_old + n_new

    def _parameters_as_tensors(self):
        as_t = lambda a: torch.tensor(a, dtype=self._dtype, device=self._device)  # noqa: E731
        h = getattr(self, "h_samples_", None)
        return {
            "W": as_t(self.components_),
            "b": as_t(self.intercept_visible_),
            "c": as_t(self.intercept_hidden_),
            "velocity": [as_t(v) for v in self._velocity],
            "h_samples": None if h is None or not self.persistent else as_t(h),
        }

    def _train(
        self, X: torch.Tensor, params: dict, n_epochs: int, seed: int, schedule: bool = True
    ) -> None:
        """``n_epochs`` passes of minibatch CD over ``X``, then ``log Z`` and the attributes."""
        generator = generator_from(seed, X.device)
        n = X.shape[0]
        batch = min(int(self.batch_size), n)
        W, b, c = params["W"], params["b"], params["c"]
        velocity = params["velocity"]
        h_samples = params["h_samples"]
        if self.persistent and (h_samples is None or h_samples.shape[0] != self.batch_size):
            # start the persistent chains at hidden states driven by training rows
            rows = torch.randint(n, (int(self.batch_size),), generator=generator, device=X.device)
            h_samples = bernoulli(torch.sigmoid(torch.addmm(c, X[rows], W.T)), generator)
        lr, momentum, decay = float(self.learning_rate), float(self.momentum), float(self.weight_decay)
        n_batches = math.ceil(n / batch)
        total = n_epochs * n_batches
        # fit's linear schedule ends at lr / total, not 0, so the last update counts
        linear = self.learning_rate_schedule == "linear" and schedule
        for epoch in range(n_epochs):
            start = time.perf_counter()
            order = torch.randperm(n, generator=generator, device=X.device)
            shuffled = X[order]
            for i, rows in enumerate(iter_slices(n, batch)):
                step = lr * (1.0 - (epoch * n_batches + i) / total) if linear else lr
                h_samples = self._cd_update(
                    shuffled[rows], W, b, c, velocity, h_samples, generator, step, momentum, decay
                )
            self.n_updates_ += math.ceil(n / batch)
            self.n_iter_ += 1
            if not (torch.isfinite(W).all() and torch.isfinite(b).all() and torch.isfinite(c).all()):
                raise FloatingPointError(
                    "BernoulliRBM training diverged (non-finite weights) at epoch "
                    f"{self.n_iter_}: lower learning_rate or momentum."
                )
            if self.verbose:
                error = _reconstruction_error(X, W, b, c)
                self._log(
                    f"Epoch {self.n_iter_}, reconstruction error = {error:.4f}, "
                    f"time = {time.perf_counter() - start:.2f}s"
                )
        to_np = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
        self.components_ = to_np(W)
        self.intercept_visible_ = to_np(b)
        self.intercept_hidden_ = to_np(c)
        self._velocity = [to_np(v) for v in velocity]
        if self.persistent:
            self.h_samples_ = to_np(h_samples)
        self._set_log_partition(W, b, c, generator_from((seed + 1) % (2**31 - 1), X.device))

    def _cd_update(self, v_data, W, b, c, velocity, h_samples, generator, lr, momentum, decay):
        """One minibatch update, in place; returns the persistent hidden states.

        The negative chains hold hidden states (as scikit-learn's RBM does). With
        persistent chains the model's visible draw does not depend on the
        minibatch, so both phases' hidden means come from one product over the
        stacked ``[v_data; v_model]``, and a PCD-1 update costs three matrix
        products (visible draw, hidden means, weight gradient); CD-1 costs four.
        """
        WT = W.T
        n_data = v_data.shape[0]
        k = int(self.cd_steps)
        if self.persistent:
            h = h_samples
            for step in range(k):
                v_model = bernoulli(torch.sigmoid(torch.addmm(b, h, W)), generator)
                if step + 1 < k:
                    h = bernoulli(torch.sigmoid(torch.addmm(c, v_model, WT)), generator)
            v = torch.cat([v_data, v_model])
            q = torch.sigmoid(torch.addmm(c, v, WT))
        else:
            q_data = torch.sigmoid(torch.addmm(c, v_data, WT))
            h = bernoulli(q_data, generator)
            for step in range(k):
                v_model = bernoulli(torch.sigmoid(torch.addmm(b, h, W)), generator)
                q_model = torch.sigmoid(torch.addmm(c, v_model, WT))
                if step + 1 < k:
                    h = bernoulli(q_model, generator)
            v = torch.cat([v_data, v_model])
            q = torch.cat([q_data, q_model])
        n_model = v_model.shape[0]
        h_next = bernoulli(q[n_data:], generator) if self.persistent else None
        # both phases of the gradient in one product: [q_data/n; -q_model/m]^T [v_data; v_model]
        q[:n_data] *= 1.0 / n_data
        q[n_data:] *= -1.0 / n_model
        vW, vb, vc = velocity
        if momentum:
            vW.addmm_(q.T, v, beta=momentum, alpha=lr)
            if decay:
                vW.add_(W, alpha=-lr * decay)
            W.add_(vW)
        else:  # no velocity: W = (1 - lr decay) W + lr grad, one pass over W
            W.addmm_(q.T, v, beta=1.0 - lr * decay, alpha=lr)
        vb.mul_(momentum).add_(v_data.mean(0) - v_model.mean(0), alpha=lr)
        vc.mul_(momentum).add_(q.sum(0), alpha=lr)
        b.add_(vb)
        c.add_(vc)
        return h_next

    def _set_log_partition(self, W, b, c, generator) -> None:
        smaller = min(W.shape)
        method = self.partition_method
        if method == "auto":
            method = "exact" if smaller <= EXACT_MAX_UNITS else "ais"
        if method == "exact":
            self.log_partition_ = log_partition_exact(W, b, c)
            self.log_partition_std_ = 0.0
        else:
            start = time.perf_counter()
            base = base_rate_bias(
                torch.as_tensor(self.visible_marginals_, device=W.device), self.n_samples_seen_
            )
            # float32 halves the cost; its rounding (about 1e-5 nats over the run,
            # the log-weights being summed in float64) is far below the Monte Carlo error
            W, b, c = W.float(), b.float(), c.float()
            self.log_partition_, self.log_partition_std_ = ais_log_partition(
                W, b, c, base,
                n_chains=int(self.n_ais_chains),
                n_temperatures=int(self.n_ais_temperatures),
                generator=generator,
            )
            effective = 1.0 / (self.log_partition_std_**2 + 1.0 / self.n_ais_chains)
            self._log(
                f"AIS log Z = {self.log_partition_:.3f} +- {self.log_partition_std_:.3f} "
                f"(about {effective:.0f} effective chains of {self.n_ais_chains}; "
                f"{time.perf_counter() - start:.2f}s)"
            )
        if not math.isfinite(self.log_partition_):
            raise FloatingPointError(
                "BernoulliRBM's log partition function is not finite: the weights are "
                "too large. Lower learning_rate or raise weight_decay."
            )
        self.log_partition_method_ = method

    # ----------------------------------------------------------- evaluation
    def _params(self):
        return (
            self._tensor("components_"),
            self._tensor("intercept_visible_"),
            self._tensor("intercept_hidden_"),
        )

    def _log_prob(self, X: torch.Tensor) -> torch.Tensor:
        W, b, c = self._params()
        return -free_energy(self._binarized(X), W, b, c) - self.log_partition_

    def _encode(self, X: torch.Tensor) -> torch.Tensor:
        W, _, c = self._params()
        return torch.sigmoid(torch.addmm(c, self._binarized(X), W.T))

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        W, b, c = self._params()
        marginals = self._tensor("visible_marginals_")
        v = bernoulli(marginals.expand(n, marginals.shape[0]), generator)
        for _ in range(int(self.burn_in)):
            v = gibbs_step(v, W, b, c, generator)
        return v

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
            Binary visible states after one step.
        """
        check_is_fitted(self)
        X = self._validate_X(v, reset=False)
        generator = generator_from(seed_from(random_state), self._device)

        def step(x):
            W, b, c = self._params()
            return gibbs_step(self._binarized(x), W, b, c, generator)

        return self._evaluate(step, X)


def _reconstruction_error(X, W, b, c) -> float:
    """Mean squared error of the mean-field reconstruction ``sigmoid(b + q(v) W)``."""
    total = 0.0
    size = chunk_rows(X.element_size() * (2 * X.shape[1] + W.shape[0]), X.shape[0], X.device)
    for rows in iter_slices(X.shape[0], size):
        v = X[rows]
        q = torch.sigmoid(torch.addmm(c, v, W.T))
        total += float((torch.sigmoid(torch.addmm(b, q, W)) - v).square().sum())
    return total / X.numel()
