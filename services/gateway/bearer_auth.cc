#include "services/gateway/bearer_auth.h"

#include <openssl/sha.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/logging.h"

namespace longctx {
namespace {

constexpr absl::string_view kScheme = "Bearer ";
constexpr absl::string_view kNamespaceOption = "cache_namespace=";

bool IsName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxTenantNameBytes) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// The tenant of a token listed without one: named after a digest of the
// token, which names it in logs without revealing it.
std::string OwnTenantName(absl::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest);
  return absl::StrCat("token-", absl::BytesToHexString(absl::string_view(
                                    reinterpret_cast<const char*>(digest), 6)));
}

}  // namespace

absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(absl::string_view text) {
  std::vector<TokenEntry> tokens;
  absl::flat_hash_map<std::string, std::string> namespaces;  // By tenant.
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_tokens_file line ", line_number, ": ", what,
                       " (format: <token> [<tenant> "
                       "[cache_namespace=<namespace>]])"));
    };
    for (char c : line) {
      if (c != ' ' && c != '\t' && (c <= ' ' || c > '~')) {
        return bad("a token must be printable ASCII");
      }
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() > 3) return bad("too many fields");
    TokenEntry entry;
    entry.token = std::string(fields[0]);
    if (fields.size() >= 2) {
      if (!IsName(fields[1])) {
        return bad(absl::StrCat("a tenant name is 1 to ", kMaxTenantNameBytes,
                                " of [A-Za-z0-9._-]"));
      }
      entry.tenant.name = std::string(fields[1]);
    } else {
      entry.tenant.name = OwnTenantName(entry.token);
    }
    entry.tenant.cache_namespace = entry.tenant.name;
    if (fields.size() == 3) {
      if (!absl::StartsWith(fields[2], kNamespaceOption) ||
          !IsName(fields[2].substr(kNamespaceOption.size()))) {
        return bad(
            absl::StrCat("the third field must be cache_namespace= "
                         "and a name of 1 to ",
                         kMaxTenantNameBytes, " of [A-Za-z0-9._-]"));
      }
      entry.tenant.cache_namespace =
          std::string(fields[2].substr(kNamespaceOption.size()));
    }
    auto [it, inserted] =
        namespaces.emplace(entry.tenant.name, entry.tenant.cache_namespace);
    if (!inserted && it->second != entry.tenant.cache_namespace) {
      return bad(absl::StrCat("tenant ", entry.tenant.name,
                              " was given another cache namespace on an "
                              "earlier line"));
    }
    if (MatchToken(entry.token, tokens) >= 0) {
      return bad("the token is listed on an earlier line too");
    }
    tokens.push_back(std::move(entry));
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        "--auth_tokens_file has no token (one per line; '#' starts a "
        "comment)");
  }
  return tokens;
}

int MatchToken(absl::string_view presented,
               const std::vector<TokenEntry>& entries) {
  int matched = -1;
  for (size_t i = 0; i < entries.size(); ++i) {
    const bool equal = ConstantTimeEquals(presented, entries[i].token);
    // Branch-free choice of the index, so the time does not depend on which
    // entry matched.
    const int mask = -static_cast<int>(equal);
    matched = (mask & static_cast<int>(i)) | (~mask & matched);
  }
  return matched;
}

BearerAuth::BearerAuth(const BearerAuthOptions& options) : options_(options) {}

bool BearerAuth::Stat(const std::string& path, FileState* state, mode_t* mode) {
  // stat follows symbolic links: a Kubernetes Secret volume swaps a link.
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) return false;
  state->inode = info.st_ino;
  state->size = info.st_size;
  state->mtime_ns =
      int64_t{info.st_mtim.tv_sec} * 1000000000 + info.st_mtim.tv_nsec;
  *mode = info.st_mode;
  return true;
}

absl::StatusOr<std::unique_ptr<BearerAuth>> BearerAuth::Create(
    const BearerAuthOptions& options) {
  std::unique_ptr<BearerAuth> auth(new BearerAuth(options));
  FileState state;
  absl::StatusOr<std::vector<TokenEntry>> tokens = auth->Load(&state);
  if (!tokens.ok()) return tokens.status();
  absl::MutexLock lock(&auth->mu_);
  auth->tokens_ =
      std::make_shared<const std::vector<TokenEntry>>(*std::move(tokens));
  auth->state_ = state;
  auth->next_check_ = absl::Now() + options.reload_interval;
  return auth;
}

absl::StatusOr<std::vector<TokenEntry>> BearerAuth::Load(
    FileState* state) const {
  const std::string& path = options_.tokens_file;
  mode_t mode = 0;
  if (!Stat(path, state, &mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("--auth_tokens_file=", path,
                     " cannot be read: ", std::strerror(errno)));
  }
  if ((mode & S_IROTH) != 0) {
    Log(LogLevel::kWarning,
        "--auth_tokens_file=%s is readable by every user of this machine",
        path);
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::FailedPreconditionError(
        absl::StrCat("--auth_tokens_file=", path,
                     " cannot be read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << file.rdbuf();
  return ParseTokenFile(text.str());
}

void BearerAuth::MaybeReload() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (now < next_check_) return;
  next_check_ = now + options_.reload_interval;
  FileState current;  // All zero while the file is missing.
  mode_t mode = 0;
  Stat(options_.tokens_file, &current, &mode);
  if (current == state_) return;
  FileState state;
  absl::StatusOr<std::vector<TokenEntry>> tokens = Load(&state);
  if (!tokens.ok()) {
    // Remember the state anyway, so that the warning comes once per change.
    state_ = current;
    Log(LogLevel::kWarning, "keeping the %d tokens in force: %s",
        static_cast<int>(tokens_->size()),
        std::string(tokens.status().message()));
    return;
  }
  state_ = state;
  tokens_ = std::make_shared<const std::vector<TokenEntry>>(*std::move(tokens));
  Log(LogLevel::kInfo, "--auth_tokens_file=%s reloaded: %d tokens",
      options_.tokens_file, static_cast<int>(tokens_->size()));
}

absl::StatusOr<Tenant> BearerAuth::Check(bool present,
                                         absl::string_view authorization) {
  if (!present) {
    return absl::UnauthenticatedError(
        "this gateway needs an \"authorization: Bearer <token>\" metadata "
        "entry on every call");
  }
  if (authorization.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()),
                              kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be \"Bearer <token>\"");
  }
  absl::string_view token =
      absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  if (token.empty()) {
    return absl::UnauthenticatedError("the bearer token is empty");
  }
  MaybeReload();
  std::shared_ptr<const std::vector<TokenEntry>> tokens;
  {
    absl::MutexLock lock(&mu_);
    tokens = tokens_;
  }
  const int matched = MatchToken(token, *tokens);
  if (matched < 0) {
    return absl::UnauthenticatedError("the bearer token is not valid");
  }
  return (*tokens)[matched].tenant;
}

int BearerAuth::num_tokens() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tokens_->size());
}

}  // namespace longctx
