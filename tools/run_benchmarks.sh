#!/usr/bin/env bash
# Reruns every benchmark of this repository and rewrites its section of
# docs/BENCHMARKS.md (the text between "<!-- generated:NAME -->" and
# "<!-- end generated:NAME -->"; everything else in the file is left alone).
#
# THE FULL RUN TAKES LONG: about 14 minutes on a quiet 2-core machine (engine
# 6, load 3, ring 2, kernels 2, ring_decode 1), several times that while others
# compile on it (the engine benchmark runs prefills of up to 32,768 tokens and
# decode steps at contexts of up to 131,072 tokens on two model shapes, three
# weight types and two compute precisions). --quick runs every section at small
# sizes (about 4 minutes) and
# writes a copy of the doc instead of docs/BENCHMARKS.md. Not part of CI:
# timings never gate anything.
#
#   tools/run_benchmarks.sh                      # everything, rewrites the doc
#   tools/run_benchmarks.sh --only=gateway,load  # the two whole-system figures
#   tools/run_benchmarks.sh --quick              # small sizes, doc copy only
#
# Sections (--only takes a comma-separated list of them):
#   kernels  every Google Benchmark in kernels/ (bazel query finds them)
#   engine   //tools/bench_engine: prefill and decode against GEMM and memory
#   restore  //tools/bench_engine:bench_restore: memory_store restore vs compute
#   ring     //tools/bench_engine:bench_ring: prefill by one rank vs a group of 2
#   ring_decode  the same for a batch-1 decode step at a context of 131,072
#            tokens (pass-Q), fp16 and bf16 KV caches
#   store    //tools/bench_store:bench_store_writes: memory_store write
#            throughput, durable (group commit) vs not, 1/4/16 writers
#   tokenizer //tools/bench_tokenizer: encoding a 10 MB document with
#            tokenizer.json (each family's layout) vs libsentencepiece
#   gateway  figure A: the gateway's added latency (//tools/bench_gateway)
#   load     figure B: 64 concurrent long-document streams for 60 s
#            (//tools/loadgen), resident memory of every process sampled;
#            once with two single-rank workers (load-p1), once with one
#            group of two ranks (load-p2, the default of deploy/local/run.sh)
#
# gateway and load start their own stack on free ports (so they run beside a
# stack already on the default ports), with the processes and flags of
# deploy/local/run.sh: a memory_store, two worker ranks with one thread each
# and a gateway, serving the tiny model. The gateway figure uses single-rank
# workers (LONGCTX_GROUP_SIZE=1), so that calling a worker directly computes
# exactly what the gateway's worker computes.
#
# Other options: --doc=FILE (the file to rewrite), --threads=N (compute threads
# of the engine, restore and kernel benchmarks; default: every CPU), --out=DIR
# (raw outputs and logs; default .longctx/bench/<time>).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

all_sections="kernels engine restore ring ring_decode store tokenizer gateway load"
only=""
quick=false
doc=""
threads="$(nproc)"
out=""
for arg in "$@"; do
  case "$arg" in
    --only=*) only="${arg#--only=}" ;;
    --quick) quick=true ;;
    --doc=*) doc="${arg#--doc=}" ;;
    --threads=*) threads="${arg#--threads=}" ;;
    --out=*) out="${arg#--out=}" ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run_benchmarks.sh: unknown argument $arg (--help lists them)" >&2
      exit 2
      ;;
  esac
done
sections="${only//,/ }"
sections="${sections:-$all_sections}"
for s in $sections; do
  case " $all_sections " in
    *" $s "*) ;;
    *)
      echo "run_benchmarks.sh: unknown section $s (sections: $all_sections)" >&2
      exit 2
      ;;
  esac
done
out="${out:-$repo/.longctx/bench/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ -z "$doc" ]; then
  if $quick; then
    doc="$out/BENCHMARKS.md"
    cp docs/BENCHMARKS.md "$doc"
  else
    doc="$repo/docs/BENCHMARKS.md"
  fi
fi
echo "sections: $sections; raw outputs in $out; rewriting $doc"

