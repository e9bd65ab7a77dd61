// The flags of a server's TLS and of its plaintext health port, shared by the
// three services' main.cc: --tls_cert, --tls_key, --tls_client_ca and
// --health_address. Link this library only into binaries that serve gRPC.
#ifndef LONGCTX_SERVICES_COMMON_SERVER_TLS_FLAGS_H_
#define LONGCTX_SERVICES_COMMON_SERVER_TLS_FLAGS_H_

#include "absl/status/statusor.h"
#include "services/common/grpc_server.h"
#include "services/common/tls.h"

namespace longctx {

// ApplyServerTlsFlags reads the flags into `options`: its credentials (files
// read and checked now, the key against the certificate on a throwaway
// loopback port) and its health_listen. `require_client_certificate` is
// ServerTlsOptions' field of that name; it also sets security_summary.
// Returns the TLS options read from the flags; errors name the flag, and the
// caller exits with StartupError.
absl::StatusOr<ServerTlsOptions> ApplyServerTlsFlags(
    bool require_client_certificate, GrpcServerOptions* options);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_SERVER_TLS_FLAGS_H_
