"""Run every benchmark script in turn, then rebuild the README's table (``make benchmarks``).

Extra arguments are passed to every script, so only the ones they all take make sense
here: ``--quick``, ``--smoke`` and ``--results-dir DIR``. Each script merges its
figures into ``benchmarks/results/<name>.json`` (and ``.md``); then
``readme_table.py`` rewrites the README's benchmark table from those files (not
after ``--smoke`` or ``--results-dir``, whose results are not the published ones).
To rerun one figure or setting, run its script with its own options (``--help``).
"""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n===== {script.name} {' '.join(argv)} =====", flush=True)
        start = time.perf_counter()
        if subprocess.run([sys.executable, str(script), *argv]).returncode != 0:
            failed.append(script.name)
        print(f"===== {script.name}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    if "--smoke" not in argv and not any(a.startswith("--results-dir") for a in argv):
        return subprocess.run([sys.executable, str(HERE / "readme_table.py")]).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
