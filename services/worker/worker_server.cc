#include "services/worker/worker_server.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kvblock/kv_block_format.h"
#include "model/model_source.h"
#include "services/common/logging.h"

namespace longctx {

absl::StatusOr<std::unique_ptr<WorkerServer>> WorkerServer::Start(
    WorkerServerOptions options) {
  const bool grouped = options.identity.group_size > 1;
  if (options.device.device >= 0 && grouped) {
    return absl::UnimplementedError(absl::StrCat(
        "a GPU rank (--device=cuda) in a group of ",
        options.identity.group_size,
        " (--group_size): GPU ranks serve alone for now, a group's ranks run "
        "on CPUs"));
  }
  std::unique_ptr<WorkerServer> server(new WorkerServer);
  server->options_ = std::move(options);
  WorkerServerOptions& o = server->options_;

  // Ports are checked before the model loads, which can take a while.
  absl::Status status = CheckPortFree(o.grpc.listen, "--listen_address");
  if (status.ok() && o.grpc.health_listen.has_value()) {
    status = CheckPortFree(*o.grpc.health_listen, "--health_address");
  }
  if (!status.ok()) return status;
  auto metrics = MetricsServer::Start(o.metrics_address, "worker");
  if (!metrics.ok()) return metrics.status();
  server->metrics_ = *std::move(metrics);
  // The gRPC server answers from now on: NOT_SERVING (and Generate
  // UNAVAILABLE) while the model loads and while the group is incomplete.
  server->service_ = std::make_unique<WorkerServiceImpl>(
      o.identity, o.internal_auth, o.step_stall);
  auto grpc = GrpcServer::Start(o.grpc, {server->service_.get()});
  if (!grpc.ok()) return grpc.status();
  server->grpc_ = *std::move(grpc);

  auto source = OpenModelSource(o.model_dir);
  if (!source.ok()) return source.status();
  auto loaded = LoadModelOnDevice(*source, o.device, server->metrics_.get());
  if (!loaded.ok()) return loaded.status();
  server->loaded_ = *std::move(loaded);
  source->keep_alive.reset();  // The model holds its own copy of the weights.
  KvBlockPool* pool = server->loaded_.pool.get();
  Log(LogLevel::kInfo,
      "model %s (%s, fingerprint %s): %d layers, hidden %d, on %s; KV cache "
      "%d blocks of %d tokens (%s)",
      source->dir, source->architecture, server->loaded_.fingerprint.ToHex(),
      source->shape.num_layers, source->shape.hidden_size,
      server->loaded_.description, pool->capacity(), pool->layout().block_size,
      KvDtypeName(pool->layout().dtype));

  EngineOptions engine_options = o.engine;
  server->engine_metrics_ =
      std::make_unique<EngineMetrics>(server->metrics_->registry());
  server->engine_metrics_->kv_blocks_capacity.Set(pool->capacity());
  engine_options.metrics = server->engine_metrics_.get();
  // KV blocks are keyed by the model served (int8 weights make another).
  const Hash128 fingerprint = server->loaded_.fingerprint;
  engine_options.fingerprint = fingerprint;
  // Offload and restore through the memory store, when there is one.
  if (!o.memory_stores.empty()) {
    StoreClientOptions store = o.store;
    store.channel_security = o.internal_security;
    // A shard can make a restore hold no more than one valid block of this
    // pool (its header and layers), plus the framing of its messages.
    const KvLayout& layout = pool->layout();
    store.max_block_bytes = std::min<int64_t>(
        store.max_block_bytes,
        static_cast<int64_t>(KvBlockHeaderBytes(layout.num_layers) +
                             layout.BlockBytes()) +
            (int64_t{1} << 20));
    auto client = StoreClient::Create(o.memory_stores, store);
    if (!client.ok()) return client.status();
    server->store_client_ = *std::move(client);
    server->offloader_ = std::make_unique<KvOffloader>(
        server->store_client_.get(), pool, fingerprint, o.offload,
        &server->metrics_->registry());
    engine_options.offloader = server->offloader_.get();
  }
  WorkerServer* self = server.get();
  // A rank of a group of P > 1 serves once the group has formed; rank 0 runs
  // the engine over the whole group, the others run the steps it sends.
  if (grouped) {
    WorkerGroupOptions group;
    group.group_id = o.identity.group_id;
    group.rank = o.identity.rank;
    group.size = o.identity.group_size;
    group.rendezvous_address = o.rendezvous_address;
    group.rendezvous_security = o.internal_security;
    group.hostname = o.gloo_hostname;
    group.form_timeout = o.group_form_timeout;
    group.op_timeout = o.group_op_timeout;
    // Every rank offloads and restores the blocks it holds, as the leader
    // tells it.
    server->group_ = std::make_unique<WorkerGroup>(
        group, server->loaded_.cpu_model, pool, server->offloader_.get(),
        [self](bool ready, const std::string& /*why*/) {
          absl::MutexLock lock(&self->ready_mu_);
          self->group_ready_ = ready;
          self->ReportReadyLocked();
        });
    engine_options.offloader = server->group_->store_io();
  }
  // A model that breaks for good (a GPU fault) takes the rank out of
  // service: NOT_SERVING, and Generate UNAVAILABLE.
  engine_options.on_model_failure = [self](const absl::Status& why) {
    Log(LogLevel::kError, "the model failed, not serving: %s",
        std::string(why.message()));
    absl::MutexLock lock(&self->ready_mu_);
    self->model_failed_ = true;
    self->ReportReadyLocked();
  };
  ForwardModel* forward =
      grouped ? server->group_->forward_model() : server->loaded_.model.get();
  KvBlockPool* ids = grouped ? server->group_->group_pool() : pool;
  if (forward != nullptr) {
    server->engine_ = std::make_unique<Engine>(forward, ids, engine_options);
  }
  server->service_->Attach(fingerprint.ToHex(), source->shape.vocab_size,
                           server->engine_.get(), ids != nullptr ? ids : pool,
                           server->loaded_.report);
  {
    absl::MutexLock lock(&server->ready_mu_);
    server->attached_ = true;
    server->ReportReadyLocked();
  }
  return server;
}

WorkerServer::~WorkerServer() {
  // No call reaches the service from here on (a no-op after main's graceful
  // shutdown); then the engine (it drives the model, the group and the
  // offloader), the group and the offloader; the rest in reverse order.
  if (grpc_ != nullptr) grpc_->Shutdown(absl::ZeroDuration());
  engine_.reset();
  group_.reset();
  offloader_.reset();
}

void WorkerServer::ReportReadyLocked() {
  const bool ready = attached_ &&
                     (options_.identity.group_size <= 1 || group_ready_) &&
                     !model_failed_;
  service_->SetReady(ready);
  grpc_->SetServing(ready);
}

}  // namespace longctx
