// The flags of the TLS of a service's internal channels (gateway -> worker,
// gateway and worker -> memory_store, worker -> gateway's Rendezvous):
// --internal_tls_ca, --internal_tls_cert, --internal_tls_key and
// --internal_tls_server_name. Link only into binaries that make such channels.
#ifndef LONGCTX_SERVICES_COMMON_INTERNAL_TLS_FLAGS_H_
#define LONGCTX_SERVICES_COMMON_INTERNAL_TLS_FLAGS_H_

#include "absl/status/statusor.h"
#include "services/common/tls.h"

namespace longctx {

// InternalTlsOptionsFromFlags returns the flags' values (files not read).
ChannelTlsOptions InternalTlsOptionsFromFlags();

// InternalChannelSecurityFromFlags reads the flags (files read and checked
// now), with the internal token of --internal_token_file
// (internal_token_flags.h): plaintext without a token when none is set.
// Errors name the flag.
absl::StatusOr<ChannelSecurity> InternalChannelSecurityFromFlags();

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_INTERNAL_TLS_FLAGS_H_
