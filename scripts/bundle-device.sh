#!/usr/bin/env bash
# Bundles the built binaries, the shared libraries the GPU machine lacks (CAF, yaml-cpp, ...),
# configs and a runner script into .device/ (git-ignored), for the device tool's `carry`.
#   [SIESTA_BUNDLE_DIR=.device-x] scripts/bundle-device.sh [BUILD_DIR]; on the device: cd .device && ./run.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${SIESTA_BUILD_DIR:-build}}
OUT=${SIESTA_BUNDLE_DIR:-.device}
exclude="$(git rev-parse --git-dir)/info/exclude"; mkdir -p "$(dirname "$exclude")"
grep -qxF '/.device*/' "$exclude" 2>/dev/null || echo '/.device*/' >> "$exclude"
rm -rf "$OUT" && mkdir -p "$OUT/lib"

bins=("$BUILD_DIR"/bin/siesta "$BUILD_DIR"/bin/bench_* "$BUILD_DIR"/bin/example_*)
while IFS= read -r t; do bins+=("$t"); done < <(find "$BUILD_DIR/tests" -maxdepth 2 -type f -name 'test_*' -perm -u+x)
for b in "${bins[@]}"; do
  [[ -f "$b" ]] || continue
  cp "$b" "$OUT/"
  strip "$OUT/$(basename "$b")" 2>/dev/null || true
done

# Carry what resolves to a Debian package library, except what every Linux (glibc, libstdc++,
# libgcc) or the GPU machine's own CUDA/NCCL installation provides.
skip='^(linux-vdso|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|ld-linux|libstdc\+\+|libgcc_s|libcuda\.so|libnccl|libcublas|libcudart)'
for b in "$OUT"/siesta "$OUT"/test_* "$OUT"/bench_* "$OUT"/example_*; do
  [[ -f "$b" ]] || continue
  ldd "$b" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    [[ -f "$OUT/lib/$name" ]] || cp -L "$path" "$OUT/lib/$name"
  done
done
cp -r configs "$OUT/configs"
cat > "$OUT/run.sh" <<'RUN'
#!/usr/bin/env bash
# Usage on the GPU machine: ./run.sh CMD...   (sets the library path for the carried libs)
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
export SIESTA_CONFIGS="$here/configs" NCCL_NVLS_ENABLE=0
cd "$here" && exec "$@"
RUN
cat > "$OUT/gpu-tests.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every test binary of the gpu label (test_*_gpu), then prints one summary line.
here=$(cd "$(dirname "$0")" && pwd); pass=0; fail=0
for t in "$here"/test_*_gpu; do
  [[ -x "$t" ]] || continue
  if "$here/run.sh" "$t" "$@"; then pass=$((pass+1)); else fail=$((fail+1)); fi
done
echo "gpu test binaries: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
RUN
chmod +x "$OUT/run.sh" "$OUT/gpu-tests.sh"
du -sh "$OUT" | awk '{print "bundle: " $1 " in .device/"}'
