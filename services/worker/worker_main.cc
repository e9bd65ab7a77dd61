// worker: one rank of a worker group that hosts the model and holds long
// sequences (proto/worker.proto).
#include <atomic>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/kv_block_pool.h"
#include "engine/kv_offloader.h"
#include "kernels/gemm.h"
#include "memory_store/store_client.h"
#include "model/model_backend.h"
#include "model/model_source.h"
#include "parallel/worker_group.h"
#include "services/common/grpc_server.h"
#include "services/common/internal_tls_flags.h"
#include "services/common/logging.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/common/server_tls_flags.h"
#include "services/worker/worker_service_impl.h"

ABSL_FLAG(std::string, listen_address, "0.0.0.0:50061",
          "host:port of the gRPC endpoint.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9461",
          "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(std::string, model, "",
          "Hugging Face model folder (config.json + *.safetensors). Required.");
ABSL_FLAG(std::string, group_id, "group-0", "Id of this rank's worker group.");
ABSL_FLAG(int, rank, 0, "This worker's rank in its group, in [0, group_size).");
ABSL_FLAG(int, group_size, 1,
          "Ranks in the group; more than 1 splits each sequence across them "
          "(context parallelism).");
ABSL_FLAG(std::string, rendezvous_address, "",
          "host:port of the gateway, where the ranks of a group find each "
          "other. Required when --group_size > 1.");
ABSL_FLAG(std::string, gloo_hostname, "127.0.0.1",
          "Address the other ranks of the group reach this rank at (its Gloo "
          "listener binds to it).");
ABSL_FLAG(int, group_form_timeout_seconds, 20,
          "How long one attempt to form the group waits for every rank.");
ABSL_FLAG(int, group_op_timeout_seconds, 60,
          "How long one transfer between the ranks of a group may take.");
