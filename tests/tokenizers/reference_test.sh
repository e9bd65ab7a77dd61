#!/usr/bin/env bash
# reference_test: longctx's tokenizer.json implementation against an
# independent one (@huggingface/tokenizers, the pure-JS port, pinned in
# reference/package-lock.json). For each family make_tiny_model writes
# (llama3, qwen2, mistral, llama2: merges learned from a shipped text), both
# encode an awkward corpus (make_corpus.py) with and without special tokens and
# decode it back; compare.py requires identical ids and text, and the gateway's
# tokenizer to give the same ids. Then both render conversations with the
# folder's chat template (the reference: @huggingface/jinja) and encode the
# prompts; compare_chat.py requires identical prompts and ids, and the same
# conversations refused.
#
# Needs node and reference/node_modules (tools/setup_deploy_tests.sh).
set -euo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="$TEST_SRCDIR/${TEST_WORKSPACE:-longctx}"
  bin="$root"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  bin="$root/bazel-bin"
fi
here="$root/tests/tokenizers"
# The node modules are not in runfiles: they live in the source tree, where
# tools/setup_deploy_tests.sh installed them ("local" test).
src="$(cd "$(dirname "$(readlink -f "$here/reference/encode.mjs")")" && pwd)"
if [[ ! -d "$src/node_modules/@huggingface/tokenizers" ]]; then
  echo "FAIL: $src/node_modules is missing: run tools/setup_deploy_tests.sh" >&2
  exit 1
fi
work="$(mktemp -d "${TEST_TMPDIR:-/tmp}/tokref.XXXXXX")"
trap 'rm -rf "$work"' EXIT

python3 "$here/make_corpus.py" "$work/corpus.json"
python3 "$here/make_corpus.py" --chat "$work/conversations.json"
status=0
for family in llama3 qwen2 mistral llama2; do
  "$bin/tools/make_tiny_model/make_tiny_model" --out="$work/$family" \
    --tokenizer="$family" --tokenizer_merges=1500 >/dev/null
  "$bin/tests/tokenizers/tokenize_corpus" "$work/$family" "$work/corpus.json" \
    >"$work/$family.ours"
  node "$src/encode.mjs" "$work/$family" "$work/corpus.json" >"$work/$family.ref"
  python3 "$here/compare.py" "$family" "$work/corpus.json" "$work/$family.ours" \
    "$work/$family.ref" || status=1
  # The folder's chat template: rendered prompts and their ids.
  "$bin/tests/tokenizers/render_chat" "$work/$family" "$work/conversations.json" \
    >"$work/$family.chat.ours"
  node "$src/chat.mjs" "$work/$family" "$work/conversations.json" \
    >"$work/$family.chat.ref"
  python3 "$here/compare_chat.py" "$family" "$work/conversations.json" \
    "$work/$family.chat.ours" "$work/$family.chat.ref" || status=1
done
[[ $status -eq 0 ]] && echo "PASS: every family identical to the reference"
exit $status
