#include "services/common/tls.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpcpp/create_channel.h"

namespace longctx {
namespace {

// Whether `text` has a line "-----BEGIN <...label>-----".
bool HasPemBlock(absl::string_view text, absl::string_view label) {
  const std::string end = absl::StrCat(label, "-----");
  size_t pos = 0;
  while ((pos = text.find("-----BEGIN ", pos)) != absl::string_view::npos) {
    size_t eol = text.find('\n', pos);
    absl::string_view line = text.substr(pos, eol == absl::string_view::npos
                                                  ? absl::string_view::npos
                                                  : eol - pos);
    if (absl::EndsWith(absl::StripSuffix(line, "\r"), end)) return true;
    pos += 1;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view flag,
                                        absl::string_view label) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag, "=", path, " cannot be read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    return absl::FailedPreconditionError(
        absl::StrCat(flag, "=", path, " cannot be read"));
  }
  std::string pem = text.str();
  if (!HasPemBlock(pem, label)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, " holds no PEM block \"", label, "\""));
  }
  if (HasPemBlock(pem, "ENCRYPTED PRIVATE KEY") ||
      absl::StrContains(pem, "Proc-Type: 4,ENCRYPTED")) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path,
                     " holds an encrypted key; give the key unencrypted and "
                     "protect the file instead"));
  }
  return pem;
}

bool ServerUsesTls(const ServerTlsOptions& options) {
  return !options.cert_file.empty() || !options.key_file.empty() ||
         !options.client_ca_file.empty();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options) {
  if (!ServerUsesTls(options)) return grpc::InsecureServerCredentials();
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError(
        options.cert_file.empty() && options.key_file.empty()
            ? "--tls_client_ca needs --tls_cert and --tls_key"
            : "--tls_cert and --tls_key go together: give both or neither");
  }
  absl::StatusOr<std::string> cert =
      ReadPemFile(options.cert_file, "--tls_cert", "CERTIFICATE");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key =
      ReadPemFile(options.key_file, "--tls_key", "PRIVATE KEY");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  // The first pair serves clients whose server name no pair carries.
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (options.sni_cert_file.empty() != options.sni_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--internal_tls_cert and --internal_tls_key go together: give both or "
        "neither");
  }
  if (!options.sni_cert_file.empty()) {
    absl::StatusOr<std::string> sni_cert = ReadPemFile(
        options.sni_cert_file, "--internal_tls_cert", "CERTIFICATE");
    if (!sni_cert.ok()) return sni_cert.status();
    absl::StatusOr<std::string> sni_key =
        ReadPemFile(options.sni_key_file, "--internal_tls_key", "PRIVATE KEY");
    if (!sni_key.ok()) return sni_key.status();
    ssl.pem_key_cert_pairs.push_back(
        {*std::move(sni_key), *std::move(sni_cert)});
  }
  if (!options.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPemFile(options.client_ca_file, "--tls_client_ca", "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request =
        options.require_client_certificate
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

ChannelSecurity::ChannelSecurity()
    : credentials_(grpc::InsecureChannelCredentials()) {}

absl::StatusOr<ChannelSecurity> ChannelSecurity::FromOptions(
    const ChannelTlsOptions& options) {
  ChannelSecurity security;
  security.tls_ = options.use_tls || !options.ca_file.empty() ||
                  !options.cert_file.empty() || !options.key_file.empty();
  if (!security.tls_) {
    if (!options.server_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options.flag_prefix, "server_name needs TLS (",
                       options.flag_prefix, "ca)"));
    }
    return security;
  }
  const std::string& prefix = options.flag_prefix;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "cert and ", prefix, "key go together: give both or neither"));
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPemFile(options.ca_file, absl::StrCat(prefix, "ca"), "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!options.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile(
        options.cert_file, absl::StrCat(prefix, "cert"), "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile(
        options.key_file, absl::StrCat(prefix, "key"), "PRIVATE KEY");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  security.credentials_ = grpc::SslCredentials(ssl);
  security.server_name_ = options.server_name;
  return security;
}

std::shared_ptr<grpc::Channel> ChannelSecurity::NewChannel(
    const std::string& target, grpc::ChannelArguments args) const {
  if (tls_ && !server_name_.empty()) {
    args.SetSslTargetNameOverride(server_name_);
  }
  return grpc::CreateCustomChannel(target, credentials_, args);
}

}  // namespace longctx
