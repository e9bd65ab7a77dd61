// gateway: the public endpoint of longctx (proto/longctx.proto). Validates and
// tokenizes requests and drives the worker groups.
#include <algorithm>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "memory_store/store_client.h"
#include "prometheus/gauge.h"
#include "services/common/grpc_server.h"
#include "services/common/internal_tls_flags.h"
#include "services/common/logging.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/common/server_tls_flags.h"
#include "services/gateway/bearer_auth.h"
#include "services/gateway/gateway_model.h"
#include "services/gateway/gateway_service_impl.h"
#include "services/gateway/prefix_router.h"
#include "services/gateway/worker_pool.h"
#include "services/rendezvous/rendezvous_service_impl.h"

ABSL_FLAG(std::string, listen_address, "0.0.0.0:50051",
          "host:port of the public gRPC endpoint.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9451",
          "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(std::string, model, "",
          "Model folder (config.json and the tokenizer; weights are not read). "
          "Required; must be the workers' model.");
ABSL_FLAG(
    std::string, model_name, "",
    "Name of the model in GetModelInfo and GenerateRequest.model; default: "
    "the model folder's name.");
ABSL_FLAG(std::string, workers, "",
          "Comma-separated host:port of every worker rank, group after group "
          "(ranks 0..P-1 of group 0, then group 1, ...). Required.");
ABSL_FLAG(int, group_size, 1, "Ranks per worker group (P).");
ABSL_FLAG(std::string, memory_store, "",
          "Comma-separated host:port list of memory_store shards; empty runs "
          "without the prefix store.");
ABSL_FLAG(int, store_timeout_ms, 200,
          "Deadline of the memory_store lookup of a prompt's stored prefix "
          "before dispatch; a shard that does not answer in time reads as a "
          "miss.");
ABSL_FLAG(int, prefix_route_entries, 65536,
          "Block keys the gateway remembers to send a prompt to the worker "
          "group that computed its prefix; 0 routes by load alone.");
ABSL_FLAG(int, prefix_affinity_slack, 4,
          "A request goes to the group holding its prefix when that group has "
          "at most this many more requests in flight than the least loaded "
          "one.");
ABSL_FLAG(int, max_prompt_tokens, 131072,
          "Longest prompt accepted, in tokens.");
ABSL_FLAG(int, max_new_tokens, 4096, "Most new tokens a request may ask for.");
ABSL_FLAG(int, default_max_new_tokens, 256,
          "New tokens for a request that does not set max_new_tokens.");
ABSL_FLAG(int, max_concurrent_requests, 256,
          "Most Generate streams at once; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_text_bytes, 16 << 20,
          "Longest text accepted by Tokenize, in bytes.");
ABSL_FLAG(int, max_message_bytes, 17 << 20,
          "Largest gRPC request message accepted, in bytes (a request with "
          "its whole text or token ids); larger ones get RESOURCE_EXHAUSTED "
          "from gRPC. Must be above --max_text_bytes.");
