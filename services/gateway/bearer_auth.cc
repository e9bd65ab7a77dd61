#include "services/gateway/bearer_auth.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/logging.h"

namespace longctx {
namespace {

constexpr absl::string_view kScheme = "Bearer ";

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseTokenFile(
    absl::string_view text) {
  std::vector<std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    for (char c : line) {
      // Printable ASCII without the space: what fits a bearer token.
      if (c <= ' ' || c > '~') {
        return absl::InvalidArgumentError(absl::StrCat(
            "--auth_tokens_file line ", line_number,
            ": a token must be printable ASCII without spaces (one token per "
            "line)"));
      }
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        "--auth_tokens_file has no token (one per line; '#' starts a "
        "comment)");
  }
  return tokens;
}

bool ConstantTimeEquals(absl::string_view presented,
                        absl::string_view expected) {
  // Every byte of `presented` is compared (against `expected` repeated when
  // the lengths differ) and the differences are only accumulated, so where
  // the first difference lies never changes the time taken.
  size_t diff = presented.size() ^ expected.size();
  const size_t m = expected.size();
  for (size_t i = 0; i < presented.size(); ++i) {
    const unsigned char e =
        m == 0 ? 0 : static_cast<unsigned char>(expected[i % m]);
    diff |= static_cast<unsigned char>(presented[i]) ^ e;
  }
  return diff == 0;
}

bool MatchesAnyToken(absl::string_view presented,
                     const std::vector<std::string>& tokens) {
  unsigned matched = 0;
  for (const std::string& token : tokens) {
    matched |= ConstantTimeEquals(presented, token) ? 1u : 0u;
  }
  return matched != 0;
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
  absl::StatusOr<std::vector<std::string>> tokens = auth->Load(&state);
  if (!tokens.ok()) return tokens.status();
  absl::MutexLock lock(&auth->mu_);
  auth->tokens_ =
      std::make_shared<const std::vector<std::string>>(*std::move(tokens));
  auth->state_ = state;
  auth->next_check_ = absl::Now() + options.reload_interval;
  return auth;
}

absl::StatusOr<std::vector<std::string>> BearerAuth::Load(
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
  absl::StatusOr<std::vector<std::string>> tokens = Load(&state);
  if (!tokens.ok()) {
    // Remember the state anyway, so that the warning comes once per change.
    state_ = current;
    Log(LogLevel::kWarning, "keeping the %d tokens in force: %s",
        static_cast<int>(tokens_->size()),
        std::string(tokens.status().message()));
    return;
  }
  state_ = state;
  tokens_ =
      std::make_shared<const std::vector<std::string>>(*std::move(tokens));
  Log(LogLevel::kInfo, "--auth_tokens_file=%s reloaded: %d tokens",
      options_.tokens_file, static_cast<int>(tokens_->size()));
}

absl::Status BearerAuth::Check(bool present, absl::string_view authorization) {
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
  std::shared_ptr<const std::vector<std::string>> tokens;
  {
    absl::MutexLock lock(&mu_);
    tokens = tokens_;
  }
  if (!MatchesAnyToken(token, *tokens)) {
    return absl::UnauthenticatedError("the bearer token is not valid");
  }
  return absl::OkStatus();
}

int BearerAuth::num_tokens() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(tokens_->size());
}

}  // namespace longctx
