#!/usr/bin/env bash
# Build (once) llama.cpp's own OpenAI-compatible server and print its path.
#
#   scripts/llama-server.sh [portable|baseline|avx512|native]   (default: as scripts/llama-wheel.sh)
#
# What for: the openai backend sends up to `concurrency` requests at once so that
# a server with parallel slots decodes them in one batch. llama-cpp-python's own
# server (`python -m llama_cpp.server`) answers one request at a time, so the
# comparison that matters (bench/openai_speed.py) needs llama.cpp's `llama-server`
# started with `--parallel N`. It is built from the llama.cpp source that the pinned
# llama-cpp-python release vendors (the same kernels as the llamacpp backend), with
# the same CPU flags, into ~/.cache/strop/bin/llama-server-VERSION-LEVEL-KEY/.
# Needs cmake and a C++ compiler; about 10 minutes on 2 cores. Not part of the
# default install or test suite.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
NAME=llama-server.sh
# shellcheck source=scripts/llama-level.sh
. "$HERE/llama-level.sh" "${1:-}"
KEY="$(build_key "llama-server $VERSION $CMAKE_ARGS $(uname -m)")"
DIR="${STROP_BIN:-$HOME/.cache/strop/bin}/llama-server-$VERSION-$LEVEL-$KEY"
if [ ! -x "$DIR/llama-server" ]; then
  command -v cmake >/dev/null || { echo "llama-server.sh: needs cmake (apt install cmake)" >&2; exit 2; }
  echo "llama-server.sh: compiling llama-server from llama-cpp-python $VERSION's llama.cpp ($LEVEL); about 10 minutes" >&2
  TMP="$DIR.tmp.$$"
  rm -rf "$TMP"; mkdir -p "$TMP"
  trap 'rm -rf "$TMP"' EXIT
  "$PYTHON" -m pip download --no-deps --no-binary :all: --no-cache-dir -q -d "$TMP" "llama-cpp-python==$VERSION" >&2
  tar xzf "$TMP"/llama_cpp_python-"$VERSION".tar.gz -C "$TMP"
  SRC="$TMP/llama_cpp_python-$VERSION/vendor/llama.cpp"
  # shellcheck disable=SC2086 # CMAKE_ARGS is a list of flags
  cmake -S "$SRC" -B "$TMP/build" -DCMAKE_BUILD_TYPE=Release $CMAKE_ARGS -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON >&2
  cmake --build "$TMP/build" --target llama-server -j "$(nproc 2>/dev/null || echo 2)" >&2
  mkdir -p "$DIR"
  cp "$TMP/build/bin/llama-server" "$DIR/llama-server"
fi
printf '%s\n' "$DIR/llama-server"
