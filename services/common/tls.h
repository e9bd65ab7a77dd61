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
  // TLS), or may, and is verified when it does. Default: must.
  bool require_client_certificate = true;
  // The flags of the three files, as errors name them: the server's own
  // (--tls_cert, --tls_key, --tls_client_ca), or the gateway's internal
  // listener's (--internal_tls_cert, --internal_tls_key, --internal_tls_ca).
  std::string cert_flag = "--tls_cert";
  std::string key_flag = "--tls_key";
  std::string client_ca_flag = "--tls_client_ca";
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

// ChannelSecurity makes channels with one set of credentials: TLS or
// plaintext, and optionally a bearer token sent on every call (the internal
// token, services/common/internal_auth.h). Every channel keeps its connection
// alive with HTTP/2 pings while calls are open, so a peer that vanished is
// noticed within kKeepaliveTime + kKeepaliveTimeout. The default is
// plaintext without a token. Copyable; thread-safe.
class ChannelSecurity {
 public:
  ChannelSecurity();

  // FromOptions reads and checks the files of `options`. INVALID_ARGUMENT when
  // a certificate comes without its key or the other way round; ReadPemFile's
  // errors otherwise.
  static absl::StatusOr<ChannelSecurity> FromOptions(
      const ChannelTlsOptions& options);

  // WithBearerToken returns a copy that sends "authorization: Bearer
  // <token>" on every call of its channels ("" sends none).
  ChannelSecurity WithBearerToken(std::string token) const;

  // NewChannel connects to `target` (host:port) with these credentials and
  // `args` (plus the TLS name override, keepalive and the token, if any).
  // Connects lazily.
  std::shared_ptr<grpc::Channel> NewChannel(
      const std::string& target,
      grpc::ChannelArguments args = grpc::ChannelArguments()) const;

  bool tls() const { return tls_; }
  bool has_bearer_token() const { return !bearer_token_.empty(); }

  // Keepalive of every channel: a ping after this long without traffic while
  // a call is open, and the connection is dropped when its answer takes
  // longer than kKeepaliveTimeout.
  static constexpr int kKeepaliveTimeMs = 20000;
  static constexpr int kKeepaliveTimeoutMs = 10000;

 private:
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::string server_name_;
  std::string bearer_token_;
  bool tls_ = false;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_TLS_H_
