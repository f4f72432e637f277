"""What every benchmark script shares: run modes, settings, timing, load, memory, results files.

Run modes (``--quick`` and ``--smoke``; neither is the full run):

- ``full``: the sizes the published figures come from;
- ``quick``: smaller sizes, minutes per script (``make benchmarks ARGS=--quick``);
- ``smoke``: tiny sizes through the same code and the same keyword arguments, seconds
  per script; ``tests/test_benchmarks.py`` runs every script this way (into a
  temporary folder) so that a renamed parameter breaks the tests, not the README.

Results files, ``results/<name>.json`` (format 2)::

    {"format": 2, "benchmark": name, "script": "benchmarks/bench_x.py",
     "entries": [{"figure": id, "variant": {...}, "settings": {...},
                  "environment": {...}, "rows": [...], ...}, ...]}

An entry is one figure measured at one variant: the settings that tell its runs apart
(thread setting, batch size, run mode ...). Its ``settings`` hold every other setting
it ran with, its ``environment`` the commit, date, library versions, machine and the
load average while it ran (sampled every second). A rerun of some variants replaces
those entries and keeps every other one; ``results/<name>.md`` is rendered from the
merged file. ``benchmarks/readme_table.py`` builds the README's table from these files.

A cell that failed holds the string ``"failed"`` (its reason is in the entry's
``failures``): it is never averaged away.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

FORMAT = 2
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = Path(os.environ.get("SKGENERATIVE_BENCH_RESULTS", HERE / "results"))
MODES = ("full", "quick", "smoke")
FAILED = "failed"


def shared_data(name: str) -> Path:
    """``shared/data/<name>`` beside the checkout (``../shared/data`` from the main
    checkout, one level further up from a worktree), or ``$SKGENERATIVE_DATA/<name>``."""
    if os.environ.get("SKGENERATIVE_DATA"):
        return Path(os.environ["SKGENERATIVE_DATA"]) / name
    for parent in REPO.parents:
        candidate = parent / "shared" / "data" / name
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data" / name


ADBENCH = Path(os.environ.get("SKGENERATIVE_ADBENCH") or shared_data("adbench"))
MIXED = Path(os.environ.get("SKGENERATIVE_MIXED") or shared_data("mixed"))


# ------------------------------------------------------------------ arguments
def add_run_arguments(parser, quick: str = "smaller sizes (minutes)") -> None:
    """``--quick``, ``--smoke`` and ``--results-dir``, the same in every script."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes through the same code (seconds; what the tests run)")
    parser.add_argument("--results-dir", default=None,
                        help=f"folder of the results files (default {RESULTS})")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the Markdown from the saved JSON (after a change of the report's layout)")


def run_mode(args) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def pick(mode: str, full, quick, smoke):
    """The value of a setting in this run mode."""
    return {"full": full, "quick": quick, "smoke": smoke}[mode]


# ---------------------------------------------------------------- environment
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def environment() -> dict:
    """Commit, date, versions and machine of this run (the load is per entry)."""
    commit = _git("rev-parse", "HEAD")
    # uncommitted changes to the code that runs (the package or the scripts) make
    # the commit an incomplete description of what was measured
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", "skgenerative", "benchmarks",
                   ":(exclude)benchmarks/results")
    return {
        "commit": commit or "unknown",
        "uncommitted_changes": bool(changes) if changes is not None else None,
        "date": _now(),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("skgenerative", "torch", "numpy", "scipy", "scikit-learn", "pandas", "pyod", "mlxtend",
                      "dask", "distributed")},
        "default_torch_threads": DEFAULT_TORCH_THREADS,
    }


# ---------------------------------------------------------------------- load
class LoadMonitor:
    """Samples the 1-minute load average every ``interval`` seconds while a figure runs."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self):
        self.start = os.getloadavg()
        self.started = time.perf_counter()
        self.samples = [self.start[0]]
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.samples.append(os.getloadavg()[0])

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.end = os.getloadavg()
        self.samples.append(self.end[0])
        self.seconds = time.perf_counter() - self.started

    def summary(self) -> dict:
        return {
            "start": [round(v, 2) for v in self.start], "end": [round(v, 2) for v in self.end],
            "mean_1min": round(float(np.mean(self.samples)), 2), "max_1min": round(float(np.max(self.samples)), 2),
            "seconds": round(self.seconds, 1),
        }


# ------------------------------------------------------------------- threads
DEFAULT_TORCH_THREADS = torch.get_num_threads()


def thread_variants(values) -> list[str]:
    """``--threads`` values as the variants' names: ``"default"`` or a count."""
    out = []
    for value in values:
        value = str(value)
        if value != "default" and not (value.isdigit() and int(value) > 0):
            raise SystemExit(f"--threads takes 'default' or a positive count, got {value!r}")
        out.append(value)
    return out


