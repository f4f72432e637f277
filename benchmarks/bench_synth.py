"""Synthetic tables (issue #22): skgenerative's samplers against SDV's, side by side in one run.

Data: ``../shared/data/mixed/{adult,wine}.csv`` with their ``.types.json`` (or the folder in
``SKGENERATIVE_MIXED``); skipped cleanly when absent. Rows with a missing cell are dropped
(SDV's CTGAN and TVAE take no missing values), then the complete rows are shuffled (seed)
and split 70 / 30 into a training part and a held-out part. Tables:

- ``adult``, ``wine``: the first ``--rows`` (3000) training rows, and as many held-out rows;
- ``adult_full``: every training row (about 21100) and every held-out row (about 9050).
  SDV's CTGAN and TVAE run on it only with ``--full-peers`` (on 2 cores CTGAN takes
  many minutes there); GaussianCopula and our models always run.

Every generator fits the training rows and samples as many rows. How each sees the table:

- ours get the table as a user holds it: categorical columns as pandas ``category``
  (strings), the ordinal one (Adult's education) as an ordered ``category`` of integers,
  numbers as read (``int64`` where the CSV has whole numbers, ``float64`` otherwise);
  ``sample`` at its defaults (``bounds="observed"``). Configurations named "declared"
  also pass ``column_types`` from ``NAME.types.json`` where the schema accepts it
  (``count`` for whole numbers >= 0, ``positive`` only where every value is above 0:
  HI-VAE's "positive" columns with zeros stay real);
- SDV gets plain columns, as it reads a CSV: strings for categorical and ordinal columns,
  numbers as read, with metadata that says which is which; its synthesizers at their
  defaults (``enforce_min_max_values`` and ``enforce_rounding`` on).

Metrics, every generator on the same rows (a "canonical" copy of each table: discrete
columns as categories of strings, numbers as float64):

- shapes, pairs: SDMetrics' ``QualityReport`` "Column Shapes" and "Column Pair Trends";
- detection AUC: mean 5-fold ROC AUC of ``HistGradientBoostingClassifier`` (categories
  native) telling the training rows from the synthetic ones; 0.5 = indistinguishable;
- TSTR: balanced accuracy on the held-out rows of ``HistGradientBoostingClassifier``
  trained on the synthetic rows to predict ``relationship`` (Adult, 6 levels) or
  ``quality`` (Wine, 3 to 9 as classes), against the same classifier trained on the real
  training rows ("real" in the table);
- log-lik: ``score`` of the held-out rows (mean log-density per row, nats, numbers in the
  table's units; an importance-weighted bound for the VAE); ours only;
- DCR share: for each synthetic row (at most 5000), its distance to the closest training
  row against its distance to the closest held-out row, over equal numbers of training
  and held-out rows; the share closer to a training row, ties counting half. 0.5 means
  the synthetic rows are no closer to the rows the model saw than to rows it did not.
  Distance (Gower's, with ranks): each number replaced by its mid-rank in the training
  column divided by the number of rows (so 0.1 = a tenth of the rows lie between two
  values, robust to heavy tails such as capital gains), absolute differences; a discrete
  column adds 1 when the levels differ; the sum divided by the number of columns (0 to 1);
- copies: share of synthetic rows equal in every column to some training row; "real" is
  the same share among the held-out rows (Adult has duplicate rows of its own);
- fit s, sample s: wall-clock seconds, every generator at the same torch thread count
  (``--threads``, default 1: on a shared 2-core machine two spinning threads per process
  stall, and SDV's TVAE took 269 s instead of about 15 s for 1000 rows); load average
  before each run in the JSON. The metrics' classifiers run at one OpenMP thread (they
  are not timed; on a loaded 2-core machine their spinning threads slow them 30-fold).

A run that raises is recorded as failed, with its error, and its cell reads "failed" in
the Markdown (never averaged away with the seeds that worked).

    python benchmarks/bench_synth.py                 # adult, wine, adult_full; seeds 0 1 2
    python benchmarks/bench_synth.py --quick         # 1000 training rows, seed 0, no adult_full
    python benchmarks/bench_synth.py --explore       # also the mixture configurations explored
    python benchmarks/bench_synth.py --tables adult_full --full-peers --seeds 0
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_results  # noqa: E402

import skgenerative  # noqa: E402
from skgenerative import GaussianMixtureDensity, VariationalAutoencoder  # noqa: E402

# ../shared/data/mixed beside the repository (also from a worktree one level deeper)
MIXED = Path(os.environ.get("SKGENERATIVE_MIXED", next(
    (p / "shared" / "data" / "mixed" for p in Path(__file__).resolve().parents[2:4]
     if (p / "shared" / "data" / "mixed").is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mixed",
)))
#: TSTR targets: the first is the table's "tstr"; others are reported as "tstr_<column>"
TARGETS = {"adult": ["relationship"], "wine": ["quality", "color"]}
DISCRETE = ("categorical", "ordinal")
DCR_ROWS = 5000  # synthetic rows whose distances are computed (a random subset beyond)


# ------------------------------------------------------------------------ data
class Table:
    """One benchmark table: training and held-out rows, as ours and SDV see them."""

    def __init__(self, name: str, source: str, types: dict, train: pd.DataFrame, test: pd.DataFrame):
        self.name, self.source, self.types = name, source, types
        self.train, self.test = train, test  # the user's view (category dtypes)
        self.targets = TARGETS[source]
        self.target = self.targets[0]

    @property
    def discrete(self) -> list:
        return [c for c, t in self.types.items() if t in DISCRETE]

    def declared_types(self) -> dict:
        """``types.json`` where the schema accepts it (see the module docstring)."""
        out = {}
        for column, kind in self.types.items():
            values = self.train[column]
            if kind == "count" and (values >= 0).all() and (values == np.round(values)).all():
                out[column] = "count"
            elif kind == "positive" and (values > 0).all():
                out[column] = "positive"
        return out

    def for_sdv(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Plain columns, as SDV reads a CSV: strings for discrete columns."""
        out = frame.copy()
        for column in self.discrete:
            out[column] = frame[column].astype(str).astype(object)
        return out

    def sdv_metadata_dict(self) -> dict:
        columns = {}
        for column in self.train.columns:
            # SDV 2 learns a number's representation (integer or float) from the data
            columns[column] = {"sdtype": "categorical" if column in self.discrete else "numerical"}
        return {"columns": columns}

    def canonical(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Any generator's rows on one footing: discrete columns as categories of the
        training rows' strings (a level never seen becomes missing), numbers float64."""
        out = {}
        for column in self.train.columns:
            if column in self.discrete:
                levels = sorted(self.train[column].astype(str).unique())
                out[column] = pd.Categorical(frame[column].astype(str), categories=levels)
            else:
                out[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64).to_numpy()
        return pd.DataFrame(out)


def load(name: str, rows: int, seed: int) -> Table:
    source = "adult" if name.startswith("adult") else name
    types = json.loads((MIXED / f"{source}.types.json").read_text())
    df = pd.read_csv(MIXED / f"{source}.csv").dropna().reset_index(drop=True)
    for column, kind in types.items():
        if kind == "categorical":
            df[column] = df[column].astype(str).astype("category")
        elif kind == "ordinal":
            levels = sorted(pd.unique(df[column]))
            df[column] = pd.Categorical(df[column], categories=levels, ordered=True)
    order = np.random.RandomState(seed).permutation(len(df))
    n_train = int(round(0.7 * len(df)))
    train, test = df.iloc[order[:n_train]], df.iloc[order[n_train:]]
    if not name.endswith("_full"):
        train, test = train.iloc[:rows], test.iloc[:rows]
    return Table(name, source, types, train.reset_index(drop=True), test.reset_index(drop=True))


# ------------------------------------------------------------------- generators
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Families:
    """Per-column families emulated in the data, to preview what the mixture's family blocks give.

    Not a generator of its own: a transform around one of ours (configurations named
    "families"). A ``positive`` column of ``types.json`` above 0 everywhere enters as
    ``log x`` (a log-normal inside each Gaussian component); one with zeros (Adult's
    capital gains, Wine's citric acid) as a hurdle: a bool column ``x > 0`` (its
    probability per component) and ``log x``, missing where ``x = 0`` (marginalised
    exactly by the mixture), so each component holds a point mass at 0 and a log-normal
    above it. Sampled rows go back through ``exp``, to 0 where the indicator is False,
    and to the column's training range and decimal places. Held-out log-likelihoods get
    the Jacobian ``- sum log x`` of the cells above 0, so they are in the table's units.
    """

    def __init__(self, table: Table):
        from skgenerative._schema import _decimal_places

        positive = [c for c, t in table.types.items() if t == "positive"]
        self.logged = [c for c in positive if (table.train[c] > 0).all()]
        self.hurdles = [c for c in positive if c not in self.logged and (table.train[c] >= 0).all()]
        self.dtypes = table.train.dtypes
        self.ranges = {c: (table.train[c].min(), table.train[c].max()) for c in self.logged + self.hurdles}
        self.decimals = {c: _decimal_places(table.train[c].to_numpy(dtype=float)) for c in self.ranges}

    def forward(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for c in self.logged:
            out[c] = np.log(frame[c].astype(float))
        for c in self.hurdles:
            above = frame[c].to_numpy(dtype=float) > 0
            with np.errstate(divide="ignore"):
                out[c] = np.where(above, np.log(frame[c].to_numpy(dtype=float)), np.nan)
            out[f"{c} > 0"] = above
        return out

    def inverse(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[[c for c in self.dtypes.index]].copy()
        for c in self.logged + self.hurdles:
            values = np.exp(frame[c].to_numpy(dtype=float))
            if c in self.hurdles:
                values = np.where(frame[f"{c} > 0"].to_numpy(dtype=bool), values, 0.0)
            lo, hi = self.ranges[c]
            values = np.clip(values, lo if c in self.logged else 0.0, hi)
            if self.decimals[c] is not None:
                values = np.round(values, self.decimals[c])
            out[c] = values.astype(self.dtypes[c]) if self.dtypes[c].kind != "i" else np.rint(values).astype(self.dtypes[c])
        return out

    def log_jacobian(self, frame: pd.DataFrame) -> float:
        """Mean over rows of ``- sum log x`` over the transformed cells above 0."""
        total = np.zeros(len(frame))
        for c in self.logged + self.hurdles:
            values = frame[c].to_numpy(dtype=float)
            with np.errstate(divide="ignore"):
                total -= np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), 0.0)
        return float(total.mean())


class Ours:
    """An skgenerative estimator as a synthesizer: fit the user's table, sample rows."""

    kind = "ours"

    def __init__(self, make, declared: bool = False, families: bool = False, **sample_params):
        self.make, self.declared, self.families, self.sample_params = make, declared, families, sample_params

    def fit(self, table: Table, seed: int):
        params = {"random_state": seed}
        if self.declared:
            params["column_types"] = table.declared_types()
        self.model = self.make(**params)
        self.transform = Families(table) if self.families else None
        train = self.transform.forward(table.train) if self.transform else table.train
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(train)

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        rows = self.model.sample(n, random_state=seed, **self.sample_params)
        return self.transform.inverse(rows) if self.transform else rows

    def log_likelihood(self, table: Table) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.transform is None:
                return float(self.model.score(table.test))
            return float(self.model.score(self.transform.forward(table.test))) + self.transform.log_jacobian(table.test)


class SDV:
    """One of SDV's single-table synthesizers at its defaults, given plain columns."""

    kind = "peer"

    def __init__(self, class_name: str):
        self.class_name = class_name

    def fit(self, table: Table, seed: int):
        from sdv.metadata import Metadata
        import sdv.single_table

        metadata = Metadata.load_from_dict({"tables": {table.source: table.sdv_metadata_dict()}})
        seed_everything(seed)
        self.model = getattr(sdv.single_table, self.class_name)(metadata)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(self._data(table.source, table.for_sdv(table.train)))

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        seed_everything(seed + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = self.model.sample(num_rows=n)
        return next(iter(rows.values())) if isinstance(rows, dict) else rows  # SDV 2: {table: rows}

    @staticmethod
    def _data(name: str, frame: pd.DataFrame):
        """SDV 2 takes ``{table name: DataFrame}``, SDV 1 the DataFrame."""
        import sdv

        return {name: frame} if int(sdv.__version__.split(".")[0]) >= 2 else frame

    def log_likelihood(self, table: Table):
        return None  # SDV's synthesizers give no likelihood


def _gmm(**fixed):
    return lambda **params: GaussianMixtureDensity(**{**fixed, **params})


def generators(explore: bool, quick: bool) -> dict:
    """name -> synthesizer; the defaults and peers always, the explored configurations with ``explore``."""
    found = {
        "SDV GaussianCopula": SDV("GaussianCopulaSynthesizer"),
        "SDV TVAE": SDV("TVAESynthesizer"),
        "SDV CTGAN": SDV("CTGANSynthesizer"),
        "GaussianMixtureDensity()": Ours(_gmm()),
        "GaussianMixtureDensity(16)": Ours(_gmm(n_components=16)),
        "VariationalAutoencoder()": Ours(VariationalAutoencoder),
    }
    if explore:
        found.update({
            "GMM(16) raw draws": Ours(_gmm(n_components=16), bounds=None),
            "GMM(16) declared": Ours(_gmm(n_components=16), declared=True),
            "GMM(32)": Ours(_gmm(n_components=32)),
            "GMM(64)": Ours(_gmm(n_components=64)),
            "GMM(32, cov_prior=2)": Ours(_gmm(n_components=32, covariance_prior=2.0)),
            "GMM(64, cov_prior=2)": Ours(_gmm(n_components=64, covariance_prior=2.0)),
            "GMM(32, diag)": Ours(_gmm(n_components=32, covariance_type="diag")),
            "GMM(64, diag)": Ours(_gmm(n_components=64, covariance_type="diag")),
            "GMM(128, diag)": Ours(_gmm(n_components=128, covariance_type="diag")),
            "GMM(32, tied)": Ours(_gmm(n_components=32, covariance_type="tied")),
            "GMM(32, level_prior=1)": Ours(_gmm(n_components=32, level_prior=1.0)),
            "GMM(32, level_prior=0.01)": Ours(_gmm(n_components=32, level_prior=0.01)),
            "GMM(32) declared": Ours(_gmm(n_components=32), declared=True),
            "GMM(16) families": Ours(_gmm(n_components=16), families=True),
            "GMM(32) families": Ours(_gmm(n_components=32), families=True),
            "GMM(64) families": Ours(_gmm(n_components=64), families=True),
            "GMM(32, cov_prior=2) families": Ours(_gmm(n_components=32, covariance_prior=2.0), families=True),
            "GMM(64, diag) families": Ours(_gmm(n_components=64, covariance_type="diag"), families=True),
            "GMM(128, diag) families": Ours(_gmm(n_components=128, covariance_type="diag"), families=True),
            "GMM(32, n_init=3)": Ours(_gmm(n_components=32, n_init=3)),
        })
    return found


# ---------------------------------------------------------------------- metrics
def quality(table: Table, real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    as_text = lambda f: f.astype({c: object for c in table.discrete})  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(as_text(real), as_text(synthetic), table.sdv_metadata_dict(), verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    return {"shapes": float(properties["Column Shapes"]), "pairs": float(properties["Column Pair Trends"])}


def _classifier(seed: int):
    return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)


def detection_auc(real: pd.DataFrame, synthetic: pd.DataFrame, seed: int) -> float:
    X = pd.concat([real, synthetic], ignore_index=True)
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(np.mean(cross_val_score(_classifier(seed), X, y, cv=folds, scoring="roc_auc")))


def tstr(table: Table, train: pd.DataFrame, test: pd.DataFrame, seed: int, target=None) -> float:
    """Balanced accuracy on ``test`` of a classifier of ``target`` (default: the table's) trained on ``train``."""
    target = target or table.target

    def labels(frame):
        values = frame[target]
        return values.astype(str).to_numpy() if target in table.discrete else \
            np.rint(values.to_numpy(dtype=float)).astype(int).astype(str)

    y_train = labels(train)
    if len(np.unique(y_train)) < 2:
        return float(1.0 / len(np.unique(labels(test))))  # one class: chance level
    model = _classifier(seed).fit(train.drop(columns=[target]), y_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predictions of classes absent from the test rows
        return float(balanced_accuracy_score(labels(test), model.predict(test.drop(columns=[target]))))


class Distances:
    """Gower's distance with ranks (module docstring), against a set of reference rows."""

    def __init__(self, table: Table, train: pd.DataFrame):
        self.numeric = [c for c in train.columns if c not in table.discrete]
        self.discrete = list(table.discrete)
        self.sorted = {c: np.sort(train[c].to_numpy()) for c in self.numeric}
        self.n_columns = len(train.columns)

    def encode(self, frame: pd.DataFrame):
        ranks = []
        for c in self.numeric:
            v, ref = frame[c].to_numpy(), self.sorted[c]
            ranks.append((np.searchsorted(ref, v, "left") + np.searchsorted(ref, v, "right")) / (2.0 * len(ref)))
        codes = [frame[c].cat.codes.to_numpy() for c in self.discrete]
        return (torch.as_tensor(np.column_stack(ranks), dtype=torch.float64),
                torch.as_tensor(np.column_stack(codes), dtype=torch.int64))

    def nearest(self, rows, reference) -> np.ndarray:
        """Distance of each row to its nearest reference row."""
        (u, c), (ur, cr) = rows, reference
        out = np.empty(len(u))
        for start in range(0, len(u), 256):
            stop = min(start + 256, len(u))
            d = torch.cdist(u[start:stop], ur, p=1)
            d += (c[start:stop, None, :] != cr[None, :, :]).sum(-1)
            out[start:stop] = (d.min(1).values / self.n_columns).numpy()
        return out


def dcr_share(table: Table, real: pd.DataFrame, held_out: pd.DataFrame, synthetic: pd.DataFrame, seed: int) -> float:
    rng = np.random.RandomState(seed)
    m = min(len(real), len(held_out))
    real = real.iloc[rng.choice(len(real), m, replace=False)] if len(real) > m else real
    held_out = held_out.iloc[rng.choice(len(held_out), m, replace=False)] if len(held_out) > m else held_out
    if len(synthetic) > DCR_ROWS:
        synthetic = synthetic.iloc[rng.choice(len(synthetic), DCR_ROWS, replace=False)]
    distances = Distances(table, real)
    rows = distances.encode(synthetic)
    to_train = distances.nearest(rows, distances.encode(real))
    to_held_out = distances.nearest(rows, distances.encode(held_out))
    closer = np.where(np.isclose(to_train, to_held_out, rtol=0, atol=1e-12), 0.5, (to_train < to_held_out).astype(float))
    return float(closer.mean())


def copy_rate(reference: pd.DataFrame, rows: pd.DataFrame) -> float:
    """Share of ``rows`` equal in every column to some row of ``reference``."""
    key = lambda f: pd.util.hash_pandas_object(f.astype(str), index=False)  # noqa: E731
    return float(np.isin(key(rows).to_numpy(), key(reference).to_numpy()).mean())


# ------------------------------------------------------------------------- runs
def metric_threads():
    """One OpenMP / BLAS thread for the metrics' classifiers (not timed): on a shared
    2-core machine scikit-learn's OpenMP threads spin and a 1-second fit takes a minute."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def run_one(table: Table, synthesizer, seed: int, real_canonical, test_canonical) -> dict:
    load_before = os.getloadavg()
    seed_everything(seed)
    start = time.perf_counter()
    synthesizer.fit(table, seed)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    synthetic = synthesizer.sample(len(table.train), seed)
    sample_s = time.perf_counter() - start
    synthetic_canonical = table.canonical(synthetic)
    with metric_threads():
        result = {
            **quality(table, real_canonical, synthetic_canonical),
            "detection_auc": detection_auc(real_canonical, synthetic_canonical, seed),
            "tstr": tstr(table, synthetic_canonical, test_canonical, seed),
            **{f"tstr_{t}": tstr(table, synthetic_canonical, test_canonical, seed, t) for t in table.targets[1:]},
            "dcr_share": dcr_share(table, real_canonical, test_canonical, synthetic_canonical, seed),
            "copies": copy_rate(real_canonical, synthetic_canonical),
        }
    result.update({
        "fit_s": fit_s,
        "sample_s": sample_s,
        "load_before": list(load_before),
        "torch_threads": torch.get_num_threads(),
    })
    loglik = synthesizer.log_likelihood(table)
    if loglik is not None:
        result["loglik"] = loglik
    if isinstance(synthesizer, Ours):
        params = synthesizer.model.get_params()
        result["params"] = {k: v for k, v in params.items() if k in ("n_components", "covariance_type",
                            "covariance_prior", "level_prior", "column_types")}
        result["usable"] = usable_rows(table, synthetic)
    return result


def usable_rows(table: Table, synthetic: pd.DataFrame) -> dict:
    """What a user would check first: dtypes, ranges, levels (ours only)."""
    out = {"dtypes_match": bool(synthetic.dtypes.equals(table.train.dtypes))}
    outside = 0
    for column in table.train.columns:
        if column in table.discrete:
            continue
        values, seen = synthetic[column].to_numpy(dtype=float), table.train[column]
        outside += int(((values < seen.min()) | (values > seen.max())).sum())
    out["numbers_outside_range"] = outside
    return out


def summarise(name: str, runs: list) -> dict:
    """Mean per metric over the seeds; ``failed`` when any seed failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return {"failed": f"{len(failed)} of {len(runs)} seed(s): {failed[0]['error'].splitlines()[-1][:200]}"}
    metrics = [k for k, v in runs[0].items() if isinstance(v, float)]
    return {k: float(np.mean([r[k] for r in runs])) for k in metrics} | (
        {f"{k}_std": float(np.std([r[k] for r in runs])) for k in metrics} if len(runs) > 1 else {})


COLUMNS = [("shapes", "shapes", 3), ("pairs", "pair trends", 3), ("detection_auc", "detection AUC", 3),
           ("tstr", "TSTR", 3), ("loglik", "log-lik", 2), ("dcr_share", "DCR share", 3),
           ("copies", "copies", 4), ("fit_s", "fit s", 2), ("sample_s", "sample s", 2)]


#: metrics shown with their standard deviation over the seeds
SPREAD = ("shapes", "pairs", "detection_auc", "tstr", "dcr_share")


def markdown(results: dict, real: dict, settings: dict) -> str:
    lines = [
        "# Synthetic tables: skgenerative against SDV (issue #22)",
        "",
        f"Date {settings['date']}, commit {settings['commit']}, seeds {settings['seeds']}. "
        f"Machine: {settings['machine']}; load average at start {settings['load_start']}, at end "
        f"{settings['load_end']} (a shared machine: times are indicative). Versions: {settings['versions']}.",
        "",
        "Metrics (see the script's docstring): SDMetrics QualityReport column shapes and pair trends "
        "(higher is better); detection AUC of a boosted classifier telling training rows from synthetic "
        "ones (0.5 best); TSTR balanced accuracy on held-out rows of a classifier trained on synthetic "
        "rows (\"real\": trained on the real training rows); log-lik of held-out rows (nats per row, ours "
        "only; a bound for the VAE); DCR share (0.5 = no memorisation); copies: share of synthetic rows "
        "equal to a training row (\"real\": held-out rows equal to a training row); wall-clock seconds. "
        "Means over the seeds (± their standard deviation); \"failed\" when any seed failed.",
    ]
    for table_name, by_generator in results.items():
        r = real[table_name]
        extra = [k for k in r if k.startswith("tstr_")]
        columns = COLUMNS[:4] + [(k, k.replace("tstr_", "TSTR "), 3) for k in extra] + COLUMNS[4:]
        lines += ["", f"## {table_name}: {r['n_train']} training rows, {r['n_test']} held-out rows; "
                  f"TSTR target {r['target']}", "",
                  f"Real rows: TSTR (train on real) {r['tstr']:.3f}"
                  + "".join(f", {k.replace('tstr_', 'TSTR ')} {r[k]:.3f}" for k in extra)
                  + f"; copies among held-out rows {r['copies']:.4f}.", ""]
        header = ["generator"] + [label for _, label, _ in columns] + ["fit+sample vs TVAE"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        tvae = by_generator.get("SDV TVAE", {})
        tvae_time = tvae.get("fit_s", np.nan) + tvae.get("sample_s", np.nan) if "failed" not in tvae else np.nan
        for name, summary in by_generator.items():
            if "failed" in summary:
                lines.append("| " + " | ".join([name] + ["failed"] * (len(header) - 1)) + " |")
                continue
            cells = [name]
            for key, _, digits in columns:
                value, spread = summary.get(key), summary.get(f"{key}_std")
                if value is None:
                    cells.append("-")
                elif spread is not None and key in SPREAD:
                    cells.append(f"{value:.{digits}f} ± {spread:.{digits}f}")
                else:
                    cells.append(f"{value:.{digits}f}")
            total = summary["fit_s"] + summary["sample_s"]
            cells.append(f"{tvae_time / total:.1f}x faster" if np.isfinite(tvae_time) and total > 0 else "-")
            lines.append("| " + " | ".join(cells) + " |")
        failures = [f"{n}: {s['failed']}" for n, s in by_generator.items() if "failed" in s]
        if failures:
            lines += ["", "Failed: " + "; ".join(failures)]
    return "\n".join(lines)


def versions() -> dict:
    out = {"python": platform.python_version(), "skgenerative": skgenerative.__version__}
    for package in ("numpy", "pandas", "sklearn", "torch", "sdv", "sdmetrics", "ctgan", "rdt", "copulas"):
        try:
            out[package] = __import__(package).__version__
        except Exception:  # noqa: BLE001 - a peer not installed is reported, not fatal
            out[package] = None
    return out


def commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1000 training rows, seed 0, adult and wine only")
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--rows", type=int, default=None, help="training rows of adult and wine (default 3000)")
    parser.add_argument("--tables", nargs="*", default=None, help="adult, wine, adult_full")
    parser.add_argument("--only", nargs="*", help="generator names to run")
    parser.add_argument("--explore", action="store_true", help="also the mixture configurations explored")
    parser.add_argument("--full-peers", action="store_true", help="run SDV's CTGAN and TVAE on adult_full too")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every generator, ours and SDV's (default 1; 0: torch's default)")
    parser.add_argument("--name", default=None, help="results file name (default synth[_quick][_explore])")
    parser.add_argument("--rewrite", metavar="NAME", help="only write results/NAME.md again from results/NAME.json")
    args = parser.parse_args()
    if args.rewrite:
        from _common import RESULTS

        saved = json.loads((RESULTS / f"{args.rewrite}.json").read_text())
        (RESULTS / f"{args.rewrite}.md").write_text(markdown(saved["results"], saved["real"], saved["settings"]) + "\n")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    rows = args.rows or (1000 if args.quick else 3000)
    tables = args.tables or (["adult", "wine"] if args.quick else ["adult", "wine", "adult_full"])
    tables = [t for t in tables if (MIXED / f"{t.split('_')[0]}.csv").exists()]
    if not tables:
        print(f"skipped: no mixed tables in {MIXED}")
        return
    try:
        import sdmetrics  # noqa: F401 - the quality metrics; SDV's synthesizers fail alone without sdv
    except ImportError:
        print("skipped: sdmetrics is not installed (pip install -e '.[benchmark]')")
        return
    found = generators(args.explore, args.quick)
    if args.only:
        found = {n: g for n, g in found.items() if n in args.only}
    settings = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(), "seeds": seeds, "rows": rows, "tables": tables, "quick": args.quick,
        "full_peers": args.full_peers, "threads": torch.get_num_threads(),
        "load_start": [round(v, 2) for v in os.getloadavg()], "versions": versions(), "machine": machine(),
        "split": "complete rows, shuffled by the seed, 70% training / 30% held out",
        "dcr_rows": DCR_ROWS,
    }
    results, real, runs = {}, {}, {}
    for table_name in tables:
        for seed in seeds:
            table = load(table_name, rows, seed)
            real_canonical, test_canonical = table.canonical(table.train), table.canonical(table.test)
            real.setdefault(table_name, {"n_train": len(table.train), "n_test": len(table.test),
                                         "target": table.target, "tstr": [], "copies": [],
                                         **{f"tstr_{t}": [] for t in table.targets[1:]}})
            with metric_threads():
                real[table_name]["tstr"].append(tstr(table, real_canonical, test_canonical, seed))
                for t in table.targets[1:]:
                    real[table_name][f"tstr_{t}"].append(tstr(table, real_canonical, test_canonical, seed, t))
                real[table_name]["copies"].append(copy_rate(real_canonical, test_canonical))
            for name, synthesizer in found.items():
                if table_name.endswith("_full") and name in ("SDV TVAE", "SDV CTGAN") and not args.full_peers:
                    continue
                try:
                    result = run_one(table, synthesizer, seed, real_canonical, test_canonical)
                except Exception:  # report, never hide, a failing generator
                    result = {"error": traceback.format_exc()}
                    print(f"  {name} failed on {table_name} (seed {seed}):\n{result['error']}", flush=True)
                runs.setdefault(table_name, {}).setdefault(name, []).append({"seed": seed, **result})
                if "error" not in result:
                    print(f"{table_name} seed {seed} {name}: " + ", ".join(
                        f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float)), flush=True)
        real[table_name] = {k: float(np.mean(v)) if isinstance(v, list) else v
                            for k, v in real[table_name].items()}
        results[table_name] = {name: summarise(name, r) for name, r in runs[table_name].items()}
    settings["load_end"] = [round(v, 2) for v in os.getloadavg()]
    md = markdown(results, real, settings)
    print("\n" + md)
    name = args.name or ("synth" + ("_quick" if args.quick else "") + ("_explore" if args.explore else ""))
    write_results(name, {"settings": settings, "real": real, "results": results, "runs": runs}, md)


if __name__ == "__main__":
    main()
