"""GaussianMixtureDensity vs scikit-learn's GaussianMixture, PPCADensity vs scikit-learn's PCA.

Both sides run in this one process on the same data, interleaved, at each
``--threads`` setting, and report time ratios (scikit-learn's time / ours: above 1
we are faster) and log-likelihood differences:

- ``gmm``: EM from the same start (100,000 x 32, 16 full components, 50 iterations,
  ``tol=0``), ``fit`` alone; ours in float32 (``dtype="auto"``, the default) and
  float64;
- ``ppca``: ``fit`` + ``score_samples`` of 200,000 x 100 rows, 10 components;
- ``memory``: the peak memory of ``score_samples`` on 5,000,000 x 32 rows, each
  implementation in a fresh process (fitted there on 50,000 rows, at its defaults)
  whose allocator returns every freed block of 64 KiB or more to the system, so
  memory freed before the call cannot hide what the call holds: the rise of the
  peak resident set during the call, and tracemalloc's peak (numpy's allocations;
  torch's CPU allocator is not traced, so for ours only the first is complete).

    python benchmarks/bench_foundation.py                      # the sizes above, 1 and default threads
    python benchmarks/bench_foundation.py --only memory
    python benchmarks/bench_foundation.py --quick              # smaller sizes
    python benchmarks/bench_foundation.py --device cuda

Results merge into ``results/foundation.json`` and ``foundation.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Figure, LoadMonitor, Results, add_run_arguments, attempt, interleaved, measured_memory, pick, ratio,
    run_child, run_mode, thread_variants, threads, timed,
)

from skgenerative import GaussianMixtureDensity, PPCADensity  # noqa: E402

FIGURES = {
    "gmm": Figure("GaussianMixtureDensity vs scikit-learn GaussianMixture: EM from the same start",
                  ["implementation", "dtype", "median fit s", "runs s", "scikit-learn / this", "mean loglik",
                   "|mean loglik - scikit-learn's|"],
                  "The `fit` call on both sides, medians of interleaved repeats. Ours also sets `offset_` from "
                  "the training rows' log-densities inside `fit` (the mixtures do it there; scikit-learn's has no "
                  "threshold)."),
    "ppca": Figure("PPCADensity vs scikit-learn PCA: fit + score_samples",
                   ["implementation", "dtype", "median fit + score s", "runs s", "scikit-learn / this", "mean loglik",
                    "max |loglik - scikit-learn's|"]),
    "memory": Figure("Peak memory of score_samples, each implementation in a fresh process",
                     ["implementation", "dtype", "input MiB", "peak RSS rise MiB", "tracemalloc peak MiB", "score_samples s",
                      "mean loglik"],
                     "Peak RSS rise: the most resident memory the call added (every allocation); tracemalloc "
                     "peak: allocations Python traces (numpy's, so all of scikit-learn's; torch's CPU allocator "
                     "is not traced). The input itself is not counted."),
}


def mixture_data(n, d, k, seed=0):
    rng = np.random.RandomState(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.randint(k, size=n)
    return means[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, 1))[labels]


def starting_point(X, k, seed=0):
    rng = np.random.RandomState(seed)
    d = X.shape[1]
    return dict(
        weights_init=np.full(k, 1.0 / k),
        means_init=X[rng.choice(len(X), k, replace=False)],
        precisions_init=np.broadcast_to(np.eye(d) / X.var(0).mean(), (k, d, d)).copy(),
    )


def bench_gmm(results, size, device, repeats, setting):
    n, d, k, iters = size
    X = mixture_data(n, d, k)
    common = dict(covariance_type="full", max_iter=iters, tol=0, **starting_point(X, k))
    with warnings.catch_warnings(), threads(setting), LoadMonitor() as load:
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixtureDensity(k, device=device, **{**common, "max_iter": 1}).fit(X[:2000])  # warm-up
        runs = interleaved({
            "scikit-learn": lambda: GaussianMixture(k, **common).fit(X),
            "float32": lambda: GaussianMixtureDensity(k, device=device, dtype="float32", **common).fit(X),
            "float64": lambda: GaussianMixtureDensity(k, device=device, dtype="float64", **common).fit(X),
        }, repeats)
    peer = runs["scikit-learn"]
    reference = peer.result.score(X) if peer.result is not None else None
    rows = []
    for name, r in runs.items():
        ll = r.result.score(X) if r.error is None else None
        rows.append({"implementation": "scikit-learn GaussianMixture" if name == "scikit-learn"
                     else f"GaussianMixtureDensity ({device})", "dtype": "float64" if name == "scikit-learn" else name,
                     "median fit s": r.median if r.error is None else "failed", "runs s": r.seconds,
                     "scikit-learn / this": ratio(peer.median, r.median), "mean loglik": ll,
                     "|mean loglik - scikit-learn's|": abs(ll - reference) if ll is not None and reference is not None
                     else None})
    results.record("gmm", {"threads": setting, "device": device},
                   {"n_rows": n, "n_features": d, "n_components": k, "max_iter": iters, "tol": 0,
                    "covariance_type": "full", "repeats": repeats,
                    "start": "weights 1/k, means k random rows, precisions I / mean variance"},
                   rows, load, [f"{name}: {r.error}" for name, r in runs.items() if r.error])


def bench_ppca(results, size, device, repeats, setting):
    n, d, q = size
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, q)) @ rng.normal(size=(q, d)) + 0.5 * rng.normal(size=(n, d))
    with threads(setting), LoadMonitor() as load:
        PPCADensity(q, device=device).fit(X[:1000]).score_samples(X[:1000])  # warm-up
        runs = interleaved({
            "scikit-learn": lambda: PCA(q).fit(X).score_samples(X),
            "float32": lambda: PPCADensity(q, device=device, dtype="float32").fit(X).score_samples(X),
            "float64": lambda: PPCADensity(q, device=device, dtype="float64").fit(X).score_samples(X),
        }, repeats)
    peer = runs["scikit-learn"]
    rows = []
    for name, r in runs.items():
        rows.append({"implementation": "scikit-learn PCA" if name == "scikit-learn" else f"PPCADensity ({device})",
                     "dtype": "float64" if name == "scikit-learn" else name,
                     "median fit + score s": r.median if r.error is None else "failed", "runs s": r.seconds,
                     "scikit-learn / this": ratio(peer.median, r.median),
                     "mean loglik": float(r.result.mean()) if r.error is None else None,
                     "max |loglik - scikit-learn's|": float(np.abs(r.result - peer.result).max())
                     if r.error is None and peer.error is None else None})
    results.record("ppca", {"threads": setting, "device": device},
                   {"n_rows": n, "n_features": d, "n_components": q, "repeats": repeats},
                   rows, load, [f"{name}: {r.error}" for name, r in runs.items() if r.error])


MEMORY_RUNS = ("gmm-ours", "gmm-sklearn", "ppca-ours", "ppca-sklearn")


def memory_child(which: str, n: int, device: str) -> None:
    """In a fresh process: fit at the defaults on 50,000 rows, then measure scoring ``n`` x 32 rows."""
    d, k = 32, 16
    X = mixture_data(n, d, k)
    fit_rows = X[np.random.RandomState(0).choice(n, min(n, 50_000), replace=False)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if which == "gmm-ours":
            model = GaussianMixtureDensity(k, max_iter=5, random_state=0, device=device).fit(fit_rows)
        elif which == "gmm-sklearn":
            model = GaussianMixture(k, max_iter=5, random_state=0).fit(fit_rows)
        elif which == "ppca-ours":
            model = PPCADensity(5, device=device).fit(fit_rows)
        else:
            model = PCA(5).fit(fit_rows)
    del fit_rows
    with measured_memory() as memory, timed() as t:
        scores = model.score_samples(X)
    print(json.dumps(dict(which=which, n=n, input_bytes=X.nbytes, seconds=t.seconds,
                          mean=float(scores.mean()), **memory)))


def bench_memory(results, n, device):
    rows, failures = [], []
    with LoadMonitor() as load:
        for which in MEMORY_RUNS:
            out, error = attempt(lambda: run_child(
                [__file__, "--memory-child", which, "--memory-rows", str(n), "--device", device]))
            name = {"gmm-ours": f"GaussianMixtureDensity(16) ({device})", "gmm-sklearn": "scikit-learn GaussianMixture(16)",
                    "ppca-ours": f"PPCADensity(5) ({device})", "ppca-sklearn": "scikit-learn PCA(5)"}[which]
            dtype = "float64 (dtype='auto' scores in float64)" if which.endswith("ours") else "float64"
            if error:
                failures.append(f"{which}: {error}")
                rows.append({"implementation": name, "peak RSS rise MiB": "failed"})
                continue
            rows.append({"implementation": name, "dtype": dtype, "input MiB": out["input_bytes"] / 2**20,
                         "peak RSS rise MiB": out["peak_rss_rise_bytes"] / 2**20,
                         "tracemalloc peak MiB": out["tracemalloc_peak_bytes"] / 2**20,
                         "score_samples s": out["seconds"], "mean loglik": out["mean"]})
            print(f"  {which:<13} scoring {n:,} x 32: peak RSS +{rows[-1]['peak RSS rise MiB']:.1f} MiB, "
                  f"tracemalloc {rows[-1]['tracemalloc peak MiB']:.1f} MiB, {out['seconds']:.2f} s", flush=True)
    results.record("memory", {"device": device}, {"n_rows": n, "n_features": 32, "fit_rows": min(n, 50_000),
                                                  "gmm": "16 full components, 5 EM iterations, defaults otherwise",
                                                  "ppca": "5 components", "threads": "default",
                                                  "allocator": "fresh process, MALLOC_MMAP_THRESHOLD_=65536"},
                   rows, load, failures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", nargs="+", default=["1", "default"])
    parser.add_argument("--only", nargs="+", choices=["gmm", "ppca", "memory"], default=["gmm", "ppca", "memory"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--memory-rows", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_rows, args.device)
        return
    mode = run_mode(args)
    sizes = dict(gmm=pick(mode, (100_000, 32, 16, 50), (20_000, 16, 8, 10), (2_000, 4, 3, 3)),
                 ppca=pick(mode, (200_000, 100, 10), (40_000, 50, 5), (2_000, 10, 2)),
                 memory=pick(mode, 5_000_000, 500_000, 20_000))
    results = Results("foundation", args,
                      title="GaussianMixtureDensity and PPCADensity against scikit-learn",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    for setting in thread_variants(args.threads) if {"gmm", "ppca"} & set(args.only) else []:
        if "gmm" in args.only:
            print(f"[gmm] threads={setting} {sizes['gmm']}", flush=True)
            bench_gmm(results, sizes["gmm"], args.device, args.repeats or pick(mode, 3, 1, 1), setting)
        if "ppca" in args.only:
            print(f"[ppca] threads={setting} {sizes['ppca']}", flush=True)
            bench_ppca(results, sizes["ppca"], args.device, args.repeats or pick(mode, 7, 3, 1), setting)
    if "memory" in args.only:
        print(f"[memory] {sizes['memory']:,} rows", flush=True)
        bench_memory(results, sizes["memory"], args.device)


if __name__ == "__main__":
    main()
