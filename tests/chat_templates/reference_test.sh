#!/usr/bin/env bash
# reference_test: longctx's Jinja chat-template interpreter
# (//model/chat_template) against an independent one (@huggingface/jinja,
# pinned in tests/tokenizers/reference/package-lock.json). make_cases.py
# writes our own family-style templates (templates/) over many conversations
# plus feature snippets; render_cases and reference/render.mjs render them
# all, and compare.py requires the same outcome and the same text.
#
# Needs node and tests/tokenizers/reference/node_modules
# (tools/setup_deploy_tests.sh).
set -euo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="$TEST_SRCDIR/${TEST_WORKSPACE:-longctx}"
  bin="$root"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  bin="$root/bazel-bin"
fi
here="$root/tests/chat_templates"
# The node modules are not in runfiles: they live in the source tree, where
# tools/setup_deploy_tests.sh installed them ("local" test).
src="$(cd "$(dirname "$(readlink -f "$root/tests/tokenizers/reference/render.mjs")")" && pwd)"
if [[ ! -d "$src/node_modules/@huggingface/jinja" ]]; then
  echo "FAIL: $src/node_modules is missing: run tools/setup_deploy_tests.sh" >&2
  exit 1
fi
work="$(mktemp -d "${TEST_TMPDIR:-/tmp}/chatref.XXXXXX")"
trap 'rm -rf "$work"' EXIT

python3 "$here/make_cases.py" "$here/templates" "$work/cases.json"
"$bin/tests/chat_templates/render_cases" "$work/cases.json" >"$work/ours.jsonl"
# strftime_now: UTC on both sides.
TZ=UTC node "$src/render.mjs" "$work/cases.json" >"$work/reference.jsonl"
python3 "$here/compare.py" "$work/cases.json" "$work/ours.jsonl" \
  "$work/reference.jsonl"
echo "PASS: every case identical to the reference"
