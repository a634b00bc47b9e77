#!/usr/bin/env bash
# Runs every test (labels unit, e2e and gpu; GPU tests skip with a reason where no GPU is
# present). Extra arguments go to ctest, e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SIESTA_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${SIESTA_JOBS:-2}" "$@"
