"""Fixed-seed snapshot of what every estimator returns, for refactors.

Before code moves, ``python benchmarks/safety_net.py record PATH`` writes the scores,
samples, transforms, imputations (point and draws) and explanations of every
estimator and both wrappers on arrays, on tables with every column type they accept,
with missing cells, and on dask input, all from fixed seeds. After the change,
``python benchmarks/safety_net.py compare PATH`` computes them again and prints, per
output, the largest absolute and relative difference, and lists the outputs that
differ beyond rounding (relative 1e-6 on float64 evaluations) or changed shape,
dtype or columns. Nothing here is a test: a refactor may change a model on purpose
(its closing note lists what changed and why); this script shows what changed.

``compare --only PATTERN`` restricts both sides to the outputs whose name contains
PATTERN. Dask cases run on a local threaded scheduler (no cluster needed).
"""

from __future__ import annotations

import argparse
import fnmatch
import pickle
import sys
import time
import warnings

import numpy as np
import pandas as pd

RTOL = 1e-6


# ------------------------------------------------------------------------ data
def numeric(n=160, d=5, seed=0, missing=0.0):
    rng = np.random.RandomState(seed)
    Z = rng.normal(size=(n, 2))
    X = Z @ rng.normal(size=(2, d)) + 0.3 * rng.normal(size=(n, d))
    X[: n // 2] += 3.0
    if missing:
        X[rng.uniform(size=X.shape) < missing] = np.nan
        X[np.isnan(X).all(1), 0] = 0.0
    return X


def binary(n=160, d=12, seed=0):
    rng = np.random.RandomState(seed)
    prototypes = rng.uniform(size=(3, d)) < 0.5
    X = prototypes[rng.randint(3, size=n)]
    return np.logical_xor(X, rng.uniform(size=X.shape) < 0.15).astype(np.float64)


def table(n=240, seed=0, missing=0.0):
    """Every column type: real, positive, count, binary, categorical, ordinal."""
    rng = np.random.RandomState(seed)
    t = rng.normal(size=n)
    z = (t > 0).astype(int)
    df = pd.DataFrame({
        "a": t + 0.3 * rng.normal(size=n),
        "inc": np.exp(1.0 + 0.5 * t + 0.3 * rng.normal(size=n)),
        "k": rng.poisson(np.exp(0.5 * t + 1.0)).astype(np.int64),
        "b": (t + 0.5 * rng.normal(size=n)) > 0,
        "c": pd.Categorical(np.array(["hi", "lo", "mid"])[np.where(rng.uniform(size=n) < 0.8, z, 2)],
                            categories=["hi", "lo", "mid"]),
        "o": pd.Categorical(np.digitize(t + 0.3 * rng.normal(size=n), [-1.0, 0.0, 1.0]).astype(str),
                            categories=["0", "1", "2", "3"], ordered=True),
    })
    if missing:
        df["b"] = df["b"].astype("boolean")
        df["k"] = df["k"].astype("Int64")
        for column in df.columns:
            mask = rng.uniform(size=n) < missing
            df.loc[mask, column] = np.nan if column in ("a", "inc") else None
    return df


def discrete_table(n=200, seed=0):
    rng = np.random.RandomState(seed)
    z = rng.randint(3, size=n)
    flip = rng.uniform(size=n) < 0.1
    return pd.DataFrame({
        "x": ((z == 0) ^ flip).astype(float),
        "c": pd.Categorical(np.array(["a", "b", "c"])[z], categories=["a", "b", "c"]),
        "b": (z == 1) ^ (rng.uniform(size=n) < 0.1),
        "o": pd.Categorical(np.array(["lo", "mid", "hi"])[(z + flip) % 3],
                            categories=["lo", "mid", "hi"], ordered=True),
    })


TYPES = {"inc": "positive", "k": "count"}


# ------------------------------------------------------------------ estimators
def estimators():
    from skgenerative import (
        BernoulliRBM,
        FlowVAE,
        GaussianMixtureDensity,
        PPCADensity,
        VariationalAutoencoder,
    )

    neural = dict(hidden_layer_sizes=(16,), max_iter=20, batch_size=32, learning_rate=1e-2,
                  n_iter_no_change=5, kl_warmup_epochs=2, n_importance_samples=8, random_state=0)
    return {
        "gmm_full": lambda **kw: GaussianMixtureDensity(3, random_state=0, **kw),
        "gmm_diag": lambda **kw: GaussianMixtureDensity(2, covariance_type="diag", random_state=0, **kw),
        "gmm_tied": lambda **kw: GaussianMixtureDensity(2, covariance_type="tied", random_state=0, **kw),
        "gmm_spherical": lambda **kw: GaussianMixtureDensity(2, covariance_type="spherical", random_state=0, **kw),
        "ppca": lambda **kw: PPCADensity(2, **kw),
        "rbm": lambda **kw: BernoulliRBM(n_components=4, max_iter=5, random_state=0, **kw),
        "vae": lambda **kw: VariationalAutoencoder(n_components=2, **neural, **kw),
        "flow_iaf": lambda **kw: FlowVAE(n_components=2, flow="iaf", n_flows=2, **neural, **kw),
        "flow_planar": lambda **kw: FlowVAE(n_components=2, flow="planar", n_flows=2, **neural, **kw),
    }


def _values(out):
    """Outputs as plain numbers (a DataFrame as its values; codes of categoricals)."""
    if isinstance(out, pd.DataFrame):
        return {
            "columns": list(out.columns),
            "dtypes": [str(t) for t in out.dtypes],
            "values": out.astype(object).where(out.notna(), None).to_numpy(),
        }
    if isinstance(out, list):
        return [_values(o) for o in out]
    return np.asarray(out)


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _outputs(model, X, *, missing_X=None, explain=True, impute=True, sample=True):
    """Each output of a fitted model; one that raises is recorded as its error."""
    head = (lambda A: A.iloc[:40]) if isinstance(X, pd.DataFrame) else (lambda A: A[:40])
    wanted = {
        "score_samples": lambda: model.score_samples(X),
        "transform": lambda: model.transform(X),
    }
    if sample:
        wanted["sample"] = lambda: _values(model.sample(7, random_state=3))
    if explain and hasattr(model, "explain"):
        wanted["explain"] = lambda: _values(model.explain(head(X)))
    if impute and missing_X is not None and hasattr(model, "impute"):
        wanted["score_missing"] = lambda: model.score_samples(missing_X)
        wanted["impute"] = lambda: _values(model.impute(missing_X))
        wanted["impute_draws"] = lambda: _values(model.impute(missing_X, n_draws=2, random_state=1))
    out = {}
    for key, fn in wanted.items():
        try:
            out[key] = _quiet(fn)
        except Exception as error:  # noqa: BLE001 - an outcome to compare
            out[key] = f"error: {type(error).__name__}: {error}"
    return out


def collect(only: str | None = None) -> dict:
    import torch

    torch.set_num_threads(1)
    from skgenerative import GenerativeImputer, GenerativeOutlierDetector

    results = {}

    def case(name, fn):
        if only and not fnmatch.fnmatch(name, f"*{only}*"):
            return
        start = time.perf_counter()
        try:
            results[name] = _quiet(fn)
            status = "ok"
        except Exception as error:  # noqa: BLE001 - recorded, compared as an outcome
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            status = f"error: {type(error).__name__}: {str(error)[:120]}"
        print(f"{name:40s} {time.perf_counter() - start:6.2f} s  {status}", flush=True)

    X, Xm = numeric(), numeric(missing=0.2)
    B = binary()
    T, Tm = table(), table(missing=0.15)
    D = discrete_table()
    for name, make in estimators().items():
        if name == "rbm":
            case(f"{name}/array", lambda make=make: _outputs(make().fit(B), B))
            case(f"{name}/table", lambda make=make: _outputs(make().fit(D), D))
            continue
        missing_ok = name != "rbm"
        case(f"{name}/array", lambda make=make: _outputs(make().fit(X), X, missing_X=Xm if missing_ok else None))
        if name != "ppca":
            case(f"{name}/array_missing_fit", lambda make=make: _outputs(make().fit(Xm), X, missing_X=Xm))
            case(f"{name}/table", lambda make=make: _outputs(
                make(column_types=TYPES).fit(T), T, missing_X=Tm))
            case(f"{name}/table_missing_fit", lambda make=make: _outputs(
                make(column_types=TYPES).fit(Tm), Tm, missing_X=Tm))
        else:
            case(f"{name}/array_missing_fit", lambda make=make: _outputs(make().fit(Xm), X, missing_X=Xm))
        if name.startswith("gmm_full"):
            case(f"{name}/latent_class", lambda make=make: _outputs(make().fit(D), D, missing_X=None))

    # the synthetic-table call (size search, normal-score marginals, level groups) and a
    # fixed group with normal scores, with missing cells and conditional draws
    from skgenerative import GaussianMixtureDensity

    case("synth/recommended", lambda: {
        **_outputs(m := GaussianMixtureDensity(n_components="auto", level_groups="auto", random_state=0).fit(T),
                   T, missing_X=Tm),
        "chosen": [m.n_components_, [list(g) for g in m.level_groups_]],
        "given": _values(m.sample(7, given={"c": "mid"}, random_state=4)),
    })
    case("synth/group_normal_scores", lambda: _outputs(
        GaussianMixtureDensity(3, level_groups=[["c", "o"]], marginals="normal_scores", column_types=TYPES,
                               random_state=0).fit(Tm), Tm, missing_X=Tm))

    # the wrappers at their defaults
    case("detector/array", lambda: {
        "score_samples": (d := GenerativeOutlierDetector(random_state=0).fit(X)).score_samples(X),
        "predict": d.predict(X), "explain": d.explain(X[:40]),
    })
    case("detector/table", lambda: {
        "score_samples": (d := GenerativeOutlierDetector(random_state=0).fit(T)).score_samples(T),
        "predict": d.predict(T),
    })
    case("detector/calibrated", lambda: {
        "p_values": GenerativeOutlierDetector(calibration=0.3, random_state=0).fit(X).p_values(X),
    })
    case("imputer/array", lambda: {"transform": GenerativeImputer(random_state=0).fit(Xm).transform(Xm)})
    case("imputer/table", lambda: {"transform": _values(GenerativeImputer(random_state=0).fit(Tm).transform(Tm))})

    # dask input (threaded scheduler, no cluster)
    try:
        import dask
        import dask.array as da
    except ImportError:
        da = None
    if da is not None:
        with dask.config.set(scheduler="synchronous"):
            Xd = da.from_array(X, chunks=(50, X.shape[1]))
            Xmd = da.from_array(Xm, chunks=(50, X.shape[1]))
            makers = estimators()
            for name in ("gmm_full", "gmm_diag", "ppca", "vae"):
                make = makers[name]
                case(f"{name}/dask", lambda make=make: {
                    "score_samples": (m := make().fit(Xd)).score_samples(X),
                    "lazy_scores": np.asarray(m.score_samples(Xd).compute()),
                })
                case(f"{name}/dask_missing", lambda make=make: {
                    "score_samples": (m := make().fit(Xmd)).score_samples(Xm),
                    "impute": np.asarray(m.impute(Xmd).compute()),
                })
            if _has_dask_frames():  # what the data-source layer (#21) added
                import dask.dataframe as dd

                Bd = da.from_array(B, chunks=(40, B.shape[1]))
                Td, Tmd = dd.from_pandas(T, npartitions=3), dd.from_pandas(Tm, npartitions=3)
                case("rbm/dask", lambda: {
                    "score_samples": (m := makers["rbm"]().fit(Bd)).score_samples(B),
                    "lazy_scores": np.asarray(m.score_samples(Bd).compute()),
                })
                case("rbm/dask_table", lambda: {
                    "score_samples": (m := makers["rbm"]().fit(dd.from_pandas(D, npartitions=2))).score_samples(D),
                })
                for name in ("gmm_full", "vae"):
                    make = makers[name]
                    case(f"{name}/dask_table", lambda make=make: {
                        "score_samples": (m := make(column_types=TYPES).fit(Tmd)).score_samples(Tm),
                        "lazy_scores": np.asarray(m.score_samples(Tmd).compute()),
                        "impute": _values(m.impute(Tmd).compute()),
                    })
                case("detector/dask_array", lambda: {
                    "score_samples": np.asarray((d := GenerativeOutlierDetector(random_state=0).fit(Xmd))
                                                .score_samples(Xmd).compute()),
                    "offset": d.offset_,
                })
                case("detector/dask_table", lambda: {
                    "score_samples": np.asarray((d := GenerativeOutlierDetector(random_state=0).fit(Tmd))
                                                .score_samples(Tmd).compute()),
                    "offset": d.offset_,
                })
                case("imputer/dask_table", lambda: {
                    "transform": _values(GenerativeImputer(random_state=0).fit(Tmd).transform(Tmd).compute()),
                })
    return results


def _has_dask_frames() -> bool:
    try:
        import dask.dataframe  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------- compare
def _flatten(prefix, value, out):
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(f"{prefix}[{i}]", item, out)
    else:
        out[prefix] = value


def _difference(a, b):
    """(max abs, max rel, same shape) of two outputs; None where they cannot be compared."""
    if isinstance(a, str) or isinstance(b, str):
        return (0.0, 0.0, True) if a == b else None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return None
    if a.dtype == object or b.dtype == object:
        try:
            a, b = a.astype(float), b.astype(float)
        except (TypeError, ValueError):
            return _object_difference(a, b)
    a, b = a.astype(float), b.astype(float)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return (np.inf, np.inf, True)
    a, b = a[~nan_a], b[~nan_b]
    if a.size == 0:
        return (0.0, 0.0, True)
    diff = np.abs(a - b)
    return float(diff.max()), float((diff / np.maximum(np.abs(b), 1e-12)).max()), True


def _as_number(x):
    if x is None:
        return np.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _object_difference(a, b):
    """Tables of numbers and labels: numbers compared as numbers, labels exactly
    (a differing label counts as an infinite difference)."""
    worst_abs = worst_rel = 0.0
    for x, y in zip(a.ravel(), b.ravel()):
        fx, fy = _as_number(x), _as_number(y)
        if fx is None or fy is None:
            if x != y:
                return (np.inf, np.inf, True)
            continue
        if np.isnan(fx) or np.isnan(fy):
            if np.isnan(fx) != np.isnan(fy):
                return (np.inf, np.inf, True)
            continue
        diff = abs(fx - fy)
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(abs(fy), 1e-12))
    return (worst_abs, worst_rel, True)


