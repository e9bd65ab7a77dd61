#!/usr/bin/env bash
# Runs one libFuzzer binary for a bounded time from its seed corpus (the test of
# cc_fuzz_test in //third_party/build_defs:fuzz.bzl).
# Usage: run_fuzzer.sh FUZZER SEED_CORPUS_DIR SECONDS [DICT]
# $LONGCTX_FUZZ_SECONDS (pass it with --test_env) overrides SECONDS. A crashing
# input is written to the test's undeclared outputs (bazel-testlogs/.../test.outputs)
# and fails the test; add it to the seed corpus once the bug is fixed.
set -euo pipefail
fuzzer=$1
seeds=$2
seconds=${LONGCTX_FUZZ_SECONDS:-$3}
dict=${4:-}

# New inputs go to a scratch corpus; the checked-in seeds are only read.
work=${TEST_TMPDIR:-$(mktemp -d)}/corpus
mkdir -p "$work"
artifacts=${TEST_UNDECLARED_OUTPUTS_DIR:-$(mktemp -d)}
flags=(
  -max_total_time="$seconds"
  -timeout=10            # One input running longer than this is a hang: a failure.
  -rss_limit_mb=2048
  -print_final_stats=1
  -artifact_prefix="$artifacts/"
)
[ -n "$dict" ] && flags+=(-dict="$dict")
# Symbolized reports when llvm-symbolizer is around (Debian package llvm).
if command -v llvm-symbolizer >/dev/null; then
  export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

echo "fuzzing $(basename "$fuzzer") for ${seconds}s from $(ls "$seeds" | wc -l) seeds"
"$fuzzer" "${flags[@]}" "$work" "$seeds"
echo "corpus after fuzzing: $(ls "$work" | wc -l) new inputs"
