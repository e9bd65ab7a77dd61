#include "services/common/internal_token_flags.h"

#include "absl/flags/flag.h"
#include "services/common/internal_auth.h"

ABSL_FLAG(std::string, internal_token_file, "",
          "File holding the deployment's internal token (32 to 4096 "
          "printable bytes, e.g. `openssl rand -hex 32`), the same on every "
          "process: workers, memory_store shards and the gateway's "
          "Rendezvous refuse calls without it, and this process sends it on "
          "its internal calls. Empty: internal calls are not authenticated "
          "by token (bind internal services to loopback or a private "
          "network, or use --tls_client_ca).");

namespace longctx {

absl::StatusOr<std::string> InternalTokenFromFlags() {
  return ReadInternalToken(absl::GetFlag(FLAGS_internal_token_file));
}

}  // namespace longctx
