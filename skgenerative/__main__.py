"""``python -m skgenerative``: fit every estimator on bundled data and report what it found.

On scikit-learn's digits (8x8 images, 1797 of them) each estimator is fitted on a
training split and reports its held-out mean log-likelihood (nats per image), fit time
and device; each then flags an unseen digit class as anomalies (AUCROC) with a
calibrated threshold whose false-alarm rate on new normal images is measured against
the rate asked; a Gaussian mixture imputes missing pixels; and a grid of samples, one
labelled row per model, is written as a PNG.

The output fits on two screens: the neural models and the RBM train at ``verbose=1``,
which draws a progress bar in a terminal and leaves one summary line per fit
(a log gets the line alone).
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split

from ._png import tile, write_png
from ._torch import resolve_device


@dataclass
class Entry:
    name: str
    make: Callable[[str, int, int], object]  # (device, seed, verbose) -> estimator
    space: str  # "continuous": dequantised pixels in [0, 1]; "binary": pixels > 0.5
    note: str = ""


def entries(quick: bool = False) -> list[Entry]:
    """The five estimators; ``quick`` trades quality for seconds (the tests' demo)."""
    from . import BernoulliRBM, FlowVAE, GaussianMixtureDensity, PPCADensity, VariationalAutoencoder

    neural = dict(max_iter=15, hidden_layer_sizes=(64,)) if quick else {}
    # max_iter="auto" (enough updates for a small table): 10 epochs of 540 images barely move
    # the weights from the base-rate start, and the 9s would not stand out (AUCROC 0.55)
    rbm = dict(n_components=32, n_ais_temperatures=500) if quick else dict(n_components=100)
    grid = [1, 3] if quick else [1, 3, 5, 10]

    def mixture(dev, seed, verbose):
        # the number of components is chosen by held-out log-likelihood, as users would
        return GridSearchCV(
            GaussianMixtureDensity(reg_covar=1e-3, random_state=seed, device=dev),
            {"n_components": grid}, cv=3,
        )

    return [
        Entry("GaussianMixtureDensity", mixture, "continuous",
              "full covariance; GridSearchCV over n_components"),
        Entry("PPCADensity", lambda dev, seed, verbose: PPCADensity(device=dev), "continuous",
              "latent dimension by Minka's evidence"),
        Entry("VariationalAutoencoder",
              lambda dev, seed, verbose: VariationalAutoencoder(
                  random_state=seed, device=dev, verbose=verbose, **neural),
              "continuous", "defaults; importance-weighted bound"),
        Entry("FlowVAE",
              lambda dev, seed, verbose: FlowVAE(random_state=seed, device=dev, verbose=verbose, **neural),
              "continuous", "defaults (4 IAF steps); importance-weighted bound"),
        Entry("BernoulliRBM",
              lambda dev, seed, verbose: BernoulliRBM(random_state=seed, device=dev, verbose=verbose, **rbm),
              "binary", f"{rbm['n_components']} hidden units, PCD; log Z by AIS"),
    ]


def digits(seed: int):
    """Digits dequantised to a continuous density on [0, 1]^64, and binarised."""
    data = load_digits()
    rng = np.random.RandomState(seed)
    continuous = (data.data + rng.uniform(size=data.data.shape)) / 17.0
    binary = (data.data / 16.0 > 0.5).astype(np.float64)
    return continuous, binary, data.target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skgenerative",
        description="Fit skgenerative's estimators on scikit-learn's digits and print what they found.",
    )
    parser.add_argument("--device", default="auto", help="'auto' (default), 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--png", default="demo_samples.png", help="where to write the sample grid")
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds: 600 training images, small networks, few epochs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or training summaries")
    parser.add_argument("--calibration", type=float, default=0.2,
                        help="fraction of the normal training images held out to set the anomaly "
                             "threshold (default 0.2)")
    args = parser.parse_args(argv)
    device = str(resolve_device(args.device))
    verbose = 0 if args.quiet else 1
    say = functools.partial(print, flush=True)  # in order with the progress bars on stderr

    continuous, binary, target = digits(args.seed)
    index = np.arange(len(target))
    train, test = train_test_split(index, test_size=0.3, random_state=args.seed, stratify=target)
    if args.quick:
        train = train[:600]
    say(f"skgenerative demo{' (quick)' if args.quick else ''}: scikit-learn digits, {len(train)} "
        f"training / {len(test)} test images, 64 pixels, device={device}\n")
    say("Pixels take 17 values (0 to 16). A continuous density on such values is unbounded: a "
        "model can\nconcentrate on them and report ever larger log-likelihoods (skgenerative "
        "warns: DiscreteDataWarning).\nSo continuous models see pixels dequantised, (value + "
        "uniform noise) / 17, a density on [0, 1]^64;\nbinary models see pixels > 0.5 "
        "(log-likelihoods are log-probabilities). Higher is better.\n")

    if verbose:
        say("Training (verbose=1: a progress bar in a terminal, then one line per fit):")
    rows, fitted = [], {}
    for entry in entries(args.quick):
        X = continuous if entry.space == "continuous" else binary
        estimator = entry.make(device, args.seed, verbose)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(X[train])
        seconds = time.perf_counter() - start
        note = entry.note
        if isinstance(estimator, GridSearchCV):
            note += f" (chose {estimator.best_params_['n_components']})"
            estimator = estimator.best_estimator_
        estimator.set_params(verbose=0)  # progress of the fits only: scoring stays quiet
        loglik = estimator.score(X[test])
        fitted[entry.name] = (entry, estimator)
        rows.append(f"{entry.name:<24} {entry.space:<10} {loglik:16.2f} {seconds:8.2f}s  {device:<7} {note}")
    header = f"{'estimator':<24} {'data':<10} {'held-out loglik':>16} {'fit time':>9}  {'device':<7} notes"
    say(("\n" if verbose else "") + header)
    say("-" * len(header))
    for row in rows:
        say(row)

    anomalies(fitted, continuous, binary, target, train, test, args.seed, say, args.calibration)
    imputation(continuous, train, test, args.seed, say)

    # a grid of samples: one labelled row per model
    images = []
    for name, (entry, estimator) in fitted.items():
        samples = estimator.sample(10, random_state=args.seed)
        images.extend(s.reshape(8, 8) for s in np.clip(samples, 0, 1))
    write_png(args.png, tile(images, rows=len(fitted), cols=10, labels=list(fitted)))
    say(f"\nSamples, one row per model (labelled), written to {os.path.abspath(args.png)}")
    return 0


