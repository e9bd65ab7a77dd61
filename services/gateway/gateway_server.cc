#include "services/gateway/gateway_server.h"

#include <algorithm>
#include <utility>

#include "prometheus/gauge.h"
#include "services/common/logging.h"

namespace longctx {

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(
    GatewayServerOptions options) {
  std::unique_ptr<GatewayServer> server(new GatewayServer);
  server->options_ = std::move(options);
  if (server->options_.internal_grpc.listen.host.empty()) {
    server->options_.internal_grpc.listen.host = "127.0.0.1";
  }
  const GatewayServerOptions& o = server->options_;
  if (!o.auth_tokens_file.empty()) {
    BearerAuthOptions auth;
    auth.tokens_file = o.auth_tokens_file;
    auto created = BearerAuth::Create(auth);
    if (!created.ok()) return created.status();
    server->auth_ = *std::move(created);
  }
  auto model = GatewayModel::Load(o.model_dir, o.model_name);
  if (!model.ok()) return model.status();
  server->model_ = *std::move(model);
  auto metrics = MetricsServer::Start(o.metrics_address, "gateway");
  if (!metrics.ok()) return metrics.status();
  server->metrics_ = *std::move(metrics);

  WorkerPoolOptions pool;
  pool.workers = o.workers;
  pool.group_size = o.group_size;
  pool.channel_security = o.internal_security;
  pool.affinity_slack = o.prefix_affinity_slack;
  prometheus::Gauge& ready_groups =
      prometheus::BuildGauge()
          .Name("longctx_gateway_ready_groups")
          .Help(
              "Worker groups whose every rank answered ready at the last "
              "probe.")
          .Register(server->metrics_->registry())
          .Add({});
  prometheus::BuildGauge()
      .Name("longctx_gateway_groups")
      .Help("Worker groups configured (--workers / --group_size).")
      .Register(server->metrics_->registry())
      .Add({})
      .Set(static_cast<double>(o.workers.size() / std::max(1, o.group_size)));
  pool.on_probe = [&ready_groups](int ready) { ready_groups.Set(ready); };
  auto created_pool = WorkerPool::Create(pool);
  if (!created_pool.ok()) return created_pool.status();
  server->pool_ = *std::move(created_pool);

  GatewayRouting routing;
  if (o.prefix_route_entries > 0) {
    server->router_ = std::make_unique<PrefixRouter>(o.prefix_route_entries);
    routing.router = server->router_.get();
  }
  if (!o.memory_stores.empty()) {
    StoreClientOptions store;
    store.call_timeout = o.store_timeout;
    store.max_retries = 0;
    store.channel_security = o.internal_security;
    auto client = StoreClient::Create(o.memory_stores, store);
    if (!client.ok()) return client.status();
    server->store_ = *std::move(client);
    routing.store = server->store_.get();
  }
  server->service_ = std::make_unique<GatewayServiceImpl>(
      server->model_.get(), server->pool_.get(), o.limits,
      server->metrics_->registry(), server->auth_.get(), routing);
  // Worker groups form through the gateway (Gloo addresses, NCCL ids), on
  // its internal listener; the public one serves LongContext alone.
  server->rendezvous_ = std::make_unique<RendezvousServiceImpl>(
      o.internal_auth, o.rendezvous_limits);
  auto internal_grpc =
      GrpcServer::Start(o.internal_grpc, {server->rendezvous_.get()});
  if (!internal_grpc.ok()) return internal_grpc.status();
  server->internal_grpc_ = *std::move(internal_grpc);
  server->internal_grpc_->SetServing(true);
  Log(LogLevel::kInfo, "internal listener (Rendezvous) on %s:%d, %s%s",
      o.internal_grpc.listen.host, server->internal_grpc_->port(),
      server->internal_grpc_->security_summary(),
      o.internal_auth.enabled() ? ", internal token required" : "");
  auto grpc = GrpcServer::Start(o.grpc, {server->service_.get()});
  if (!grpc.ok()) return grpc.status();
  server->grpc_ = *std::move(grpc);
  if (server->auth_ != nullptr) {
    Log(LogLevel::kInfo, "bearer-token authentication on: %d tokens from %s",
        server->auth_->num_tokens(), o.auth_tokens_file);
  } else {
    Log(LogLevel::kInfo,
        "no --auth_tokens_file: LongContext calls are not authenticated");
  }
  if (o.http.has_value()) {
    auto http = openai::OpenAiHttpServer::Start(
        *o.http, server->grpc_->InProcessChannel());
    if (!http.ok()) return http.status();
    server->http_ = *std::move(http);
    Log(LogLevel::kInfo,
        "OpenAI-compatible HTTP on %s:%d (%s; same bearer tokens)",
        o.http->listen.host.empty() ? "127.0.0.1" : o.http->listen.host,
        server->http_->port(),
        server->http_->tls() ? "HTTPS with --tls_cert" : "plaintext");
  }
  // SERVING while at least one worker group is ready.
  GrpcServer* grpc_server = server->grpc_.get();
  server->pool_->OnReadinessChange(
      [grpc_server](bool ready) { grpc_server->SetServing(ready); });
  return server;
}

DrainHooks GatewayServer::drain_hooks() {
  // New Generate calls are refused with UNAVAILABLE while the running ones
  // finish; readiness no longer follows the workers.
  DrainHooks drain;
  drain.start = [this] {
    pool_->OnReadinessChange([](bool) {});
    service_->StartDraining();
  };
  drain.idle = [this] { return service_->in_flight() == 0; };
  return drain;
}

GatewayServer::~GatewayServer() {
  if (pool_ != nullptr) pool_->OnReadinessChange([](bool) {});
  if (grpc_ != nullptr) grpc_->Shutdown(absl::ZeroDuration());
  // After the gRPC calls it relays were cancelled, so it stops at once.
  http_.reset();
  if (internal_grpc_ != nullptr) internal_grpc_->Shutdown(absl::ZeroDuration());
}

}  // namespace longctx
