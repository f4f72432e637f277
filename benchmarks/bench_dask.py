"""EM on dask arrays on a distributed cluster: time per iteration and memory as rows grow (#15).

Data: a lazily generated dask array of float32 rows, 20 columns, from a mixture of 16
Gaussians (each block drawn from its own seed when a task needs it: the data are never
held anywhere whole, and each EM pass generates them again). On a
``distributed.LocalCluster`` of 2 worker processes (1 thread each, 2 GiB each):

- GaussianMixtureDensity(16, "full"): seconds per EM iteration (one E-step over all the
  blocks, tree-merged statistics, the M-step on the client), k-means++ start on a
  100,000-row sample;
- PPCADensity(5): ``fit``, the closed form from merged moments;
- score_samples throughput of the fitted mixture (rows per second, summed on the cluster);
- peak resident memory of each worker and of the client per size (reset between sizes);
- in memory: scikit-learn's GaussianMixture (16 full components, float64 as it computes)
  and our in-memory fit on the largest size up to 1M rows, seconds per EM iteration, at
  default threads and at one thread;
- mixed (#21): the mixture over the column families (Gaussians over the numbers times
  level probabilities) on a lazily generated mixed dask DataFrame: six real columns (1% of
  one missing), a categorical with known categories (1% missing), an ordinal and a
  boolean, drawn from a latent class per row, partitions of 250,000 rows generated again
  on every pass (``dd.from_map``). ``GaussianMixtureDensity(8, "full")`` at its defaults:
  seconds per EM iteration, the whole fit (moments, sample, EM, the passes of
  ``offset_``), peak memory of each worker and of the client per size. Sizes 1M, 2M, 4M
  and 10M by default (``--mixed-sizes``).

The issue asks for 1M, 10M and 50M rows; this 2-core box (shared) runs 0.25M, 1M and 2M
by default (``--sizes`` to change).

    python benchmarks/bench_dask.py                      # sizes 0.25M, 1M, 2M
    python benchmarks/bench_dask.py --only cluster --sizes 1000000
    python benchmarks/bench_dask.py --quick              # sizes 0.25M and 0.5M
    python benchmarks/bench_dask.py --only mixed         # the mixed table alone

Results merge into ``results/dask.json`` and ``dask.md``: one entry per size of the
cluster and mixed figures and per thread setting of the in-memory one.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Figure, LoadMonitor, Results, add_run_arguments, pick, run_mode, short_run, table, thread_variants, threads,
)

D, K = 20, 16


def _centres():
    return np.random.RandomState(123).normal(0, 4, (K, D)).astype(np.float32)


def _block(block_info=None):
    info = block_info[None]
    index = info["chunk-location"][0]
    rows = info["chunk-shape"][0]
    rng = np.random.default_rng([7, index])
    labels = rng.integers(0, K, rows)
    return (rng.standard_normal((rows, D), dtype=np.float32) + _centres()[labels]).astype(np.float32)


def lazy_data(n: int, block: int):
    import dask.array as da

    chunks = ((block,) * (n // block) + ((n % block,) if n % block else ()), (D,))
    return da.map_blocks(_block, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0), np.float32))


def _hwm() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024


def _reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


@contextlib.contextmanager
def _local_cluster():
    """The figures' cluster: 2 worker processes, 1 thread and 2 GiB each, skgenerative imported."""
    import distributed

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit="2GiB", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        client.run(lambda: __import__("skgenerative") and None)
        yield client
    finally:
        client.close()
        cluster.close()


class _IterationTimer:
    """Wall time of each EM iteration (E-step over the blocks and M-step)."""

    def __init__(self, cls):
        self.cls, self.times = cls, []
        self._e, self._m = cls._em_e_step, cls._em_m_step

    def __enter__(self):
        timer = self

        def e_step(model, data, params):
            timer._start = time.perf_counter()
            return timer._e(model, data, params)

        def m_step(model, data, statistics, params):
            out = timer._m(model, data, statistics, params)
            timer.times.append(time.perf_counter() - timer._start)
            return out

        self.cls._em_e_step, self.cls._em_m_step = e_step, m_step
        return self

    def __exit__(self, *exc):
        self.cls._em_e_step, self.cls._em_m_step = self._e, self._m


