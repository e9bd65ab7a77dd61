#!/usr/bin/env bash
# The whole stack on one GPU (part of tools/gpu/check.sh): memory_store, one
# worker with --device=cuda and the gateway, serving a long document cold,
# hot (from the worker's prefix cache) and restored from the store after the
# worker restarts. The three answers must be the same tokens; the hot and
# restored ones must report cached prompt tokens. Prints one line per request
# and the worker's longctx_gpu_* gauges; exits non-zero on any failure.
#
#   stack_check.sh BIN_DIR WORK_DIR [DOCUMENT_TOKENS]
set -uo pipefail
bin="$1"; work="$2"; tokens="${3:-32768}"
# STACK_DEVICE=cpu runs the same check on the CPU (to test this script).
device="${STACK_DEVICE:-cuda}"
mkdir -p "$work"
rm -rf "$work/store"  # Cold means cold.
logs="$work/logs"; mkdir -p "$logs"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
fail() { echo "stack: FAIL: $*"; for f in "$logs"/*.log; do echo "--- $f"; tail -n 15 "$f"; done; exit 1; }

model="$work/model"
if [ ! -f "$model/config.json" ]; then
  t0=$(date +%s.%N)
  "$bin/make_tiny_model" --out="$model" --preset=M --dtype=bf16 >/dev/null || fail "make_tiny_model"
  echo "stack: model M (hidden 1024, 12 layers, 16 heads / 4 KV, bf16) made in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"
fi
# A long document of words (the byte tokenizer: one token per byte).
python3 - "$work/doc.txt" "$tokens" <<'PY'
import random, sys
random.seed(7)
words = "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no will more what up out".split()
text, n = [], 0
while n < int(sys.argv[2]) - 16:
    w = random.choice(words) + " "
    text.append(w); n += len(w)
open(sys.argv[1], "w").write("".join(text))
PY

kv_bytes=$((16 << 30))
[ "$device" = cuda ] || kv_bytes=$((1 << 30))
start_worker() {
  "$bin/worker" --model="$model" --device="$device" --listen_address=127.0.0.1:50161 \
    --metrics_address=127.0.0.1:9561 --memory_store=127.0.0.1:50171 \
    --kv_cache_bytes="$kv_bytes" --prefill_chunk_tokens=4096 \
    --offload_queue_blocks=1024 \
    >>"$logs/worker.log" 2>&1 &
  worker_pid=$!
  pids+=("$worker_pid")
}
"$bin/memory_store" --listen_address=127.0.0.1:50171 --metrics_address=127.0.0.1:9571 \
  --data_dir="$work/store" >"$logs/memory_store.log" 2>&1 &
pids+=("$!")
start_worker
"$bin/gateway" --model="$model" --listen_address=127.0.0.1:50151 \
  --internal_listen_address=127.0.0.1:50153 \
  --metrics_address=127.0.0.1:9551 --workers=127.0.0.1:50161 \
  --memory_store=127.0.0.1:50171 >"$logs/gateway.log" 2>&1 &
pids+=("$!")

client=("$bin/generate" --address=127.0.0.1:50151)
wait_ready() {
  for _ in $(seq 1 120); do
    kill -0 "$worker_pid" 2>/dev/null || return 1  # The worker exited.
    if "${client[@]}" --token_ids=1,2,3 --max_new_tokens=1 --deadline_seconds=5 \
        --cache_policy=disabled >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}
wait_ready || fail "the stack did not become ready (in 60 s)"

# ask NAME: the document, greedy, 16 tokens; records the token ids and the
# usage line.
ask() {
  local name="$1"
  "${client[@]}" --file="$work/doc.txt" --max_new_tokens=16 --temperature=0 \
    --ignore_eos --logprobs --deadline_seconds=300 >"$work/$name.out" 2>"$work/$name.err" \
    || fail "$name request: $(tail -n 2 "$work/$name.err")"
  grep -o '\[token [0-9]*' "$work/$name.err" | tr -d '[' > "$work/$name.tokens"
  usage=$(grep -o 'prompt [0-9]* tokens ([0-9]* cached).*' "$work/$name.err")
  echo "stack: $name: $usage"
  cached=$(echo "$usage" | sed -E 's/.*\(([0-9]+) cached\).*/\1/')
}
ask cold
[ "$cached" -eq 0 ] || fail "the cold request reports $cached cached tokens"
ask hot
[ "$cached" -gt 0 ] || fail "the hot request reused nothing"
cmp -s "$work/cold.tokens" "$work/hot.tokens" || fail "hot tokens differ from cold"

[ "$device" = cuda ] && echo "stack: longctx_gpu_* on the worker:" &&
python3 - <<'PY' || [ "$device" != cuda ] || fail "no longctx_gpu_ gauges on /metrics"
import urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9561/metrics", timeout=5).read().decode()
lines = [l for l in text.splitlines() if l.startswith("longctx_gpu_")]
print("\n".join("  " + l for l in lines))
assert any(l.startswith("longctx_gpu_memory_used_bytes") for l in lines)
PY

# The document's full blocks reach the store behind the computation; a
# worker that stops drops what it has not written yet, so wait for them.
blocks=$(( $(wc -c < "$work/doc.txt") / 256 ))
metric() {  # NAME: its value on the worker's /metrics (0 if absent).
  python3 -c '
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9561/metrics", timeout=5).read().decode()
print(int(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(sys.argv[1] + " "))))' "$1"
}
for _ in $(seq 1 120); do
  [ "$(metric longctx_offload_blocks_total)" -ge "$blocks" ] && break
  sleep 0.25
done
echo "stack: offloaded $(metric longctx_offload_blocks_total) blocks ($(metric longctx_offload_dropped_blocks_total) dropped), $blocks wanted"

# Restart the worker: its memory is gone, the store still has the blocks.
kill -TERM "$worker_pid"; wait "$worker_pid" 2>/dev/null
start_worker
wait_ready || fail "the restarted worker did not become ready"
ask restored
[ "$cached" -gt 0 ] || fail "nothing was restored from the store after the restart"
cmp -s "$work/cold.tokens" "$work/restored.tokens" || fail "restored tokens differ from cold"
grep -h "longctx_restore_blocks_total\|longctx_restore_corrupt" <(python3 -c '
import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9561/metrics", timeout=5).read().decode())') | sed 's/^/stack:   /'
echo "stack: PASS (cold, hot and restored answers are the same 16 tokens)"