ABSL_FLAG(int, grace_period_seconds, 10,
          "On SIGTERM/SIGINT, seconds calls in flight may take to finish.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of the bearer tokens clients must send (\"authorization: "
          "Bearer <token>\") on every LongContext call: one per line, '#' "
          "starts a comment; re-read when it changes. Empty: no "
          "authentication.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

int main(int argc, char** argv) {
  constexpr char kProgram[] = "gateway";
  absl::SetProgramUsageMessage(
      "The public endpoint of longctx. Usage: gateway --model=DIR "
      "--workers=host:port,... [--flags]");
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
  auto workers =
      longctx::ParseHostPortList(absl::GetFlag(FLAGS_workers), "workers");
  if (!workers.ok()) return longctx::StartupError(kProgram, workers.status());
  auto stores = longctx::ParseHostPortList(absl::GetFlag(FLAGS_memory_store),
                                           "memory_store");
  if (!stores.ok()) return longctx::StartupError(kProgram, stores.status());

  longctx::GatewayLimits limits;
  limits.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  limits.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  limits.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);
  limits.max_text_bytes = absl::GetFlag(FLAGS_max_text_bytes);
  limits.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  if (limits.max_concurrent_requests < 1) {
    return longctx::StartupError(
        kProgram,
        absl::InvalidArgumentError("--max_concurrent_requests must be >= 1"));
  }
  if (limits.max_prompt_tokens < 1 || limits.max_new_tokens < 1 ||
      limits.default_max_new_tokens < 1 || limits.max_text_bytes < 1) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(
                      "--max_prompt_tokens, --max_new_tokens, "
                      "--default_max_new_tokens and --max_text_bytes must be "
                      ">= 1"));
  }

  const int store_timeout_ms = absl::GetFlag(FLAGS_store_timeout_ms);
  const int route_entries = absl::GetFlag(FLAGS_prefix_route_entries);
  const int affinity_slack = absl::GetFlag(FLAGS_prefix_affinity_slack);
  if (store_timeout_ms < 1 || route_entries < 0 || affinity_slack < 0) {
    return longctx::StartupError(
        kProgram, absl::InvalidArgumentError(
                      "--store_timeout_ms must be >= 1, and "
                      "--prefix_route_entries and --prefix_affinity_slack "
                      ">= 0"));
  }

  const int max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes <= limits.max_text_bytes) {
    return longctx::StartupError(
        kProgram,
        absl::InvalidArgumentError(absl::StrCat(
            "--max_message_bytes=", max_message_bytes,
            " must be above --max_text_bytes=", limits.max_text_bytes,
            ": a request carries its text and other fields in one message")));
  }

  longctx::GrpcServerOptions server_options;
  server_options.listen = addresses->listen;
  server_options.max_receive_message_bytes = max_message_bytes;
  // Public clients need no certificate (they send bearer tokens); workers
  // present theirs for the Rendezvous service, and are shown the internal
  // certificate when they ask for its name (--internal_tls_server_name).
  longctx::ServerTlsOptions tls_options;
  tls_options.require_client_certificate = false;
  const longctx::ChannelTlsOptions internal_options =
      longctx::InternalTlsOptionsFromFlags();
  tls_options.sni_cert_file = internal_options.cert_file;
  tls_options.sni_key_file = internal_options.key_file;
  auto tls = longctx::ApplyServerTlsFlags(tls_options, &server_options);
  if (!tls.ok()) return longctx::StartupError(kProgram, tls.status());
  auto internal_security = longctx::InternalChannelSecurityFromFlags();
  if (!internal_security.ok()) {
    return longctx::StartupError(kProgram, internal_security.status());
  }
  std::unique_ptr<longctx::BearerAuth> auth;
  if (!absl::GetFlag(FLAGS_auth_tokens_file).empty()) {
    longctx::BearerAuthOptions auth_options;
    auth_options.tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
    auto created = longctx::BearerAuth::Create(auth_options);
    if (!created.ok()) return longctx::StartupError(kProgram, created.status());
    auth = *std::move(created);
  }

  auto model = longctx::GatewayModel::Load(absl::GetFlag(FLAGS_model),
                                           absl::GetFlag(FLAGS_model_name));
  if (!model.ok()) return longctx::StartupError(kProgram, model.status());

  longctx::WorkerPoolOptions pool_options;
  pool_options.workers = *workers;
  pool_options.group_size = absl::GetFlag(FLAGS_group_size);
  pool_options.channel_security = *internal_security;
  pool_options.affinity_slack = affinity_slack;
  auto metrics = longctx::MetricsServer::Start(addresses->metrics, kProgram);
  if (!metrics.ok()) return longctx::StartupError(kProgram, metrics.status());
  prometheus::Gauge& ready_groups =
      prometheus::BuildGauge()
          .Name("longctx_gateway_ready_groups")
          .Help(
              "Worker groups whose every rank answered ready at the last "
              "probe.")
          .Register((*metrics)->registry())
          .Add({});
  prometheus::BuildGauge()
      .Name("longctx_gateway_groups")
      .Help("Worker groups configured (--workers / --group_size).")
      .Register((*metrics)->registry())
      .Add({})
      .Set(static_cast<double>(workers->size() /
                               std::max(1, pool_options.group_size)));
  pool_options.on_probe = [&ready_groups](int ready) {
    ready_groups.Set(ready);
  };
  auto pool = longctx::WorkerPool::Create(pool_options);
  if (!pool.ok()) return longctx::StartupError(kProgram, pool.status());

  longctx::GatewayRouting routing;
  std::unique_ptr<longctx::PrefixRouter> router;
  if (route_entries > 0) {
    router = std::make_unique<longctx::PrefixRouter>(route_entries);
    routing.router = router.get();
  }
  std::unique_ptr<longctx::StoreClient> store;
  if (!stores->empty()) {
    longctx::StoreClientOptions store_options;
    store_options.call_timeout = absl::Milliseconds(store_timeout_ms);
    store_options.max_retries = 0;
    store_options.channel_security = *internal_security;
    auto client = longctx::StoreClient::Create(*stores, store_options);
    if (!client.ok()) return longctx::StartupError(kProgram, client.status());
    store = *std::move(client);
    routing.store = store.get();
  }
  longctx::GatewayServiceImpl service(model->get(), pool->get(), limits,
                                      (*metrics)->registry(), auth.get(),
                                      routing);
  // Worker groups form through the gateway (Gloo addresses, NCCL ids); with
  // --tls_client_ca only ranks with a client certificate may take part.
  longctx::RendezvousServiceImpl rendezvous(
      /*require_client_certificate=*/!tls->client_ca_file.empty());
  auto server =
      longctx::GrpcServer::Start(server_options, {&service, &rendezvous});
  if (!server.ok()) return longctx::StartupError(kProgram, server.status());
  if (auth != nullptr) {
    longctx::Log(longctx::LogLevel::kInfo,
                 "bearer-token authentication on: %d tokens from %s",
                 auth->num_tokens(), absl::GetFlag(FLAGS_auth_tokens_file));
  } else {
    longctx::Log(longctx::LogLevel::kInfo,
                 "no --auth_tokens_file: LongContext calls are not "
                 "authenticated");
  }
  // SERVING while at least one worker group is ready.
  longctx::GrpcServer* grpc_server = server->get();
  (*pool)->OnReadinessChange(
      [grpc_server](bool ready) { grpc_server->SetServing(ready); });
  // On SIGTERM, new Generate calls are refused with UNAVAILABLE while the
  // running ones finish, within the grace period.
  longctx::DrainHooks drain;
  drain.start = [&] {
    (*pool)->OnReadinessChange([](bool) {});
    service.StartDraining();
  };
  drain.idle = [&] { return service.in_flight() == 0; };
  int code = longctx::ServeUntilSignal(
      kProgram, **server, **metrics,
      absl::Seconds(absl::GetFlag(FLAGS_grace_period_seconds)),
      /*mark_serving=*/false, drain);
  (*pool)->OnReadinessChange([](bool) {});
  return code;
}
