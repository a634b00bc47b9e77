#!/usr/bin/env bash
# Nsight Compute on one bench_ops row, on the GPU machine (ncu is in /usr/local/cuda/bin there;
# scripts/bundle-device.sh copies this script into the bundle):
#   cd .device && ./ncu-ops.sh "lm_head m1" gemv_kernel            # row text, kernel name regex
#   cd .device && ./ncu-ops.sh "norm_gate_up m1" gate_up_kernel --set full
# Runs `bench_ops --only ROW` under ncu and profiles one launch of the kernel (the second: the
# first is the row's warm-up call) with the sections that say what limits a streaming kernel;
# extra arguments go to ncu. SIESTA_DECODE_GEMV defaults to "all" here, so that the decode GEMV
# takes the LM head too (Ops::gemm leaves it to cuBLAS otherwise).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ $# -lt 2 ]]; then
  echo "usage: ncu-ops.sh ROW KERNEL_REGEX [ncu arguments...]" >&2
  exit 2
fi
row=$1 kernel=$2
shift 2
ncu=${NCU:-/usr/local/cuda/bin/ncu}
[[ -x $ncu ]] || { echo "ncu-ops.sh: no Nsight Compute at $ncu (set NCU)" >&2; exit 2; }
exec "$here/run.sh" env SIESTA_DECODE_GEMV="${SIESTA_DECODE_GEMV:-all}" "$ncu" \
  -k "regex:$kernel" -c 1 --launch-skip 1 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
  --section SchedulerStats --section LaunchStats --section Occupancy "$@" \
  ./bench_ops --only "$row" --warmup 0 --repeats 1
