#!/usr/bin/env bash
# Bundles the built binaries, the shared libraries the GPU machine lacks (CAF, yaml-cpp, ...),
# configs, a runner script and the GPU suite (scripts/device-suite.sh) into .device/
# (git-ignored), for the device tool's `carry` (64 MiB at most).
#   [SIESTA_BUNDLE_DIR=.device-x] scripts/bundle-device.sh [BUILD_DIR]
#   on the device: cd .device && ./run.sh CMD...   or   cd .device && ./device-suite.sh
# SIESTA_BUNDLE_TESTS=gpu (default: the gpu-label test binaries, test_*_gpu) or all.
# SIESTA_BUNDLE_OPENBLAS=1 also carries OpenBLAS (36 MB; the GPU machine has its own).
# Over 60 MiB (or with SIESTA_BUNDLE_PACK=1) the binaries and lib/ go into payload.tar.xz,
# which run.sh and device-suite.sh unpack there before anything runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${SIESTA_BUILD_DIR:-build}}
OUT=${SIESTA_BUNDLE_DIR:-.device}
exclude="$(git rev-parse --git-dir)/info/exclude"; mkdir -p "$(dirname "$exclude")"
grep -qxF '/.device*/' "$exclude" 2>/dev/null || echo '/.device*/' >> "$exclude"
rm -rf "$OUT" && mkdir -p "$OUT/lib"

bins=("$BUILD_DIR"/bin/siesta "$BUILD_DIR"/bin/bench_* "$BUILD_DIR"/bin/embed_*)
test_glob='test_*_gpu'
[[ ${SIESTA_BUNDLE_TESTS:-gpu} == all ]] && test_glob='test_*'
while IFS= read -r t; do bins+=("$t"); done < <(find "$BUILD_DIR/tests" -maxdepth 2 -type f -name "$test_glob" -perm -u+x)
for b in "${bins[@]}"; do
  [[ -f "$b" ]] || continue
  cp "$b" "$OUT/"
  strip "$OUT/$(basename "$b")" 2>/dev/null || true
done

# Carry what resolves to a Debian package library, except what every Linux (glibc, libstdc++,
# libgcc) or the GPU machine's own CUDA/NCCL installation provides.
skip='^(linux-vdso|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|ld-linux|libstdc\+\+|libgcc_s|libcuda\.so|libnccl|libcublas|libcudart)'
# OpenBLAS (and its Fortran runtime) is installed on the GPU machine and is 36 MB here.
[[ ${SIESTA_BUNDLE_OPENBLAS:-0} == 1 ]] || skip="${skip%)}|libopenblas|libgfortran|libquadmath)"
for b in "$OUT"/siesta "$OUT"/test_* "$OUT"/bench_* "$OUT"/embed_*; do
  [[ -f "$b" ]] || continue
  ldd "$b" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    [[ -f "$OUT/lib/$name" ]] || cp -L "$path" "$OUT/lib/$name"
  done
done
cp -r configs "$OUT/configs"
cp scripts/device-suite.sh "$OUT/device-suite.sh"
cp scripts/ncu-ops.sh "$OUT/ncu-ops.sh"
{
  echo "bundle: $(git rev-parse --short HEAD) ($(git log -1 --format=%cd --date=iso)), built in $BUILD_DIR"
  dirty=$(git status --short --untracked-files=no | wc -l)
  if [[ $dirty -gt 0 ]]; then echo "bundle: $dirty tracked files modified since that commit"; fi
} > "$OUT/bundle-info.txt"
cat > "$OUT/unpack.sh" <<'RUN'
#!/usr/bin/env bash
# Unpacks payload.tar.xz (binaries and lib/, packed when the bundle is over the carry limit)
# once per checkout; Python's tarfile, since the GPU machine's tools are not ours to choose.
here=$(cd "$(dirname "$0")" && pwd)
[[ -f "$here/payload.tar.xz" && ! -f "$here/.unpacked" ]] || exit 0
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
  "$here/payload.tar.xz" "$here" && touch "$here/.unpacked"
RUN
cat > "$OUT/run.sh" <<'RUN'
#!/usr/bin/env bash
# Usage on the GPU machine: ./run.sh CMD...   (sets the library path for the carried libs)
here=$(cd "$(dirname "$0")" && pwd)
"$here/unpack.sh" || { echo "run.sh: could not unpack payload.tar.xz" >&2; exit 1; }
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
export SIESTA_CONFIGS="$here/configs" NCCL_NVLS_ENABLE=0
cd "$here" && exec "$@"
RUN
cat > "$OUT/gpu-tests.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every test binary of the gpu label (test_*_gpu), then prints one summary line.
here=$(cd "$(dirname "$0")" && pwd); pass=0; fail=0
"$here/unpack.sh" || { echo "gpu-tests.sh: could not unpack payload.tar.xz" >&2; exit 1; }
for t in "$here"/test_*_gpu; do
  [[ -x "$t" ]] || continue
  if "$here/run.sh" "$t" "$@"; then pass=$((pass+1)); else fail=$((fail+1)); fi
done
echo "gpu test binaries: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
RUN
chmod +x "$OUT/run.sh" "$OUT/gpu-tests.sh" "$OUT/device-suite.sh" "$OUT/unpack.sh" "$OUT/ncu-ops.sh"
size_mib=$(du -sm "$OUT" | awk '{print $1}')
n_bins=$(find "$OUT" -maxdepth 1 -type f \( -name 'test_*' -o -name 'bench_*' \) | wc -l)
# Over the limit (or SIESTA_BUNDLE_PACK=1): binaries and libraries travel as one xz archive
# (74 MiB of binaries pack into ~12 MiB), unpacked there by run.sh / device-suite.sh.
if (( size_mib > 60 )) || [[ ${SIESTA_BUNDLE_PACK:-0} == 1 ]]; then
  packed=()
  while IFS= read -r f; do packed+=("$(basename "$f")"); done < <(
    find "$OUT" -maxdepth 1 -type f -perm -u+x \( -name 'siesta' -o -name 'test_*' -o -name 'bench_*' -o -name 'embed_*' \))
  tar -C "$OUT" -cf - "${packed[@]}" lib | xz -T2 -6 > "$OUT/payload.tar.xz"
  (cd "$OUT" && rm -rf "${packed[@]}" lib)
  echo "bundle: packed ${#packed[@]} binaries and lib/ (${size_mib} MiB) into payload.tar.xz"
  size_mib=$(du -sm "$OUT" | awk '{print $1}')
fi
echo "bundle: ${size_mib} MiB in $OUT ($n_bins test/bench binaries)"
(( size_mib <= 64 )) || echo "bundle: WARNING: over the 64 MiB the device tool carries" >&2
