#!/usr/bin/env bash
# The checks of one GPU run, prepared so that a session lent a GPU (the `device` tool:
# 15 minutes of device time, 10 per command) spends them measuring: the whole test suite
# on the GPU, then the GPU figures the issues ask for. Logs and results land in $OUT.
#
#   here, once:   mkdir -p .gpu_data && cp -r ../shared/data/mixed .gpu_data/   (.gpu_data is ignored)
#   the device:   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_data"], timeout_s=590)
#
# The device image has python3 with CUDA torch, scikit-learn, scipy, pandas, joblib and
# pytest (+ xdist); the package runs from the tree (PYTHONPATH), nothing is installed.
# Every estimator's default device is "auto", so on that machine the suite's fits run on
# the GPU (SKGENERATIVE_TEST_DEVICE=cuda adds the contract tests' explicit device). Tests
# needing dask, sdmetrics, SDV or PyOD skip there. Each step has its own time limit, so a
# hang costs its step, not the run: tests 270 s, #22's full-Adult figure on the GPU 110 s
# and on the machine's CPU 70 s (same process settings, for the ratio), the EM figure
# against scikit-learn 60 s.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT/results"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SKGENERATIVE_MIXED="${SKGENERATIVE_MIXED:-$PWD/.gpu_data/mixed}"
PY=${PYTHON:-python3}
{ nvidia-smi; $PY -c "import torch, sklearn, scipy, pandas; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'sklearn', sklearn.__version__, 'scipy', scipy.__version__, 'pandas', pandas.__version__)"; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt" | tail -1
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
SKGENERATIVE_TEST_DEVICE=cuda timeout 270 $PY -m pytest -q -p no:cacheprovider $XDIST --maxfail=40 -rfE ${GPU_CHECK_TESTS:-tests/} \
    > "$OUT/tests_cuda.log" 2>&1
echo "tests: exit $? (124: timed out); $(tail -1 "$OUT/tests_cuda.log")"
R="--results-dir $OUT/results --threads default"
timeout 110 $PY benchmarks/bench_synth.py --speed --tables adult_full --device cuda --repeats 3 $R > "$OUT/figures.log" 2>&1
echo "synth cuda: exit $?"
timeout 70 $PY benchmarks/bench_synth.py --speed --tables adult_full --device cpu --repeats 1 $R >> "$OUT/figures.log" 2>&1
echo "synth cpu: exit $?"
timeout 60 $PY benchmarks/bench_foundation.py --quick --only gmm --device cuda $R >> "$OUT/figures.log" 2>&1
echo "foundation cuda: exit $?"
grep -h "median_s\|TVAE\|GaussianMixtureDensity" "$OUT/results/"*.md 2>/dev/null | head -20
