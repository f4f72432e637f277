"""PPCADensity's EM with missing values: SQUAREM (the default) against plain EM.

Every table at a fifth of its entries missing completely at random (seed 1): the
default ``PPCADensity()`` (``n_components`` by Minka's evidence on the mean-imputed
covariance, ``tol=1e-6``, ``max_iter=1000``, ``acceleration="squarem"``) and the same
with ``acceleration=None``, side by side in this one process (interleaved, medians of
``--repeats`` runs). Per side: E-steps (``n_iter_``), whether EM converged, seconds,
and the mean log-likelihood of the observed entries where EM stopped
(``lower_bound_``). Tables: scikit-learn's wine, breast cancer, diabetes and digits,
and the ADBench tables of ``../shared/data/adbench`` (at most 3000 rows, shuffled),
as given (not scaled: what a user who does not tune runs).

    python benchmarks/bench_ppca_missing.py                  # one thread and default threads
    python benchmarks/bench_ppca_missing.py --threads 1 --quick
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn import datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ADBENCH, FAILED, Figure, LoadMonitor, Results, add_run_arguments, interleaved, pick, ratio, run_mode,
    thread_variants, threads,
)

from skgenerative import PPCADensity  # noqa: E402

FIGURES = {
    "em": Figure(
        "PPCADensity() with 20% of the entries missing: SQUAREM against plain EM",
        ["table", "rows x columns", "q", "E-steps (SQUAREM / plain)", "converged (SQUAREM / plain)",
         "SQUAREM s", "plain s", "plain / SQUAREM", "log-likelihood (SQUAREM / plain)"],
        "The log-likelihood is the mean over rows of log p(observed entries) where EM stopped; plain EM "
        "that stops at max_iter=1000 unconverged stops lower. A failed fit names its error."),
}


def tables(mode: str) -> dict:
    out = {}
    for name in pick(mode, ("wine", "breast_cancer", "diabetes", "digits"), ("wine", "diabetes"), ("diabetes",)):
        out[name] = getattr(datasets, f"load_{name}")().data.astype(float)
    if mode != "smoke":
        for path in sorted(ADBENCH.glob("*.npz")):
            X = np.load(path)["X"].astype(float)
            out[path.stem] = X[np.random.RandomState(0).permutation(len(X))[:pick(mode, 3000, 1000, 0)]]
    if mode == "smoke":
        out = {name: X[:120, :6] for name, X in out.items()}
    return out


def fitted(H: np.ndarray, acceleration):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a plain run that stops at max_iter warns; the row says so
        return PPCADensity(acceleration=acceleration).fit(H)


def compare(results: Results, setting: str, data: dict, repeats: int) -> None:
    rows, failures = [], []
    with threads(setting), LoadMonitor() as load:
        for name, X in data.items():
            H = X.copy()
            H[np.random.RandomState(1).uniform(size=X.shape) < 0.2] = np.nan
            print(f"  {name} {X.shape}, threads {setting}", flush=True)
            runs = interleaved({"squarem": lambda: fitted(H, "squarem"), "plain": lambda: fitted(H, None)}, repeats)
            fast, plain = runs["squarem"], runs["plain"]
            for side in (fast, plain):
                if side.error is not None:
                    failures.append(f"{name}: {side.error}")

            def pair(attribute, fmt=lambda v: v):
                return " / ".join(FAILED if r.result is None else str(fmt(getattr(r.result, attribute)))
                                  for r in (fast, plain))

            model = fast.result or plain.result
            rows.append({
                "table": name, "rows x columns": f"{X.shape[0]} x {X.shape[1]}",
                "q": model.n_components_ if model is not None else FAILED,
                "E-steps (SQUAREM / plain)": pair("n_iter_"),
                "converged (SQUAREM / plain)": pair("converged_"),
                "SQUAREM s": fast.median if fast.error is None else FAILED,
                "plain s": plain.median if plain.error is None else FAILED,
                "plain / SQUAREM": ratio(plain.median, fast.median),
                "log-likelihood (SQUAREM / plain)": pair("lower_bound_", lambda v: f"{v:.4f}"),
                "errors": " / ".join(r.error or "" for r in (fast, plain)).strip(" /") or None,
            })
    results.record("em", {"threads": setting}, {"missing": "20% MCAR, seed 1", "repeats": repeats,
                                                "parameters": PPCADensity().get_params()}, rows, load, failures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "wine, diabetes and the ADBench tables at 1000 rows, one run a side")
    parser.add_argument("--threads", nargs="+", default=["1", "default"], help="thread settings: 1, 2, ..., default")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per side (median reported)")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    results = Results("ppca_missing", args, title="PPCADensity with missing values: SQUAREM against plain EM",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    data = tables(mode)
    for setting in thread_variants(args.threads):
        compare(results, setting, data, args.repeats or pick(mode, 3, 1, 1))
    return None


if __name__ == "__main__":
    main()
