#!/usr/bin/env bash
# Starts the whole longctx stack on this machine with embedded defaults: one
# memory_store (RocksDB under .longctx/data), two CPU workers and the gateway, serving
# the generated tiny model. Installs what is missing first (tools/setup.sh).
# Prints where each process listens; logs go to .longctx/logs/. Ctrl-C or SIGTERM
# stops everything; if any process dies, the others are stopped too.
#
# Environment overrides: LONGCTX_HOME (default: <repo>/.longctx), LONGCTX_MODEL
# (a model folder to serve instead of the tiny model), GATEWAY_PORT (50051).
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
store_port=50071
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

start memory_store memory_store "$bin/memory_store/memory_store" \
  --listen_address="127.0.0.1:$store_port" --metrics_address=127.0.0.1:9471 \
  --data_dir="$home/data/memory_store"
workers=""
for i in "${!worker_ports[@]}"; do
  port="${worker_ports[$i]}"
  start workers "worker$i" "$bin/services/worker/worker" --model="$model" \
    --listen_address="127.0.0.1:$port" --metrics_address="127.0.0.1:$((9461 + i))" \
    --group_id="group-$i" --rank=0 --group_size=1 \
    --memory_store="127.0.0.1:$store_port"
  workers="${workers:+$workers,}127.0.0.1:$port"
done
start gateway gateway "$bin/services/gateway/gateway" --model="$model" \
  --listen_address="127.0.0.1:$gateway_port" --metrics_address=127.0.0.1:9451 \
  --workers="$workers" --group_size=1 --memory_store="127.0.0.1:$store_port"

cat <<TXT
longctx is starting (logs: $logs)
  gateway       grpc 127.0.0.1:$gateway_port   metrics http://127.0.0.1:9451/metrics
  worker 0      grpc 127.0.0.1:${worker_ports[0]}   metrics http://127.0.0.1:9461/metrics
  worker 1      grpc 127.0.0.1:${worker_ports[1]}   metrics http://127.0.0.1:9462/metrics
  memory_store  grpc 127.0.0.1:$store_port   metrics http://127.0.0.1:9471/metrics
  model         $model
Press Ctrl-C to stop.
TXT

# Wait until any process ends; then stop the rest.
set +e
wait -n "${pids[@]}"
rc=$?
echo "a longctx process exited (code $rc); see $logs"
exit "$rc"
