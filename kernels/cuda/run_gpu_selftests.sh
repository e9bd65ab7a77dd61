#!/usr/bin/env bash
# Builds and runs the GPU self-tests on a machine with an NVIDIA GPU, the CUDA
# toolkit (nvcc, cuBLAS), NCCL and cmake >= 3.18 — no Bazel and none of
# longctx's Debian libraries needed:
#
#   kernels/cuda/run_gpu_selftests.sh [build folder, default /tmp/longctx-gpu]
#
# gpu_selftest compares every CUDA kernel with a double-precision reference of
# the CPU kernel's semantics on random inputs; nccl_selftest runs the NCCL
# communicator with the ranks the machine's GPUs allow (one rank per GPU).
# Ends with "GPU self-tests: PASSED" or "... FAILED"; the exit status says the
# same.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-/tmp/longctx-gpu}
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
if ! cmake -S "$here" -B "$build" >"$build.configure.log" 2>&1; then
  cat "$build.configure.log"
  echo "GPU self-tests: FAILED (cmake could not configure; see above)"
  exit 1
fi
if ! cmake --build "$build" -j "$(nproc)"; then
  echo "GPU self-tests: FAILED (build)"
  exit 1
fi
rc=0
echo "== gpu_selftest =="
"$build/gpu_selftest" || rc=1
echo "== model_kernels_selftest =="
"$build/model_kernels_selftest" || rc=1
echo "== nccl_selftest =="
"$build/nccl_selftest" || rc=1
if [ "$rc" -eq 0 ]; then
  echo "GPU self-tests: PASSED"
else
  echo "GPU self-tests: FAILED"
fi
exit "$rc"
