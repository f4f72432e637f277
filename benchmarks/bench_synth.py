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
  ``sample`` at its defaults (``bounds="observed"``);
- SDV gets plain columns, as it reads a CSV: strings for categorical and ordinal columns,
  numbers as read, with metadata that says which is which; its synthesizers at their
  defaults (``enforce_min_max_values`` and ``enforce_rounding`` on). The smoke run
  gives TVAE and CTGAN one epoch (it checks the code, not the figures) and runs
  none of SDV when it is not installed.

Metrics, every generator on the same rows (a "canonical" copy of each table: discrete
columns as categories of strings, numbers as float64):

- shapes, pairs: SDMetrics' ``QualityReport`` "Column Shapes" and "Column Pair Trends";
- pair trends, real bins: "Column Pair Trends" with the synthetic rows' numbers binned on
  the real rows' bin edges (SDMetrics 0.32 bins each table on its own min and max, so
  synthetic extremes unlike the real ones move every bin of a number-category pair);
- detection AUC: mean 5-fold ROC AUC of ``HistGradientBoostingClassifier`` (categories
  native) telling the training rows from the synthetic ones; 0.5 = indistinguishable;
- TSTR: balanced accuracy on the held-out rows of ``HistGradientBoostingClassifier``
  trained on the synthetic rows to predict ``relationship`` (Adult, 6 levels) or
  ``quality`` (Wine, 3 to 9 as classes; also ``color``), against the same classifier
  trained on the real training rows (the "real rows" line);
- TSTR, unseen rows: the same classifier's balanced accuracy on the held-out rows whose
  features (every column but the target) equal no training row's. Wine's source holds
  many duplicate rows: 17.5 to 18.7% of its held-out rows repeat a training row, and the
  classifier trained on the real rows answers those by memory (all of them right), which
  a generator that copies no row cannot pass on (and must not: the privacy target
  forbids copies). On the unseen rows every generator and the real line are compared on
  rows that neither has seen; the plain TSTR column stays;
