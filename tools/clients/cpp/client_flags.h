// The flags every command-line client of the gateway shares: --address,
// --token, --token_file, --tls, --tls_ca, --tls_cert, --tls_key and
// --tls_server_name.
#ifndef LONGCTX_TOOLS_CLIENTS_CPP_CLIENT_FLAGS_H_
#define LONGCTX_TOOLS_CLIENTS_CPP_CLIENT_FLAGS_H_

#include "absl/status/statusor.h"
#include "tools/clients/cpp/longctx_client.h"

namespace longctx {

// ClientOptionsFromFlags reads the flags (and the files they name) into
// client options. INVALID_ARGUMENT for --token together with --token_file or a
// token file without a token; TLS file errors name their flag.
absl::StatusOr<LongctxClientOptions> ClientOptionsFromFlags();

}  // namespace longctx

#endif  // LONGCTX_TOOLS_CLIENTS_CPP_CLIENT_FLAGS_H_
