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
  if [ "$(type -t "$1")" = "function" ]; then
    export -f "$1"; export bin out pkg
    timeout --kill-after=10 "$limit" bash -c "$*" 2>&1 | tee "$out/$name.log"
  else
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  fi
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

# 1. The kernels against double-precision references.
step gpu_selftest 120 "$bin/gpu_selftest"
step model_kernels_selftest 120 "$bin/model_kernels_selftest"
step nccl_selftest 120 "$bin/nccl_selftest"
# The model's kernels again under compute-sanitizer: no out-of-bounds or
# misaligned access, no race in shared memory.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
  step kernels_memcheck 150 "$sanitizer" --tool memcheck --error-exitcode 1 "$bin/model_kernels_selftest"
  step kernels_racecheck 150 "$sanitizer" --tool racecheck --error-exitcode 1 "$bin/model_kernels_selftest"
fi

# 2. The GPU model against the CPU model: logits, graphs, restore across
# devices, the engine's tokens.
step cuda_llama_model_test 300 "$bin/cuda_llama_model_test"

# 3. Against Hugging Face transformers on the same folders: the tiny model
# (head_dim 16: the decode kernel only) and one with head_dim 64 (the
# tensor-core prefill kernel), on the CPU, the GPU in fp32 and the GPU in
# bf16, with the tolerances of cuda_llama_model_test.
transformers_check() {
  local work="$out/transformers" rc=0
  mkdir -p "$work"
  "$bin/make_tiny_model" --out="$work/tiny" >/dev/null || return 1
  "$bin/make_tiny_model" --out="$work/d64" --hidden_size=256 --num_heads=4 \
    --num_kv_heads=2 --intermediate_size=512 --num_layers=3 --vocab_size=300 \
    >/dev/null || return 1
  for m in tiny d64; do
    "$bin/logits_dump" --model="$work/$m" --device=cpu --out="$work/$m.cpu" || rc=1
    "$bin/logits_dump" --model="$work/$m" --device=cuda --out="$work/$m.gpu32" || rc=1
    "$bin/logits_dump" --model="$work/$m" --device=cuda --compute_precision=bf16 \
      --out="$work/$m.gpu16" || rc=1
  done
  [ "$rc" -eq 0 ] || return 1
  # fp32 against transformers' fp32: 1e-3, for our fp16 KV cache (theirs is
  # fp32); the tensor-core prefill (fp16 q and softmax weights): 1e-2; bf16:
  # 6e-2.
  python3 "$pkg/tools/gpu/compare_transformers.py" "$work/tiny" 24 \
    "$work/tiny.cpu:1e-3" "$work/tiny.gpu32:1e-3" "$work/tiny.gpu16:6e-2" || rc=1
  python3 "$pkg/tools/gpu/compare_transformers.py" "$work/d64" 24 \
    "$work/d64.cpu:1e-3" "$work/d64.gpu32:1e-2" "$work/d64.gpu16:6e-2" || rc=1
  return "$rc"
}
if python3 -c 'import transformers' 2>/dev/null; then
  step transformers 180 transformers_check
else
  echo "== transformers: not installed here, skipped =="
fi

# 4. The benchmark of docs/BENCHMARKS.md (shape L, bf16).
step bench_engine 300 "$bin/bench_engine" --device=cuda

# 5. The whole stack serving a long document from the GPU.
step stack 300 "$pkg/tools/gpu/stack_check.sh" "$bin" "$out/stack" 32768

echo
echo "== summary ($(( $(date +%s) - start_all )) s; logs in $out) =="
failed=0
for i in "${!names[@]}"; do
  printf '%-24s %-20s %5ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  [ "${results[$i]}" = "PASSED" ] || failed=1
done
if [ "$failed" -eq 0 ]; then echo "GPU check: PASSED"; else echo "GPU check: FAILED"; fi
exit "$failed"
