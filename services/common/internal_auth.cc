#include "services/common/internal_auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/common/constant_time.h"

namespace longctx {
namespace {

constexpr absl::string_view kScheme = "Bearer ";

}  // namespace

absl::StatusOr<std::string> ReadInternalToken(const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("--internal_token_file=", path, " cannot be read"));
  }
  // Read one byte past the limit, so a huge file is refused without being
  // read whole.
  std::string text(kMaxInternalTokenBytes + 64, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const std::string token(absl::StripAsciiWhitespace(text));
  if (token.size() < kMinInternalTokenBytes ||
      token.size() > kMaxInternalTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--internal_token_file=", path, " holds a token of ", token.size(),
        " bytes; it must have ", kMinInternalTokenBytes, " to ",
        kMaxInternalTokenBytes, " (e.g. `openssl rand -hex 32`)"));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(absl::StrCat(
          "--internal_token_file=", path,
          " must hold one token of printable ASCII without spaces"));
    }
  }
  return token;
}

grpc::Status InternalAuth::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
    const char* service) const {
  if (token_.empty()) return grpc::Status::OK;
  auto it = metadata.find("authorization");
  bool admitted = false;
  if (it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    if (value.size() > kScheme.size() &&
        absl::StartsWithIgnoreCase(value, kScheme)) {
      admitted = ConstantTimeEquals(value.substr(kScheme.size()), token_);
    }
  }
  if (admitted) return grpc::Status::OK;
  return grpc::Status(
      grpc::StatusCode::UNAUTHENTICATED,
      absl::StrCat(service,
                   " is internal: calls must carry the deployment's internal "
                   "token (--internal_token_file)"));
}

}  // namespace longctx
