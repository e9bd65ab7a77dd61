// GrpcServer: what every longctx process's gRPC endpoint has in common — the
// listening port (checked free first), plaintext or TLS, standard health
// checking (grpc.health.v1), optionally also on a plaintext health-only port,
// server reflection, message size limits, and a graceful shutdown with a grace
// period.
#ifndef LONGCTX_SERVICES_COMMON_GRPC_SERVER_H_
#define LONGCTX_SERVICES_COMMON_GRPC_SERVER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/support/config.h"
#include "services/common/net_address.h"

namespace longctx {

// GrpcServerOptions configures a GrpcServer.
struct GrpcServerOptions {
  // Where to listen. Port 0 picks a free port (see GrpcServer::port()).
  HostPort listen;
  // The flag that set `listen`, as errors name it.
  std::string listen_flag = "--listen_address";
  // Largest message the server accepts, in bytes. Default: 4 MiB (gRPC's
  // default); large values travel as streams of chunks instead.
  int max_receive_message_bytes = 4 << 20;
  // Threads polling for calls; 0 lets gRPC choose.
  int num_polling_threads = 0;
  // Credentials of the listening port (MakeServerCredentials of tls.h).
  // Default (null): plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // A second port, always plaintext, that serves only grpc.health.v1 (and
  // reflection), with the same status as the main port: for probes that
  // cannot speak TLS, such as Kubernetes' gRPC probes (--health_address).
  // Default: none.
  std::optional<HostPort> health_listen;
  // How the port is secured, for the startup log line, e.g. "TLS, client
  // certificates required". Default: "plaintext".
  std::string security_summary = "plaintext";
};

// GrpcServer runs registered services until Shutdown. Thread-safe.
class GrpcServer {
 public:
  // Start builds and starts a server for `services` (not owned; they must
  // outlive the server). The health service starts as NOT_SERVING until
  // SetServing(true). Returns FAILED_PRECONDITION naming --listen_address
  // (or --health_address) if the port is in use, and naming the TLS flags
  // when TLS credentials cannot serve (a key that does not match its
  // certificate).
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const GrpcServerOptions& options,
      const std::vector<grpc::Service*>& services);

  ~GrpcServer();

  // SetServing sets the health of the server and of each registered service.
  void SetServing(bool serving);

  // Shutdown stops accepting calls, marks health NOT_SERVING, lets calls in
  // flight finish until `grace` has passed, then cancels the rest. Idempotent.
  void Shutdown(absl::Duration grace);

  // The port the server listens on.
  int port() const { return port_; }
  // The port of the health-only server; 0 when there is none.
  int health_port() const { return health_port_; }
  // InProcessChannel returns a channel to this server's services that does
  // not go through the network: for a front end in the same process (the
  // gateway's HTTP listener) that must take exactly the gRPC path.
  std::shared_ptr<grpc::Channel> InProcessChannel() const;
  // GrpcServerOptions::security_summary.
  const std::string& security_summary() const { return security_summary_; }

 private:
  GrpcServer() = default;

  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;  // Plaintext, health only.
  int port_ = 0;
  int health_port_ = 0;
  std::string security_summary_;
  bool shut_down_ = false;
};

// BlockShutdownSignals blocks SIGTERM and SIGINT in the calling thread and
// every thread created after it. Call first thing in main, before any thread
// exists, and then wait for them with WaitForShutdownSignal.
void BlockShutdownSignals();

// WaitForShutdownSignal blocks until SIGTERM or SIGINT arrives and returns it.
int WaitForShutdownSignal();

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_GRPC_SERVER_H_
