"""Helpers shared by the benchmark scripts: timing, peak memory, machine info, output."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
ADBENCH = Path(os.environ.get("SKGENERATIVE_ADBENCH", Path(__file__).resolve().parents[2] / "shared" / "data" / "adbench"))


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


class Timer:
    def __init__(self):
        self.seconds = None


@contextmanager
def timed(sync_cuda: bool = True):
    """``with timed() as t: ...`` then ``t.seconds`` (waits for CUDA work)."""
    t = Timer()
    if sync_cuda and torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    yield t
    if sync_cuda and torch.cuda.is_available():
        torch.cuda.synchronize()
    t.seconds = time.perf_counter() - start


def _status(key: str) -> int:
    text = open("/proc/self/status").read()
    return int(re.search(key + r":\s+(\d+)", text).group(1)) * 1024


def reset_peak_rss() -> int:
    """Reset the process's peak resident memory (Linux) and return the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def peak_rss() -> int:
    return _status("VmHWM")


def write_results(name: str, payload: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=_jsonable))
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(f"\nwrote {RESULTS / (name + '.json')} and {RESULTS / (name + '.md')}")


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def merge_saved(name: str, key: str, results: dict, times: dict) -> tuple[dict, dict]:
    """Results of this run merged over those saved in results/<name>.json (this run wins)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return results, times
    saved = json.loads(path.read_text())
    merged = {**saved.get(key, {}), **results}
    merged_times = {**saved.get("times", {}), **times}
    return merged, merged_times
