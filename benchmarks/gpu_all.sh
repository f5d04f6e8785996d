#!/usr/bin/env bash
# Everything a session with a GPU runs, in one device call (about 8 minutes; give it timeout_s=600).
#
#   bash benchmarks/gpu_all.sh                    # on the GPU machine, from the repository root
#   NPA_REHEARSAL=1 bash benchmarks/gpu_all.sh    # here, without a GPU: the CPU parts, and what would run
#
# Needs no network and creates no venv: the machine's python3 (CuPy, torch with cuDNN, numba, pytest,
# pytest-xdist) finds npalexnet through PYTHONPATH. The training run needs the CIFAR-10 subset in
# gpu_data/cifar10-10k (git-ignored; `python benchmarks/make_gpu_data.py --data-dir ../shared/data/cifar10`),
# which the device call carries (benchmarks/RESULTS.md, GPU section, has the exact call).
#
# Steps, each under its own time limit and all under one budget (NPA_BUDGET_S, default 480 s), so
# that partial results still come back; the optional timings at the end run while budget is left:
#   1. the gpu-marked tests, CUDA kernels off and on, side by side (pytest-xdist, NPA_TEST_WORKERS each)
#   2. bench_train.py --device cuda: CIFAR net and paper net at batch 128 against PyTorch eager + cuDNN,
#      float32 with TF32 off on both, npalexnet with its defaults (the CUDA kernels on)
#   3. bench_cuda_kernels.py: each CUDA kernel and layer against the CuPy array code
#   4. examples/train_cifar10.py --device cuda, 3 epochs on the subset, seed 0 (CPU run: RESULTS.md)
#   5. bench_train.py again with TF32 on for both (CUPY_TF32=1; torch allow_tf32)
#   6. optional: bench_train.py with NPALEXNET_CUDA_KERNELS=0 (CuPy's array code), then with NPALEXNET_CONV=winograd
# Files in $OUT (default ./gpu_out; at most 8, as the device tool returns):
#   summary.txt     environment, one line per step (exit status, seconds), the results table
#   tests_off.txt   pytest -m gpu with NPALEXNET_CUDA_KERNELS=0 (the layers' array code on CuPy)
#   tests_on.txt    pytest -m gpu with NPALEXNET_CUDA_KERNELS=1 (the hand-written CUDA kernels)
#   bench.txt       the bench_train.py runs, one after the other
#   kernels.txt     bench_cuda_kernels.py
#   train_cuda.txt  the training run's log and its metrics.csv
#   results.jsonl   one JSON line per measurement (bench_train.py and bench_cuda_kernels.py --json)
# CuPy's kernel cache (CUPY_CACHE_DIR) and numba's are one folder each, shared by every step, so a
# kernel is compiled once per run, not once per step or per test worker.

set -u
cd "$(dirname "$0")/.."
REHEARSAL=${NPA_REHEARSAL:-0}
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORK=${NPA_WORK:-${TMPDIR:-/tmp}/npalexnet-gpu-run}
mkdir -p "$WORK"
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$WORK/cupy-cache} NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$WORK/numba-cache}
DATA=${NPA_GPU_DATA:-gpu_data/cifar10-10k}
BUDGET=${NPA_BUDGET_S:-480}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
RESULTS="$OUT/results.jsonl"
: >"$SUMMARY"
: >"$RESULTS"

note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME LIMIT_S OUTFILE CMD...: run CMD under min(LIMIT, budget left), appending to OUTFILE. In a
# rehearsal a step marked GPU=1 only says what it would run.
step() {
    local name=$1 limit=$2 file=$3
    shift 3
    local budget_left
    budget_left=$(left)
    if [ "$budget_left" -lt 20 ]; then
        note "$name: skipped (budget spent)"
        return
    fi
    [ "$limit" -gt "$budget_left" ] && limit=$budget_left
    echo "\$ $*   (limit ${limit}s)" >>"$file"
    if [ "$REHEARSAL" = 1 ] && [ "${GPU:-1}" = 1 ]; then
        note "$name: would run on the GPU: $*"
        return
    fi
    local t0
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >>"$file" 2>&1
    local rc=$?
    local timed_out=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then timed_out=" TIMED OUT"; fi
    note "$name: rc=$rc$timed_out ($(($(date +%s) - t0)) s) -> $(basename "$file")"
}

# 0. environment, and whether there is a GPU at all
{
    date -u
    if commit=$(git rev-parse HEAD 2>/dev/null); then   # the device machine's copy may hold no .git
        echo "commit: $commit$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
    else
        echo "commit: unknown (no git repository here)"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
    "$PY" - <<'EOF' 2>&1
import os, platform
import numpy
print("python", platform.python_version(), "numpy", numpy.__version__, "cores", os.cpu_count())
for name in ("cupy", "torch", "numba", "pytest", "xdist"):
    try:
        print(name, getattr(__import__(name), "__version__", "?"))
    except Exception as exc:
        print(name, "missing:", type(exc).__name__, exc)
import npalexnet
from npalexnet import backend
print("npalexnet", npalexnet.__version__, "sees CuPy + GPU:", backend.cupy_available(),
      "" if backend.cupy_available() else "(" + backend.cupy_unavailable_reason() + ")")
if backend.cupy_available():
    import cupy, torch
    print("GPU", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "CUDA runtime",
          cupy.cuda.runtime.runtimeGetVersion(), "torch CUDA", torch.version.cuda, "cuDNN",
          torch.backends.cudnn.version())
EOF
    if [ -d "$DATA" ]; then echo "data: $DATA ($(du -sh "$DATA" | cut -f1))"; else echo "data: $DATA MISSING"; fi
} >>"$SUMMARY" 2>&1
cat "$SUMMARY"
if [ "$REHEARSAL" != 1 ] && ! "$PY" -c "import sys, npalexnet.backend as b; sys.exit(0 if b.cupy_available() else 1)"; then
    note "no usable GPU here: nothing measured (NPA_REHEARSAL=1 rehearses the script without one)"
    exit 2
