"""The VAE's table heads on the mixed Wine table: MIWAE imputation against the column mean / mode.

Wine (``../shared/data/mixed/wine.csv``, 6497 rows: 11 positive columns, a count and a
categorical one, typed by ``wine.types.json``). Cells are masked completely at random
(``--rates``, seeds ``--seeds``); the VAE is fitted on the masked table and imputes it.
Metrics on the masked cells: NRMSE of the numeric columns (RMSE over the column's
standard deviation, averaged over columns) and the share of misclassified categorical
cells. Peer in the same process: the column mean (numbers) and mode (levels).

    python benchmarks/bench_vae_tables.py                # 20%, seed 0
    python benchmarks/bench_vae_tables.py --rates 0.2 0.5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from skgenerative import VariationalAutoencoder  # noqa: E402

DATA = Path(os.environ.get("SKGENERATIVE_MIXED", Path(__file__).resolve().parents[2] / "shared" / "data" / "mixed"))


def load(name: str):
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
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=float, nargs="+", default=[0.2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-iter", type=int, default=100)
    args = parser.parse_args(argv)
    frame, types = load("wine")
    rows = []
    for rate in args.rates:
        for seed in args.seeds:
            masked = mask(frame, rate, seed)
            start = time.perf_counter()
            peer = metrics(frame, mean_mode(masked), masked)
            peer_seconds = time.perf_counter() - start
            model = VariationalAutoencoder(column_types=types, max_iter=args.max_iter, random_state=seed)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                filled = model.fit(masked).impute(masked)
            seconds = time.perf_counter() - start
            ours = metrics(frame, filled, masked)
            row = {"rate": rate, "seed": seed, "mean/mode": peer, "mean/mode_seconds": peer_seconds,
                   "VAE": ours, "VAE_seconds": seconds, "VAE_epochs": model.n_iter_}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"machine": machine(), "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
