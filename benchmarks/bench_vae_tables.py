"""The VAE's table heads on the mixed Wine table: MIWAE imputation against the column mean / mode.

Wine (``../shared/data/mixed/wine.csv``, 6497 rows: 11 positive columns, a count and a
categorical one, typed by ``wine.types.json``; skipped cleanly when absent). Cells are
masked completely at random (``--rates``, seeds ``--seeds``); the VAE is fitted on the
masked table and imputes it. Metrics on the masked cells: NRMSE of the numeric columns
(RMSE over the column's standard deviation, averaged over columns) and the share of
misclassified categorical cells. Peer in the same process: the column mean (numbers)
and mode (levels). Times are fit + impute.

    python benchmarks/bench_vae_tables.py                # 20% and 50%, seeds 0-2
    python benchmarks/bench_vae_tables.py --quick        # 20%, seed 0, 30 epochs
    python benchmarks/bench_vae_tables.py --rates 0.2 --seeds 0

Results merge into ``results/vae_tables.json`` and ``vae_tables.md``.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    MIXED, Figure, LoadMonitor, Results, add_run_arguments, attempt, mean_or_failed, pick, run_mode,
)

from skgenerative import VariationalAutoencoder  # noqa: E402

DATA = MIXED
FIGURES = {
    "wine": Figure("MIWAE imputation of Wine (MCAR) against the column mean / mode",
                   ["rate", "imputer", "NRMSE", "categorical error", "fit + impute s", "epochs"],
                   "Means over the seeds in the settings; a cell with any failed seed says \"failed\". "
                   "Lower is better."),
}


def load_table(name: str):
    frame = pd.read_csv(DATA / f"{name}.csv")
    types = json.loads((DATA / f"{name}.types.json").read_text())
    for column, kind in types.items():
        if kind == "categorical":
            frame[column] = frame[column].astype("category")
    return frame, {c: k for c, k in types.items() if k in ("positive", "count")}


def mask(frame: pd.DataFrame, rate: float, seed: int) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    holes = rng.uniform(size=frame.shape) < rate
    out = frame.copy()
    for j, column in enumerate(frame.columns):
        if frame[column].dtype.kind in "iu":
            out[column] = out[column].astype("Int64")
        out.loc[holes[:, j], column] = None
    return out


def metrics(truth: pd.DataFrame, filled: pd.DataFrame, masked: pd.DataFrame) -> dict:
    nrmse, errors = [], []
    for column in truth.columns:
        hole = masked[column].isna().to_numpy()
        if not hole.any():
            continue
        if isinstance(truth[column].dtype, pd.CategoricalDtype):
            errors.append(np.mean(filled[column].to_numpy()[hole] != truth[column].to_numpy()[hole]))
        else:
            t = truth[column].to_numpy(float)
            f = filled[column].to_numpy(float)
            nrmse.append(np.sqrt(np.mean((f[hole] - t[hole]) ** 2)) / t.std())
    return {"nrmse": float(np.mean(nrmse)), "categorical_error": float(np.mean(errors))}


def mean_mode(masked: pd.DataFrame) -> pd.DataFrame:
    filled = masked.copy()
    for column in masked.columns:
        if isinstance(masked[column].dtype, pd.CategoricalDtype):
            filled[column] = masked[column].fillna(masked[column].mode()[0])
        else:
            filled[column] = masked[column].astype(float).fillna(masked[column].astype(float).mean())
    return filled


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "20%, seed 0, 30 epochs")
    parser.add_argument("--rates", type=float, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--max-iter", type=int, default=None)
    args = parser.parse_args(argv)
    mode = run_mode(args)
    if not (DATA / "wine.csv").exists():
        print(f"skipped: no wine.csv in {DATA}; set SKGENERATIVE_DATA (the folder holding mixed/) "
              "or SKGENERATIVE_MIXED.")
        return
    rates = args.rates or pick(mode, [0.2, 0.5], [0.2], [0.2])
    seeds = args.seeds or pick(mode, [0, 1, 2], [0], [0])
    max_iter = args.max_iter or pick(mode, 100, 30, 2)
    frame, types = load_table("wine")
    if mode == "smoke":
        frame = frame.sample(300, random_state=0).reset_index(drop=True)
    results = Results("vae_tables", args, title="VariationalAutoencoder on a mixed table: imputation of Wine",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    rows, failures = [], []
    with LoadMonitor() as load:
        for rate in rates:
            got = {"mean/mode": [], "VAE": []}
            for seed in seeds:
                masked = mask(frame, rate, seed)
                start = time.perf_counter()
                peer = metrics(frame, mean_mode(masked), masked)
                got["mean/mode"].append((peer, time.perf_counter() - start, None))
                model = VariationalAutoencoder(column_types=types, max_iter=max_iter, random_state=seed)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    filled, error = attempt(lambda: model.fit(masked).impute(masked))
                seconds = time.perf_counter() - start
                if error:
                    failures.append(f"VAE, rate {rate}, seed {seed}: {error}")
                    got["VAE"].append((None, seconds, None))
                else:
                    got["VAE"].append((metrics(frame, filled, masked), seconds, model.n_iter_))
                print(f"  rate {rate} seed {seed}: mean/mode {peer}, VAE {got['VAE'][-1][0]}", flush=True)
            for name, runs in got.items():
                rows.append({
                    "rate": rate, "imputer": name,
                    "NRMSE": mean_or_failed(r[0]["nrmse"] if r[0] else None for r in runs),
                    "categorical error": mean_or_failed(r[0]["categorical_error"] if r[0] else None for r in runs),
                    "fit + impute s": float(np.mean([r[1] for r in runs])),
                    "epochs": None if name == "mean/mode" else [r[2] for r in runs],
                    "per seed": [r[0] for r in runs],
                })
    results.record("wine", {}, {"rows": len(frame), "rates": rates, "seeds": seeds, "max_iter": max_iter,
                                "column_types": types, "torch_threads": torch.get_num_threads()},
                   rows, load, failures)


if __name__ == "__main__":
    main()
