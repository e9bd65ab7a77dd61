#!/usr/bin/env bash
# Installs what //tests/deploy:deploy_test needs beyond tools/setup.sh: the npm
# packages of its validator (tests/deploy/validator, exact versions from
# package-lock.json) with `npm ci`, into tests/deploy/validator/node_modules.
# Idempotent: skipped when node_modules was installed from the same lock file.
# Needs node and npm (Debian's nodejs and npm are installed if missing); the test
# also needs kubectl >= 1.27, which Debian does not package: only checked here.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$repo/tests/deploy/validator"
stamp="$dir/node_modules/.longctx-package-lock.sha256"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup_deploy_tests: installing nodejs npm"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup_deploy_tests: validator node modules up to date"
else
  echo "setup_deploy_tests: npm ci in tests/deploy/validator"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  echo "$want" >"$stamp"
fi

if ! command -v kubectl >/dev/null; then
  echo "setup_deploy_tests: warning: kubectl not found; //tests/deploy:deploy_test needs kubectl >= 1.27 on PATH" >&2
fi
