"""Imputation of MCAR-masked tables: GenerativeImputer vs scikit-learn's imputers.

Datasets: scikit-learn's breast_cancer, wine, diabetes and iris, standardised.
Entries are masked completely at random at 20% and 50%; each imputer is fitted on
the masked table and scored by the RMSE on the masked entries (standardised units),
the mean over seeds 0, 1, 2. Every imputer runs in this one process on the same masks,
at each ``--threads`` setting (``default``: the libraries' own threading; ``1``: one
torch and BLAS thread). An imputer that fails on a table, rate and seed has a "failed"
cell, with the reason listed.

Peers: scikit-learn's SimpleImputer (mean), KNNImputer (5 neighbours),
IterativeImputer with BayesianRidge (``max_iter=25``) and with forests:
``IterativeImputer(ExtraTreesRegressor(n_estimators=100), max_iter=10)`` (one job, as
scikit-learn's default ``n_jobs=None``). Times are fit + transform, summed over the
seeds of a cell.

    python benchmarks/bench_impute.py            # 3 seeds
    python benchmarks/bench_impute.py --quick    # seed 0 only
    python benchmarks/bench_impute.py --only "GenerativeImputer (default)"
    python benchmarks/bench_impute.py --threads default 1
    python benchmarks/bench_impute.py --speed --threads default 1   # interleaved timing

``--speed``: only the default GenerativeImputer against
``IterativeImputer(ExtraTrees)``, alternated on the same masks (seed 0) in each cell
and on digits (the first 1000 rows of scikit-learn's load_digits, 64 columns, 20%
MCAR: a different missingness pattern in nearly every row), medians over
``--repeats`` and the ratio per cell and over all cells (figure ``speed``).

Results merge into ``results/impute.json`` and ``impute.md``, one entry per imputer:
``--only`` reruns some imputers and keeps the others' saved results.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    FAILED, Figure, LoadMonitor, Results, add_run_arguments, attempt, interleaved, mean_or_failed, pick, ratio,
    run_mode, short_run, thread_variants, threads,
)

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


def choice(imputer) -> str:
    """The default's stack, ``components: weight``, and whether the clock cut its search."""
    stack = ", ".join(f"{e.n_components}: {w:.2f}" for w, e in zip(imputer.weights_, imputer.estimators_))
    clock = any("time budget" in r["status"] for r in imputer.selection_)
    return stack + (" (time budget reached)" if clock else "")


def masked(X, rate, seed):
    rng = np.random.RandomState(seed)
    mask = rng.rand(*X.shape) < rate
    Xm = X.copy()
    Xm[mask] = np.nan
    return Xm, mask


def _cell(value):
    return f"{value:.3f}" if isinstance(value, float) else (value or "")


def combined(entries) -> str:
    md = []
    settings = sorted({e["variant"].get("threads", "default") for e in entries})
    for setting in settings:
        group = [e for e in entries if e["variant"].get("threads", "default") == setting]
        if len(settings) > 1 or setting != "default":
            md += [f"### threads={setting}", ""]
        md += [_combined(group), ""]
    return "\n".join(md)


FOREST = "IterativeImputer(ExtraTrees)"