def cluster_table(entries) -> str:
    entries = sorted(entries, key=lambda e: e["variant"]["rows"])
    rows = []
    for e in entries:
        r, n = e["rows"][0], e["variant"]["rows"]
        rows.append({
            "rows": f"{n:,}", "blocks": r["blocks"], "GMM s / EM iteration": r["gmm_seconds_per_iteration"],
            "s / iteration / M rows": r["gmm_seconds_per_iteration"] / (n / 1e6),
            "of which data generation (s / pass)": r["generate_seconds_per_pass"],
            "score_samples (M rows/s)": r["score_samples_rows_per_second"] / 1e6,
            "PPCA fit (s)": r["ppca_fit_seconds"],
            "peak worker RSS (MiB)": " / ".join(f"{v:.0f}" for v in r["peak_worker_rss_mib"]),
            "peak client RSS (MiB)": r["peak_client_rss_mib"], "run": short_run(e),
        })
    settings = entries[0]["settings"]
    return "\n".join([
        f"Lazily generated float32 data, {D} columns, mixture of {K} Gaussians, blocks of "
        f"{settings['block_rows']:,} rows generated again on every pass (never held whole). Cluster: "
        f"{settings['workers']} worker processes, {settings['threads_per_worker']} thread each, "
        f"{settings['memory_limit']} limit each. GMM: 16 full components, dtype='auto' (float32 EM), "
        f"{settings['init']}, {settings['em_iterations']} EM iterations (median time shown; one iteration is an "
        "E-step over every block, the tree merge of the statistics and the M-step on the client). PPCA: "
        "n_components=5, closed form from merged moments. score_samples: the scores of every row summed on "
        "the cluster. Worker and client peak memory are reset before each size.",
        "",
        table(rows),
        "",
        "Time per iteration should grow linearly with the rows (compare the seconds per million rows); "
        "the two workers share the machine's cores with any other jobs (the load is in each run's "
        "description), so the cluster is not faster than one process here: a real cluster adds cores "
        "and memory; this shows the scaling and the flat memory.",
    ])


# ------------------------------------------------------------ mixed tables (#21)
MIXED_CLASSES, MIXED_COMPONENTS, MIXED_REAL = 4, 8, 6
SHOPS = ["grocery", "fuel", "online", "travel", "other"]
SIZES = ["S", "M", "L", "XL"]


def _mixed_parameters():
    rng = np.random.RandomState(321)
    return {
        "weights": np.array([0.4, 0.3, 0.2, 0.1]),
        "centres": rng.normal(0, 2.0, (MIXED_CLASSES, MIXED_REAL)),
        "mixing": rng.normal(0, 0.5, (MIXED_CLASSES, MIXED_REAL, MIXED_REAL)) + np.eye(MIXED_REAL),
        "shop": rng.dirichlet(np.ones(len(SHOPS)) * 0.7, MIXED_CLASSES),
        "size": rng.dirichlet(np.ones(len(SIZES)), MIXED_CLASSES),
        "flag": rng.uniform(0.1, 0.9, MIXED_CLASSES),
    }


def _draw_levels(rng, table, classes):
    cumulative = np.cumsum(table[classes], axis=1)
    return (rng.random(len(classes))[:, None] > cumulative[:, :-1]).sum(1)


