#!/usr/bin/env bash
# Builds `loracycle` with `--features cuda` on a machine without a GPU or a CUDA install.
#
# - CUDA 13.0's compiler, headers and runtime come from Python's package registry, installed into
#   target/cuda/ (nvidia-cuda-nvcc, nvidia-nvvm, nvidia-cuda-runtime, nvidia-cuda-crt,
#   nvidia-cuda-cccl, pinned to 13.0.x: the device's driver JIT-compiles candle's PTX, and the PTX
#   of a newer nvcc may be refused by an older driver).
# - The driver (libcuda), cuBLAS, cuBLASLt, cuRAND and NVRTC are the GPU machine's own: here the
#   binary links against stub libraries with their sonames (built from the declarations of the
#   cudarc crate), so at run time the loader takes the machine's libraries from its library path.
#
# Usage: scripts/cuda-build.sh [--check]   (--check: `cargo check` only, for a quick CI gate)
# Environment: CUDA_COMPUTE_CAP (default 90, Hopper), PYTHON (default python3),
#              LORACYCLE_CUDA_DIR (default target/cuda).
# Output: target/release/loracycle built with CUDA; its stripped copy target/cuda/loracycle and
# that copy compressed, target/cuda/loracycle.xz (what scripts/gpu-check.sh takes on a GPU machine).
# The CPU build after it (cargo build --release) relinks target/release/loracycle without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."

export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
PYTHON="${PYTHON:-python3}"
ROOT="${LORACYCLE_CUDA_DIR:-$PWD/target/cuda}"
PKGS=(nvidia-cuda-nvcc==13.0.* nvidia-nvvm==13.0.* nvidia-cuda-runtime==13.0.*
  nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.*)
TOOLKIT="$ROOT/py/nvidia/cu13"
STUBS="$ROOT/stubs"

if [ ! -x "$TOOLKIT/bin/nvcc" ] || [ ! -x "$TOOLKIT/nvvm/bin/cicc" ]; then
  echo "cuda-build: installing CUDA 13.0's compiler and headers into $ROOT/py"
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "cuda-build: $PYTHON has no pip; install python3-pip (Debian) or set PYTHON" >&2
    exit 1
  fi
  "$PYTHON" -m pip install --quiet --no-deps --upgrade --target "$ROOT/py" "${PKGS[@]}"
fi
"$TOOLKIT/bin/nvcc" --version | grep -q "release 13.0" || {
  echo "cuda-build: $TOOLKIT/bin/nvcc is not CUDA 13.0" >&2
  exit 1
}

# The runtime ships as libcudart.so.13; the linker looks for libcudart.so.
ln -sf libcudart.so.13 "$TOOLKIT/lib/libcudart.so"

# Stub libraries: every function cudarc declares for the library, under the real soname.
cudarc=$(cargo metadata --format-version 1 --features cuda 2>/dev/null |
  "$PYTHON" -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
mkdir -p "$STUBS"
stub() { # name soname source-folder
  local name=$1 soname=$2 src="$cudarc/src/$3/sys"
  [ -f "$STUBS/lib$name.so" ] && [ "$STUBS/lib$name.so" -nt "$0" ] && return
  # The functions of the extern "C" blocks (indented `fn name(`), each a stub that does nothing.
  grep -rhE '^\s+fn [A-Za-z_][A-Za-z0-9_]*\(' "$src" | sed -E 's/^\s+fn ([A-Za-z0-9_]+)\(.*/void \1(void) {}/' |
    sort -u >"$STUBS/$name.c"
  [ -s "$STUBS/$name.c" ] || { echo "cuda-build: no declarations under $src" >&2; exit 1; }
  cc -shared -fPIC -w -Wl,-soname,"$soname" -o "$STUBS/lib$name.so" "$STUBS/$name.c"
}
stub cuda libcuda.so.1 driver
stub nvrtc libnvrtc.so.13 nvrtc
stub curand libcurand.so.10 curand
stub cublas libcublas.so.13 cublas
stub cublasLt libcublasLt.so.13 cublaslt

export CUDA_ROOT="$TOOLKIT" CUDA_PATH="$TOOLKIT" CUDA_HOME="$TOOLKIT"
export PATH="$TOOLKIT/bin:$PATH"
export LIBRARY_PATH="$STUBS:$TOOLKIT/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
# Link searches go through LIBRARY_PATH: RUSTFLAGS would rebuild every crate, and the CPU
# build after it every crate again.

if [ "${1:-}" = --check ]; then
  cargo check --release --features cuda --bin loracycle
  exit 0
fi
cargo build --release --features cuda --bin loracycle
strip -o "$ROOT/loracycle" target/release/loracycle

# A smoke test here, without a GPU: the stubs under their sonames stand in for the driver and
# the libraries, so the binary loads and its CPU path answers.
mkdir -p "$STUBS/run"
for l in cuda.so.1 nvrtc.so.13 curand.so.10 cublas.so.13 cublasLt.so.13; do
  ln -sf "../lib${l%%.so*}.so" "$STUBS/run/lib$l"
done
LD_LIBRARY_PATH="$STUBS/run:$TOOLKIT/lib" "$ROOT/loracycle" --version | grep -q "^cuda: built in" || {
  echo "cuda-build: the built binary does not start or does not say it has CUDA" >&2
  exit 1
}
# What travels to a GPU machine (with the repository's examples/ and tests/fixtures/): xz keeps
# it within the device tool's 64 MiB.
xz -T0 -6 -c "$ROOT/loracycle" >"$ROOT/loracycle.xz"
echo "cuda-build: built target/release/loracycle with CUDA (compute capability $CUDA_COMPUTE_CAP);"
echo "cuda-build: stripped copy $ROOT/loracycle ($(du -h "$ROOT/loracycle" | cut -f1)), compressed $ROOT/loracycle.xz ($(du -h "$ROOT/loracycle.xz" | cut -f1))"
