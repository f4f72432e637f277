"""Every default on every table: no default fit may fail (issue #23's robustness target).

The defaults a user runs without tuning, on every table this project benchmarks on:
scikit-learn's iris, wine, breast cancer, diabetes and digits, the ADBench tables of
``../shared/data/adbench`` (at most ``--rows`` rows, shuffled with seed 0) and the
mixed tables Adult and Wine of ``../shared/data/mixed`` (``--rows`` rows, pandas
category dtypes), each as given (not scaled), complete and with 20% and 50% of the
cells missing completely at random (seed 1). Models: ``GaussianMixtureDensity()``,
``PPCADensity()`` (numeric tables: it models numbers only, and says so on the mixed
ones), ``GenerativeOutlierDetector()`` and, with missing cells,
``GenerativeImputer()``; ``--models vae flowvae`` adds ``VariationalAutoencoder()``
and ``FlowVAE()`` (``random_state=0``; up to a minute or two a fit).

A fit counts as failed when it raises, or when its output on the training rows is not
finite: ``score_samples`` for the densities, ``decision_function`` for the detector,
a NaN left by ``fit_transform`` for the imputer. Each row gives the seconds of the fit
and that output (one run, one thread by default: the figure is whether it fails, the
time says what a user waits), and what the default chose where it chooses
(``n_components_``; the imputer's stack).

    python benchmarks/bench_sweep.py                          # one thread, about 15 minutes
    python benchmarks/bench_sweep.py --models vae flowvae     # and the VAEs (about 30 minutes)
    python benchmarks/bench_sweep.py --quick
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ADBENCH, FAILED, MIXED, Figure, LoadMonitor, Results, add_run_arguments, attempt, pick, run_mode,
    thread_variants, threads, timed,
)
from bench_mixed import load as load_mixed  # noqa: E402

from skgenerative import (  # noqa: E402
    FlowVAE, GaussianMixtureDensity, GenerativeImputer, GenerativeOutlierDetector, PPCADensity,
    VariationalAutoencoder,
)

RATES = (0.0, 0.2, 0.5)
SKLEARN = ("iris", "wine", "breast_cancer", "diabetes", "digits")

FIGURES = {
    "sweep": Figure(
        "Every default on every table: fits that fail",
        ["table", "rows x columns", "missing", "model", "status", "seconds", "chose"],
        lambda entry: (f"Failed: {sum(r['status'] != 'ok' for r in entry['rows'])} of {len(entry['rows'])} "
                       "fits. status: ok, or why it failed (an error, or a non-finite output on the "
                       "training rows); chose: what the default chose from the data."),
    ),
}


def tables(mode: str, rows: int) -> dict:
    """name -> the table as a user has it (an array, or a DataFrame with category dtypes)."""
    out = {}
    for name in pick(mode, SKLEARN, SKLEARN, ("iris", "wine")):
        out[f"sklearn {name}"] = getattr(datasets, f"load_{name}")().data.astype(float)
    if mode != "smoke":
        for path in sorted(ADBENCH.glob("*.npz")):
            X = np.load(path)["X"].astype(float)
            out[f"adbench {path.stem}"] = X[np.random.RandomState(0).permutation(len(X))[:rows]]
    for name in pick(mode, ("adult", "wine"), ("adult", "wine"), ("wine",)):
        if (MIXED / f"{name}.csv").exists():
            out[f"mixed {name}"] = load_mixed(name, rows)[0]
    if mode == "smoke":
        out = {name: X.iloc[:150, :6] if isinstance(X, pd.DataFrame) else X[:150, :6] for name, X in out.items()}
    return out


def with_holes(X, rate: float):
    """``X`` with a share ``rate`` of its cells set missing (MCAR, seed 1)."""
    if not rate:
        return X
    mask = np.random.RandomState(1).uniform(size=X.shape) < rate
    if isinstance(X, pd.DataFrame):
        return X.mask(mask)
    H = X.copy()
    H[mask] = np.nan
    return H


def models(X, rate: float, extra: list) -> dict:
    """The defaults that apply to ``X`` (PPCA: numbers only; the imputer: missing cells)."""
    out = {"GaussianMixtureDensity()": GaussianMixtureDensity}
    if not isinstance(X, pd.DataFrame):
        out["PPCADensity()"] = PPCADensity
    out["GenerativeOutlierDetector()"] = GenerativeOutlierDetector
    if rate:
        out["GenerativeImputer()"] = GenerativeImputer
    if "vae" in extra:
        out["VariationalAutoencoder()"] = lambda: VariationalAutoencoder(random_state=0)
    if "flowvae" in extra:
        out["FlowVAE()"] = lambda: FlowVAE(random_state=0)
    return out


def chosen(model) -> str:
    """What a fitted default chose: its ``n_components_``, or its density's (the detector's
    ``estimator_``, the last step of a pipeline)."""
    inner = getattr(model, "estimator_", None)
    inner = inner.steps[-1][1] if hasattr(inner, "steps") else inner
    if inner is not None and inner is not model:
        return f"{type(inner).__name__}({chosen(inner)})"
    return str(getattr(model, "n_components_", ""))


def run(make, X) -> tuple[str, str]:
    """Fit ``make()`` on ``X`` and check its output on the same rows: (status, chose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # discrete columns, convergence: warnings, not failures
        model = make()
        if isinstance(model, GenerativeImputer):
            filled = model.fit_transform(X)
            finite = not pd.DataFrame(filled).isna().to_numpy().any()
            chose = " + ".join(f"{w:.2f} x {type(e).__name__}({getattr(e, 'n_components', '')})"
                               for w, e in zip(model.weights_, model.estimators_))
        else:
            model.fit(X)
            out = model.decision_function(X) if isinstance(model, GenerativeOutlierDetector) else model.score_samples(X)
            finite = bool(np.isfinite(np.asarray(out, dtype=np.float64)).all())
            chose = chosen(model)
    return ("ok" if finite else "non-finite output on the training rows"), chose


def sweep(results: Results, setting: str, data: dict, extra: list) -> None:
    rows, failures = [], []
    with threads(setting), LoadMonitor() as load:
        for name, X in data.items():
            for rate in RATES:
                H = with_holes(X, rate)
                for label, make in models(X, rate, extra).items():
                    with timed() as t:
                        outcome, error = attempt(lambda: run(make, H))
                    status, chose = outcome if error is None else (f"{FAILED}: {error}"[:300], "")
                    print(f"  {name} {rate:.0%} {label}: {status} ({t.seconds:.1f} s)", flush=True)
                    if status != "ok":
                        failures.append(f"{name} {rate:.0%} {label}: {status}")
                    rows.append({"table": name, "rows x columns": f"{X.shape[0]} x {X.shape[1]}",
                                 "missing": f"{rate:.0%}", "model": label, "status": status,
                                 "seconds": t.seconds, "chose": chose})
    results.record("sweep", {"threads": setting, "models": "+".join(["defaults", *extra])},
                   {"missing": "MCAR, seed 1", "rows": max(int(X.shape[0]) for X in data.values())},
                   rows, load, failures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "the ADBench and mixed tables at 1000 rows")
    parser.add_argument("--threads", nargs="+", default=["1"], help="thread settings: 1, 2, ..., default")
    parser.add_argument("--rows", type=int, default=None, help="rows of the ADBench and mixed tables (3000)")
    parser.add_argument("--models", nargs="*", default=[], choices=["vae", "flowvae"],
                        help="also the VAEs' defaults (slow)")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    results = Results("sweep", args, title="Every default on every table",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    data = tables(mode, args.rows or pick(mode, 3000, 1000, 150))
    for setting in thread_variants(args.threads):
        sweep(results, setting, data, list(args.models))
    return None


if __name__ == "__main__":
    main()
