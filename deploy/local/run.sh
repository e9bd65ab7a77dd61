#!/usr/bin/env bash
# Starts the whole longctx stack on this machine with embedded defaults: one
# memory_store (RocksDB under .longctx/data), one worker group of two CPU ranks (each
# sequence split across both: ring attention over Gloo) and the gateway, serving
# the generated tiny model. Installs what is missing first (tools/setup.sh).
# Prints where each process listens; logs go to .longctx/logs/. Ctrl-C or SIGTERM
# stops everything; if any process dies, the others are stopped too.
#
# Environment overrides: LONGCTX_HOME (default: <repo>/.longctx), LONGCTX_MODEL
# (a model folder to serve instead of the tiny model), GATEWAY_PORT (50051),
# LONGCTX_GROUP_SIZE (2; 1 runs two independent single-rank workers instead).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
home="${LONGCTX_HOME:-$repo/.longctx}"
logs="$home/logs"
mkdir -p "$logs" "$home/data"

tools/setup.sh
echo "building..."
bazel build //services/gateway //services/worker //memory_store //tools/make_tiny_model \
  2>&1 | tail -n 1
bin="$repo/bazel-bin"

model="${LONGCTX_MODEL:-$home/models/tiny}"
if [ -z "${LONGCTX_MODEL:-}" ] && [ ! -f "$model/config.json" ]; then
  "$bin/tools/make_tiny_model/make_tiny_model" --out="$model"
fi

gateway_port="${GATEWAY_PORT:-50051}"
internal_port=50053  # The gateway's internal listener: Rendezvous.
store_port=50071

# The internal token: workers, the store and the gateway's Rendezvous refuse
# calls without it (made once, readable by this user alone).
internal_token="$home/internal-token"
if [ ! -s "$internal_token" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$internal_token")
fi
worker_ports=(50061 50062)

pids=()
declare -A pids_of
stop_all() {
  trap - INT TERM EXIT
  echo "stopping longctx..."
  # Front to back: the gateway stops taking requests, the workers finish theirs
  # (and their last offloads), then the store.
  for group in gateway workers memory_store; do
    for pid in ${pids_of[$group]:-}; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${pids_of[$group]:-}; do wait "$pid" 2>/dev/null || true; done
  done
  echo "stopped."
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

start() {  # group, name, then the command
  local group="$1" name="$2"; shift 2
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=("$!")
  pids_of[$group]="${pids_of[$group]:-} $!"
}

# Workers restore over the store's Unix socket (a path has at most 107 bytes).
store_socket="$home/memory_store.sock"
if [ "${#store_socket}" -gt 100 ]; then
  store_socket="$(mktemp -d /tmp/longctx.XXXXXX)/memory_store.sock"
fi
start memory_store memory_store "$bin/memory_store/memory_store" \
  --listen_address="127.0.0.1:$store_port" --metrics_address=127.0.0.1:9471 \
  --data_dir="$home/data/memory_store" --internal_token_file="$internal_token" \
  --local_socket="$store_socket"
group_size="${LONGCTX_GROUP_SIZE:-2}"
case "$group_size" in 1|2) ;; *) echo "LONGCTX_GROUP_SIZE must be 1 or 2" >&2; exit 2;; esac
# Each rank uses one core: two ranks fill this machine's two.
workers=""
for i in "${!worker_ports[@]}"; do
  port="${worker_ports[$i]}"
  start workers "worker$i" "$bin/services/worker/worker" --model="$model" \
    --listen_address="127.0.0.1:$port" --metrics_address="127.0.0.1:$((9461 + i))" \
    --group_id="group-$((i / group_size))" --rank="$((i % group_size))" \
    --group_size="$group_size" --rendezvous_address="127.0.0.1:$internal_port" \
    --threads=1 --memory_store="127.0.0.1:$store_port" \
    --memory_store_local_sockets="$store_socket" \
    --internal_token_file="$internal_token"
  workers="${workers:+$workers,}127.0.0.1:$port"
done
start gateway gateway "$bin/services/gateway/gateway" --model="$model" \
  --listen_address="127.0.0.1:$gateway_port" --metrics_address=127.0.0.1:9451 \
  --internal_listen_address="127.0.0.1:$internal_port" \
  --http_address=127.0.0.1:8000 \
  --workers="$workers" --group_size="$group_size" \
  --memory_store="127.0.0.1:$store_port" --internal_token_file="$internal_token"

cat <<TXT
longctx is starting (logs: $logs)
  gateway       grpc 127.0.0.1:$gateway_port   metrics http://127.0.0.1:9451/metrics  (internal: 127.0.0.1:$internal_port)
                OpenAI-compatible HTTP http://127.0.0.1:8000/v1
  worker 0      grpc 127.0.0.1:${worker_ports[0]}   metrics http://127.0.0.1:9461/metrics  (group $((0 / group_size)) rank $((0 % group_size)))
  worker 1      grpc 127.0.0.1:${worker_ports[1]}   metrics http://127.0.0.1:9462/metrics  (group $((1 / group_size)) rank $((1 % group_size)))
  memory_store  grpc 127.0.0.1:$store_port   metrics http://127.0.0.1:9471/metrics
                local reads $store_socket
  model         $model
Press Ctrl-C to stop.
TXT

# Wait until any process ends; then stop the rest.
set +e
wait -n "${pids[@]}"
rc=$?
echo "a longctx process exited (code $rc); see $logs"
exit "$rc"
