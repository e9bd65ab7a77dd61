// BearerAuth: the gateway's client authentication. Clients send
// "authorization: Bearer <token>" metadata; the tokens allowed come from a
// file (--auth_tokens_file) that is read again when it changes, so tokens can
// be added and revoked without a restart (a Kubernetes Secret volume updates
// in place).
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

namespace longctx {

// ParseTokenFile parses the text of a token file: one token per line; blank
// lines and lines starting with '#' are skipped; spaces and tabs around a
// token are ignored. INVALID_ARGUMENT, naming the line number only, for a
// token with a character outside printable ASCII or with inner whitespace, or
// when the file has no token at all.
absl::StatusOr<std::vector<std::string>> ParseTokenFile(absl::string_view text);

// ConstantTimeEquals compares `presented` with `expected` in time that depends
// only on the two lengths, never on the bytes: every byte of `presented` is
// compared, with no early exit at the first difference or on different
// lengths.
bool ConstantTimeEquals(absl::string_view presented,
                        absl::string_view expected);

// MatchesAnyToken compares `presented` with every token, each in constant
// time, and never stops early: the time does not tell which token matched.
bool MatchesAnyToken(absl::string_view presented,
                     const std::vector<std::string>& tokens);

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
  // (`present` false when the call has none). OK for "Bearer <token>" (the
  // scheme in any case) with a token of the file; UNAUTHENTICATED otherwise,
  // with a message saying what was wrong but never what was sent.
  absl::Status Check(bool present, absl::string_view authorization);

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
  absl::StatusOr<std::vector<std::string>> Load(FileState* state) const;
  // Re-reads the file if reload_interval has passed and it changed.
  void MaybeReload();

  const BearerAuthOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<std::string>> tokens_ ABSL_GUARDED_BY(mu_);
  FileState state_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_BEARER_AUTH_H_