- log-lik: ``score`` of the held-out rows (mean log-density per row, nats, numbers in the
  table's units; an importance-weighted bound for the VAE); ours only;
- DCR share: for each synthetic row (at most 5000), its distance to the closest training
  row against its distance to the closest held-out row, over equal numbers of training
  and held-out rows; the share closer to a training row, ties counting half. 0.5 means
  the synthetic rows are no closer to the rows the model saw than to rows it did not.
  Distance (Gower's, with ranks): each number replaced by its mid-rank in the training
  column divided by the number of rows, absolute differences; a discrete column adds 1
  when the levels differ; the sum divided by the number of columns (0 to 1);
- copies: share of synthetic rows equal in every column to some training row; on the
  "real rows" line the same share among the held-out rows (Adult has duplicates of its own);
  seen (real line only): share of held-out rows whose features equal a training row's
  (the complement of the unseen rows above);
- on the "real rows" line, shapes, both pair trends and detection AUC are the held-out
  rows' scored as if they were synthetic: what rows of the real distribution get (on
  Wine SDMetrics' own-bin pair trends give held-out rows 0.80 to 0.87: the ceiling);
- fit s, sample s: wall-clock seconds, every generator at the same thread setting
  (``--threads``, default 1: torch and the BLAS at one thread; on a shared 2-core machine
  two spinning threads per process stall); the load average of each entry is in the JSON
  and in the table. The metrics' classifiers run at one OpenMP thread (not timed).

Ours: ``n_components="auto"`` on a DataFrame maps the real columns to normal scores
(``marginals="auto"``) from commit ff3a753 on; the explored ``'auto'`` entries run
before it (the "run" column) read the numbers as they are (``marginals="gaussian"``).
From commit 2cbf261 on, a grid column of at most 20 values (Wine's quality) is spread
over its cells in the order of the rest of the row (``skgenerative._marginals``); the
explored entry "every column spread by the hash" is the call before it.

A seed that raises is recorded as failed, with its error, and its cells read "failed"
(never averaged away with the seeds that worked).

    python benchmarks/bench_synth.py                 # adult, wine (3 seeds), adult_full (seed 0)
    python benchmarks/bench_synth.py --quick         # 1000 training rows, seed 0, no adult_full
    python benchmarks/bench_synth.py --explore       # the mixture configurations explored (own figure)
    python benchmarks/bench_synth.py --tables adult_full --full-peers --seeds 0
    python benchmarks/bench_synth.py --only "SDV TVAE"   # rerun some; the others' entries are kept

Results merge into ``results/synth.json`` and ``synth.md``: one entry per table and
generator (the "real rows" line is an entry too).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    FAILED, MIXED, Figure, LoadMonitor, Results, add_run_arguments, attempt, mean_or_failed, pick, run_mode,
    short_run, threads,
)

from skgenerative import (  # noqa: E402
    GaussianMixtureDensity, VariationalAutoencoder, _level_groups, _marginals, mixture,
)

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


class Ours:
    """An skgenerative estimator as a synthesizer: fit the user's table, sample rows."""

    kind = "ours"

    def __init__(self, make, declared: bool = False, search: dict | None = None, **sample_params):
        self.make, self.declared, self.sample_params = make, declared, sample_params
        # exploration only: constants of n_components="auto" (mixture.AUTO_*), of
        # level_groups="auto" (_level_groups.AUTO_GROUP_*) and of the marginals
        # (mixture.MARGINAL_*, _marginals.ORDER_*)
        self.search = search or {}

    def fit(self, table: Table, seed: int):
        params = {"random_state": seed, **({"device": DEVICE} if DEVICE else {})}
        if self.declared:
            params["column_types"] = table.declared_types()
        self._fit_model(table.train, params)

    def _fit_model(self, frame: pd.DataFrame, params: dict) -> None:
        """``make(**params).fit(frame)`` with the search's constants set for the fit only."""
        self.model = self.make(**params)
        module = lambda name: (_level_groups if name.startswith("AUTO_GROUP_") else  # noqa: E731
                               _marginals if name.startswith("ORDER_") else mixture)
        before = {name: getattr(module(name), name) for name in self.search}
        try:
            for name, value in self.search.items():
                setattr(module(name), name, value)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model.fit(frame)
        finally:
            for name, value in before.items():
                setattr(module(name), name, value)

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        return self.model.sample(n, random_state=seed, **self.sample_params)

    def log_likelihood(self, table: Table) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.model.score(table.test))

    def settings(self) -> dict:
        params = self.model.get_params()
        out = {k: v for k, v in params.items() if k in (
            "n_components", "covariance_type", "covariance_prior", "n_init", "level_prior", "level_groups",
            "column_types", "marginals")}
        if hasattr(self.model, "n_components_"):
            out["n_components_"] = int(self.model.n_components_)
        if getattr(self.model, "level_groups_", None):
            out["level_groups_"] = [" x ".join(g) for g in self.model.level_groups_]
        return {**out, **self.search, **{f"sample_{k}": v for k, v in self.sample_params.items()}}


class OursJoined(Ours):
    """Exploration of within-component dependence between levels: the discrete columns
    of each group joined by the user into one categorical column (its levels the
    combinations seen at fit) before ``fit``, and split back after ``sample``. Inside a
    component the group's columns are then one joint table instead of independent ones.
    Not a feature of the package; the figure sizes what one would gain."""

    def __init__(self, make, groups: list, search: dict | None = None, **sample_params):
        super().__init__(make, search=search, **sample_params)
        self.groups = [tuple(g) for g in groups]

    def fit(self, table: Table, seed: int):
        frame, self.dtypes, self.order = table.train.copy(), table.train.dtypes, list(table.train.columns)
        for group in self.groups:
            frame["|".join(group)] = frame[list(group)].astype(str).agg("\x1f".join, axis=1).astype("category")
            frame = frame.drop(columns=list(group))
        self._fit_model(frame, {"random_state": seed})

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        rows = self.model.sample(n, random_state=seed, **self.sample_params)
        for group in self.groups:
            parts = rows.pop("|".join(group)).astype(str).str.split("\x1f", expand=True)
            for i, column in enumerate(group):
                rows[column] = parts[i].astype(self.dtypes[column]) if isinstance(
                    self.dtypes[column], pd.CategoricalDtype) else parts[i]
        return rows[self.order]

    def log_likelihood(self, table: Table):
        return None  # the joined model scores joined rows: not comparable

    def settings(self) -> dict:
        return {**super().settings(), "joined": ["|".join(g) for g in self.groups]}


class SDV:
    """One of SDV's single-table synthesizers at its defaults, given plain columns."""

    kind = "peer"

    def __init__(self, class_name: str, **params):
        self.class_name, self.params = class_name, params

    def fit(self, table: Table, seed: int):
        from sdv.metadata import Metadata
        import sdv.single_table

        metadata = Metadata.load_from_dict({"tables": {table.source: table.sdv_metadata_dict()}})
        seed_everything(seed)
        self.model = getattr(sdv.single_table, self.class_name)(metadata, **self.params)
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

    def settings(self) -> dict:
        return {"sdv": self.class_name, **self.params}


def _gmm(**fixed):
    return lambda **params: GaussianMixtureDensity(**{**fixed, **params})


def _vae(**fixed):
    return lambda **params: VariationalAutoencoder(**{**fixed, **params})


#: ``--device``: the device of our estimators (None: theirs, "auto": a GPU where there is one)
DEVICE = None
#: the call the user guide recommends for synthetic tables
RECOMMENDED = "GaussianMixtureDensity(n_components='auto', level_groups='auto')"
#: the recommended call before level groups (independent level tables per component; issue #22)
UNGROUPED = "GaussianMixtureDensity(n_components='auto')"


def generators(mode: str) -> dict:
    """name -> synthesizer: the peers (SDV, when installed) and ours at their defaults."""
    found = {}
    if importlib.util.find_spec("sdv") is not None:
        short = {"epochs": 1} if mode == "smoke" else {}
        found.update({
            "SDV GaussianCopula": SDV("GaussianCopulaSynthesizer"),
            "SDV TVAE": SDV("TVAESynthesizer", **short),
            "SDV CTGAN": SDV("CTGANSynthesizer", **short),
        })
    found.update({
        RECOMMENDED: Ours(_gmm(n_components="auto", level_groups="auto")),
        UNGROUPED: Ours(_gmm(n_components="auto")),
        "GaussianMixtureDensity()": Ours(_gmm()),
        "GaussianMixtureDensity(16)": Ours(_gmm(n_components=16)),
        "GaussianMixtureDensity(64)": Ours(_gmm(n_components=64)),
        "VariationalAutoencoder()": Ours(_vae(**({"max_iter": 3} if mode == "smoke" else {}))),
    })
    return found


def explored(mode: str) -> dict:
    """The mixture configurations explored for the recommended call (``--explore``)."""
    found = {}
    for k in ("auto", 16, 32, 64):
        for prior in (0.0, 2.0, 10.0):
            name = f"GMM({k!r}" + (f", covariance_prior={prior:g}" if prior else "") + ")"
            found[name] = Ours(_gmm(n_components=k, covariance_prior=prior))
    found["GMM('auto', n_init=3)"] = Ours(_gmm(n_components="auto", n_init=3))
    found["GMM('auto', covariance_prior=2, n_init=3)"] = Ours(_gmm(n_components="auto", covariance_prior=2.0, n_init=3))
    found["GMM('auto', tol=1e-2)"] = Ours(_gmm(n_components="auto", tol=1e-2))
    found["GMM('auto', level_prior=1)"] = Ours(_gmm(n_components="auto", level_prior=1.0))
    for k in (64, 128):
        found[f"GMM({k}, n_init=3)"] = Ours(_gmm(n_components=k, n_init=3))
        found[f"GMM({k}, level_prior=0.01)"] = Ours(_gmm(n_components=k, level_prior=0.01))
        found[f"GMM({k}, level_prior=1)"] = Ours(_gmm(n_components=k, level_prior=1.0))
        found[f"GMM({k}, diag)"] = Ours(_gmm(n_components=k, covariance_type="diag"))
        found[f"GMM({k}, tol=1e-2)"] = Ours(_gmm(n_components=k, tol=1e-2))
    found["GMM(128)"] = Ours(_gmm(n_components=128))
    found["GMM(256, diag)"] = Ours(_gmm(n_components=256, covariance_type="diag"))
    # the real columns' marginals (issue #22, "marginals"): the Gaussian block on the numbers
    # as they are (the default before), normal scores with fewer knots, without dequantisation
    found["GMM('auto', marginals='gaussian')"] = Ours(_gmm(n_components="auto", marginals="gaussian"))
    for knots in (64, 256):
        found[f"GMM('auto'), {knots} knots"] = Ours(_gmm(n_components="auto"), search={"MARGINAL_KNOTS": knots})
    found["GMM('auto'), no dequantisation"] = Ours(_gmm(n_components="auto"), search={"MARGINAL_DEQUANTISE": False})
    found["GMM('auto', diag)"] = Ours(_gmm(n_components="auto", covariance_type="diag"))
    for k in (32, 64, 128):
        found[f"GMM({k}, marginals='normal_scores')"] = Ours(_gmm(n_components=k, marginals="normal_scores"))
    found["GMM('auto', marginals='gaussian') raw draws"] = Ours(_gmm(n_components="auto", marginals="gaussian"),
                                                               bounds=None)
    found["GMM('auto') raw draws"] = Ours(_gmm(n_components="auto"), bounds=None)
    # levels that depend on each other inside a component (Adult only: the others' columns differ)
    found["GMM('auto'), marital_status x relationship x sex joined"] = OursJoined(
        _gmm(n_components="auto"), [("marital_status", "relationship", "sex")])
    # the search's rule (default: the largest size within 1 paired standard error of the
    # best, at most 128 components): the best size alone, 2 errors, at most 256
    found["GMM('auto', 0 SE)"] = Ours(_gmm(n_components="auto"), search={"AUTO_STANDARD_ERRORS": 0.0})
    found["GMM('auto', 2 SE)"] = Ours(_gmm(n_components="auto"), search={"AUTO_STANDARD_ERRORS": 2.0})
    found["GMM('auto', at most 256)"] = Ours(_gmm(n_components="auto"), search={"AUTO_MAX_COMPONENTS": 256})
    found["GMM('auto', at most 256), marital_status x relationship x sex joined"] = OursJoined(
        _gmm(n_components="auto"), [("marital_status", "relationship", "sex")],
        search={"AUTO_MAX_COMPONENTS": 256})
    # level groups (the package's joint tables): the auto rule's threshold, larger groups, a smaller prior
    grouped = _gmm(n_components="auto", level_groups="auto")
    found["GMM('auto', level_groups='auto', U >= 0.1)"] = Ours(grouped, search={"AUTO_GROUP_DEPENDENCE": 0.1})
    found["GMM('auto', level_groups='auto', U >= 0.15)"] = Ours(grouped, search={"AUTO_GROUP_DEPENDENCE": 0.15})
    found["GMM('auto', level_groups='auto', level_prior=0.03)"] = Ours(
        _gmm(n_components="auto", level_groups="auto", level_prior=0.03))
    found["GMM('auto'), groups marital_status x relationship x sex x occupation"] = Ours(
        _gmm(n_components="auto", level_groups=[["marital_status", "relationship", "sex", "occupation"]]))
    # Wine's TSTR on unseen rows (issue #22): quality (7 values) as a category inside the
    # components, not spread over its unit cells, and more components on normal scores
    found["GMM('auto', level_groups='auto'), quality categorical"] = Ours(
        _gmm(n_components="auto", level_groups="auto", column_types={"quality": "categorical"}))
    found["GMM('auto', level_groups='auto'), columns of at most 20 values not spread"] = Ours(
        grouped, search={"MARGINAL_UNSPREAD_LEVELS": 20})
    found["GMM(32, level_groups='auto', marginals='normal_scores')"] = Ours(
        _gmm(n_components=32, level_groups="auto", marginals="normal_scores"))
    # the recommended call before columns of few values were spread in the order of the row
    found["GMM('auto', level_groups='auto'), every column spread by the hash"] = Ours(
        grouped, search={"MARGINAL_ORDERED_LEVELS": 0})
    found["GMM('auto', level_groups='auto'), few values in the order of the prediction alone"] = Ours(
        grouped, search={"ORDER_NOISE": 0.0})
    return found


# ---------------------------------------------------------------------- metrics
def quality(table: Table, real: pd.DataFrame, synthetic: pd.DataFrame) -> dict:
    """SDMetrics' shapes and pair trends, and the pair trends on the real rows' bins."""
    from sdmetrics.reports.single_table import QualityReport

    as_text = lambda f: f.astype({c: object for c in table.discrete})  # noqa: E731
    out = {}
    for key, patch in (("pairs", False), ("pairs_real_bins", True)):
        report = QualityReport()
        with warnings.catch_warnings(), real_bins(patch):
            warnings.simplefilter("ignore")
            report.generate(as_text(real), as_text(synthetic), table.sdv_metadata_dict(), verbose=False)
        properties = report.get_properties().set_index("Property")["Score"]
        out[key] = float(properties["Column Pair Trends"])
        out.setdefault("shapes", float(properties["Column Shapes"]))
    return out


@contextlib.contextmanager
def real_bins(active: bool):
    """SDMetrics 0.32's "Column Pair Trends" bins each number against a category on each
    table's own ``histogram_bin_edges`` (10 bins from its min to its max), so a synthetic
    table whose extremes differ from the real ones is binned on other edges. Active: the
    synthetic rows are binned on the real rows' edges (the real table is processed
    first), as SDMetrics' own ``ContingencySimilarity`` metric does."""
    from sdmetrics.reports.single_table._properties import column_pair_trends as module

    if not active:
        yield
        return
    original = module.ColumnPairTrends._discretize_column
    edges = {}

    def discretize(self, column_name, data, bin_edges=None):
        result, used = original(self, column_name, data, edges.get(column_name, bin_edges))
        edges.setdefault(column_name, used)
        return result, used

    module.ColumnPairTrends._discretize_column = discretize
    try:
        yield
    finally:
        module.ColumnPairTrends._discretize_column = original


def _classifier(seed: int):
    return HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)


