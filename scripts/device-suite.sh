#!/usr/bin/env bash
# The whole GPU suite in ONE device command: every gpu-label test binary, then every benchmark,
# each under `timeout`, all inside an overall budget (default 540 s, so that the device tool's
# 600 s limit is never hit). scripts/bundle-device.sh copies this script into the bundle; run
# it there:
#   cd .device-x && ./device-suite.sh                 # everything
#   cd .device-x && ./device-suite.sh test_model_gpu bench_decode   # only these items
# Results go to $OUT (the device tool's folder; ./out when unset), at most 5 files:
#   summary.txt   one line per item (status, seconds, tests passed/failed, bench checks)
#   bench.jsonl   every benchmark row (JSON Lines, with the limit and ratio)
#   suite.log     every item's full output, in order
#   logs.tar.gz   the same per item, plus gtest JSON reports
#   env.txt       GPU, driver, bundle commit, missing libraries
# The summary and a compact table of the benchmark rows are printed at the end.
# Environment: SUITE_BUDGET_S (540), SUITE_SCALE (1.0: multiplies every item's timeout).
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here" || exit 1
if [[ -x ./unpack.sh ]] && ! ./unpack.sh; then echo "device-suite: could not unpack payload.tar.xz"; exit 1; fi
out=${OUT:-$here/out}
mkdir -p "$out"
logs=$(mktemp -d)
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
export SIESTA_CONFIGS="$here/configs" NCCL_NVLS_ENABLE=0
budget=${SUITE_BUDGET_S:-540}
scale=${SUITE_SCALE:-1.0}
start=$(date +%s)

# name | timeout (s) | arguments; "?name" is optional (absent from the bundle is no failure).
# Tests first (cheap, and a failing test explains a strange benchmark), then the benchmarks,
# the longest last.
items=(
  "test_kernels_gpu|60|"
  "test_ops_gpu|120|"
  "test_allocator_gpu|120|"
  "test_model_gpu|120|"
  "test_train_gpu|120|"
  "test_infer_gpu|150|"
  "test_comm_gpu|90|"
  "test_comm_engine_gpu|90|"
  "bench_gemm|90|"
  "bench_ops|60|"
  "bench_train_step|120|"
  "bench_decode|120|--profile"
  "?bench_serving|120|"
  "bench_weight_sync|120|"
  "bench_actors|90|"
  "bench_sleep_wake|180|"
  "bench_allocator|200|--warmup 1 --repeats 3"
)
want=" $* "

