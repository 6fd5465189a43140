#!/usr/bin/env bash
# Runs every test of dsv3: installs dependencies, builds, runs ctest (unit tests, reference
# parity, CLI tests), then the same under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc)
echo "== release build"
BUILD_DIR=build scripts/build.sh
(cd build && ctest --output-on-failure -j"$jobs")

if [ -z "${DSV3_SKIP_SANITIZERS:-}" ]; then
  echo "== ASan + UBSan build"
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh -DDSV3_SANITIZE=ON -DDSV3_BUILD_BENCH=OFF
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && DSV3_QUICK=1 ctest --output-on-failure -j"$jobs")
fi
echo "all tests passed"
