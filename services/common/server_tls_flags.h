// The flags of a server's TLS and of its plaintext health port, shared by the
// three services' main.cc: --tls_cert, --tls_key, --tls_client_ca and
// --health_address. Link this library only into binaries that serve gRPC.
#ifndef LONGCTX_SERVICES_COMMON_SERVER_TLS_FLAGS_H_
#define LONGCTX_SERVICES_COMMON_SERVER_TLS_FLAGS_H_

#include "absl/status/statusor.h"
#include "services/common/grpc_server.h"
#include "services/common/tls.h"

namespace longctx {

// ApplyServerTlsFlags completes `tls` with the flags (its
// require_client_certificate field stays the caller's) and sets
// `options`: credentials (files read and checked now, each key against its
// certificate on a throwaway loopback port), health_listen and
// security_summary. Returns the completed TLS options; errors name the flag,
// and the caller exits with StartupError.
absl::StatusOr<ServerTlsOptions> ApplyServerTlsFlags(
    ServerTlsOptions tls, GrpcServerOptions* options);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_SERVER_TLS_FLAGS_H_