@contextmanager
def threads(setting: str):
    """``"default"``: every library's own threading (torch's default thread count,
    which skgenerative adapts to the machine's load inside each call; the BLAS's
    default for numpy and scikit-learn); ``"N"``: N threads for torch and the BLAS."""
    from threadpoolctl import threadpool_limits

    if setting == "default":
        torch.set_num_threads(DEFAULT_TORCH_THREADS)
        yield
        return
    torch.set_num_threads(int(setting))
    try:
        with threadpool_limits(int(setting)):
            yield
    finally:
        torch.set_num_threads(DEFAULT_TORCH_THREADS)


# -------------------------------------------------------------------- timing
class Timer:
    seconds: float | None = None


@contextmanager
def timed():
    """``with timed() as t: ...`` then ``t.seconds`` (waits for CUDA work)."""
    t = Timer()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield t
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t.seconds = time.perf_counter() - start


#: exceptions that are mistakes in a script (a renamed parameter, a removed
#: attribute), never a result: they stop the run instead of becoming "failed"
MISTAKES = (TypeError, NameError, AttributeError, ImportError, SyntaxError, AssertionError)


def attempt(run: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(run(), None)``, or ``(None, reason)`` when it fails at run time."""
    try:
        return run(), None
    except MISTAKES:
        raise
    except Exception as exc:  # a model that fails on some data is a result, reported as such
        return None, f"{type(exc).__name__}: {exc}"[:500]


@dataclass
class Runs:
    """The timings of one side of an interleaved comparison."""

    seconds: list = field(default_factory=list)
    result: Any = None
    error: str | None = None
    all_results: list = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return float(np.median(self.seconds)) if self.seconds and self.error is None else None


def interleaved(runs: dict, repeats: int) -> dict[str, Runs]:
    """Time each callable ``repeats`` times, interleaved so that load hits every side alike.

    Returns name -> :class:`Runs` (all times, the last result, the failure if any).
    """
    out = {name: Runs() for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            if out[name].error is not None:
                continue
            with timed() as t:
                result, error = attempt(run)
            if error is not None:
                out[name].error = error
                print(f"    {name} failed: {error}", flush=True)
                continue
            out[name].seconds.append(t.seconds)
            out[name].result = result
            out[name].all_results.append(result)
    return out


def ratio(numerator, denominator):
    """``numerator / denominator``, or "failed" when either side has no figure."""
    if not isinstance(numerator, (int, float)) or not isinstance(denominator, (int, float)) or not denominator:
        return FAILED
    return numerator / denominator


def mean_or_failed(values) -> float | str:
    """The mean of a cell's values, or "failed" when any of them failed (never the rest's mean)."""
    values = list(values)
    if not values or any(not isinstance(v, (int, float)) or not np.isfinite(v) for v in values):
        return FAILED
    return float(np.mean(values))


# -------------------------------------------------------------------- memory
def _status(key: str) -> int:
    import re

    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024


def reset_peak_rss() -> int:
    """Reset this process's peak resident memory (Linux); return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def peak_rss() -> int:
    return _status("VmHWM")


#: environment of a memory-measuring child: glibc returns every block of 64 KiB or
#: more to the system when it is freed, so freed memory cannot be reused unseen and
#: the peak resident set of the call is the most it held at once
MEMORY_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "1"}


