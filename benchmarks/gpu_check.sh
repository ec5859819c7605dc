#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md §4 in one script, for a machine with an NVIDIA GPU and jax[cuda].
#
#   bash benchmarks/gpu_check.sh OUTDIR [MAX_WALL_S] [TEST_S]
#
# 1. the card, driver and package versions            -> OUTDIR/gpu.txt
# 2. benchmarks/throughput.py --sweep gpu (tasks 1 … 4096, per-task loop at 64 and 1024 tasks, the
#    torch reference (needs torch and gymnasium) at 64 tasks,
#    rollout limit everywhere; no new row after MAX_WALL_S, default 380)
#                                                     -> OUTDIR/throughput_gpu.{json,md,png,log}
# 3. for what time is left (TEST_S, default 90): the numerics tests on this backend
#    (a GPU runs f32 matmuls with TF32 by default, so tight-tolerance tests may differ)
#                                                     -> OUTDIR/tests_gpu.log
# Each step writes as it goes, so a run cut short keeps what it measured.
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR [MAX_WALL_S] [TEST_S]}
MAX_WALL=${2:-380}
TEST_S=${3:-90}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nproc
  $PY - <<'EOF'
import importlib.metadata as md
import jax
print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())
for p in ("jaxlib", "flax", "optax", "chex", "gymnax", "gymnasium", "orbax-checkpoint", "numpy"):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, "not installed")
EOF
} 2>&1 | tee "$OUT/gpu.txt" || exit 1

$PY benchmarks/throughput.py --sweep gpu --max-wall "$MAX_WALL" \
    --out "$OUT/throughput_gpu.json" --md "$OUT/throughput_gpu.md" 2>&1 | tee "$OUT/throughput_gpu.log"

# several pytest workers share the one GPU: no preallocation; SIGINT at the limit so that pytest
# still prints its summary of what ran
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout -s INT -k 15 "$TEST_S" $PY -m pytest -q -rfE -n 8 -p no:cacheprovider -p no:benchmark \
    tests/test_meta.py tests/test_losses.py tests/test_replay.py tests/test_tasks.py tests/test_recompile.py \
    > "$OUT/tests_gpu.log" 2>&1
echo "tests exit $?" >> "$OUT/tests_gpu.log"
grep -E "^(FAILED|ERROR)|passed|failed|tests exit" "$OUT/tests_gpu.log" | tail -30
