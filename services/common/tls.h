// TLS for longctx's gRPC endpoints and channels: server credentials from a
// certificate, a key and (for mutual TLS) a client CA, and channel credentials
// from a CA bundle and an optional client certificate. Every file is read and
// checked when the credentials are made, so a bad path fails at startup with a
// message naming its flag, never at the first call.
#ifndef LONGCTX_SERVICES_COMMON_TLS_H_
#define LONGCTX_SERVICES_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace longctx {

// ReadPemFile reads a PEM file and checks that it holds a block of the kind
// `label` ("CERTIFICATE" or "PRIVATE KEY", which also matches "RSA PRIVATE
// KEY" and "EC PRIVATE KEY"). Errors name `flag` ("--tls_cert") and `path`,
// never the content: FAILED_PRECONDITION for an unreadable file,
// INVALID_ARGUMENT for one without such a block or with an encrypted key.
absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view flag,
                                        absl::string_view label);

// ServerTlsOptions are the files of a server's TLS (--tls_cert, --tls_key,
// --tls_client_ca). All empty: plaintext.
struct ServerTlsOptions {
  std::string cert_file;       // Certificate chain, PEM.
  std::string key_file;        // Its private key, PEM.
  std::string client_ca_file;  // CAs that sign client certificates, PEM.
  // With client_ca_file: whether a client must present a certificate (mutual
  // TLS for internal services), or may, and is verified when it does (the
  // gateway, whose public clients authenticate with bearer tokens while
  // workers present certificates for the Rendezvous service). Default: must.
  bool require_client_certificate = true;
  // A second certificate chain and key, presented instead of cert_file to a
  // client whose TLS server name (SNI) this certificate carries. The gateway
  // presents its internal certificate (--internal_tls_cert, --internal_tls_key,
  // the names in errors) to workers calling Rendezvous with
  // --internal_tls_server_name, and its public one to everyone else. Empty:
  // none.
  std::string sni_cert_file;
  std::string sni_key_file;
};

// MakeServerCredentials returns plaintext credentials when every file is
// empty, else TLS credentials. INVALID_ARGUMENT when only one of a cert and
// its key is given or a client CA comes without them; ReadPemFile's errors
// otherwise.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

// ServerUsesTls says whether `options` turn TLS on.
bool ServerUsesTls(const ServerTlsOptions& options);

// ChannelTlsOptions are the files of a client's TLS. TLS is used when
// `use_tls` is set or any file is given.
struct ChannelTlsOptions {
  bool use_tls = false;
  std::string ca_file;    // CAs that sign the server's certificate; empty
                          // trusts the system's roots.
  std::string cert_file;  // Client certificate chain (mutual TLS), PEM.
  std::string key_file;   // Its private key; required with cert_file.
  // Name checked against the server's certificate instead of the host of the
  // address (e.g. a certificate for "longctx-worker" reached by IP). Empty:
  // the address's host.
  std::string server_name;
  // Prefix of the flag names in error messages: "--internal_tls_" for the
  // services' internal channels, "--tls_" for clients.
  std::string flag_prefix = "--tls_";
};

// ChannelSecurity makes channels with one set of credentials. The default is
// plaintext. Copyable; thread-safe.
class ChannelSecurity {
 public:
  ChannelSecurity();

  // FromOptions reads and checks the files of `options`. INVALID_ARGUMENT when
  // a certificate comes without its key or the other way round; ReadPemFile's
  // errors otherwise.
  static absl::StatusOr<ChannelSecurity> FromOptions(
      const ChannelTlsOptions& options);

  // NewChannel connects to `target` (host:port) with these credentials and
  // `args` (plus the TLS name override, if any). Connects lazily.
  std::shared_ptr<grpc::Channel> NewChannel(
      const std::string& target,
      grpc::ChannelArguments args = grpc::ChannelArguments()) const;

  bool tls() const { return tls_; }

 private:
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::string server_name_;
  bool tls_ = false;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_TLS_H_
