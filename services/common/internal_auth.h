// InternalAuth: who may call the internal plane — the workers, the
// memory_store shards and the gateway's Rendezvous service. Besides mutual TLS
// (the servers' --tls_client_ca, checked by the TLS handshake itself), a
// deployment can configure an internal token: one secret in a file given to
// every process (--internal_token_file). Internal callers then send it as
// "authorization: Bearer <token>" on every call (ChannelSecurity in tls.h
// attaches it), and every internal service refuses calls that lack it.
//
// The token travels in the clear without internal TLS: it keeps out callers
// that cannot read the file (other pods, other users of the machine), not an
// observer of the network. Tokens never appear in a message or a log line.
#ifndef LONGCTX_SERVICES_COMMON_INTERNAL_AUTH_H_
#define LONGCTX_SERVICES_COMMON_INTERNAL_AUTH_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace longctx {

// Bounds of an internal token, in bytes.
inline constexpr size_t kMinInternalTokenBytes = 32;
inline constexpr size_t kMaxInternalTokenBytes = 4096;

// ReadInternalToken reads the token file at `path`: one token of printable
// ASCII without spaces, kMinInternalTokenBytes to kMaxInternalTokenBytes long
// (whitespace around it is ignored). Returns "" when `path` is empty. Errors
// name --internal_token_file and the path, never the content:
// FAILED_PRECONDITION for an unreadable file, INVALID_ARGUMENT for a token
// that is too short, too long or has other characters.
absl::StatusOr<std::string> ReadInternalToken(const std::string& path);

// InternalAuth is immutable and thread-safe.
class InternalAuth {
 public:
  // Open: every caller is admitted (no token configured).
  InternalAuth() = default;
  // Only callers presenting `token` are admitted; "" is open.
  explicit InternalAuth(std::string token) : token_(std::move(token)) {}

  bool enabled() const { return !token_.empty(); }

  // Check returns OK when no token is configured or the call's
  // "authorization" metadata is "Bearer <token>" (compared in constant time),
  // and UNAUTHENTICATED naming --internal_token_file otherwise. `service`
  // names the callee in the message ("memory_store").
  grpc::Status Check(const grpc::ServerContextBase& context,
                     const char* service) const {
    return Check(context.client_metadata(), service);
  }
  grpc::Status Check(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
      const char* service) const;

 private:
  std::string token_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_INTERNAL_AUTH_H_
