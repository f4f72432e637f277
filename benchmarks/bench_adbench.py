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
    # robust fitting (#16), the default detector otherwise unchanged; per table in the
    # order cardio, thyroid, annthyroid, mammography, satimage-2, shuttle, Pima, breastw
    ("GenerativeOutlierDetector: trimmed likelihood, robust=1 / 2 / 3 / 5 refits",
     "89.8 / 89.6 / 89.5 / 89.9 (robust=1: 82.1 97.5 89.9 83.6 99.9 99.7 69.0 96.6; "
     "cardio falls from 85.7, annthyroid rises from 84.0)"),
    ("GenerativeOutlierDetector: 1 component, robust=1", "88.9 (89.4 98.0 75.6 85.0 99.3 99.6 66.9 97.6)"),
    ("GenerativeOutlierDetector: mean of IQR-standardised scores of 10 fits on random halves of the "
     "features (feature bagging), without / with robust=1",
     "90.2 (88.0 97.8 89.7 82.9 98.2 99.4 66.0 99.2) / 90.4 (86.8 99.0 91.7 82.5 99.7 99.7 65.6 98.5)"),
    ("GenerativeOutlierDetector: the same over 10 subsamples of 256 / 512 rows, 512 with robust=1",
     "88.2 / 88.2 / 90.5 (84.8 98.5 91.1 84.2 99.9 99.5 68.6 97.1)"),
    ("GenerativeOutlierDetector: feature bagging, 20 fits on random halves, robust=1",
     "90.7 (87.9 99.0 91.3 83.5 99.7 99.7 66.5 98.2): at IsolationForest's mean, 5.4 behind on cardio"),
    ("GenerativeOutlierDetector: feature bagging, 10 fits, 1 component / 1 component robust=1 / "
     "1 and 2 components alternating, robust=1",
     "87.5 (cardio 91.5, annthyroid 66.4) / 89.6 (cardio 92.1, annthyroid 81.4) / 90.3 (90.3 98.7 87.1 83.4 "
     "99.8 99.7 65.1 98.3)"),
    ("GenerativeOutlierDetector: feature bagging with Lazarevic & Kumar's subset sizes (d/2 to d-1), "
     "2 components robust=1 / 1 and 2 components robust=1", "89.4 / 89.9"),
    ("GenerativeOutlierDetector: mean of IQR-standardised scores of the 1-component and 2-component "
     "detectors, without / with robust=1 on both", "89.7 / 90.0 (87.3 98.1 84.6 84.8 99.7 99.7 68.4 97.7)"),
    ("GenerativeOutlierDetector: robust=1 trimming half of contamination (0.05)",
     "89.5 (83.3 96.7 90.5 84.1 98.1 98.5 68.2 97.0)"),
    ("GenerativeOutlierDetector(VariationalAutoencoder(), robust=1)",
     "cardio 75.0 (76.5 without), Pima 66.1 (68.3 without): trimming does not stop the VAE fitting cardio's anomalies"),
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
        "GenerativeOutlierDetector (robust=1)": (lambda seed: GenerativeOutlierDetector(robust=1), "variant"),
        "GenerativeOutlierDetector (calibration=0.2)": (
            lambda seed: GenerativeOutlierDetector(calibration=0.2, random_state=seed), "variant"),
        "GenerativeOutlierDetector (feature_bagging=20, robust=1)": (
            lambda seed: GenerativeOutlierDetector(feature_bagging=20, robust=1, random_state=seed), "variant"),
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


CONTAMINATION = 0.1