{
  echo "date: $(date -u +%FT%TZ)"
  [[ -f bundle-info.txt ]] && cat bundle-info.txt
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
  echo "cpus: $(nproc), host memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  for b in test_* bench_*; do
    [[ -x "$b" ]] || continue
    missing=$(ldd "./$b" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ')
    [[ -n "$missing" ]] && echo "MISSING LIBRARIES for $b: $missing"
  done
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

: > "$out/summary.txt"
: > "$out/suite.log"
rm -f "$out/bench.jsonl"
for item in "${items[@]}"; do
  IFS='|' read -r name limit args <<< "$item"
  optional=0
  if [[ $name == \?* ]]; then optional=1; name=${name#\?}; fi
  if [[ -n "${*:-}" && "$want" != *" $name "* ]]; then continue; fi
  if [[ ! -x "./$name" ]]; then
    status=MISSING
    (( optional )) && status=absent
    printf '%-22s %-8s %5s  %s\n' "$name" "$status" - "not in the bundle" | tee -a "$out/summary.txt"
    continue
  fi
  left=$(( budget - ($(date +%s) - start) ))
  limit=$(awk -v l="$limit" -v s="$scale" 'BEGIN {printf "%d", l * s}')
  (( limit > left - 5 )) && limit=$(( left - 5 ))
  if (( limit < 15 )); then
    printf '%-22s %-8s %5s  %s\n' "$name" SKIPPED - "suite budget of ${budget}s used up" | tee -a "$out/summary.txt"
    continue
  fi
  log="$logs/$name.log"
  extra=()
  if [[ $name == test_* ]]; then extra=(--gtest_color=no "--gtest_output=json:$logs/$name.json")
  else extra=(--jsonl "$out/bench.jsonl"); fi
  t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout -k 10 "$limit" "./$name" $args "${extra[@]}" > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124|137) status=TIMEOUT ;;
    *) status="FAIL($rc)" ;;
  esac
  if [[ $name == test_* ]]; then
    passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    failed=$(grep -oE '^\[  FAILED  \] [0-9]+ tests?,' "$log" | grep -oE '[0-9]+' | tail -1)
    skipped=$(grep -oE '^\[  SKIPPED \] [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    detail="passed ${passed:-0}, failed ${failed:-0}, skipped ${skipped:-0}"
    names=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sed 's/^\[  FAILED  \] //; s/ (.*//' | sort -u | tr '\n' ' ')
    [[ -n "$names" ]] && detail="$detail: $names"
  else
    rows=$(grep -c '^# ' "$log")
    bad=$(grep '^# ' "$log" | grep -vc ' check=ok$')
    detail="rows $rows, failed checks $bad"
  fi
  printf '%-22s %-8s %4ss  %s\n' "$name" "$status" "$secs" "$detail" | tee -a "$out/summary.txt"
  { echo "=================== $name ($status, ${secs}s, timeout ${limit}s) $args"; cat "$log"; } >> "$out/suite.log"
done
total=$(( $(date +%s) - start ))
echo "total ${total}s of a ${budget}s budget" | tee -a "$out/summary.txt"
# Figures the GPU tests print (bf16 errors, memory after sleep, CPU/GPU losses).
if compgen -G "$logs/test_*.log" > /dev/null; then
  echo "-- figures printed by the tests"
  grep -hE '^(\[(tiny|small)\]|device used|first step|loss on the fixed)' "$logs"/test_*.log | sed 's/^/  /'
fi
tar -czf "$out/logs.tar.gz" -C "$logs" . 2>/dev/null
rm -rf "$logs"

# A compact table of the benchmark rows: key columns, achieved / limit, ratio, failed checks.
if command -v python3 >/dev/null && [[ -s "$out/bench.jsonl" ]]; then
  python3 - "$out/bench.jsonl" <<'PY'
import json, sys
keys = {
    "bench_gemm": ["shape", "c"], "bench_ops": ["op", "size"], "train_step": ["what", "shape"],
    "decode": ["what", "batch", "tpot_ms", "launch_ms", "roofline_ms"], "sleep_wake": ["preset", "op", "ms"],
    "allocator": ["op", "size", "chunk", "target"],
    "weight_sync": ["preset", "src", "path", "bucket_MiB", "ms"],
}
fixed = {"bench", "achieved", "limit", "unit", "ratio", "check"}
def fmt(v):
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)
last = None
hidden = {}
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    b = r.get("bench", "?")
    # The full allocator / weight-sync grids are in bench.jsonl; show the headline rows here.
    if (b == "allocator" and r.get("chunk") != "1.00 GiB" and r.get("op") != "discard+wake") or \
       (b == "weight_sync" and (r.get("path") != "fused" or r.get("src") != "BF16")):
        hidden[b] = hidden.get(b, 0) + 1
        continue
    if b != last:
        print(f"-- {b}")
        last = b
    cols = keys.get(b) or [k for k in r if k not in fixed and isinstance(r[k], str)]
    desc = " ".join(f"{fmt(r[k])}" if k in ("shape", "op", "what", "preset", "path", "size", "chunk", "src", "c")
                    else f"{k}={fmt(r[k])}" for k in cols if k in r)
    ratio = r.get("ratio")
    ratio = f"{100 * ratio:.1f}%" if isinstance(ratio, (int, float)) else "-"
    check = "" if r.get("check") == "ok" else f"  CHECK: {r.get('check')}"
    print(f"  {desc:<46} {fmt(r.get('achieved'))} / {fmt(r.get('limit'))} {r.get('unit')} = {ratio}{check}")
for b, n in hidden.items():
    print(f"({b}: {n} more rows, other chunk sizes / paths, in bench.jsonl)")
PY
fi
echo "== summary =="
cat "$out/summary.txt"
! grep -qE ' (FAIL|TIMEOUT|MISSING)' "$out/summary.txt"
