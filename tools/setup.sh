#!/usr/bin/env bash
# Installs every Debian package that building, running and testing longctx needs.
# Idempotent: packages already present are skipped, so a warm machine costs seconds.
# Usage: tools/setup.sh [--with-python]   (python3 client-side packages for the tests)
set -euo pipefail

PKGS=(
  bazel-bootstrap
  pkg-config g++
  libgrpc++-dev protobuf-compiler-grpc
  libprotobuf-dev protobuf-compiler
  libabsl-dev
  librocksdb-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgloo-dev
  libdnnl-dev
  libsentencepiece-dev
  prometheus
  python3-grpcio python3-protobuf python3-numpy
  nlohmann-json3-dev
  curl
  openssl libssl-dev
  # tokenizer.json: split patterns (PCRE2) and Unicode normalization (ICU).
  libpcre2-dev libicu-dev
  # The gateway's OpenAI-compatible HTTP listener.
  libcpp-httplib-dev
  # //fuzz: clang++, libFuzzer and the sanitizer runtimes, llvm-symbolizer.
  clang libclang-rt-14-dev llvm
)

# npm packages of //tests/deploy:deploy_test's validator (skipped when up to date).
"$(dirname "$0")/setup_deploy_tests.sh"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
