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
import textwrap
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

WIDTH = 80  # the demo's own lines fit an 80-column terminal


@dataclass
class Entry:
    name: str
    make: Callable[[str, int, int], object]  # (device, seed, verbose) -> estimator
    space: str  # "continuous": dequantised pixels in [0, 1]; "binary": pixels > 0.5
    note: str = ""  # {k}: the fitted model's n_components_ (or n_components)


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
        Entry("GaussianMixtureDensity", mixture, "continuous", "full covariance, {k} components by CV"),
        Entry("PPCADensity", lambda dev, seed, verbose: PPCADensity(device=dev), "continuous",
              "{k} dimensions by Minka's evidence"),
        Entry("VariationalAutoencoder",
              lambda dev, seed, verbose: VariationalAutoencoder(
                  random_state=seed, device=dev, verbose=verbose, **neural),
              "continuous", "defaults; importance-weighted bound"),
        Entry("FlowVAE",
              lambda dev, seed, verbose: FlowVAE(random_state=seed, device=dev, verbose=verbose, **neural),
              "continuous", "4 IAF steps; importance-weighted bound"),
        Entry("BernoulliRBM",
              lambda dev, seed, verbose: BernoulliRBM(random_state=seed, device=dev, verbose=verbose, **rbm),
              "binary", "binary; {k} hidden units; log Z by AIS"),
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
    paragraph = functools.partial(_paragraph, say)

    continuous, binary, target = digits(args.seed)
    index = np.arange(len(target))
    train, test = train_test_split(index, test_size=0.3, random_state=args.seed, stratify=target)
    if args.quick:
        train = train[:600]
    paragraph(f"skgenerative demo{' (quick)' if args.quick else ''}: scikit-learn's digits, "
              f"{len(train)} training / {len(test)} test images of 64 pixels, device={device}")
    say()
    paragraph("Pixels take 17 values (0 to 16). A continuous density on such values is unbounded: "
              "a model can concentrate on them and report ever larger log-likelihoods "
              "(skgenerative warns: DiscreteDataWarning). So continuous models see pixels "
              "dequantised, (value + uniform noise) / 17, a density on [0, 1]^64; binary models "
              "see pixels > 0.5, and their log-likelihoods are log-probabilities.")
    say()

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
        if isinstance(estimator, GridSearchCV):
            estimator = estimator.best_estimator_
        note = entry.note.format(k=getattr(estimator, "n_components_", estimator.n_components))
        estimator.set_params(verbose=0)  # progress of the fits only: scoring stays quiet
        loglik = estimator.score(X[test])
        fitted[entry.name] = (entry, estimator)
        rows.append(f"{entry.name:<22}  {loglik:7.2f}  {seconds:6.2f}s  {note}")
    if verbose:
        say()
    say("Held-out log-likelihood (nats per image, higher is better) and fit time:")
    header = f"{'estimator':<22}  {'loglik':>7}  {'fit':>7}  notes"
    say(header)
    say("-" * WIDTH)
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
    say(f"\nSamples, one labelled row per model: {os.path.abspath(args.png)}")
    return 0


def _paragraph(say, text: str) -> None:
    say(textwrap.fill(text, WIDTH, break_on_hyphens=False))


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
    say()
    _paragraph(
        say,
        f"Anomaly detection: each model refitted on digits 0-8, {calibration:.0%} of them held "
        f"out to set its threshold (GenerativeOutlierDetector(calibration={calibration})); the "
        f"anomalies are the 9s among the unseen test images. Asked: false alarms on "
        f"{level:.0%} of new normal images (contamination={level}); in brackets, what the "
        f"same model's own threshold, the {level:.0%} quantile of its training scores, gives.",
    )
    say(f"  {'':<22}  {'AUCROC':>6}  {'9s flagged':>10}  {'false alarms':>12}  {'(training quantile)':>19}")
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
        say(f"  {name:<22}  {auc:6.3f}  {flagged[is_anomaly].mean():10.1%}  "
            f"{flagged[~is_anomaly].mean():12.1%}  {f'({uncalibrated[~is_anomaly].mean():.1%})':>19}")
    n_held, n_new = detector.calibration_scores_.size, int((~is_anomaly).sum())
    # binomial spread of the threshold's quantile (held-out rows) and of the count (new rows)
    chance = 100 * np.sqrt(level * (1 - level) * (1 / n_held + 1 / n_new))
    _paragraph(say, f"False alarms measured on {n_new} new normal images, {n_held} held out: "
                    f"chance alone moves a rate by about +-{chance:.1f} points (1 sd).")
    say("Why calibrate: models overrate training images, so their quantile over-flags.")


def imputation(continuous, train, test, seed, say):
    """30% of the pixels removed at random, train and test alike; RMSE against column means.

    The imputer's model is given (the default's fixed fallback): its default on a numeric
    table chooses among mixtures on held-out folds, minutes on 64 columns with every row
    a missingness pattern of its own, too long for a demo of seconds."""
    from .impute import GenerativeImputer, default_imputation_estimator

    rng = np.random.RandomState(seed)
    missing = rng.uniform(size=continuous.shape) < 0.3
    holes = np.where(missing, np.nan, continuous)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = GenerativeImputer(default_imputation_estimator()).fit(holes[train])
        filled = imputer.transform(holes[test])
    seconds = time.perf_counter() - start
    truth, gaps = continuous[test], missing[test]
    rmse = np.sqrt(np.mean((filled - truth)[gaps] ** 2))
    column_means = np.nanmean(holes[train], axis=0)
    baseline = np.sqrt(np.mean((np.broadcast_to(column_means, truth.shape) - truth)[gaps] ** 2))
    say("\nImputation: 30% of pixels missing at random, filled by GenerativeImputer with a\n"
        "2-component Gaussian mixture learnt by EM from the incomplete rows:")
    say(f"  RMSE {rmse:.4f} vs {baseline:.4f} for column means ({1 - rmse / baseline:.0%} lower), "
        f"{seconds:.1f}s")


if __name__ == "__main__":
    raise SystemExit(main())
