#!/usr/bin/env bash
# Issue 15's validation ruler on a GPU: several recipes x seeds of the training program, side by side on one
# GPU, in one device call (the CPU takes 75-90 minutes for one pair of 30-epoch runs; an H200 took 11 s an
# epoch with eight runs sharing it, 2026-12-04).
#
#   bash benchmarks/gpu_ruler.sh ref: "nobias:--no-bias-decay" "drop04:--dropout 0.4"   # NAME:OPTIONS ...
#
# Each recipe runs `examples/train_cifar10.py --val-fraction 0.1 --seed S --no-test` plus its options, once
# per seed (NPA_RULER_SEEDS, default "0 1"); NPA_RULER_EPOCHS (default 30) and NPA_RULER_EXTRA (more options
# for every run, e.g. "--subset 2000") shape them all. The data is the JPEG tree of ../shared/data/cifar10,
# carried as one archive (the tree itself is 60,000 files; the archive 19.8 MB):
#
#   tar czf gpu_data/cifar10-jpeg.tgz -C ../shared/data cifar10       # here, once (gpu_data/ is git-ignored)
#   run(command="bash benchmarks/gpu_ruler.sh ref: ...", carry=["gpu_data"], timeout_s=480)
#
# The same files give the same split, weights, order, crops, flips and masks as the CPU ruler: the GPU runs
# differ from it by float32 rounding alone (benchmarks/RESULTS.md, issue 15, nineteenth round: within 0.36 and
# 0.6 points of the CPU curves at every epoch). Every 10 s the metrics of all runs so far are written to
# $OUT/ruler_metrics.txt, so a call stopped by its time limit still brings back every finished epoch; at the
# end $OUT/ruler_summary.txt has each run's last epoch, and its last weights scored on the validation images
# with the final test's ten views (`--evaluate RUN/last.npz --split validation`). Six runs at 30 epochs fit a
# 480 s call (expected from eight at 11 s an epoch; not measured).
#
# NPA_RULER_DEVICE=cpu runs the same thing on the CPU (the tests rehearse the script so, on a tiny tree).

set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
ARCHIVE=${NPA_RULER_ARCHIVE:-gpu_data/cifar10-jpeg.tgz}
SEEDS=${NPA_RULER_SEEDS:-0 1}
EPOCHS=${NPA_RULER_EPOCHS:-30}
DEVICE=${NPA_RULER_DEVICE:-cuda}
WORK=${NPA_WORK:-${TMPDIR:-/tmp}/npalexnet-gpu-ruler}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$WORK/cupy-cache} NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$WORK/numba-cache}
export NPALEXNET_CACHE=$WORK/decoded   # one decode of the tree for all runs (the store's lock makes the others wait)

if [ $# -eq 0 ]; then
    echo "usage: bash benchmarks/gpu_ruler.sh NAME:OPTIONS ... (e.g. ref: \"drop04:--dropout 0.4\")" >&2
    exit 2
fi
if [ ! -f "$ARCHIVE" ]; then
    echo "gpu_ruler: $ARCHIVE is missing: tar czf $ARCHIVE -C ../shared/data cifar10 (and carry gpu_data)" >&2
    exit 2
fi
for recipe in "$@"; do
    case $recipe in
        *:*) ;;
        *) echo "gpu_ruler: '$recipe' is not NAME:OPTIONS (an empty OPTIONS is the defaults: 'ref:')" >&2; exit 2 ;;
    esac
done

rm -rf "$WORK/data" "$WORK/runs"
mkdir -p "$WORK/data" "$WORK/runs"
tar xzf "$ARCHIVE" -C "$WORK/data" || { echo "gpu_ruler: cannot unpack $ARCHIVE" >&2; exit 2; }
DATA=$(find "$WORK/data" -mindepth 1 -maxdepth 1 -type d | head -1)
START=$(date +%s)
for recipe in "$@"; do
    name=${recipe%%:*}
    options=${recipe#*:}
    for seed in $SEEDS; do
        # shellcheck disable=SC2086  # the options are words
        "$PY" examples/train_cifar10.py --data-dir "$DATA" --val-fraction 0.1 --seed "$seed" --no-test \
            --epochs "$EPOCHS" --device "$DEVICE" --no-progress --out "$WORK/runs/$name-s$seed" \
            $options ${NPA_RULER_EXTRA:-} >"$WORK/runs/$name-s$seed.log" 2>&1 &
    done
done

collect() {   # every run's metrics.csv so far, and the last lines of every log
    {
        for log in "$WORK"/runs/*.log; do
            run=$(basename "$log" .log)
            echo "== $run"
            if [ -f "$WORK/runs/$run/metrics.csv" ]; then cat "$WORK/runs/$run/metrics.csv"; fi
            grep -v "^epoch " "$log" | tail -n 2 | sed 's/^/# /'
        done
    } >"$OUT/ruler_metrics.txt" 2>/dev/null
}
while [ -n "$(jobs -r)" ]; do
    sleep "${NPA_RULER_POLL_S:-10}"
    collect
done
FAILED=0
for job in $(jobs -p); do wait "$job" || FAILED=$((FAILED + 1)); done
collect
# Each run's last weights on its validation images with the final test's ten views (--split validation): the
# score of the protocol the recipe is finally tested with, which averages away part of what one pair of 2-view
# validation scores differs by. All side by side; their lines go to RUN.views10.
for log in "$WORK"/runs/*.log; do
    run=$(basename "$log" .log)
    if [ -f "$WORK/runs/$run/last.npz" ]; then
        "$PY" examples/train_cifar10.py --evaluate "$WORK/runs/$run/last.npz" --split validation --data-dir "$DATA" \
            --device "$DEVICE" --no-progress >"$WORK/runs/$run.views10" 2>&1 &
    fi
done
wait
"$PY" - "$WORK/runs" "$EPOCHS" "$(($(date +%s) - START))" <<'EOF' | tee "$OUT/ruler_summary.txt"
import csv, re, sys
from pathlib import Path

runs, epochs, seconds = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def ten_views(log):
    """The run's --evaluate --split validation score (the test's views), or '-'."""
    scored = log.with_suffix(".views10")
    found = re.search(r"^validation accuracy: (\d+\.\d+)%", scored.read_text(), re.M) if scored.is_file() else None
    return f"{found.group(1)}%" if found else "-"


print(f"{'run':24s} {'epochs':>6s} {'val top-1':>9s} {'val loss':>8s} {'train top-1':>11s} {'s/epoch':>7s} "
      f"{'val 10 views':>12s}")
for log in sorted(runs.glob("*.log")):
    metrics = log.with_suffix("") / "metrics.csv"
    rows = list(csv.DictReader(metrics.open())) if metrics.is_file() else []
    if not rows:
        print(f"{log.stem:24s} {'-':>6s}  no epoch finished: {log}")
        continue
    last = rows[-1]
    mean = sum(float(r["epoch_seconds"]) for r in rows) / len(rows)
    print(f"{log.stem:24s} {len(rows):>3d}/{epochs:<2d} {100 * float(last['val_acc']):8.2f}% {float(last['val_loss']):8.4f} "
          f"{100 * float(last['train_acc']):10.2f}% {mean:7.1f} {ten_views(log):>12s}")
print(f"{seconds} s in all")
EOF
exit $((FAILED > 0))
