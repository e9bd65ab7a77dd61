// GatewayServer: the public endpoint as a server, the object the gateway's
// main() builds from its flags: the model's tokenizer and limits, the worker
// pool with its readiness probes, prefix routing and the memory store lookup,
// bearer-token authentication, the LongContext service on the public
// listener, Rendezvous on the internal one, and /metrics.
//
// Health is SERVING while at least one worker group is ready. On shutdown,
// drain_hooks() make new Generate calls UNAVAILABLE while the running ones
// finish (services/common/server_main.h, ServeUntilSignal).
#ifndef LONGCTX_SERVICES_GATEWAY_GATEWAY_SERVER_H_
#define LONGCTX_SERVICES_GATEWAY_GATEWAY_SERVER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "memory_store/store_client.h"
#include "services/common/grpc_server.h"
#include "services/common/internal_auth.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/common/tls.h"
#include "services/gateway/bearer_auth.h"
#include "services/gateway/gateway_limits.h"
#include "services/gateway/gateway_model.h"
#include "services/gateway/gateway_service_impl.h"
#include "services/gateway/openai/http_server.h"
#include "services/gateway/prefix_router.h"
#include "services/gateway/worker_pool.h"
#include "services/rendezvous/rendezvous_service_impl.h"

namespace longctx {

// GatewayServerOptions is everything the gateway is configured with (each
// field from the gateway flag of the same name; README, "Flags").
struct GatewayServerOptions {
  // The gRPC listener, TLS and message limit (--listen_address, --tls_*,
  // --max_message_bytes).
  GrpcServerOptions grpc;
  // Where /metrics is served (--metrics_address).
  HostPort metrics_address;
  // The model folder (its tokenizer and config) and the name GetModelInfo
  // reports (--model, --model_name; empty: the folder's name).
  std::string model_dir;
  std::string model_name;
  // Every worker rank, group after group, and ranks per group (--workers,
  // --group_size).
  std::vector<HostPort> workers;
  int group_size = 1;
  // memory_store shards for the prefix lookup (--memory_store); empty:
  // none, and its deadline (--store_timeout_ms).
  std::vector<HostPort> memory_stores;
  absl::Duration store_timeout = absl::Milliseconds(200);
  // Prefix routing: block keys remembered (0: route by load alone), and how
  // much busier the group holding a prefix may be (--prefix_route_entries,
  // --prefix_affinity_slack).
  int prefix_route_entries = 65536;
  int prefix_affinity_slack = 4;
  // Request limits (--max_prompt_tokens, ...).
  GatewayLimits limits;
  // Bearer tokens, one per line (--auth_tokens_file); empty: no
  // authentication.
  std::string auth_tokens_file;
  // How the gateway calls workers and the store (--internal_tls_*,
  // --internal_token_file).
  ChannelSecurity internal_security;
  // The internal listener, where ranks call Rendezvous
  // (--internal_listen_address; TLS from --internal_tls_cert,
  // --internal_tls_key and --internal_tls_ca), and who may call it
  // (--internal_token_file). An empty host listens on 127.0.0.1.
  GrpcServerOptions internal_grpc;
  InternalAuth internal_auth;
  // Bounds of the Rendezvous store (--rendezvous_max_bytes,
  // --rendezvous_max_waiters).
  RendezvousLimits rendezvous_limits;
  // The OpenAI-compatible HTTP listener (--http_address); none when unset.
  std::optional<openai::HttpServerOptions> http;
};

class GatewayServer {
 public:
  // Start loads the model folder's tokenizer, probes the workers and serves.
  // Errors name the flag: the model folder, the tokens file, a port in use.
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(
      GatewayServerOptions options);
  ~GatewayServer();

  GrpcServer& grpc_server() { return *grpc_; }
  // The HTTP listener's port; 0 without one.
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  GrpcServer& internal_grpc_server() { return *internal_grpc_; }
  MetricsServer& metrics_server() { return *metrics_; }
  // What ServeUntilSignal calls to drain the gateway's own calls.
  DrainHooks drain_hooks();

 private:
  GatewayServer() = default;

  GatewayServerOptions options_;
  // Declared in the order they are built; destroyed the other way round.
  std::unique_ptr<BearerAuth> auth_;
  std::unique_ptr<GatewayModel> model_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<PrefixRouter> router_;
  std::unique_ptr<StoreClient> store_;
  std::unique_ptr<GatewayServiceImpl> service_;
  std::unique_ptr<RendezvousServiceImpl> rendezvous_;
  std::unique_ptr<GrpcServer> grpc_;
  std::unique_ptr<GrpcServer> internal_grpc_;
  std::unique_ptr<openai::OpenAiHttpServer> http_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_GATEWAY_SERVER_H_
