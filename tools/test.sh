#!/usr/bin/env bash
# Runs every longctx test: installs what is missing (tools/setup.sh), builds and runs
# `bazel test //...`, checks the thread-safety annotations with clang
# (tools/thread_safety.sh), compiles and links the CUDA configuration when nvcc is present
# (the GPU worker and the GPU check's programs; their tests' GPU cases skip
# without a GPU: tools/gpu/check.sh runs them on one),
# and ends with a one-line summary "N passed, N failed".
# Usage: tools/test.sh [extra bazel test arguments]
set -uo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh || exit 1

jobs_flag=(--jobs="$(nproc)")
log=$(mktemp)
start=$(date +%s)
bazel test "${jobs_flag[@]}" --test_summary=short //... "$@" 2>&1 | tee "$log"
test_rc=${PIPESTATUS[0]}

# clang's thread-safety analysis over the files that hold mutexes (needs the
# generated protos the build above left).
echo "== thread-safety analysis (clang) =="
tools/thread_safety.sh
tsa_rc=$?

cuda_rc=0
if [ -x /usr/local/cuda/bin/nvcc ]; then
  # Builds the CUDA kernels, the GPU worker and the programs of the GPU check
  # (tools/gpu/check.sh runs them on a GPU machine), and runs the tests of
  # the CUDA configuration, whose GPU cases skip without a GPU.
  echo "== CUDA configuration: compile and link (no GPU needed) =="
  bazel test "${jobs_flag[@]}" --config=cuda --test_summary=short \
    //kernels/cuda/... //model/cuda/... \
    //parallel:nccl_communicator_test //model:model_backend_test \
    //services/worker:worker //tools/bench_engine:bench_engine \
    //tools/gpu:logits_dump 2>&1 | tail -n 20
  cuda_rc=${PIPESTATUS[0]}
  [ "$cuda_rc" -eq 0 ] && echo "CUDA configuration builds (and its test passes)" || echo "CUDA configuration FAILED (build or test)"
else
  echo "== nvcc not found: CUDA configuration skipped =="
fi

passed=$(grep -cE "^//[^ ]+ +(\(cached\) )?PASSED" "$log")
failed=$(grep -cE "^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|INCOMPLETE)|FAILED TO BUILD" "$log")
rm -f "$log"
if [ "$cuda_rc" -ne 0 ]; then failed=$((failed + 1)); fi
if [ "$tsa_rc" -ne 0 ]; then failed=$((failed + 1)); fi
echo "tests took $(( $(date +%s) - start ))s"
echo "${passed} passed, ${failed} failed"
if [ "$test_rc" -ne 0 ] || [ "$cuda_rc" -ne 0 ] || [ "$tsa_rc" -ne 0 ]; then exit 1; fi
exit 0
