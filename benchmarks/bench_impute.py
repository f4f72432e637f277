"""Imputation of MCAR-masked tables: GenerativeImputer vs scikit-learn's imputers.

Datasets: scikit-learn's breast_cancer, wine, diabetes and iris, standardised.
Entries are masked completely at random at 20% and 50%; each imputer is fitted on
the masked table and scored by the RMSE on the masked entries (standardised units),
the mean over seeds 0, 1, 2. Every imputer runs in this one process on the same masks.

    python benchmarks/bench_impute.py            # 3 seeds
    python benchmarks/bench_impute.py --quick    # seed 0 only
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, merge_saved, write_results  # noqa: E402

import skgenerative  # noqa: E402
from skgenerative import GaussianMixtureDensity, GenerativeImputer, PPCADensity  # noqa: E402

DATASETS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "diabetes": load_diabetes, "iris": load_iris}
RATES = [0.2, 0.5]


def imputers():
    """name -> (factory(seed), kind)."""
    found = {
        "SimpleImputer(mean)": (lambda s: SimpleImputer(), "peer"),
        "KNNImputer": (lambda s: KNNImputer(), "peer"),
        "IterativeImputer(BayesianRidge)": (lambda s: IterativeImputer(random_state=s, max_iter=25), "peer"),
        "IterativeImputer(ExtraTrees)": (lambda s: IterativeImputer(
            ExtraTreesRegressor(n_estimators=100, random_state=s), random_state=s, max_iter=10), "peer"),
        "GenerativeImputer (default)": (lambda s: GenerativeImputer(), "ours"),
        "GenerativeImputer(GaussianMixtureDensity(1))": (
            lambda s: GenerativeImputer(GaussianMixtureDensity(1, random_state=s)), "ours"),
        "GenerativeImputer(PPCADensity)": (lambda s: GenerativeImputer(PPCADensity()), "ours"),
    }
    for name in ("VariationalAutoencoder", "FlowVAE"):
        if hasattr(skgenerative, name):
            cls = getattr(skgenerative, name)
            found[f"GenerativeImputer({name})"] = (
                (lambda cls: lambda s: GenerativeImputer(cls(random_state=s)))(cls), "ours")
    return found


def masked(X, rate, seed):
    rng = np.random.RandomState(seed)
    mask = rng.rand(*X.shape) < rate
    Xm = X.copy()
    Xm[mask] = np.nan
    return Xm, mask


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--update", action="store_true",
                        help="merge these results into the saved JSON (e.g. after --only NEW_MODEL)")
    parser.add_argument("--only", nargs="*", help="imputer names to run")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    rmse, times = {}, {}
    for data_name, loader in DATASETS.items():
        X = StandardScaler().fit_transform(loader().data)
        for rate in RATES:
            cell = f"{data_name} {int(rate * 100)}%"
            for seed in seeds:
                Xm, mask = masked(X, rate, seed)
                for name, (factory, _) in imputers().items():
                    if args.only and name not in args.only:
                        continue
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        try:
                            filled = factory(seed).fit_transform(Xm)
                            error = float(np.sqrt(np.mean((filled - X)[mask] ** 2)))
                        except Exception as exc:  # report, never hide, a failing imputer
                            print(f"  {name} failed on {cell} (seed {seed}): {exc!r}")
                            error = float("nan")
                    rmse.setdefault(name, {}).setdefault(cell, []).append(error)
                    times.setdefault(name, []).append(time.perf_counter() - start)
            print(cell + ": " + ", ".join(f"{n} {np.mean(rmse[n][cell]):.3f}" for n in rmse if cell in rmse[n]),
                  flush=True)

    if args.update:
        rmse, times = merge_saved("impute" + ("_quick" if args.quick else ""), "rmse", rmse, times)
    cells = list(next(iter(rmse.values())).keys())
    peers = [n for n, (_, kind) in imputers().items() if kind == "peer" and n in rmse]
    ours = [n for n, (_, kind) in imputers().items() if kind == "ours" and n in rmse]
    header = ["imputer"] + cells + ["total s"]
    md = [f"# Imputation RMSE on MCAR-masked entries (standardised units, mean over seeds {seeds})", "",
          f"Machine: {machine()}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in peers + ours:
        md.append("| " + " | ".join([name] + [f"{np.nanmean(rmse[name][c]):.3f}" for c in cells]
                                    + [f"{np.sum(times[name]):.1f}"]) + " |")
    if peers and ours:
        best_peer = {c: min(np.nanmean(rmse[n][c]) for n in peers) for c in cells}
        best_ours = {c: min(np.nanmean(rmse[n][c]) for n in ours) for c in cells}
        wins = sum(best_ours[c] < best_peer[c] for c in cells)
        md += ["", f"Our best beats every peer on {wins} of {len(cells)} cells."]
        if "GenerativeImputer (default)" in rmse:
            ratios = {c: np.nanmean(rmse["GenerativeImputer (default)"][c]) / best_peer[c] for c in cells}
            md.append("Default GenerativeImputer / best peer: " + ", ".join(f"{c} {r:.3f}" for c, r in ratios.items())
                      + f" (worst {max(ratios.values()):.3f})")
    print("\n".join(md))
    write_results("impute" + ("_quick" if args.quick else ""), dict(seeds=seeds, rmse=rmse, times=times), "\n".join(md))


if __name__ == "__main__":
    main()
