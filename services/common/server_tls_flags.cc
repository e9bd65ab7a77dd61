#include "services/common/server_tls_flags.h"

#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/server_builder.h"
#include "services/common/net_address.h"
#include "services/common/tls.h"

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of the gRPC endpoint; with --tls_key turns "
          "TLS on. Empty: plaintext.");
ABSL_FLAG(std::string, tls_key, "",
          "PEM private key of --tls_cert (unencrypted; protect the file).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle that signs client certificates: turns mutual TLS on "
          "(every client must present a certificate it signed).");
ABSL_FLAG(std::string, health_address, "",
          "host:port of a plaintext port serving only gRPC health checks, for "
          "probes that cannot speak TLS (Kubernetes). Empty: none.");

namespace longctx {

absl::StatusOr<ServerTlsOptions> ApplyServerTlsFlags(
    ServerTlsOptions tls, GrpcServerOptions* options) {
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  if (ServerUsesTls(tls)) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
        MakeServerCredentials(tls);
    if (!credentials.ok()) return credentials.status();
    // gRPC finds a key that does not belong to its certificate only when a
    // port is opened: try one now, before a worker spends minutes loading its
    // model.
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port);
    std::unique_ptr<grpc::Server> probe = builder.BuildAndStart();
    if (probe != nullptr) probe->Shutdown();
    if (probe == nullptr || port == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_key=", tls.key_file, " does not belong to --tls_cert=",
          tls.cert_file, " (or a file cannot be used)"));
    }
    options->credentials = *std::move(credentials);
    options->security_summary = absl::StrCat(
        "TLS, client certificates ",
        tls.client_ca_file.empty()       ? "not requested"
        : tls.require_client_certificate ? "required"
                                         : "verified if presented");
  }
  const std::string health = absl::GetFlag(FLAGS_health_address);
  if (!health.empty()) {
    absl::StatusOr<HostPort> address = ParseHostPort(health, "health_address");
    if (!address.ok()) return address.status();
    options->health_listen = *address;
  }
  return tls;
}

}  // namespace longctx
