#!/usr/bin/env bash
# Build (once) and print the path of the llama-cpp-python wheel for a CPU level.
#
#   scripts/llama-wheel.sh [portable|baseline|avx512|native]   (default: portable, or baseline on a CPU without AVX2)
#
# Why this exists: pip's default source build of llama-cpp-python compiles
# llama.cpp with -march=native. On some CPUs (seen: a Xeon with AVX-512 and AMX)
# that build segfaults inside llama_decode, and pip caches the wheel under a key
# that ignores CMAKE_ARGS and the CPU, so a wheel built with other flags, or on
# another machine sharing the cache, is reused silently. Here the flags live in
# the project, and each wheel lives in a folder named after exactly those flags
# (and, for `native`, the CPU it was built on); pip's cache is never used for it.
#
# Levels (their flags: CMAKE_ARGS in src/strop/backends/native.py):
#   portable  x86-64-v3: SSE4.2, AVX, AVX2, BMI2, FMA, F16C; no AVX-512, no AMX.
#             Runs on every x86-64 CPU since Intel Haswell (2013) and AMD Zen.
#   baseline  no SIMD extension beyond x86-64's SSE2: any x86-64 CPU, slowest.
#   avx512    x86-64-v4 without AMX, for CPUs with AVX-512 (opt-in).
#   native    -march=native for this machine's CPU: runs only on CPUs with the
#             same features (the key includes this CPU's flags), and not even
#             on every such CPU (seen: SIGILL on a Xeon with AMX in a VM).
# Environment: STROP_WHEELS (default ~/.cache/strop/wheels), PYTHON (default python3).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
# The flags live in one place, read here without installing strop (standard library only).
NAME=llama-wheel.sh
# shellcheck source=scripts/llama-level.sh
. "$HERE/llama-level.sh" "${1:-}"
KEY="$(build_key "llama-cpp-python==$VERSION $CMAKE_ARGS $($PYTHON -c 'import sys,platform; print(sys.implementation.cache_tag, platform.machine())')")"
DIR="${STROP_WHEELS:-$HOME/.cache/strop/wheels}/llama-cpp-python-$VERSION-$LEVEL-$KEY"
WHEEL="$(ls "$DIR"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$WHEEL" ]; then
  echo "llama-wheel.sh: compiling llama-cpp-python $VERSION ($LEVEL: $CMAKE_ARGS); about 10 minutes on 2 cores" >&2
  TMP="$DIR.tmp.$$"
  rm -rf "$TMP"; mkdir -p "$TMP"
  CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
    "$PYTHON" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python --progress-bar off \
      -w "$TMP" "llama-cpp-python==$VERSION" >&2
  printf '%s\n' "$CMAKE_ARGS" > "$TMP/CMAKE_ARGS"
  rm -rf "$DIR"; mv "$TMP" "$DIR"
  WHEEL="$(ls "$DIR"/llama_cpp_python-*.whl | head -n1)"
fi
printf '%s\n' "$WHEEL"
