"""Imputation of mixed tables (Adult, Wine): GenerativeImputer vs mean/mode, missForest, miceforest, IterativeImputer.

Data: ``../shared/data/mixed/{adult,wine}.csv`` with their ``.types.json`` (or the folder
in ``SKGENERATIVE_MIXED``); skipped cleanly when absent. Categorical columns become
``category``, ordinal ones ordered ``category`` (levels in numeric order), numbers
float64. Each table is subsampled to ``--rows`` rows (default 3000, the same rows
for every seed and imputer) so that the peers fit the time budget.

Masks: MCAR over the *observed* cells at 20% and 50% (cells missing in the source
stay missing and are never scored), seeds 0, 1, 2. Metrics on the masked cells:

- NRMSE: per numeric column, RMSE over its masked cells / the column's standard
  deviation (over its observed cells), averaged over the numeric columns;
- error: the share of masked categorical cells imputed with a wrong level;
- rank: mean |imputed rank - true rank| / (levels - 1) over masked ordinal cells.

Imputers, all in this process on the same masks:

- mean/mode: the column mean of numbers, the most frequent level of discrete columns
  (ordinal ones too);
- missForest (Stekhoven & Buehlmann, 2012), written here on scikit-learn's forests: a
  random forest per column with missing cells (regressor for numbers, classifier
  for levels; discrete predictors as level codes), columns in order of increasing
  missingness, from a mean/mode start; it stops when the change of the imputed
  matrix increases for the first time for both column types (returning the
  imputation before), or after ``--mf-iter`` iterations (default 5);
  ``--trees`` trees per forest (default 30), ``max_features="sqrt"`` as the paper;
  and once more at its published default (R ``missForest`` and ``missingpy.MissForest``:
  100 trees, at most 10 iterations), "missForest (100 trees)";
- miceforest (LightGBM chained equations; takes pandas categories as they are), when
  installed (the ``benchmark`` extra; skipped cleanly otherwise): ``ImputationKernel(df,
  mean_match_candidates=0)`` and ``mice(--mice-iter)`` (default 5), LightGBM at
  miceforest's default parameters with one thread. No mean matching: the point
  imputation (a number's prediction, a level's most probable class), what an RMSE and
  an error rate judge; the default mean matching also fails on Adult (LightGBM gives
  rare levels probability 0 and the matching's log-odds become infinite);
- IterativeImputer(ExtraTreesRegressor) on level codes, discrete cells rounded to the
  nearest level (``--trees`` trees, ``max_iter=--ii-iter``, default 5);
- GenerativeImputer: the default, and mixed Gaussian mixtures with other settings.

Times are fit + impute (wall clock), at each ``--threads`` setting (``default``: the
libraries' own threading; ``1``: one torch and BLAS thread; the forests use one job
either way). An imputer that fails on a table, rate and seed has a "failed" cell,
with the reason listed.

    python benchmarks/bench_mixed.py               # both tables, 3 seeds
    python benchmarks/bench_mixed.py --quick       # seed 0 only
    python benchmarks/bench_mixed.py --neural --only "missForest (30 trees)" \
        "GenerativeImputer (default)" "GenerativeImputer(VariationalAutoencoder)"
    python benchmarks/bench_mixed.py --threads 1 --only "missForest (30 trees)" \
        "GenerativeImputer (default)"              # times at one thread
    python benchmarks/bench_mixed.py --interleaved 3 --threads 1 default
                                                   # missForest / default, alternating

Results merge into ``results/mixed.json`` and ``mixed.md``, one entry per imputer and
thread setting: ``--only`` reruns some and keeps the others' saved results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    FAILED, MIXED, Figure, LoadMonitor, Results, add_run_arguments, attempt, mean_or_failed, pick, run_mode,
    short_run, thread_variants, threads,
)

from skgenerative import GaussianMixtureDensity, GenerativeImputer  # noqa: E402

RATES = [0.2, 0.5]
#: missForest's published default (R missForest, missingpy.MissForest): trees, maximum iterations
PUBLISHED_MISSFOREST = (100, 10)
DISCRETE = ("categorical", "ordinal")


# ------------------------------------------------------------------------ data
def load(name: str, rows: int):
    """The table as a user sees it (category dtypes), its types, subsampled to ``rows``."""
    types = json.loads((MIXED / f"{name}.types.json").read_text())
    df = pd.read_csv(MIXED / f"{name}.csv")
    for column, kind in types.items():
        if kind == "categorical":
            df[column] = df[column].astype(str).where(df[column].notna()).astype("category")
        elif kind == "ordinal":
            levels = sorted(pd.unique(df[column].dropna()))
            df[column] = pd.Categorical(df[column], categories=levels, ordered=True)
        else:
            df[column] = df[column].astype(np.float64)
    if len(df) > rows:
        df = df.sample(rows, random_state=0).reset_index(drop=True)
    return df, types


def mcar(df: pd.DataFrame, rate: float, seed: int):
    """``df`` with a share ``rate`` of its observed cells set missing; the mask."""
    rng = np.random.RandomState(seed)
    mask = (rng.uniform(size=df.shape) < rate) & df.notna().to_numpy()
    holes = df.copy()
    for j, column in enumerate(df.columns):
        holes.loc[mask[:, j], column] = np.nan
    return holes, mask


def codes(df: pd.DataFrame) -> np.ndarray:
    """Numbers as they are, level codes for category columns, NaN where missing."""
    out = np.empty(df.shape)
    for j, column in enumerate(df.columns):
        series = df[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            c = series.cat.codes.to_numpy().astype(float)
            out[:, j] = np.where(c < 0, np.nan, c)
        else:
            out[:, j] = series.to_numpy(dtype=float, na_value=np.nan)
    return out


def from_codes(values: np.ndarray, like: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for j, column in enumerate(like.columns):
        dtype = like[column].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            c = np.clip(np.rint(values[:, j]), 0, len(dtype.categories) - 1).astype(int)
            out[column] = pd.Categorical.from_codes(c, dtype=dtype)
        else:
            out[column] = values[:, j]
    return pd.DataFrame(out, index=like.index)


def scores(imputed: pd.DataFrame, full: pd.DataFrame, mask: np.ndarray, types: dict) -> dict:
    nrmse, wrong, shifts = [], [], []
    for j, column in enumerate(full.columns):
        m = mask[:, j]
        if not m.any():
            continue
        kind = types[column]
        if kind in DISCRETE:
            truth = full[column].cat.codes.to_numpy()[m]
            guess = pd.Categorical(imputed[column], dtype=full[column].dtype).codes[m]
            if (guess < 0).any():
                raise ValueError(f"{column}: imputed cells left missing or off the levels")
            if kind == "categorical":
                wrong.append(guess != truth)
            else:
                shifts.append(np.abs(guess - truth) / (len(full[column].cat.categories) - 1))
        else:
            truth = full[column].to_numpy(dtype=float)
            guess = imputed[column].to_numpy(dtype=float)[m]
            nrmse.append(np.sqrt(np.mean((guess - truth[m]) ** 2)) / np.nanstd(truth))
    out = {"nrmse": float(np.mean(nrmse))}
    if wrong:
        out["error"] = float(np.concatenate(wrong).mean())
    if shifts:
        out["rank"] = float(np.concatenate(shifts).mean())
    return out


# -------------------------------------------------------------------- imputers
def mean_mode(holes: pd.DataFrame, types: dict, seed: int) -> pd.DataFrame:
    out = holes.copy()
    for column in holes.columns:
        series = holes[column]
        fill = series.mode().iloc[0] if types[column] in DISCRETE else series.mean()
        out[column] = series.fillna(fill)
    return out


def miss_forest(holes: pd.DataFrame, types: dict, seed: int, trees: int = 50, max_iter: int = 5):
    """missForest on scikit-learn's random forests (see the module docstring)."""
    X = codes(holes)
    missing = np.isnan(X)
    discrete = np.array([types[c] in DISCRETE for c in holes.columns])
    filled = codes(mean_mode(holes, types, seed))
    order = [j for j in np.argsort(missing.sum(0), kind="stable") if missing[:, j].any()]
    previous = (np.inf, np.inf)
    n_discrete_missing = max(int(missing[:, discrete].sum()), 1)
    for iteration in range(max_iter):
        old = filled.copy()
        for j in order:
            rows = missing[:, j]
            others = np.delete(np.arange(X.shape[1]), j)
            cls = RandomForestClassifier if discrete[j] else RandomForestRegressor
            forest = cls(n_estimators=trees, max_features="sqrt", n_jobs=1, random_state=seed + iteration)
            forest.fit(filled[~rows][:, others], X[~rows, j])
            filled[rows, j] = forest.predict(filled[rows][:, others])
        numeric = ~discrete
        change_numeric = (np.sum((filled[:, numeric] - old[:, numeric]) ** 2)
                          / max(np.sum(filled[:, numeric] ** 2), 1e-300)) if numeric.any() else -np.inf
        change_discrete = (np.sum(filled[:, discrete] != old[:, discrete]) / n_discrete_missing
                           if discrete.any() else -np.inf)
        if change_numeric > previous[0] and change_discrete > previous[1] or \
                (change_numeric > previous[0] and not discrete.any()) or \
                (change_discrete > previous[1] and not numeric.any()):
            filled = old  # the criterion grew: the imputation before is the answer
            break
        previous = (change_numeric, change_discrete)
    return from_codes(filled, holes)


