"""Anomaly detection on ADBench's classical datasets, every detector side by side.

ADBench's protocol (Han et al., NeurIPS 2022): datasets under 1000 rows are resampled
with replacement to 1000, those over 10000 subsampled to 10000; a stratified 70/30
split; MinMax scaling fitted on the training part; unsupervised detectors fitted on
the (contaminated) training part with default parameters; AUCROC on the test part,
the mean over seeds 1, 2 and 3. No per-dataset tuning.

Data: ``../shared/data/adbench/*.npz`` (or ``$SKGENERATIVE_ADBENCH``); the script
exits cleanly when it is absent.

    python benchmarks/bench_adbench.py                 # everything, seeds 1-3
    python benchmarks/bench_adbench.py --quick         # seed 1 only
    python benchmarks/bench_adbench.py --only IsolationForest GaussianMixtureDensity
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ADBENCH, machine, merge_saved, write_results  # noqa: E402

import skgenerative  # noqa: E402
from skgenerative import GaussianMixtureDensity, GenerativeOutlierDetector, PPCADensity  # noqa: E402

DATASETS = ["cardio", "thyroid", "annthyroid", "mammography", "satimage-2", "shuttle", "Pima", "breastw"]
PUBLISHED_IFOREST = {"cardio": 93.2, "thyroid": 98.3, "annthyroid": 82.0, "mammography": 86.4,
                     "satimage-2": 99.2, "shuttle": 99.6, "Pima": 72.9, "breastw": 98.3}


# Defaults tried on these eight tables before keeping the current ones (seeds 1-3, mean
# AUCROC; the cells a variant loses to PyOD's VAE in brackets). None beats PyOD's VAE on
# every table, and none is above IsolationForest's mean, so the defaults that model the
# data best (held-out likelihood) were kept; no per-dataset setting is used anywhere.
EXPLORATION = [
    ("VariationalAutoencoder, n_components=2", "87.3 [cardio 74.2, mammography 83.8, satimage-2 95.6, breastw 98.3]"),
    ("VariationalAutoencoder, n_components=4", "88.8 [cardio 75.0, mammography 82.1, satimage-2 98.5]"),
    ("VariationalAutoencoder, decoder_variance='shared'",
     "89.3 [mammography 84.6, satimage-2 97.0, shuttle 99.1, breastw 98.0]"),
    ("VariationalAutoencoder, n_components=2, shared variance", "87.4 [cardio 81.7, mammography 86.1, satimage-2 90.6, shuttle 98.7, breastw 98.0]"),
    ("VariationalAutoencoder, hidden_layer_sizes=(64, 64)", "88.9 [cardio 74.3, mammography 85.5]"),
    ("VariationalAutoencoder, n_components=4, hidden_layer_sizes=(64, 64)", "88.6 [cardio 73.1, mammography 85.1]"),
    ("GenerativeOutlierDetector: PowerTransformer instead of StandardScaler", "86.1"),
    ("GenerativeOutlierDetector: 1 / 3 / 4 components instead of 2", "87.1 / 88.6 / 88.7"),
    ("GenerativeOutlierDetector: covariance_prior 10 / 200 instead of 50", "88.7 / 88.1"),
    ("GenerativeOutlierDetector: mean of standardised scores of 1, 2, 4 components", "89.4"),
]


def _pyod_vae(seed):
    from pyod.models.vae import VAE

    return VAE(random_state=seed, verbose=0, device="cpu")


def detectors():
    """name -> (factory(seed), kind); kind 'ours' or 'peer'. Lower score = more normal
    for peers with decision_function (PyOD, sklearn); ours score by log-density."""
    found = {
        "IsolationForest": (lambda seed: IsolationForest(random_state=seed), "peer"),
        "LocalOutlierFactor": (lambda seed: LocalOutlierFactor(novelty=True), "peer"),
        "sklearn GaussianMixture": (lambda seed: GaussianMixture(random_state=seed), "peer"),
        "PyOD VAE": (_pyod_vae, "peer"),
        "GenerativeOutlierDetector (default)": (lambda seed: GenerativeOutlierDetector(), "ours"),
        "GaussianMixtureDensity": (lambda seed: GaussianMixtureDensity(random_state=seed), "ours"),
        "PPCADensity": (lambda seed: PPCADensity(random_state=seed), "ours"),
    }
    for name in ("BernoulliRBM", "VariationalAutoencoder", "FlowVAE"):
        if hasattr(skgenerative, name):
            cls = getattr(skgenerative, name)
            found[name] = ((lambda cls: lambda seed: cls(random_state=seed))(cls), "ours")
    return found


def anomaly_scores(detector, X):
    """Higher = more anomalous, for every kind of detector."""
    if hasattr(detector, "decision_scores_"):  # PyOD: decision_function is the outlier score
        return detector.decision_function(X)
    return -detector.score_samples(X)


def load(name, seed):
    matches = sorted(ADBENCH.glob(f"*{name}.npz"))  # files carry ADBench's index: 6_cardio.npz
    data = np.load([m for m in matches if m.stem.split("_", 1)[-1] == name][0])
    X, y = data["X"].astype(np.float64), data["y"].astype(int)
    rng = np.random.RandomState(seed)
    if len(X) < 1000:
        index = rng.choice(len(X), 1000, replace=True)
        X, y = X[index], y[index]
    elif len(X) > 10000:
        index = rng.choice(len(X), 10000, replace=False)
        X, y = X[index], y[index]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    scaler = MinMaxScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def run(names, seeds, only=None):
    table = {}
    times = {}
    for name in names:
        for seed in seeds:
            X_train, X_test, _, y_test = load(name, seed)
            for det_name, (factory, kind) in detectors().items():
                if only and det_name not in only:
                    continue
                detector = factory(seed)
                Xtr, Xte = X_train, X_test
                if det_name == "BernoulliRBM":  # its inputs must lie in [0, 1]
                    Xtr, Xte = np.clip(Xtr, 0, 1), np.clip(Xte, 0, 1)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        detector.fit(Xtr)
                        auc = 100 * roc_auc_score(y_test, anomaly_scores(detector, Xte))
                    except Exception as exc:  # report, never hide, a failing detector
                        print(f"  {det_name} failed on {name} (seed {seed}): {exc!r}")
                        auc = float("nan")
                table.setdefault(det_name, {}).setdefault(name, []).append(auc)
                times.setdefault(det_name, []).append(time.perf_counter() - start)
            print(f"{name} seed {seed}: " + ", ".join(
                f"{d} {table[d][name][-1]:.1f}" for d in table if name in table[d]), flush=True)
    return table, times


def main():
    # PyOD's VAE can run ~80x slower on denormal floats; flushing them helps it (and
    # is harmless to everyone else), so every detector runs with it
    import torch

    torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seed 1 only")
    parser.add_argument("--update", action="store_true",
                        help="merge these results into the saved JSON (e.g. after --only NEW_MODEL)")
    parser.add_argument("--only", nargs="*", help="detector names to run")
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    args = parser.parse_args()
    if not ADBENCH.exists():
        print(f"ADBench data not found at {ADBENCH}; set SKGENERATIVE_ADBENCH. Nothing to do.")
        return
    seeds = [1] if args.quick else [1, 2, 3]
    table, times = run(args.datasets, seeds, args.only)
    if args.update:
        table, times = merge_saved("adbench" + ("_quick" if args.quick else ""), "auc", table, times)

    names = args.datasets
    order = list(detectors())
    rows = []
    for det, per in sorted(table.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        means = [float(np.nanmean(per[n])) for n in names]
        rows.append([det] + means + [float(np.nanmean(means)), float(np.sum(times[det]))])
    rows.append(["IsolationForest (ADBench paper)"] + [PUBLISHED_IFOREST.get(n, float("nan")) for n in names]
                + [float(np.mean([PUBLISHED_IFOREST[n] for n in names if n in PUBLISHED_IFOREST])), float("nan")])
    header = ["detector"] + names + ["mean", "total fit+score s"]
    md = [f"# ADBench anomaly detection (AUCROC x 100, mean over seeds {seeds}, default parameters)", "",
          f"Machine: {machine()}", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        md.append("| " + " | ".join([r[0]] + [f"{v:.1f}" for v in r[1:-1]] + [f"{r[-1]:.0f}"]) + " |")
    means = {r[0]: r[-2] for r in rows}
    ours = [d for d, (_, kind) in detectors().items() if kind == "ours" and d in means]
    if ours and "IsolationForest" in means:
        best = max(ours, key=means.get)
        md += ["", f"Our best default estimator: {best}, mean {means[best]:.1f} vs IsolationForest "
                   f"{means['IsolationForest']:.1f} (this run) and {rows[-1][-2]:.1f} (ADBench paper)."]
    if "VariationalAutoencoder" in table and "PyOD VAE" in table:
        wins = [n for n in names if np.nanmean(table["VariationalAutoencoder"][n]) > np.nanmean(table["PyOD VAE"][n])]
        md.append(f"VariationalAutoencoder above PyOD's VAE on {len(wins)} of {len(names)} datasets"
                  + (f" (not on {', '.join(n for n in names if n not in wins)})." if len(wins) < len(names) else "."))
    md += ["", "## Defaults tried (seeds 1-3, mean AUCROC)", "",
           *[f"- {setting}: {outcome}." for setting, outcome in EXPLORATION]]
    print("\n".join(md))
    write_results("adbench" + ("_quick" if args.quick else ""), dict(seeds=seeds, auc=table, times=times),
                  "\n".join(md))


if __name__ == "__main__":
    main()
