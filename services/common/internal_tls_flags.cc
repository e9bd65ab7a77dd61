#include "services/common/internal_tls_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "services/common/internal_token_flags.h"

ABSL_FLAG(std::string, internal_tls_ca, "",
          "PEM CA bundle that signs the other services' certificates: turns "
          "TLS on for this process's calls to workers, memory_store shards "
          "and the gateway's Rendezvous. Empty: plaintext.");
ABSL_FLAG(std::string, internal_tls_cert, "",
          "PEM client certificate presented on internal calls (mutual TLS; "
          "needed when the callee sets --tls_client_ca).");
ABSL_FLAG(std::string, internal_tls_key, "",
          "PEM private key of --internal_tls_cert.");
ABSL_FLAG(std::string, internal_tls_server_name, "",
          "Name the other services' certificates are checked against instead "
          "of the host of each address. Empty: the host.");

namespace longctx {

ChannelTlsOptions InternalTlsOptionsFromFlags() {
  ChannelTlsOptions options;
  options.ca_file = absl::GetFlag(FLAGS_internal_tls_ca);
  options.cert_file = absl::GetFlag(FLAGS_internal_tls_cert);
  options.key_file = absl::GetFlag(FLAGS_internal_tls_key);
  options.server_name = absl::GetFlag(FLAGS_internal_tls_server_name);
  options.flag_prefix = "--internal_tls_";
  return options;
}

absl::StatusOr<ChannelSecurity> InternalChannelSecurityFromFlags() {
  const ChannelTlsOptions options = InternalTlsOptionsFromFlags();
  // Internal certificates come from the deployment's own CA, never from the
  // system's roots.
  if (options.ca_file.empty() &&
      (!options.cert_file.empty() || !options.key_file.empty() ||
       !options.server_name.empty())) {
    return absl::InvalidArgumentError(
        "--internal_tls_cert, --internal_tls_key and "
        "--internal_tls_server_name need --internal_tls_ca");
  }
  absl::StatusOr<ChannelSecurity> security =
      ChannelSecurity::FromOptions(options);
  if (!security.ok()) return security.status();
  absl::StatusOr<std::string> token = InternalTokenFromFlags();
  if (!token.ok()) return token.status();
  return security->WithBearerToken(*std::move(token));
}

}  // namespace longctx
