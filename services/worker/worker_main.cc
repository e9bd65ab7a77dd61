// worker: one rank of a worker group that hosts the model and holds long
// sequences (proto/worker.proto). The flags become WorkerServerOptions; the
// server is services/worker/worker_server.h.
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "kernels/gemm.h"
#include "kvblock/kv_layout.h"
#include "model/model_backend.h"
#include "services/common/internal_auth.h"
#include "services/common/internal_tls_flags.h"
#include "services/common/internal_token_flags.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/common/server_tls_flags.h"
#include "services/worker/worker_server.h"

ABSL_FLAG(std::string, listen_address, "127.0.0.1:50061",
          "host:port of the gRPC endpoint. Loopback by default: an internal "
          "service that only the gateway calls; listen on a private address "
          "when the gateway runs elsewhere, with --internal_token_file or "
          "--tls_client_ca.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9461",
          "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(std::string, model, "",
          "Hugging Face model folder (config.json + *.safetensors). Required.");
ABSL_FLAG(std::string, group_id, "group-0", "Id of this rank's worker group.");
ABSL_FLAG(int, rank, 0, "This worker's rank in its group, in [0, group_size).");
ABSL_FLAG(int, group_size, 1,
          "Ranks in the group; more than 1 splits each sequence across them "
          "(context parallelism).");
ABSL_FLAG(std::string, rendezvous_address, "",
          "host:port of the gateway's internal listener "
          "(--internal_listen_address), where the ranks of a group find each "
          "other. Required when --group_size > 1.");
ABSL_FLAG(std::string, gloo_hostname, "127.0.0.1",
          "Address the other ranks of the group reach this rank at (its Gloo "
          "listener binds to it).");
ABSL_FLAG(int, group_form_timeout_seconds, 20,
          "How long one attempt to form the group waits for every rank.");
ABSL_FLAG(int, step_stall_seconds, 30,
          "A rank whose engine step has run longer than this reports not "
          "ready, so the gateway sends new requests to other groups while "
          "its group is stuck (a rank that stopped answering, a hung "
          "device). Set it above the longest step this hardware takes (a "
          "--prefill_chunk_tokens chunk of a large model on a CPU).");
ABSL_FLAG(int, group_op_timeout_seconds, 60,
          "How long one transfer between the ranks of a group may take.");
ABSL_FLAG(std::string, memory_store, "",
          "Comma-separated host:port list of memory_store shards; empty runs "
          "without offload.");
ABSL_FLAG(std::string, memory_store_local_sockets, "",
          "Comma-separated, one per --memory_store shard in the same order: "
          "the path of the shard's --local_socket when it runs on this "
          "machine as this user, or nothing. Restores read whole blocks "
          "there instead of over gRPC (several times faster; gRPC when the "
          "socket cannot be reached). Empty: gRPC only.");
ABSL_FLAG(int, block_size, 256, "Tokens per KV block.");
ABSL_FLAG(std::string, device, "cpu",
          "Where the model runs: cpu, or cuda / cuda:N (the N-th GPU; needs a "
          "worker built with --config=cuda). A GPU holds the weights and the "
          "KV cache in its own memory.");
ABSL_FLAG(int64_t, kv_cache_bytes, int64_t{2} << 30,
          "Bytes of memory for the KV cache (whole blocks): host memory on "
          "the CPU, device memory on a GPU, where 0 takes 90% of what the "
          "weights leave free.");
ABSL_FLAG(bool, kv_cache_prefault, true,
          "Write every page of the KV cache once at start-up, so that no "
          "request pays for first touches of memory (the worker is resident "
          "at --kv_cache_bytes from the start).");
ABSL_FLAG(std::string, kv_dtype, "f16",
          "KV cache element type: f16, bf16 (CPU: with "
          "--compute_precision=bf16, decode attention multiplies the cache "
          "without converting it) or f32.");
ABSL_FLAG(std::string, compute_precision, "",
          "GEMM precision: fp32, or bf16 (AVX512_BF16 or AMX CPUs; tensor "
          "cores on a GPU). Empty: fp32 on the CPU, bf16 on a GPU.");
ABSL_FLAG(std::string, weight_dtype, "auto",
          "Linear-layer weights: auto (in the compute precision, from what "
          "the model folder stores), or int8 (quantized at load per output "
          "channel; int8 GEMMs, half the memory traffic of bf16 in decode; "
          "CPU only).");
ABSL_FLAG(bool, cuda_graphs, true,
          "On a GPU, replay decode steps as CUDA graphs (one per batch-size "
          "bucket up to --max_batch).");
ABSL_FLAG(int, threads, 0, "Compute threads; 0 uses every CPU.");
ABSL_FLAG(int, max_batch, 64, "Most sequences decoding together.");
ABSL_FLAG(int, max_queue, 256, "Most requests waiting to start.");
ABSL_FLAG(int, max_message_bytes, 64 << 20,
          "Largest gRPC request message accepted, in bytes: a prompt's token "
          "ids from the gateway (4 bytes or fewer each).");