ABSL_FLAG(std::string, memory_store, "",
          "Comma-separated host:port list of memory_store shards; empty runs "
          "without offload.");
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
ABSL_FLAG(std::string, kv_dtype, "f16", "KV cache element type: f16 or f32.");
ABSL_FLAG(std::string, compute_precision, "",
          "GEMM precision: fp32, or bf16 (AVX512_BF16 or AMX CPUs; tensor "
          "cores on a GPU). Empty: fp32 on the CPU, bf16 on a GPU.");
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

  auto addresses =
      longctx::ParseServerAddresses(absl::GetFlag(FLAGS_listen_address),
                                    absl::GetFlag(FLAGS_metrics_address));
  if (!addresses.ok()) {
    return longctx::StartupError(kProgram, addresses.status());
  }
  auto stores = longctx::ParseHostPortList(absl::GetFlag(FLAGS_memory_store),
                                           "memory_store");
  if (!stores.ok()) return longctx::StartupError(kProgram, stores.status());
  longctx::WorkerIdentity identity;
  identity.group_id = absl::GetFlag(FLAGS_group_id);
  identity.rank = absl::GetFlag(FLAGS_rank);
  identity.group_size = absl::GetFlag(FLAGS_group_size);
  if (identity.group_size < 1 || identity.rank < 0 ||
      identity.rank >= identity.group_size) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(absl::StrCat(
                      "--rank=", identity.rank, " must be in [0, --group_size=",
                      identity.group_size, ")")));
  }
  const bool grouped = identity.group_size > 1;
  if (grouped && absl::GetFlag(FLAGS_rendezvous_address).empty()) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(
                      "--rendezvous_address (the gateway's host:port) is "
                      "required when --group_size > 1"));
  }
  for (absl::Status s :
       {Positive("group_form_timeout_seconds",
                 absl::GetFlag(FLAGS_group_form_timeout_seconds)),
        Positive("group_op_timeout_seconds",
                 absl::GetFlag(FLAGS_group_op_timeout_seconds))}) {
    if (!s.ok()) return longctx::StartupError(kProgram, s);
  }
  const int block_size = absl::GetFlag(FLAGS_block_size);
  if (block_size < 1 || block_size > 65536) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(absl::StrCat(
                      "--block_size=", block_size, " must be in [1, 65536]")));
  }
  longctx::EngineOptions engine_options;
  engine_options.max_running = absl::GetFlag(FLAGS_max_batch);
  engine_options.max_waiting = absl::GetFlag(FLAGS_max_queue);
  engine_options.max_queue_wait = absl::GetFlag(FLAGS_max_queue_wait);
  if (engine_options.max_queue_wait <= absl::ZeroDuration()) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(absl::StrCat(
                      "--max_queue_wait=",
                      absl::FormatDuration(engine_options.max_queue_wait),
                      " must be positive")));
  }
  engine_options.prefill_chunk_tokens =
      absl::GetFlag(FLAGS_prefill_chunk_tokens);
  engine_options.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
  for (absl::Status s :
       {Positive("max_batch", engine_options.max_running),
        Positive("max_queue", engine_options.max_waiting),
        Positive("prefill_chunk_tokens", engine_options.prefill_chunk_tokens),
        Positive("kv_cache_bytes",
                 absl::GetFlag(FLAGS_kv_cache_bytes) +
                     (absl::GetFlag(FLAGS_device) == "cpu" ? 0 : 1)),
        Positive("restore_streams_per_shard",
                 absl::GetFlag(FLAGS_restore_streams_per_shard)),
        Positive("max_message_bytes",
                 absl::GetFlag(FLAGS_max_message_bytes))}) {
    if (!s.ok()) return longctx::StartupError(kProgram, s);
  }
  auto kv_dtype = longctx::ParseKvDtype(absl::GetFlag(FLAGS_kv_dtype));
  if (!kv_dtype.ok()) return longctx::StartupError(kProgram, kv_dtype.status());
  longctx::DeviceOptions device_options;
  auto device = longctx::ParseDeviceFlag(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return longctx::StartupError(kProgram, device.status());
  device_options.device = *device;
  if (!absl::GetFlag(FLAGS_compute_precision).empty()) {
    auto precision = longctx::kernels::ParseComputePrecision(
        absl::GetFlag(FLAGS_compute_precision));
    if (!precision.ok())
      return longctx::StartupError(kProgram, precision.status());
    device_options.precision = *precision;
  }
  if (device_options.device >= 0 && grouped) {
    return longctx::StartupError(
        kProgram,
        absl::UnimplementedError(absl::StrCat(
            "--device=", absl::GetFlag(FLAGS_device),
            " with --group_size=", identity.group_size,
            ": GPU ranks serve alone for now (a group's ranks run on CPUs)")));
  }
  device_options.threads = absl::GetFlag(FLAGS_threads);
  device_options.block_size = block_size;
  device_options.kv_dtype = *kv_dtype;
  device_options.kv_cache_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_kv_cache_bytes));
  device_options.kv_cache_prefault = absl::GetFlag(FLAGS_kv_cache_prefault);
  device_options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  device_options.max_batch = engine_options.max_running;

  // Ports and certificates are checked before the model loads, which can take
  // a while.
  longctx::GrpcServerOptions server_options;
  server_options.listen = addresses->listen;
  server_options.max_receive_message_bytes =
      absl::GetFlag(FLAGS_max_message_bytes);
  auto tls = longctx::ApplyServerTlsFlags(longctx::ServerTlsOptions(),
                                          &server_options);
  if (!tls.ok()) return longctx::StartupError(kProgram, tls.status());
  auto internal_security = longctx::InternalChannelSecurityFromFlags();
  if (!internal_security.ok()) {
    return longctx::StartupError(kProgram, internal_security.status());
  }
  status = longctx::CheckPortFree(addresses->listen, "--listen_address");
  if (!status.ok()) return longctx::StartupError(kProgram, status);
  if (server_options.health_listen.has_value()) {
    status = longctx::CheckPortFree(*server_options.health_listen,
                                    "--health_address");
    if (!status.ok()) return longctx::StartupError(kProgram, status);
  }
  auto metrics = longctx::MetricsServer::Start(addresses->metrics, kProgram);
  if (!metrics.ok()) return longctx::StartupError(kProgram, metrics.status());
  // The gRPC server answers from now on: NOT_SERVING (and Generate
  // UNAVAILABLE) while the model loads and while the rank's group is
  // incomplete, SERVING once both are done.
  auto service = std::make_unique<longctx::WorkerServiceImpl>(identity);
  auto server = longctx::GrpcServer::Start(server_options, {service.get()});
  if (!server.ok()) return longctx::StartupError(kProgram, server.status());
  longctx::GrpcServer* grpc_server = server->get();

  auto source = longctx::OpenModelSource(absl::GetFlag(FLAGS_model));
  if (!source.ok()) return longctx::StartupError(kProgram, source.status());
  auto loaded =
      longctx::LoadModelOnDevice(*source, device_options, metrics->get());
  if (!loaded.ok()) return longctx::StartupError(kProgram, loaded.status());
  source->keep_alive.reset();  // The model holds its own copy of the weights.
  longctx::KvBlockPool* pool = loaded->pool.get();
  longctx::Log(longctx::LogLevel::kInfo,
               "model %s (%s, fingerprint %s): %d layers, hidden %d, on %s; "
               "KV cache %d blocks of %d tokens (%s)",
               source->dir, source->architecture, source->fingerprint_hex,
               source->shape.num_layers, source->shape.hidden_size,
               loaded->description, pool->capacity(), block_size,
               absl::GetFlag(FLAGS_kv_dtype));

  longctx::EngineMetrics engine_metrics((*metrics)->registry());
  engine_metrics.kv_blocks_capacity.Set(pool->capacity());
  engine_options.metrics = &engine_metrics;
  // Offload and restore through the memory store, when there is one.
  std::unique_ptr<longctx::StoreClient> store_client;
  std::unique_ptr<longctx::KvOffloader> offloader;
  if (!stores->empty()) {
    longctx::StoreClientOptions client_options;
    client_options.call_timeout =
        absl::Milliseconds(absl::GetFlag(FLAGS_store_timeout_ms));
    client_options.channel_security = *internal_security;
    auto client = longctx::StoreClient::Create(*stores, client_options);
    if (!client.ok()) return longctx::StartupError(kProgram, client.status());
    store_client = *std::move(client);
    longctx::KvOffloaderOptions offload_options;
    offload_options.max_queued_blocks =
        absl::GetFlag(FLAGS_offload_queue_blocks);
    offload_options.restore_streams_per_shard =
        absl::GetFlag(FLAGS_restore_streams_per_shard);
    offloader = std::make_unique<longctx::KvOffloader>(
        store_client.get(), pool, source->fingerprint, offload_options,
        &(*metrics)->registry());
    engine_options.offloader = offloader.get();
  }
  engine_options.fingerprint = source->fingerprint;
  // A rank of a group of P > 1 serves once the group has formed; rank 0 runs
  // the engine over the whole group, the others run the steps it sends.
  std::mutex ready_mu;  // Orders the group's readiness reports.
  bool attached = false;
  bool group_ready = false;
  bool model_failed = false;
  // Called with ready_mu held.
  auto report_ready = [&] {
    const bool ready = attached && (!grouped || group_ready) && !model_failed;
    service->SetReady(ready);
    grpc_server->SetServing(ready);
  };
  std::unique_ptr<longctx::WorkerGroup> group;
  if (grouped) {
    longctx::WorkerGroupOptions group_options;
    group_options.group_id = identity.group_id;
    group_options.rank = identity.rank;
    group_options.size = identity.group_size;
    group_options.rendezvous_address = absl::GetFlag(FLAGS_rendezvous_address);
    group_options.rendezvous_security = *internal_security;
    group_options.hostname = absl::GetFlag(FLAGS_gloo_hostname);
    group_options.form_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_group_form_timeout_seconds));
    group_options.op_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_group_op_timeout_seconds));
    // Every rank offloads and restores the blocks it holds, as the leader
    // tells it.
    group = std::make_unique<longctx::WorkerGroup>(
        group_options, loaded->cpu_model, pool, offloader.get(),
        [&](bool ready, const std::string& /*why*/) {
          std::lock_guard<std::mutex> lock(ready_mu);
          group_ready = ready;
          report_ready();
        });
  }
  longctx::ForwardModel* forward =
      grouped ? group->forward_model() : loaded->model.get();
  longctx::KvBlockPool* ids = grouped ? group->group_pool() : pool;
  std::unique_ptr<longctx::Engine> engine;
  if (grouped) engine_options.offloader = group->store_io();
  // A model that breaks for good (a GPU fault) takes the rank out of
  // service: NOT_SERVING, and Generate UNAVAILABLE.
  engine_options.on_model_failure = [&](const absl::Status& why) {
    longctx::Log(longctx::LogLevel::kError, "the model failed, not serving: %s",
                 std::string(why.message()));
    std::lock_guard<std::mutex> lock(ready_mu);
    model_failed = true;
    report_ready();
  };
  if (forward != nullptr) {
    engine = std::make_unique<longctx::Engine>(forward, ids, engine_options);
  }
  service->Attach(source->fingerprint_hex, engine.get(),
                  ids != nullptr ? ids : pool, loaded->report);
  {
    std::lock_guard<std::mutex> lock(ready_mu);
    attached = true;
    report_ready();
  }
  return longctx::ServeUntilSignal(
      kProgram, **server, **metrics,
      absl::Seconds(absl::GetFlag(FLAGS_grace_period_seconds)),
      /*mark_serving=*/false);
}
