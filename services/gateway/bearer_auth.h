// BearerAuth: the gateway's client authentication. Clients send
// "authorization: Bearer <token>" metadata; the tokens allowed come from a
// file (--auth_tokens_file) that is read again when it changes, so tokens can
// be added and revoked without a restart (a Kubernetes Secret volume updates
// in place). Each token belongs to a tenant, and each tenant has a cache
// namespace (kvblock/block_keys.h): KV blocks are shared only between
// requests of one namespace.
//
// Tokens never leave this module: no message, log line or status names one.
#ifndef LONGCTX_SERVICES_GATEWAY_BEARER_AUTH_H_
#define LONGCTX_SERVICES_GATEWAY_BEARER_AUTH_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/constant_time.h"

namespace longctx {

// Tenant is who a token belongs to.
struct Tenant {
  // The tenant's name (for logs and metrics); "" when the gateway has no
  // tokens file.
  std::string name;
  // Its cache namespace: its name unless the tokens file says otherwise; ""
  // (one namespace for every client) without a tokens file.
  std::string cache_namespace;

  friend bool operator==(const Tenant& a, const Tenant& b) {
    return a.name == b.name && a.cache_namespace == b.cache_namespace;
  }
};

// TokenEntry is one token of the file and its tenant.
struct TokenEntry {
  std::string token;
  Tenant tenant;
};

// Most bytes of a tenant name or a cache namespace.
inline constexpr size_t kMaxTenantNameBytes = 64;

// ParseTokenFile parses the text of a token file. One token per line,
// optionally followed by its tenant and options, separated by spaces or tabs:
//
//   <token> [<tenant> [cache_namespace=<namespace>]]
//
// A token without a tenant is a tenant of its own, named "token-" and 12 hex
// digits of its SHA-256. A tenant's cache namespace is its name unless
// cache_namespace= names another: tenants that name the same namespace share
// their cached KV blocks (and so can tell which prompts the others sent).
// Tenant and namespace names are 1 to kMaxTenantNameBytes of [A-Za-z0-9._-].
// Blank lines and lines starting with '#' are skipped. INVALID_ARGUMENT,
// naming the line number but never the token, for a token with a character
// outside printable ASCII, a malformed name or option, a token listed twice,
// a tenant given two namespaces, or a file with no token at all.
absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(absl::string_view text);

// MatchToken compares `presented` with every entry's token, each in constant
// time, and never stops early: the time does not tell which token matched.
// Returns the index of the matching entry, or -1.
int MatchToken(absl::string_view presented,
               const std::vector<TokenEntry>& entries);

// BearerAuthOptions configures a BearerAuth.
struct BearerAuthOptions {
  // The token file (ParseTokenFile's format).
  std::string tokens_file;
  // How often Check looks at the file's modification time, size and inode and
  // re-reads it when one changed. A file that fails to read or parse keeps
  // the tokens in force (a warning is logged). Default: 1 s.
  absl::Duration reload_interval = absl::Seconds(1);
};

// BearerAuth is thread-safe.
class BearerAuth {
 public:
  // Create reads the file now. FAILED_PRECONDITION naming --auth_tokens_file
  // when it cannot be read, INVALID_ARGUMENT when it does not parse.
  static absl::StatusOr<std::unique_ptr<BearerAuth>> Create(
      const BearerAuthOptions& options);

  // Check authenticates the value of a call's "authorization" metadata
  // (`present` false when the call has none) and returns the token's tenant
  // for "Bearer <token>" (the scheme in any case) with a token of the file;
  // UNAUTHENTICATED otherwise, with a message saying what was wrong but never
  // what was sent.
  absl::StatusOr<Tenant> Check(bool present, absl::string_view authorization);

  // Number of tokens in force.
  int num_tokens() const;

 private:
  struct FileState {
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileState& other) const {
      return inode == other.inode && size == other.size &&
             mtime_ns == other.mtime_ns;
    }
  };

  explicit BearerAuth(const BearerAuthOptions& options);
  // Fills *state and *mode from stat(path); false (errno set) on failure.
  static bool Stat(const std::string& path, FileState* state, mode_t* mode);
  // Reads and parses the file; its state goes to *state.
  absl::StatusOr<std::vector<TokenEntry>> Load(FileState* state) const;
  // Re-reads the file if reload_interval has passed and it changed.
  void MaybeReload();

  const BearerAuthOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> tokens_ ABSL_GUARDED_BY(mu_);
  FileState state_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_BEARER_AUTH_H_
