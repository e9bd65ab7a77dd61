#!/usr/bin/env bash
# Packs what the GPU check needs for a machine that has an NVIDIA driver and
# CUDA 13 (nvcc, cuBLAS, NCCL) but no Bazel and none of our Debian libraries
# (docs/multi-gpu.md, "Running on a GPU machine"):
#
#   tools/gpu/pack.sh DIR        # writes DIR/longctx-gpu.tar.gz
#
# Builds the programs with --config=cuda -c opt, strips their debug info and
# copies them with their shared-library closure, leaving out the C runtime,
# libstdc++ and the CUDA and driver libraries (the GPU machine has its own,
# newer ones), and adds tools/gpu/check.sh and what it runs. The archive must
# stay under 60 MiB (one call to the GPU machine carries 64 MiB).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:?usage: tools/gpu/pack.sh DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"

# bazel target -> name in bin/.
declare -A programs=(
  [//kernels/cuda:gpu_selftest]=gpu_selftest
  [//parallel:nccl_selftest]=nccl_selftest
)
# Extra programs listed in tools/gpu/programs.txt (one "target name" per line).
if [ -f tools/gpu/programs.txt ]; then
  while read -r target name; do
    case "$target" in ''|'#'*) continue;; esac
    programs[$target]=$name
  done < tools/gpu/programs.txt
fi

echo "pack: building ${#programs[@]} programs with --config=cuda -c opt"
bazel build -c opt --config=cuda "${!programs[@]}" 2>&1 | tail -n 2

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/longctx-gpu"
mkdir -p "$root/bin" "$root/lib" "$root/tools/gpu"
for target in "${!programs[@]}"; do
  path="bazel-bin/${target#//}"
  path="${path/://}"
  cp "$path" "$root/bin/${programs[$target]}"
  chmod u+w "$root/bin/${programs[$target]}"
  strip --strip-debug "$root/bin/${programs[$target]}"
done

# Every library must resolve here (a test binary linked against Bazel's own
# shared libraries would not run anywhere else: give it linkstatic = True).
for exe in "$root"/bin/*; do
  if ldd "$exe" | grep -q "not found"; then
    echo "pack: $(basename "$exe") needs libraries that are not installed:" >&2
    ldd "$exe" | grep "not found" | head -n 5 >&2
    exit 1
  fi
done

# The shared-library closure, minus what the GPU machine provides itself.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libutil\.so|libresolv|libstdc\+\+|libgcc_s|libcuda\.so|libcudart|libcublas|libcublasLt|libnccl|libnvidia|libnvrtc)'
for exe in "$root"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r name file; do
  if [[ "$name" =~ $skip ]]; then continue; fi
  cp -L "$file" "$root/lib/$name"
done
chmod -R u+w "$root/lib"
strip --strip-debug "$root"/lib/* 2>/dev/null || true

cp tools/gpu/*.sh tools/gpu/*.py "$root/tools/gpu/"
git rev-parse --short HEAD > "$root/REVISION" 2>/dev/null || echo unknown > "$root/REVISION"
git status --porcelain | grep -q . && echo "+local changes" >> "$root/REVISION" || true

tar -C "$stage" -czf "$out/longctx-gpu.tar.gz" longctx-gpu
size=$(stat -c %s "$out/longctx-gpu.tar.gz")
echo "pack: $out/longctx-gpu.tar.gz: $((size / 1048576)) MiB ($(ls "$root/bin" | wc -l) programs, $(ls "$root/lib" | wc -l) libraries)"
if [ "$size" -ge $((60 * 1048576)) ]; then
  echo "pack: the archive is over 60 MiB" >&2
  exit 1
fi
