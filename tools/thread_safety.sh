#!/usr/bin/env bash
# Checks the thread-safety annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED)
# with clang's analysis: every source file that declares or takes a mutex, or whose
# header does, is compiled syntax-only with -Werror=thread-safety. GCC, which builds
# the project, ignores the annotations; this makes them bind.
# Needs the generated proto headers: run after `bazel build //...` (tools/test.sh does).
# Usage: tools/thread_safety.sh        Prints one line per file that fails, then a summary.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang++ >/dev/null; then
  echo "thread safety: clang++ not found (tools/setup.sh installs it)" >&2
  exit 1
fi
gen=$(bazel info bazel-bin 2>/dev/null)
if [ ! -f "$gen/proto/longctx.pb.h" ]; then
  echo "thread safety: generated protos missing under $gen; run bazel build //... first" >&2
  exit 1
fi

pattern='absl::Mutex|ABSL_GUARDED_BY|ABSL_EXCLUSIVE_LOCKS_REQUIRED'
files=()
while IFS= read -r f; do
  header="${f%.cc}.h"
  if grep -qE "$pattern" "$f" || { [ -f "$header" ] && grep -qE "$pattern" "$header"; }; then
    files+=("$f")
  fi
done < <(git ls-files '*.cc' | grep -v '^third_party/')

cuda_include=()
[ -d /usr/local/cuda/include ] && cuda_include=(-I/usr/local/cuda/include)
# Libraries whose headers depend on the -D flags they were built with
# (cpp-httplib: OpenSSL, zlib, Brotli), as //third_party/systemlibs passes them.
read -r -a system_defines <<<"$(pkg-config --cflags-only-other cpp-httplib 2>/dev/null)"

check() {
  local f=$1
  case "$f" in
    */cuda/*) [ ${#cuda_include[@]} -eq 0 ] && return 0 ;;
  esac
  if ! out=$(clang++ -std=c++17 -fsyntax-only -Wthread-safety -Werror=thread-safety \
      -Wno-unknown-warning-option -I. -I"$gen" "${cuda_include[@]}" \
      "${system_defines[@]}" "$f" 2>&1); then
    echo "FAILED $f"
    echo "$out" | grep -E "error" | head -n 5
    return 1
  fi
}
failed=0
for f in "${files[@]}"; do
  check "$f" || failed=$((failed + 1))
done
echo "thread safety: ${#files[@]} files checked, ${failed} failed"
[ "$failed" -eq 0 ]