# --- Build everything the chosen sections need, once, with -c opt. ---------
targets=()
kernel_benchmarks=()
for s in $sections; do
  case "$s" in
    kernels)
      mapfile -t kernel_benchmarks < <(bazel query --noshow_progress \
        'attr(name, "_benchmark$", //kernels:*)' 2>/dev/null | sort)
      targets+=("${kernel_benchmarks[@]}")
      ;;
    engine) targets+=(//tools/bench_engine:bench_engine) ;;
    restore) targets+=(//tools/bench_engine:bench_restore) ;;
    ring | ring_decode) targets+=(//tools/bench_engine:bench_ring) ;;
    store) targets+=(//tools/bench_store:bench_store_writes) ;;
    tokenizer) targets+=(//tools/bench_tokenizer) ;;
    gateway | load)
      targets+=(//services/gateway //services/worker //memory_store
        //tools/make_tiny_model //tools/bench_gateway //tools/loadgen)
      ;;
  esac
done
echo "building ${#targets[@]} targets with -c opt..."
bazel build -c opt "${targets[@]}" >"$out/build.log" 2>&1 || {
  tail -n 30 "$out/build.log" >&2
  exit 1
}
bin="$(bazel info -c opt bazel-bin 2>/dev/null)"

machine="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs/BENCHMARKS.md' 2>/dev/null || echo '+changes')"

# --- Writing a section into the doc. ----------------------------------------
# replace_section NAME FILE: the doc's text between the markers of NAME becomes
# FILE's content (the markers are added at the end of the doc if missing).
replace_section() {
  python3 - "$doc" "$1" "$2" <<'PY'
import sys
doc, name, body_file = sys.argv[1:]
begin, end = f"<!-- generated:{name} -->", f"<!-- end generated:{name} -->"
text = open(doc).read()
body = open(body_file).read().rstrip("\n") + "\n"
block = f"{begin}\n{body}{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + f"\n\n{block}\n"
open(doc, "w").write(text)
PY
}

# run_section NAME FORMAT COMMAND-SHOWN -- ARGV...: runs ARGV (stdout to the
# doc, stderr to the log), then writes the date, machine, load and command
# above the raw output into section NAME. FORMAT is "markdown" (the output is
# markdown already: its "# title" line becomes bold so the doc keeps its
# headings) or "text" (a code block).
run_section() {
  local name="$1" format="$2" shown="$3"
  shift 4
  local load_before start end
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  start="$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "[$name] $shown"
  if ! "$@" >"$out/$name.out" 2>"$out/$name.log"; then
    echo "[$name] failed; see $out/$name.log" >&2
    tail -n 20 "$out/$name.log" >&2
    return 1
  fi
  end="$(date -u '+%H:%M UTC')"
  {
    echo "Run of $start to $end on $machine (commit $commit$($quick && echo ', --quick sizes'));"
    echo "load average $load_before at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
    echo "Command:"
    echo
    echo '```sh'
    echo "$shown"
    echo '```'
    echo
    if [ "$format" = markdown ]; then
      sed 's/^# \(.*\)$/**\1**/' "$out/$name.out"
    else
      echo '```text'
      cat "$out/$name.out"
      echo '```'
    fi
  } >"$out/$name.md"
  replace_section "$name" "$out/$name.md"
}

# --- A stack of our own, on free ports. --------------------------------------
stack_pids=()
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# start_stack DIR GROUP_SIZE: memory_store, two worker ranks (two single-rank
# groups, or one group of two ranks), gateway; sets gateway_address,
# leader_addresses (rank 0 of each group) and stack_pids (store, workers,
# gateway).
start_stack() {
  local dir="$1" group_size="$2" model
  mkdir -p "$dir/logs"
  model="$dir/models/tiny"
  "$bin/tools/make_tiny_model/make_tiny_model" --out="$model" >"$dir/logs/make_tiny_model.log" 2>&1
  local store_port gateway_port
  store_port="$(free_port)"
  gateway_port="$(free_port)"
  "$bin/memory_store/memory_store" --listen_address="127.0.0.1:$store_port" \
    --metrics_address="127.0.0.1:$(free_port)" --data_dir="$dir/data/memory_store" \
    >"$dir/logs/memory_store.log" 2>&1 &
  stack_pids=("$!")
  local i port worker_addresses="" internal_port
  internal_port="$(free_port)"
  leader_addresses=""
  for i in 0 1; do
    port="$(free_port)"
    "$bin/services/worker/worker" --model="$model" \
      --listen_address="127.0.0.1:$port" --metrics_address="127.0.0.1:$(free_port)" \
      --group_id="group-$((i / group_size))" --rank="$((i % group_size))" \
      --group_size="$group_size" --rendezvous_address="127.0.0.1:$internal_port" \
      --threads=1 --memory_store="127.0.0.1:$store_port" \
      >"$dir/logs/worker$i.log" 2>&1 &
    stack_pids+=("$!")
    worker_addresses="${worker_addresses:+$worker_addresses,}127.0.0.1:$port"
    if [ $((i % group_size)) -eq 0 ]; then
      leader_addresses="${leader_addresses:+$leader_addresses,}127.0.0.1:$port"
    fi
  done
  "$bin/services/gateway/gateway" --model="$model" \
    --listen_address="127.0.0.1:$gateway_port" --metrics_address="127.0.0.1:$(free_port)" \
    --internal_listen_address="127.0.0.1:$internal_port" \
    --workers="$worker_addresses" --group_size="$group_size" \
    --memory_store="127.0.0.1:$store_port" >"$dir/logs/gateway.log" 2>&1 &
  stack_pids+=("$!")
  gateway_address="127.0.0.1:$gateway_port"
}
# stop_stack: SIGTERM front to back (gateway, workers, store), as run.sh does.
stop_stack() {
  local i
  for ((i = ${#stack_pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${stack_pids[$i]}" 2>/dev/null || true
    wait "${stack_pids[$i]}" 2>/dev/null || true
  done
  stack_pids=()
}
sampler_pid=""
cleanup() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  stop_stack
}
# On Ctrl-C the benchmark in the foreground gets SIGINT too; on SIGTERM it is
# allowed to finish first. Either way the stack and the sampler are stopped.
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- The sections. -------------------------------------------------------------
run_kernels() {
  local min_time=""
  $quick && min_time="--benchmark_min_time=0.05"
  local target name
  for target in "${kernel_benchmarks[@]}"; do
    name="${target#//kernels:}"
    echo "== bazel run -c opt $target${min_time:+ -- $min_time}"
    OMP_NUM_THREADS="$threads" "$bin/kernels/$name" $min_time 2>&1
    echo
  done
}

run_load() {
  # Samples VmRSS (KiB) of every stack process once a second into rss.tsv, in
  # three phases: idle after start, under load, idle after the load.
  local dir="$1"
  shift
  local phase_file="$dir/phase"
  echo before >"$phase_file"
  (
    # Ends when told, or when the script is gone (a sampler must not outlive
    # it even if the script was killed without running its traps).
    while kill -0 $$ 2>/dev/null; do
      phase="$(cat "$phase_file")"
      [ "$phase" = stop ] && break
      for pid in "${stack_pids[@]}"; do
        rss="$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null || true)"
        echo -e "$phase\t$pid\t${rss:-0}"
      done
      sleep 1
    done
  ) >"$dir/rss.tsv" &
  sampler_pid=$!
  sleep 5
  echo during >"$phase_file"
  local rc=0
  "$bin/tools/loadgen/loadgen" "$@" >"$dir/loadgen.out" 2>"$dir/loadgen.log" || rc=$?
  echo after >"$phase_file"
  sleep 10
  echo stop >"$phase_file"
  wait "$sampler_pid"
  sampler_pid=""
  cat "$dir/loadgen.out"
  if [ "$rc" -ne 0 ]; then
    echo "loadgen exited with code $rc" >&2
    return "$rc"
  fi
  local names=(memory_store worker0 worker1 gateway) i
  echo
  echo "Resident memory (VmRSS, sampled every second; MiB):"
  echo
  echo "| process | idle before | max under load | idle after (last) |"
  echo "|---|---|---|---|"
  for i in "${!stack_pids[@]}"; do
    awk -F'\t' -v pid="${stack_pids[$i]}" -v name="${names[$i]}" '
      $2 == pid { v = $3 / 1024
        if ($1 == "before") before = v
        if ($1 == "during" && v > during) during = v
        if ($1 == "after") after = v }
      END { printf "| %s | %.0f | %.0f | %.0f |\n", name, before, during, after }' \
      "$dir/rss.tsv"
  done
  local failed
  failed="$(sed -n 's/^requests:\(.*\)  in .*/\1/p' "$dir/loadgen.out" | tr ' ' '\n' |
    grep -v '^OK=' | grep -c . || true)"
  echo
  if [ "$failed" -eq 0 ]; then
    echo "Failed requests: none."
  else
    echo "Failed requests: $(sed -n 's/^requests://p' "$dir/loadgen.out")"
    echo "WARNING: requests failed; see $dir/logs" >&2
  fi
  for i in "${!stack_pids[@]}"; do
    if ! kill -0 "${stack_pids[$i]}" 2>/dev/null; then
      echo "${names[$i]} exited during the run; see $dir/logs" >&2
      return 1
    fi
  done
}

for s in $sections; do
  case "$s" in
    kernels)
      shown="$(for t in "${kernel_benchmarks[@]}"; do
        echo "bazel run -c opt $t$($quick && echo ' -- --benchmark_min_time=0.05')"
      done)"
      run_section kernels text "$shown" -- run_kernels
      ;;
    engine)
      args=(--threads="$threads")
      # shellcheck disable=SC2054  # the commas are inside one flag's value.
      $quick && args+=(--shapes=S --prefill_lengths=512,2048 --long_prefill=0
        --attention_tokens=4096 --weight_dtypes=f32 --long_decode_contexts=8192)
      run_section engine markdown \
        "bazel run -c opt //tools/bench_engine -- ${args[*]}" -- \
        "$bin/tools/bench_engine/bench_engine" "${args[@]}"
      ;;
    restore)
      args=(--threads="$threads" --tokens=16384)
      $quick && args=(--threads="$threads" --tokens=2048)
      run_section restore markdown \
        "bazel run -c opt //tools/bench_engine:bench_restore -- ${args[*]}" -- \
        "$bin/tools/bench_engine/bench_restore" "${args[@]}"
      ;;
    ring)
      args=(--ranks=2 --threads=1 --tokens=16384)
      $quick && args=(--ranks=2 --threads=1 --tokens=2048 --repeats=1)
      run_section ring text \
        "bazel run -c opt //tools/bench_engine:bench_ring -- ${args[*]}" -- \
        "$bin/tools/bench_engine/bench_ring" "${args[@]}"
      ;;
    ring_decode)
      # Two configurations, one section: fp16 cache with fp32 compute (the
      # CPU defaults), bf16 cache with bf16 compute.
      context=131072
      $quick && context=16384
      ring_args=(--ranks=2 --threads=1 --decode_context="$context" --repeats=6)
      ring_bf16=(--compute_precision=bf16 --weight_dtype=bf16 --kv_dtype=bf16)
      run_ring_decode() {
        "$bin/tools/bench_engine/bench_ring" "${ring_args[@]}" &&
          "$bin/tools/bench_engine/bench_ring" "${ring_args[@]}" "${ring_bf16[@]}"
      }
      run_section ring_decode text \
        "bazel run -c opt //tools/bench_engine:bench_ring -- ${ring_args[*]}
