"""GaussianMixtureDensity vs sklearn's GaussianMixture, PPCADensity vs sklearn's PCA.

Both sides run in this one process on the same data and print time ratios
(sklearn time / our time, so > 1 means we are faster) and log-likelihood differences.
Peak memory of ``score_samples`` on 5 million rows is measured in child processes
(one per implementation) as the rise of the peak resident set size while scoring.

    python benchmarks/bench_foundation.py            # the issue's sizes
    python benchmarks/bench_foundation.py --quick    # smaller, for a smoke run
    python benchmarks/bench_foundation.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import machine, peak_rss, reset_peak_rss, table, timed, write_results  # noqa: E402

from skgenerative import GaussianMixtureDensity, PPCADensity  # noqa: E402


def mixture_data(n, d, k, seed=0):
    rng = np.random.RandomState(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.randint(k, size=n)
    X = means[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, size=(k, 1))[labels]
    return X


def starting_point(X, k, seed=0):
    rng = np.random.RandomState(seed)
    d = X.shape[1]
    return dict(
        weights_init=np.full(k, 1.0 / k),
        means_init=X[rng.choice(len(X), k, replace=False)],
        precisions_init=np.broadcast_to(np.eye(d) / X.var(0).mean(), (k, d, d)).copy(),
    )


def _median_times(runs: dict, repeats: int) -> dict:
    """Interleave the runs ``repeats`` times; the median wall time of each (and its last result)."""
    times = {name: [] for name in runs}
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            with timed() as t:
                results[name] = run()
            times[name].append(t.seconds)
    return {name: (float(np.median(times[name])), results[name]) for name in runs}


def bench_gmm(n, d, k, iters, device, repeats):
    X = mixture_data(n, d, k)
    start = starting_point(X, k)
    common = dict(covariance_type="full", max_iter=iters, tol=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # warm-up: first torch calls pay one-off costs
        GaussianMixtureDensity(k, device=device, **{**common, "max_iter": 1}).fit(X[:2000])
        timed_runs = _median_times({
            "sklearn": lambda: GaussianMixture(k, **common).fit(X),
            "float32": lambda: GaussianMixtureDensity(k, device=device, dtype="float32", **common).fit(X),
            "float64": lambda: GaussianMixtureDensity(k, device=device, dtype="float64", **common).fit(X),
        }, repeats)
    ref_time, ref = timed_runs["sklearn"]
    ref_ll = ref.score(X)
    rows = [dict(implementation="sklearn GaussianMixture", dtype="float64", fit_s=ref_time,
                 speedup=1.0, mean_loglik=ref_ll, loglik_diff=0.0)]
    for dtype in ("float32", "float64"):
        seconds, ours = timed_runs[dtype]
        ll = ours.score(X)
        rows.append(dict(implementation=f"GaussianMixtureDensity ({device})", dtype=dtype, fit_s=seconds,
                         speedup=ref_time / seconds, mean_loglik=ll, loglik_diff=abs(ll - ref_ll)))
    for r in rows:
        print(f"  {r['implementation']:<34} {r['dtype']:<8} fit {r['fit_s']:8.3f} s   "
              f"x{r['speedup']:6.2f}   mean loglik {r['mean_loglik']:.6f}  |diff| {r['loglik_diff']:.2e}")
    return rows


def bench_ppca(n, d, q, device, repeats):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(n, q)) @ rng.normal(size=(q, d)) + 0.5 * rng.normal(size=(n, d))
    PPCADensity(q, device=device).fit(X[:1000]).score_samples(X[:1000])  # warm-up
    timed_runs = _median_times({
        "sklearn": lambda: PCA(q).fit(X).score_samples(X),
        "float32": lambda: PPCADensity(q, device=device, dtype="float32").fit(X).score_samples(X),
        "float64": lambda: PPCADensity(q, device=device, dtype="float64").fit(X).score_samples(X),
    }, repeats)
    ref_time, ref_scores = timed_runs["sklearn"]
    rows = [dict(implementation="sklearn PCA", dtype="float64", fit_score_s=ref_time, speedup=1.0,
                 mean_loglik=ref_scores.mean(), max_abs_diff=0.0)]
    for dtype in ("float32", "float64"):
        seconds, scores = timed_runs[dtype]
        rows.append(dict(implementation=f"PPCADensity ({device})", dtype=dtype, fit_score_s=seconds,
                         speedup=ref_time / seconds, mean_loglik=float(scores.mean()),
                         max_abs_diff=float(np.abs(scores - ref_scores).max())))
    for r in rows:
        print(f"  {r['implementation']:<24} {r['dtype']:<8} fit+score {r['fit_score_s']:7.3f} s   "
              f"x{r['speedup']:6.2f}   mean loglik {r['mean_loglik']:.6f}  max|diff| {r['max_abs_diff']:.2e}")
    return rows


def memory_child(which: str, n: int, device: str) -> None:
    """Runs in a child process: peak RSS rise while scoring n x 32 rows."""
    d, k = 32, 16
    rng = np.random.RandomState(0)
    X = mixture_data(n, d, k)
    fit_rows = X[rng.choice(n, 50_000, replace=False)]
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
    base = reset_peak_rss()
    with timed() as t:
        scores = model.score_samples(X)
    print(json.dumps(dict(which=which, n=n, input_bytes=X.nbytes, peak_rise_bytes=peak_rss() - base,
                          seconds=t.seconds, mean=float(scores.mean()))))


def bench_memory(n, device):
    rows = []
    for which in ("gmm-ours", "gmm-sklearn", "ppca-ours", "ppca-sklearn"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", which, "--memory-rows", str(n), "--device", device],
            capture_output=True, text=True, check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["peak_rise_MiB"] = row["peak_rise_bytes"] / 2**20
        row["input_MiB"] = row["input_bytes"] / 2**20
        rows.append(row)
        print(f"  {which:<13} scoring {n:,} x 32: peak +{row['peak_rise_MiB']:8.1f} MiB beyond the "
              f"{row['input_MiB']:.0f} MiB input, {row['seconds']:.2f} s")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--memory-rows", type=int, default=5_000_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_rows, args.device)
        return

    sizes = dict(gmm=(100_000, 32, 16, 50), ppca=(200_000, 100, 10), memory=5_000_000)
    if args.quick:
        sizes = dict(gmm=(20_000, 16, 8, 10), ppca=(40_000, 50, 5), memory=500_000)
    print(f"machine: {machine()}")
    n, d, k, iters = sizes["gmm"]
    print(f"\nGaussian mixture: {n:,} x {d}, {k} components, full covariance, {iters} EM iterations, "
          "same initialisation, tol=0 (median of interleaved repeats)")
    gmm = bench_gmm(n, d, k, iters, args.device, repeats=1 if args.quick else 3)
    n, d, q = sizes["ppca"]
    print(f"\nProbabilistic PCA: {n:,} x {d}, {q} components, fit + score_samples")
    ppca = bench_ppca(n, d, q, args.device, repeats=3 if args.quick else 7)
    print(f"\nPeak memory of score_samples ({sizes['memory']:,} rows)")
    memory = bench_memory(sizes["memory"], args.device)

    md = ["# Foundation benchmark", "", f"Machine: {machine()}", "",
          f"## GaussianMixtureDensity vs sklearn GaussianMixture ({sizes['gmm'][0]:,} x {sizes['gmm'][1]}, "
          f"{sizes['gmm'][2]} components, full, {sizes['gmm'][3]} iterations, same start, tol=0)", "",
          table(gmm, ["implementation", "dtype", "fit_s", "speedup", "mean_loglik", "loglik_diff"]), "",
          f"## PPCADensity vs sklearn PCA ({sizes['ppca'][0]:,} x {sizes['ppca'][1]}, "
          f"{sizes['ppca'][2]} components, fit + score_samples)", "",
          table(ppca, ["implementation", "dtype", "fit_score_s", "speedup", "mean_loglik", "max_abs_diff"]), "",
          f"## Peak memory of score_samples on {sizes['memory']:,} x 32 (rise of peak RSS beyond the input)", "",
          table(memory, ["which", "input_MiB", "peak_rise_MiB", "seconds"]), "",
          "speedup = sklearn time / our time (higher is better); times are medians of interleaved repeats "
          "(3 for the mixture, 7 for PCA)."]
    write_results("foundation" + ("_quick" if args.quick else ""), dict(gmm=gmm, ppca=ppca, memory=memory,
                  sizes=sizes, device=args.device), "\n".join(md))


if __name__ == "__main__":
    main()
