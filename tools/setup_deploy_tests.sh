#!/usr/bin/env bash
# Installs the npm packages of the tests that run Node, with `npm ci` (exact
# versions from each package-lock.json) into each folder's node_modules:
# //tests/deploy:deploy_test's validator (tests/deploy/validator) and the
# reference tokenizer and template renderer of //tests/tokenizers
# (tests/tokenizers/reference: @huggingface/tokenizers, @huggingface/jinja),
# and the official OpenAI SDK of //tests:openai_http_test (tests/openai_sdk).
# Idempotent: skipped when node_modules was installed from the same lock file.
# Needs node and npm (Debian's nodejs and npm are installed if missing); the test
# also needs kubectl >= 1.27, which Debian does not package: only checked here.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup_deploy_tests: installing nodejs npm"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# Each folder's packages, at the exact versions of its package-lock.json.
for dir in "$repo/tests/deploy/validator" "$repo/tests/tokenizers/reference" \
  "$repo/tests/openai_sdk"; do
  stamp="$dir/node_modules/.longctx-package-lock.sha256"
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  name="${dir#"$repo"/}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup_deploy_tests: $name node modules up to date"
  else
    echo "setup_deploy_tests: npm ci in $name"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    echo "$want" >"$stamp"
  fi
done

if ! command -v kubectl >/dev/null; then
  echo "setup_deploy_tests: warning: kubectl not found; //tests/deploy:deploy_test needs kubectl >= 1.27 on PATH" >&2
fi