def false_alarm_rate(detector, X_train, X_test, y_test):
    """Percentage of the test inliers flagged at contamination 0.1.

    Ours flag with their own rule (``predict_outlier`` / ``predict``: the 0.1 quantile
    of the training log-densities, or the calibrated threshold); every peer gets the
    same training-quantile rule on its anomaly scores (IsolationForest's own default
    threshold is not a contamination quantile).
    """
    normal = X_test[y_test == 0]
    if hasattr(detector, "predict_outlier") or isinstance(detector, GenerativeOutlierDetector):
        flagged = detector.predict_outlier(normal) == -1
    else:
        threshold = np.quantile(anomaly_scores(detector, X_train), 1 - CONTAMINATION)
        flagged = anomaly_scores(detector, normal) > threshold
    return 100 * float(np.mean(flagged))


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
    far = {}
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
                        alarms = false_alarm_rate(detector, Xtr, Xte, y_test)
                    except Exception as exc:  # report, never hide, a failing detector
                        print(f"  {det_name} failed on {name} (seed {seed}): {exc!r}")
                        auc = alarms = float("nan")
                # the time covers fit, scoring the test rows and the threshold
                times.setdefault(det_name, []).append(time.perf_counter() - start)
                table.setdefault(det_name, {}).setdefault(name, []).append(auc)
                far.setdefault(det_name, {}).setdefault(name, []).append(alarms)
            print(f"{name} seed {seed}: " + ", ".join(
                f"{d} {table[d][name][-1]:.1f}" for d in table if name in table[d]), flush=True)
    return table, times, far


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
    parser.add_argument("--report", action="store_true",
                        help="rewrite the Markdown report from the saved JSON, running nothing")
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    args = parser.parse_args()
    if not ADBENCH.exists():
        print(f"ADBench data not found at {ADBENCH}; set SKGENERATIVE_ADBENCH. Nothing to do.")
        return
    seeds = [1] if args.quick else [1, 2, 3]
    name = "adbench" + ("_quick" if args.quick else "")
    if args.report:
        import json

        from _common import RESULTS

        saved = json.loads((RESULTS / f"{name}.json").read_text())
        table, times, far = saved["auc"], saved["times"], saved.get("false_alarms", {})
        fresh = set(saved.get("rerun", table))
        seeds = saved["seeds"]
    else:
        table, times, far = run(args.datasets, seeds, args.only)
        fresh = set(table)
    if args.update and not args.report:
        import json

        from _common import RESULTS

        path = RESULTS / f"{name}.json"
        if path.exists():  # rows rerun by earlier --update runs since the last full one count too
            fresh |= set(json.loads(path.read_text()).get("rerun", []))
        far, _ = merge_saved("adbench" + ("_quick" if args.quick else ""), "false_alarms", far, {})
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
    saved = [r[0] for r in rows[:-1] if r[0] not in fresh]
    if saved:
        md += ["", f"Rows from the saved results, not rerun this time: {', '.join(saved)}."]
    means = {r[0]: r[-2] for r in rows}
    md += ["", f"## False-alarm rate at contamination {CONTAMINATION} (% of test inliers flagged, mean over seeds)",
           "", "Ours flag by their own threshold (the training quantile, or the calibrated one); "
           "peers by the same training-quantile rule on their scores. The training parts are "
           "contaminated, so a training quantile flags fewer than 10% of clean rows.", "",
           "| " + " | ".join(["detector"] + names + ["mean"]) + " |", "|" + "---|" * (len(names) + 2)]
    for det, per in sorted(far.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        values = [float(np.nanmean(per[n])) if n in per else float("nan") for n in names]
        md.append("| " + " | ".join([det] + [f"{v:.1f}" for v in values + [float(np.nanmean(values))]]) + " |")
    ours = [d for d, (_, kind) in detectors().items() if kind == "ours" and d in means]
    if ours and "IsolationForest" in means:
        best = max(ours, key=means.get)
        md += ["", f"Our best default estimator: {best}, mean {means[best]:.1f} vs IsolationForest "
                   f"{means['IsolationForest']:.1f} (this run) and {rows[-1][-2]:.1f} (ADBench paper)."]
    if "GenerativeOutlierDetector (default)" in means and "IsolationForest" in means:
        gaps = {n: np.nanmean(table["GenerativeOutlierDetector (default)"][n]) - np.nanmean(table["IsolationForest"][n])
                for n in names}
        behind = [f"{n} {g:+.1f}" for n, g in gaps.items() if g < -2]
        md.append("Default detector within 2 points of IsolationForest on "
                  f"{len(names) - len(behind)} of {len(names)} tables"
                  + (f" (not on {', '.join(behind)})." if behind else "."))
    if "VariationalAutoencoder" in table and "PyOD VAE" in table:
        wins = [n for n in names if np.nanmean(table["VariationalAutoencoder"][n]) > np.nanmean(table["PyOD VAE"][n])]
        md.append(f"VariationalAutoencoder above PyOD's VAE on {len(wins)} of {len(names)} datasets"
                  + (f" (not on {', '.join(n for n in names if n not in wins)})." if len(wins) < len(names) else "."))
    md += ["", "## Defaults tried (seeds 1-3, mean AUCROC)", "",
           *[f"- {setting}: {outcome}." for setting, outcome in EXPLORATION]]
    print("\n".join(md))
    write_results("adbench" + ("_quick" if args.quick else ""), dict(seeds=seeds, auc=table, times=times, false_alarms=far, rerun=sorted(fresh)),
                  "\n".join(md))


if __name__ == "__main__":
    main()