bazel run -c opt //tools/bench_engine:bench_ring -- ${ring_args[*]} ${ring_bf16[*]}" \
        -- run_ring_decode
      ;;
    tokenizer)
      args=(--mb=10 --dir="$out/tokenizer")
      $quick && args=(--mb=1 --dir="$out/tokenizer")
      run_section tokenizer markdown \
        "bazel run -c opt //tools/bench_tokenizer -- ${args[*]}" -- \
        "$bin/tools/bench_tokenizer/bench_tokenizer" "${args[@]}"
      ;;
    store)
      args=(--dir="$out/store" --blocks=256)
      $quick && args=(--dir="$out/store" --blocks=64)
      run_section store markdown \
        "bazel run -c opt //tools/bench_store:bench_store_writes -- ${args[*]}" -- \
        "$bin/tools/bench_store/bench_store_writes" "${args[@]}"
      ;;
    gateway)
      args=(--requests=1000 --warmup_requests=50)
      $quick && args=(--requests=100 --warmup_requests=10)
      start_stack "$out/gateway-stack" 1
      run_section gateway markdown \
        "tools/run_benchmarks.sh --only=gateway   # starts a stack, then:
bazel run -c opt //tools/bench_gateway -- --gateway=\$GATEWAY --workers=\$WORKER0,\$WORKER1 ${args[*]}" -- \
        "$bin/tools/bench_gateway/bench_gateway" --gateway="$gateway_address" \
        --workers="$leader_addresses" "${args[@]}"
      stop_stack
      ;;
    load)
      args=(--concurrency=64 --duration_seconds=60 --workload=book --documents=4
        --document_chars=20000 --max_new_tokens=32 --warmup_requests=2
        --deadline_seconds=600)
      $quick && args=(--concurrency=64 --duration_seconds=10 --workload=book
        --documents=4 --document_chars=4000 --max_new_tokens=8 --warmup_requests=1)
      # Two single-rank workers, then the default of deploy/local/run.sh: one
      # group of two ranks.
      for group_size in 1 2; do
        start_stack "$out/load-p$group_size-stack" "$group_size"
        run_section "load-p$group_size" markdown \
          "tools/run_benchmarks.sh --only=load   # starts a stack of 2 ranks in groups of $group_size, samples VmRSS, runs:
bazel run -c opt //tools/loadgen -- --address=\$GATEWAY ${args[*]}" -- \
          run_load "$out/load-p$group_size-stack" --address="$gateway_address" "${args[@]}"
        stop_stack
      done
      ;;
  esac
done
echo "done: $doc"