def run_child(args: list[str], timeout: float | None = None) -> dict:
    """Run ``python args...`` in a fresh process set up for memory measurement; the
    JSON object on its last line of output."""
    env = {**os.environ, **MEMORY_CHILD_ENV}
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def measured_memory():
    """Peak memory of a block, measured two ways (run it in a fresh process started by
    :func:`run_child`): the rise of the peak resident set over the resident set at the
    start (every allocation: numpy, torch, the interpreter) and tracemalloc's peak
    (allocations traced by Python, numpy's included; torch's CPU allocator is not)."""
    import gc
    import tracemalloc

    gc.collect()
    out = {}
    tracemalloc.start()
    base = reset_peak_rss()
    try:
        yield out
    finally:
        out["peak_rss_rise_bytes"] = peak_rss() - base
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# ---------------------------------------------------------------- the files
def _jsonable(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def _clean(value):
    """JSON has no NaN: a non-finite number is stored as None (and rendered as such)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


def entry_key(entry: dict) -> str:
    return json.dumps([entry["figure"], entry["variant"]], sort_keys=True)


def read_entries(path: Path) -> list[dict]:
    """The entries of a results file; [] when it is absent or in an older format."""
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    if saved.get("format") != FORMAT:
        print(f"note: {path.name} is in an older format; its figures are replaced by this run's")
        return []
    return saved["entries"]


@dataclass
class Figure:
    """How a figure is shown in the Markdown: title, columns, and notes (text, or a
    function of the entry giving text). With ``combine``, the figure's entries of one
    run mode are shown together, by ``combine(entries)`` (one entry per method: a
    rerun of some methods replaces theirs and keeps the others')."""

    title: str
    columns: list | None = None
    note: str | Callable[[dict], str] | None = None
    combine: Callable[[list], str] | None = None


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def short_run(entry: dict) -> str:
    """Commit, date and mean load of an entry, for a table cell."""
    env = entry["environment"]
    load = env.get("load_average", {})
    dirty = "+" if env.get("uncommitted_changes") else ""
    return f"`{env.get('commit', 'unknown')[:7]}{dirty}` {env.get('date', '?')[:10]}, load {load.get('mean_1min', '?')}"


def describe_run(entry: dict) -> str:
    """One line: run mode, commit, date, threads, load; what every figure says of itself."""
    env, load = entry["environment"], entry["environment"].get("load_average", {})
    commit = env.get("commit", "unknown")[:10] + (" + uncommitted changes" if env.get("uncommitted_changes") else "")
    versions = env.get("versions", {})
    parts = [f"{entry['variant'].get('mode', '?')} run", f"commit `{commit}`", env.get("date", "?"),
             f"{env.get('cpu', '?')} ({env.get('cores', '?')} cores)",
             f"torch {versions.get('torch')}, scikit-learn {versions.get('scikit-learn')}"]
    if load:
        parts.append(f"load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end "
                     f"(1-minute; mean {load['mean_1min']:.2f}, max {load['max_1min']:.2f} over "
                     f"{load['seconds']:.0f} s)")
    return "; ".join(parts)


class Results:
    """The entries of one script's results file, written (merged) after every figure."""

    def __init__(self, name: str, args, *, title: str, about: str, figures: dict[str, Figure]):
        self.name, self.mode, self.title, self.about, self.figures = name, run_mode(args), title, about, figures
        self.dir = Path(args.results_dir) if getattr(args, "results_dir", None) else RESULTS
        self.env = environment()
        self.new: list[dict] = []

    def record(self, figure: str, variant: dict, settings: dict, rows: list[dict], load: LoadMonitor,
               failures: list | None = None, **extra) -> dict:
        if figure not in self.figures:
            raise KeyError(f"unknown figure {figure!r}")
        entry = {
            "figure": figure,
            "variant": {**variant, "mode": self.mode},
            "settings": settings,
            # the date the figure was finished, not the script's start (runs can take hours)
            "environment": {**self.env, "date": _now(), "load_average": load.summary()},
            "rows": rows,
            "failures": failures or [],
            **extra,
        }
        entry = _clean(json.loads(json.dumps(entry, default=_jsonable)))
        self.new = [e for e in self.new if entry_key(e) != entry_key(entry)] + [entry]
        self.save()
        return entry

    def entries(self) -> list[dict]:
        path = self.dir / f"{self.name}.json"
        merged = {entry_key(e): e for e in read_entries(path)}
        merged.update({entry_key(e): e for e in self.new})
        order = list(self.figures)
        return sorted(merged.values(), key=lambda e: (
            order.index(e["figure"]) if e["figure"] in order else len(order), e["figure"],
            MODES.index(e["variant"].get("mode", "full")), json.dumps(e["variant"], sort_keys=True)))

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        entries = self.entries()
        payload = {"format": FORMAT, "benchmark": self.name, "title": self.title,
                   "script": f"benchmarks/{Path(sys.argv[0]).name}" if sys.argv[0].endswith(".py")
                   else f"benchmarks/bench_{self.name}.py", "entries": entries}
        _write(self.dir / f"{self.name}.json", json.dumps(payload, indent=1, allow_nan=False) + "\n")
        _write(self.dir / f"{self.name}.md", self.markdown(entries))
        print(f"  wrote {self.dir / (self.name + '.json')} and .md", flush=True)

    def markdown(self, entries: list[dict]) -> str:
        lines = [f"# {self.title}", "", self.about.strip(), "",
                 "Generated from the JSON file beside this one; every figure names its run. "
                 "Quick and smoke runs use smaller sizes: they check the script, they are not figures.", ""]
        combined = set()
        for entry in entries:
            spec = self.figures.get(entry["figure"], Figure(entry["figure"]))
            mode = entry["variant"].get("mode", "full")
            if spec.combine is not None:
                if (entry["figure"], mode) not in combined:
                    combined.add((entry["figure"], mode))
                    group = [e for e in entries if e["figure"] == entry["figure"]
                             and e["variant"].get("mode", "full") == mode]
                    lines += [f"## {spec.title}" + ("" if mode == "full" else f" [{mode} run]"), "",
                              spec.combine(group).strip(), ""]
                continue
            variant = ", ".join(f"{k}={v}" for k, v in entry["variant"].items() if k != "mode")
            heading = spec.title + (f" ({variant})" if variant else "")
            lines += [f"## {heading}" + ("" if mode == "full" else f" [{mode} run]"), "",
                      describe_run(entry) + ".", "",
                      "Settings: " + ", ".join(f"{k}={fmt(v) if not isinstance(v, dict) else json.dumps(v)}"
                                               for k, v in entry["settings"].items()) + ".", "",
                      table(entry["rows"], spec.columns), ""]
            for failure in entry.get("failures", []):
                lines.append(f"- failed: {failure}")
            if entry.get("failures"):
                lines.append("")
            note = spec.note(entry) if callable(spec.note) else spec.note
            if note:
                lines += [note.strip(), ""]
        return "\n".join(lines).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
