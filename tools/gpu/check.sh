#!/usr/bin/env bash
# The GPU check: runs on a machine with an NVIDIA GPU, its driver and CUDA 13
# (cuBLAS, NCCL), from the archive tools/gpu/pack.sh made (docs/multi-gpu.md):
#
#   tar xzf longctx-gpu.tar.gz && longctx-gpu/tools/gpu/check.sh [OUT_DIR]
#
# Each step runs with its own time limit and its output goes to OUT_DIR
# (default /tmp/longctx-gpu-check); the script ends with one line per step and
# "GPU check: PASSED" or "GPU check: FAILED", and exits non-zero on any
# failure. It needs no network and installs nothing.
set -uo pipefail
pkg="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-/tmp/longctx-gpu-check}"
mkdir -p "$out"
bin="$pkg/bin"
start_all=$(date +%s)

# The CUDA libraries our programs link (the archive has none of them): the
# toolkit's folder first, then the driver's and Python's wheels.
libdirs=()
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
  found=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 \
           /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    if [ -e "$d/$lib" ]; then found="$d"; break; fi
  done
  if [ -z "$found" ]; then
    hit=$(find / -xdev -name "$lib" -not -path '*/proc/*' 2>/dev/null | head -n 1)
    [ -n "$hit" ] && found=$(dirname "$hit")
  fi
  if [ -z "$found" ]; then echo "check: $lib not found on this machine"; continue; fi
  case " ${libdirs[*]:-} " in *" $found "*) ;; *) libdirs+=("$found");; esac
done
export LD_LIBRARY_PATH="$pkg/lib$(printf ':%s' "${libdirs[@]:-}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

names=(); results=(); times=()
# step NAME TIMEOUT_SECONDS COMMAND...: runs one step, logs to $out/NAME.log.
step() {
  local name="$1" limit="$2"; shift 2
  echo "== $name =="
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 ))
  names+=("$name"); times+=("$dt")
  if [ "$rc" -eq 0 ]; then results+=("PASSED"); elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then results+=("TIMEOUT"); else results+=("FAILED (exit $rc)"); fi
}

echo "== machine =="
{
  echo "revision: $(cat "$pkg/REVISION" | tr '\n' ' ')"
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1
  echo "libraries: $LD_LIBRARY_PATH"
  for exe in "$bin"/*; do
    missing=$(ldd "$exe" | grep "not found" | awk '{print $1}' | tr '\n' ' ')
    [ -n "$missing" ] && echo "$(basename "$exe"): missing $missing"
  done
  echo "programs: $(ls "$bin" | tr '\n' ' ')"
  (python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>/dev/null) || echo "no torch/transformers"
  nproc | sed 's/^/cpus: /'
} 2>&1 | tee "$out/machine.log"

# Every program starts: its shared libraries resolve on this machine.
step programs_start 60 bash -c 'rc=0; for p in "$0"/*; do case "$(basename "$p")" in *_selftest|*_test) continue;; esac; "$p" --version >/dev/null 2>&1 || { echo "$(basename "$p") does not start:"; "$p" --version 2>&1 | head -n 3; rc=1; }; done; exit $rc' "$bin"
step gpu_selftest 120 "$bin/gpu_selftest"
step model_kernels_selftest 180 "$bin/model_kernels_selftest"
step nccl_selftest 120 "$bin/nccl_selftest"
if [ -x "$bin/cuda_model_test" ]; then
  step cuda_model_test 300 "$bin/cuda_model_test"
fi

echo
echo "== summary ($(( $(date +%s) - start_all )) s; logs in $out) =="
failed=0
for i in "${!names[@]}"; do
  printf '%-24s %-20s %5ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  [ "${results[$i]}" = "PASSED" ] || failed=1
done
if [ "$failed" -eq 0 ]; then echo "GPU check: PASSED"; else echo "GPU check: FAILED"; fi
exit "$failed"