ABSL_FLAG(absl::Duration, max_queue_wait, absl::Minutes(5),
          "Longest a request may wait to start (e.g. 30s, 5m); one still "
          "waiting then fails with RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, max_bypass_wait, absl::Seconds(10),
          "A waiting request whose KV blocks do not fit yet lets smaller ones "
          "behind it start first for at most this long (e.g. `10s`); then "
          "nothing behind it starts before it does. 0: first come, first "
          "served.");
ABSL_FLAG(int, prefill_chunk_tokens, 512,
          "Most prompt tokens prefilled per engine step.");
ABSL_FLAG(bool, prefix_cache, true,
          "Keep full prompt KV blocks in memory after their request, for later "
          "requests with the same prefix; least recently used ones (those "
          "already in the memory store first) make room when needed. Groups "
          "of more than one rank do not cache yet.");
ABSL_FLAG(int, restore_streams_per_shard, 1,
          "KV blocks a restore reads at once from each memory_store shard "
          "(the shards are read in parallel).");
ABSL_FLAG(int, restore_streams_per_local_shard, 3,
          "The same for a shard read over --memory_store_local_sockets.");
ABSL_FLAG(int, offload_queue_blocks, 64,
          "KV blocks waiting to be written to the memory store; more are "
          "dropped (counted), never waited for.");
ABSL_FLAG(int, store_timeout_ms, 2000,
          "Deadline of one memory_store call; a slow or absent shard's blocks "
          "count as misses.");
ABSL_FLAG(int, grace_period_seconds, 10,
          "On SIGTERM/SIGINT, seconds calls in flight may take to finish.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace {

absl::Status Positive(const char* flag, int64_t value) {
  if (value >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, " must be >= 1"));
}