def iterative_extra_trees(holes: pd.DataFrame, types: dict, seed: int, trees: int = 50, max_iter: int = 10):
    imputer = IterativeImputer(ExtraTreesRegressor(n_estimators=trees, random_state=seed, n_jobs=1),
                               random_state=seed, max_iter=max_iter)
    return from_codes(imputer.fit_transform(codes(holes)), holes)


def mice_forest(holes: pd.DataFrame, types: dict, seed: int, iterations: int = 5) -> pd.DataFrame:
    """miceforest without mean matching (see the module docstring)."""
    import miceforest

    kernel = miceforest.ImputationKernel(holes, mean_match_candidates=0, random_state=seed)
    kernel.mice(iterations, num_threads=1, verbose=False)
    return kernel.complete_data()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def generative(estimator=None):
    def run(holes, types, seed):
        imputer = GenerativeImputer(estimator)
        return imputer.fit_transform(holes)
    return run


def imputers(trees: int, mf_iter: int, ii_iter: int, neural: bool = False, mice_iter: int = 5) -> dict:
    """name -> (function(holes, types, seed), kind).

    With ``neural``, every other skgenerative estimator that accepts NaN and
    discrete columns joins with its defaults (skipped while it models numeric
    columns only); they take minutes per run, so they are off by default.
    """
    found = {
        "mean/mode": (mean_mode, "peer"),
        f"missForest ({trees} trees)": (lambda h, t, s: miss_forest(h, t, s, trees, mf_iter), "peer"),
        f"missForest ({PUBLISHED_MISSFOREST[0]} trees)": (
            lambda h, t, s: miss_forest(h, t, s, *PUBLISHED_MISSFOREST), "peer"),
        **({f"miceforest ({mice_iter} iterations)": (lambda h, t, s: mice_forest(h, t, s, mice_iter), "peer")}
           if _installed("miceforest") else {}),
        f"IterativeImputer(ExtraTrees {trees})": (
            lambda h, t, s: iterative_extra_trees(h, t, s, trees, ii_iter), "peer"),
        "GenerativeImputer (default)": (generative(), "ours"),
        "GenerativeImputer(GMM 2 full)": (generative(GaussianMixtureDensity(
            2, covariance_prior=2.0, n_init=2, random_state=0)), "ours"),
        "GenerativeImputer(GMM 16 diag)": (generative(GaussianMixtureDensity(
            16, covariance_type="diag", covariance_prior=2.0, tol=1e-2, random_state=0)), "ours"),
    }
    import skgenerative

    for name in () if not neural else ("VariationalAutoencoder", "FlowVAE", "BernoulliRBM"):
        cls = getattr(skgenerative, name, None)
        if cls is None or not cls._supports_missing or "categorical" not in cls._supported_column_types:
            continue
        found[f"GenerativeImputer({name})"] = (
            (lambda cls: lambda h, t, s: generative(cls(random_state=s))(h, t, s))(cls), "ours")
    return found