def anomalies(fitted, continuous, binary, target, train, test, seed, say, calibration=0.2):
    """Flag the 9s among unseen test images with each model fitted on digits 0-8.

    Each model sits in a :class:`GenerativeOutlierDetector` that holds out
    ``calibration`` of the normal training images to set its threshold (split
    conformal), so the false-alarm rate on new normal images is the level asked,
    ``contamination``. The same fitted model's own threshold, the ``contamination``
    quantile of its training scores, is shown beside it for comparison.
    """
    from .outlier import GenerativeOutlierDetector

    normal_train = train[target[train] != 9]
    is_anomaly = target[test] == 9
    level = next(iter(fitted.values()))[1].contamination
    say(f"\nAnomaly detection: each model refitted on digits 0-8, {calibration:.0%} of them held out "
        f"to set its threshold\n(GenerativeOutlierDetector(calibration={calibration})); the "
        f"anomalies are the 9s among the unseen test images.\nAsked: false alarms on "
        f"{level:.0%} of new normal images (contamination={level}).")
    say(f"  {'':<24} {'AUCROC':>6}  {'9s flagged':>10}  {'false alarms: calibrated':>24}  "
        f"{'training quantile':>17}")
    for name, (entry, estimator) in fitted.items():
        X = continuous if entry.space == "continuous" else binary
        detector = GenerativeOutlierDetector(
            clone(estimator), contamination=estimator.contamination, calibration=calibration,
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector.fit(X[normal_train])
            auc = roc_auc_score(is_anomaly, -detector.score_samples(X[test]))
            flagged = detector.predict(X[test]) == -1
            # the same fitted model, thresholded at the quantile of its own training scores
            uncalibrated = detector.estimator_.predict_outlier(X[test]) == -1
        say(f"  {name:<24} {auc:6.3f}  {flagged[is_anomaly].mean():10.1%}  "
            f"{flagged[~is_anomaly].mean():24.1%}  {uncalibrated[~is_anomaly].mean():17.1%}")
    n_held, n_new = detector.calibration_scores_.size, int((~is_anomaly).sum())
    # binomial spread of the threshold's quantile (held-out rows) and of the count (new rows)
    chance = 100 * np.sqrt(level * (1 - level) * (1 / n_held + 1 / n_new))
    say(f"Measured on {n_new} new normal images, {n_held} held out: by chance alone a rate varies "
        f"by about +-{chance:.1f} points (1 sd).\nWhy calibrate: models score their training images above new "
        f"ones, so a training quantile flags too many.")


def imputation(continuous, train, test, seed, say):
    """30% of the pixels removed at random, train and test alike; RMSE against column means."""
    from .impute import GenerativeImputer

    rng = np.random.RandomState(seed)
    missing = rng.uniform(size=continuous.shape) < 0.3
    holes = np.where(missing, np.nan, continuous)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GenerativeImputer().fit(holes[train])
        filled = imputer.transform(holes[test])
    seconds = time.perf_counter() - start
    truth, gaps = continuous[test], missing[test]
    rmse = np.sqrt(np.mean((filled - truth)[gaps] ** 2))
    column_means = np.nanmean(holes[train], axis=0)
    baseline = np.sqrt(np.mean((np.broadcast_to(column_means, truth.shape) - truth)[gaps] ** 2))
    say(f"\nImputation: 30% of pixels missing at random. GenerativeImputer (default: Gaussian mixture "
        f"learnt by EM from the incomplete rows)\n  RMSE {rmse:.4f} vs {baseline:.4f} for column means "
        f"({1 - rmse / baseline:.0%} lower), {seconds:.1f}s")


if __name__ == "__main__":
    raise SystemExit(main())
