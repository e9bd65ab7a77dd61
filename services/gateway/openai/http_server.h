// OpenAiHttpServer: the gateway's OpenAI-compatible HTTP listener
// (--http_address), HTTPS with the gateway's certificate when it has one. POST
// /v1/completions and /v1/chat/completions (whole or streamed as server-sent
// events), GET /v1/models and GET /health (200 while the gateway's gRPC health
// is SERVING, else 503). Each request is mapped (openai_api.h) and sent through
// an in-process channel to the gateway's own gRPC service with the client's
// Authorization header, so authentication, tenants, limits, admission, routing,
// metrics and cancellation are exactly the gRPC path's. Built on cpp-httplib
// (Debian's libcpp-httplib-dev: maintained, small, chunked responses for
// streaming, payload limits and timeouts).
#ifndef LONGCTX_SERVICES_GATEWAY_OPENAI_HTTP_SERVER_H_
#define LONGCTX_SERVICES_GATEWAY_OPENAI_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "services/common/net_address.h"

namespace httplib {
class Server;
}

namespace longctx::openai {

struct HttpServerOptions {
  // Where to listen (--http_address); port 0 picks a free one.
  HostPort listen;
  // Connections served at once, streams included (--http_threads).
  int threads = 64;
  // Largest request body (--max_text_bytes plus JSON framing); larger get
  // 413 before they are parsed.
  size_t max_body_bytes = 2 << 20;
  // Deadline of each generation sent to the gateway (--http_request_timeout).
  absl::Duration request_timeout = absl::Minutes(30);
  // A client that takes no bytes for this long is dropped (its generation
  // cancelled) (--stream_write_timeout).
  absl::Duration write_timeout = absl::Seconds(60);
  // TLS: the gateway's own certificate and key (--tls_cert, --tls_key) and,
  // for mutual TLS, the CAs of client certificates (--tls_client_ca). All
  // empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

class OpenAiHttpServer {
 public:
  // Start serves on `options.listen`, calling the gateway through `channel`
  // (GrpcServer::InProcessChannel). FAILED_PRECONDITION naming --http_address
  // when the port cannot be bound, or the TLS files cannot serve.
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(
      const HttpServerOptions& options, std::shared_ptr<grpc::Channel> channel);
  // Stops listening and waits for the listener thread.
  ~OpenAiHttpServer();

  int port() const { return port_; }
  bool tls() const { return tls_; }

 private:
  OpenAiHttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  bool tls_ = false;
};

}  // namespace longctx::openai

#endif  // LONGCTX_SERVICES_GATEWAY_OPENAI_HTTP_SERVER_H_
