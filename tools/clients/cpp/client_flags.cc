#include "tools/clients/cpp/client_flags.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "Gateway host:port.");
ABSL_FLAG(std::string, token, "",
          "Bearer token for a gateway with --auth_tokens_file. Visible in the "
          "process list: prefer --token_file.");
ABSL_FLAG(std::string, token_file, "",
          "File whose first line that is neither blank nor a '#' comment is "
          "the bearer token.");
ABSL_FLAG(bool, tls, false,
          "Connect with TLS, trusting the system's CAs (implied by --tls_ca, "
          "--tls_cert).");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that signs the gateway's certificate (turns TLS on).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate, for a gateway that verifies them.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to check the gateway's certificate against instead of the "
          "host of --address.");

namespace longctx {
namespace {

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--token_file=", path, " cannot be read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << file.rdbuf();
  for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') return std::string(line);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--token_file=", path, " holds no token"));
}

}  // namespace

absl::StatusOr<LongctxClientOptions> ClientOptionsFromFlags() {
  LongctxClientOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.token = absl::GetFlag(FLAGS_token);
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!token_file.empty()) {
    if (!options.token.empty()) {
      return absl::InvalidArgumentError(
          "give --token or --token_file, not both");
    }
    absl::StatusOr<std::string> token = ReadToken(token_file);
    if (!token.ok()) return token.status();
    options.token = *std::move(token);
  }
  ChannelTlsOptions tls;
  tls.use_tls = absl::GetFlag(FLAGS_tls);
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  tls.flag_prefix = "--tls_";
  absl::StatusOr<ChannelSecurity> security = ChannelSecurity::FromOptions(tls);
  if (!security.ok()) return security.status();
  options.security = *std::move(security);
  return options;
}

}  // namespace longctx