// OptionsFromFlags checks the flags (errors name them) and turns them into
// the server's options.
absl::StatusOr<longctx::WorkerServerOptions> OptionsFromFlags() {
  longctx::WorkerServerOptions o;
  auto addresses =
      longctx::ParseServerAddresses(absl::GetFlag(FLAGS_listen_address),
                                    absl::GetFlag(FLAGS_metrics_address));
  if (!addresses.ok()) return addresses.status();
  o.metrics_address = addresses->metrics;
  auto stores = longctx::ParseHostPortList(absl::GetFlag(FLAGS_memory_store),
                                           "memory_store");
  if (!stores.ok()) return stores.status();
  o.memory_stores = *std::move(stores);
  const std::string sockets = absl::GetFlag(FLAGS_memory_store_local_sockets);
  if (!sockets.empty()) {
    o.store.local_sockets = absl::StrSplit(sockets, ',');
    if (o.store.local_sockets.size() != o.memory_stores.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--memory_store_local_sockets has ", o.store.local_sockets.size(),
          " entries for ", o.memory_stores.size(),
          " --memory_store shards: give one per shard (empty for none)"));
    }
  }
  o.identity.group_id = absl::GetFlag(FLAGS_group_id);
  o.identity.rank = absl::GetFlag(FLAGS_rank);
  o.identity.group_size = absl::GetFlag(FLAGS_group_size);
  if (o.identity.group_size < 1 || o.identity.rank < 0 ||
      o.identity.rank >= o.identity.group_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rank=", o.identity.rank,
        " must be in [0, --group_size=", o.identity.group_size, ")"));
  }
  if (o.identity.group_size > 1 &&
      absl::GetFlag(FLAGS_rendezvous_address).empty()) {
    return absl::InvalidArgumentError(
        "--rendezvous_address (the gateway's host:port) is required when "
        "--group_size > 1");
  }
  const int block_size = absl::GetFlag(FLAGS_block_size);
  if (block_size < 1 || block_size > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("--block_size=", block_size, " must be in [1, 65536]"));
  }
  o.engine.max_running = absl::GetFlag(FLAGS_max_batch);
  o.engine.max_waiting = absl::GetFlag(FLAGS_max_queue);
  o.engine.max_queue_wait = absl::GetFlag(FLAGS_max_queue_wait);
  if (o.engine.max_queue_wait <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_queue_wait=", absl::FormatDuration(o.engine.max_queue_wait),
        " must be positive"));
  }
  o.engine.max_bypass_wait = absl::GetFlag(FLAGS_max_bypass_wait);
  if (o.engine.max_bypass_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--max_bypass_wait must be >= 0");
  }
  o.engine.prefill_chunk_tokens = absl::GetFlag(FLAGS_prefill_chunk_tokens);
  o.engine.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
  for (absl::Status s :
       {Positive("group_form_timeout_seconds",
                 absl::GetFlag(FLAGS_group_form_timeout_seconds)),
        Positive("group_op_timeout_seconds",
                 absl::GetFlag(FLAGS_group_op_timeout_seconds)),
        Positive("max_batch", o.engine.max_running),
        Positive("max_queue", o.engine.max_waiting),
        Positive("prefill_chunk_tokens", o.engine.prefill_chunk_tokens),
        Positive("kv_cache_bytes",
                 absl::GetFlag(FLAGS_kv_cache_bytes) +
                     (absl::GetFlag(FLAGS_device) == "cpu" ? 0 : 1)),
        Positive("restore_streams_per_shard",
                 absl::GetFlag(FLAGS_restore_streams_per_shard)),
        Positive("restore_streams_per_local_shard",
                 absl::GetFlag(FLAGS_restore_streams_per_local_shard)),
        Positive("max_message_bytes",
                 absl::GetFlag(FLAGS_max_message_bytes))}) {
    if (!s.ok()) return s;
  }
  auto kv_dtype = longctx::ParseKvDtype(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_dtype.ok()) return kv_dtype.status();
  auto device = longctx::ParseDeviceFlag(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return device.status();
  o.device.device = *device;
  if (!absl::GetFlag(FLAGS_compute_precision).empty()) {
    auto precision = longctx::kernels::ParseComputePrecision(
        absl::GetFlag(FLAGS_compute_precision));
    if (!precision.ok()) return precision.status();
    o.device.precision = *precision;
  }
  auto weight_dtype =
      longctx::kernels::ParseWeightDtype(absl::GetFlag(FLAGS_weight_dtype));
  if (!weight_dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--weight_dtype: ", weight_dtype.status().message()));
  }
  o.device.weight_dtype = *weight_dtype;
  o.device.threads = absl::GetFlag(FLAGS_threads);
  o.device.block_size = block_size;
  o.device.kv_dtype = *kv_dtype;
  o.device.kv_cache_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_kv_cache_bytes));
  o.device.kv_cache_prefault = absl::GetFlag(FLAGS_kv_cache_prefault);
  o.device.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  o.device.max_batch = o.engine.max_running;
  o.model_dir = absl::GetFlag(FLAGS_model);
  o.grpc.listen = addresses->listen;
  o.grpc.max_receive_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  auto tls = longctx::ApplyServerTlsFlags(longctx::ServerTlsOptions(), &o.grpc);
  if (!tls.ok()) return tls.status();
  auto internal_security = longctx::InternalChannelSecurityFromFlags();
  if (!internal_security.ok()) return internal_security.status();
  o.internal_security = *std::move(internal_security);
  auto internal_token = longctx::InternalTokenFromFlags();
  if (!internal_token.ok()) return internal_token.status();
  o.internal_auth = longctx::InternalAuth(*std::move(internal_token));
  o.store.call_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_store_timeout_ms));
  o.offload.max_queued_blocks = absl::GetFlag(FLAGS_offload_queue_blocks);
  o.offload.restore_streams_per_shard =
      absl::GetFlag(FLAGS_restore_streams_per_shard);
  o.offload.restore_streams_per_local_shard =
      absl::GetFlag(FLAGS_restore_streams_per_local_shard);
  if (absl::GetFlag(FLAGS_step_stall_seconds) < 1) {
    return absl::InvalidArgumentError("--step_stall_seconds must be >= 1");
  }
  o.step_stall = absl::Seconds(absl::GetFlag(FLAGS_step_stall_seconds));
  o.rendezvous_address = absl::GetFlag(FLAGS_rendezvous_address);
  o.gloo_hostname = absl::GetFlag(FLAGS_gloo_hostname);
  o.group_form_timeout =
      absl::Seconds(absl::GetFlag(FLAGS_group_form_timeout_seconds));
  o.group_op_timeout =
      absl::Seconds(absl::GetFlag(FLAGS_group_op_timeout_seconds));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  constexpr char kProgram[] = "worker";
  absl::SetProgramUsageMessage(
      "One rank of a longctx worker group. Usage: worker --model=DIR "
      "[--flags]");
  absl::ParseCommandLine(argc, argv);
  absl::Status status =
      longctx::InitProcess(kProgram, absl::GetFlag(FLAGS_log_level));
  if (!status.ok()) return longctx::StartupError(kProgram, status);
  auto options = OptionsFromFlags();
  if (!options.ok()) return longctx::StartupError(kProgram, options.status());
  auto server = longctx::WorkerServer::Start(*std::move(options));
  if (!server.ok()) return longctx::StartupError(kProgram, server.status());
  return longctx::ServeUntilSignal(
      kProgram, (*server)->grpc_server(), (*server)->metrics_server(),
      absl::Seconds(absl::GetFlag(FLAGS_grace_period_seconds)),
      /*mark_serving=*/false);
}