def _peer_versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("miceforest", "lightgbm", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ------------------------------------------------------------------------ main
METRICS = ("nrmse", "error", "rank")


def _cell(value):
    return f"{value:.3f}" if isinstance(value, float) else (value or "")


def combined(entries) -> str:
    md = []
    for setting in sorted({e["variant"]["threads"] for e in entries}):
        group = [e for e in entries if e["variant"]["threads"] == setting]
        kinds = {e["variant"]["imputer"]: e["settings"].get("kind") for e in group}
        prefixes = ("mean/mode", "missForest", "miceforest", "IterativeImputer", "GenerativeImputer (default)", "GenerativeImputer(GMM",
                    "GenerativeImputer(")
        group.sort(key=lambda e: (kinds[e["variant"]["imputer"]] != "peer", next(
            (i for i, p in enumerate(prefixes) if e["variant"]["imputer"].startswith(p)), len(prefixes)),
            e["variant"]["imputer"]))
        cells = list(dict.fromkeys(r["cell"] for e in group for r in e["rows"]))
        metrics = {c: [m for m in METRICS if any(m in r for e in group for r in e["rows"] if r["cell"] == c)]
                   for c in cells}
        values = {e["variant"]["imputer"]: {r["cell"]: r for r in e["rows"]} for e in group}
        settings = group[0]["settings"]
        header = ["imputer"] + [f"{c} {m}" for c in cells for m in metrics[c]] + ["fit+impute s (mean per run)", "run"]
        md += [f"### threads={setting}", "",
               f"Rows per table: {settings['rows']} (a fixed subsample). Seeds {settings['seeds']}. Peers' forests: "
               f"{settings['trees']} trees; missForest at most {settings['mf_iter']} iterations, IterativeImputer "
               f"max_iter={settings['ii_iter']}"
               + (f"; miceforest {settings['mice_iter']} iterations, no mean matching" if "mice_iter" in settings
                  else "") + (f" (versions {settings['versions']})" if "versions" in settings else "") + ". NRMSE: RMSE / column std, averaged over numeric columns; error: "
               "share of wrong levels over categorical cells; rank: mean |rank shift| / (levels - 1) over ordinal "
               "cells (Adult's education). Lower is better everywhere; \"failed\": a seed failed in that cell.", "",
               "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for e in group:
            name = e["variant"]["imputer"]
            row = [name] + [_cell(values[name].get(c, {}).get(m)) for c in cells for m in metrics[c]]
            times = [values[name][c]["seconds"] for c in cells if c in values[name]]
            md.append("| " + " | ".join(row + [f"{np.mean(times):.2f}", short_run(e)]) + " |")
        failures = [f"- {e['variant']['imputer']}: {f}" for e in group for f in e.get("failures", [])]
        if failures:
            md += ["", "Failures:", "", *failures]
        default = "GenerativeImputer (default)"
        for peer in [n for n in values if n.startswith(("missForest", "miceforest"))]:
            if default not in values:
                break
            md += ["", f"Default GenerativeImputer / {peer} (below 1: ours better):", ""]
            for c in cells:
                ours, theirs = values[default].get(c, {}), values[peer].get(c, {})
                ratios = [f"{m} {ours[m] / theirs[m]:.3f}" if theirs[m] else f"{m} {ours[m]:.3f} vs 0"
                          for m in metrics[c] if isinstance(ours.get(m), float) and isinstance(theirs.get(m), float)]
                speed = (f"; time {peer} / ours {theirs['seconds'] / ours['seconds']:.1f}x"
                         if "seconds" in ours and "seconds" in theirs else "")
                md.append(f"- {c}: " + (", ".join(ratios) or "no figures to compare") + speed)
        md.append("")
    return "\n".join(md)


FIGURES = {
    "imputers": Figure("Mixed-table imputation: Adult and Wine, MCAR over observed cells", combine=combined),
    "interleaved": Figure(
        "Speed, interleaved: missForest (30 trees) and the default in one process",
        columns=["cell", "missForest s", "default s", "missForest / default",
                 "missForest (100 trees) s", "missForest (100 trees) / default", "load"],
        note="Seed 0; missForest and the default alternate, ``--interleaved`` times each; medians of the "
             "fit + impute wall-clock times, and the 1-minute load average after the cell (the machine "
             "is shared: ratios, not seconds, are what survive the load). With ``--published``, "
             "missForest at its published default (100 trees, at most 10 iterations) joins the rotation."),
}


def interleaved(data: dict, repeats: int, trees: int, mf_iter: int, published: bool = False) -> list[dict]:
    """missForest (and, with ``published``, missForest at its published default) and the
    default alternating on seed 0's mask of each table and rate."""
    import os

    rows = []
    for table_name, (full, types) in data.items():
        for rate in RATES:
            holes, _ = mcar(full, rate, 0)
            runs = {"peer": lambda: miss_forest(holes, types, 0, trees, mf_iter),
                    "ours": lambda: generative()(holes, types, 0)}
            if published:
                runs["published"] = lambda: miss_forest(holes, types, 0, *PUBLISHED_MISSFOREST)
            times = {who: [] for who in runs}
            for _ in range(repeats):
                for who, run in runs.items():
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        run()
                    times[who].append(time.perf_counter() - start)
            median = {who: float(np.median(t)) for who, t in times.items()}
            row = {"cell": f"{table_name} {int(rate * 100)}%", "missForest s": median["peer"],
                   "default s": median["ours"], "missForest / default": median["peer"] / median["ours"]}
            if published:
                row[f"missForest ({PUBLISHED_MISSFOREST[0]} trees) s"] = median["published"]
                row[f"missForest ({PUBLISHED_MISSFOREST[0]} trees) / default"] = median["published"] / median["ours"]
            rows.append(row | {"load": os.getloadavg()[0]})
            print(f"  {rows[-1]}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "seed 0 only")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--rows", type=int, default=None, help="rows per table (subsample; default 3000)")
    parser.add_argument("--trees", type=int, default=30, help="trees per forest of the peers")
    parser.add_argument("--mf-iter", type=int, default=5, help="missForest's maximum iterations")
    parser.add_argument("--ii-iter", type=int, default=5, help="IterativeImputer's max_iter")
    parser.add_argument("--mice-iter", type=int, default=5, help="miceforest's iterations")
    parser.add_argument("--tables", nargs="+", default=["adult", "wine"])
    parser.add_argument("--only", nargs="+", help="imputer names to run (the others' saved results are kept)")
    parser.add_argument("--neural", action="store_true",
                        help="also the neural models that take discrete columns (minutes per run)")
    parser.add_argument("--threads", nargs="+", default=["default"], help="thread settings: default, 1, 2, ...")
    parser.add_argument("--interleaved", type=int, default=0,
                        help="only time missForest against the default, alternating, this many times each")
    parser.add_argument("--published", action="store_true",
                        help="with --interleaved: missForest at its published default (100 trees, 10 iterations) too")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    seeds = args.seeds if args.seeds is not None else pick(mode, [0, 1, 2], [0], [0])
    rows = args.rows or pick(mode, 3000, 3000, 200)
    trees = pick(mode, args.trees, args.trees, min(args.trees, 5))
    tables = [t for t in args.tables if (MIXED / f"{t}.csv").exists()]
    if not tables:
        print(f"skipped: no mixed tables in {MIXED}; set SKGENERATIVE_DATA (the folder holding mixed/) "
              "or SKGENERATIVE_MIXED.")
        return
    mice_iter = pick(mode, args.mice_iter, args.mice_iter, min(args.mice_iter, 1))
    if not _installed("miceforest"):
        print("note: miceforest is not installed (pip install skgenerative[benchmark]); its peer is skipped")
    found = imputers(trees, args.mf_iter, args.ii_iter, args.neural, mice_iter)
    unknown = set(args.only or ()) - set(found)
    if unknown:
        raise SystemExit(f"unknown imputers {sorted(unknown)}; known: {list(found)}")
    results = Results("mixed", args, title="Mixed-table imputation: GenerativeImputer vs missForest and others",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    data = {name: load(name, rows) for name in tables}
    if args.interleaved:
        for setting in thread_variants(args.threads):
            print(f"[interleaved] threads={setting}", flush=True)
            with threads(setting), LoadMonitor() as load_monitor:
                out = interleaved(data, args.interleaved, trees, args.mf_iter, args.published)
            results.record("interleaved", {"threads": setting}, {"rows": rows, "trees": trees, "seed": 0,
                                                                  "repeats": args.interleaved,
                                                                  "published": args.published}, out, load_monitor)
        return
    for setting in thread_variants(args.threads):
        for name, (run, kind) in found.items():
            if args.only and name not in args.only:
                continue
            print(f"[{name}] threads={setting}", flush=True)
            out, failures = [], []
            with threads(setting), LoadMonitor() as load_monitor:
                for table_name, (full, types) in data.items():
                    for rate in RATES:
                        cell = f"{table_name} {int(rate * 100)}%"
                        got, seconds = [], []
                        for seed in seeds:
                            holes, mask = mcar(full, rate, seed)
                            start = time.perf_counter()
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore")
                                value, error = attempt(lambda: scores(run(holes, types, seed), full, mask, types))
                            seconds.append(time.perf_counter() - start)
                            if error:
                                print(f"  {name} failed on {cell} (seed {seed}): {error}", flush=True)
                                failures.append(f"{cell}, seed {seed}: {error}")
                            got.append(value)
                        metrics = [m for m in METRICS if any(g and m in g for g in got)] or ["nrmse"]
                        row = {"cell": cell, "seconds": float(np.mean(seconds)), "per seed": got}
                        for m in metrics:
                            row[m] = mean_or_failed(g[m] if g else FAILED for g in got)
                        out.append(row)
                        print(f"  {cell}: " + " ".join(f"{m} {_cell(row[m])}" for m in metrics)
                              + f" ({row['seconds']:.1f}s)", flush=True)
            results.record("imputers", {"imputer": name, "threads": setting},
                           {"kind": kind, "seeds": seeds, "rows": rows, "tables": tables, "trees": trees,
                            "mf_iter": args.mf_iter, "ii_iter": args.ii_iter, "forest_jobs": 1,
                            "mice_iter": mice_iter, "versions": _peer_versions()},
                           out, load_monitor, failures)


if __name__ == "__main__":
    main()
