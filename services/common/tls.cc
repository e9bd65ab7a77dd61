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
#include "grpcpp/support/client_interceptor.h"

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
            ? absl::StrCat(options.client_ca_flag, " needs ", options.cert_flag,
                           " and ", options.key_flag)
            : absl::StrCat(options.cert_flag, " and ", options.key_flag,
                           " go together: give both or neither"));
  }
  absl::StatusOr<std::string> cert =
      ReadPemFile(options.cert_file, options.cert_flag, "CERTIFICATE");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key =
      ReadPemFile(options.key_file, options.key_flag, "PRIVATE KEY");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!options.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(
        options.client_ca_file, options.client_ca_flag, "CERTIFICATE");
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

namespace {

// Adds "authorization: Bearer <token>" to the initial metadata of each call.
// (Call credentials would do the same, but gRPC sends those only over TLS.)
class BearerTokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* value) : value_(value) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *value_});
    }
    methods->Proceed();
  }

 private:
  const std::string* value_;  // Owned by the factory.
};

class BearerTokenInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token)
      : value_(absl::StrCat("Bearer ", token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(&value_);
  }

 private:
  const std::string value_;
};

}  // namespace

ChannelSecurity ChannelSecurity::WithBearerToken(std::string token) const {
  ChannelSecurity copy = *this;
  copy.bearer_token_ = std::move(token);
  return copy;
}

std::shared_ptr<grpc::Channel> ChannelSecurity::NewChannel(
    const std::string& target, grpc::ChannelArguments args) const {
  if (tls_ && !server_name_.empty()) {
    args.SetSslTargetNameOverride(server_name_);
  }
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  if (bearer_token_.empty()) {
    return grpc::CreateCustomChannel(target, credentials_, args);
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<BearerTokenInterceptorFactory>(bearer_token_));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      target, credentials_, args, std::move(interceptors));
}

}  // namespace longctx