def _combined(entries) -> str:
    order = list(imputers())
    entries = sorted(entries, key=lambda e: order.index(e["variant"]["imputer"])
                     if e["variant"]["imputer"] in order else len(order))
    cells = list(dict.fromkeys(r["cell"] for e in entries for r in e["rows"]))
    rmse = {e["variant"]["imputer"]: {r["cell"]: r["RMSE"] for r in e["rows"]} for e in entries}
    seconds = {e["variant"]["imputer"]: sum(r["seconds"] for r in e["rows"]) for e in entries}
    seeds = sorted({tuple(e["settings"]["seeds"]) for e in entries})
    header = ["imputer"] + cells + ["total s", "run"]
    md = [f"RMSE on the masked entries (standardised units), mean over seeds "
          f"{'; '.join(', '.join(map(str, s)) for s in seeds)}; \"failed\": a seed failed in that cell.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in entries:
        name = e["variant"]["imputer"]
        md.append("| " + " | ".join([name] + [_cell(rmse[name].get(c)) for c in cells]
                                    + [f"{seconds[name]:.1f}", short_run(e)]) + " |")
    failures = [f"- {e['variant']['imputer']}: {f}" for e in entries for f in e.get("failures", [])]
    if failures:
        md += ["", "Failures:", "", *failures]
    kinds = {e["variant"]["imputer"]: e["settings"].get("kind") for e in entries}
    peers = [n for n in rmse if kinds[n] == "peer"]
    ours = [n for n in rmse if kinds[n] == "ours"]

    def best(names, cell):
        values = [rmse[n].get(cell) for n in names]
        return min(values) if values and all(isinstance(v, float) for v in values) else None

    if peers and ours:
        scored = [c for c in cells if best(peers, c) is not None and best(ours, c) is not None]
        wins = sum(best(ours, c) < best(peers, c) for c in scored)
        md += ["", f"Our best beats every peer on {wins} of {len(scored)} cells"
                   + (f" ({len(cells) - len(scored)} cells with a failed or missing run not compared)."
                      if len(scored) < len(cells) else ".")]
        default = "GenerativeImputer (default)"
        if default in rmse:
            ratios = {c: rmse[default][c] / best(peers, c) for c in cells
                      if isinstance(rmse[default].get(c), float) and best(peers, c) is not None}
            if ratios:
                md.append("Default GenerativeImputer / best peer: " + ", ".join(
                    f"{c} {r:.3f}" for c, r in ratios.items()) + f" (worst {max(ratios.values()):.3f}).")
            choices = {r["cell"]: r["choice per seed"] for e in entries if e["variant"]["imputer"] == default
                       for r in e["rows"] if r.get("choice per seed")}
            if choices:
                md += ["", "The default's choice (components: stacking weight; per seed):", ""]
                md += [f"- {c}: " + "; ".join(v) for c, v in choices.items()]
                md.append("")
            if FOREST in seconds and seconds[default] > 0:
                md.append(f"Time {FOREST} / default GenerativeImputer (all cells): "
                          f"{seconds[FOREST] / seconds[default]:.1f}x.")
    return "\n".join(md)


def speed_note(entry: dict) -> str:
    rows = [r for r in entry["rows"] if r["cell"] != "all cells"]
    total = next((r for r in entry["rows"] if r["cell"] == "all cells"), None)
    lines = [f"Fit + transform, medians of {entry['settings']['repeats']} interleaved repeats in one process "
             f"(threads={entry['variant']['threads']}; the load hits both sides alike)."]
    if total and isinstance(total["ratio"], float):
        lines.append(f"{FOREST} / default GenerativeImputer over the {len(rows)} cells: {total['ratio']:.1f}x; "
                     f"slowest cell ratio {min(r['ratio'] for r in rows if isinstance(r['ratio'], float)):.1f}x.")
    return "\n\n".join(lines)


FIGURES = {
    "imputers": Figure("Imputation RMSE on MCAR-masked entries", combine=combined),
    "speed": Figure(f"Speed: default GenerativeImputer against {FOREST}, interleaved",
                    ["cell", "default_s", "forest_s", "ratio", "default_RMSE", "forest_RMSE"], note=speed_note),
}

DIGITS_CELL = "digits 1000x64 20%"


def speed(tables: dict, repeats: int, digits: bool = True) -> tuple[list, list]:
    """The default GenerativeImputer and IterativeImputer(ExtraTrees) on the same masks
    (seed 0), alternated ``repeats`` times per cell (and on digits); RMSE of the last run."""
    found = imputers()
    cells = [(f"{name} {int(rate * 100)}%", X, rate) for name, X in tables.items() for rate in RATES]
    if digits:
        cells.append((DIGITS_CELL, StandardScaler().fit_transform(load_digits().data[:1000]), 0.2))
    rows, failures = [], []
    for cell, X, rate in cells:
        Xm, mask = masked(X, rate, 0)

        def run(name):
            def go():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return found[name][0](0).fit_transform(Xm)
            return go

        runs = interleaved({"default": run("GenerativeImputer (default)"), "forest": run(FOREST)}, repeats)
        failures += [f"{cell}, {side}: {r.error}" for side, r in runs.items() if r.error]
        error = {side: float(np.sqrt(np.mean((r.result - X)[mask] ** 2))) if r.error is None else FAILED
                 for side, r in runs.items()}
        median = {side: r.median if r.error is None else FAILED for side, r in runs.items()}
        rows.append({"cell": cell, "default_s": median["default"], "forest_s": median["forest"],
                     "ratio": ratio(median["forest"], median["default"]), "default_RMSE": error["default"],
                     "forest_RMSE": error["forest"], "seconds": {s: r.seconds for s, r in runs.items()}})
        print(f"  {cell}: default {median['default']}, forest {median['forest']}, ratio {rows[-1]['ratio']}",
              flush=True)
    timed = [r for r in rows if isinstance(r["ratio"], float)]
    total = {side: sum(r[f"{side}_s"] for r in timed) for side in ("default", "forest")}
    rows.append({"cell": "all cells", "default_s": total["default"], "forest_s": total["forest"],
                 "ratio": ratio(total["forest"], total["default"]), "default_RMSE": "", "forest_RMSE": ""})
    return rows, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "seed 0 only")
    parser.add_argument("--only", nargs="+", help="imputer names to run (the others' saved results are kept)")
    parser.add_argument("--threads", nargs="+", default=["default"], help="thread settings: default, 1, 2, ...")
    parser.add_argument("--speed", action="store_true",
                        help=f"only the interleaved timing of the default against {FOREST} (figure speed)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of --speed (default 2; quick, smoke 1)")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    seeds = pick(mode, [0, 1, 2], [0], [0])
    datasets = pick(mode, list(DATASETS), list(DATASETS), ["iris"])
    found = imputers()
    unknown = set(args.only or ()) - set(found)
    if unknown:
        raise SystemExit(f"unknown imputers {sorted(unknown)}; known: {list(found)}")
    results = Results("impute", args, title="Imputation of MCAR-masked tables: GenerativeImputer vs scikit-learn",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    tables = {name: StandardScaler().fit_transform(DATASETS[name]().data) for name in datasets}
    if args.speed:
        repeats = args.repeats or pick(mode, 2, 1, 1)
        for setting in thread_variants(args.threads):
            with threads(setting), LoadMonitor() as load:
                rows, failures = speed(tables, repeats, digits=mode != "smoke")
            results.record("speed", {"threads": setting}, {"repeats": repeats, "seed": 0, "datasets": datasets,
                                                           "rates": RATES}, rows, load, failures)
        return
    for setting in thread_variants(args.threads):
        for name, (factory, kind) in found.items():
            if args.only and name not in args.only:
                continue
            rows, failures = [], []
            with threads(setting), LoadMonitor() as load:
                for data_name, X in tables.items():
                    for rate in RATES:
                        cell = f"{data_name} {int(rate * 100)}%"
                        errors, seconds, choices = [], [], []
                        for seed in seeds:
                            Xm, mask = masked(X, rate, seed)
                            start = time.perf_counter()
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore")
                                imputer = factory(seed)
                                filled, error = attempt(lambda: imputer.fit_transform(Xm))
                            seconds.append(time.perf_counter() - start)
                            if error:
                                print(f"  {name} failed on {cell} (seed {seed}): {error}", flush=True)
                                failures.append(f"{cell}, seed {seed}: {error}")
                                errors.append(FAILED)
                            else:
                                errors.append(float(np.sqrt(np.mean((filled - X)[mask] ** 2))))
                                if getattr(imputer, "selection_", None):
                                    choices.append(choice(imputer))
                        rows.append({"cell": cell, "RMSE": mean_or_failed(errors), "RMSE per seed": errors,
                                 "seconds": float(np.sum(seconds)),
                                 **({"choice per seed": choices} if choices else {})})
            print(f"{name} (threads={setting}): " + ", ".join(f"{r['cell']} {_cell(r['RMSE'])}" for r in rows),
                  flush=True)
            results.record("imputers", {"imputer": name, "threads": setting},
                           {"kind": kind, "seeds": seeds, "datasets": datasets, "rates": RATES},
                           rows, load, failures)


if __name__ == "__main__":
    main()
