#include "services/common/grpc_server.h"

#include <signal.h>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace longctx {

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const GrpcServerOptions& options,
    const std::vector<grpc::Service*>& services) {
  absl::Status free = CheckPortFree(options.listen, options.listen_flag);
  if (!free.ok()) return free;
  if (options.health_listen.has_value()) {
    free = CheckPortFree(*options.health_listen, "--health_address");
    if (!free.ok()) return free;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->security_summary_ = options.security_summary;
  grpc::ServerBuilder builder;
  // Without this gRPC sets SO_REUSEPORT and a second server would share the
  // port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients that vanish without closing their connection (a powered-off
  // machine, a dropped NAT entry) are found by pings, and their calls are
  // cancelled; the internal channels' own pings (every 20 s while a call is
  // open, tls.h) are welcome.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  if (options.num_polling_threads > 0) {
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS,
                                options.num_polling_threads);
  }
  const bool tls = options.credentials != nullptr;
  builder.AddListeningPort(
      options.listen.ToString(),
      tls ? options.credentials : grpc::InsecureServerCredentials(),
      &server->port_);
  for (grpc::Service* service : services) builder.RegisterService(service);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.listen_flag, " ", options.listen.ToString(),
                     " cannot be served",
                     tls ? " with TLS (does --tls_key belong to --tls_cert?)"
                         : " (address in use or not local)"));
  }
  if (options.health_listen.has_value()) {
    // No services of its own: gRPC adds the default health service (and
    // reflection) to every server it builds.
    grpc::ServerBuilder health;
    health.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    health.AddListeningPort(options.health_listen->ToString(),
                            grpc::InsecureServerCredentials(),
                            &server->health_port_);
    server->health_server_ = health.BuildAndStart();
    if (server->health_server_ == nullptr || server->health_port_ == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("--health_address ", options.health_listen->ToString(),
                       " cannot be served (address in use or not local)"));
    }
  }
  server->SetServing(false);
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

void GrpcServer::SetServing(bool serving) {
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s == nullptr) continue;
    grpc::HealthCheckServiceInterface* health = s->GetHealthCheckService();
    if (health != nullptr) health->SetServingStatus(serving);
  }
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr || shut_down_) return;
  shut_down_ = true;
  SetServing(false);
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s == nullptr) continue;
    grpc::HealthCheckServiceInterface* health = s->GetHealthCheckService();
    if (health != nullptr) health->Shutdown();
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
  // The probes see NOT_SERVING until the main port has drained.
  if (health_server_ != nullptr) {
    health_server_->Shutdown(absl::ToChronoTime(absl::Now()));
    health_server_->Wait();
  }
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  return signal_number;
}

std::shared_ptr<grpc::Channel> GrpcServer::InProcessChannel() const {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

}  // namespace longctx