def mixed_partition(part):
    """Partition ``index`` of ``rows`` rows (starting at row ``start``), drawn from its own seed."""
    import pandas as pd

    index, start, rows = part
    p = _mixed_parameters()
    rng = np.random.default_rng([17, index])
    z = rng.choice(MIXED_CLASSES, rows, p=p["weights"])
    noise = rng.standard_normal((rows, MIXED_REAL))
    real = p["centres"][z] + np.einsum("nd,nde->ne", noise, p["mixing"][z])
    real[rng.random(rows) < 0.01, 0] = np.nan
    shop = _draw_levels(rng, p["shop"], z)
    shop[rng.random(rows) < 0.01] = -1  # missing
    frame = pd.DataFrame(real, columns=[f"x{j}" for j in range(MIXED_REAL)],
                         index=pd.RangeIndex(start, start + rows))
    frame["shop"] = pd.Categorical.from_codes(shop, categories=SHOPS)
    frame["size"] = pd.Categorical.from_codes(_draw_levels(rng, p["size"], z), categories=SIZES, ordered=True)
    frame["flag"] = rng.random(rows) < p["flag"][z]
    return frame


def lazy_mixed_table(n: int, block: int):
    import dask.dataframe as dd

    parts = [(i, i * block, min(block, n - i * block)) for i in range(-(-n // block))]
    return dd.from_map(mixed_partition, parts, meta=mixed_partition((0, 0, 0)), enforce_metadata=False)


def mixed_table(entries) -> str:
    entries = sorted(entries, key=lambda e: e["variant"]["rows"])
    rows = []
    for e in entries:
        r, n = e["rows"][0], e["variant"]["rows"]
        rows.append({
            "rows": f"{n:,}", "partitions": r["partitions"], "s / EM iteration": r["seconds_per_iteration"],
            "s / iteration / M rows": r["seconds_per_iteration"] / (n / 1e6),
            "of which generation (s / pass)": r["generate_seconds_per_pass"],
            "whole fit (s)": r["fit_seconds"],
            "peak worker RSS (MiB)": " / ".join(f"{v:.0f}" for v in r["peak_worker_rss_mib"]),
            "peak client RSS (MiB)": r["peak_client_rss_mib"], "run": short_run(e),
        })
    settings = entries[0]["settings"]
    return "\n".join([
        f"{settings['real_columns']} real columns and three discrete ones (a categorical with known "
        "categories, an ordinal, a boolean; 1% of one real column and of the categorical missing), "
        f"drawn from {MIXED_CLASSES} latent classes; partitions of {settings['partition_rows']:,} rows generated "
        f"again on every pass (never held whole). GaussianMixtureDensity({MIXED_COMPONENTS}, 'full') at its "
        f"defaults: float32 EM, {settings['init']}, {settings['em_iterations']} EM iterations (median shown: an "
        "E-step over every partition, where it is, then the tree merge of the statistics and the M-step on the "
        "client). The whole fit adds the first pass (validation and column moments), the sample and the passes "
        f"of the exact offset_. Cluster: {settings['workers']} worker processes, {settings['threads_per_worker']} "
        f"thread each, {settings['memory_limit']} limit each. Peak memory is reset before each size.",
        "",
        table(rows),
    ])


def bench_mixed(results, sizes, block, iterations):
    from sklearn.exceptions import ConvergenceWarning

    from skgenerative import GaussianMixtureDensity

    warnings.simplefilter("ignore", ConvergenceWarning)
    settings = {"real_columns": MIXED_REAL,
                "discrete_columns": {"shop": "categorical, 5 known categories, 1% missing",
                                     "size": "ordinal, 4 levels", "flag": "boolean"},
                "missing": "1% of x0 and of shop", "n_components": MIXED_COMPONENTS, "covariance_type": "full",
                "dtype": "auto (float32 EM, float64 evaluation)", "partition_rows": block,
                "em_iterations": iterations, "workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB",
                "init": f"k-means++ on {_init_sample_rows()} initialisation sample"}
    with _local_cluster() as client:
        for n in sizes:
            print(f"[mixed] {n:,} rows", flush=True)
            X = lazy_mixed_table(n, block)
            client.run(_reset)
            _reset()
            with LoadMonitor() as load:
                gmm = GaussianMixtureDensity(MIXED_COMPONENTS, init_params="k-means++", max_iter=iterations,
                                             tol=0.0, random_state=0)
                with _IterationTimer(GaussianMixtureDensity) as timer:
                    start = time.perf_counter()
                    gmm.fit(X)
                    fit = time.perf_counter() - start
                start = time.perf_counter()
                len(X.map_partitions(len).compute())  # one pass of data generation alone
                generate = time.perf_counter() - start
                workers = client.run(_hwm)
            record = {
                "partitions": -(-n // block), "seconds_per_iteration": float(np.median(timer.times)),
                "iteration_times": timer.times, "fit_seconds": fit, "generate_seconds_per_pass": generate,
                "lower_bound": gmm.lower_bound_, "offset": gmm.offset_,
                "peak_worker_rss_mib": [v / 2**20 for v in workers.values()],
                "peak_client_rss_mib": _hwm() / 2**20,
            }
            print(record, flush=True)
            results.record("mixed", {"rows": n}, settings, [record], load)


FIGURES = {
    "cluster": Figure("EM on dask arrays on a LocalCluster (GaussianMixtureDensity, PPCADensity)",
                      combine=cluster_table),
    "in_memory": Figure("In memory, one process: seconds per EM iteration",
                        ["implementation", "seconds per EM iteration", "scikit-learn / ours"],
                        "scikit-learn float64, one E- and M-step timed after its k-means++ start (they are slow "
                        "here); ours dtype='auto', the median of the fit's iterations."),
    "mixed": Figure("The mixture over the column families on a lazily generated mixed dask DataFrame (#21)",
                    combine=mixed_table),
}


def _init_sample_rows():
    try:  # the package's initialisation sample (a private constant: described, not relied on)
        from skgenerative._sources import INIT_SAMPLE_ROWS

        return f"{INIT_SAMPLE_ROWS:,}-row"
    except ImportError:
        return "the package's"


def bench_cluster(results, sizes, block, iterations):
    from sklearn.exceptions import ConvergenceWarning

    from skgenerative import GaussianMixtureDensity, PPCADensity

    warnings.simplefilter("ignore", ConvergenceWarning)
    settings = {"n_features": D, "n_components": K, "covariance_type": "full", "block_rows": block,
                "em_iterations": iterations, "workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB",
                "init": f"k-means++ on {_init_sample_rows()} initialisation sample"}
    with _local_cluster() as client:
        for n in sizes:
            print(f"[cluster] {n:,} rows", flush=True)
            X = lazy_data(n, block)
            client.run(_reset)
            _reset()
            with LoadMonitor() as load:
                gmm = GaussianMixtureDensity(K, covariance_type="full", init_params="k-means++", max_iter=iterations,
                                             tol=0.0, random_state=0)
                with _IterationTimer(GaussianMixtureDensity) as timer:
                    start = time.perf_counter()
                    gmm.fit(X)
                    gmm_fit = time.perf_counter() - start
                start = time.perf_counter()
                total = float(gmm.score_samples(X).sum().compute())
                score_time = time.perf_counter() - start
                start = time.perf_counter()
                PPCADensity(n_components=5).fit(X)
                ppca_fit = time.perf_counter() - start
                start = time.perf_counter()
                float(X.sum().compute())  # one pass of data generation alone
                generate = time.perf_counter() - start
                workers = client.run(_hwm)
            record = {
                "blocks": -(-n // block), "gmm_seconds_per_iteration": float(np.median(timer.times)),
                "gmm_iteration_times": timer.times, "gmm_fit_seconds": gmm_fit, "gmm_lower_bound": gmm.lower_bound_,
                "score_samples_rows_per_second": n / score_time, "mean_score": total / n,
                "ppca_fit_seconds": ppca_fit, "generate_seconds_per_pass": generate,
                "peak_worker_rss_mib": [v / 2**20 for v in workers.values()],
                "peak_client_rss_mib": _hwm() / 2**20,
            }
            print(record, flush=True)
            results.record("cluster", {"rows": n}, settings, [record], load)


def bench_in_memory(results, n_mem: int, block: int, iterations: int, setting: str) -> None:
    """sklearn's and our in-memory EM iteration on ``n_mem`` rows."""
    from sklearn.mixture import GaussianMixture

    from skgenerative import GaussianMixtureDensity

    print(f"[in_memory] {n_mem:,} rows, threads={setting}", flush=True)
    X = lazy_data(n_mem, block).compute(scheduler="synchronous")
    X64 = X.astype(np.float64)
    with threads(setting), LoadMonitor() as load:
        # sklearn's own k-means++ start, then one timed E- and M-step (they are slow here)
        sk = GaussianMixture(K, covariance_type="full", init_params="k-means++", random_state=0)
        sk._check_parameters(X64)
        sk._initialize_parameters(X64, np.random.RandomState(0))
        start = time.perf_counter()
        _, log_resp = sk._e_step(X64)
        sk._m_step(X64, log_resp)
        sk_time = time.perf_counter() - start
        ours = GaussianMixtureDensity(K, covariance_type="full", init_params="k-means++",
                                      max_iter=iterations, tol=0.0, random_state=0)
        with _IterationTimer(GaussianMixtureDensity) as timer:
            ours.fit(X)
    ours_time = float(np.median(timer.times))
    rows = [{"implementation": "scikit-learn GaussianMixture (float64)", "seconds per EM iteration": sk_time,
             "scikit-learn / ours": 1.0},
            {"implementation": "GaussianMixtureDensity in memory (dtype='auto')", "seconds per EM iteration": ours_time,
             "scikit-learn / ours": sk_time / ours_time}]
    print(rows, flush=True)
    results.record("in_memory", {"threads": setting, "rows": n_mem},
                   {"n_features": D, "n_components": K, "covariance_type": "full", "em_iterations": iterations},
                   rows, load)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, "sizes 0.25M and 0.5M, 2 iterations")
    parser.add_argument("--sizes", default=None, help="comma-separated row counts (default 250000,1000000,2000000)")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--mixed-sizes", default=None,
                        help="comma-separated row counts of the mixed figure (default 1M,2M,4M,10M)")
    parser.add_argument("--only", nargs="+", choices=["cluster", "memory", "mixed"],
                        default=["cluster", "memory", "mixed"],
                        help="cluster: the dask array figures; memory: the in-memory comparison; mixed: the mixed table")
    parser.add_argument("--threads", nargs="+", default=["default", "1"], help="thread settings of the in-memory figure")
    args = parser.parse_args(argv)
    mode = run_mode(args)
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else pick(mode, [250_000, 1_000_000, 2_000_000], [250_000, 500_000], [20_000, 40_000]))
    block = pick(mode, 250_000, 250_000, 10_000)
    results = Results("dask", args, title="EM on dask arrays on a distributed cluster",
                      about=__doc__.split("    python")[0].split("\n\n", 1)[1], figures=FIGURES)
    if args.report:
        return results.save()
    if "cluster" in args.only:
        bench_cluster(results, sizes, block, args.iterations)
    if "mixed" in args.only:
        mixed_sizes = ([int(s) for s in args.mixed_sizes.split(",")] if args.mixed_sizes
                       else pick(mode, [1_000_000, 2_000_000, 4_000_000, 10_000_000], [250_000, 500_000],
                                 [20_000, 40_000]))
        bench_mixed(results, mixed_sizes, block, args.iterations)
    if "memory" in args.only:
        for setting in thread_variants(args.threads):
            bench_in_memory(results, min(1_000_000, max(sizes)), block, args.iterations, setting)


if __name__ == "__main__":
    main()
