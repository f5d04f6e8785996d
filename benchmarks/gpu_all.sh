#!/usr/bin/env bash
# Everything a session with a GPU should run, in one call (about 10 minutes at most).
#
#   bash benchmarks/gpu_all.sh          # from the repository root; the device tool: timeout_s=600
#
# Needs no internet and creates no venv: it uses the machine's python3 (CuPy, torch,
# numba, pytest preinstalled) and finds npalexnet through PYTHONPATH. Steps, each
# under its own time limit and all under one overall budget (NPA_BUDGET_S, default
# 570 s), so partial results still come back:
#   1. env.txt          GPU, driver, versions
#   2. tests_on.txt     the whole test suite with NPALEXNET_CUDA_KERNELS=1: every
#                       gpu-marked test runs, the layers' CuPy tests go through the CUDA kernels
#   3. kernels.txt      benchmarks/bench_cuda_kernels.py: each kernel vs the CuPy array code
#   4. bench_cifar.txt  benchmarks/bench_train.py --device cuda --net cifar --batch 128,
#                       CUDA kernels off, then on
#   5. bench_paper.txt  the same for --net paper --batch 128; both files end with a run whose
#                       3x3 layers use Winograd (NPALEXNET_CONV=winograd) instead of im2col
#   6. tests_off.txt    the gpu-marked tests with NPALEXNET_CUDA_KERNELS=0 (the CuPy array-code
#                       path; NumPy tests do not depend on the switch and ran in step 2)
#   7. summary.txt      one line per step (exit status, seconds) and the key result lines
# All files go to $OUT (default ./gpu_out): at most 8 files, as the device tool returns.
#
# The CUDA kernels may be switched on by default (cuda_dispatch.py) only once
# tests_on.txt shows no failures on a real GPU and kernels.txt shows they pay.

set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export NPALEXNET_DEVICE=auto
BUDGET=${NPA_BUDGET_S:-570}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

# step NAME LIMIT_S OUTFILE CMD...: run CMD under min(LIMIT, what is left of the budget), append to OUTFILE
step() {
    local name=$1 limit=$2 file=$3
    shift 3
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt 15 ]; then
        echo "$name: skipped (budget spent)" | tee -a "$SUMMARY"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$(date +%s)
    echo "\$ $*   (limit ${limit}s)" >>"$file"
    timeout --kill-after=5 "$limit" "$@" >>"$file" 2>&1
    local rc=$?
    local note=""
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note=" TIMED OUT"
    echo "$name: rc=$rc$note ($(($(date +%s) - t0)) s) -> $(basename "$file")" | tee -a "$SUMMARY"
}

# 1. environment
{
    date -u
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    "$PY" - <<'EOF' 2>&1
import platform, numpy
print("python", platform.python_version(), "numpy", numpy.__version__)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as exc:
    print("cupy: NOT USABLE:", type(exc).__name__, exc)
for name in ("torch", "numba", "pytest"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:
        print(name, "missing:", exc)
import npalexnet
print("npalexnet sees CuPy+GPU:", npalexnet.cupy_available())
EOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >>"$SUMMARY"

# pytest-xdist spreads the suite over the 16 cores when present; each worker holds a CUDA context.
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n "${NPA_TEST_WORKERS:-8}")
PYTEST=("$PY" -m pytest -p no:cacheprovider -q -rfE --durations=15 ${XDIST[@]+"${XDIST[@]}"})

# 2. all tests, CUDA kernels on
step tests_on "${NPA_TESTS_ON_S:-200}" "$OUT/tests_on.txt" env NPALEXNET_CUDA_KERNELS=1 "${PYTEST[@]}" tests

# 3. per-kernel timings
step kernels "${NPA_KERNELS_S:-60}" "$OUT/kernels.txt" "$PY" benchmarks/bench_cuda_kernels.py --batch 128

# 4-5. training benchmarks against PyTorch (benchmarks/bench_train.py, another engineer's script)
for net in cifar paper; do
    file="$OUT/bench_$net.txt"
    if [ ! -f benchmarks/bench_train.py ]; then
        echo "benchmarks/bench_train.py not found" | tee -a "$file" "$SUMMARY"
        continue
    fi
    for kernels in 0 1; do
        echo "=== NPALEXNET_CUDA_KERNELS=$kernels ===" >>"$file"
        step "bench_${net}_kernels$kernels" "${NPA_BENCH_S:-60}" "$file" \
            env NPALEXNET_CUDA_KERNELS=$kernels "$PY" benchmarks/bench_train.py --device cuda --net "$net" --batch 128
    done
    # Winograd F(2x2, 3x3) (array code on CuPy) instead of im2col for the 3x3 layers: decides
    # whether "auto" should take it on the GPU too (conv.py, Conv2d.resolved_algorithm).
    echo "=== NPALEXNET_CUDA_KERNELS=1 NPALEXNET_CONV=winograd ===" >>"$file"
    step "bench_${net}_winograd" "${NPA_BENCH_S:-60}" "$file" \
        env NPALEXNET_CUDA_KERNELS=1 NPALEXNET_CONV=winograd "$PY" benchmarks/bench_train.py --device cuda --net "$net" --batch 128
done

# 6. gpu-marked tests, CUDA kernels off: the CuPy array-code path
step tests_off "${NPA_TESTS_OFF_S:-150}" "$OUT/tests_off.txt" env NPALEXNET_CUDA_KERNELS=0 "${PYTEST[@]}" -m gpu tests

# 7. summary: the lines that matter from each file
{
    echo
    echo "--- test results"
    for f in tests_on tests_off; do
        [ -f "$OUT/$f.txt" ] && echo "$f: $(grep -E ' in [0-9.]+s' "$OUT/$f.txt" | tail -1)"
    done
    [ -f "$OUT/tests_on.txt" ] && grep -E '^(FAILED|ERROR)' "$OUT/tests_on.txt" | head -20
    echo "--- kernels"
    [ -f "$OUT/kernels.txt" ] && grep -E 'sum of the rows|largest relative|device:' "$OUT/kernels.txt"
    echo "--- training benchmarks (last lines)"
    for net in cifar paper; do
        [ -f "$OUT/bench_$net.txt" ] && echo "[$net]" && grep -v '^\$' "$OUT/bench_$net.txt" | tail -12
    done
    echo "total: $(($(date +%s) - START)) s"
} >>"$SUMMARY" 2>&1
cat "$SUMMARY"