def compare(before: dict, after: dict) -> int:
    flat_a, flat_b = {}, {}
    for name, value in before.items():
        _flatten(name, value, flat_a)
    for name, value in after.items():
        _flatten(name, value, flat_b)
    changed = []
    for key in sorted(set(flat_a) | set(flat_b)):
        if key not in flat_a or key not in flat_b:
            changed.append(f"{key}: only {'before' if key in flat_a else 'after'}")
            continue
        result = _difference(flat_a[key], flat_b[key])
        if result is None:
            changed.append(f"{key}: shape or kind changed")
            continue
        abs_diff, rel_diff, _ = result
        flag = "" if (abs_diff <= 1e-12 or rel_diff <= RTOL) else "  <-- differs"
        print(f"{key:70s} abs {abs_diff:9.3g}  rel {rel_diff:9.3g}{flag}")
        if flag:
            changed.append(f"{key}: abs {abs_diff:.3g}, rel {rel_diff:.3g}")
    print()
    print(f"{len(changed)} output(s) differ beyond rounding" + (":" if changed else "."))
    for line in changed:
        print("  " + line)
    return 1 if changed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["record", "compare"])
    parser.add_argument("path")
    parser.add_argument("--only", default=None, help="restrict to outputs whose name contains this")
    args = parser.parse_args(argv)
    if args.action == "record":
        results = collect(args.only)
        with open(args.path, "wb") as f:
            pickle.dump(results, f)
        print(f"recorded {len(results)} cases in {args.path}")
        return 0
    with open(args.path, "rb") as f:
        before = pickle.load(f)
    if args.only:
        before = {k: v for k, v in before.items() if fnmatch.fnmatch(k, f"*{args.only}*")}
    return compare(before, collect(args.only))


if __name__ == "__main__":
    sys.exit(main())
