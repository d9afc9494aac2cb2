# Sourced by llama-wheel.sh and llama-server.sh (not run on its own): which CPU level to build llama.cpp for,
# its compiler flags and the pinned version, all read from src/strop/backends/native.py with the standard library.
#   in:  HERE (the scripts folder), PYTHON, the level argument (may be empty), NAME (the calling script)
#   out: LEVEL, CMAKE_ARGS, VERSION, and the function build_key TEXT (a 12-hex-digit key of TEXT; for the native
#        level the CPU's feature flags are added, as a native build runs only on CPUs with those features)
NATIVE_PY="$HERE/../src/strop/backends/native.py"
LEVEL="${1:-$("$PYTHON" "$NATIVE_PY" default-level)}"
CMAKE_ARGS="$("$PYTHON" "$NATIVE_PY" cmake-args "$LEVEL" 2>/dev/null)" || {
  echo "$NAME: unknown level '$LEVEL' (portable, baseline, avx512 or native)" >&2; exit 2; }
VERSION="$(sed -n 's/^LLAMA_CPP_VERSION = "\(.*\)"$/\1/p' "$NATIVE_PY")"

build_key() {
  local text="$1"
  if [ "$LEVEL" = native ]; then
    text="$text $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -a)"
  fi
  printf '%s' "$text" | sha256sum | cut -c1-12
}
