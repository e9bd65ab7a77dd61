#!/usr/bin/env bash
# Stress check of the gateway's relay (services/gateway/generate_call.cc).
# It reproduced a bug, now fixed: the gateway aborted about once in 2,000
# requests in grpc_call_unref from ~ClientContext ("pure virtual method called"
# or FilterStackCall::ExternalUnref's assertion), because the relay started
# worker reads from the client side's OnWriteDone without a hold (AddHold) on
# the worker call, which could finish and free itself in between.
# Starts the local stack (two single-rank workers) several times and sends
# 1-token requests, 4 at a time, some from clients that exit at once; keep the
# CPUs busy meanwhile to make races likelier (e.g. two `while :; do :; done`).
# On an abort, leaves a core file in the repository root (ulimit -c unlimited)
# and stops. Usage: tools/repro_gateway_abort.sh [rounds]
set -u
cd "$(dirname "$0")/.."
ulimit -c unlimited
rounds=${1:-16}
bazel build //tools/clients/cpp:generate >/dev/null 2>&1 || exit 1
G=bazel-bin/tools/clients/cpp/generate
for round in $(seq 1 "$rounds"); do
  (LONGCTX_GROUP_SIZE=1 setsid deploy/local/run.sh > /tmp/repro_stack.log 2>&1 &)
  for _ in $(seq 1 90); do
    echo hi | $G --address=127.0.0.1:50051 --max_new_tokens=1 >/dev/null 2>&1 && break
    sleep 1
  done
  for i in $(seq 1 40); do
    for j in 1 2 3; do
      (echo "w $i $j" | $G --address=127.0.0.1:50051 --max_new_tokens=1 >/dev/null 2>&1 &)
    done
    echo "x $i" | $G --address=127.0.0.1:50051 --max_new_tokens=1 >/dev/null 2>&1
  done
  sleep 1
  if ! pgrep -f "bazel-bin/services/gateway/gateway" >/dev/null; then
    echo "round $round: the gateway aborted; see .longctx/logs/gateway.log and ./core"
    pkill -TERM -f deploy/local/run.sh
    exit 1
  fi
  pkill -TERM -f deploy/local/run.sh
  sleep 4
done
echo "no abort in $rounds rounds"