def detection_auc(real: pd.DataFrame, synthetic: pd.DataFrame, seed: int) -> float:
    X = pd.concat([real, synthetic], ignore_index=True)
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(np.mean(cross_val_score(_classifier(seed), X, y, cv=folds, scoring="roc_auc")))


def tstr(table: Table, train: pd.DataFrame, test: pd.DataFrame, seed: int, target=None, unseen=None):
    """Balanced accuracy on ``test`` of a classifier of ``target`` (default: the table's)
    trained on ``train``; given ``unseen`` (a mask of ``test``'s rows), the pair (on every
    row, on the unseen rows only) from the same classifier."""
    target = target or table.target

    def labels(frame):
        values = frame[target]
        return values.astype(str).to_numpy() if target in table.discrete else \
            np.rint(values.to_numpy(dtype=float)).astype(int).astype(str)

    y_train, y_test = labels(train), labels(test)
    if len(np.unique(y_train)) < 2:  # one class: chance level
        chance = lambda y: float(1.0 / len(np.unique(y)))  # noqa: E731
        return chance(y_test) if unseen is None else (chance(y_test), chance(y_test[unseen]))
    model = _classifier(seed).fit(train.drop(columns=[target]), y_train)
    predicted = model.predict(test.drop(columns=[target]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predictions of classes absent from the test rows
        score = float(balanced_accuracy_score(y_test, predicted))
        return score if unseen is None else (score, float(balanced_accuracy_score(y_test[unseen], predicted[unseen])))


def tstr_figures(table: Table, train: pd.DataFrame, real: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    """TSTR of the table's target on every held-out row and on the unseen ones (the rows
    whose features equal no real training row's: see the module docstring), and TSTR of
    the other targets on every row; a classifier trained on ``train``."""
    both = tstr(table, train, test, seed, unseen=unseen_rows(real, test, table.target))
    return {"tstr": both[0], "tstr_unseen": both[1],
            **{f"tstr_{t}": tstr(table, train, test, seed, t) for t in table.targets[1:]}}


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


def _in_reference(reference: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Per row of ``rows``: whether some row of ``reference`` equals it in every column."""
    key = lambda f: pd.util.hash_pandas_object(f.astype(str), index=False).to_numpy()  # noqa: E731
    return np.isin(key(rows), key(reference))


def copy_rate(reference: pd.DataFrame, rows: pd.DataFrame) -> float:
    """Share of ``rows`` equal in every column to some row of ``reference``."""
    return float(_in_reference(reference, rows).mean())


def unseen_rows(real: pd.DataFrame, held_out: pd.DataFrame, target: str) -> np.ndarray:
    """Mask of the held-out rows whose features (every column but ``target``) equal no
    real training row's: the rows a classifier cannot answer by memory."""
    return ~_in_reference(real.drop(columns=[target]), held_out.drop(columns=[target]))


# ------------------------------------------------------------------------- runs
def metric_threads():
    """One OpenMP / BLAS thread for the metrics' classifiers (not timed): on a shared
    2-core machine scikit-learn's OpenMP threads spin and a 1-second fit takes a minute."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def run_one(table: Table, synthesizer, seed: int, real_canonical, test_canonical) -> dict:
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
            "seed": seed,
            **quality(table, real_canonical, synthetic_canonical),
            "detection_auc": detection_auc(real_canonical, synthetic_canonical, seed),
            **tstr_figures(table, synthetic_canonical, real_canonical, test_canonical, seed),
            "dcr_share": dcr_share(table, real_canonical, test_canonical, synthetic_canonical, seed),
            "copies": copy_rate(real_canonical, synthetic_canonical),
        }
    result.update({"fit_s": fit_s, "sample_s": sample_s})
    loglik = synthesizer.log_likelihood(table)
    if loglik is not None:
        result["loglik"] = loglik
    result["model"] = synthesizer.settings()
    if isinstance(synthesizer, Ours):
        result["usable"] = usable_rows(table, synthetic)
    return result


def real_rows(table: Table, seed: int, real_canonical, test_canonical) -> dict:
    """The classifier trained on the real training rows, copies among held-out rows, and
    the held-out rows scored as if they were synthetic (shapes, pair trends, detection):
    what rows of the real distribution get, the ceiling of a generator."""
    seen = ~unseen_rows(real_canonical, test_canonical, table.target)
    with metric_threads():
        return {"seed": seed, **tstr_figures(table, real_canonical, real_canonical, test_canonical, seed),
                **quality(table, real_canonical, test_canonical),
                "detection_auc": detection_auc(real_canonical, test_canonical, seed),
                "copies": copy_rate(real_canonical, test_canonical), "seen": float(seen.mean()),
                "n_train": len(table.train), "n_test": len(table.test)}


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


# -------------------------------------------------------------------- report
METRICS = [("shapes", "shapes"), ("pairs", "pair trends"), ("pairs_real_bins", "pair trends, real bins"),
           ("detection_auc", "detection AUC"), ("tstr", "TSTR"), ("tstr_unseen", "TSTR, unseen rows")]
AFTER = [("loglik", "log-lik"), ("dcr_share", "DCR share"), ("copies", "copies"), ("seen", "seen"), ("fit_s", "fit s"),
         ("sample_s", "sample s")]
REAL = "real rows"


def summary(entry: dict) -> dict:
    """Mean per metric over the seeds; "failed" when any seed failed."""
    rows = entry["rows"]
    keys = list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k, v in r.items()
                              if isinstance(v, (int, float)) and k not in ("seed", "n_train", "n_test")))
    return {k: mean_or_failed(r.get(k, FAILED) if "error" not in r else FAILED for r in rows) for k in keys}


def _cell(key: str, value) -> str:
    if not isinstance(value, float):
        return "" if value is None else str(value)
    return f"{value:.{4 if key in ('copies', 'seen') else 2 if key in ('loglik', 'fit_s', 'sample_s') else 3}f}"


def combined(entries: list) -> str:
    md = []
    order = {name: i for i, name in enumerate(["adult", "wine", "adult_full"])}
    for table_name in sorted({e["variant"]["table"] for e in entries}, key=lambda t: order.get(t, 99)):
        group = [e for e in entries if e["variant"]["table"] == table_name]
        group.sort(key=lambda e: ({"real": 0, "peer": 1}.get(e["settings"].get("kind"), 2),
                                  e["variant"]["generator"] != e["settings"].get("recommended")))
        real = next((e for e in group if e["variant"]["generator"] == REAL), None)
        extra = sorted({k for e in group for r in e["rows"] for k in r if k.startswith("tstr_") and k != "tstr_unseen"})
        columns = METRICS + [(k, k.replace("tstr_", "TSTR ")) for k in extra] + AFTER
        settings = (real or group[0])["settings"]
        md += [f"### {table_name}", "",
               f"{settings.get('n_train', '?')} training rows, {settings.get('n_test', '?')} held-out rows, "
               f"seeds {settings.get('seeds')}; TSTR target {settings.get('target')}. Means over the seeds. "
               "Seconds are each entry's own, at its own load (the run column): compare speed in the "
               "interleaved figure below.", "",
               "| generator | " + " | ".join(label for _, label in columns) + " | seeds | run |",
               "|" + "---|" * (len(columns) + 3)]
        for e in group:
            s = summary(e)
            name = e["variant"]["generator"]
            if name == e["settings"].get("recommended"):
                name = f"**{name}**"
            seeds = ",".join(str(r.get("seed", "?")) for r in e["rows"])
            md.append("| " + " | ".join([name] + [_cell(k, s.get(k)) for k, _ in columns]
                                        + [seeds, short_run(e)]) + " |")
        failures = [f"- {e['variant']['generator']}: {f}" for e in group for f in e.get("failures", [])]
        if failures:
            md += ["", "Failures:", "", *failures]
        md.append("")
    return "\n".join(md)


def speed_note(entry: dict) -> str:
    rows = {r["generator"]: r for r in entry["rows"]}
    tvae = rows.get("SDV TVAE", {}).get("median_s")
    lines = [f"- TVAE / {name}: {tvae / r['median_s']:.1f}x" for name, r in rows.items()
             if name != "SDV TVAE" and isinstance(tvae, float) and isinstance(r.get("median_s"), float)]
    return "Fit + sample, medians of interleaved repeats in one process (the load hits every side alike):\n\n" + \
        "\n".join(lines)


def speed(table: Table, seed: int, repeats: int, mode: str) -> tuple[list, list]:
    """fit + sample of the recommended call, GMM(64) and TVAE, interleaved."""
    from _common import interleaved

    found = generators(mode)
    chosen = {name: found[name] for name in (RECOMMENDED, "GaussianMixtureDensity(64)", "SDV TVAE") if name in found}

    def run(synthesizer):
        def go():
            seed_everything(seed)
            synthesizer.fit(table, seed)
            return synthesizer.sample(len(table.train), seed)
        return go

    runs = interleaved({name: run(s) for name, s in chosen.items()}, repeats)
    rows = [{"generator": name, "median_s": r.median if r.error is None else FAILED,
             "seconds": r.seconds} for name, r in runs.items()]
    return rows, [f"{name}: {r.error}" for name, r in runs.items() if r.error]


FIGURES = {
    "synthesizers": Figure("Synthetic tables: skgenerative against SDV", combine=combined),
    "speed": Figure("Fit + sample: the recommended call against TVAE, interleaved", ["generator", "median_s", "seconds"],
                    note=speed_note),
    "explore": Figure("Mixture configurations explored for the recommended call", combine=combined),
}


def record_speed(results, args, table_name: str, rows: int, seed: int, mode: str) -> None:
    """The interleaved fit + sample figure on one table, at ``--threads`` (and ``--device``)."""
    table = load(table_name, rows, seed)
    repeats = args.repeats or pick(mode, 2, 1, 1)
    with threads(args.threads), LoadMonitor() as load_monitor:
        out, failures = speed(table, seed, repeats, mode)
    device = {"device": args.device} if args.device else {}
    results.record("speed", {"table": table_name, "threads": args.threads, **device},
                   {"rows": len(table.train), "seed": seed, "repeats": repeats, "threads": args.threads,
                    "recommended": RECOMMENDED, **device,
                    **({"cuda": torch.cuda.get_device_name(0)} if torch.cuda.is_available() else {})},
                   out, load_monitor, failures)


# ---------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "1000 training rows, seed 0, adult and wine only")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--rows", type=int, default=None, help="training rows of adult and wine (default 3000)")
    parser.add_argument("--tables", nargs="+", default=None, help="adult, wine, adult_full")
    parser.add_argument("--full-seeds", type=int, nargs="+", default=[0], help="seeds of adult_full")
    parser.add_argument("--only", nargs="+", help="generator names to run (the others' saved entries are kept)")
    parser.add_argument("--explore", action="store_true", help="the mixture configurations explored (own figure)")
    parser.add_argument("--full-peers", action="store_true", help="run SDV's CTGAN and TVAE on adult_full too")
    parser.add_argument("--threads", default="1", help="thread setting of every generator: 1 (default), 2, default")
    parser.add_argument("--speed", action="store_true",
                        help="only the interleaved fit+sample timing of the recommended call against TVAE (on "
                             "the first of --tables, default adult; needs no sdmetrics)")
    parser.add_argument("--device", default=None,
                        help="device of our estimators (default: theirs, 'auto'); a GPU figure: --device cuda")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of --speed (default 2; smoke 1)")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    seeds = args.seeds if args.seeds is not None else pick(mode, [0, 1, 2], [0], [0])
    rows = args.rows or pick(mode, 3000, 1000, 200)
    tables = args.tables or pick(mode, ["adult", "wine", "adult_full"], ["adult", "wine"], ["adult", "wine"])
    tables = [t for t in tables if (MIXED / f"{t.split('_')[0]}.csv").exists()]
    results = Results("synth", args, title="Synthetic tables: skgenerative against SDV (issue #22)",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    if not tables:
        print(f"skipped: no mixed tables in {MIXED}; set SKGENERATIVE_DATA (the folder holding mixed/) "
              "or SKGENERATIVE_MIXED.")
        return
    global DEVICE
    DEVICE = args.device
    if args.speed:
        return record_speed(results, args, (args.tables or ["adult"])[0], rows, seeds[0], mode)
    if importlib.util.find_spec("sdmetrics") is None:
        print("skipped: sdmetrics is not installed (pip install -e '.[benchmark]')")
        return
    if mode == "smoke":
        record_speed(results, args, "adult", rows, seeds[0], mode)
    figure = "explore" if args.explore else "synthesizers"
    found = explored(mode) if args.explore else generators(mode)
    unknown = set(args.only or ()) - set(found) - {REAL}
    if unknown:
        raise SystemExit(f"unknown generators {sorted(unknown)}; known: {list(found)}")
    if not args.explore:
        found = {REAL: None, **found}
    for table_name in tables:
        table_seeds = args.full_seeds if table_name.endswith("_full") else seeds
        data = {}
        for seed in table_seeds:
            table = load(table_name, rows, seed)
            data[seed] = (table, table.canonical(table.train), table.canonical(table.test))
        table = data[table_seeds[0]][0]
        base = {"table": table_name, "seeds": table_seeds, "rows": rows, "n_train": len(table.train),
                "n_test": len(table.test), "target": table.target, "threads": args.threads,
                "split": "complete rows, shuffled by the seed, 70% training / 30% held out",
                "dcr_rows": DCR_ROWS, "recommended": RECOMMENDED}
        for name, synthesizer in found.items():
            if args.only and name not in args.only:
                continue
            if table_name.endswith("_full") and name in ("SDV TVAE", "SDV CTGAN") and not args.full_peers:
                continue
            kind = "real" if synthesizer is None else synthesizer.kind
            out, failures = [], []
            with threads(args.threads), LoadMonitor() as load_monitor:
                for seed, (table, real_canonical, test_canonical) in data.items():
                    if synthesizer is None:
                        run = lambda: real_rows(table, seed, real_canonical, test_canonical)  # noqa: E731
                    else:
                        run = lambda: run_one(table, synthesizer, seed, real_canonical, test_canonical)  # noqa: E731
                    result, error = attempt(run)
                    if error is not None:
                        print(f"  {name} failed on {table_name} (seed {seed}): {error}", flush=True)
                        failures.append(f"seed {seed}: {error}")
                        result = {"seed": seed, "error": error}
                    else:
                        print(f"{table_name} seed {seed} {name}: " + ", ".join(
                            f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float)), flush=True)
                    out.append(result)
            results.record(figure, {"table": table_name, "generator": name}, {**base, "kind": kind},
                           out, load_monitor, failures)


if __name__ == "__main__":
    main()