fi

# 1. gpu-marked tests, CUDA kernels off and on, side by side: each pytest gets half the cores
#    (one BLAS thread per worker); both share the kernel caches.
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n "${NPA_TEST_WORKERS:-7}")
TIMEOUT=()
"$PY" -c "import pytest_timeout" 2>/dev/null && TIMEOUT=(--timeout "${NPA_TEST_TIMEOUT_S:-120}")
PYTEST=("$PY" -m pytest -p no:cacheprovider -q -rfE --durations=10 -m gpu
        ${XDIST[@]+"${XDIST[@]}"} ${TIMEOUT[@]+"${TIMEOUT[@]}"} tests)
ONE_THREAD=(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1)
if [ "$REHEARSAL" = 1 ]; then
    # The tests themselves need the GPU; here: that they are collected, and how many.
    GPU=0 step tests_collect 120 "$OUT/tests_off.txt" "$PY" -m pytest -p no:cacheprovider -q --collect-only -m gpu tests
    tail -1 "$OUT/tests_off.txt" | sed 's/^/  /' | tee -a "$SUMMARY"
fi
step tests_off "${NPA_TESTS_S:-210}" "$OUT/tests_off.txt" env "${ONE_THREAD[@]}" NPALEXNET_CUDA_KERNELS=0 "${PYTEST[@]}" &
TESTS_OFF=$!
step tests_on "${NPA_TESTS_S:-210}" "$OUT/tests_on.txt" env "${ONE_THREAD[@]}" NPALEXNET_CUDA_KERNELS=1 "${PYTEST[@]}" &
TESTS_ON=$!
wait "$TESTS_OFF" "$TESTS_ON"

# 2-6. timings (one at a time: nothing else on the GPU)
bench() {   # bench NAME [ENV=VALUE...] -- [bench_train.py options]
    local name=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    echo "=== $name ${envs[*]-}" >>"$OUT/bench.txt"
    if [ "$REHEARSAL" = 1 ]; then   # the options must parse, as on the GPU
        GPU=0 step "${name}_options" 30 "$OUT/bench.txt" "$PY" -c \
            "import sys; sys.path.insert(0, 'benchmarks'); import bench_train as b; print(vars(b.parse_args(b.build_parser(), sys.argv[1:])))" \
            --device cuda "$@"
    fi
    step "$name" "${NPA_BENCH_S:-75}" "$OUT/bench.txt" env ${envs[@]+"${envs[@]}"} \
        "$PY" benchmarks/bench_train.py --device cuda --threads 4 --json "$RESULTS" "$@"
}
bench bench_cifar_fp32 -- --net cifar --batch 128
bench bench_paper_fp32 -- --net paper --batch 128
step kernels "${NPA_KERNELS_S:-60}" "$OUT/kernels.txt" \
    "$PY" benchmarks/bench_cuda_kernels.py --batch 128 --json "$RESULTS"

# The same command as the CPU run recorded in RESULTS.md, with --device cuda (the recipe's options that
# defaults may change are pinned, so that the two stay the same run).
TRAIN=(examples/train_cifar10.py --data-dir "$DATA" --epochs 3 --seed 0 --val-fraction 0.1 --ema 0 --dropout 0.3
       --out "$WORK/train_cifar10" --overwrite --no-progress)
if [ ! -d "$DATA" ]; then
    note "train_cuda: skipped: $DATA is missing (make it with benchmarks/make_gpu_data.py; carry it)"
else
    if [ "$REHEARSAL" = 1 ]; then   # the CPU half: the subset loads and a short run goes through the program
        GPU=0 step train_cpu_short 240 "$OUT/train_cuda.txt" "$PY" "${TRAIN[@]}" --device cpu --epochs 1 \
            --subset 512 --tta-crops 0
    fi
    step train_cuda "${NPA_TRAIN_S:-120}" "$OUT/train_cuda.txt" "$PY" "${TRAIN[@]}" --device cuda
    if [ -f "$WORK/train_cifar10/metrics.csv" ]; then
        { echo "--- metrics.csv"; cat "$WORK/train_cifar10/metrics.csv"; } >>"$OUT/train_cuda.txt"
    fi
fi

bench bench_cifar_tf32 -- --net cifar --batch 128 --tf32
bench bench_paper_tf32 -- --net paper --batch 128 --tf32
# Options to time while budget is left: the hand-written kernels off (what they buy); Winograd on CuPy for
# the 3x3 and 5x5 layers (decides the GPU default of conv).
bench bench_cifar_nokernels NPALEXNET_CUDA_KERNELS=0 -- --net cifar --batch 128
bench bench_paper_nokernels NPALEXNET_CUDA_KERNELS=0 -- --net paper --batch 128
bench bench_cifar_winograd NPALEXNET_CUDA_KERNELS=1 NPALEXNET_CONV=winograd -- --net cifar --batch 128
bench bench_paper_winograd NPALEXNET_CUDA_KERNELS=1 NPALEXNET_CONV=winograd -- --net paper --batch 128

# 7. the table: tests, training ratios, memory, kernels, training run against the CPU run
note "total: $(($(date +%s) - START)) s"
"$PY" benchmarks/gpu_summary.py "$OUT" | tee -a "$SUMMARY"
