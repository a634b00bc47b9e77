#!/usr/bin/env bash
# Installs every Debian 12 package siesta needs (idempotent), then configures and builds.
#   SIESTA_BUILD_DIR (default: build)   SIESTA_CUDA=AUTO|ON|OFF (default AUTO)
#   SIESTA_JOBS (default: 2)            SIESTA_SKIP_APT=1 skips the package step
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build ccache git pkg-config curl
          libcaf-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libboost-json1.81-dev
          libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev
          libcpp-httplib-dev nodejs)

if [[ "${SIESTA_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Debian's nodejs comes without npm (NodeSource's bundles it): ask for it only when absent.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if ((${#missing[@]})); then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# The official openai npm client used by the serve e2e tests (tests/serve; they skip without it).
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/serve/node --no-audit --no-fund >/dev/null \
    || echo "setup: npm ci --prefix tests/serve/node failed; the openai client tests will skip"
fi

BUILD_DIR=${SIESTA_BUILD_DIR:-build}
CUDA_FLAG=${SIESTA_CUDA:-AUTO}
# The CUDA toolkit is optional; use it where it is installed in the usual place.
if [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH=/usr/local/cuda/bin:$PATH; fi

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIESTA_CUDA="$CUDA_FLAG" >/dev/null
cmake --build "$BUILD_DIR" -j "${SIESTA_JOBS:-2}"
echo "setup: built $BUILD_DIR/bin/siesta (CUDA=$CUDA_FLAG)"
